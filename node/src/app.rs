//! Wiring: opens the chain state, starts the chain task, the network, the RPC server and the
//! miner, and shuts them down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_consensus::ChainParams;
use cairn_mempool::{MempoolConfig, MempoolError};
use cairn_p2p::{Multiaddr, NetworkConfig, NetworkHandle, NetworkService};
use cairn_primitives::{Address, Block, BlockHash, Transaction, XOnlyPublicKey};
use cairn_rpc::{BlockSubmission, Credentials, NodeControl, RpcConfig, RpcContext};
use cairn_storage::{ChainState, StorageConfig};
use tokio::sync::{Notify, broadcast};
use tracing::{info, warn};

use crate::chain::{self, BlockVerdict, ChainHandle, ChainTaskParts, Origin};
use crate::config::NodeConfig;
use crate::lock::DataDirLock;
use crate::metrics::{self, NodeMetrics};
use crate::{dev, miner, network};

/// Subscribers' notification queue; a subscriber that falls this far behind is dropped (with
/// an error notification). Holds a 10,000-transaction burst (~100 bytes a slot, 1.6 MiB).
pub const NOTIFICATION_QUEUE_LEN: usize = 16_384;
/// How often expired mempool transactions are dropped.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// How often sync progress is logged while behind.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Chain database directory inside the data dir.
const CHAIN_DIR: &str = "chain";
/// Cookie file: RPC credentials written at every start when none are configured (as Bitcoin
/// Core), removed on a clean exit.
pub const COOKIE_FILE: &str = ".cookie";

fn load_params(config: &NodeConfig) -> anyhow::Result<ChainParams> {
    match &config.genesis {
        None => Ok(ChainParams::devnet()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read genesis file {}", path.display()))?;
            ChainParams::from_genesis_json(&text)
                .with_context(|| format!("invalid genesis file {}", path.display()))
        }
    }
}

fn parse_addrs(list: &[String], what: &str) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .map(|s| {
            s.parse::<Multiaddr>()
                .with_context(|| format!("invalid {what} multiaddr {s:?}"))
        })
        .collect()
}

/// Binds the RPC port now, so that a busy port stops start-up before anything else happens.
fn bind_rpc(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "RPC address {addr} is already in use (another cairnd?): choose another with --rpc-addr or rpc_addr in cairn.toml"
        ),
        Err(e) => bail!("cannot listen for RPC on {addr}: {e}"),
    }
}

/// The `ip:port` a `/ip4|ip6/<ip>/tcp/<port>` multiaddr listens on, if it names a fixed port.
fn tcp_listen_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let text = addr.to_string();
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => {
            let ip: std::net::IpAddr = ip.parse().ok()?;
            let port: u16 = port.parse().ok()?;
            (port != 0).then_some(SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

/// libp2p listens with SO_REUSEPORT (so that dials can reuse the port), which lets a second node
/// share a port silently and take half its inbound peers. A plain bind first tells the truth.
fn check_p2p_ports_free(listen: &[Multiaddr]) -> anyhow::Result<()> {
    for addr in listen {
        let Some(sock) = tcp_listen_addr(addr) else {
            continue;
        };
        match std::net::TcpListener::bind(sock) {
            Ok(l) => drop(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "P2P address {addr} is already in use (another cairnd?): choose another with --p2p-listen or p2p_listen in cairn.toml"
            ),
            Err(e) => bail!("cannot listen for peers on {addr}: {e}"),
        }
    }
    Ok(())
}

/// Writes a fresh random cookie (`__cookie__:<hex>`, mode 0600) and returns the credentials.
fn write_cookie(datadir: &Path) -> anyhow::Result<Credentials> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)
        .map_err(|e| anyhow::anyhow!("no randomness for the RPC cookie: {e}"))?;
    let creds = Credentials {
        user: "__cookie__".into(),
        password: hex::encode(secret),
    };
    let path = datadir.join(COOKIE_FILE);
    let tmp = datadir.join(".cookie.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        write!(f, "{}:{}", creds.user, creds.password)?;
    }
    std::fs::rename(&tmp, &path)?;
    info!(file = %path.display(), "RPC cookie written");
    Ok(creds)
}

