//! Block tips: `NewTip` sent when our best block changes, announced tips pulled compactly
//! (BIP152 low-bandwidth) or synced after the grace period, and what each peer has shown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use cairn_primitives::BlockHash;
use libp2p::PeerId;
use tracing::debug;

use super::{Done, TxRelay};
use crate::codec::Status;
use crate::config::{
    MAX_GOSSIP_ANNOUNCED_TRACKED, NEW_TIP_BACKUP_PEERS, RELAY_TICK, TIP_ANNOUNCE_GRACE,
};
use crate::metrics::Metrics;
use crate::relay::RelayRequest;
use crate::relay::compact::RebuildFrom;
use crate::sync::ChainAccess;

impl<C: ChainAccess> TxRelay<C> {
    /// Tells the peers gossip does not reach when our best block changes (`NewTip`), and syncs
    /// with a peer whose announced better tip gossip has not brought within the grace period
    /// (a node gossipsub left out would otherwise wait for the next status round, 5 s).
    pub(super) fn tips(&mut self, now: Instant) {
        let ours = self.chain.status();
        let published = self.published.contains(&ours.best_hash);
        let gossiped = self.gossip_announced.contains(&ours.best_hash);
        // A block of ours is connected before its announcement is published, and the tip can
        // be seen here first: one tick's grace lets `Published` arrive (otherwise every peer
        // would get a `NewTip` as well as the flooded announcement).
        let settled = published
            || gossiped
            || self
                .tip_seen
                .is_some_and(|(h, at)| h == ours.best_hash && now >= at + RELAY_TICK);
        if self.tip_seen.is_none_or(|(h, _)| h != ours.best_hash) {
            self.tip_seen = Some((ours.best_hash, now));
        }
        if self.announced_tip != Some(ours.best_hash) && settled {
            self.announced_tip = Some(ours.best_hash);
            let targets: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, s)| s.speaks_relay && s.known_tip != Some(ours.best_hash))
                .map(|(p, _)| *p)
                .collect();
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                // Peers that gossipsub gives the announcement to (every subscriber for a block
                // we published, our mesh for one we accepted from gossip) need no `NewTip`: it
                // would say it twice (~0.8 kB on the wire with its stream's set-up and answer).
                // A block that reached us otherwise was not forwarded: tell all.
                let mesh = if published || gossiped {
                    net.announce_topic_peers(published).await
                } else {
                    Vec::new()
                };
                let mut rest: Vec<PeerId> =
                    targets.into_iter().filter(|p| !mesh.contains(p)).collect();
                if gossiped {
                    // The rest get it from their own mesh peers (every node has at least
                    // D_lo): the `NewTip` is only a backup against lost gossip, so a few
                    // random ones suffice (a node that misses both hears a few from its other
                    // peers, and the 5 s status round remains). To all of them it was ~9 kB
                    // per host and block on the 20-host testnet.
                    let order = std::collections::hash_map::RandomState::new();
                    rest.sort_by_key(|p| std::hash::BuildHasher::hash_one(&order, p));
                    rest.truncate(NEW_TIP_BACKUP_PEERS);
                }
                let sends = rest.into_iter().map(|peer| {
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
        Metrics::inc(&self.metrics().compact_tip_pulls);
        self.rebuild(
            status.best_hash,
            RebuildFrom::Tip(status.best_hash),
            peer,
            None,
        );
        true
    }

    /// Marks block `hash` in flight (see `blocks_in_flight`) and starts rebuilding it from its
    /// compact form, got or to be pulled from `source`.
    pub(super) fn rebuild(
        &mut self,
        hash: cairn_primitives::BlockHash,
        from: RebuildFrom,
        source: PeerId,
        msg_id: Option<libp2p::gossipsub::MessageId>,
    ) {
        self.blocks_in_flight.insert(hash);
        let job = self.rebuilder.start(
            Arc::clone(&self.chain),
            self.net.clone(),
            self.events.clone(),
            from,
            source,
            msg_id,
        );
        self.running.push(job);
    }
}

/// Appends `hash` to a list of recent blocks bounded by [`MAX_GOSSIP_ANNOUNCED_TRACKED`].
pub(super) fn remember(list: &mut VecDeque<BlockHash>, hash: BlockHash) {
    if list.len() >= MAX_GOSSIP_ANNOUNCED_TRACKED {
        list.pop_front();
    }
    list.push_back(hash);
}
