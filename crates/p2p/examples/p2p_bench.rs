//! P2P benchmark with real swarms on 127.0.0.1, each figure beside its target:
//!
//! 1. blocks per second while a fresh node syncs 10,000 (and 2,000) nearly empty blocks from one
//!    peer over `/cairn/sync/1`;
//! 2. transaction propagation latency p50/p99 across 10 nodes (each dialling two earlier ones,
//!    so most receivers are several gossip hops from the publisher).
//!
//! The chain behind each node is the in-memory `MemoryChain` of `test_utils`: it checks linkage,
//! not consensus, so these are the network's figures, without validation or RocksDB (the
//! storage and consensus benchmarks measure those).
//!
//! `cargo run --release -p cairn-p2p --features test-utils --example p2p_bench -- [--blocks N] [--txs N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_p2p::test_utils::MemoryChain;
use cairn_p2p::{
    Acceptance, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, NetworkService,
};
use cairn_primitives::{Amount, OutPoint, SecretKey, Signature, Transaction, TxIn, TxOut, Txid};

const DEFAULT_BLOCKS: usize = 10_000;
const SMALL_SYNC: usize = 2_000;
const NODES: usize = 10;
const DEFAULT_TXS: usize = 200;
/// Design brief targets.
const SYNC_TARGET_BLOCKS_PER_SEC: f64 = 2_500.0;
const PROPAGATION_P99_TARGET_MS: f64 = 100.0;
const TIMEOUT: Duration = Duration::from_secs(300);

type Arrivals = Arc<Mutex<Vec<(Txid, Instant)>>>;

struct Node {
    handle: NetworkHandle,
    chain: Arc<MemoryChain>,
    addr: Multiaddr,
    arrivals: Arrivals,
}

/// Starts a node that accepts every transaction and every block that links (as a node would
/// after validating them).
async fn start(chain: Arc<MemoryChain>, bootnodes: Vec<Multiaddr>) -> Node {
    let mut config = NetworkConfig::local(chain.genesis());
    config.bootnodes = bootnodes;
    let (handle, mut events) = NetworkService::start(config, chain.clone())
        .await
        .expect("start");
    let addr = handle
        .listen_addrs()
        .await
        .into_iter()
        .next()
        .expect("listen address");
    let arrivals: Arrivals = Arc::default();
    let (h, c, a) = (handle.clone(), chain.clone(), Arc::clone(&arrivals));
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Transaction { tx, source, msg_id } => {
                    a.lock().unwrap().push((tx.txid(), Instant::now()));
                    let _ = h
                        .report_validation(msg_id, source, Acceptance::Accept)
                        .await;
                }
                NetworkEvent::Block {
                    block,
                    source,
                    msg_id,
                } => {
                    let verdict = if c.add_block(block).is_ok() {
                        Acceptance::Accept
                    } else {
                        Acceptance::Ignore
                    };
                    let _ = h.report_validation(msg_id, source, verdict).await;
                }
                _ => {}
            }
        }
    });
    Node {
        handle,
        chain,
        addr,
        arrivals,
    }
}

async fn wait(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Seconds for a fresh node to sync `n` blocks from one peer that has them.
async fn sync(n: usize, seed: u64) -> f64 {
    let source = Arc::new(MemoryChain::new(seed));
    source.mine(n);
    let a = start(source, vec![]).await;
    let started = Instant::now();
    let c = start(Arc::new(MemoryChain::new(seed)), vec![a.addr.clone()]).await;
    wait("sync", async || c.chain.height() == n as u64).await;
    let secs = started.elapsed().as_secs_f64();
    a.handle.shutdown().await;
    c.handle.shutdown().await;
    secs
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let blocks = arg(&args, "--blocks", DEFAULT_BLOCKS);
    let txs_n = arg(&args, "--txs", DEFAULT_TXS);

    // 1. Sync.
    let small = sync(SMALL_SYNC, 1).await;
    let big = sync(blocks, 2).await;

    // 2. Propagation across 10 nodes.
    let genesis_seed = 3;
    let mut nodes: Vec<Node> = Vec::new();
    for _ in 0..NODES {
        let boot: Vec<Multiaddr> = nodes.iter().rev().take(2).map(|n| n.addr.clone()).collect();
        nodes.push(start(Arc::new(MemoryChain::new(genesis_seed)), boot).await);
    }
    for n in &nodes {
        wait("peers", async || !n.handle.peers().await.is_empty()).await;
    }
    // Let the gossipsub meshes form (a few heartbeats).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let key = SecretKey::from_bytes(cairn_primitives::sha256(b"p2p bench")).unwrap();
    let mut sent: HashMap<Txid, Instant> = HashMap::new();
    for i in 0..txs_n as u64 {
        let tx = Transaction {
            version: Transaction::VERSION,
            inputs: vec![TxIn {
                prevout: OutPoint::new(Txid(cairn_primitives::sha256(&i.to_le_bytes())), 0),
                signature: Signature([1; 64]),
            }],
            outputs: vec![TxOut {
                value: Amount(10_000),
                pubkey: key.public_key(),
            }],
            lock_time: 0,
        };
        sent.insert(tx.txid(), Instant::now());
        nodes[0].handle.publish_tx(&tx).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let expected = txs_n * (NODES - 1);
    wait("every tx at every node", async || {
        nodes[1..]
            .iter()
            .map(|n| n.arrivals.lock().unwrap().len())
            .sum::<usize>()
            >= expected
    })
    .await;
    let mut lat: Vec<f64> = Vec::new();
    for n in &nodes[1..] {
        for (txid, at) in n.arrivals.lock().unwrap().iter() {
            lat.push(at.duration_since(sent[txid]).as_secs_f64() * 1_000.0);
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for n in nodes {
        n.handle.shutdown().await;
    }

    println!(
        "p2p benchmark (release={}, loopback, MemoryChain: no validation or storage)",
        !cfg!(debug_assertions)
    );
    println!(
        "  sync {SMALL_SYNC} blocks from one peer: {:.2} s = {:>6.0} blocks/s (target >= {SYNC_TARGET_BLOCKS_PER_SEC:.0}; Bitcoin Core here 1,239)",
        small,
        SMALL_SYNC as f64 / small
    );
    println!(
        "  sync {blocks} blocks from one peer: {:.2} s = {:>6.0} blocks/s (start-up and handshake included)",
        big,
        blocks as f64 / big
    );
    println!(
        "  tx propagation, {NODES} nodes, {txs_n} txs ({} arrivals): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < {PROPAGATION_P99_TARGET_MS:.0} ms)",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}
