//! Full-node sync benchmark between two real `cairnd` processes: a source node holds a chain, a
//! fresh node syncs it over `/cairn/sync/1` (headers first, then bodies, full validation,
//! RocksDB), and the figures come from the syncing node itself.
//!
//! Two chains:
//! - nearly empty blocks (coinbase only), mined on the source with `generatetoaddress`:
//!   blocks per second;
//! - full blocks of 200 one-in-two-out signed transactions, generated here and given to the
//!   source with `submitblock`: transactions per second beside the all-core BIP340 verify rate
//!   measured in the same run, the syncing node's peak RSS, the per-block time split (from its
//!   `/metrics`), and when its background indexes caught up.
//!
//! `cargo build --release --workspace --bins && cargo run --release -p cairn-tests --example sync_bench -- [--blocks N] [--full-blocks N] [--txs T] [--dbcache MIB] [--only empty|full]`
//! (`--dbcache`: the syncing node's UTXO cache, to see its RSS follow the setting).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_consensus::ChainParams;
use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, Block};
use cairn_storage::test_utils::TestChain;
use cairn_tests::{TestNode, bench_arg, faucet_key};
use serde_json::json;

const DEFAULT_BLOCKS: u64 = 2_000;
const DEFAULT_FULL_BLOCKS: usize = 2_000;
const DEFAULT_TXS_PER_BLOCK: usize = 200;
/// The node's default UTXO cache, MiB.
const DEFAULT_DBCACHE_MIB: u64 = (cairn_storage::config::DEFAULT_UTXO_CACHE_BYTES >> 20) as u64;
/// Blocks per `generatetoaddress` call.
const GENERATE_CHUNK: u64 = 500;
/// Design brief: Bitcoin Core syncs 2,000 nearly empty blocks from one peer at 1,239 blocks/s
/// on this machine; the target is 2,500.
const TARGET_BLOCKS_PER_SEC: f64 = 2_500.0;
/// Design brief: block connect while syncing ~200-tx blocks at >= 0.85 of the all-core verify
/// rate (Bitcoin Core here: 0.64-0.75).
const TARGET_VERIFY_RATIO: f64 = 0.85;
/// The syncing node's RSS beyond its UTXO cache, as docs/operations.md states it: RocksDB's
/// memtables (at most 96 MiB for all column families) and block cache (64 MiB), the download
/// window (1,024 blocks, ~80 MiB of 200-transaction blocks decoded), the blocks being connected,
/// the runtime and the allocator.
const RSS_OVERHEAD_MIB: u64 = 320;
const VERIFY_SAMPLES: usize = 20_000;
const VERIFY_ROUNDS: usize = 3;
/// Longest a sync may take before the benchmark gives up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1_800);
/// How often the syncing node's height is polled (the benchmark's resolution).
const POLL: Duration = Duration::from_millis(20);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    println!(
        "full-node sync benchmark (release={}, two cairnd processes on loopback, {} cores)",
        !cfg!(debug_assertions),
        threads()
    );
    if only.as_deref() != Some("full") {
        empty_chain(bench_arg(&args, "--blocks", DEFAULT_BLOCKS));
    }
    if only.as_deref() != Some("empty") {
        full_chain(
            bench_arg(&args, "--full-blocks", DEFAULT_FULL_BLOCKS),
            bench_arg(&args, "--txs", DEFAULT_TXS_PER_BLOCK),
            args.iter()
                .position(|a| a == "--dbcache")
                .and_then(|i| args.get(i + 1))
                .map(|v| v.parse().expect("--dbcache MIB")),
        );
    }
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn verify_rate(threads: usize) -> f64 {
    cairn_tests::verify_rate(threads, VERIFY_SAMPLES, VERIFY_ROUNDS)
}

/// Starts a fresh node syncing from `source` (with `extra` flags); returns it and the seconds
/// until its tip reached `height`.
fn sync_from(source: &TestNode, height: u64, extra: &[&str]) -> (TestNode, f64) {
    let addr = source.p2p_addr().unwrap();
    let t = Instant::now();
    let mut args = vec!["--bootnode", &addr];
    args.extend_from_slice(extra);
    let b = TestNode::run(&args).unwrap();
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while b.height().unwrap_or(0) < height {
        assert!(Instant::now() < deadline, "sync did not finish");
        std::thread::sleep(POLL);
    }
    (b, t.elapsed().as_secs_f64())
}

fn same_chain(a: &TestNode, b: &TestNode) {
    assert_eq!(
        a.rpc("getbestblockhash", json!([])).unwrap(),
        b.rpc("getbestblockhash", json!([])).unwrap()
    );
    assert_eq!(
        a.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"],
        b.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"]
    );
}

