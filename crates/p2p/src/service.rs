//! The swarm task and the handle the rest of the node holds.
//!
//! One task owns the [`libp2p::Swarm`] and runs
//! `loop { select! { command = rx.recv() => .., event = swarm.select_next_some() => .. } }`.
//! Everything else talks to it through a cloneable [`NetworkHandle`] that sends a [`Command`]
//! over a bounded channel and, where there is an answer, awaits it on a oneshot channel.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cairn_primitives::encoding::{decode_with_limit, encode};
use cairn_primitives::{Block, Transaction};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, PublishError, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{
    self, InboundFailure, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, kad, mdns, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use crate::P2pError;
use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::codec::{Frame, SYNC_PROTOCOL, Status, SyncRequest, SyncResponse, is_oversized};
use crate::config::{
    BAN_THRESHOLD, BOOTNODE_BACKOFF_MAX, BOOTNODE_BACKOFF_MIN, NODE_KEY_FILE, NetworkConfig,
};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::sync::{ChainAccess, ServeRequest, SyncDriver, SyncInput};

/// Most peers remembered as banned; beyond it the ban closest to expiry is forgotten.
pub const MAX_BANNED_PEERS: usize = 10_000;
/// Misbehaviour points for an inbound request over the rate limit (answered `Error`, not
/// served). Points decay at [`MISBEHAVIOUR_DECAY_PER_SEC`], so a peer a little over the limit
/// for a moment survives and a flood is banned within a few dozen requests.
pub const REQUEST_FLOOD_PENALTY: u32 = 5;
/// Misbehaviour points for a gossip message the node rejected.
pub const REJECTED_GOSSIP_PENALTY: u32 = 50;
/// Misbehaviour points forgiven per second.
pub const MISBEHAVIOUR_DECAY_PER_SEC: u32 = 1;
/// How long `start` waits for the listeners to report their addresses.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: relay it.
    Accept,
    /// Invalid by consensus: drop it and penalise the sender. Never use it for a policy
    /// refusal or a race (a double spend of a mempool tx, a block on a stale branch).
    Reject,
    /// Not relayed, nobody penalised (duplicate, policy, unknown parent, queue full ...).
    Ignore,
}

impl From<Acceptance> for MessageAcceptance {
    fn from(a: Acceptance) -> Self {
        match a {
            Acceptance::Accept => MessageAcceptance::Accept,
            Acceptance::Reject => MessageAcceptance::Reject,
            Acceptance::Ignore => MessageAcceptance::Ignore,
        }
    }
}

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// What the service knows about one connected peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// Remote address of the first connection.
    pub address: Multiaddr,
    pub direction: Direction,
    pub connected_since: SystemTime,
    /// Last status the peer told us (handshake or periodic refresh).
    pub status: Option<Status>,
    /// Protocols the peer announced over identify.
    pub protocols: Vec<String>,
    pub agent_version: Option<String>,
    /// `Some(false)` once the peer is known not to speak `/cairn/sync/1` (a gossip-only peer).
    pub supports_sync: Option<bool>,
}

/// What the service tells the node.
#[derive(Clone, Debug)]
pub enum NetworkEvent {
    /// A gossiped transaction, decoded. Answer with [`NetworkHandle::report_validation`].
    Transaction {
        tx: Transaction,
        source: PeerId,
        msg_id: MessageId,
    },
    /// A gossiped block, decoded. Answer with [`NetworkHandle::report_validation`]; if its parent
    /// is unknown, answer `Ignore` and call [`NetworkHandle::sync_with`] with `source`.
    Block {
        block: Block,
        source: PeerId,
        msg_id: MessageId,
    },
    PeerConnected {
        peer: PeerId,
        address: Multiaddr,
        direction: Direction,
    },
    PeerDisconnected {
        peer: PeerId,
    },
}

/// Which gossip topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipKind {
    Tx,
    Block,
}

