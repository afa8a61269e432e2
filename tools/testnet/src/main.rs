//! `cairn-testnet`: a many-host testnet on one Linux machine. Starts N real `cairnd` processes,
//! each in its own network namespace with its own address on a bridge and `tc tbf`-shaped links,
//! each knowing only one or two seed hosts; drives signed transactions and mining through their
//! RPC; measures propagation from the nodes' own WebSocket notifications, bytes from the
//! interfaces' counters, memory from `/proc`; runs scenarios (steady load, partition and heal,
//! churn, a late joiner); prints a table and writes a JSON report. See docs/testnet.md.
//!
//! It never touches anything it did not create: namespaces `cairn-tn-*`, links `ctn-*`,
//! addresses in 198.18.0.0/15, its own work dir.

mod events;
mod funds;
mod host;
mod network;
mod report;
mod scenarios;
mod signals;
mod topology;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::network::{Network, Options};
use crate::signals::Registry;

const DEFAULT_HOSTS: usize = 20;
const DEFAULT_SEEDS: u8 = 2;
const DEFAULT_RATE_MBIT: u32 = 20;
const DEFAULT_ROUNDS: usize = 8;
const DEFAULT_BLOCK_TXS: &str = "0,200,1000,3000";
const DEFAULT_PARTITION_TXS: usize = 200;
const DEFAULT_CHURN_TXS: usize = 300;
const DEFAULT_SYNC_BLOCKS: usize = 30;
const DEFAULT_SYNC_PEERS: &str = "1,2,4,8";
const DEFAULT_SETTLE_SECS: u64 = 20;
const DEFAULT_BLOCK_TIMEOUT_SECS: u64 = 30;
const DEFAULT_CONVERGE_TIMEOUT_SECS: u64 = 120;
/// Spare coins beyond what the scenarios need (refusals, rounding).
const SPARE_COINS: usize = 1_000;
const DEFAULT_BURST_TXS: usize = 10_000;
const DEFAULT_QUIET_SECS: f64 = 3.0;
const MAX_QUIET_SECS: f64 = 60.0;
const SMALL_BURST_TXS: usize = 100;

/// `--small`: a few hosts for a few seconds, the test suite's mode.
const SMALL_HOSTS: usize = 4;
const SMALL_ROUNDS: usize = 2;
const SMALL_BLOCK_TXS: [usize; 2] = [0, 20];
const SMALL_SIDE_TXS: usize = 10;
const SMALL_SYNC_BLOCKS: usize = 2;
const SMALL_SYNC_PEERS: [usize; 2] = [1, 2];
const SMALL_SETTLE_SECS: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Steady,
    Partition,
    Churn,
    LateJoiner,
    Burst,
}

/// Many-host Cairn testnet in Linux network namespaces (needs root).
#[derive(Debug, Parser)]
#[command(name = "cairn-testnet", version)]
struct Cli {
    /// Hosts (cairnd processes), each in its own namespace.
    #[arg(long, default_value_t = DEFAULT_HOSTS)]
    hosts: usize,
    /// Seed hosts (1 or 2): every other host starts knowing only these.
    #[arg(long, default_value_t = DEFAULT_SEEDS, value_parser = clap::value_parser!(u8).range(1..=2))]
    seeds: u8,
    /// Bandwidth of every host's link, each direction, Mbit/s (tc tbf).
    #[arg(long, default_value_t = DEFAULT_RATE_MBIT)]
    rate_mbit: u32,
    /// Scenarios to run, in order, on one network.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "steady,burst,partition,churn,late-joiner"
    )]
    scenarios: Vec<Scenario>,
    /// Steady load: rounds (transactions, then one block).
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
    /// Steady load: transactions per round, cycled (block sizes vary with it).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_BLOCK_TXS)]
    block_txs: Vec<usize>,
    /// Partition: transactions sent to each side while apart.
    #[arg(long, default_value_t = DEFAULT_PARTITION_TXS)]
    partition_txs: usize,
    /// Churn: hosts killed with SIGKILL and restarted (the seeds always among them; default a
    /// quarter of the hosts).
    #[arg(long)]
    churn: Option<usize>,
    /// Churn: transactions per load round.
    #[arg(long, default_value_t = DEFAULT_CHURN_TXS)]
    churn_txs: usize,
    /// Late joiner: full blocks in the chain it syncs.
    #[arg(long, default_value_t = DEFAULT_SYNC_BLOCKS)]
    sync_blocks: usize,
    /// Late joiner: numbers of serving peers to sync from.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SYNC_PEERS)]
    sync_peers: Vec<usize>,
    /// Seconds to wait for transactions to reach every mempool before mining.
    #[arg(long, default_value_t = DEFAULT_SETTLE_SECS)]
    settle_secs: u64,
    /// Seconds to wait for a block to reach every host.
    #[arg(long, default_value_t = DEFAULT_BLOCK_TIMEOUT_SECS)]
    block_timeout_secs: u64,
    /// Seconds the end check waits for one tip.
    #[arg(long, default_value_t = DEFAULT_CONVERGE_TIMEOUT_SECS)]
    converge_timeout_secs: u64,
    /// A few hosts for a few seconds (the test suite's mode); overrides the sizes above.
    #[arg(long)]
    small: bool,
    /// The cairnd binary (default: next to this program).
    #[arg(long, value_name = "FILE")]
    cairnd: Option<PathBuf>,
    /// Genesis file for every host (default: cairnd's bundled devnet).
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Where the JSON report is written.
    #[arg(long, value_name = "FILE", default_value = "testnet-report.json")]
    report: PathBuf,
    /// Work dir for the hosts' data dirs and logs (default: a new dir under /tmp).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Keep the work dir (data dirs and logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Seed of the random choices (which host gets a transaction, who mines, who is killed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A line of every host's config file (`cairn.toml`), as KEY=VALUE (a TOML value:
    /// `gossip_idontwant=false`, `compact_blocks=false`, `block_announcements=false`);
    /// repeatable.
    #[arg(long = "node-config", value_name = "KEY=VALUE")]
    node_config: Vec<String>,
    /// Seconds of quiet before each block is mined (gossipsub's IHAVE gossip of the last
    /// transactions lasts 3 heartbeats, 2.1 s): the block's byte window then holds its relay.
    #[arg(long, default_value_t = DEFAULT_QUIET_SECS)]
    quiet_secs: f64,
    /// Send transactions at this rate (tx/s over all hosts) in steady, partition and churn
    /// rounds; default: as fast as the hosts' RPC takes them (batches of 100).
    #[arg(long)]
    tx_rate: Option<f64>,
    /// Burst: transactions sent at once, spread over every host.
    #[arg(long, default_value_t = DEFAULT_BURST_TXS)]
    burst_txs: usize,
    /// Only remove what an earlier run left (namespaces cairn-tn-*, links ctn-*), then exit.
    #[arg(long)]
    clean: bool,
}

