//! The cloneable handle the rest of the node holds, and the commands it sends the swarm task.

use super::*;

pub(crate) enum Command {
    Publish {
        kind: GossipKind,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, P2pError>>,
    },
    /// A block: compactly (when `compact`) and in full where peers need it (see
    /// [`NetworkHandle::publish_block`]).
    PublishBlock {
        block: Arc<Block>,
        compact: bool,
        reply: Option<oneshot::Sender<Result<MessageId, P2pError>>>,
    },
    RelayRequest {
        peer: PeerId,
        frame: Vec<u8>,
        reply: oneshot::Sender<Result<RelayResponse, P2pError>>,
    },
    RespondRelay {
        channel: ResponseChannel<Frame>,
        frame: Vec<u8>,
    },
    Penalise {
        peer: PeerId,
        points: u32,
        reason: String,
    },
    ReportValidation {
        msg_id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// Peers in our gossipsub mesh of the block-announcement topic (`all`: every peer
    /// subscribed to it).
    AnnounceTopicPeers {
        all: bool,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
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
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) local_peer_id: PeerId,
    pub(super) metrics: Arc<Metrics>,
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

    /// Whether transactions the node accepts should be published on gossip: while few arrive
    /// (gossip is then the fastest path), or when some peer on the transaction topic takes
    /// them from gossip alone (or announcements are off). Otherwise the announcements carry
    /// them (docs/protocol.md §8.2).
    pub fn tx_gossip_wanted(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.tx_gossip_for_peers.load(Relaxed) || self.metrics.tx_gossip_quiet.load(Relaxed)
    }

    /// Whether a peer on the transaction topic takes transactions from gossip alone (or
    /// announcements are off): then what the node fetched is published on gossip too (the
    /// fetch bypassed gossipsub, so it forwards nothing).
    pub fn gossip_only_peers(&self) -> bool {
        self.metrics
            .tx_gossip_for_peers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gossips a transaction (payload = its canonical encoding). Returns its message id.
    pub async fn publish_tx(&self, tx: &Transaction) -> Result<MessageId, P2pError> {
        self.publish_raw(GossipKind::Tx, encode(tx)).await
    }

    /// Gossips a block the node produced (mined, `submitblock`): compactly on the
    /// `cmpctblock` topic, and in full on the `block` topic when compact blocks are off or a
    /// connected peer takes only full blocks (docs/protocol.md §8.7). Returns the message id
    /// of the compact announcement (of the full block when compact blocks are off).
    pub async fn publish_block(&self, block: &Block) -> Result<MessageId, P2pError> {
        self.ask(|reply| Command::PublishBlock {
            block: Arc::new(block.clone()),
            compact: true,
            reply: Some(reply),
        })
        .await?
    }

    /// A block that arrived by gossip and was connected: gossipsub forwards the message that
    /// brought it, so this only publishes it in full for connected peers that take only full
    /// blocks (nothing when there are none).
    pub async fn relay_block_to_full_block_peers(&self, block: Arc<Block>) {
        let _ = self
            .send(Command::PublishBlock {
                block,
                compact: false,
                reply: None,
            })
            .await;
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

    /// Peers that gossipsub sends our block announcements to: with `all`, every peer
    /// subscribed to the topic (where a message we publish goes: flood publishing); otherwise
    /// our mesh of it (where an accepted message we received is forwarded; those that sent it
    /// to us have it already).
    pub async fn announce_topic_peers(&self, all: bool) -> Vec<PeerId> {
        self.ask(|reply| Command::AnnounceTopicPeers { all, reply })
            .await
            .unwrap_or_default()
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

    /// Sends one relay request (`/cairn/relay/1`) and waits for the decoded response.
    pub async fn relay_request(
        &self,
        peer: PeerId,
        request: &RelayRequest,
    ) -> Result<RelayResponse, P2pError> {
        let frame = encode(request);
        self.ask(|reply| Command::RelayRequest { peer, frame, reply })
            .await?
    }

    pub(crate) async fn respond_relay(&self, channel: ResponseChannel<Frame>, frame: Vec<u8>) {
        let _ = self.send(Command::RespondRelay { channel, frame }).await;
    }

    /// Adds misbehaviour points to a peer (banned at the threshold).
    pub(crate) async fn penalise(&self, peer: PeerId, points: u32, reason: &str) {
        let _ = self
            .send(Command::Penalise {
                peer,
                points,
                reason: reason.to_string(),
            })
            .await;
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