pub(crate) enum Command {
    Publish {
        kind: GossipKind,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, P2pError>>,
    },
    ReportValidation {
        msg_id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), P2pError>>),
    Ban {
        peer: PeerId,
        reason: String,
    },
    Disconnect(PeerId),
    Request {
        peer: PeerId,
        frame: Vec<u8>,
        reply: oneshot::Sender<Result<SyncResponse, P2pError>>,
    },
    Respond {
        channel: ResponseChannel<Frame>,
        frame: Vec<u8>,
    },
    SyncWith(PeerId),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle on the network service. Every method fails with
/// [`P2pError::ServiceStopped`] (or returns an empty answer) once the service is gone.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NetworkHandle {
    async fn send(&self, c: Command) -> Result<(), P2pError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| P2pError::ServiceStopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| P2pError::ServiceStopped)
    }

    /// Gossips a transaction (payload = its canonical encoding). Returns its message id.
    pub async fn publish_tx(&self, tx: &Transaction) -> Result<MessageId, P2pError> {
        self.publish_raw(GossipKind::Tx, encode(tx)).await
    }

    /// Gossips a block (payload = its canonical encoding). Returns its message id.
    pub async fn publish_block(&self, block: &Block) -> Result<MessageId, P2pError> {
        self.publish_raw(GossipKind::Block, encode(block)).await
    }

    /// Publishes arbitrary bytes on a topic: for tests and tools (a node publishes typed values).
    #[cfg(any(test, feature = "test-utils"))]
    pub async fn publish_bytes(
        &self,
        kind: GossipKind,
        payload: Vec<u8>,
    ) -> Result<MessageId, P2pError> {
        self.publish_raw(kind, payload).await
    }

    async fn publish_raw(&self, kind: GossipKind, payload: Vec<u8>) -> Result<MessageId, P2pError> {
        self.ask(|reply| Command::Publish {
            kind,
            payload,
            reply,
        })
        .await?
    }

    /// The node's verdict on a gossip message; relays it on `Accept`. Must be called once per
    /// [`NetworkEvent::Transaction`] / [`NetworkEvent::Block`]; a verdict that comes after
    /// gossipsub's message cache dropped the message (a few heartbeats) is ignored.
    pub async fn report_validation(
        &self,
        msg_id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    ) -> Result<(), P2pError> {
        self.send(Command::ReportValidation {
            msg_id,
            source,
            acceptance,
        })
        .await
    }

    /// Connected peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(Command::Peers).await.unwrap_or_default()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Bound listen addresses, each ending in `/p2p/<local peer id>`.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(Command::ListenAddrs).await.unwrap_or_default()
    }

    /// Dials an address (with or without `/p2p/<peer id>`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.ask(|reply| Command::Dial(addr, reply)).await?
    }

    /// Disconnects and refuses the peer for the configured ban duration.
    pub async fn ban(&self, peer: PeerId, reason: impl Into<String>) -> Result<(), P2pError> {
        self.send(Command::Ban {
            peer,
            reason: reason.into(),
        })
        .await
    }

    /// Closes every connection to the peer without banning it.
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), P2pError> {
        self.send(Command::Disconnect(peer)).await
    }

    /// Asks the sync driver to compare chains with `peer` now and download what it has more.
    pub async fn sync_with(&self, peer: PeerId) -> Result<(), P2pError> {
        self.send(Command::SyncWith(peer)).await
    }

    /// Sends one sync request and waits for the decoded response (bounded by the request
    /// timeout).
    pub async fn request(
        &self,
        peer: PeerId,
        request: &SyncRequest,
    ) -> Result<SyncResponse, P2pError> {
        let frame = encode(request);
        self.ask(|reply| Command::Request { peer, frame, reply })
            .await?
    }

    /// Sends raw bytes as a sync request: for tests of abuse handling.
    #[cfg(any(test, feature = "test-utils"))]
    pub async fn request_bytes(
        &self,
        peer: PeerId,
        frame: Vec<u8>,
    ) -> Result<SyncResponse, P2pError> {
        self.ask(|reply| Command::Request { peer, frame, reply })
            .await?
    }

    pub(crate) async fn respond(&self, channel: ResponseChannel<Frame>, frame: Vec<u8>) {
        let _ = self.send(Command::Respond { channel, frame }).await;
    }

    /// Counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    pub(crate) fn metrics_ref(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops the service (closing every connection) and waits until it has stopped.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// Entry point: builds the swarm and spawns the swarm task, the sync driver and the request
