//! Block tips: `NewTip` sent when our best block changes, announced tips pulled compactly
//! (BIP152 low-bandwidth) or synced after the grace period, and what each peer has shown.

use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use tracing::debug;

use super::{Done, TxRelay};
use crate::codec::Status;
use crate::config::TIP_ANNOUNCE_GRACE;
use crate::metrics::Metrics;
use crate::relay::RelayRequest;
use crate::relay::compact::RebuildFrom;
use crate::sync::ChainAccess;

impl<C: ChainAccess> TxRelay<C> {
    /// Tells every peer when our best block changes, and syncs with a peer whose announced
    /// better tip gossip has not brought within the grace period (a node gossipsub left out
    /// would otherwise wait for the next status round, 5 s).
    pub(super) fn tips(&mut self, now: Instant) {
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
    pub(super) fn ignore(&mut self, msg_id: libp2p::gossipsub::MessageId, source: PeerId) {
        let net = self.net.clone();
        self.running.push(Box::pin(async move {
            let _ = net
                .report_validation(msg_id, source, crate::service::Acceptance::Ignore)
                .await;
            Done::Rebuilt
        }));
    }

    /// `peer` showed it has block `hash` (so it need not be told of it as our new tip).
    pub(super) fn peer_has(&mut self, peer: PeerId, hash: cairn_primitives::BlockHash) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.known_tip = Some(hash);
        }
    }

    /// Whether a block's compact form arrived recently (see `blocks_in_flight`).
    pub(super) fn in_flight(&self, hash: &cairn_primitives::BlockHash) -> bool {
        self.blocks_in_flight.contains(hash)
    }

    /// A peer's new tip one block ahead of ours, not on its way in already: its compact form
    /// is pulled from that peer (`GetCompact`) and rebuilt, as an announced block (BIP152's
    /// low-bandwidth mode: whichever announcement comes first, gossip or `NewTip`, starts the
    /// one pull). `false`: not applicable (compact blocks off, further ahead, a fork, already
    /// in flight), the caller decides (grace period, then sync).
    pub(super) fn pull_tip(&mut self, peer: PeerId, status: &Status) -> bool {
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
    pub(super) fn block_in_flight(&mut self, hash: cairn_primitives::BlockHash) {
        self.blocks_in_flight.insert(hash);
    }
}
