//! Node configuration: defaults, then `cairn.toml` in the data dir, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::{Cli, RunArgs};

/// Default JSON-RPC address.
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:8645";
/// Default P2P listen address of `cairnd run`.
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/0.0.0.0/tcp/9645";
/// P2P listen address of `--dev`: loopback only (a dev chain is private), on the default port so
/// a second node can name it as its bootnode; `--p2p-listen` gives another.
pub const DEV_P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/9645";
/// Config file name inside the data dir.
pub const CONFIG_FILE: &str = "cairn.toml";
/// Largest relay timing (`tx_fetch_delay*_ms`, `announce_interval_ms`) taken from the config
/// file (a minute).
pub const MAX_RELAY_TIMING_MS: u64 = 60_000;
/// Default mining threads.
pub const DEFAULT_MINER_THREADS: usize = 1;
/// Default maximum connected peers.
pub const DEFAULT_MAX_PEERS: u32 = 50;
/// Default mempool size limit (bytes of memory).
pub const DEFAULT_MEMPOOL_BYTES: usize = 300_000_000;
/// Default UTXO cache size (bytes).
pub const DEFAULT_DBCACHE_BYTES: usize = 256 * 1024 * 1024;
/// Largest `--dbcache` (MiB): 1 TiB, beyond any machine this runs on.
pub const MAX_DBCACHE_MIB: u64 = 1 << 20;
/// Most bootnodes or listen addresses a config may list.
pub const MAX_ADDR_LIST: usize = 64;

/// `cairn.toml`: every key optional; an unknown key stops start-up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub genesis: Option<PathBuf>,
    pub p2p_listen: Option<Vec<String>>,
    pub bootnodes: Option<Vec<String>>,
    pub rpc_addr: Option<String>,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    pub rpc_allowed_hosts: Option<Vec<String>>,
    pub rpc_allowed_origins: Option<Vec<String>>,
    pub mine: Option<bool>,
    pub miner_address: Option<String>,
    pub miner_threads: Option<usize>,
    pub mdns: Option<bool>,
    pub max_peers: Option<u32>,
    pub mempool_max_bytes: Option<usize>,
    pub dbcache_bytes: Option<usize>,
    pub explorer: Option<bool>,
    /// Relay blocks compactly to peers that take it (default true; false: full blocks only,
    /// to compare).
    pub compact_blocks: Option<bool>,
    /// Gossipsub IDONTWANT (default true; false only to measure its effect).
    pub gossip_idontwant: Option<bool>,
    /// Announce blocks by header and let peers pull the compact block (default true; false:
    /// push compact blocks on gossip, to compare).
    pub block_announcements: Option<bool>,
    /// Announce transactions over `/cairn/relay/1` (default true; false: gossip alone).
    pub tx_announcements: Option<bool>,
    /// Milliseconds an announced transaction is left to gossip before it is fetched while
    /// gossip runs behind the announcements (default 100; only while gossip carries
    /// transactions at all).
    pub tx_fetch_delay_ms: Option<u64>,
    /// The same while gossip keeps up (default 50; never above `tx_fetch_delay_ms`; see
    /// `cairn_p2p::relay` and docs/operations.md).
    pub tx_fetch_delay_quiet_ms: Option<u64>,
    /// Mean milliseconds between two announcements of fresh transactions to a peer, each turn
    /// 0.5–1.5 times it at random (default 250; at most a minute). Lower is faster relay and
    /// more requests.
    pub announce_interval_ms: Option<u64>,
}

/// The resolved configuration the node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub dev: bool,
    pub datadir: PathBuf,
    pub genesis: Option<PathBuf>,
    pub p2p_listen: Vec<String>,
    /// Where `p2p_listen` came from, as an operator would look for it (`--p2p-listen` or the
    /// config key), for error messages.
    pub p2p_listen_from: &'static str,
    pub bootnodes: Vec<String>,
    pub bootnodes_from: &'static str,
    pub rpc_addr: SocketAddr,
    pub rpc_credentials: Option<(String, String)>,
    pub rpc_allowed_hosts: Vec<String>,
    pub rpc_allowed_origins: Vec<String>,
    pub mine: bool,
    pub miner_address: Option<String>,
    pub miner_address_from: &'static str,
    pub miner_threads: usize,
    pub mdns: bool,
    pub max_peers: u32,
    pub mempool_max_bytes: usize,
    pub dbcache_bytes: usize,
    /// Serve the block explorer on the RPC port.
    pub explorer: bool,
    pub compact_blocks: bool,
    pub gossip_idontwant: bool,
    pub block_announcements: bool,
    pub tx_announcements: bool,
    pub tx_fetch_delay: Option<std::time::Duration>,
    pub tx_fetch_delay_quiet: Option<std::time::Duration>,
    pub announce_interval: Option<std::time::Duration>,
}

