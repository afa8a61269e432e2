//! The swarm task: owns the libp2p `Swarm`, runs the event loop, applies commands, turns
//! gossip and sync traffic into events for the node and the sync driver, and keeps peers,
//! misbehaviour points and bans.

use super::*;

pub(super) struct Service {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) config: NetworkConfig,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<NetworkEvent>,
    pub(super) sync: mpsc::Sender<SyncInput>,
    pub(super) serve: mpsc::Sender<ServeRequest>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) peers: HashMap<PeerId, PeerState>,
    pub(super) bans: HashMap<PeerId, Instant>,
    pub(super) pending:
        HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<SyncResponse, P2pError>>)>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) bootnodes: Vec<Bootnode>,
    pub(super) last_discovery: Option<Instant>,
    /// Peers saved for the next start (see `addr_book`).
    pub(super) addr_book: super::addr_book::AddrBook,
    pub(super) tx_topic: TopicHash,
    pub(super) block_topic: TopicHash,
    pub(super) compact_topic: TopicHash,
    pub(super) announce_topic: TopicHash,
    /// Inputs of the relay task (announcements, requests, compact blocks).
    pub(super) relay: mpsc::Sender<RelayInput>,
    pub(super) pending_relay:
        HashMap<OutboundRequestId, oneshot::Sender<Result<RelayResponse, P2pError>>>,
    /// Gossip handed to the node and not yet judged, with its kind (the penalty of a reject
    /// depends on it). Bounded: cleared when it reaches twice the event queue (messages the
    /// node never judged), at worst costing a block reject the transaction penalty.
    pub(super) awaiting_validation: HashMap<MessageId, GossipKind>,
}

