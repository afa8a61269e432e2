//! The relay task: announces fresh transactions to every peer, fetches what peers announce and
//! we lack, serves `GetTxs`, and (through `compact`) rebuilds compactly announced blocks.
//!
//! It owns no swarm: requests go out through the [`NetworkHandle`] like the sync driver's.
//! Everything it keeps is bounded (see the constants in `config`), and every drop is counted.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use cairn_primitives::Txid;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;
use tracing::{debug, trace};

mod tips;
mod txs;

use super::compact::{CompactBlock, CompactCache, RebuildFrom, Rebuilder};
use super::pacer::{FetchPacer, GossipLoad};
use super::{KnownIds, RelayRequest, RelayResponse};
use crate::P2pError;
use crate::codec::{Frame, Status};
use crate::config::{
    MAX_KNOWN_PER_PEER, MAX_PENDING_TIPS, NetworkConfig, QUIET_MAX_BROUGHT, QUIET_MAX_MISSING,
    RELAY_TICK, TIP_ANNOUNCE_GRACE, TX_GOSSIP_MAX_ACCEPTED,
};
use crate::metrics::Metrics;
use crate::service::{NetworkEvent, NetworkHandle};
use crate::sync::ChainAccess;

/// What the swarm task hands the relay task.
pub(crate) enum RelayInput {
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A peer told its chain (handshake or periodic status).
    PeerStatus(PeerId, Status),
    /// A peer's best block changed (already answered `Ack`).
    NewTip(PeerId, Status),
    /// We published this block's announcement (a block of ours): gossipsub flooded it to
    /// every subscriber of the topic.
    Published(cairn_primitives::BlockHash),
    /// A peer announced these txids (already answered `Ack`).
    Inventory(PeerId, Vec<Txid>),
    /// A peer asks for transactions; answer on `channel`.
    GetTxs {
        peer: PeerId,
        txids: Vec<Txid>,
        channel: ResponseChannel<Frame>,
    },
    /// A peer asks for transactions of a block we announced compactly.
    GetBlockTxs {
        peer: PeerId,
        request: RelayRequest,
        channel: ResponseChannel<Frame>,
    },
    /// A compact block arrived on gossip: rebuild it, then hand it to the node as a
    /// [`NetworkEvent::Block`] with this message id.
    Compact {
        compact: Box<CompactBlock>,
        source: PeerId,
        msg_id: libp2p::gossipsub::MessageId,
    },
    /// A block was announced on gossip: pull its compact form from the announcer, then as
    /// `Compact`.
    Announcement {
        header: cairn_primitives::BlockHeader,
        source: PeerId,
        msg_id: libp2p::gossipsub::MessageId,
    },
    /// A peer asks for the compact form of a block we announced.
    GetCompact {
        peer: PeerId,
        block: cairn_primitives::BlockHash,
        channel: ResponseChannel<Frame>,
    },
}

/// A transaction announced to us that we lack.
struct Wanted {
    /// First looked at then: fetched if still missing and the network is quiet (see
    /// [`FetchPacer`]).
    quiet_at: Instant,
    /// Fetched by then at the latest, if still missing (gossip may still bring it).
    ready_at: Instant,
    /// Peers that announced it, asked in turn.
    announcers: Vec<PeerId>,
    in_flight: bool,
}

struct RelayPeer {
    known: KnownIds,
    outbox: VecDeque<Txid>,
    inventories_in_flight: usize,
    fetches_in_flight: usize,
    /// `false` once a request failed with "protocol not supported" (a gossip-only peer): it is
    /// left alone, never penalised.
    speaks_relay: bool,
    /// Whether the pool was announced to it (once it has caught up with our chain).
    pool_announced: bool,
    /// Not sent another `Inventory` before then: once per announce interval on average, each
    /// peer at its own jittered time (see `txs::announce`).
    next_announce: Instant,
    /// The latest block it told us it has (its `NewTip` or status, a block announcement it
    /// relayed, a compact block we pulled from it): not told of that tip again.
    known_tip: Option<cairn_primitives::BlockHash>,
}