/// server on the current tokio runtime.
pub struct NetworkService;

impl NetworkService {
    /// Starts the network. Returns once every listener is bound (so `listen_addrs` reports
    /// real ports). The event receiver is bounded (`config.event_queue`): when the node does not
    /// keep up, gossip messages are answered `Ignore` and dropped.
    pub async fn start<C: ChainAccess>(
        config: NetworkConfig,
        chain: Arc<C>,
    ) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), P2pError> {
        config.validate()?;
        let key = match &config.data_dir {
            Some(dir) => load_or_create_node_key(dir)?,
            None => identity::Keypair::generate_ed25519(),
        };
        let local_peer_id = key.public().to_peer_id();
        let behaviour = Behaviour::new(&key, &config)?;
        let idle = config.idle_connection_timeout;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
        }

        let metrics = Arc::new(Metrics::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_queue);
        let (event_tx, event_rx) = mpsc::channel(config.event_queue);
        let (sync_tx, sync_rx) = mpsc::channel(config.sync_queue);
        let (serve_tx, serve_rx) = mpsc::channel(config.serve_queue);
        let handle = NetworkHandle {
            commands: cmd_tx,
            local_peer_id,
            metrics: metrics.clone(),
        };

        let bootnodes = config
            .bootnodes
            .iter()
            .map(|addr| Bootnode {
                addr: addr.clone(),
                peer: peer_id_of(addr),
                next_attempt: Instant::now(),
                backoff: BOOTNODE_BACKOFF_MIN,
            })
            .collect();
        let mut service = Service {
            tx_topic: IdentTopic::new(config.tx_topic()).hash(),
            block_topic: IdentTopic::new(config.block_topic()).hash(),
            swarm,
            commands: cmd_rx,
            events: event_tx,
            sync: sync_tx,
            serve: serve_tx,
            metrics,
            peers: HashMap::new(),
            bans: HashMap::new(),
            pending: HashMap::new(),
            listen_addrs: Vec::new(),
            bootnodes,
            last_discovery: None,
            config: config.clone(),
        };
        for b in &service.bootnodes {
            if let Some(peer) = b.peer {
                service
                    .swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, without_p2p(&b.addr));
            }
        }
        service.wait_listening(config.listen_addrs.len()).await?;
        info!(peer_id = %local_peer_id, addrs = ?service.listen_addrs, "p2p listening");

        tokio::spawn(service.run());
        tokio::spawn(crate::sync::serve(
            chain.clone(),
            serve_rx,
            handle.clone(),
            config.max_sync_response_size,
        ));
        tokio::spawn(SyncDriver::new(chain, handle.clone(), &config, sync_rx).run());
        Ok((handle, event_rx))
    }
}

