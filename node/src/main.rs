//! `cairnd`: the Cairn full node. A thin wiring layer: it reads the configuration, opens the
//! chain state, starts the chain task, the p2p service, the JSON-RPC server and the miner, and
//! shuts them down in order on SIGINT/SIGTERM or the `stop` RPC. It holds no consensus or
//! policy logic of its own.

mod app;
mod chain;
mod cli;
mod config;
mod dev;
mod metrics;
mod miner;
mod network;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Default log filter when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,libp2p=warn,libp2p_gossipsub=error";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace: this is for an operator.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = config::NodeConfig::resolve(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairnd")
        .build()?;
    let result = runtime.block_on(app::run(config));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    result
}
