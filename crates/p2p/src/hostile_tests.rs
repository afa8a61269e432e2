//! Hostile peers on real swarms (127.0.0.1): a sync peer that lies, inbound sybils, a peer
//! hammering `GetBlocks`. Each test measures what the attack costs an honest node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_primitives::{Amount, Block, BlockHash, BlockHeader, Transaction, TxOut, XOnlyPublicKey};
use libp2p::PeerId;

use crate::sync::Refusal;
use crate::test_utils::MemoryChain;
use crate::tests::{WAIT, start_node, test_tx, wait_for, wait_peers};
use crate::{
    ChainAccess, NetworkConfig, NetworkEvent, NetworkHandle, NetworkService, Status, SyncRequest,
};

/// A peer that claims an enormous chain and answers every request with nothing.
struct LyingChain {
    genesis: BlockHash,
    claimed_tip: BlockHash,
}

impl ChainAccess for LyingChain {
    fn status(&self) -> Status {
        Status {
            genesis: self.genesis,
            best_height: 1 << 40,
            best_hash: self.claimed_tip,
            total_work: [0xff; 32],
        }
    }
    fn locator(&self) -> Vec<BlockHash> {
        vec![self.genesis]
    }
    fn headers_after(&self, _: &[BlockHash], _: usize) -> Vec<BlockHeader> {
        Vec::new()
    }
    fn block_bytes(&self, _: &[BlockHash], _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn missing_blocks(&self, _: usize) -> Vec<BlockHash> {
        Vec::new()
    }
    fn header_position(&self, _: &BlockHash) -> Option<(u64, bool)> {
        None
    }
    async fn submit_headers(&self, _: PeerId, _: Vec<BlockHeader>) -> Result<(), Refusal> {
        Ok(())
    }
    async fn submit_block(&self, _: PeerId, _: Block) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Starts a network service on `chain`, answering gossip with Ignore.
async fn start_raw<C: ChainAccess>(
    chain: Arc<C>,
    genesis: BlockHash,
    tweak: impl FnOnce(&mut NetworkConfig),
) -> (NetworkHandle, crate::Multiaddr) {
    let mut config = NetworkConfig::local(genesis);
    tweak(&mut config);
    let (handle, mut events) = NetworkService::start(config, chain)
        .await
        .expect("start network");
    let h = handle.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let NetworkEvent::Block { source, msg_id, .. }
            | NetworkEvent::Transaction { source, msg_id, .. } = e
            {
                let _ = h
                    .report_validation(msg_id, source, crate::Acceptance::Ignore)
                    .await;
            }
        }
    });
    let addr = handle
        .listen_addrs()
        .await
        .into_iter()
        .next()
        .expect("a listen address");
    (handle, addr)
}

/// Issue 18, sync a liar cannot stall: an honest peer and a lying peer (claims a huge chain,
/// answers every request empty). A fresh node syncs 2,000 blocks in at most three times the
/// time it takes with the honest peer alone, and drops the liar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_sync_peer_neither_stalls_download_nor_stays() {
    const N: usize = 2000;
    let source = Arc::new(MemoryChain::new(1));
    source.mine(N);
    let genesis = source.genesis();
    let honest = start_node(source.clone(), vec![], |_| {}).await;
    let (liar, liar_addr) = start_raw(
        Arc::new(LyingChain {
            genesis,
            claimed_tip: BlockHash([0xab; 32]),
        }),
        genesis,
        |_| {},
    )
    .await;
    let liar_id = liar.local_peer_id();

    // The honest peer alone.
    let start = Instant::now();
    let alone = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![honest.addr.clone()],
        |_| {},
    )
    .await;
    wait_for(
        "sync from the honest peer",
        Duration::from_secs(120),
        async || alone.chain.height() == N as u64,
    )
    .await;
    let t_alone = start.elapsed();
    alone.handle.shutdown().await;

    // The liar first, then the honest peer.
    let start = Instant::now();
    let node = start_node(
        Arc::new(MemoryChain::new(1)),
        vec![liar_addr, honest.addr.clone()],
        |_| {},
    )
    .await;
    wait_for(
        "sync despite the liar",
        Duration::from_secs(120),
        async || node.chain.height() == N as u64,
    )
    .await;
    let t_liar = start.elapsed();
    assert_eq!(node.chain.tip(), source.tip());
    wait_for("the liar is dropped", WAIT, async || {
        !node
            .handle
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == liar_id)
    })
    .await;
    let dropped = start.elapsed();
    let m = node.handle.metrics();
    println!(
        "synced {N} blocks: honest peer alone {t_alone:?}, with the liar {t_liar:?} ({:.2}x); liar dropped after {dropped:?}; stalled peers {}, bans {}",
        t_liar.as_secs_f64() / t_alone.as_secs_f64(),
        m.stalled_peers,
        m.bans
    );
    assert!(
        t_liar <= 3 * t_alone,
        "with the liar {t_liar:?}, alone {t_alone:?}"
    );
    assert!(m.stalled_peers >= 1);
    assert!(
        node.handle
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == honest.handle.local_peer_id()),
        "the honest peer stays"
    );
    for h in [&node.handle, &honest.handle, &liar] {
        h.shutdown().await;
    }
}