/// Loads the node key from `<dir>/p2p_key` (32 raw bytes of an ed25519 secret key), creating it
/// with mode 0600 if absent, so the peer id survives restarts.
pub fn load_or_create_node_key(dir: &Path) -> Result<identity::Keypair, P2pError> {
    let path = dir.join(NODE_KEY_FILE);
    let err = |reason: String| P2pError::NodeKey {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        let mut bytes = fs::read(&path).map_err(|e| err(e.to_string()))?;
        let secret = identity::ed25519::SecretKey::try_from_bytes(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
        return Ok(identity::ed25519::Keypair::from(secret).into());
    }
    fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let keypair = identity::ed25519::Keypair::generate();
    let tmp = dir.join(format!("{NODE_KEY_FILE}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| err(e.to_string()))?;
    file.write_all(keypair.secret().as_ref())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(e.to_string()))?;
    fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
    info!(path = %path.display(), "created p2p node key");
    Ok(keypair.into())
}

fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

struct Bootnode {
    addr: Multiaddr,
    peer: Option<PeerId>,
    next_attempt: Instant,
    backoff: Duration,
}

/// Token bucket for inbound requests.
pub(crate) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn full(burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    pub(crate) fn allow(&mut self, rate: u32, burst: u32) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * f64::from(rate);
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct PeerState {
    info: PeerInfo,
    rate: RateLimit,
    misbehaviour: u32,
}

struct Service {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    sync: mpsc::Sender<SyncInput>,
    serve: mpsc::Sender<ServeRequest>,
    metrics: Arc<Metrics>,
    peers: HashMap<PeerId, PeerState>,
    bans: HashMap<PeerId, Instant>,
    pending: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<SyncResponse, P2pError>>)>,
    listen_addrs: Vec<Multiaddr>,
    bootnodes: Vec<Bootnode>,
    last_discovery: Option<Instant>,
    tx_topic: TopicHash,
    block_topic: TopicHash,
}

impl Service {
    async fn wait_listening(&mut self, listeners: usize) -> Result<(), P2pError> {
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        while self.listen_addrs.len() < listeners {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(SwarmEvent::ListenerClosed { reason, .. }) => {
                    return Err(P2pError::Listen {
                        addr: format!("{:?}", self.config.listen_addrs),
                        reason: format!("{reason:?}"),
                    });
                }
                Ok(event) => self.on_swarm_event(event),
                Err(_) => {
                    return Err(P2pError::Listen {
                        addr: format!("{:?}", self.config.listen_addrs),
                        reason: "no listen address reported in time".into(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        info!("p2p shutting down");
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tick.tick() => self.on_tick(),
            }
        }
        for (_, (_, reply)) in self.pending.drain() {
            let _ = reply.send(Err(P2pError::ServiceStopped));
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().bans.unblock_peer(peer);
            debug!(%peer, "ban expired");
        }
        for state in self.peers.values_mut() {
            state.misbehaviour = state
                .misbehaviour
                .saturating_sub(MISBEHAVIOUR_DECAY_PER_SEC);
        }
        // Reconnect to bootnodes while under the target peer count.
        if self.peers.len() < self.config.target_peers {
            for i in 0..self.bootnodes.len() {
                let b = &self.bootnodes[i];
                let connected = b.peer.is_some_and(|p| self.peers.contains_key(&p));
                let banned = b.peer.is_some_and(|p| self.bans.contains_key(&p));
                if connected || banned || b.next_attempt > now {
                    continue;
                }
                let addr = b.addr.clone();
                debug!(%addr, "dialling bootnode");
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "bootnode dial failed");
                }
                let b = &mut self.bootnodes[i];
                b.next_attempt = now + b.backoff;
                b.backoff = (b.backoff * 2).min(BOOTNODE_BACKOFF_MAX);
            }
        }
        // Discovery: a Kademlia bootstrap then periodic random walks.
        let due = self
            .last_discovery
            .is_none_or(|t| now.duration_since(t) >= self.config.discovery_interval);
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known = kad.kbuckets().map(|b| b.num_entries()).sum::<usize>();
        if due && known > 0 {
            self.last_discovery = Some(now);
            if kad.bootstrap().is_ok() {
                kad.get_closest_peers(PeerId::random());
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish {
                kind,
                payload,
                reply,
            } => {
                let topic = match kind {
                    GossipKind::Tx => self.tx_topic.clone(),
                    GossipKind::Block => self.block_topic.clone(),
                };
                let len = payload.len();
                let id = crate::behaviour::message_id(&payload);
                let result = match self.swarm.behaviour_mut().gossipsub.publish(topic, payload) {
                    Ok(id) => Ok(id),
                    Err(PublishError::Duplicate) => Ok(id),
                    Err(e) => Err(P2pError::Publish(e.to_string())),
                };
                if result.is_ok() {
                    let m = &self.metrics;
                    Metrics::inc(match kind {
                        GossipKind::Tx => &m.tx_out,
                        GossipKind::Block => &m.blocks_out,
                    });
                    Metrics::add(&m.gossip_bytes_out, len);
                }
                let _ = reply.send(result);
            }
            Command::ReportValidation {
                msg_id,
                source,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&msg_id, &source, acceptance.into());
                if acceptance == Acceptance::Reject {
                    Metrics::inc(&self.metrics.invalid_messages);
                    self.penalise(
                        source,
                        REJECTED_GOSSIP_PENALTY,
                        "gossip rejected by the node",
                    );
                }
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers.values().map(|s| s.info.clone()).collect());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Dial(addr, reply) => {
                let result = self.swarm.dial(addr.clone()).map_err(|e| P2pError::Dial {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                });
                let _ = reply.send(result);
            }
            Command::Ban { peer, reason } => self.ban(peer, &reason),
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Request { peer, frame, reply } => {
                if self.bans.contains_key(&peer) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: "peer is banned".into(),
                    }));
                    return;
                }
                Metrics::inc(&self.metrics.sync_requests_out);
                Metrics::add(&self.metrics.sync_bytes_out, frame.len());
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, Frame::new(frame));
                self.pending.insert(id, (peer, reply));
            }
            Command::Respond { channel, frame } => {
                Metrics::add(&self.metrics.sync_bytes_out, frame.len());
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, Frame::new(frame));
            }
            Command::SyncWith(peer) => self.to_sync(SyncInput::SyncWith(peer)),
            Command::Shutdown(reply) => {
                let _ = reply.send(());
            }
        }
    }

    fn to_sync(&self, input: SyncInput) {
        if self.sync.try_send(input).is_err() {
            debug!("sync driver queue full; input dropped");
        }
    }

    /// Adds misbehaviour points; at [`BAN_THRESHOLD`] the peer is banned.
    fn penalise(&mut self, peer: PeerId, points: u32, reason: &str) {
        let score = match self.peers.get_mut(&peer) {
            Some(state) => {
                state.misbehaviour = state.misbehaviour.saturating_add(points);
                state.misbehaviour
            }
            None => points,
        };
        debug!(%peer, points, score, reason, "peer penalised");
        if score >= BAN_THRESHOLD {
            self.ban(peer, reason);
        }
    }

    fn ban(&mut self, peer: PeerId, reason: &str) {
        if peer == *self.swarm.local_peer_id() || self.bans.contains_key(&peer) {
            return;
        }
        warn!(%peer, reason, "banning peer");
        Metrics::inc(&self.metrics.bans);
        if self.bans.len() >= MAX_BANNED_PEERS
            && let Some(oldest) = self.bans.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p)
        {
            self.bans.remove(&oldest);
            self.swarm.behaviour_mut().bans.unblock_peer(oldest);
        }
        self.bans
            .insert(peer, Instant::now() + self.config.ban_duration);
        let b = self.swarm.behaviour_mut();
        b.bans.block_peer(peer);
        b.kad.remove_peer(&peer);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                info!(addr = %full, "listening");
                if !self.listen_addrs.contains(&full) {
                    self.listen_addrs.push(full);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                self.listen_addrs.retain(|a| *a != full);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => self.on_connected(peer_id, endpoint, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => self.on_disconnected(peer_id, cause.map(|c| c.to_string())),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                trace!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_disconnected(&mut self, peer: PeerId, cause: Option<String>) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        debug!(%peer, ?cause, "peer disconnected");
        self.metrics.peers.store(
            self.peers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let _ = self
            .events
            .try_send(NetworkEvent::PeerDisconnected { peer });
        self.to_sync(SyncInput::PeerDisconnected(peer));
    }

    fn on_connected(&mut self, peer: PeerId, endpoint: ConnectedPoint, connections: u32) {
        let (address, direction) = match &endpoint {
            ConnectedPoint::Dialer { address, .. } => (address.clone(), Direction::Outbound),
            ConnectedPoint::Listener { send_back_addr, .. } => {
                (send_back_addr.clone(), Direction::Inbound)
            }
        };
        if direction == Direction::Outbound {
            let plain = without_p2p(&address);
            for b in &mut self.bootnodes {
                if without_p2p(&b.addr) == plain {
                    if b.peer.is_none() {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer, plain.clone());
                    }
                    b.peer = Some(peer);
                    b.backoff = BOOTNODE_BACKOFF_MIN;
                }
            }
        }
        if connections > 1 || self.peers.contains_key(&peer) {
            return;
        }
        debug!(%peer, %address, ?direction, "peer connected");
        self.peers.insert(
            peer,
            PeerState {
                info: PeerInfo {
                    peer_id: peer,
                    address: address.clone(),
                    direction,
                    connected_since: SystemTime::now(),
                    status: None,
                    protocols: Vec::new(),
                    agent_version: None,
                    supports_sync: None,
                },
                rate: RateLimit {
                    tokens: f64::from(self.config.request_burst),
                    last: Instant::now(),
                },
                misbehaviour: 0,
            },
        );
        self.metrics.peers.store(
            self.peers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let _ = self.events.try_send(NetworkEvent::PeerConnected {
            peer,
            address,
            direction,
        });
        self.to_sync(SyncInput::PeerConnected(peer));
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
                if speaks_kad {
                    for addr in &info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.info.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
                    state.info.agent_version = Some(info.agent_version.clone());
                    if !info.protocols.contains(&SYNC_PROTOCOL) {
                        state.info.supports_sync = Some(false);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                self.maybe_dial(peer);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    self.maybe_dial(peer);
                }
            }
            _ => {}
        }
    }

    fn maybe_dial(&mut self, peer: PeerId) {
        if self.peers.len() < self.config.target_peers
            && !self.peers.contains_key(&peer)
            && !self.bans.contains_key(&peer)
            && peer != *self.swarm.local_peer_id()
        {
            let _ = self.swarm.dial(peer);
        }
    }

    fn on_gossip(&mut self, source: PeerId, msg_id: MessageId, message: gossipsub::Message) {
        let len = message.data.len();
        Metrics::add(&self.metrics.gossip_bytes_in, len);
        let event = if message.topic == self.tx_topic {
            Metrics::inc(&self.metrics.tx_in);
            decode_with_limit::<Transaction>(&message.data, self.config.max_tx_size).map(|tx| {
                NetworkEvent::Transaction {
                    tx,
                    source,
                    msg_id: msg_id.clone(),
                }
            })
        } else if message.topic == self.block_topic {
            Metrics::inc(&self.metrics.blocks_in);
            decode_with_limit::<Block>(&message.data, self.config.max_block_size).map(|block| {
                NetworkEvent::Block {
                    block,
                    source,
                    msg_id: msg_id.clone(),
                }
            })
        } else {
            self.validation(&msg_id, &source, MessageAcceptance::Ignore);
            return;
        };
        match event {
            Ok(event) => {
                if self.events.try_send(event).is_err() {
                    Metrics::inc(&self.metrics.dropped_events);
                    self.validation(&msg_id, &source, MessageAcceptance::Ignore);
                }
            }
            Err(e) => {
                Metrics::inc(&self.metrics.invalid_messages);
                self.validation(&msg_id, &source, MessageAcceptance::Reject);
                self.penalise(source, BAN_THRESHOLD, &format!("undecodable gossip: {e}"));
            }
        }
    }

    fn validation(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn on_sync_event(&mut self, event: request_response::Event<Frame, Frame>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    Metrics::add(&self.metrics.sync_bytes_in, response.bytes.len());
                    let Some((_, reply)) = self.pending.remove(&request_id) else {
                        return;
                    };
                    let result = match decode_with_limit::<SyncResponse>(
                        &response.bytes,
                        self.config.max_sync_response_size,
                    ) {
                        Ok(SyncResponse::Status(status))
                            if status.genesis != self.config.genesis =>
                        {
                            self.ban(peer, "different genesis");
                            Err(P2pError::Request {
                                peer,
                                reason: "different genesis".into(),
                            })
                        }
                        Ok(response) => {
                            if let Some(state) = self.peers.get_mut(&peer) {
                                state.info.supports_sync = Some(true);
                                if let SyncResponse::Status(s) = &response {
                                    state.info.status = Some(*s);
                                }
                            }
                            Ok(response)
                        }
                        Err(e) => {
                            Metrics::inc(&self.metrics.invalid_messages);
                            self.penalise(peer, BAN_THRESHOLD, "malformed sync response");
                            Err(P2pError::Malformed {
                                peer,
                                reason: e.to_string(),
                            })
                        }
                    };
                    let _ = reply.send(result);
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let result = match error {
                    OutboundFailure::UnsupportedProtocols => {
                        if let Some(state) = self.peers.get_mut(&peer) {
                            state.info.supports_sync = Some(false);
                        }
                        P2pError::UnsupportedProtocol { peer }
                    }
                    OutboundFailure::Io(e) if is_oversized(&e) => {
                        Metrics::inc(&self.metrics.invalid_messages);
                        self.penalise(peer, BAN_THRESHOLD, "oversized sync response");
                        P2pError::Malformed {
                            peer,
                            reason: e.to_string(),
                        }
                    }
                    OutboundFailure::Timeout => P2pError::Request {
                        peer,
                        reason: "timeout".into(),
                    },
                    other => P2pError::Request {
                        peer,
                        reason: other.to_string(),
                    },
                };
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(result));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let InboundFailure::Io(e) = &error
                    && is_oversized(e)
                {
                    Metrics::inc(&self.metrics.invalid_messages);
                    self.penalise(peer, BAN_THRESHOLD, "oversized sync request");
                } else {
                    trace!(%peer, %error, "inbound sync request failed");
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(&mut self, peer: PeerId, frame: Frame, channel: ResponseChannel<Frame>) {
        Metrics::inc(&self.metrics.sync_requests_in);
        Metrics::add(&self.metrics.sync_bytes_in, frame.bytes.len());
        if frame.oversized {
            Metrics::inc(&self.metrics.invalid_messages);
            self.penalise(peer, BAN_THRESHOLD, "oversized sync request");
            return;
        }
        let (rate, burst) = (self.config.requests_per_second, self.config.request_burst);
        if let Some(state) = self.peers.get_mut(&peer)
            && !state.rate.allow(rate, burst)
        {
            Metrics::inc(&self.metrics.invalid_messages);
            self.penalise(
                peer,
                REQUEST_FLOOD_PENALTY,
                "sync request over the rate limit",
            );
            let limited = encode(&SyncResponse::Error("rate limited".into()));
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, Frame::new(limited));
            return;
        }
        let request =
            match decode_with_limit::<SyncRequest>(&frame.bytes, self.config.max_sync_request_size)
            {
                Ok(r) => r,
                Err(e) => {
                    Metrics::inc(&self.metrics.invalid_messages);
                    self.penalise(peer, BAN_THRESHOLD, &format!("malformed sync request: {e}"));
                    return;
                }
            };
        if let SyncRequest::Status(status) = &request {
            if status.genesis != self.config.genesis {
                self.ban(peer, "different genesis");
                return;
            }
            if let Some(state) = self.peers.get_mut(&peer) {
                state.info.status = Some(*status);
                state.info.supports_sync = Some(true);
            }
            self.to_sync(SyncInput::PeerStatus(peer, *status));
        }
        if let Err(mpsc::error::TrySendError::Full(req) | mpsc::error::TrySendError::Closed(req)) =
            self.serve.try_send(ServeRequest {
                peer,
                request,
                channel,
            })
        {
            let busy = encode(&SyncResponse::Error("busy".into()));
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(req.channel, Frame::new(busy));
        }
    }
}
