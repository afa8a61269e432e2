//! Real swarms on 127.0.0.1 (ports chosen by the OS), every wait bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_primitives::{Amount, Transaction, TxOut, XOnlyPublicKey};
use tokio::sync::mpsc;

use crate::test_utils::MemoryChain;
use crate::{
    Acceptance, ChainAccess, GossipKind, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle,
    NetworkService, SyncRequest,
};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// What a test node's validator saw.
#[derive(Debug)]
pub(crate) enum Seen {
    Tx(Transaction, Instant),
    Block,
}

pub(crate) struct TestNode {
    pub(crate) handle: NetworkHandle,
    pub(crate) chain: Arc<MemoryChain>,
    pub(crate) seen: mpsc::UnboundedReceiver<Seen>,
    pub(crate) addr: Multiaddr,
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Starts a node with a validator task that behaves like the real node: txs accepted, blocks
/// added to the chain (unknown parent: Ignore + sync), invalid blocks rejected.
pub(crate) async fn start_node(
    chain: Arc<MemoryChain>,
    bootnodes: Vec<Multiaddr>,
    tweak: impl FnOnce(&mut NetworkConfig),
) -> TestNode {
    init_tracing();
    let mut config = NetworkConfig::local(chain.genesis());
    config.bootnodes = bootnodes;
    tweak(&mut config);
    let (handle, mut events) = NetworkService::start(config, chain.clone())
        .await
        .expect("start network");
    let addr = handle
        .listen_addrs()
        .await
        .into_iter()
        .next()
        .expect("a listen address");
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (h, c) = (handle.clone(), chain.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Transaction { tx, source, msg_id } => {
                    c.add_tx(tx.clone());
                    let _ = seen_tx.send(Seen::Tx(tx, Instant::now()));
                    let _ = h
                        .report_validation(msg_id, source, Acceptance::Accept)
                        .await;
                }
                NetworkEvent::Block {
                    block,
                    source,
                    msg_id,
                } => {
                    let verdict = if c.contains_block(&block.header.prev_hash) {
                        match c.add_block(block.clone()) {
                            Ok(()) => {
                                // As the node does: peers that take only full blocks get it.
                                h.relay_block_to_full_block_peers(Arc::new(block.clone()))
                                    .await;
                                Acceptance::Accept
                            }
                            Err(_) => Acceptance::Reject,
                        }
                    } else {
                        let _ = h.sync_with(source).await;
                        Acceptance::Ignore
                    };
                    let _ = h.report_validation(msg_id, source, verdict).await;
                    let _ = seen_tx.send(Seen::Block);
                }
                _ => {}
            }
        }
    });
    TestNode {
        handle,
        chain,
        seen,
        addr,
    }
}

pub(crate) async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, timeout: Duration, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `node`'s chain reaches `height`.
pub(crate) async fn wait_synced(node: &TestNode, height: u64, timeout: Duration) {
    wait_for("full sync", timeout, async || node.chain.height() == height).await;
}

/// Whether `node` has a connection to `peer` now.
pub(crate) async fn connected_to(node: &TestNode, peer: libp2p::PeerId) -> bool {
    node.handle.peers().await.iter().any(|p| p.peer_id == peer)
}

pub(crate) async fn wait_peers(node: &TestNode, n: usize) {
    wait_for("peers", WAIT, async || node.handle.peers().await.len() >= n).await;
}

pub(crate) fn test_tx(n: u32) -> Transaction {
    Transaction {
        version: Transaction::VERSION,
        inputs: Vec::new(),
        outputs: vec![TxOut {
            value: Amount::from_base_units(u64::from(n)),
            pubkey: XOnlyPublicKey([7; 32]),
        }],
        lock_time: n,
    }
}

/// Publishes until gossipsub knows a subscribed peer (subscriptions arrive just after connect).
pub(crate) async fn publish_tx(node: &TestNode, tx: &Transaction) {
    wait_for("publish tx", WAIT, async || {
        node.handle.publish_tx(tx).await.is_ok()
    })
    .await;
}