impl RelayPeer {
    fn new() -> Self {
        Self {
            known: KnownIds::new(MAX_KNOWN_PER_PEER),
            outbox: VecDeque::new(),
            inventories_in_flight: 0,
            fetches_in_flight: 0,
            speaks_relay: true,
            pool_announced: false,
            known_tip: None,
            next_announce: Instant::now(),
        }
    }
}

/// A finished outbound request.
pub(crate) enum Done {
    Inventory {
        peer: PeerId,
        result: Result<RelayResponse, P2pError>,
    },
    Fetch {
        peer: PeerId,
        txids: Vec<Txid>,
        result: Result<RelayResponse, P2pError>,
    },
    /// A compact block was rebuilt (or fell back to the full block).
    Rebuilt,
    /// A compact block's rebuild ended without the block (dropped, or neither rebuilt nor
    /// fetched whole): it is no longer in flight.
    GaveUp(cairn_primitives::BlockHash),
}

type Running = FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>;

pub(crate) struct TxRelay<C: ChainAccess> {
    chain: Arc<C>,
    net: NetworkHandle,
    config: NetworkConfig,
    inputs: mpsc::Receiver<RelayInput>,
    events: mpsc::Sender<NetworkEvent>,
    peers: HashMap<PeerId, RelayPeer>,
    wanted: HashMap<Txid, Wanted>,
    /// The fetch delay, from how many announcements arrive before gossip brings the transaction.
    pacer: FetchPacer,
    /// Whether the transactions this node accepts go on gossip too.
    gossip_load: GossipLoad,
    /// When `fetch` last ran.
    last_fetch: Instant,
    /// Wanted txids in the order they became wanted (so by `quiet_at`); those still missing
    /// past it on a busy network (by `ready_at`, give or take the quiet delay for answers
    /// of `busy` peers); those to retry with the next announcer at once.
    queue: VecDeque<Txid>,
    late: VecDeque<Txid>,
    retry: VecDeque<Txid>,
    running: Running,
    /// Txids fetched and handed to the node, whose acceptance may still be running: not
    /// wanted again when another peer announces them meanwhile (under load acceptance takes
    /// longer than the fetch delay, and the same transaction was fetched twice).
    fetched: KnownIds,
    rebuilder: Rebuilder,
    compact_cache: CompactCache,
    /// Our best block when peers were last told.
    announced_tip: Option<cairn_primitives::BlockHash>,
    /// Blocks whose gossip announcement we are rebuilding or rebuilt: once connected, gossipsub
    /// forwards the announcement to our mesh of that topic, so our `NewTip` goes only to the
    /// other peers. Bounded by [`MAX_GOSSIP_ANNOUNCED_TRACKED`], the oldest forgotten first.
    gossip_announced: VecDeque<cairn_primitives::BlockHash>,
    /// Blocks whose announcement we published (same bound): every subscriber has it.
    published: VecDeque<cairn_primitives::BlockHash>,
    /// Our best block and when the task first saw it (see `tips`).
    tip_seen: Option<(cairn_primitives::BlockHash, Instant)>,
    /// Better tips peers announced, checked after [`TIP_ANNOUNCE_GRACE`]: (due, peer, status).
    pending_tips: VecDeque<(Instant, PeerId, Status)>,
    /// Blocks whose compact form arrived and is being rebuilt or connected, with when: a tip
    /// announcement of one of them waits (up to [`BLOCK_IN_FLIGHT_GRACE`]) instead of syncing.
    blocks_in_flight: Arc<super::BlocksInFlight>,
}

