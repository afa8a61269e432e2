//! Transaction relay under a burst, with real `cairnd` processes on 127.0.0.1: N nodes (each
//! dialling node 0 and the node before it; Kademlia finds the rest), T independent signed
//! transactions sent in JSON-RPC batches of B spread over all nodes as fast as the client can,
//! then every node's mempool polled (every 20 ms) until it holds all T. Prints, per node, when
//! it held every transaction (from the last send) and how many it still lacked at the end, and
//! the drop and repair counters from each node's `/metrics`.
//!
//! Loopback has no bandwidth limit: the shaped many-host figures come from the netns harness
//! (`tools/testnet`). Run with `tx_announcements = false` in every node's config
//! (`--gossip-only`) to see gossip alone.
//!
//! `cargo build --release -p cairnd && cargo run --release -p cairn-tests --example relay_bench -- [--nodes N] [--txs T] [--batch B] [--gossip-only]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, BlockHash, OutPoint};
use cairn_tests::{
    NodeOptions, TestNode, bench_arg, faucet_key, mine_until_pool_empty, post_json, signed_tx,
};
use serde_json::{Value, json};

const DEFAULT_NODES: usize = 12;
const DEFAULT_TXS: usize = 4_000;
const DEFAULT_BATCH: usize = 100;
/// Outputs per fan-out transaction (about 80 kB, under the mempool's size limit).
const FANOUT: usize = 2_000;
/// How long nodes get to converge after the last send.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);
/// Issue 20's target: every mempool holds every transaction within 10 s of the last send.
const TARGET: Duration = Duration::from_secs(10);