/// The node's implementation of what the RPC may change.
struct Control {
    chain: ChainHandle,
    mining: bool,
    stop: Arc<Notify>,
    best_peer_height: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl NodeControl for Control {
    async fn send_transaction(&self, tx: Transaction) -> Result<u64, MempoolError> {
        self.chain.accept_tx(tx, Origin::Local, 0).await
    }

    async fn submit_block(&self, block: Block) -> BlockSubmission {
        match self.chain.submit_block(block, Origin::Local).await {
            BlockVerdict::Accepted => BlockSubmission::Accepted,
            BlockVerdict::Duplicate => BlockSubmission::Duplicate,
            BlockVerdict::Orphan => BlockSubmission::Inconclusive,
            BlockVerdict::Invalid(r) => BlockSubmission::Rejected(r),
        }
    }

    async fn generate(&self, count: u32, pubkey: XOnlyPublicKey) -> Result<Vec<BlockHash>, String> {
        self.chain.generate(count, pubkey).await
    }

    fn mining(&self) -> bool {
        self.mining
    }

    fn request_stop(&self) {
        self.stop.notify_one();
    }

    fn best_peer_height(&self) -> u64 {
        self.best_peer_height.load(Ordering::Relaxed)
    }
}

/// Waits for SIGINT, SIGTERM or the `stop` RPC.
async fn shutdown_signal(stop: Arc<Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                return stop.notified().await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
            _ = stop.notified() => info!("stop requested over RPC"),
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupt received"),
        _ = stop.notified() => info!("stop requested over RPC"),
    }
}

/// Logs height, blocks/s and an ETA while the block chain is behind the best header.
async fn log_sync_progress(chain: ChainHandle, best_peer: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    let mut last: Option<(Instant, u64)> = None;
    loop {
        tick.tick().await;
        let (Ok((height, _)), Ok(header)) = (chain.reader.tip(), chain.reader.best_header()) else {
            continue;
        };
        let target = header.height.max(best_peer.load(Ordering::Relaxed));
        if let Some((t, h)) = last
            && target > height
        {
            let rate = height.saturating_sub(h) as f64 / t.elapsed().as_secs_f64().max(1e-3);
            let eta = if rate > 0.0 {
                format!("{:.0}s", (target - height) as f64 / rate)
            } else {
                "unknown".into()
            };
            info!(
                height,
                target,
                blocks_per_sec = format!("{rate:.1}"),
                eta,
                "syncing"
            );
        }
        last = Some((Instant::now(), height));
    }
}

pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    // Start-up checks come first: nothing in the data dir is opened or changed before they pass.
    let params = load_params(&config)?;
    let datadir = config.datadir.clone();
    let datadir_lock = DataDirLock::acquire(&datadir)?;
    let listen_addrs = parse_addrs(&config.p2p_listen, config.p2p_listen_from)?;
    let bootnodes = parse_addrs(&config.bootnodes, config.bootnodes_from)?;
    let miner_pubkey = match (&config.miner_address, config.dev) {
        (Some(a), _) => Some(
            Address::parse(a, &params.address_prefix)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "invalid {} {a:?}: {e} (addresses of this chain start with {}1)",
                        config.miner_address_from,
                        params.address_prefix
                    )
                })?
                .pubkey,
        ),
        (None, true) => None, // the dev wallet's, below
        (None, false) if config.mine => bail!("mining needs a miner address: --miner-address ADDR"),
        (None, false) => None,
    };
    let rpc_listener = bind_rpc(config.rpc_addr)?;
    check_p2p_ports_free(&listen_addrs)?;
    info!(chain = %params.chain_id, genesis = %params.genesis_hash(), datadir = %datadir.display(), "starting cairnd");

    let storage_config = StorageConfig {
        utxo_cache_bytes: config.dbcache_bytes,
        ..StorageConfig::default()
    };
    let chain_dir = datadir.join(CHAIN_DIR);
    let mut state = ChainState::open(&chain_dir, params.clone(), storage_config)
        .with_context(|| format!("cannot open the chain database in {}", chain_dir.display()))?;
    let sig_cache = Arc::new(cairn_consensus::SigCache::new());
    state.set_sig_cache(Arc::clone(&sig_cache));
    let tip = state.tip();
    info!(height = tip.height, hash = %tip.hash, "chain loaded");

    let mempool_config = MempoolConfig {
        max_bytes: config.mempool_max_bytes,
        ..MempoolConfig::default()
    };
    let (notifications, _) = broadcast::channel(NOTIFICATION_QUEUE_LEN);
    let node_metrics = Arc::new(NodeMetrics::default());
    let (chain, relay_rx, chain_thread) = chain::spawn(ChainTaskParts {
        state,
        mempool_config,
        notifications: notifications.clone(),
        metrics: Arc::clone(&node_metrics),
        datadir: datadir.clone(),
        sig_cache: Arc::clone(&sig_cache),
    })?;

    // Network.
    let mut net_config = NetworkConfig::new(params.genesis_hash());
    net_config.listen_addrs = listen_addrs;
    net_config.bootnodes = bootnodes;
    net_config.data_dir = Some(datadir.clone());
    net_config.mdns = config.mdns;
    net_config.max_peers = config.max_peers;
    net_config.max_block_size = params.max_block_size;
    net_config.compact_blocks = config.compact_blocks;
    net_config.idontwant = config.gossip_idontwant;
    net_config.block_announcements = config.block_announcements;
    net_config.tx_announcements = config.tx_announcements;
    if let Some(d) = config.tx_fetch_delay {
        net_config.tx_fetch_delay = d;
    }
    if let Some(d) = config.announce_interval {
        net_config.announce_interval = d;
    }
    if let Some(d) = config.tx_fetch_delay_quiet {
        net_config.tx_fetch_delay_quiet = d;
    }
    let node_chain = Arc::new(network::NodeChain {
        chain: chain.clone(),
    });
    let (net, net_events) = NetworkService::start(net_config, node_chain)
        .await
        .context("cannot start the p2p service")?;
    let best_peer_height = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![
        tokio::spawn(network::handle_events(
            chain.clone(),
            net.clone(),
            net_events,
        )),
        tokio::spawn(network::relay(net.clone(), relay_rx)),
        tokio::spawn(network::track_peer_heights(
            net.clone(),
            Arc::clone(&best_peer_height),
        )),
        tokio::spawn(log_sync_progress(
            chain.clone(),
            Arc::clone(&best_peer_height),
        )),
    ];
    {
        let chain = chain.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRE_INTERVAL);
            loop {
                tick.tick().await;
                chain.expire().await;
            }
        }));
    }

    // Miner.
    let dev_wallet = if config.dev {
        Some(dev::ensure_dev_wallet(&datadir, &params)?)
    } else {
        None
    };
    let miner_pubkey = miner_pubkey.or(dev_wallet.as_ref().map(|w| w.pubkey));

    // RPC.
    let stop = Arc::new(Notify::new());
    let control = Arc::new(Control {
        chain: chain.clone(),
        mining: config.mine && miner_pubkey.is_some(),
        stop: Arc::clone(&stop),
        best_peer_height: Arc::clone(&best_peer_height),
    });
    // Credentials always exist: privileged calls need them even on loopback.
    let (credentials, cookie) = match &config.rpc_credentials {
        Some((user, password)) => (
            Credentials {
                user: user.clone(),
                password: password.clone(),
            },
            None,
        ),
        None => (write_cookie(&datadir)?, Some(datadir.join(COOKIE_FILE))),
    };
    let mut rpc_config = RpcConfig::new(config.rpc_addr);
    rpc_config.credentials = Some(credentials);
    rpc_config.allowed_hosts = config.rpc_allowed_hosts.clone();
    rpc_config.allowed_origins = config.rpc_allowed_origins.clone();
    rpc_config.explorer = config.explorer;
    let render = {
        let (chain, net, m) = (chain.clone(), net.clone(), Arc::clone(&node_metrics));
        let started = Instant::now();
        Arc::new(move || gauges_text(&chain, &net, &m, &sig_cache, started))
            as Arc<dyn Fn() -> String + Send + Sync>
    };
    let rpc = cairn_rpc::start_on(
        rpc_listener,
        rpc_config,
        RpcContext {
            params: Arc::new(params.clone()),
            reader: chain.reader.clone(),
            mempool: Arc::clone(&chain.mempool),
            network: Some(net.clone()),
            control,
            notifications,
            datadir: datadir.clone(),
            node_metrics: render,
            started: Instant::now(),
        },
    )
    .await?;
    let rpc_url = rpc_url(rpc.local_addr);
    info!(url = %rpc_url, "JSON-RPC listening");
    let p2p_addrs: Vec<String> = net
        .listen_addrs()
        .await
        .iter()
        .map(ToString::to_string)
        .collect();

    let (miner_shutdown, miner_shutdown_rx) = tokio::sync::watch::channel(false);
    let miner_task = match (config.mine, miner_pubkey) {
        (true, Some(pk)) => Some(tokio::spawn(miner::run(
            chain.clone(),
            pk,
            config.miner_threads,
            miner_shutdown_rx,
        ))),
        _ => None,
    };

    // What the user needs, on stdout (logs go to stderr).
    println!(
        "cairnd {} on chain {} (genesis {})",
        env!("CARGO_PKG_VERSION"),
        params.chain_id,
        params.genesis_hash()
    );
    println!("RPC:  {rpc_url}");
    match &cookie {
        Some(c) => println!(
            "RPC credentials for stop/mining/submitblock: cookie file {}",
            c.display()
        ),
        None => println!("RPC credentials: rpc_user/rpc_password from cairn.toml"),
    }
    for a in &p2p_addrs {
        println!("P2P:  {a}");
    }
    if let Some(w) = &dev_wallet {
        let addr = Address::new(w.pubkey)
            .encode(&params.address_prefix)
            .unwrap_or_default();
        println!(
            "Dev wallet: {} (address {addr}, empty passphrase)",
            w.path.display()
        );
        println!(
            "  funded by the miner; coinbase outputs mature after {} blocks",
            params.coinbase_maturity
        );
        println!(
            "  try: cairn-wallet --wallet {} --rpc {rpc_url} balance",
            w.path.display()
        );
    }

    shutdown_signal(stop).await;
    info!("shutting down");
    let _ = miner_shutdown.send(true);
    rpc.stop().await;
    if let Some(m) = miner_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), m).await;
    }
    net.shutdown().await;
    for t in tasks {
        t.abort();
    }
    chain.shutdown().await;
    drop(chain);
    let _ = tokio::task::spawn_blocking(move || chain_thread.join()).await;
    if let Some(c) = &cookie
        && let Err(e) = std::fs::remove_file(c)
    {
        warn!(error = %e, file = %c.display(), "cannot remove the RPC cookie");
    }
    drop(datadir_lock);
    info!("stopped");
    Ok(())
}

