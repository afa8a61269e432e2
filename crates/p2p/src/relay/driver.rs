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

use cairn_primitives::{Transaction, Txid};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use super::compact::{CompactBlock, CompactCache, RebuildFrom, Rebuilder};
use super::pacer::FetchPacer;
use super::{KnownIds, RelayRequest, RelayResponse, TXS_RESPONSE_PREFIX, txs_response};
use crate::P2pError;
use crate::codec::{Frame, Status};
use crate::config::{
    MAX_ANNOUNCERS_PER_TX, MAX_GOSSIP_ANNOUNCED_TRACKED, MAX_INVENTORIES_IN_FLIGHT,
    MAX_INVENTORY_IDS, MAX_KNOWN_PER_PEER, MAX_OUTBOX_PER_PEER, MAX_PENDING_TIPS,
    MAX_POOL_ANNOUNCEMENT, MAX_TX_FETCHES_IN_FLIGHT, MAX_TXS_RESPONSE_BYTES, MAX_WANTED_TXS,
    NetworkConfig, QUIET_MAX_NEW_WANTED_PER_SEC, RELAY_TICK, TIP_ANNOUNCE_GRACE,
};
use crate::metrics::Metrics;
use crate::service::{NetworkEvent, NetworkHandle, REJECTED_GOSSIP_PENALTY};
use crate::sync::{ChainAccess, Refusal};