fn default_dev_datadir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cairn").join("dev")
}

/// Reads `cairn.toml` if present; a syntax error, unknown key or bad value names the problem.
pub fn read_config_file(datadir: &Path) -> anyhow::Result<ConfigFile> {
    let path = datadir.join(CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl NodeConfig {
    pub fn resolve(cli: &Cli) -> anyhow::Result<NodeConfig> {
        let run = match &cli.command {
            Some(crate::cli::Command::Run(r)) => r.clone(),
            None => RunArgs::default(),
        };
        if !cli.dev && cli.command.is_none() {
            bail!(
                "nothing to do: use `cairnd --dev` for a dev chain or `cairnd run --datadir DIR` (see --help)"
            );
        }
        let datadir = match (&cli.common.datadir, cli.dev) {
            (Some(d), _) => d.clone(),
            (None, true) => default_dev_datadir(),
            (None, false) => bail!("`cairnd run` needs --datadir DIR"),
        };
        std::fs::create_dir_all(&datadir)
            .with_context(|| format!("cannot create data dir {}", datadir.display()))?;
        let file = read_config_file(&datadir)?;

        let (p2p_listen, p2p_listen_from) = if !cli.common.p2p_listen.is_empty() {
            (cli.common.p2p_listen.clone(), "--p2p-listen")
        } else if let Some(l) = file.p2p_listen.clone() {
            (l, "p2p_listen in cairn.toml")
        } else if cli.dev {
            (vec![DEV_P2P_LISTEN.to_string()], "--p2p-listen")
        } else {
            (vec![DEFAULT_P2P_LISTEN.to_string()], "--p2p-listen")
        };
        let (bootnodes, bootnodes_from) = if !run.bootnodes.is_empty() {
            (run.bootnodes.clone(), "--bootnode")
        } else {
            (
                file.bootnodes.clone().unwrap_or_default(),
                "bootnodes in cairn.toml",
            )
        };
        if p2p_listen.len() > MAX_ADDR_LIST || bootnodes.len() > MAX_ADDR_LIST {
            bail!("at most {MAX_ADDR_LIST} listen addresses and {MAX_ADDR_LIST} bootnodes");
        }
        for (key, list) in [
            ("rpc_allowed_hosts", &file.rpc_allowed_hosts),
            ("rpc_allowed_origins", &file.rpc_allowed_origins),
        ] {
            if list.as_ref().is_some_and(|l| l.len() > MAX_ADDR_LIST) {
                bail!("config: {key} lists more than {MAX_ADDR_LIST} entries");
            }
        }
        let rpc_addr = match (&cli.common.rpc_addr, &file.rpc_addr) {
            (Some(a), _) => resolve_socket_addr(a).context("invalid --rpc-addr")?,
            (None, Some(a)) => resolve_socket_addr(a).context("invalid rpc_addr in cairn.toml")?,
            (None, None) => DEFAULT_RPC_ADDR.parse().context("default RPC address")?,
        };
        // A relative genesis path in cairn.toml is relative to the data dir, where the file is.
        let genesis = match (&run.genesis, &file.genesis) {
            (Some(g), _) => Some(g.clone()),
            (None, Some(g)) if g.is_relative() => Some(datadir.join(g)),
            (None, g) => g.clone(),
        };
        let (miner_address, miner_address_from) = match (&run.miner_address, &file.miner_address) {
            (Some(a), _) => (Some(a.clone()), "--miner-address"),
            (None, Some(a)) => (Some(a.clone()), "miner_address in cairn.toml"),
            (None, None) => (None, "--miner-address"),
        };
        let rpc_credentials = match (file.rpc_user.clone(), file.rpc_password.clone()) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => bail!("config: rpc_user and rpc_password must be set together"),
        };
        let miner_threads = run
            .miner_threads
            .or(file.miner_threads)
            .unwrap_or(DEFAULT_MINER_THREADS);
        if miner_threads == 0 || miner_threads > 256 {
            bail!("miner_threads must be between 1 and 256");
        }
        let mempool_max_bytes = file.mempool_max_bytes.unwrap_or(DEFAULT_MEMPOOL_BYTES);
        if mempool_max_bytes < 1_000_000 {
            bail!("config: mempool_max_bytes must be at least 1000000");
        }
        let dbcache_bytes = match run.dbcache {
            Some(mib) if mib > MAX_DBCACHE_MIB => {
                bail!("--dbcache must be at most {MAX_DBCACHE_MIB} (MiB)")
            }
            Some(mib) => usize::try_from(mib << 20)
                .map_err(|_| anyhow::anyhow!("--dbcache {mib} MiB does not fit in memory here"))?,
            None => file.dbcache_bytes.unwrap_or(DEFAULT_DBCACHE_BYTES),
        };
        let max_peers = run
            .max_peers
            .or(file.max_peers)
            .unwrap_or(DEFAULT_MAX_PEERS);
        if max_peers == 0 || max_peers > 10_000 {
            bail!("max_peers must be between 1 and 10000");
        }
        Ok(NodeConfig {
            dev: cli.dev,
            genesis,
            p2p_listen,
            p2p_listen_from,
            bootnodes,
            bootnodes_from,
            rpc_addr,
            rpc_credentials,
            rpc_allowed_hosts: file.rpc_allowed_hosts.clone().unwrap_or_default(),
            rpc_allowed_origins: file.rpc_allowed_origins.clone().unwrap_or_default(),
            mine: cli.dev || run.mine || file.mine.unwrap_or(false),
            miner_address,
            miner_address_from,
            miner_threads,
            mdns: run.mdns || file.mdns.unwrap_or(false),
            max_peers,
            mempool_max_bytes,
            dbcache_bytes,
            explorer: !cli.common.no_explorer && file.explorer.unwrap_or(true),
            compact_blocks: file.compact_blocks.unwrap_or(true),
            gossip_idontwant: file.gossip_idontwant.unwrap_or(true),
            block_announcements: file.block_announcements.unwrap_or(true),
            tx_announcements: file.tx_announcements.unwrap_or(true),
            tx_fetch_delay: file
                .tx_fetch_delay_ms
                .map(|ms| std::time::Duration::from_millis(ms.min(MAX_RELAY_TIMING_MS))),
            tx_fetch_delay_quiet: file
                .tx_fetch_delay_quiet_ms
                .map(|ms| std::time::Duration::from_millis(ms.min(MAX_RELAY_TIMING_MS))),
            announce_interval: file
                .announce_interval_ms
                .map(|ms| std::time::Duration::from_millis(ms.min(MAX_RELAY_TIMING_MS))),
            datadir,
        })
    }
}

/// `HOST:PORT` where HOST is an address or a name (`localhost:8645`); a name resolving to several
/// addresses takes the first IPv4 one, as `localhost` should mean 127.0.0.1.
pub fn resolve_socket_addr(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .with_context(|| format!("{s:?} is not HOST:PORT"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{s:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "rpc_adress = \"1.2.3.4:5\"\n").unwrap();
        let err = format!("{:#}", read_config_file(dir.path()).unwrap_err());
        assert!(err.contains("rpc_adress"), "{err}");
    }

    #[test]
    fn rpc_addr_takes_localhost() {
        assert_eq!(
            resolve_socket_addr("localhost:8645").unwrap(),
            "127.0.0.1:8645".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(resolve_socket_addr("127.0.0.1:1").unwrap().port(), 1);
        assert!(resolve_socket_addr("localhost").is_err());
    }

    #[test]
    fn relay_timings_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "announce_interval_ms = 100\ntx_fetch_delay_ms = 30\ntx_fetch_delay_quiet_ms = 20\n",
        )
        .unwrap();
        let file = read_config_file(dir.path()).unwrap();
        assert_eq!(file.announce_interval_ms, Some(100));
        assert_eq!(file.tx_fetch_delay_ms, Some(30));
        assert_eq!(file.tx_fetch_delay_quiet_ms, Some(20));
    }

    #[test]
    fn bad_value_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "max_peers = \"many\"\n").unwrap();
        let err = format!("{:#}", read_config_file(dir.path()).unwrap_err());
        assert!(err.contains("max_peers"), "{err}");
    }
}
