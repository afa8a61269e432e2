//! Transaction relay: the pool announced to a peer that caught up, inventories out, wanted
//! transactions fetched from their announcers after the gossip grace, and `GetTxs` served.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use cairn_primitives::{Transaction, Txid};
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tracing::debug;

use super::{Done, TxRelay, Wanted};
use crate::P2pError;
use crate::codec::{Frame, Status};
use crate::config::{
    MAX_ANNOUNCERS_PER_TX, MAX_INVENTORIES_IN_FLIGHT, MAX_INVENTORY_IDS, MAX_OUTBOX_PER_PEER,
    MAX_POOL_ANNOUNCEMENT, MAX_TX_FETCHES_IN_FLIGHT, MAX_TXS_RESPONSE_BYTES, MAX_WANTED_TXS,
};
use crate::metrics::Metrics;
use crate::relay::{RelayRequest, TXS_RESPONSE_PREFIX, txs_response};
use crate::service::REJECTED_GOSSIP_PENALTY;
use crate::sync::{ChainAccess, Refusal};

/// Half to one and a half times `interval`, at random.
fn jittered(interval: std::time::Duration) -> std::time::Duration {
    let permille = (crate::relay::compact::random_nonce() % 1001) as u32;
    interval / 2 + interval * permille / 1000
}

/// Fetched transactions submitted together (see `on_fetched`).
const FETCHED_SUBMIT_CHUNK: usize = 32;

impl<C: ChainAccess> TxRelay<C> {
    /// A new peer is announced our whole pool (bounded), so it gets what it missed, once its
    /// status says it has caught up with our chain: a node still syncing could not accept
    /// transactions spending outputs it does not know yet, and would drop them. (A peer that
    /// lies about its chain only delays its own pool.)
    pub(super) fn on_status(&mut self, peer: PeerId, status: Status) {
        self.peer_has(peer, status.best_hash);
        // A status round showing the next block (before its announcement reached us): pulled
        // compactly, and so not downloaded in full by the sync driver meanwhile.
        if status.total_work > self.chain.status().total_work {
            self.pull_tip(peer, &status);
        }
        if !self.config.tx_announcements {
            return;
        }
        let ours = self.chain.status().total_work;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.pool_announced || !state.speaks_relay || status.total_work < ours {
            return;
        }
        state.pool_announced = true;
        let pool = self.chain.pool_txids(MAX_POOL_ANNOUNCEMENT);
        debug!(%peer, txs = pool.len(), "announcing the pool to a peer that caught up");
        for txid in pool {
            if !state.known.contains(&txid) && state.outbox.len() < MAX_OUTBOX_PER_PEER {
                state.outbox.push_back(txid);
            }
        }
    }

    pub(super) fn on_inventory(&mut self, peer: PeerId, txids: Vec<Txid>) {
        let now = Instant::now();
        let gossiped = self.net.metrics_ref().tx_in.load(Ordering::Relaxed);
        self.pacer.announced(now, gossiped);
        let (quiet_at, ready_at) = (
            self.pacer.quiet_deadline(now),
            self.pacer.busy_deadline(now),
        );
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut dropped = 0;
        for txid in txids {
            state.known.insert(&txid);
            if let Some(w) = self.wanted.get_mut(&txid) {
                if w.announcers.len() < MAX_ANNOUNCERS_PER_TX && !w.announcers.contains(&peer) {
                    w.announcers.push(peer);
                }
                continue;
            }
            if self.fetched.contains(&txid) || self.chain.has_tx(&txid) {
                continue;
            }
            if self.wanted.len() >= MAX_WANTED_TXS {
                dropped += 1;
                continue;
            }
            self.wanted.insert(
                txid,
                Wanted {
                    quiet_at,
                    ready_at,
                    announcers: vec![peer],
                    in_flight: false,
                },
            );
            self.queue.push_back(txid);
        }
        if dropped > 0 {
            Metrics::add(&self.net.metrics_ref().relay_wanted_dropped, dropped);
            debug!(%peer, dropped, "announced transactions not tracked: too many wanted");
        }
    }

    pub(super) fn serve_txs(
        &mut self,
        peer: PeerId,
        txids: Vec<Txid>,
        channel: ResponseChannel<Frame>,
    ) {
        if let Some(state) = self.peers.get_mut(&peer) {
            for t in &txids {
                state.known.insert(t);
            }
        }
        let budget = MAX_TXS_RESPONSE_BYTES.saturating_sub(TXS_RESPONSE_PREFIX);
        let txs = self.chain.tx_bytes(&txids, budget);
        Metrics::add(&self.metrics().relay_txs_served, txs.len());
        let frame = txs_response(&txs);
        let net = self.net.clone();
        self.running.push(Box::pin(async move {
            net.respond_relay(channel, frame).await;
            Done::Rebuilt
        }));
    }

