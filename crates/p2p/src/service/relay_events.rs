//! The swarm task's side of `/cairn/relay/1` and of compact blocks: requests in and out,
//! compact gossip handed to the relay task, blocks published compactly or in full, and
//! gossipsub's own reports of what it could not send.

use cairn_primitives::BlockHeader;
use cairn_primitives::block::HEADER_SIZE;
use libp2p::gossipsub::FailedMessages;

use super::*;
use crate::config::MAX_INVENTORY_IDS;
use crate::relay::compact::{CompactBlock, MAX_BLOCK_TXS_INDEXES, random_nonce};

impl Service {
    pub(super) fn to_relay(&self, input: RelayInput) {
        if self.relay.try_send(input).is_err() {
            Metrics::inc(&self.metrics.relay_inputs_dropped);
            debug!("relay queue full; input dropped");
        }
    }

    /// Gossipsub could not send some messages to a slow peer this heartbeat (a full queue or a
    /// message that waited too long): those are the forwards gossip loses under a burst.
    pub(super) fn on_slow_peer(&mut self, peer: PeerId, failed: FailedMessages) {
        let m = &self.metrics;
        Metrics::add(&m.gossip_slow_peer_publish, failed.publish);
        Metrics::add(&m.gossip_slow_peer_forward, failed.forward);
        Metrics::add(&m.gossip_queue_full, failed.total_queue_full());
        Metrics::add(&m.gossip_send_timeout, failed.timeout);
        debug!(%peer, ?failed, "gossipsub dropped messages to a slow peer");
    }

    /// Counts the connected peers gossipsub demoted by score (a peer below the publish
    /// threshold misses our own messages; one below the graylist threshold is not heard at
    /// all): a node cut off this way loses gossip without any queue dropping anything.
    pub(super) fn refresh_score_gauges(&self) {
        let thresholds = crate::behaviour::score_thresholds();
        let gs = &self.swarm.behaviour().gossipsub;
        let (mut gossip, mut publish, mut gray) = (0u64, 0u64, 0u64);
        for peer in self.peers.keys() {
            let Some(score) = gs.peer_score(peer) else {
                continue;
            };
            gossip += u64::from(score < thresholds.gossip_threshold);
            publish += u64::from(score < thresholds.publish_threshold);
            gray += u64::from(score < thresholds.graylist_threshold);
        }
        let m = &self.metrics;
        let set =
            |c: &std::sync::atomic::AtomicU64, v| c.store(v, std::sync::atomic::Ordering::Relaxed);
        set(&m.gossip_peers_below_gossip, gossip);
        set(&m.gossip_peers_below_publish, publish);
        set(&m.gossip_peers_graylisted, gray);
    }