impl<C: ChainAccess> TxRelay<C> {
    pub(crate) fn new(
        chain: Arc<C>,
        net: NetworkHandle,
        config: &NetworkConfig,
        inputs: mpsc::Receiver<RelayInput>,
        events: mpsc::Sender<NetworkEvent>,
        blocks_in_flight: Arc<super::BlocksInFlight>,
    ) -> Self {
        Self {
            chain,
            net,
            config: config.clone(),
            inputs,
            events,
            peers: HashMap::new(),
            wanted: HashMap::new(),
            last_fetch: Instant::now(),
            pacer: FetchPacer::new(
                config.tx_fetch_delay,
                config.tx_fetch_delay_quiet,
                (QUIET_MAX_BROUGHT, QUIET_MAX_MISSING),
                Instant::now(),
            ),
            gossip_load: GossipLoad::new(TX_GOSSIP_MAX_ACCEPTED, Instant::now()),
            queue: VecDeque::new(),
            late: VecDeque::new(),
            retry: VecDeque::new(),
            running: FuturesUnordered::new(),
            fetched: KnownIds::new(MAX_KNOWN_PER_PEER),
            rebuilder: Rebuilder::new(config.max_block_size),
            compact_cache: CompactCache::default(),
            announced_tip: None,
            gossip_announced: VecDeque::new(),
            published: VecDeque::new(),
            tip_seen: None,
            pending_tips: VecDeque::new(),
            blocks_in_flight,
        }
    }

    fn metrics(&self) -> &Metrics {
        self.net.metrics_ref()
    }