    /// Queues the node's fresh txids for every peer that does not know them, then sends an
    /// inventory (per free slot) to each peer whose turn it is. A peer's turn comes once per
    /// announce interval on average, at a jittered time of its own (half to one and a half
    /// intervals after its last inventory), so a transaction reaches a few peers within a
    /// fraction of the interval and spreads from them, for the same number of requests as
    /// announcing to every peer at once (which waited a whole interval at every hop). A peer
    /// not announced to lately gets a fresh transaction at once.
    pub(super) fn announce(&mut self, now: Instant) {
        let fresh = self.chain.fresh_txids(MAX_OUTBOX_PER_PEER);
        self.note_accepted(now, fresh.len());
        let mut dropped = 0;
        for state in self.peers.values_mut().filter(|s| s.speaks_relay) {
            for txid in &fresh {
                if state.known.contains(txid) {
                    continue;
                }
                if state.outbox.len() >= MAX_OUTBOX_PER_PEER {
                    dropped += 1;
                    continue;
                }
                state.outbox.push_back(*txid);
            }
        }
        if dropped > 0 {
            Metrics::add(&self.metrics().relay_outbox_dropped, dropped);
            debug!(dropped, "announcements dropped: peer outboxes full");
        }
        let mut sends = Vec::new();
        let interval = self.config.announce_interval;
        for (peer, state) in self.peers.iter_mut() {
            if state.next_announce > now {
                continue;
            }
            let before = sends.len();
            while state.speaks_relay
                && state.inventories_in_flight < MAX_INVENTORIES_IN_FLIGHT
                && !state.outbox.is_empty()
            {
                let n = state.outbox.len().min(MAX_INVENTORY_IDS);
                let ids: Vec<Txid> = state
                    .outbox
                    .drain(..n)
                    .filter(|t| state.known.insert(t))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                state.inventories_in_flight += 1;
                sends.push((*peer, ids));
            }
            if sends.len() > before {
                state.next_announce = now + jittered(interval);
            }
        }
        for (peer, ids) in sends {
            Metrics::add(&self.metrics().relay_announced, ids.len());
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                let result = net.relay_request(peer, &RelayRequest::Inventory(ids)).await;
                Done::Inventory { peer, result }
            }));
        }
    }

    /// Asks announcers for the wanted transactions whose gossip grace period is over: one
    /// `GetTxs` per peer and tick at most, within each peer's in-flight limit.
    pub(super) fn fetch(&mut self, now: Instant) {
        self.last_fetch = now;
        let mut batches: HashMap<PeerId, Vec<Txid>> = HashMap::new();
        let mut deferred = Vec::new();
        let mut scanned = 0;
        while scanned < 4 * MAX_INVENTORY_IDS {
            let wanted = &self.wanted;
            let due = |q: &VecDeque<Txid>, at: fn(&Wanted) -> Instant| {
                q.front()
                    .is_some_and(|t| wanted.get(t).is_none_or(|w| at(w) <= now))
            };
            let (txid, first_look) = if let Some(t) = self.retry.pop_front() {
                (t, false)
            } else if due(&self.late, |w| w.ready_at) {
                match self.late.pop_front() {
                    Some(t) => (t, false),
                    None => break,
                }
            } else if due(&self.queue, |w| w.quiet_at) {
                match self.queue.pop_front() {
                    Some(t) => (t, true),
                    None => break,
                }
            } else {
                break;
            };
            scanned += 1;
            let Some(w) = self.wanted.get_mut(&txid) else {
                continue;
            };
            if w.in_flight {
                continue;
            }
            let brought = self.chain.has_tx(&txid);
            if first_look {
                let m = self.net.metrics_ref();
                Metrics::inc(if brought {
                    &m.relay_quiet_brought
                } else {
                    &m.relay_quiet_missing
                });
                let quiet = self.pacer.looked_at(now, brought);
                if !brought && !quiet && w.ready_at > now {
                    // Gossip is slow right now: it likely still brings this one.
                    self.late.push_back(txid);
                    continue;
                }
            }
            if brought {
                self.wanted.remove(&txid);
                continue;
            }
            let peers = &self.peers;
            let pick = w.announcers.iter().copied().find(|p| {
                let batch = batches.get(p).map_or(0, Vec::len);
                peers.get(p).is_some_and(|s| {
                    s.speaks_relay
                        && (batch > 0 || s.fetches_in_flight < MAX_TX_FETCHES_IN_FLIGHT)
                        && batch < MAX_INVENTORY_IDS
                })
            });
            match pick {
                Some(peer) => {
                    w.in_flight = true;
                    batches.entry(peer).or_default().push(txid);
                }
                None => {
                    // Announcers gone: forget it; busy: try again next tick.
                    w.announcers.retain(|p| peers.contains_key(p));
                    if w.announcers.is_empty() {
                        self.wanted.remove(&txid);
                        Metrics::inc(&self.net.metrics_ref().relay_tx_not_found);
                    } else {
                        deferred.push(txid);
                    }
                }
            }
        }
        for txid in deferred.into_iter().rev() {
            self.retry.push_front(txid);
        }
        for (peer, txids) in batches {
            if let Some(s) = self.peers.get_mut(&peer) {
                s.fetches_in_flight += 1;
            }
            let net = self.net.clone();
            self.running.push(Box::pin(async move {
                let result = net
                    .relay_request(peer, &RelayRequest::GetTxs(txids.clone()))
                    .await;
                Done::Fetch {
                    peer,
                    txids,
                    result,
                }
            }));
        }
    }

    pub(super) fn retry_later(&mut self, txids: Vec<Txid>) {
        for txid in txids {
            if let Some(w) = self.wanted.get_mut(&txid) {
                w.in_flight = false;
                w.ready_at = self.pacer.busy_deadline(Instant::now());
                self.late.push_back(txid);
            }
        }
    }

    pub(super) fn request_failed(&mut self, peer: PeerId, e: &P2pError) {
        Metrics::inc(&self.metrics().relay_requests_failed);
        if matches!(e, P2pError::UnsupportedProtocol { .. })
            && let Some(s) = self.peers.get_mut(&peer)
        {
            debug!(%peer, "peer does not speak the relay protocol; not announcing to it");
            s.speaks_relay = false;
            s.outbox.clear();
        } else {
            debug!(%peer, error = %e, "relay request failed");
        }
    }

    /// Submits what a peer sent (in its order, parents first) and retries what it did not
    /// send with the next announcer.
    pub(super) fn on_fetched(&mut self, peer: PeerId, asked: Vec<Txid>, txs: Vec<Transaction>) {
        let mut by_id: HashMap<Txid, Transaction> = HashMap::with_capacity(txs.len());
        for tx in txs {
            by_id.insert(tx.txid(), tx);
        }
        let mut submit = Vec::with_capacity(by_id.len());
        for txid in asked {
            if let Some(tx) = by_id.remove(&txid) {
                self.wanted.remove(&txid);
                self.fetched.insert(&txid);
                submit.push(tx);
                continue;
            }
            let Some(w) = self.wanted.get_mut(&txid) else {
                continue;
            };
            w.in_flight = false;
            w.announcers.retain(|p| *p != peer);
            if w.announcers.is_empty() {
                self.wanted.remove(&txid);
                Metrics::inc(&self.net.metrics_ref().relay_tx_not_found);
            } else {
                self.retry.push_back(txid);
            }
        }
        if !by_id.is_empty() {
            // Transactions nobody asked for: not submitted (a peer must not push into our pool).
            debug!(%peer, count = by_id.len(), "unrequested transactions in a GetTxs answer");
        }
        if submit.is_empty() {
            return;
        }
        Metrics::add(&self.metrics().relay_txs_fetched, submit.len());
        let (chain, net) = (Arc::clone(&self.chain), self.net.clone());
        // Submitted off this task (signature checks take time), a chunk at a time: the
        // submissions of a chunk are polled together, so their checks run first and their
        // hand-offs reach the node's chain task back to back, in the order asked (one wake-up
        // of its thread per chunk, not per transaction). A check the node moves off the
        // worker (a large transaction) can let later ones of the chunk pass it; a child that
        // arrives before its parent waits in the orphan pool.
        tokio::spawn(async move {
            let mut txs = submit.into_iter().peekable();
            while txs.peek().is_some() {
                let chunk = txs.by_ref().take(FETCHED_SUBMIT_CHUNK);
                // A peer that takes transactions from gossip alone gets the fetched ones
                // there (gossipsub never saw them here, so it forwards nothing).
                let gossip = net.gossip_only_peers();
                let results = futures::future::join_all(chunk.map(|tx| {
                    let copy = gossip.then(|| tx.clone());
                    let chain = &chain;
                    async move { (chain.submit_tx(peer, tx).await, copy) }
                }))
                .await;
                for (r, copy) in results {
                    match r {
                        Err(Refusal::Invalid(reason)) => {
                            net.penalise(peer, REJECTED_GOSSIP_PENALTY, &reason).await;
                        }
                        Ok(()) => {
                            if let Some(tx) = copy {
                                let _ = net.publish_tx(&tx).await;
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_peers_turn_comes_half_to_one_and_a_half_intervals_later() {
        let interval = Duration::from_millis(250);
        let turns: Vec<Duration> = (0..1_000).map(|_| super::jittered(interval)).collect();
        assert!(
            turns
                .iter()
                .all(|t| *t >= interval / 2 && *t <= interval * 3 / 2)
        );
        // Spread, not one value: peers drift apart instead of being announced to together.
        let (lo, hi) = (turns.iter().min(), turns.iter().max());
        assert!(hi.zip(lo).is_some_and(|(h, l)| *h - *l > interval / 2));
    }
}
