//! Wiring: opens the chain state, starts the chain task, the network, the RPC server and the
//! miner, and shuts them down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use crate::metrics::{self, NodeMetrics};
use crate::{dev, miner, network};

/// Subscribers' notification queue; a subscriber that falls this far behind is dropped.
pub const NOTIFICATION_QUEUE_LEN: usize = 4_096;
/// How often expired mempool transactions are dropped.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// How often sync progress is logged while behind.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Chain database directory inside the data dir.
const CHAIN_DIR: &str = "chain";
/// Cookie file, written when the RPC listens beyond loopback without configured credentials.
const COOKIE_FILE: &str = ".cookie";

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
    let params = load_params(&config)?;
    let datadir = config.datadir.clone();
    info!(chain = %params.chain_id, genesis = %params.genesis_hash(), datadir = %datadir.display(), "starting cairnd");

    let storage_config = StorageConfig {
        utxo_cache_bytes: config.dbcache_bytes,
        ..StorageConfig::default()
    };
    let chain_dir = datadir.join(CHAIN_DIR);
    let state = ChainState::open(&chain_dir, params.clone(), storage_config)
        .with_context(|| format!("cannot open the chain database in {}", chain_dir.display()))?;
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
    })?;

    // Network.
    let mut net_config = NetworkConfig::new(params.genesis_hash());
    net_config.listen_addrs = parse_addrs(&config.p2p_listen, "--p2p-listen")?;
    net_config.bootnodes = parse_addrs(&config.bootnodes, "--bootnode")?;
    net_config.data_dir = Some(datadir.clone());
    net_config.mdns = config.mdns;
    net_config.max_peers = config.max_peers;
    net_config.max_block_size = params.max_block_size;
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
    let miner_pubkey = match (&config.miner_address, config.dev) {
        (Some(a), _) => Some(
            Address::parse(a, &params.address_prefix)
                .map_err(|e| anyhow::anyhow!("invalid --miner-address {a:?}: {e}"))?
                .pubkey,
        ),
        (None, true) => None, // the dev wallet's, below
        (None, false) if config.mine => bail!("--mine needs --miner-address ADDR"),
        (None, false) => None,
    };
    let dev_wallet = if config.dev {
        Some(dev::ensure_dev_wallet(&datadir)?)
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
    let credentials = match &config.rpc_credentials {
        Some((user, password)) => Some(Credentials {
            user: user.clone(),
            password: password.clone(),
        }),
        None if !config.rpc_addr.ip().is_loopback() => Some(write_cookie(&datadir)?),
        None => None,
    };
    let mut rpc_config = RpcConfig::new(config.rpc_addr);
    rpc_config.credentials = credentials;
    rpc_config.explorer = config.explorer;
    let render = {
        let (chain, net, m) = (chain.clone(), net.clone(), Arc::clone(&node_metrics));
        Arc::new(move || gauges_text(&chain, &net, &m)) as Arc<dyn Fn() -> String + Send + Sync>
    };
    let rpc = cairn_rpc::start(
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

    let miner_shutdown = Arc::new(AtomicBool::new(false));
    let miner_task = match (config.mine, miner_pubkey) {
        (true, Some(pk)) => Some(tokio::spawn(miner::run(
            chain.clone(),
            pk,
            config.miner_threads,
            Arc::clone(&miner_shutdown),
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
    miner_shutdown.store(true, Ordering::Relaxed);
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
    info!("stopped");
    Ok(())
}

fn rpc_url(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

fn gauges_text(chain: &ChainHandle, net: &NetworkHandle, m: &NodeMetrics) -> String {
    let (height, headers) = (
        chain.reader.tip().map(|t| t.0).unwrap_or(0),
        chain.reader.best_header().map(|h| h.height).unwrap_or(0),
    );
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
        },
    )
}