impl Cli {
    fn apply_small(&mut self) {
        if self.small {
            self.hosts = SMALL_HOSTS;
            self.rounds = SMALL_ROUNDS;
            self.block_txs = SMALL_BLOCK_TXS.to_vec();
            self.partition_txs = SMALL_SIDE_TXS;
            self.churn_txs = SMALL_SIDE_TXS;
            self.churn = Some(self.seeds.into());
            self.sync_blocks = SMALL_SYNC_BLOCKS;
            self.sync_peers = SMALL_SYNC_PEERS.to_vec();
            self.settle_secs = SMALL_SETTLE_SECS;
            self.burst_txs = SMALL_BURST_TXS;
        }
    }

    fn coins(&self) -> usize {
        let steady: usize = (0..self.rounds)
            .map(|r| {
                self.block_txs
                    .get(r % self.block_txs.len().max(1))
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        let burst = if self.scenarios.contains(&Scenario::Burst) {
            self.burst_txs
        } else {
            0
        };
        steady
            + burst
            + 2 * self.partition_txs
            + 2 * self.churn_txs
            + self.sync_blocks * 12
            + SPARE_COINS
    }
}

struct CleanupOnDrop(Registry);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        self.0.cleanup();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `KEY=VALUE` flags as `key = value` lines of a TOML file; the key must be a bare TOML key.
fn node_config_lines(flags: &[String]) -> Result<Vec<String>> {
    flags
        .iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("--node-config {f}: expected KEY=VALUE"))?;
            let k = k.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("--node-config {f}: not a bare key");
            }
            Ok(format!("{k} = {}", v.trim()))
        })
        .collect()
}

fn default_cairnd() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("own path")?;
    let dir = exe.parent().context("own directory")?;
    Ok(dir.join("cairnd"))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cairn-testnet: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false): the run completed and some scenario failed.