fn rpc_url(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

fn gauges_text(
    chain: &ChainHandle,
    net: &NetworkHandle,
    m: &NodeMetrics,
    sig_cache: &cairn_consensus::SigCache,
    started: Instant,
) -> String {
    let (height, headers) = (
        chain.reader.tip().map(|t| t.0).unwrap_or(0),
        chain.reader.best_header().map(|h| h.height).unwrap_or(0),
    );
    let tip_time = chain
        .reader
        .tip()
        .ok()
        .and_then(|(_, hash)| chain.reader.header_info(&hash).ok().flatten())
        .map(|h| h.header.time)
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let info = chain
        .mempool
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .info();
    metrics::render(
        m,
        &metrics::Gauges {
            height,
            headers,
            mempool_txs: info.size,
            mempool_bytes: info.bytes,
            p2p: net.metrics(),
            uptime_secs: started.elapsed().as_secs(),
            tip_age_secs: now.saturating_sub(tip_time),
            storage: metrics::StorageGauges {
                connect: chain.reader.connect_timings(),
                index: chain.reader.index_progress(),
                sig_cache: {
                    let (inserted, hits) = sig_cache.stats();
                    (inserted, hits, sig_cache.reused())
                },
                memory: chain.reader.memory_usage().ok(),
            },
        },
    )
}
