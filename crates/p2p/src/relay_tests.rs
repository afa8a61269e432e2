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

/// Two nodes whose pools both hold `txs` (gossiped first), and a block of them mined at A.
async fn two_nodes_and_a_block(
    txs: usize,
    announce: bool,
    gossip_txs: bool,
) -> (TestNode, TestNode, cairn_primitives::Block) {
    two_nodes_and_a_block_in_mode(txs, announce, gossip_txs, true).await
}

/// As [`two_nodes_and_a_block`], with blocks announced by header (`block_announcements`,
/// pulled) or pushed compactly on gossip.
async fn two_nodes_and_a_block_in_mode(
    txs: usize,
    announce: bool,
    gossip_txs: bool,
    block_announcements: bool,
) -> (TestNode, TestNode, cairn_primitives::Block) {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |c| {
        c.tx_announcements = announce;
        c.block_announcements = block_announcements;
    })
    .await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |c| {
        c.tx_announcements = announce;
        c.block_announcements = block_announcements;
    })
    .await;
    wait_peers(&b, 1).await;
    // Subscriptions settle (a peer seen on the block topic before its compact subscription
    // arrives would be sent the full block).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let txs: Vec<_> = (0..txs as u32).map(|n| test_tx(70_000 + n)).collect();
    publish_tx(&a, &test_tx(1)).await;
    for tx in &txs {
        a.chain.add_tx(tx.clone());
        if gossip_txs {
            let _ = a.handle.publish_tx(tx).await;
        }
    }
    if gossip_txs {
        wait_for("txs gossiped", WAIT, async || {
            txs.iter().all(|t| b.chain.pool_contains(&t.txid()))
        })
        .await;
    }
    let block = a.chain.mine_with(txs);
    (a, b, block)
}