pub(crate) async fn next_tx(node: &mut TestNode, want: &Transaction) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, node.seen.recv()).await {
            Ok(Some(Seen::Tx(tx, at))) if tx == *want => return at,
            Ok(Some(_)) => {}
            _ => panic!("tx not received"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_tx_and_block() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let mut b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    wait_peers(&a, 1).await;
    wait_peers(&b, 1).await;

    let tx = test_tx(1);
    publish_tx(&a, &tx).await;
    next_tx(&mut b, &tx).await;

    let block = a.chain.mine(1).remove(0);
    a.handle.publish_block(&block).await.expect("publish block");
    let hash = block.hash();
    wait_for("block", WAIT, async || b.chain.contains_block(&hash)).await;
    assert_eq!(b.chain.height(), 1);
    let m = b.handle.metrics();
    assert!(m.tx_in >= 1 && m.blocks_in >= 1, "{m:?}");
    let info = b.handle.peers().await;
    assert_eq!(info[0].peer_id, a.handle.local_peer_id());
    assert!(info[0].status.is_some() || info[0].supports_sync.is_some());
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_in_a_line_relay_end_to_end() {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..5 {
        let boot = nodes
            .last()
            .map(|n: &TestNode| vec![n.addr.clone()])
            .unwrap_or_default();
        nodes.push(start_node(Arc::new(MemoryChain::new(1)), boot, |_| {}).await);
        if i > 0 {
            wait_peers(&nodes[i], 1).await;
        }
    }
    // Let the meshes form (a couple of gossipsub heartbeats).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for n in 0..20 {
        let tx = test_tx(100 + n);
        let sent = Instant::now();
        publish_tx(&nodes[0], &tx).await;
        let (first, rest) = nodes.split_at_mut(4);
        let _ = first;
        let at = next_tx(&mut rest[0], &tx).await;
        latencies.push(at.duration_since(sent));
    }
    latencies.sort();
    println!(
        "tx propagation over 4 hops: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    let block = nodes[0].chain.mine(1).remove(0);
    nodes[0]
        .handle
        .publish_block(&block)
        .await
        .expect("publish");
    let hash = block.hash();
    for node in &nodes[1..] {
        wait_for("block relayed", WAIT, async || {
            node.chain.contains_block(&hash)
        })
        .await;
    }
    for node in &nodes {
        node.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_node_syncs_from_two_peers_while_one_dies() {
    const N: usize = 2000;
    let source = Arc::new(MemoryChain::new(1));
    let blocks = source.mine(N);
    let other = Arc::new(MemoryChain::new(1));
    for b in &blocks {
        other.add_block(b.clone()).expect("copy");
    }
    let a = start_node(source.clone(), vec![], |_| {}).await;
    let b = start_node(other, vec![], |_| {}).await;
    let start = Instant::now();
    // Small batches so the download is still running when `b` dies.
    let c = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![a.addr.clone(), b.addr.clone()],
        |c| {
            c.blocks_per_request = 8;
            c.requests_in_flight_per_peer = 2;
        },
    )
    .await;
    wait_for("partial sync", WAIT, async || c.chain.height() >= 200).await;
    let killed_at = c.chain.height();
    b.handle.shutdown().await;
    wait_synced(&c, N as u64, Duration::from_secs(120)).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "synced {N} blocks in {secs:.2}s ({:.0} blocks/s, 8 per request); peer killed at height {killed_at}",
        N as f64 / secs
    );
    assert_eq!(c.chain.tip(), source.tip());
    assert!(killed_at < N as u64, "peer was killed mid-sync");
    a.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_throughput_from_one_peer() {
    const N: usize = 2000;
    let source = Arc::new(MemoryChain::new(1));
    source.mine(N);
    let a = start_node(source.clone(), vec![], |_| {}).await;
    let start = Instant::now();
    let c = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |_| {}).await;
    wait_synced(&c, N as u64, Duration::from_secs(120)).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "synced {N} blocks from one peer in {secs:.2}s ({:.0} blocks/s, start-up included)",
        N as f64 / secs
    );
    a.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_handed_over_while_the_chain_connects() {
    // A chain that takes a while per batch: the driver hands it the next batch before the
    // answer comes (so the chain never waits for the driver) and downloads nothing twice
    // meanwhile (the blocks of a batch in the chain's hands are not stored yet, so
    // `missing_blocks` still names them).
    const N: usize = 300;
    let source = Arc::new(MemoryChain::new(1));
    source.mine(N);
    let a = start_node(source.clone(), vec![], |_| {}).await;
    let syncing = Arc::new(MemoryChain::new(1));
    syncing.slow_batches(Duration::from_millis(40));
    let c = start_node(syncing.clone(), vec![a.addr.clone()], |_| {}).await;
    wait_synced(&c, N as u64, Duration::from_secs(60)).await;
    assert_eq!(
        syncing.max_concurrent_batches(),
        crate::sync::MAX_SUBMITS_IN_FLIGHT
    );
    assert_eq!(
        source.blocks_served(),
        N as u64,
        "a block was downloaded twice"
    );
    a.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_window_is_bounded_in_bytes() {
    // While the chain is busy, the driver downloads ahead only as many blocks as fit in
    // `block_window_bytes` at the average size seen (40 here), not `block_window` (1,024).
    const N: usize = 300;
    const WINDOW_BLOCKS: usize = 40;
    let source = Arc::new(MemoryChain::new(1));
    let blocks = source.mine(N);
    let size = blocks
        .iter()
        .map(|b| cairn_primitives::encoding::encode(b).len())
        .max()
        .expect("blocks");
    let a = start_node(source.clone(), vec![], |_| {}).await;
    let syncing = Arc::new(MemoryChain::new(1));
    syncing.slow_batches(Duration::from_millis(200));
    let c = start_node(syncing.clone(), vec![a.addr.clone()], |config| {
        config.block_window_bytes = WINDOW_BLOCKS * size;
        config.blocks_per_request = 8;
    })
    .await;
    wait_for("the first blocks", WAIT, async || syncing.height() > 0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let connected = syncing.height();
    let held = source.blocks_served().saturating_sub(connected);
    // The window, the batches in the chain's hands, and one request's worth of slack.
    let bound = (WINDOW_BLOCKS
        + crate::sync::MAX_SUBMITS_IN_FLIGHT * crate::sync::MAX_SUBMIT_BATCH_BLOCKS
        + 8) as u64;
    assert!(
        held <= bound,
        "{held} blocks downloaded ahead of {connected} connected (bound {bound})"
    );
    wait_synced(&c, N as u64, Duration::from_secs(60)).await;
    a.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_block_does_not_cost_honest_peers_their_answers() {
    // The liar serves the honest chain's headers with every body mutated, so the first block
    // it delivers is refused and the download window is reset. The honest peer answers slowly:
    // its requests are still in flight at the reset, and their answers match no slot any more.
    // They are not stalls; counted as such, they disconnected the honest peer.
    const N: usize = 200;
    let honest_chain = Arc::new(MemoryChain::new(1));
    let blocks = honest_chain.mine(N);
    honest_chain.slow_serving(Duration::from_millis(300));
    let liar_chain = Arc::new(MemoryChain::new(1));
    for block in &blocks {
        let mut bad = block.clone();
        bad.transactions.push(test_tx(7)); // same header, body no longer matches it
        liar_chain.force_block(bad);
    }
    let honest = start_node(honest_chain, vec![], |_| {}).await;
    let liar = start_node(liar_chain, vec![], |_| {}).await;
    let c = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![honest.addr.clone(), liar.addr.clone()],
        |config| config.blocks_per_request = 8,
    )
    .await;
    wait_synced(&c, N as u64, Duration::from_secs(60)).await;
    let metrics = c.handle.metrics();
    assert!(metrics.bans >= 1, "the liar was not banned");
    assert_eq!(
        metrics.stalled_peers, 0,
        "an honest peer was dropped as stalled"
    );
    assert!(connected_to(&c, honest.handle.local_peer_id()).await);
    for node in [honest, liar, c] {
        node.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_block_with_unknown_parent_triggers_sync() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], |c| {
        // Make the periodic status refresh irrelevant: only the gossip path can trigger sync.
        c.status_interval = Duration::from_secs(3600);
    })
    .await;
    wait_peers(&b, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut blocks = a.chain.mine(50);
    let last = blocks.pop().expect("blocks");
    wait_for("publish", WAIT, async || {
        a.handle.publish_block(&last).await.is_ok()
    })
    .await;
    let hash = last.hash();
    wait_for("sync after orphan", WAIT, async || b.chain.height() >= 49).await;
    // The announced block itself is served by sync too (it is on a's chain).
    wait_for("tip", WAIT, async || b.chain.contains_block(&hash)).await;
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// A node saves the peers it was connected to in its data dir, and after a restart dials them
/// at once: here with no bootnode and no discovery it could use otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_dials_the_peers_of_its_last_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let with_dir = |c: &mut NetworkConfig| c.data_dir = Some(dir.path().to_path_buf());
    let b = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![a.addr.clone()],
        with_dir,
    )
    .await;
    wait_peers(&b, 1).await;
    // Identify tells B where A listens; the book is written at shutdown.
    let peers_file = dir.path().join("peers.txt");
    wait_for("identify", WAIT, async || {
        b.handle
            .peers()
            .await
            .iter()
            .any(|p| !p.protocols.is_empty())
    })
    .await;
    b.handle.shutdown().await;
    let saved = std::fs::read_to_string(&peers_file).expect("peers file");
    assert!(
        saved.contains(&a.handle.local_peer_id().to_string()),
        "{saved}"
    );
    let restarted = start_node(Arc::new(MemoryChain::new(1)), vec![], with_dir).await;
    wait_peers(&restarted, 1).await;
    a.handle.shutdown().await;
    restarted.handle.shutdown().await;
}

/// Each side's status request carries its own status, so a node skips the periodic request
/// to a peer that asked it within the interval: a pair exchanges about one status per
/// interval, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_exchanges_one_status_per_interval() {
    const INTERVAL: Duration = Duration::from_millis(200);
    const ROUNDS: u64 = 15;
    let fast = |c: &mut crate::NetworkConfig| c.status_interval = INTERVAL;
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], fast).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![a.addr.clone()], fast).await;
    wait_peers(&b, 1).await;
    let sent = || a.handle.metrics().sync_requests_out + b.handle.metrics().sync_requests_out;
    let before = sent();
    tokio::time::sleep(INTERVAL * ROUNDS as u32).await;
    let exchanged = sent() - before;
    // Both asking every round would be 2 x ROUNDS; one per round (plus a round of slack for
    // the timers' phases) is what the skip allows.
    assert!(
        (ROUNDS / 2..=ROUNDS + 2).contains(&exchanged),
        "{exchanged} status requests in {ROUNDS} intervals"
    );
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_other_genesis_is_refused() {
    let a = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let b = start_node(Arc::new(MemoryChain::new(2)), vec![a.addr.clone()], |_| {}).await;
    wait_for("ban", WAIT, async || {
        a.handle.metrics().bans >= 1 || b.handle.metrics().bans >= 1
    })
    .await;
    wait_for("disconnect", WAIT, async || {
        a.handle.peers().await.is_empty() && b.handle.peers().await.is_empty()
    })
    .await;
    // A redial is refused, or dropped once the status exchange shows the other genesis: no
    // connection survives. (Under load the second takes longer than a fixed pause: polled.)
    let _ = b.handle.dial(a.addr.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for("no connection after the redial", WAIT, async || {
        a.handle.peers().await.is_empty() && b.handle.peers().await.is_empty()
    })
    .await;
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

enum Attack {
    GarbageGossip,
    OversizedRequest,
    MalformedRequest,
    RequestFlood,
}

async fn attack_is_banned_while_honest_traffic_flows(attack: Attack) {
    let flood = matches!(attack, Attack::RequestFlood);
    let mut victim = start_node(Arc::new(MemoryChain::new(1)), vec![], |c| {
        if flood {
            // A low limit so that 400 requests are a flood whatever the machine's speed.
            c.requests_per_second = 10;
            c.request_burst = 10;
        }
    })
    .await;
    let honest = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![victim.addr.clone()],
        |_| {},
    )
    .await;
    let attacker = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![victim.addr.clone()],
        |_| {},
    )
    .await;
    wait_peers(&victim, 2).await;
    let victim_id = victim.handle.local_peer_id();
    let attacker_id = attacker.handle.local_peer_id();
    match attack {
        Attack::GarbageGossip => {
            wait_for("garbage published", WAIT, async || {
                attacker
                    .handle
                    .publish_bytes(GossipKind::Tx, vec![0xff; 50])
                    .await
                    .is_ok()
            })
            .await;
        }
        Attack::OversizedRequest => {
            let _ = attacker
                .handle
                .request_bytes(victim_id, vec![0u8; 200_000])
                .await;
        }
        Attack::MalformedRequest => {
            let _ = attacker
                .handle
                .request_bytes(victim_id, vec![9u8; 40])
                .await;
        }
        Attack::RequestFlood => {
            // The attacker's own side bounds requests in flight, so not every request of a
            // burst leaves it: keep flooding, a burst at a time, until the victim bans it.
            let deadline = Instant::now() + WAIT;
            while victim.handle.metrics().bans == 0 && Instant::now() < deadline {
                let mut tasks = Vec::new();
                for _ in 0..100 {
                    let h = attacker.handle.clone();
                    tasks.push(tokio::spawn(async move {
                        let req = SyncRequest::GetHeaders {
                            locator: vec![],
                            max: 1,
                        };
                        let _ = h.request(victim_id, &req).await;
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
        }
    }
    wait_for("attacker banned", WAIT, async || {
        victim.handle.metrics().bans >= 1 && !connected_to(&victim, attacker_id).await
    })
    .await;
    assert!(victim.handle.metrics().invalid_messages >= 1);
    // Honest traffic still flows.
    let tx = test_tx(7);
    publish_tx(&honest, &tx).await;
    next_tx(&mut victim, &tx).await;
    assert!(connected_to(&victim, honest.handle.local_peer_id()).await);
    for n in [&victim, &honest, &attacker] {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gossip_gets_sender_banned() {
    attack_is_banned_while_honest_traffic_flows(Attack::GarbageGossip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sync_request_gets_sender_banned() {
    attack_is_banned_while_honest_traffic_flows(Attack::OversizedRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sync_request_gets_sender_banned() {
    attack_is_banned_while_honest_traffic_flows(Attack::MalformedRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_gets_sender_banned() {
    attack_is_banned_while_honest_traffic_flows(Attack::RequestFlood).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_synced_block_gets_sender_banned() {
    // The liar serves a block whose merkle root does not match: the node rejects it.
    let liar_chain = Arc::new(MemoryChain::new(1));
    let good = liar_chain.mine(3);
    let mut bad = crate::test_utils::child_block(&good[2].header, 4, 0, vec![test_tx(1)]);
    bad.transactions.push(test_tx(2)); // breaks the merkle root after the fact
    liar_chain.force_block(bad);
    let liar = start_node(liar_chain, vec![], |_| {}).await;
    let c = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![liar.addr.clone()],
        |_| {},
    )
    .await;
    wait_for("ban", WAIT, async || c.handle.metrics().bans >= 1).await;
    assert!(c.chain.height() >= 3 && c.chain.height() < 4);
    liar.handle.shutdown().await;
    c.handle.shutdown().await;
}

#[test]
fn node_key_persists_with_private_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k1 = crate::load_or_create_node_key(dir.path()).expect("create");
    let k2 = crate::load_or_create_node_key(dir.path()).expect("load");
    assert_eq!(k1.public().to_peer_id(), k2.public().to_peer_id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(crate::config::NODE_KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn serving_respects_limits() {
    let chain = MemoryChain::new(1);
    chain.mine(10);
    let answer = |request| {
        cairn_primitives::encoding::decode::<crate::SyncResponse>(&crate::sync::answer(
            &chain,
            request,
            1 << 20,
        ))
        .expect("a canonical response")
    };
    let r = answer(SyncRequest::GetHeaders {
        locator: vec![chain.genesis()],
        max: 100_000,
    });
    assert!(matches!(r, crate::SyncResponse::Headers(h) if h.len() == 10));
    let hashes: Vec<_> = (0..200).map(|_| chain.tip()).collect();
    assert!(matches!(
        answer(SyncRequest::GetBlocks { hashes }),
        crate::SyncResponse::Error(_)
    ));
    // Blocks are served within the byte budget, as stored.
    let all: Vec<_> = (1..=10).map(|_| chain.tip()).collect();
    let budget =
        3 * cairn_primitives::encoding::encoded_len(&chain.block(&chain.tip()).expect("tip")) + 12;
    let served = cairn_primitives::encoding::decode::<crate::SyncResponse>(&crate::sync::answer(
        &chain,
        SyncRequest::GetBlocks { hashes: all },
        budget,
    ))
    .expect("a canonical response");
    assert!(matches!(served, crate::SyncResponse::Blocks(b) if b.len() == 3));
    let status = chain.status();
    assert_eq!(status.best_height, 10);
}

/// A swarm that speaks only gossipsub (no identify, no sync, no Kademlia), subscribed to the
/// transaction topic of `genesis`, as a light relay or another implementation might be.
pub(crate) fn gossip_only_swarm(
    genesis: cairn_primitives::BlockHash,
) -> (
    libp2p::Swarm<libp2p::gossipsub::Behaviour>,
    libp2p::gossipsub::IdentTopic,
) {
    use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
    use libp2p::identity;

    let config = NetworkConfig::local(genesis);
    let topic = IdentTopic::new(config.tx_topic());
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(200))
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| crate::behaviour::message_id(&m.data))
        .build()
        .expect("gossipsub config");
    let mut gossip: gossipsub::Behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
            .expect("gossipsub");
    gossip.subscribe(&topic).expect("subscribe");
    let light = crate::service::build_swarm(
        identity::Keypair::generate_ed25519(),
        gossip,
        Duration::from_secs(60),
    )
    .expect("swarm");
    (light, topic)
}

/// A gossip-only peer (see [`gossip_only_swarm`]): it receives Cairn's gossip, its own gossip is
/// accepted, and it is never penalised for the protocols it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_only_peer_is_relayed_to_and_kept() {
    use futures::StreamExt;
    use libp2p::gossipsub;
    use libp2p::swarm::SwarmEvent;

    let mut node = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let (mut light, topic) = gossip_only_swarm(node.chain.genesis());
    let light_id = *light.local_peer_id();
    light.dial(node.addr.clone()).expect("dial");

    // Drive the light swarm until both directions of gossip worked.
    let from_node = test_tx(41);
    let from_light = test_tx(42);
    let node_handle = node.handle.clone();
    let deadline = Instant::now() + WAIT;
    let mut got_from_node = false;
    let mut published = false;
    while !(got_from_node && published) {
        assert!(
            Instant::now() < deadline,
            "gossip with the light peer timed out"
        );
        let _ = node_handle.publish_tx(&from_node).await;
        if !published {
            let bytes = cairn_primitives::encoding::encode(&from_light);
            published = light.behaviour_mut().publish(topic.clone(), bytes).is_ok();
        }
        let step = tokio::time::timeout(Duration::from_millis(100), light.select_next_some()).await;
        if let Ok(SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. })) = step {
            got_from_node |= message.data == cairn_primitives::encoding::encode(&from_node);
        }
    }
    next_tx(&mut node, &from_light).await;

    // A few status intervals later the light peer is still connected and not penalised.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(100), light.select_next_some()).await;
    }
    let peers = node.handle.peers().await;
    let p = peers
        .iter()
        .find(|p| p.peer_id == light_id)
        .expect("light peer still connected");
    assert_ne!(
        p.supports_sync,
        Some(true),
        "no identify, no sync: never assumed"
    );
    assert_eq!(node.handle.metrics().bans, 0);
    node.handle.shutdown().await;
}

/// A bootnode that goes away and comes back (same key, same port) is redialled with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootnode_is_redialled_after_it_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = Arc::new(MemoryChain::new(1));
    let a = start_node(chain.clone(), vec![], |c| {
        c.data_dir = Some(dir.path().to_path_buf())
    })
    .await;
    let a_id = a.handle.local_peer_id();
    // The bare address, without /p2p/<id>: the id is learned in the handshake.
    let bare: Multiaddr = a
        .addr
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![bare.clone()], |_| {}).await;
    wait_for("b connects to its bootnode", WAIT, async || {
        connected_to(&b, a_id).await
    })
    .await;
    a.handle.shutdown().await;
    wait_for("b sees the bootnode go", WAIT, async || {
        b.handle.peers().await.is_empty()
    })
    .await;
    // Same data dir (same key), same port.
    let a2 = start_node(chain, vec![], |c| {
        c.data_dir = Some(dir.path().to_path_buf());
        c.listen_addrs = vec![bare.clone()];
    })
    .await;
    assert_eq!(a2.handle.local_peer_id(), a_id, "the key persisted");
    wait_for(
        "b redials the bootnode",
        Duration::from_secs(90),
        async || connected_to(&b, a_id).await,
    )
    .await;
    a2.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Kademlia: two nodes that only know a common bootnode find and connect to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kademlia_finds_peers_beyond_the_bootnode() {
    let fast = |c: &mut NetworkConfig| c.discovery_interval = Duration::from_millis(500);
    let boot = start_node(Arc::new(MemoryChain::new(1)), vec![], fast).await;
    let b = start_node(Arc::new(MemoryChain::new(1)), vec![boot.addr.clone()], fast).await;
    let c = start_node(Arc::new(MemoryChain::new(1)), vec![boot.addr.clone()], fast).await;
    let (b_id, c_id) = (b.handle.local_peer_id(), c.handle.local_peer_id());
    wait_for(
        "b and c discover each other",
        Duration::from_secs(60),
        async || connected_to(&b, c_id).await || connected_to(&c, b_id).await,
    )
    .await;
    for n in [&boot, &b, &c] {
        n.handle.shutdown().await;
    }
}
