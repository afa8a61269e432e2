//! `cairnd`: the Cairn full node. A thin wiring layer: it reads the configuration, opens the
//! chain state, starts the chain task, the p2p service, the JSON-RPC server and the miner, and
//! shuts them down in order on SIGINT/SIGTERM or the `stop` RPC. It holds no consensus or
//! policy logic of its own.

mod app;
mod chain;
mod cli;
mod config;
mod dev;
mod lock;
mod metrics;
mod miner;
mod network;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Rust allocations go through mimalloc: under a batched RPC load glibc's allocator took ~9 % of
/// the node's CPU, much of it in lock waits (docs/decisions.md). RocksDB's own C++ allocations
/// stay on glibc, limited to [`MALLOC_ARENAS`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default log filter when `RUST_LOG` is unset. Kademlia warns about what is normal for a lone
/// node (a periodic bootstrap with no known peers); our own p2p logs report what matters.
const DEFAULT_LOG_FILTER: &str = "info,libp2p=warn,libp2p_gossipsub=error,libp2p_kad=error";
/// How long the runtime waits, after the node stopped, for blocking tasks still running (a
/// proof-of-work search winding down): everything with state has already closed.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// glibc malloc arenas, at most. By default glibc gives each thread that contends for the
/// allocator an arena of its own, up to 8 per core, and memory freed in one is not reused by
/// another: a syncing node (chain thread, signature workers, RocksDB, tokio) kept ~140 MiB
/// more resident that way (peak 559 MiB against 422 MiB with 2 arenas, same sync speed).
const MALLOC_ARENAS: libc::c_int = 2;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: `mallopt` only sets an allocator parameter; it is called first thing in `main`,
    // before any other thread exists, as glibc asks.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace: this is for an operator.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Colour when stderr is a terminal, never with `NO_COLOR` set (https://no-color.org).
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn run() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: escape codes in a log file or a pipe are noise.
        .with_ansi(use_colour())
        .init();
    let config = config::NodeConfig::resolve(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairnd")
        .build()?;
    // A fatal error is printed once, by `main`.
    let result = runtime.block_on(app::run(config));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    result
}
