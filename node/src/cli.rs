//! Command-line interface. Flags override `cairn.toml` in the data dir, which overrides defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cairn full node.
#[derive(Debug, Parser)]
#[command(
    name = "cairnd",
    version,
    about = "Cairn full node: validates and relays transactions and blocks"
)]
pub struct Cli {
    /// Start a fresh single-node dev chain with mining on and a funded dev wallet.
    #[arg(long)]
    pub dev: bool,

    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Run(RunArgs),
}

/// Flags accepted both with `--dev` and with `run`.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Data directory (default: ~/.cairn/dev with --dev).
    #[arg(long, global = true, value_name = "DIR")]
    pub datadir: Option<PathBuf>,

    /// JSON-RPC listen address (default 127.0.0.1:8645; HOST may be a name such as localhost).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub rpc_addr: Option<String>,

    /// P2P listen multiaddr (repeatable; default /ip4/0.0.0.0/tcp/9645, with --dev
    /// /ip4/127.0.0.1/tcp/9645).
    #[arg(long = "p2p-listen", global = true, value_name = "MULTIADDR")]
    pub p2p_listen: Vec<String>,

    /// Do not serve the block explorer on the RPC port.
    #[arg(long, global = true)]
    pub no_explorer: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Genesis file defining the chain (default: the bundled devnet genesis.json).
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,

    /// Peer to connect to at start (repeatable); `/p2p/<peer id>` may be omitted.
    #[arg(long = "bootnode", value_name = "MULTIADDR")]
    pub bootnodes: Vec<String>,

    /// Mine blocks.
    #[arg(long, requires = "miner_address")]
    pub mine: bool,

    /// Address that receives mined coins.
    #[arg(long, value_name = "ADDR")]
    pub miner_address: Option<String>,

    /// Mining threads.
    #[arg(long, value_name = "N")]
    pub miner_threads: Option<usize>,

    /// Discover peers on the LAN with mDNS.
    #[arg(long)]
    pub mdns: bool,

    /// Maximum connected peers.
    #[arg(long, value_name = "N")]
    pub max_peers: Option<u32>,

    /// UTXO cache size in MiB, as Bitcoin Core's -dbcache (default 256; 0 writes every
    /// block's UTXO changes at once). Overrides dbcache_bytes in cairn.toml.
    #[arg(long, value_name = "MIB")]
    pub dbcache: Option<u64>,
}
