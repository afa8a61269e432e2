//! Cairn's network service: gossip relay, the sync protocol, discovery and peer limits, on
//! libp2p.
//!
//! **Owns**: the libp2p swarm (TCP + Noise + Yamux; identify, ping, connection limits,
//! Kademlia, optional mDNS, inbound slots: [`slots`]), the gossipsub topics
//! `/cairn/1/<genesis hex>/tx`, `/cairn/1/<genesis hex>/block` and
//! `/cairn/1/<genesis hex>/cmpctblock`, the request-response protocols `/cairn/sync/1` and
//! `/cairn/relay/1` (transaction announcements and compact-block repair: [`relay`]), the
//! headers-first download driver, per-peer rate limits, misbehaviour scores and bans, and the
//! persistent node key (`<datadir>/p2p_key`).
//!
//! **Never does**: judge a transaction, header or block. It decodes payloads (a payload that does
//! not decode is rejected here and its sender banned) and hands values to the node: gossip as
//! [`NetworkEvent`]s that the node answers with [`NetworkHandle::report_validation`], sync data
//! through the [`ChainAccess`] trait the node implements. It never touches storage.
//!
//! **Main types**: [`NetworkConfig`], [`NetworkService::start`] → ([`NetworkHandle`],
//! `Receiver<`[`NetworkEvent`]`>`), [`ChainAccess`], [`Status`], [`SyncRequest`] /
//! [`SyncResponse`], [`P2pError`], [`MetricsSnapshot`]. With the `test-utils` feature,
//! [`test_utils::MemoryChain`] is an in-memory `ChainAccess` for tests.

pub mod behaviour;
pub mod codec;
pub mod config;
mod error;
#[cfg(test)]
mod hostile_tests;
pub mod metrics;
pub mod relay;
#[cfg(test)]
mod relay_tests;
pub mod service;
pub mod slots;
pub mod sync;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
#[cfg(test)]
mod tests;

pub use codec::{SYNC_PROTOCOL, Status, SyncRequest, SyncResponse};
pub use config::NetworkConfig;
pub use error::P2pError;
pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};
pub use metrics::MetricsSnapshot;
pub use service::{
    Acceptance, Direction, GossipKind, NetworkEvent, NetworkHandle, NetworkService, PeerInfo,
    load_or_create_node_key,
};
pub use sync::{ChainAccess, Refusal};
