//! The repair path behind gossip (`/cairn/relay/1`) and compact blocks, with real swarms on
//! 127.0.0.1: what gossip loses is announced and fetched, a node that reconnects gets the pool
//! it missed, and blocks are rebuilt from the mempool (with or without a round trip, falling
//! back to the full block) or sent whole to a peer that takes only full blocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::test_utils::MemoryChain;
use crate::tests::{TestNode, WAIT, publish_tx, start_node, test_tx, wait_for, wait_peers};

/// How many of `txs` each node's pool lacks.
fn missing(nodes: &[TestNode], txs: &[cairn_primitives::Transaction]) -> Vec<usize> {
    nodes
        .iter()
        .map(|n| {
            txs.iter()
                .filter(|t| !n.chain.pool_contains(&t.txid()))
                .count()
        })
        .collect()
}

/// Four nodes in a line; the receivers' event queues hold 4 messages, so gossip drops most of
/// a 1,500-transaction burst (counted as `dropped_events`). With announcements on, every pool
/// converges; with them off, the loss stays.
async fn burst(announce: bool) -> (Vec<usize>, Vec<crate::MetricsSnapshot>, Duration) {
    let chain = || Arc::new(MemoryChain::new(1));
    let mut nodes: Vec<TestNode> =
        vec![start_node(chain(), vec![], |c| c.tx_announcements = announce).await];
    for i in 1..4 {
        let boot = vec![nodes[i - 1].addr.clone()];
        nodes.push(
            start_node(chain(), boot, |c| {
                c.event_queue = 4;
                c.tx_announcements = announce;
            })
            .await,
        );
        wait_peers(&nodes[i], 1).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let txs: Vec<_> = (0..1_500).map(|n| test_tx(10_000 + n)).collect();
    publish_tx(&nodes[0], &txs[0]).await;
    for tx in &txs {
        nodes[0].chain.add_tx(tx.clone());
        let _ = nodes[0].handle.publish_tx(tx).await;
    }
    let sent = Instant::now();
    let deadline = sent
        + if announce {
            WAIT
        } else {
            Duration::from_secs(5)
        };
    while Instant::now() < deadline && missing(&nodes, &txs).iter().any(|m| *m > 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = sent.elapsed();
    let result = missing(&nodes, &txs);
    let metrics = nodes.iter().map(|n| n.handle.metrics()).collect();
    for n in &nodes {
        n.handle.shutdown().await;
    }
    (result, metrics, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_alone_loses_a_burst_that_announcements_repair() {
    let (lost, metrics, _) = burst(false).await;
    let dropped: u64 = metrics.iter().map(|m| m.dropped_events).sum();
    println!("gossip only: missing per node {lost:?}, dropped events {dropped}");
    assert!(dropped > 0, "the tiny event queues must drop gossip");
    assert!(
        lost.iter().any(|m| *m > 0),
        "without repair the loss stays: {lost:?}"
    );

    let (lost, metrics, took) = burst(true).await;
    let fetched: u64 = metrics.iter().map(|m| m.relay_txs_fetched).sum();
    let dropped: u64 = metrics.iter().map(|m| m.dropped_events).sum();
    println!(
        "with announcements: missing per node {lost:?} after {took:?}, dropped events {dropped}, fetched {fetched}"
    );
    assert!(
        lost.iter().all(|m| *m == 0),
        "every pool converges: {lost:?}"
    );
    assert!(fetched > 0, "the repair path brought what gossip dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_reconnects_gets_the_pool_it_missed() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    wait_peers(&b, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // B leaves; A's pool fills meanwhile.
    b.handle.shutdown().await;
    let txs: Vec<_> = (0..300).map(|n| test_tx(50_000 + n)).collect();
    for tx in &txs {
        a.chain.add_tx(tx.clone());
    }
    // A newcomer C (B's restart: a fresh node on the same chain) connects and gets them all.
    let c = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    wait_for("the pool reaches the newcomer", WAIT, async || {
        c.chain.pool_len() == txs.len()
    })
    .await;
    let m = c.handle.metrics();
    assert_eq!(m.relay_txs_fetched, 300, "{m:?}");
    a.handle.shutdown().await;
    c.handle.shutdown().await;
}
