//! The composed libp2p behaviour and the gossipsub parameters.

use std::time::Duration;

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, connection_limits, identify, identity, kad, mdns, ping};

use crate::codec::{SYNC_PROTOCOL, SyncCodec};
use crate::config::{GOSSIP_FRAME_OVERHEAD, MAX_RELAY_REQUEST_SIZE, NetworkConfig};
use crate::relay::RELAY_PROTOCOL;

/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/cairn/1";
/// Kademlia protocol id (a private DHT: Cairn nodes only).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1");
/// Gossipsub heartbeat.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(700);
/// Heartbeats whose message ids gossipsub advertises in IHAVE (rust-libp2p's default is 3).
/// One: the relay protocol's announcements (`relay`) repair lost transactions, so IHAVE's
/// second and third repeats of every id mostly cost bytes and CPU (on the 20-host testnet
/// IHAVE was about a fifth of the bytes each host received per transaction).
pub const GOSSIP_HISTORY: usize = 1;
/// Messages above this size get a gossipsub v1.2 IDONTWANT to mesh peers (rust-libp2p's
/// default: below it the control message costs about what it saves).
pub const IDONTWANT_THRESHOLD: usize = 1000;

/// Everything the swarm speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub slots: crate::slots::Slots,
    pub bans: allow_block_list::Behaviour<BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub relay: request_response::Behaviour<SyncCodec>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Message id = the first 20 bytes of SHA-256 of the payload.
pub fn message_id(payload: &[u8]) -> gossipsub::MessageId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(payload);
    gossipsub::MessageId::from(&digest[..20])
}

impl Behaviour {
    /// The behaviour; gossipsub registers its counters in `registry` (the node reads its
    /// duplicate count from there, see [`crate::metrics::gossip_duplicates`]).
    pub(crate) fn new(
        key: &identity::Keypair,
        config: &NetworkConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, crate::P2pError> {
        let peer_id = key.public().to_peer_id();
        let err = |e: String| crate::P2pError::Config(e);

        // The total; inbound is capped below it, per IP and by eviction, in `slots`. One over
        // the total leaves room for an inbound connection that evicts another.
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_peers.saturating_add(1)))
            .with_max_pending_incoming(Some(config.max_pending))
            .with_max_pending_outgoing(Some(config.max_pending))
            .with_max_established_per_peer(Some(config.max_connections_per_peer));

        let identify = identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL_VERSION.to_string(),
            key.public(),
        ));

        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(KAD_PROTOCOL),
        );
        kad.set_mode(Some(kad::Mode::Server));

        let tx_topic = IdentTopic::new(config.tx_topic());
        let block_topic = IdentTopic::new(config.block_topic());
        let compact_topic = IdentTopic::new(config.compact_block_topic());
        let announce_topic = IdentTopic::new(config.block_announce_topic());
        // IDONTWANT off = a threshold no message reaches.
        let idontwant_threshold = if config.idontwant {
            IDONTWANT_THRESHOLD
        } else {
            usize::MAX
        };
        let gossip_config = gossipsub::ConfigBuilder::default()
            .idontwant_message_size_threshold(idontwant_threshold)
            .heartbeat_interval(GOSSIP_HEARTBEAT)
            .history_gossip(GOSSIP_HISTORY)
            .validation_mode(ValidationMode::Anonymous)
            .validate_messages()
            .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
            .max_transmit_size(config.max_block_size + GOSSIP_FRAME_OVERHEAD)
            .max_transmit_size_for_topic(
                config.gossip_tx_limit() + GOSSIP_FRAME_OVERHEAD,
                tx_topic.hash(),
            )
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
                .map_err(|e| err(e.to_string()))?;
        let (params, thresholds) =
            peer_score_params(&tx_topic, &[&block_topic, &compact_topic, &announce_topic]);
        gossipsub.with_peer_score(params, thresholds).map_err(err)?;
        gossipsub = gossipsub.with_metrics(registry, gossipsub::MetricsConfig::default());
        gossipsub
            .subscribe(&tx_topic)
            .map_err(|e| err(e.to_string()))?;
        gossipsub
            .subscribe(&block_topic)
            .map_err(|e| err(e.to_string()))?;
        if config.compact_blocks {
            gossipsub
                .subscribe(&compact_topic)
                .map_err(|e| err(e.to_string()))?;
            gossipsub
                .subscribe(&announce_topic)
                .map_err(|e| err(e.to_string()))?;
        }

        let sync = request_response::Behaviour::with_codec(
            SyncCodec {
                max_request_size: config.max_sync_request_size,
                max_response_size: config.max_sync_response_size,
            },
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(config.request_burst as usize),
        );

        // Same framing as sync; its own protocol id, so a peer without it is simply not asked
        // (never penalised), and its own request limit.
        let relay = request_response::Behaviour::with_codec(
            SyncCodec {
                max_request_size: MAX_RELAY_REQUEST_SIZE,
                max_response_size: config.max_sync_response_size,
            },
            [(RELAY_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(config.request_burst as usize),
        );

        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| crate::P2pError::Transport(format!("mdns: {e}")))?,
            )
        } else {
            None
        };

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            slots: crate::slots::Slots::new(crate::slots::SlotPolicy::from_config(config)),
            bans: allow_block_list::Behaviour::default(),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub,
            sync,
            relay,
            mdns: mdns.into(),
        })
    }
}

