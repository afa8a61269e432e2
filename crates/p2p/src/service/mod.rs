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
use crate::relay::{RELAY_PROTOCOL, RelayInput, RelayRequest, RelayResponse, TxRelay};
use crate::sync::{ChainAccess, ServeRequest, SyncDriver, SyncInput};

mod addr_book;
mod admission;
mod handle;
mod node_key;
mod relay_events;
mod swarm;

use admission::Admission;
pub(crate) use handle::Command;
pub use handle::NetworkHandle;
pub use node_key::load_or_create_node_key;
use swarm::Service;

/// Most peers remembered as banned; beyond it the ban closest to expiry is forgotten.
pub const MAX_BANNED_PEERS: usize = 10_000;
/// Misbehaviour points for an inbound request over the rate limit (answered `Error`, not
/// served). Points decay at [`MISBEHAVIOUR_DECAY_PER_SEC`], so a peer a little over the limit
/// for a moment survives and a flood is banned within a few dozen requests.
pub const REQUEST_FLOOD_PENALTY: u32 = 5;
/// Misbehaviour points for a gossiped transaction the node rejected.
pub const REJECTED_GOSSIP_PENALTY: u32 = 50;
/// Misbehaviour points for a gossiped block the node rejected: a ban. A node relays only blocks
/// it connected and rejects only for rules that do not depend on its clock, so an honest peer
/// never delivers a block another node rejects.
pub const REJECTED_BLOCK_PENALTY: u32 = BAN_THRESHOLD;
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
        let mut registry = prometheus_client::registry::Registry::default();
        let behaviour = Behaviour::new(&key, &config, &mut registry)?;
        let mut swarm = build_swarm(key, behaviour, config.idle_connection_timeout)?;
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
        }

        let metrics = Arc::new(Metrics::default());
        let _ = metrics.gossip_registry.set(registry);
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_queue);
        let (event_tx, event_rx) = mpsc::channel(config.event_queue);
        let (sync_tx, sync_rx) = mpsc::channel(config.sync_queue);
        let (serve_tx, serve_rx) = mpsc::channel(config.serve_queue);
        let (relay_tx, relay_rx) = mpsc::channel(config.relay_queue);
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
                dialling: None,
            })
            .collect();
        let mut service = Service {
            tx_topic: IdentTopic::new(config.tx_topic()).hash(),
            block_topic: IdentTopic::new(config.block_topic()).hash(),
            compact_topic: IdentTopic::new(config.compact_block_topic()).hash(),
            announce_topic: IdentTopic::new(config.block_announce_topic()).hash(),
            awaiting_validation: HashMap::new(),
            swarm,
            commands: cmd_rx,
            events: event_tx.clone(),
            relay: relay_tx,
            pending_relay: HashMap::new(),
            sync: sync_tx,
            serve: serve_tx,
            metrics,
            peers: HashMap::new(),
            bans: HashMap::new(),
            pending: HashMap::new(),
            listen_addrs: Vec::new(),
            bootnodes,
            last_discovery: None,
            addr_book: addr_book::AddrBook::load(
                config
                    .data_dir
                    .as_ref()
                    .map(|d| d.join(addr_book::PEERS_FILE)),
                local_peer_id,
            ),
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
        // The peers of our last run, dialled at once (they may be all that is left of the
        // network we knew when the bootnodes restart with us).
        for addr in service.addr_book.startup_dials() {
            if let Err(e) = service.swarm.dial(addr.clone()) {
                debug!(%addr, error = %e, "cannot dial a saved peer");
            }
        }
        service.refresh_tx_gossip();
        service.wait_listening(config.listen_addrs.len()).await?;
        info!(peer_id = %local_peer_id, addrs = ?service.listen_addrs, "p2p listening");

        tokio::spawn(service.run());
        tokio::spawn(crate::sync::serve(
            chain.clone(),
            serve_rx,
            handle.clone(),
            config.max_sync_response_size,
            config.serve_workers,
            config.serve_queue_per_peer,
        ));
        let blocks_in_flight = Arc::new(crate::relay::BlocksInFlight::default());
        tokio::spawn(
            SyncDriver::new(
                chain.clone(),
                handle.clone(),
                &config,
                sync_rx,
                Arc::clone(&blocks_in_flight),
            )
            .run(),
        );
        tokio::spawn(
            TxRelay::new(
                chain,
                handle.clone(),
                &config,
                relay_rx,
                event_tx,
                blocks_in_flight,
            )
            .run(),
        );
        Ok((handle, event_rx))
    }
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
    /// The dial in flight, so a failure is reported as this bootnode's, with the retry time.
    dialling: Option<libp2p::swarm::ConnectionId>,
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
    /// Identify listed `/cairn/relay/1`: it gets transactions by announcement, not gossip.
    speaks_relay: bool,
    rate: RateLimit,
    misbehaviour: u32,
}

/// The swarm every Cairn node runs: TCP (no Nagle), noise, yamux, and `behaviour`. Also the raw
/// peers of the tests (hostile, bare or gossip-only), so they speak the node's transport.
pub(crate) fn build_swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: identity::Keypair,
    behaviour: B,
    idle: Duration,
) -> Result<Swarm<B>, P2pError> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
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
        .build())
}