impl Service {
    pub(super) async fn wait_listening(&mut self, listeners: usize) -> Result<(), P2pError> {
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

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        info!("p2p shutting down");
                        self.addr_book.save(Instant::now());
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
        for (_, reply) in self.pending_relay.drain() {
            let _ = reply.send(Err(P2pError::ServiceStopped));
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.refresh_score_gauges();
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
        self.addr_book.maybe_save(now);
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
                let opts = libp2p::swarm::dial_opts::DialOpts::from(addr.clone());
                let id = opts.connection_id();
                let retry = b.backoff;
                if let Err(e) = self.swarm.dial(opts) {
                    warn!(%addr, error = %e, retry_in_secs = retry.as_secs(), "cannot dial bootnode");
                }
                let b = &mut self.bootnodes[i];
                b.dialling = Some(id);
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
                let result = self.publish(topic, payload).map(|_| id);
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
            Command::PublishBlock {
                block,
                compact,
                reply,
            } => {
                let result = self.publish_block(&block, compact);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::RelayRequest { peer, frame, reply } => {
                self.send_relay_request(peer, frame, reply)
            }
            Command::RespondRelay { channel, frame } => {
                Metrics::add(&self.metrics.sync_bytes_out, frame.len());
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay
                    .send_response(channel, Frame::new(frame));
            }
            Command::Penalise {
                peer,
                points,
                reason,
            } => self.penalise(peer, points, &reason),
            Command::ReportValidation {
                msg_id,
                source,
                acceptance,
            } => {
                self.validation(&msg_id, &source, acceptance.into());
                let kind = self.awaiting_validation.remove(&msg_id);
                if acceptance == Acceptance::Reject {
                    Metrics::inc(&self.metrics.invalid_messages);
                    let (points, reason) = match kind {
                        Some(GossipKind::Block) => (
                            REJECTED_BLOCK_PENALTY,
                            "gossiped block rejected by the node",
                        ),
                        _ => (REJECTED_GOSSIP_PENALTY, "gossip rejected by the node"),
                    };
                    self.penalise(source, points, reason);
                }
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers.values().map(|s| s.info.clone()).collect());
            }
            Command::AnnounceTopicPeers { all, reply } => {
                let gossip = &self.swarm.behaviour().gossipsub;
                let topic = &self.announce_topic;
                let peers = if all {
                    gossip
                        .all_peers()
                        .filter(|(_, topics)| topics.contains(&topic))
                        .map(|(p, _)| *p)
                        .collect()
                } else {
                    gossip.mesh_peers(topic).copied().collect()
                };
                let _ = reply.send(peers);
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

    /// Whether every transaction the node accepts must also go on gossip: while a peer on the
    /// transaction topic does not speak `/cairn/relay/1` (a gossip-only peer, or one whose
    /// identify has not arrived), or with announcements off. Otherwise announcements carry
    /// them between Cairn nodes, and gossip only while few arrive (docs/protocol.md §8.2).
    pub(super) fn refresh_tx_gossip(&mut self) {
        let peers = &self.peers;
        let gossip_only = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(p, topics)| {
                topics.contains(&&self.tx_topic) && !peers.get(p).is_some_and(|s| s.speaks_relay)
            })
            .count();
        self.metrics
            .tx_gossip_peers
            .store(gossip_only as u64, std::sync::atomic::Ordering::Relaxed);
        self.metrics.tx_gossip_for_peers.store(
            gossip_only > 0 || !self.config.tx_announcements,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Publishes on gossip; every refusal but "duplicate" is counted and logged (under a burst
    /// "every queue full" means the message reached nobody from here).
    pub(super) fn publish(&mut self, topic: TopicHash, payload: Vec<u8>) -> Result<(), P2pError> {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), payload)
        {
            Ok(_) | Err(PublishError::Duplicate) => Ok(()),
            Err(e) => {
                Metrics::inc(&self.metrics.gossip_publish_failed);
                debug!(%topic, error = %e, "gossip publish failed");
                Err(P2pError::Publish(e.to_string()))
            }
        }
    }

    /// Adds misbehaviour points; at [`BAN_THRESHOLD`] the peer is banned.
    pub(super) fn penalise(&mut self, peer: PeerId, points: u32, reason: &str) {
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
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => {
                // A bootnode that cannot be reached is the operator's business: say so, and
                // when the next attempt comes. Other failed dials (discovery) are routine.
                let now = Instant::now();
                match self
                    .bootnodes
                    .iter_mut()
                    .find(|b| b.dialling == Some(connection_id))
                {
                    Some(b) => {
                        b.dialling = None;
                        let retry = b.next_attempt.saturating_duration_since(now);
                        warn!(addr = %b.addr, %error, retry_in_secs = retry.as_secs(), "bootnode unreachable");
                    }
                    None => trace!(?peer_id, %error, "outgoing connection failed"),
                }
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
        self.to_relay(RelayInput::PeerDisconnected(peer));
        self.refresh_tx_gossip();
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
                    b.dialling = None;
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
                speaks_relay: false,
            },
        );
        self.refresh_tx_gossip();
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
        self.to_relay(RelayInput::PeerConnected(peer));
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Gossipsub(
                gossipsub::Event::Subscribed { .. } | gossipsub::Event::Unsubscribed { .. },
            ) => self.refresh_tx_gossip(),
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            }) => self.on_slow_peer(peer_id, failed_messages),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Relay(event) => self.on_relay_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
                if speaks_kad {
                    for addr in &info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                        self.addr_book.seen(peer_id, addr);
                    }
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.info.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
                    state.info.agent_version = Some(info.agent_version.clone());
                    if !info.protocols.contains(&SYNC_PROTOCOL) {
                        state.info.supports_sync = Some(false);
                    }
                    state.speaks_relay = info.protocols.contains(&RELAY_PROTOCOL);
                }
                self.refresh_tx_gossip();
            }
            BehaviourEvent::Slots(crate::slots::SlotEvent::Evicted(peer)) => {
                Metrics::inc(&self.metrics.evicted_peers);
                debug!(%peer, "inbound peer evicted to make room");
            }
            BehaviourEvent::Slots(crate::slots::SlotEvent::Refused(reason)) => {
                Metrics::inc(&self.metrics.refused_inbound);
                trace!(%reason, "inbound connection refused");
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
            decode_with_limit::<Transaction>(&message.data, self.config.gossip_tx_limit()).map(
                |tx| NetworkEvent::Transaction {
                    tx,
                    source,
                    msg_id: msg_id.clone(),
                },
            )
        } else if message.topic == self.compact_topic {
            self.on_compact_gossip(source, msg_id, &message.data);
            return;
        } else if message.topic == self.announce_topic {
            self.on_block_announcement(source, msg_id, &message.data);
            return;
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
                let kind = match &event {
                    NetworkEvent::Block { .. } => GossipKind::Block,
                    _ => GossipKind::Tx,
                };
                if self.events.try_send(event).is_ok() {
                    self.await_verdict(msg_id.clone(), kind);
                } else {
                    Metrics::inc(&self.metrics.dropped_events);
                    debug!(%source, "event queue full; gossip message dropped (Ignore)");
                    self.validation(&msg_id, &source, MessageAcceptance::Ignore);
                }
            }
            Err(e) => self.reject_gossip(source, &msg_id, &format!("undecodable gossip: {e}")),
        }
    }

    /// Remembers a gossip message handed on for a verdict. Bounded: verdicts that never come
    /// (a task that dropped the message) cannot grow the map past twice the event queue.
    pub(super) fn await_verdict(&mut self, msg_id: MessageId, kind: GossipKind) {
        if self.awaiting_validation.len() >= 2 * self.config.event_queue {
            self.awaiting_validation.clear();
        }
        self.awaiting_validation.insert(msg_id, kind);
    }

    /// A peer's answer that does not decode or is over its size limit: counted, its sender
    /// banned (`what` is the ban's reason), and the error the requester gets.
    pub(super) fn malformed(
        &mut self,
        peer: PeerId,
        what: &str,
        e: &impl std::fmt::Display,
    ) -> P2pError {
        Metrics::inc(&self.metrics.invalid_messages);
        self.penalise(peer, BAN_THRESHOLD, what);
        P2pError::Malformed {
            peer,
            reason: e.to_string(),
        }
    }

    /// A gossip message that does not decode or check: rejected (not forwarded) and its sender
    /// banned, as any malformed message.
    pub(super) fn reject_gossip(&mut self, source: PeerId, msg_id: &MessageId, reason: &str) {
        Metrics::inc(&self.metrics.invalid_messages);
        self.validation(msg_id, &source, MessageAcceptance::Reject);
        self.penalise(source, BAN_THRESHOLD, reason);
    }

    /// Reports a verdict to gossipsub. A verdict for a message its cache no longer holds (the
    /// node took longer than the cache's few heartbeats) forwards nothing: counted, logged.
    pub(super) fn validation(
        &mut self,
        id: &MessageId,
        source: &PeerId,
        acceptance: MessageAcceptance,
    ) {
        let accept = matches!(acceptance, MessageAcceptance::Accept);
        let found = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
        if !found && accept {
            Metrics::inc(&self.metrics.gossip_validation_late);
            debug!(%source, "verdict after the message left gossipsub's cache; not forwarded");
        }
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
                            let reason = format!(
                                "on another chain: genesis {}, ours {}",
                                status.genesis, self.config.genesis
                            );
                            self.ban(peer, &reason);
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
                            if let SyncResponse::Status(s) = &response {
                                self.to_relay(RelayInput::PeerStatus(peer, *s));
                            }
                            Ok(response)
                        }
                        Err(e) => Err(self.malformed(peer, "malformed sync response", &e)),
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
                        self.malformed(peer, "oversized sync response", &e)
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
        match self.admit_inbound(peer, &frame, "sync") {
            Admission::Admitted => {}
            Admission::Dropped => return,
            Admission::RateLimited => {
                let limited = encode(&SyncResponse::Error("rate limited".into()));
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, Frame::new(limited));
                return;
            }
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
                let reason = format!(
                    "on another chain: genesis {}, ours {}",
                    status.genesis, self.config.genesis
                );
                self.ban(peer, &reason);
                return;
            }
            if let Some(state) = self.peers.get_mut(&peer) {
                state.info.status = Some(*status);
                state.info.supports_sync = Some(true);
            }
            self.to_sync(SyncInput::PeerStatus(peer, *status));
            self.to_relay(RelayInput::PeerStatus(peer, *status));
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