/// `n` confirmed coins of the faucet key on `node`'s chain: the genesis allocation fanned out
/// twice.
fn coins(node: &TestNode, n: usize, genesis: &BlockHash, addr: &str) -> Vec<(OutPoint, u64)> {
    let key = faucet_key();
    let utxos = node.rpc("getaddressutxos", json!([addr])).unwrap();
    let alloc = utxos
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["height"] == json!(0))
        .expect("genesis allocation")
        .clone();
    let alloc_op = OutPoint::new(
        alloc["txid"].as_str().unwrap().parse().unwrap(),
        alloc["vout"].as_u64().unwrap() as u32,
    );
    let per_fanout = n.div_ceil(FANOUT);
    let first_value = (alloc["value"].as_u64().unwrap() - 1_000_000) / per_fanout as u64;
    let first = signed_tx(&[alloc_op], &vec![first_value; per_fanout], &key, genesis);
    node.rpc("sendrawtransaction", json!([encode_hex(&first)]))
        .unwrap();
    mine_until_pool_empty(node, addr, 50).unwrap();
    let leaf_value = (first_value - 1_000_000) / FANOUT as u64;
    let mut out = Vec::new();
    for vout in 0..per_fanout {
        let f = signed_tx(
            &[OutPoint::new(first.txid(), vout as u32)],
            &vec![leaf_value; FANOUT],
            &key,
            genesis,
        );
        node.rpc("sendrawtransaction", json!([encode_hex(&f)]))
            .unwrap();
        out.extend((0..FANOUT).map(|i| (OutPoint::new(f.txid(), i as u32), leaf_value)));
    }
    mine_until_pool_empty(node, addr, 50).unwrap();
    out.truncate(n);
    out
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes_n = bench_arg(&args, "--nodes", DEFAULT_NODES);
    let n = bench_arg(&args, "--txs", DEFAULT_TXS);
    let batch = bench_arg(&args, "--batch", DEFAULT_BATCH);
    let gossip_only = args.iter().any(|a| a == "--gossip-only");
    let full_blocks = args.iter().any(|a| a == "--full-blocks");
    let no_idontwant = args.iter().any(|a| a == "--no-idontwant");
    let blocks = bench_arg(&args, "--blocks", 0);

    let start = |boot: &[String]| {
        let dir = tempfile::Builder::new()
            .prefix("cairn-relay-")
            .tempdir()
            .unwrap();
        let mut toml = String::new();
        if gossip_only {
            toml.push_str("tx_announcements = false\n");
        }
        if full_blocks {
            toml.push_str("compact_blocks = false\n");
        }
        if no_idontwant {
            toml.push_str("gossip_idontwant = false\n");
        }
        std::fs::write(dir.path().join("cairn.toml"), toml).unwrap();
        let mut a: Vec<String> = Vec::new();
        for b in boot {
            a.push("--bootnode".into());
            a.push(b.clone());
        }
        let node = TestNode::start(NodeOptions {
            dev: false,
            args: a,
            datadir: Some(dir.path().to_path_buf()),
        })
        .unwrap();
        (node, dir)
    };
    let (first, first_dir) = start(&[]);
    let info = first.rpc("getblockchaininfo", json!([])).unwrap();
    let genesis: BlockHash = info["genesishash"].as_str().unwrap().parse().unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let key = faucet_key();
    let addr = Address::new(key.public_key()).encode(&prefix).unwrap();
    let coins = coins(&first, n, &genesis, &addr);
    let height = first.height().unwrap();

    let mut nodes = vec![(first, first_dir)];
    for i in 1..nodes_n {
        let boot = vec![
            nodes[0].0.p2p_addr().unwrap(),
            nodes[i - 1].0.p2p_addr().unwrap(),
        ];
        nodes.push(start(&boot));
    }
    for (node, _) in &nodes {
        node.wait_height(height, Duration::from_secs(120)).unwrap();
    }
    // Let discovery and the gossip meshes settle.
    std::thread::sleep(Duration::from_secs(5));
    let peers: Vec<usize> = nodes
        .iter()
        .map(|(n, _)| {
            n.rpc("getconnectioncount", json!([]))
                .unwrap()
                .as_u64()
                .unwrap() as usize
        })
        .collect();

    let txs: Vec<String> = coins
        .iter()
        .map(|(op, v)| encode_hex(&signed_tx(&[*op], &[v - 1_000], &key, &genesis)))
        .collect();
    let sent_started = Instant::now();
    for (i, chunk) in txs.chunks(batch).enumerate() {
        let node = &nodes[i % nodes.len()].0;
        let calls: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, hex)| json!({"jsonrpc": "2.0", "id": j, "method": "sendrawtransaction", "params": [hex]}))
            .collect();
        let r = post_json(&node.rpc_url, &Value::Array(calls)).unwrap();
        for a in r.as_array().expect("batch answer") {
            assert!(a["error"].is_null(), "refused where sent: {a}");
        }
    }
    let last_send = Instant::now();
    let send_secs = last_send.duration_since(sent_started).as_secs_f64();

    let mut done_at: Vec<Option<Duration>> = vec![None; nodes.len()];
    let mut sizes = vec![0u64; nodes.len()];
    while last_send.elapsed() < CONVERGE_TIMEOUT && done_at.iter().any(Option::is_none) {
        for (i, (node, _)) in nodes.iter().enumerate() {
            if done_at[i].is_some() {
                continue;
            }
            sizes[i] = node.rpc("getmempoolinfo", json!([])).unwrap()["size"]
                .as_u64()
                .unwrap();
            if sizes[i] >= n as u64 {
                done_at[i] = Some(last_send.elapsed());
            }
        }
        std::thread::sleep(POLL);
    }

    println!(
        "relay_bench: {} nodes on loopback, {n} txs in batches of {batch} over all nodes, sent in {send_secs:.2} s, repair {}",
        nodes.len(),
        if gossip_only {
            "OFF (gossip only)"
        } else {
            "on"
        }
    );
    println!(
        "node peers  converged(s)  missing  gossip_dropped  queue_full  timeouts  late  announced  fetched  served  not_found  failed  rejected  publish_failed  low_score(gossip/publish/gray)"
    );
    let mut worst = Duration::ZERO;
    for (i, (node, _)) in nodes.iter().enumerate() {
        let m = ureq::get(&format!("{}metrics", node.rpc_url))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let at = done_at[i].map(|d| {
            worst = worst.max(d);
            format!("{:.2}", d.as_secs_f64())
        });
        println!(
            "{i:>4} {:>5}  {:>12}  {:>7}  {:>14}  {:>10}  {:>8}  {:>4}  {:>9}  {:>7}  {:>6}  {:>9}  {:>6}  {:>8}  {:>14}  {}/{}/{}",
            peers[i],
            at.unwrap_or_else(|| "never".into()),
            n as u64 - sizes[i].min(n as u64),
            metric(&m, "cairn_p2p_dropped_events_total"),
            metric(&m, "cairn_p2p_gossip_queue_full_total"),
            metric(&m, "cairn_p2p_gossip_send_timeout_total"),
            metric(&m, "cairn_p2p_gossip_validation_late_total"),
            metric(&m, "cairn_p2p_relay_announced_total"),
            metric(&m, "cairn_p2p_relay_txs_fetched_total"),
            metric(&m, "cairn_p2p_relay_txs_served_total"),
            metric(&m, "cairn_p2p_relay_tx_not_found_total"),
            metric(&m, "cairn_p2p_relay_requests_failed_total"),
            metric(&m, "cairn_transactions_rejected_total"),
            metric(&m, "cairn_p2p_gossip_publish_failed_total"),
            metric(&m, "cairn_p2p_gossip_peers_below_gossip"),
            metric(&m, "cairn_p2p_gossip_peers_below_publish"),
            metric(&m, "cairn_p2p_gossip_peers_graylisted"),
        );
    }
    let all = done_at.iter().all(Option::is_some);
    if blocks > 0 {
        mine_and_measure(&nodes, blocks, &addr, full_blocks, no_idontwant);
    }
    if args.iter().any(|a| a == "--keep") {
        for (node, dir) in nodes {
            drop(node);
            println!("kept {}", dir.keep().display());
        }
        return_report(all, worst);
        return;
    }
    return_report(all, worst);
}