/// A block of about `size` bytes of payment-shaped transactions (for serving tests).
fn big_block_txs(height: u64, size: usize) -> Vec<Transaction> {
    let outputs = size / 40;
    vec![Transaction {
        version: Transaction::VERSION,
        inputs: Vec::new(),
        outputs: (0..outputs)
            .map(|i| TxOut {
                value: Amount::from_base_units(i as u64 + 1),
                pubkey: XOnlyPublicKey([3; 32]),
            })
            .collect(),
        lock_time: height as u32 + 1_000_000,
    }]
}

/// Issue 18, serving: one peer hammering `GetBlocks` for the largest blocks (as fast as the
/// rate limit allows, many requests at once) does not keep a second peer from syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_peer_does_not_starve_a_syncing_peer() {
    const N: u64 = 150;
    const BLOCK_SIZE: usize = 200_000;
    let source = Arc::new(MemoryChain::new(1));
    for h in 1..=N {
        source.mine_with(big_block_txs(h, BLOCK_SIZE));
    }
    let hashes: Vec<BlockHash> = (1..=N).filter_map(|h| source.hash_at(h)).collect();
    let server = start_node(source.clone(), vec![], |_| {}).await;
    let sync_once = async || {
        let start = Instant::now();
        let node = start_node(
            Arc::new(MemoryChain::new(1)),
            vec![server.addr.clone()],
            |_| {},
        )
        .await;
        wait_for("sync", Duration::from_secs(120), async || {
            node.chain.height() == N
        })
        .await;
        let t = start.elapsed();
        node.handle.shutdown().await;
        t
    };
    let quiet = sync_once().await;

    // The hammer: a raw swarm on its own thread and runtime that keeps HAMMER_IN_FLIGHT
    // requests for 128 of the largest blocks outstanding, within the rate limit, and throws
    // the answers away undecoded (so its own work does not slow the nodes under test).
    let server_addr = server.addr.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (stop, hashes) = (stop.clone(), hashes.clone());
        std::thread::spawn(move || hammer_get_blocks(server_addr, hashes, stop))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hammered = sync_once().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, answered_bytes) = hammer.join().unwrap_or((0, 0));
    println!(
        "synced {N} blocks of {BLOCK_SIZE} bytes: quiet {quiet:?}, while another peer sent {sent} GetBlocks of 128 blocks ({answered_bytes} bytes served to it): {hammered:?} ({:.2}x); hammer banned: {}",
        hammered.as_secs_f64() / quiet.as_secs_f64(),
        server.handle.metrics().bans
    );
    assert_eq!(
        server.handle.metrics().bans,
        0,
        "the hammer stayed within the limits"
    );
    assert!(
        hammered <= 3 * quiet.max(Duration::from_millis(500)),
        "quiet {quiet:?}, hammered {hammered:?}"
    );
    server.handle.shutdown().await;
}

/// Requests in flight from the hammer.
const HAMMER_IN_FLIGHT: usize = 8;
/// The hammer's pace: under the server's 200 requests/s.
const HAMMER_REQUESTS_PER_SECOND: u64 = 150;

