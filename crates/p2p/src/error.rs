//! The one error type of the network service.

use libp2p::PeerId;

/// Everything that can go wrong in `cairn-p2p`.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("node key file {path}: {reason}")]
    NodeKey { path: String, reason: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("dial {addr}: {reason}")]
    Dial { addr: String, reason: String },
    #[error("publish: {0}")]
    Publish(String),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("peer {peer} does not speak the sync protocol")]
    UnsupportedProtocol { peer: PeerId },
    #[error("malformed message from {peer}: {reason}")]
    Malformed { peer: PeerId, reason: String },
    #[error("the network service has stopped")]
    ServiceStopped,
}