    pub(crate) async fn run(mut self) {
        self.note_accepted(Instant::now(), 0);
        let mut tick = tokio::time::interval(RELAY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let fresh = self.chain.fresh_signal();
        loop {
            // While gossip keeps up, a wanted transaction is looked at exactly at its quiet
            // deadline rather than at the next tick (up to a tick later): that wait would be
            // most of a lost transaction's repair time. While it is slow, the tick batches.
            let next_look = self.next_quiet_look(Instant::now());
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => break,
                },
                Some(done) = self.running.next(), if !self.running.is_empty() => self.on_done(done),
                _ = tick.tick() => self.on_tick(),
                () = sleep_until_or_never(next_look) => self.fetch(Instant::now()),
                () = notified_or_never(fresh.as_deref()) => self.announce_now(Instant::now()),
            }
        }
    }

    /// The quiet deadline of the oldest wanted transaction, while the network is quiet.
    fn next_quiet_look(&self, now: Instant) -> Option<Instant> {
        if !self.pacer.quiet(now) {
            return None;
        }
        // Never sooner than a millisecond after the last pass: a front the pass could not
        // take (a scan that ended on its bound) must not turn this into a busy loop.
        let floor = self.last_fetch + std::time::Duration::from_millis(1);
        self.queue
            .front()
            .and_then(|t| self.wanted.get(t))
            .map(|w| w.quiet_at.max(floor))
    }

    fn on_input(&mut self, input: RelayInput) {
        match input {
            RelayInput::PeerConnected(peer) => {
                self.peers.insert(peer, RelayPeer::new());
            }
            RelayInput::PeerStatus(peer, status) => self.on_status(peer, status),
            RelayInput::NewTip(peer, status) => {
                self.peer_has(peer, status.best_hash);
                if status.total_work > self.chain.status().total_work
                    && !self.pull_tip(peer, &status)
                {
                    if self.pending_tips.len() >= MAX_PENDING_TIPS {
                        self.pending_tips.pop_front();
                    }
                    let due = Instant::now() + TIP_ANNOUNCE_GRACE;
                    self.pending_tips.push_back((due, peer, status));
                }
            }
            RelayInput::Published(hash) => {
                tips::remember(&mut self.published, hash);
            }
            RelayInput::PeerDisconnected(peer) => {
                self.peers.remove(&peer);
            }
            RelayInput::Inventory(peer, txids) => self.on_inventory(peer, txids),
            RelayInput::GetTxs {
                peer,
                txids,
                channel,
            } => self.serve_txs(peer, txids, channel),
            RelayInput::GetBlockTxs {
                peer,
                request,
                channel,
            } => {
                let frame = super::compact::answer_block_txs(&*self.chain, request);
                trace!(%peer, bytes = frame.len(), "block transactions served");
                let net = self.net.clone();
                self.running.push(Box::pin(async move {
                    net.respond_relay(channel, frame).await;
                    Done::Rebuilt
                }));
            }
            RelayInput::Compact {
                compact,
                source,
                msg_id,
            } => {
                let hash = compact.header.hash();
                self.peer_has(source, hash);
                if self.in_flight(&hash) {
                    // Pulled already (a tip announcement came first): rebuilt now from a
                    // mempool the block may have emptied, it would cost a round trip for
                    // every transaction. Not forwarded; peers hear of it by our `NewTip`.
                    self.ignore(msg_id, source);
                    return;
                }
                Metrics::inc(&self.metrics().compact_received);
                self.rebuild(hash, RebuildFrom::Pushed(compact), source, Some(msg_id));
            }
            RelayInput::Announcement {
                header,
                source,
                msg_id,
            } => {
                let hash = header.hash();
                self.peer_has(source, hash);
                if self.in_flight(&hash) {
                    // Pulled already (a tip announcement came first): not twice. Not
                    // forwarded either; our peers hear of it by our own `NewTip`.
                    self.ignore(msg_id, source);
                    return;
                }
                tips::remember(&mut self.gossip_announced, hash);
                self.rebuild(hash, RebuildFrom::Announced(header), source, Some(msg_id));
            }
            RelayInput::GetCompact {
                peer,
                block,
                channel,
            } => {
                let (frame, served) = self.compact_cache.answer(&*self.chain, block);
                if served {
                    Metrics::inc(&self.metrics().compact_served);
                    // It is rebuilding that block: our `NewTip` for it would tell it nothing.
                    self.peer_has(peer, block);
                }
                trace!(%peer, %block, bytes = frame.len(), "compact block served");
                let net = self.net.clone();
                self.running.push(Box::pin(async move {
                    net.respond_relay(channel, frame.to_vec()).await;
                    Done::Rebuilt
                }));
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.tips(now);
        self.announce_now(now);
        self.fetch(now);
    }

    /// Counts `n` accepted transactions and publishes whether the node gossips its own.
    fn note_accepted(&mut self, now: Instant, n: usize) {
        let gossip = self.gossip_load.accepted(now, n);
        self.metrics()
            .tx_gossip_quiet
            .store(gossip, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queues fresh txids and announces to the peers whose turn it is.
    fn announce_now(&mut self, now: Instant) {
        if self.config.tx_announcements {
            self.announce(now);
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Inventory { peer, result } => {
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.inventories_in_flight = s.inventories_in_flight.saturating_sub(1);
                }
                if let Err(e) = result {
                    self.request_failed(peer, &e);
                }
            }
            Done::Fetch {
                peer,
                txids,
                result,
            } => {
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.fetches_in_flight = s.fetches_in_flight.saturating_sub(1);
                }
                let txs = match result {
                    Ok(RelayResponse::Txs(txs)) => txs,
                    Ok(RelayResponse::Error(reason)) => {
                        // Busy or rate-limited: the peer still has them; ask again later.
                        debug!(%peer, %reason, "GetTxs not served; retrying");
                        self.retry_later(txids);
                        return;
                    }
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        self.request_failed(peer, &e);
                        Vec::new()
                    }
                };
                self.on_fetched(peer, txids, txs);
            }
            Done::Rebuilt => {}
            Done::GaveUp(hash) => {
                self.blocks_in_flight.remove(&hash);
                // Not accepted from gossip, so not forwarded: a `NewTip` tells the mesh too.
                self.gossip_announced.retain(|h| *h != hash);
            }
        }
    }
}

async fn notified_or_never(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(s) => s.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