fn return_report(all: bool, worst: Duration) {
    println!(
        "every mempool complete: {} (slowest {:.2} s after the last send; target {} s)",
        if all { "yes" } else { "NO" },
        worst.as_secs_f64(),
        TARGET.as_secs()
    );
}

/// Counters summed for the block phase, per node.
fn p2p_counters(node: &TestNode) -> [u64; 6] {
    let m = ureq::get(&format!("{}metrics", node.rpc_url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    [
        metric(&m, "cairn_p2p_gossip_bytes_in_total") + metric(&m, "cairn_p2p_sync_bytes_in_total"),
        metric(&m, "cairn_p2p_gossip_blocks_in_total"),
        metric(&m, "cairn_p2p_compact_rebuilt_total"),
        metric(&m, "cairn_p2p_compact_round_trips_total"),
        metric(&m, "cairn_p2p_compact_full_fallbacks_total"),
        metric(&m, "cairn_p2p_gossip_bytes_out_total")
            + metric(&m, "cairn_p2p_sync_bytes_out_total"),
    ]
}

/// Mines `blocks` blocks, each at another node, from the pools the burst filled; for each,
/// the time until every node's tip is it (polled every 20 ms), and per node the p2p payload
/// bytes received (gossip + sync + relay), the copies received and how it was rebuilt.
fn mine_and_measure(
    nodes: &[(TestNode, tempfile::TempDir)],
    blocks: usize,
    addr: &str,
    full: bool,
    no_idontwant: bool,
) {
    println!(
        "blocks ({} relay, IDONTWANT {}): size  ms_to_all  in_bytes/node(mean,max)  %_of_block(mean)  copies/node  rebuilt  round_trips  full_fallbacks",
        if full { "FULL-block" } else { "compact" },
        if no_idontwant { "off" } else { "on" }
    );
    for b in 0..blocks {
        std::thread::sleep(Duration::from_secs(1));
        let before: Vec<[u64; 6]> = nodes.iter().map(|(n, _)| p2p_counters(n)).collect();
        let miner = &nodes[(b * 7 + 3) % nodes.len()].0;
        let hash = miner.rpc("generatetoaddress", json!([1, addr])).unwrap()[0].clone();
        let t0 = Instant::now();
        let size = miner.rpc("getblock", json!([hash, 1])).unwrap()["size"]
            .as_u64()
            .unwrap();
        let mut pending: Vec<usize> = (0..nodes.len()).collect();
        while !pending.is_empty() && t0.elapsed() < Duration::from_secs(60) {
            pending.retain(|i| nodes[*i].0.rpc("getbestblockhash", json!([])).unwrap() != hash);
            std::thread::sleep(POLL);
        }
        let ms = t0.elapsed().as_millis();
        std::thread::sleep(Duration::from_secs(2));
        let after: Vec<[u64; 6]> = nodes.iter().map(|(n, _)| p2p_counters(n)).collect();
        let d = |i: usize, k: usize| after[i][k] - before[i][k];
        let others: Vec<usize> = (0..nodes.len())
            .filter(|i| !std::ptr::eq(&nodes[*i].0, miner))
            .collect();
        let ins: Vec<u64> = others.iter().map(|i| d(*i, 0)).collect();
        let mean = ins.iter().sum::<u64>() as f64 / ins.len() as f64;
        let copies = others.iter().map(|i| d(*i, 1)).sum::<u64>() as f64 / others.len() as f64;
        let sum = |k| others.iter().map(|i| d(*i, k)).sum::<u64>();
        println!(
            "  block {b}: {size} B  {ms} ms{}  {mean:.0}, {}  {:.2} %  {copies:.2}  {}/{}  {}  {}",
            if pending.is_empty() { "" } else { " (NOT all)" },
            ins.iter().max().unwrap_or(&0),
            100.0 * mean / size as f64,
            sum(2),
            others.len(),
            sum(3),
            sum(4),
        );
    }
}