fn empty_chain(blocks: u64) {
    let a = TestNode::run(&[]).unwrap();
    let prefix = a.rpc("getblockchaininfo", json!([])).unwrap()["addressprefix"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = Address::new(faucet_key().public_key())
        .encode(&prefix)
        .unwrap();
    let t = Instant::now();
    let mut mined = 0;
    while mined < blocks {
        let n = GENERATE_CHUNK.min(blocks - mined);
        a.rpc("generatetoaddress", json!([n, addr])).unwrap();
        mined += n;
    }
    let mine_secs = t.elapsed().as_secs_f64();
    let (b, secs) = sync_from(&a, blocks, &[]);
    same_chain(&a, &b);
    println!("nearly empty blocks:");
    println!(
        "  mining {blocks} blocks on the source: {mine_secs:.2} s ({:.0} blocks/s)",
        blocks as f64 / mine_secs
    );
    println!(
        "  fresh node syncs {blocks} blocks: {secs:.2} s = {:.0} blocks/s, process start-up included (target >= {TARGET_BLOCKS_PER_SEC:.0}; Bitcoin Core here 1,239)",
        blocks as f64 / secs
    );
}

/// A `/metrics` sample's value (the first line starting with `name`).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The machine's busy and idle CPU ticks so far (`/proc/stat`, all cores; iowait counts as
/// idle).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v.get(3)? + v.get(4)?;
    let busy = v.iter().take(8).sum::<u64>() - idle;
    Some((busy, idle))
}