/// Gossipsub v1.1 peer-scoring parameters.
///
/// Cairn's gossip is low-volume (a block every block time, transactions in bursts), so the
/// parameters reward good behaviour weakly and punish bad behaviour strongly:
///
/// * **P1 time in mesh** (weight 0.01 per second, cap 3600 → at most +36 per topic before topic
///   weight): a stable mesh member gains a little; it never outweighs one invalid message.
/// * **P2 first deliveries** (weight 1, decay 0.9 per decay interval, cap 100): a peer that brings
///   us new transactions or blocks first earns up to +100; the decay forgets old merit.
/// * **P3 / P3b mesh delivery deficit** (weight 0, i.e. disabled): on a quiet chain an honest
///   mesh peer may deliver nothing for minutes; penalising silence would prune honest peers
///   (Ethereum disables it for the same reason on low-rate topics).
/// * **P4 invalid messages** (weight −100 for blocks, −50 for transactions, decay 0.99 per
///   decay interval): gossipsub squares the counter and multiplies by the topic weight, so one
///   rejected block (−100) or two rejected transactions (−25 · 4 = −100) put the sender below
///   the graylist threshold (−80). Invalid deliveries are the gossip offence Cairn really fears;
///   the service also adds its own misbehaviour points, so repeated rejects end in a ban.
/// * **P5 application** (weight 1): unused; bans are enforced by the service (block list).
/// * **P6 IP colocation** (weight −10 above 10 peers on one IP; loopback exempt): resists one
///   host running many identities, while allowing local devnets and a few peers behind one NAT.
/// * **P7 behaviour penalty** (weight −10, threshold 6, decay 0.9): GRAFT during backoff and
///   broken IWANT promises, tolerated a few times (they happen by races).
/// * **Thresholds**: gossip −10, publish −50, graylist −80 (ignore everything from the peer),
///   accept PX 20, opportunistic graft 5.
/// * **Topic weights**: block (full, compact, announcement) 1.0, transaction 0.5 (a block is rarer and more valuable).
pub fn peer_score_params(
    tx_topic: &IdentTopic,
    block_topics: &[&IdentTopic],
) -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = |weight: f64, invalid_weight: f64| TopicScoreParams {
        topic_weight: weight,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: invalid_weight,
        invalid_message_deliveries_decay: 0.99,
    };
    let mut params = PeerScoreParams {
        topic_score_cap: 200.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: -10.0,
        ip_colocation_factor_threshold: 10.0,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        // Loopback is one machine's own nodes (a local devnet, the test suites): without this,
        // a node with more than 10 local peers would graylist them all and gossip would stop.
        ip_colocation_factor_whitelist: [
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect(),
        ..PeerScoreParams::default()
    };
    params.topics.insert(tx_topic.hash(), topic(0.5, -50.0));
    for t in block_topics {
        params.topics.insert(t.hash(), topic(1.0, -100.0));
    }
    (params, score_thresholds())
}

/// Gossipsub score thresholds (see [`peer_score_params`]).
pub fn score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 20.0,
        opportunistic_graft_threshold: 5.0,
    }
}