/// Sends `GetBlocks` for 128 hashes at a time to `server` until `stop`; returns the requests
/// sent and the response bytes received.
fn hammer_get_blocks(
    server: crate::Multiaddr,
    hashes: Vec<BlockHash>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64) {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{identity, noise, tcp, yamux};

    use crate::codec::{Frame, SYNC_PROTOCOL, SyncCodec};

    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (0, 0);
    };
    runtime.block_on(async move {
        let behaviour = request_response::Behaviour::with_codec(
            SyncCodec {
                max_request_size: crate::config::DEFAULT_MAX_SYNC_REQUEST_SIZE,
                max_response_size: crate::config::DEFAULT_MAX_SYNC_RESPONSE_SIZE,
            },
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        );
        let Ok(builder) =
            libp2p::SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    noise::Config::new,
                    yamux::Config::default,
                )
        else {
            return (0, 0);
        };
        let Ok(builder) = builder.with_behaviour(|_| behaviour);
        let mut swarm = builder
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        if swarm.dial(server).is_err() {
            return (0, 0);
        }
        let mut server_id = None;
        let (mut sent, mut bytes, mut in_flight) = (0u64, 0u64, 0usize);
        let mut pace =
            tokio::time::interval(Duration::from_millis(1000 / HAMMER_REQUESTS_PER_SECOND));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => server_id = Some(peer_id),
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. }, ..
                    }) => {
                        in_flight -= 1;
                        bytes += response.bytes.len() as u64;
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                        in_flight -= 1;
                    }
                    _ => {}
                },
                _ = pace.tick() => {
                    if let Some(peer) = server_id
                        && in_flight < HAMMER_IN_FLIGHT
                    {
                        let start = (sent as usize * 13) % hashes.len();
                        let batch: Vec<BlockHash> =
                            hashes.iter().cycle().skip(start).take(128).copied().collect();
                        let frame = cairn_primitives::encoding::encode(&SyncRequest::GetBlocks {
                            hashes: batch,
                        });
                        swarm.behaviour_mut().send_request(&peer, Frame::new(frame));
                        in_flight += 1;
                        sent += 1;
                    }
                }
            }
        }
        (sent, bytes)
    })
}

/// Issue 18, connection slots: 40 identities from one host connect inbound (loopback made
/// untrusted, so the per-IP limit applies as to any host). The node keeps its outbound peer,
/// can still dial a new one, and still relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sybils_cannot_take_the_slots() {
    sybils_scenario(|c| {
        c.trusted_ranges.clear();
    })
    .await;
}

/// The same with no per-IP limit: the inbound cap and eviction alone keep slots for the
/// node's own dials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sybils_are_evicted_not_outbound_peers() {
    sybils_scenario(|c| {
        c.trusted_ranges.clear();
        c.max_inbound_per_ip = 1_000;
    })
    .await;
}

async fn sybils_scenario(tweak: impl FnOnce(&mut NetworkConfig)) {
    use futures::StreamExt;
    use libp2p::{identity, noise, swarm::dummy, tcp, yamux};

    const SYBILS: usize = 40;
    let chain = Arc::new(MemoryChain::new(1));
    let outbound = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    let node = start_node(chain, vec![outbound.addr.clone()], |c| {
        c.max_peers = 20;
        tweak(c);
    })
    .await;
    let max_inbound = {
        let mut c = NetworkConfig::local(node.chain.genesis());
        c.max_peers = 20;
        c.max_inbound() as usize
    };
    wait_peers(&node, 1).await;

    // Sybils: bare swarms (no protocols of their own) that keep their connections open.
    let mut sybils = Vec::new();
    for _ in 0..SYBILS {
        let mut swarm =
            libp2p::SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .expect("transport")
                .with_behaviour(|_| dummy::Behaviour)
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build();
        swarm.dial(node.addr.clone()).expect("dial");
        sybils.push(tokio::spawn(async move {
            loop {
                let _ = swarm.select_next_some().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peers = node.handle.peers().await;
    let inbound = peers
        .iter()
        .filter(|p| p.direction == crate::Direction::Inbound)
        .count();
    let keeps_outbound = peers
        .iter()
        .any(|p| p.peer_id == outbound.handle.local_peer_id());

    // A new outbound dial still finds a slot.
    let second = start_node(Arc::new(MemoryChain::new(1)), vec![], |_| {}).await;
    node.handle.dial(second.addr.clone()).await.expect("dial");
    wait_for("the new outbound peer", WAIT, async || {
        node.handle
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == second.handle.local_peer_id())
    })
    .await;
    // And the node still relays to its outbound peers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut outbound = outbound;
    let tx = test_tx(99);
    crate::tests::publish_tx(&node, &tx).await;
    crate::tests::next_tx(&mut outbound, &tx).await;
    let m = node.handle.metrics();
    println!(
        "{SYBILS} sybils from 127.0.0.1: {inbound} inbound held (cap {max_inbound}), outbound kept: {keeps_outbound}, refused {}, evicted {}",
        m.refused_inbound, m.evicted_peers
    );
    assert!(keeps_outbound);
    assert!(inbound <= max_inbound, "{inbound} inbound > {max_inbound}");
    assert!(
        m.refused_inbound + m.evicted_peers > 0,
        "the sybils met a limit"
    );
    for s in sybils {
        s.abort();
    }
    for h in [&node.handle, &outbound.handle, &second.handle] {
        h.shutdown().await;
    }
}