    /// Whether a connected peer takes full blocks only: subscribed to the block topic and to
    /// neither the compact nor the announcement one (another implementation, an older node, a
    /// light relay).
    fn has_full_block_peers(&self) -> bool {
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| {
                topics.contains(&&self.block_topic)
                    && !topics.contains(&&self.compact_topic)
                    && !topics.contains(&&self.announce_topic)
            })
    }

    /// Publishes a block: when asked and compact blocks are on, its header on the announcement
    /// topic (peers pull the compact block, `block_announcements`) or its compact form on the
    /// compact topic; in full when compact blocks are off or a full-block-only peer is
    /// connected.
    pub(super) fn publish_block(
        &mut self,
        block: &Block,
        compact: bool,
    ) -> Result<MessageId, P2pError> {
        let compact_on = self.config.compact_blocks;
        let mut id = None;
        let mut result = Ok(());
        if compact && compact_on {
            let (topic, payload) = if self.config.block_announcements {
                (self.announce_topic.clone(), encode(&block.header))
            } else {
                let c = CompactBlock::from_block(block, random_nonce());
                (self.compact_topic.clone(), encode(&c))
            };
            id = Some(crate::behaviour::message_id(&payload));
            let len = payload.len();
            result = self.publish(topic, payload);
            if result.is_ok() && self.config.block_announcements {
                // Published (flooded to every subscriber of the topic), so the relay task's
                // `NewTip` skips them.
                self.to_relay(RelayInput::Published(block.hash()));
            }
            if result.is_ok() {
                Metrics::inc(if self.config.block_announcements {
                    &self.metrics.block_announcements_published
                } else {
                    &self.metrics.compact_published
                });
                Metrics::inc(&self.metrics.blocks_out);
                Metrics::add(&self.metrics.gossip_bytes_out, len);
            }
        }
        let full_needed = if compact_on {
            self.has_full_block_peers()
        } else {
            compact
        };
        if full_needed {
            let payload = encode(block);
            let full_id = crate::behaviour::message_id(&payload);
            let len = payload.len();
            let full = self.publish(self.block_topic.clone(), payload);
            if full.is_ok() {
                if compact_on {
                    Metrics::inc(&self.metrics.full_blocks_for_legacy);
                } else {
                    Metrics::inc(&self.metrics.blocks_out);
                }
                Metrics::add(&self.metrics.gossip_bytes_out, len);
            }
            if id.is_none() {
                id = Some(full_id);
                result = full;
            }
        }
        match id {
            Some(id) => result.map(|_| id),
            None => Err(P2pError::Publish("nothing to publish".into())),
        }
    }

    /// A compact block from gossip: checked for what needs no mempool (a malformed one is
    /// rejected and its sender banned, as undecodable gossip), then rebuilt by the relay task.
    pub(super) fn on_compact_gossip(&mut self, source: PeerId, msg_id: MessageId, data: &[u8]) {
        Metrics::inc(&self.metrics.blocks_in);
        let limit = self.config.max_block_size;
        let compact = decode_with_limit::<CompactBlock>(data, limit)
            .map_err(|e| e.to_string())
            .and_then(|c| c.check(limit).map(|()| c).map_err(|e| e.to_string()));
        let compact = match compact {
            Ok(c) => c,
            Err(e) => {
                self.reject_gossip(source, &msg_id, &format!("malformed compact block: {e}"));
                return;
            }
        };
        let input = RelayInput::Compact {
            compact: Box::new(compact),
            source,
            msg_id: msg_id.clone(),
        };
        if self.relay.try_send(input).is_ok() {
            self.await_verdict(msg_id, GossipKind::Block);
        } else {
            Metrics::inc(&self.metrics.relay_inputs_dropped);
            debug!(%source, "relay queue full; compact block dropped (Ignore)");
            self.validation(&msg_id, &source, MessageAcceptance::Ignore);
        }
    }

    /// A block announcement (a header) from gossip: a malformed one is rejected and its sender
    /// banned; one of our tip is ignored; otherwise the relay task pulls the compact block from
    /// the announcer and rebuilds it. The announcement is forwarded only once the block is
    /// connected (validation before relay, as every block).
    pub(super) fn on_block_announcement(&mut self, source: PeerId, msg_id: MessageId, data: &[u8]) {
        Metrics::inc(&self.metrics.blocks_in);
        Metrics::inc(&self.metrics.block_announcements_in);
        let header = match decode_with_limit::<BlockHeader>(data, HEADER_SIZE) {
            Ok(h) => h,
            Err(e) => {
                let reason = format!("malformed block announcement: {e}");
                self.reject_gossip(source, &msg_id, &reason);
                return;
            }
        };
        let input = RelayInput::Announcement {
            header,
            source,
            msg_id: msg_id.clone(),
        };
        if self.relay.try_send(input).is_ok() {
            self.await_verdict(msg_id, GossipKind::Block);
        } else {
            Metrics::inc(&self.metrics.relay_inputs_dropped);
            debug!(%source, "relay queue full; block announcement dropped (Ignore)");
            self.validation(&msg_id, &source, MessageAcceptance::Ignore);
        }
    }

    pub(super) fn send_relay_request(
        &mut self,
        peer: PeerId,
        frame: Vec<u8>,
        reply: oneshot::Sender<Result<RelayResponse, P2pError>>,
    ) {
        if self.bans.contains_key(&peer) {
            let _ = reply.send(Err(P2pError::Request {
                peer,
                reason: "peer is banned".into(),
            }));
            return;
        }
        Metrics::add(&self.metrics.sync_bytes_out, frame.len());
        let id = self
            .swarm
            .behaviour_mut()
            .relay
            .send_request(&peer, Frame::new(frame));
        self.pending_relay.insert(id, reply);
    }

    pub(super) fn on_relay_event(&mut self, event: request_response::Event<Frame, Frame>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_relay(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    Metrics::add(&self.metrics.sync_bytes_in, response.bytes.len());
                    let Some(reply) = self.pending_relay.remove(&request_id) else {
                        return;
                    };
                    let limit = self.config.max_sync_response_size;
                    let result = match decode_with_limit::<RelayResponse>(&response.bytes, limit) {
                        Ok(r) => Ok(r),
                        Err(e) => Err(self.malformed(peer, "malformed relay response", &e)),
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
                    OutboundFailure::UnsupportedProtocols => P2pError::UnsupportedProtocol { peer },
                    OutboundFailure::Io(e) if is_oversized(&e) => {
                        self.malformed(peer, "oversized relay response", &e)
                    }
                    other => P2pError::Request {
                        peer,
                        reason: other.to_string(),
                    },
                };
                if let Some(reply) = self.pending_relay.remove(&request_id) {
                    let _ = reply.send(Err(result));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                trace!(%peer, %error, "inbound relay request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn respond_relay_now(&mut self, channel: ResponseChannel<Frame>, response: &RelayResponse) {
        let frame = encode(response);
        Metrics::add(&self.metrics.sync_bytes_out, frame.len());
        let _ = self
            .swarm
            .behaviour_mut()
            .relay
            .send_response(channel, Frame::new(frame));
    }

    /// An inbound relay request: rate-limited with the peer's sync requests (one budget per
    /// peer), decoded with its limit, then answered here (`Inventory`) or by the relay task.
    fn on_inbound_relay(&mut self, peer: PeerId, frame: Frame, channel: ResponseChannel<Frame>) {
        match self.admit_inbound(peer, &frame, "relay") {
            Admission::Admitted => {}
            Admission::Dropped => return,
            Admission::RateLimited => {
                self.respond_relay_now(channel, &RelayResponse::Error("rate limited".into()));
                return;
            }
        }
        let request = match decode_with_limit::<RelayRequest>(
            &frame.bytes,
            crate::config::MAX_RELAY_REQUEST_SIZE,
        ) {
            Ok(r) => r,
            Err(e) => {
                Metrics::inc(&self.metrics.invalid_messages);
                self.penalise(
                    peer,
                    BAN_THRESHOLD,
                    &format!("malformed relay request: {e}"),
                );
                return;
            }
        };
        let too_many = match &request {
            RelayRequest::Inventory(ids) | RelayRequest::GetTxs(ids) => {
                ids.len() > MAX_INVENTORY_IDS
            }
            RelayRequest::GetBlockTxs { indexes, .. } => indexes.len() > MAX_BLOCK_TXS_INDEXES,
            RelayRequest::NewTip(_) | RelayRequest::GetCompact(_) => false,
        };
        if too_many {
            Metrics::inc(&self.metrics.invalid_messages);
            self.penalise(peer, BAN_THRESHOLD, "relay request above its id limit");
            return;
        }
        Metrics::inc(&self.metrics.relay_requests_in);
        let input = match request {
            RelayRequest::Inventory(ids) => {
                self.respond_relay_now(channel, &RelayResponse::Ack);
                self.to_relay(RelayInput::Inventory(peer, ids));
                return;
            }
            RelayRequest::NewTip(status) => {
                Metrics::inc(&self.metrics.relay_new_tips_in);
                self.respond_relay_now(channel, &RelayResponse::Ack);
                if status.genesis == self.config.genesis {
                    self.to_relay(RelayInput::NewTip(peer, status));
                }
                return;
            }
            RelayRequest::GetTxs(txids) => RelayInput::GetTxs {
                peer,
                txids,
                channel,
            },
            request @ RelayRequest::GetBlockTxs { .. } => RelayInput::GetBlockTxs {
                peer,
                request,
                channel,
            },
            RelayRequest::GetCompact(block) => RelayInput::GetCompact {
                peer,
                block,
                channel,
            },
        };
        if let Err(
            mpsc::error::TrySendError::Full(input) | mpsc::error::TrySendError::Closed(input),
        ) = self.relay.try_send(input)
        {
            Metrics::inc(&self.metrics.relay_inputs_dropped);
            debug!(%peer, "relay queue full; request answered busy");
            if let RelayInput::GetTxs { channel, .. }
            | RelayInput::GetBlockTxs { channel, .. }
            | RelayInput::GetCompact { channel, .. } = input
            {
                self.respond_relay_now(channel, &RelayResponse::Error("busy".into()));
            }
        }
    }
}