/// Peak resident memory of a process (`VmHWM`), bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `dbcache_mib`: passed to the syncing node when given (a node built before `--dbcache` runs
/// without it).
fn full_chain(n_blocks: usize, txs_per_block: usize, dbcache: Option<u64>) {
    let dbcache_mib = dbcache.unwrap_or(DEFAULT_DBCACHE_MIB);
    eprintln!("generating {n_blocks} blocks of {txs_per_block} signed transactions...");
    let t = Instant::now();
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<Block> = (0..n_blocks).map(|_| chain.mine(txs_per_block)).collect();
    let txs: usize = blocks.iter().map(|b| b.transactions.len()).sum();
    let bytes: usize = blocks.iter().map(|b| b.size()).sum();
    eprintln!(
        "generated in {:.1} s ({txs} transactions, {:.1} MB)",
        t.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );

    let a = TestNode::run(&[]).unwrap();
    let t = Instant::now();
    for b in &blocks {
        let r = a
            .rpc("submitblock", json!([encode_hex(b)]))
            .expect("source accepts the block");
        assert!(r.is_null(), "submitblock: {r}");
    }
    let source_secs = t.elapsed().as_secs_f64();
    eprintln!("source connected the chain in {source_secs:.1} s (submitblock, indexes inline)");

    // Measured with both nodes idle, just before the sync.
    let verify = verify_rate(threads());
    let verify_one = verify_rate(1);
    let dbcache_arg = dbcache_mib.to_string();
    let extra: Vec<&str> = match dbcache {
        Some(_) => vec!["--dbcache", &dbcache_arg],
        None => vec![],
    };
    let a_metrics = format!("{}metrics", a.rpc_url);
    let a_cpu = || {
        let text = ureq::get(&a_metrics).call().unwrap().into_string().unwrap();
        metric(&text, "process_cpu_seconds_total")
    };
    let a_cpu_before = a_cpu();
    let machine_before = machine_ticks();
    let (b, secs) = sync_from(&a, n_blocks as u64, &extra);
    let machine_after = machine_ticks();
    let a_cpu_sync = a_cpu() - a_cpu_before;
    // This machine's speed moves by tens of percent from minute to minute (a shared host):
    // measured again right after the sync, and the higher rate is the one compared with, so
    // a slow moment during the verify measurement cannot flatter the ratio.
    let verify_after = verify_rate(threads());
    let verify_before = verify;
    let verify = verify.max(verify_after);
    let pid = b.pid().expect("running");
    let rss = peak_rss(pid);
    let metrics_url = format!("{}metrics", b.rpc_url);
    let metrics_text = ureq::get(&metrics_url)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    // The indexes follow in the background; how long they take after the tip.
    let t_index = Instant::now();
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let info = b.rpc("getindexinfo", json!(["txindex"])).unwrap();
        if info["txindex"]["synced"] == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "indexes did not catch up");
        std::thread::sleep(POLL);
    }
    let index_secs = t_index.elapsed().as_secs_f64();
    // The indexer's catch-up after the tip runs through the same database (memtables, block
    // cache) with the UTXO cache still allocated: part of what the node costs to run.
    let rss_indexed = peak_rss(pid);
    let memory = ureq::get(&metrics_url)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    same_chain(&a, &b);
    let after = ureq::get(&metrics_url)
        .call()
        .unwrap()
        .into_string()
        .unwrap();

    let tps = txs as f64 / secs;
    let connected = metric(&metrics_text, "cairn_blocks_connected_total");
    let stage = |text: &str, s: &str| {
        metric(
            text,
            &format!("cairn_block_connect_seconds_total{{stage=\"{s}\"}}"),
        )
    };
    println!(
        "full blocks ({n_blocks} x {txs_per_block} one-in-two-out txs = {txs} txs, {:.1} MB):",
        bytes as f64 / 1e6
    );
    println!(
        "  raw BIP340 verify, all cores: {verify:>8.0} sig/s (before the sync {verify_before:.0}, after {verify_after:.0}; the higher is used), one core: {verify_one:.0} sig/s (best of {VERIFY_ROUNDS} each)"
    );
    println!(
        "  fresh node syncs to the tip: {secs:.2} s = {:.0} blocks/s, {tps:.0} tx/s = {:.2} x verify (target >= {TARGET_VERIFY_RATIO:.2}; Bitcoin Core here 0.64-0.75) -> {}",
        n_blocks as f64 / secs,
        tps / verify,
        if tps / verify >= TARGET_VERIFY_RATIO {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!(
        "  its indexes caught up {index_secs:.2} s after the tip ({} blocks by the background indexer)",
        metric(&after, "cairn_index_background_blocks_total")
    );
    // CPU time does not depend on what else the machine runs: the share of the syncing node's
    // CPU that went to signature checks (at the one-core rate) bounds the ratio reachable
    // with perfect parallelism on an idle machine.
    let cpu = metric(&metrics_text, "process_cpu_seconds_total");
    let sig_cpu = (txs - n_blocks) as f64 / verify_one;
    println!(
        "  syncing node CPU: {:.2} ms per block; signature checks at the one-core rate: {:.2} ms = {:.0}% of it",
        cpu * 1e3 / n_blocks as f64,
        sig_cpu * 1e3 / n_blocks as f64,
        100.0 * sig_cpu / cpu
    );
    println!(
        "  the source node, serving the blocks on the same cores: {a_cpu_sync:.2} s of CPU = {:.2} ms per block",
        a_cpu_sync * 1e3 / n_blocks as f64
    );
    if let (Some((busy0, idle0)), Some((busy1, idle1))) = (machine_before, machine_after) {
        let (busy, idle) = ((busy1 - busy0) as f64, (idle1 - idle0) as f64);
        println!(
            "  the machine during the sync: {:.0}% busy, {:.0}% idle (all processes, /proc/stat)",
            100.0 * busy / (busy + idle),
            100.0 * idle / (busy + idle)
        );
    }
    match (rss, rss_indexed) {
        (Some(r), Some(ri)) => println!(
            "  peak RSS of the syncing node: {:.0} MiB at the tip, {:.0} MiB once its indexes caught up (UTXO cache limit {dbcache_mib} MiB; docs/operations.md: cache + {RSS_OVERHEAD_MIB} MiB = {} MiB)",
            r as f64 / 1048576.0,
            ri as f64 / 1048576.0,
            dbcache_mib + RSS_OVERHEAD_MIB,
        ),
        _ => println!("  peak RSS: unavailable (no /proc)"),
    }
    let mib = |name: &str| metric(&memory, name) / 1048576.0;
    println!(
        "    of which, once indexed: UTXO cache table {:.0} MiB, RocksDB memtables {:.0} MiB, block cache {:.0} MiB, index and filter blocks {:.0} MiB",
        mib("cairn_utxo_cache_bytes"),
        mib("cairn_db_memtable_bytes"),
        mib("cairn_db_block_cache_bytes"),
        mib("cairn_db_table_readers_bytes"),
    );
    // The connect pipeline runs a block's signature checks beside the previous block's apply
    // and write and the next block's fetch: the stages overlap, so their sum exceeds the wall
    // time per block.
    println!(
        "  per block, syncing node (ms, mean over {connected} blocks; stages overlap, wall time per block {:.3} ms, start-up included):",
        secs * 1e3 / n_blocks as f64
    );
    for s in ["store", "fetch_inputs", "verify", "apply", "index", "write"] {
        let ms = stage(&metrics_text, s) * 1e3 / connected;
        println!("    {s:<17} {ms:>7.3}");
    }
    println!(
        "    {:<17} {:>7.3}  (indexer thread at nice 19, after the sync)",
        "background_index",
        stage(&after, "background_index") * 1e3 / connected
    );
    println!(
        "    {:<17} {:>7.3}  (UTXO cache flushes, total {:.2} s)",
        "flush",
        stage(&metrics_text, "flush") * 1e3 / connected,
        stage(&metrics_text, "flush")
    );
}