fn run() -> Result<bool> {
    let mut cli = Cli::parse();
    cli.apply_small();
    topology::check_privileges()?;
    let _lock = signals::RunLock::acquire()?;
    let registry = Registry::default();
    signals::install(registry.clone())?;
    // A panic unwinds through this and still removes everything.
    let _guard = CleanupOnDrop(registry.clone());
    let removed = registry.guarded(topology::sweep)?;
    if !removed.is_empty() {
        eprintln!(
            "removed leftovers of an earlier run: {}",
            removed.join(", ")
        );
    }
    if cli.clean {
        return Ok(true);
    }
    if let Some(w) = topology::bridge_filter_warning() {
        eprintln!("{w}");
    }
    if cli.hosts < 2 || cli.hosts > topology::MAX_HOSTS - 1 {
        bail!("--hosts must be 2 to {}", topology::MAX_HOSTS - 1);
    }
    let cairnd = match &cli.cairnd {
        Some(p) => p.clone(),
        None => default_cairnd()?,
    };
    if !cairnd.is_file() {
        bail!(
            "{} not found: build it (`cargo build --release -p cairnd`) or pass --cairnd",
            cairnd.display()
        );
    }
    let cairnd = cairnd.canonicalize()?;
    let workdir = match &cli.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("cairn-testnet-{}", std::process::id())),
    };
    std::fs::create_dir_all(&workdir)?;
    registry.set_workdir(workdir.clone(), cli.keep);
    let load_start = load_average();
    let opts = Options {
        hosts: cli.hosts,
        seeds: cli.seeds.into(),
        rate_mbit: cli.rate_mbit,
        cairnd: cairnd.clone(),
        genesis: cli.genesis.clone(),
        workdir: workdir.clone(),
        settle: Duration::from_secs(cli.settle_secs),
        block_timeout: Duration::from_secs(cli.block_timeout_secs),
        converge_timeout: Duration::from_secs(cli.converge_timeout_secs),
        coins: cli.coins(),
        node_config: node_config_lines(&cli.node_config)?,
        tx_rate: cli.tx_rate,
        quiet_before_block: Duration::from_secs_f64(cli.quiet_secs.clamp(0.0, MAX_QUIET_SECS)),
    };
    eprintln!(
        "starting {} hosts at {} Mbit/s (work dir {}, load {load_start})",
        cli.hosts,
        cli.rate_mbit,
        workdir.display()
    );
    let started = std::time::Instant::now();
    // The late joiner takes one more slot.
    let mut net = match Network::start(opts, registry.clone(), cli.seed, 1) {
        Ok(n) => n,
        Err(e) => {
            // The hosts' logs say why: kept.
            registry.keep_workdir();
            let notes = registry.cleanup();
            eprintln!("cleanup: {}", notes.join("; "));
            return Err(e);
        }
    };
    let start_s = started.elapsed().as_secs_f64();
    let peers_at_start = net.peer_counts(&net.live());
    let mut scenarios = Vec::new();
    for s in &cli.scenarios {
        let v = match s {
            Scenario::Steady => scenarios::run(&mut net, "steady", |n| {
                scenarios::steady(n, cli.rounds, &cli.block_txs)
            }),
            Scenario::Partition => scenarios::run(&mut net, "partition", |n| {
                scenarios::partition(n, cli.partition_txs)
            }),
            Scenario::Churn => {
                let victims = cli.churn.unwrap_or((cli.hosts / 4).max(cli.seeds.into()));
                scenarios::run(&mut net, "churn", |n| {
                    scenarios::churn(n, victims, cli.churn_txs)
                })
            }
            Scenario::LateJoiner => scenarios::run(&mut net, "late-joiner", |n| {
                scenarios::late_joiner(n, cli.sync_blocks, &cli.sync_peers)
            }),
            Scenario::Burst => {
                scenarios::run(&mut net, "burst", |n| scenarios::burst(n, cli.burst_txs))
            }
        };
        scenarios.push(v);
    }
    net.shutdown();
    let all_ok = scenarios.iter().all(|s| s["ok"] == json!(true));
    if !all_ok {
        // The hosts' logs say why a scenario failed: kept.
        registry.keep_workdir();
    }
    let notes = registry.cleanup();
    let report = json!({
        "harness": {
            "hosts": cli.hosts,
            "seeds": cli.seeds,
            "rate_mbit": cli.rate_mbit,
            "shaping": "tc tbf on each host's data link, upload and download; no latency model (netem is not available): delay is queueing and serialisation at the shaped rate",
            "cairnd": cairnd.display().to_string(),
            "seed": cli.seed,
            "small": cli.small,
            "start_seconds": (start_s * 10.0).round() / 10.0,
            "peers_at_start": peers_at_start,
            "load_start": load_start,
            "load_end": load_average(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "timestamps": "WebSocket notifications of every host (newtransactions, newblocks), stamped on arrival with the harness's clock",
            "node_config": cli.node_config,
            "tx_rate": cli.tx_rate,
            "cleanup": notes,
        },
        "scenarios": scenarios,
        "ok": all_ok,
    });
    std::fs::write(&cli.report, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", cli.report.display()))?;
    print!("{}", report::table(&report));
    println!("\nreport: {}", cli.report.display());
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_flags_become_toml_lines() {
        let ok = node_config_lines(&[
            "gossip_idontwant=false".into(),
            " tx_fetch_delay_ms = 100 ".into(),
        ]);
        assert_eq!(
            ok.ok(),
            Some(vec![
                "gossip_idontwant = false".to_string(),
                "tx_fetch_delay_ms = 100".to_string()
            ])
        );
        assert!(node_config_lines(&["no_equals_sign".into()]).is_err());
        assert!(
            node_config_lines(&["a.b=1".into()]).is_err(),
            "not a bare key"
        );
        assert!(node_config_lines(&["=1".into()]).is_err());
    }
}