/// Publishes until gossipsub knows a peer on the compact topic.
async fn publish_block(node: &TestNode, block: &cairn_primitives::Block) {
    wait_for("publish block", WAIT, async || {
        node.handle.publish_block(block).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_block_rebuilt_from_the_pool_without_a_round_trip() {
    let (a, b, block) = two_nodes_and_a_block(200, true, true).await;
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("block rebuilt", WAIT, async || {
        b.chain.contains_block(&hash)
    })
    .await;
    let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
    assert_eq!(
        (
            mb.compact_received,
            mb.compact_rebuilt,
            mb.compact_round_trips
        ),
        (1, 1, 0),
        "{mb:?}"
    );
    assert_eq!(
        ma.full_blocks_for_legacy, 0,
        "no full block when every peer takes compact ones"
    );
    // Announced by header, pulled once from the announcer.
    assert_eq!(
        (
            mb.block_announcements_in,
            mb.compact_pulled,
            mb.compact_pull_failed
        ),
        (1, 1, 0),
        "{mb:?}"
    );
    assert_eq!(
        (
            ma.block_announcements_published,
            ma.compact_served,
            ma.compact_published
        ),
        (1, 1, 0),
        "{ma:?}"
    );
    let full = cairn_primitives::encoding::encoded_len(&block);
    let compact = crate::relay::compact::CompactBlock::from_block(&block, 1);
    let compact_len = cairn_primitives::encoding::encoded_len(&compact);
    println!(
        "block {full} bytes, compact {compact_len} bytes ({:.1} %)",
        100.0 * compact_len as f64 / full as f64
    );
    assert!(compact_len * 4 < full);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// With `block_announcements` off, the compact block itself is pushed on `cmpctblock`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_compact_block_rebuilt_without_announcement() {
    let (a, b, block) = two_nodes_and_a_block_in_mode(50, true, true, false).await;
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("block rebuilt", WAIT, async || {
        b.chain.contains_block(&hash)
    })
    .await;
    let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
    // Rebuilt once, without a round trip: from the pushed compact block, or from the one
    // pulled on A's `NewTip` if that came first (the pushed copy is then ignored).
    assert_eq!(
        (
            mb.compact_received,
            mb.compact_rebuilt,
            mb.compact_round_trips
        ),
        (1, 1, 0),
        "{mb:?}"
    );
    assert_eq!(
        (ma.compact_published, ma.block_announcements_published),
        (1, 0),
        "{ma:?}"
    );
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Three nodes that all know each other: each transaction reaches B and C from A and from
/// each other, so gossipsub drops copies as duplicates, and the node counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_duplicates_are_counted() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    let c = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![a.addr.clone(), b.addr.clone()],
        |_| {},
    )
    .await;
    wait_peers(&c, 2).await;
    wait_peers(&b, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let txs: Vec<_> = (0..20).map(|n| test_tx(90_000 + n)).collect();
    publish_tx(&a, &txs[0]).await;
    for tx in &txs {
        a.chain.add_tx(tx.clone());
        let _ = a.handle.publish_tx(tx).await;
    }
    let nodes = [&a, &b, &c];
    wait_for("txs everywhere", WAIT, async || {
        nodes
            .iter()
            .all(|n| txs.iter().all(|t| n.chain.pool_contains(&t.txid())))
    })
    .await;
    // Forwards still in flight land within a heartbeat or two.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m: Vec<_> = nodes.iter().map(|n| n.handle.metrics()).collect();
    let duplicates: u64 = m.iter().map(|m| m.gossip_duplicates).sum();
    assert!(duplicates >= 10, "{m:?}");
    assert_eq!(m.iter().map(|m| m.gossip_block_duplicates).sum::<u64>(), 0);
    for n in nodes {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_block_with_missing_transactions_takes_one_round_trip() {
    // Announcements off and nothing gossiped: B's pool lacks every transaction.
    let (a, b, block) = two_nodes_and_a_block(30, false, false).await;
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("block rebuilt", WAIT, async || {
        b.chain.contains_block(&hash)
    })
    .await;
    let mb = b.handle.metrics();
    assert_eq!(
        (mb.compact_round_trips, mb.compact_txs_requested),
        (1, 30),
        "{mb:?}"
    );
    assert_eq!(mb.compact_full_fallbacks, 0, "{mb:?}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_id_collision_falls_back_to_the_full_block_and_punishes_nobody() {
    let (a, b, block) = two_nodes_and_a_block(20, true, true).await;
    b.chain.simulate_short_id_collisions(true);
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("full block fetched", WAIT, async || {
        b.chain.contains_block(&hash)
    })
    .await;
    let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
    assert!(
        mb.compact_collisions >= 1 && mb.compact_full_fallbacks >= 1,
        "{mb:?}"
    );
    assert_eq!((ma.bans, mb.bans), (0, 0), "a collision is nobody's fault");
    assert_eq!(b.handle.peers().await.len(), 1, "still connected");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// A — B — C, where C takes only full blocks (compact blocks off: not subscribed to
/// `cmpctblock`). A's block reaches B compactly and C in full (B publishes it for C); C's
/// block reaches A and B in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_block_only_peer_gets_and_sends_full_blocks() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    let c = start_node(Arc::new(MemoryChain::new(1)), vec![b.addr.clone()], |cfg| {
        cfg.compact_blocks = false;
        cfg.target_peers = 1;
    })
    .await;
    wait_peers(&b, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let block = a.chain.mine_with(vec![test_tx(1), test_tx(2)]);
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("C gets A's block", WAIT, async || {
        c.chain.contains_block(&hash)
    })
    .await;
    let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
    // B hears the announcement; it may get the full block first when discovery linked A and
    // C too (A then publishes it in full for C as well).
    assert!(
        mb.block_announcements_in >= 1,
        "B got the announcement: {mb:?}"
    );
    assert!(
        ma.full_blocks_for_legacy + mb.full_blocks_for_legacy >= 1,
        "published in full for C: {ma:?} {mb:?}"
    );
    let mc = c.handle.metrics();
    assert_eq!((mc.compact_received, mc.block_announcements_in), (0, 0));

    let block2 = c.chain.mine_with(vec![test_tx(3)]);
    publish_block(&c, &block2).await;
    let hash2 = block2.hash();
    wait_for("A gets C's block", WAIT, async || {
        a.chain.contains_block(&hash2)
    })
    .await;
    for n in [&a, &b, &c] {
        assert_eq!(n.handle.metrics().bans, 0);
        n.handle.shutdown().await;
    }
}

/// A block gossip never brought (here: never published) still reaches a peer at once: the tip
/// change is announced over `/cairn/relay/1` (`NewTip`), and the peer, one block behind, pulls
/// the compact block from the announcer instead of waiting for the next status round (a
/// minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tip_gossip_missed_is_fetched_after_the_announcement() {
    let slow_status = |c: &mut crate::NetworkConfig| c.status_interval = Duration::from_secs(60);
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], slow_status).await;
    let b = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![a.addr.clone()],
        slow_status,
    )
    .await;
    wait_peers(&b, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let block = a.chain.mine(1).remove(0);
    let hash = block.hash();
    let started = Instant::now();
    wait_for("the block reaches B", Duration::from_secs(10), async || {
        b.chain.contains_block(&hash)
    })
    .await;
    println!(
        "unpublished block reached the peer in {:?}",
        started.elapsed()
    );
    // One block ahead: its compact form is pulled from the announcer of the tip.
    let mb = b.handle.metrics();
    assert_eq!((mb.compact_tip_pulls, mb.compact_pulled), (1, 1), "{mb:?}");
    assert_eq!(a.handle.metrics().compact_served, 1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// A block we publish is flooded to every subscriber of the announcement topic, so they are
/// not also sent our `NewTip` (it was ~0.8 kB on the wire per peer and block); the peer still
/// gets the block at once, by pulling it on the announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_block_reaches_subscribers_without_new_tips() {
    let (a, b, block) = two_nodes_and_a_block(20, true, true).await;
    // `block` is A's tip already (as a mined block is connected before it is published); A's
    // relay task gives a new tip one tick to be marked published.
    let before = b.handle.metrics().relay_new_tips_in;
    publish_block(&a, &block).await;
    let hash = block.hash();
    wait_for("the block reaches B", WAIT, async || {
        b.chain.contains_block(&hash)
    })
    .await;
    // Past the tick in which A would have sent it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mb = b.handle.metrics();
    assert_eq!(mb.relay_new_tips_in, before, "{mb:?}");
    assert_eq!(mb.compact_pulled, 1, "{mb:?}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Between Cairn nodes transactions travel by announcement; a peer that takes them from gossip
/// alone still gets them: B fetched A's transactions (A never gossiped them) and, because its
/// peer L speaks only gossipsub, publishes them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_only_peer_gets_what_its_neighbour_fetched() {
    use futures::StreamExt;
    use libp2p::gossipsub;
    use libp2p::swarm::SwarmEvent;

    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    wait_peers(&b, 1).await;
    let (mut light, _topic) = crate::tests::gossip_only_swarm(b.chain.genesis());
    light.dial(b.addr.clone()).expect("dial");

    let txs: Vec<_> = (0..20).map(|n| test_tx(70_000 + n)).collect();
    let wanted: std::collections::HashSet<Vec<u8>> =
        txs.iter().map(cairn_primitives::encoding::encode).collect();
    let mut got = std::collections::HashSet::new();
    let mut added = false;
    let deadline = Instant::now() + WAIT;
    while got.len() < wanted.len() {
        assert!(
            Instant::now() < deadline,
            "the gossip-only peer got {} of {}",
            got.len(),
            wanted.len()
        );
        if !added {
            // Once each node knows what its peers speak (identify): A has no peer that
            // needs gossip, B has one (L, no identify at all).
            let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
            if ma.tx_gossip_peers == 0 && mb.tx_gossip_peers == 1 && b.chain.pool_len() == 0 {
                assert!(!a.handle.gossip_only_peers() && b.handle.gossip_only_peers());
                for tx in &txs {
                    a.chain.add_tx(tx.clone());
                }
                added = true;
            }
        }
        let step = tokio::time::timeout(Duration::from_millis(50), light.select_next_some()).await;
        if let Ok(SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. })) = step
            && wanted.contains(&message.data)
        {
            got.insert(message.data);
        }
    }
    let (ma, mb) = (a.handle.metrics(), b.handle.metrics());
    assert_eq!(ma.tx_out, 0, "A gossiped nothing: {ma:?}");
    assert_eq!(mb.relay_txs_fetched, 20, "B fetched them: {mb:?}");
    assert!(mb.tx_out >= 20, "B published them for L: {mb:?}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}