/// What the swarm task hands the relay task.
pub(crate) enum RelayInput {
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A peer told its chain (handshake or periodic status).
    PeerStatus(PeerId, Status),
    /// A peer's best block changed (already answered `Ack`).
    NewTip(PeerId, Status),
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
    /// Not fetched before this (gossip may still bring it).
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
    /// Wanted txids in the order they became wanted (so by `ready_at`), and those to retry.
    queue: VecDeque<Txid>,
    retry: VecDeque<Txid>,
    running: Running,
    /// Txids fetched and handed to the node, whose acceptance may still be running: not
    /// wanted again when another peer announces them meanwhile (under load acceptance takes
    /// longer than the fetch delay, and the same transaction was fetched twice).
    fetched: KnownIds,
    next_announce: Instant,
    rebuilder: Rebuilder,
    compact_cache: CompactCache,
    /// Our best block when peers were last told.
    announced_tip: Option<cairn_primitives::BlockHash>,
    /// Blocks whose gossip announcement we are rebuilding or rebuilt: once connected, gossipsub
    /// forwards the announcement to our mesh of that topic, so our `NewTip` goes only to the
    /// other peers. Bounded by [`MAX_GOSSIP_ANNOUNCED_TRACKED`], the oldest forgotten first.
    gossip_announced: VecDeque<cairn_primitives::BlockHash>,
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
            pacer: FetchPacer::new(
                config.tx_fetch_delay,
                config.tx_fetch_delay_quiet,
                QUIET_MAX_NEW_WANTED_PER_SEC,
                Instant::now(),
            ),
            queue: VecDeque::new(),
            retry: VecDeque::new(),
            running: FuturesUnordered::new(),
            fetched: KnownIds::new(MAX_KNOWN_PER_PEER),
            next_announce: Instant::now(),
            rebuilder: Rebuilder::new(config.max_block_size),
            compact_cache: CompactCache::default(),
            announced_tip: None,
            gossip_announced: VecDeque::new(),
            pending_tips: VecDeque::new(),
            blocks_in_flight,
        }
    }

    fn metrics(&self) -> &Metrics {
        self.net.metrics_ref()
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(RELAY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => break,
                },
                Some(done) = self.running.next(), if !self.running.is_empty() => self.on_done(done),
                _ = tick.tick() => self.on_tick(),
            }
        }
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
                self.block_in_flight(hash);
                let job = self.rebuilder.start(
                    Arc::clone(&self.chain),
                    self.net.clone(),
                    self.events.clone(),
                    RebuildFrom::Pushed(compact),
                    source,
                    Some(msg_id),
                );
                self.running.push(job);
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
                self.block_in_flight(hash);
                if self.gossip_announced.len() >= MAX_GOSSIP_ANNOUNCED_TRACKED {
                    self.gossip_announced.pop_front();
                }
                self.gossip_announced.push_back(hash);
                let job = self.rebuilder.start(
                    Arc::clone(&self.chain),
                    self.net.clone(),
                    self.events.clone(),
                    RebuildFrom::Announced(header),
                    source,
                    Some(msg_id),
                );
                self.running.push(job);
            }
            RelayInput::GetCompact {
                peer,
                block,
                channel,
            } => {
                let (frame, served) = self.compact_cache.answer(&*self.chain, block);
                if served {
                    Metrics::inc(&self.metrics().compact_served);
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

    /// A new peer is announced our whole pool (bounded), so it gets what it missed, once its
    /// status says it has caught up with our chain: a node still syncing could not accept
    /// transactions spending outputs it does not know yet, and would drop them. (A peer that
    /// lies about its chain only delays its own pool.)
    fn on_status(&mut self, peer: PeerId, status: Status) {
        self.peer_has(peer, status.best_hash);
        // A status round showing the next block (before its announcement reached us): pulled
        // compactly, and so not downloaded in full by the sync driver meanwhile.
        if status.total_work > self.chain.status().total_work {
            self.pull_tip(peer, &status);
        }
        if !self.config.tx_announcements {
            return;
        }
        let ours = self.chain.status().total_work;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.pool_announced || !state.speaks_relay || status.total_work < ours {
            return;
        }
        state.pool_announced = true;
        let pool = self.chain.pool_txids(MAX_POOL_ANNOUNCEMENT);
        debug!(%peer, txs = pool.len(), "announcing the pool to a peer that caught up");
        for txid in pool {
            if !state.known.contains(&txid) && state.outbox.len() < MAX_OUTBOX_PER_PEER {
                state.outbox.push_back(txid);
            }
        }
    }

    fn on_inventory(&mut self, peer: PeerId, txids: Vec<Txid>) {
        let now = Instant::now();
        let delay = self.pacer.delay(now);
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut dropped = 0;
        for txid in txids {
            state.known.insert(&txid);
            if let Some(w) = self.wanted.get_mut(&txid) {
                if w.announcers.len() < MAX_ANNOUNCERS_PER_TX && !w.announcers.contains(&peer) {
                    w.announcers.push(peer);
                }
                continue;
            }
            if self.fetched.contains(&txid) || self.chain.has_tx(&txid) {
                continue;
            }
            if self.wanted.len() >= MAX_WANTED_TXS {
                dropped += 1;
                continue;
            }
            self.pacer.wanted(now);
            self.wanted.insert(
                txid,
                Wanted {
                    ready_at: now + delay,
                    announcers: vec![peer],
                    in_flight: false,
                },
            );
            self.queue.push_back(txid);
        }
        if dropped > 0 {
            Metrics::add(&self.net.metrics_ref().relay_wanted_dropped, dropped);
            debug!(%peer, dropped, "announced transactions not tracked: too many wanted");
        }
    }

    fn serve_txs(&mut self, peer: PeerId, txids: Vec<Txid>, channel: ResponseChannel<Frame>) {
        if let Some(state) = self.peers.get_mut(&peer) {
            for t in &txids {
                state.known.insert(t);
            }
        }
        let budget = MAX_TXS_RESPONSE_BYTES.saturating_sub(TXS_RESPONSE_PREFIX);
        let txs = self.chain.tx_bytes(&txids, budget);
        Metrics::add(&self.metrics().relay_txs_served, txs.len());
        let frame = txs_response(&txs);
        let net = self.net.clone();
        self.running.push(Box::pin(async move {
            net.respond_relay(channel, frame).await;
            Done::Rebuilt
        }));
    }

    /// Tells every peer when our best block changes, and syncs with a peer whose announced
    /// better tip gossip has not brought within the grace period (a node gossipsub left out
    /// would otherwise wait for the next status round, 5 s).
    fn tips(&mut self, now: Instant) {
        let ours = self.chain.status();
        if self.announced_tip != Some(ours.best_hash) {
            self.announced_tip = Some(ours.best_hash);
            let targets: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, s)| s.speaks_relay && s.known_tip != Some(ours.best_hash))
                .map(|(p, _)| *p)
                .collect();
            let gossiped = self.gossip_announced.contains(&ours.best_hash);
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                // Our mesh peers get the announcement from gossipsub's forward: a `NewTip`
                // to them would say it twice (~0.5 kB on the wire each, stream set-up
                // included). A block that reached us otherwise was not forwarded: tell all.
                let mesh = if gossiped {
                    net.announce_mesh_peers().await
                } else {
                    Vec::new()
                };
                let sends = targets
                    .into_iter()
                    .filter(|p| !mesh.contains(p))
                    .map(|peer| {
                        let net = net.clone();
                        async move {
                            let _ = net.relay_request(peer, &RelayRequest::NewTip(ours)).await;
                        }
                    });
                futures::future::join_all(sends).await;
                Done::Rebuilt
            }));
        }
        let mut waiting = Vec::new();
        while self
            .pending_tips
            .front()
            .is_some_and(|(due, _, _)| *due <= now)
        {
            let Some((_, peer, status)) = self.pending_tips.pop_front() else {
                break;
            };
            if status.total_work <= self.chain.status().total_work
                || !self.peers.contains_key(&peer)
            {
                continue;
            }
            if self.in_flight(&status.best_hash) {
                // Its compact block is on its way in: look again after another grace period.
                waiting.push((now + TIP_ANNOUNCE_GRACE, peer, status));
                continue;
            }
            if self.pull_tip(peer, &status) {
                continue;
            }
            Metrics::inc(&self.metrics().relay_tip_syncs);
            debug!(%peer, "a better tip announced and not gossiped to us; syncing with its announcer");
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                let _ = net.sync_with(peer).await;
                Done::Rebuilt
            }));
        }
        self.pending_tips.extend(waiting);
    }

    /// Answers a gossip message `Ignore` (not forwarded, nobody penalised).
    fn ignore(&mut self, msg_id: libp2p::gossipsub::MessageId, source: PeerId) {
        let net = self.net.clone();
        self.running.push(Box::pin(async move {
            let _ = net
                .report_validation(msg_id, source, crate::service::Acceptance::Ignore)
                .await;
            Done::Rebuilt
        }));
    }

    /// `peer` showed it has block `hash` (so it need not be told of it as our new tip).
    fn peer_has(&mut self, peer: PeerId, hash: cairn_primitives::BlockHash) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.known_tip = Some(hash);
        }
    }

    /// Whether a block's compact form arrived recently (see `blocks_in_flight`).
    fn in_flight(&self, hash: &cairn_primitives::BlockHash) -> bool {
        self.blocks_in_flight.contains(hash)
    }

    /// A peer's new tip one block ahead of ours, not on its way in already: its compact form
    /// is pulled from that peer (`GetCompact`) and rebuilt, as an announced block (BIP152's
    /// low-bandwidth mode: whichever announcement comes first, gossip or `NewTip`, starts the
    /// one pull). `false`: not applicable (compact blocks off, further ahead, a fork, already
    /// in flight), the caller decides (grace period, then sync).
    fn pull_tip(&mut self, peer: PeerId, status: &Status) -> bool {
        let ours = self.chain.status();
        let next = ours.best_height.checked_add(1) == Some(status.best_height);
        let speaks = self.peers.get(&peer).is_some_and(|p| p.speaks_relay);
        if !self.config.compact_blocks || !next || !speaks || self.in_flight(&status.best_hash) {
            return false;
        }
        self.block_in_flight(status.best_hash);
        Metrics::inc(&self.metrics().compact_tip_pulls);
        let job = self.rebuilder.start(
            Arc::clone(&self.chain),
            self.net.clone(),
            self.events.clone(),
            RebuildFrom::Tip(status.best_hash),
            peer,
            None,
        );
        self.running.push(job);
        true
    }

    /// Remembers that a block's compact form arrived (see `blocks_in_flight`).
    fn block_in_flight(&mut self, hash: cairn_primitives::BlockHash) {
        self.blocks_in_flight.insert(hash);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.tips(now);
        if self.config.tx_announcements && now >= self.next_announce {
            self.next_announce = now + self.config.announce_interval;
            self.announce();
        }
        self.fetch(now);
    }

    /// Queues the node's fresh txids for every peer that does not know them, then sends each
    /// peer one inventory (per free slot).
    fn announce(&mut self) {
        let fresh = self.chain.fresh_txids(MAX_OUTBOX_PER_PEER);
        let mut dropped = 0;
        for state in self.peers.values_mut().filter(|s| s.speaks_relay) {
            for txid in &fresh {
                if state.known.contains(txid) {
                    continue;
                }
                if state.outbox.len() >= MAX_OUTBOX_PER_PEER {
                    dropped += 1;
                    continue;
                }
                state.outbox.push_back(*txid);
            }
        }
        if dropped > 0 {
            Metrics::add(&self.metrics().relay_outbox_dropped, dropped);
            debug!(dropped, "announcements dropped: peer outboxes full");
        }
        let mut sends = Vec::new();
        for (peer, state) in self.peers.iter_mut() {
            while state.speaks_relay
                && state.inventories_in_flight < MAX_INVENTORIES_IN_FLIGHT
                && !state.outbox.is_empty()
            {
                let n = state.outbox.len().min(MAX_INVENTORY_IDS);
                let ids: Vec<Txid> = state
                    .outbox
                    .drain(..n)
                    .filter(|t| state.known.insert(t))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                state.inventories_in_flight += 1;
                sends.push((*peer, ids));
            }
        }
        for (peer, ids) in sends {
            Metrics::add(&self.metrics().relay_announced, ids.len());
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                let result = net.relay_request(peer, &RelayRequest::Inventory(ids)).await;
                Done::Inventory { peer, result }
            }));
        }
    }

    /// Asks announcers for the wanted transactions whose gossip grace period is over: one
    /// `GetTxs` per peer and tick at most, within each peer's in-flight limit.
    fn fetch(&mut self, now: Instant) {
        let mut batches: HashMap<PeerId, Vec<Txid>> = HashMap::new();
        let mut deferred = Vec::new();
        let mut scanned = 0;
        while scanned < 4 * MAX_INVENTORY_IDS {
            let Some(txid) = self.retry.pop_front().or_else(|| {
                let ready = self
                    .queue
                    .front()
                    .is_some_and(|t| self.wanted.get(t).is_none_or(|w| w.ready_at <= now));
                if ready { self.queue.pop_front() } else { None }
            }) else {
                break;
            };
            scanned += 1;
            let Some(w) = self.wanted.get_mut(&txid) else {
                continue;
            };
            if w.in_flight {
                continue;
            }
            if self.chain.has_tx(&txid) {
                self.wanted.remove(&txid);
                continue;
            }
            let peers = &self.peers;
            let pick = w.announcers.iter().copied().find(|p| {
                let batch = batches.get(p).map_or(0, Vec::len);
                peers.get(p).is_some_and(|s| {
                    s.speaks_relay
                        && (batch > 0 || s.fetches_in_flight < MAX_TX_FETCHES_IN_FLIGHT)
                        && batch < MAX_INVENTORY_IDS
                })
            });
            match pick {
                Some(peer) => {
                    w.in_flight = true;
                    batches.entry(peer).or_default().push(txid);
                }
                None => {
                    // Announcers gone: forget it; busy: try again next tick.
                    w.announcers.retain(|p| peers.contains_key(p));
                    if w.announcers.is_empty() {
                        self.wanted.remove(&txid);
                        Metrics::inc(&self.net.metrics_ref().relay_tx_not_found);
                    } else {
                        deferred.push(txid);
                    }
                }
            }
        }
        for txid in deferred.into_iter().rev() {
            self.retry.push_front(txid);
        }
        for (peer, txids) in batches {
            if let Some(s) = self.peers.get_mut(&peer) {
                s.fetches_in_flight += 1;
            }
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                let result = net
                    .relay_request(peer, &RelayRequest::GetTxs(txids.clone()))
                    .await;
                Done::Fetch {
                    peer,
                    txids,
                    result,
                }
            }));
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

    fn retry_later(&mut self, txids: Vec<Txid>) {
        for txid in txids {
            if let Some(w) = self.wanted.get_mut(&txid) {
                w.in_flight = false;
                w.ready_at = Instant::now() + self.config.tx_fetch_delay;
                self.queue.push_back(txid);
            }
        }
    }

    fn request_failed(&mut self, peer: PeerId, e: &P2pError) {
        Metrics::inc(&self.metrics().relay_requests_failed);
        if matches!(e, P2pError::UnsupportedProtocol { .. })
            && let Some(s) = self.peers.get_mut(&peer)
        {
            debug!(%peer, "peer does not speak the relay protocol; not announcing to it");
            s.speaks_relay = false;
            s.outbox.clear();
        } else {
            debug!(%peer, error = %e, "relay request failed");
        }
    }

    /// Submits what a peer sent (in its order, parents first) and retries what it did not
    /// send with the next announcer.
    fn on_fetched(&mut self, peer: PeerId, asked: Vec<Txid>, txs: Vec<Transaction>) {
        let mut by_id: HashMap<Txid, Transaction> = HashMap::with_capacity(txs.len());
        for tx in txs {
            by_id.insert(tx.txid(), tx);
        }
        let mut submit = Vec::with_capacity(by_id.len());
        for txid in asked {
            if let Some(tx) = by_id.remove(&txid) {
                self.wanted.remove(&txid);
                self.fetched.insert(&txid);
                submit.push(tx);
                continue;
            }
            let Some(w) = self.wanted.get_mut(&txid) else {
                continue;
            };
            w.in_flight = false;
            w.announcers.retain(|p| *p != peer);
            if w.announcers.is_empty() {
                self.wanted.remove(&txid);
                Metrics::inc(&self.net.metrics_ref().relay_tx_not_found);
            } else {
                self.retry.push_back(txid);
            }
        }
        if !by_id.is_empty() {
            // Transactions nobody asked for: not submitted (a peer must not push into our pool).
            debug!(%peer, count = by_id.len(), "unrequested transactions in a GetTxs answer");
        }
        if submit.is_empty() {
            return;
        }
        Metrics::add(&self.metrics().relay_txs_fetched, submit.len());
        let (chain, net) = (Arc::clone(&self.chain), self.net.clone());
        // Submitted off this task (signature checks take time), in order.
        tokio::spawn(async move {
            for tx in submit {
                if let Err(Refusal::Invalid(reason)) = chain.submit_tx(peer, tx).await {
                    net.penalise(peer, REJECTED_GOSSIP_PENALTY, &reason).await;
                }
            }
        });
    }
}
