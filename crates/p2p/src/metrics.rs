//! Counters of the network service, readable at any time without asking the swarm task.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (shared between the swarm task and every handle).
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) peers: AtomicU64,
    pub(crate) tx_in: AtomicU64,
    pub(crate) tx_out: AtomicU64,
    pub(crate) blocks_in: AtomicU64,
    pub(crate) blocks_out: AtomicU64,
    pub(crate) gossip_bytes_in: AtomicU64,
    pub(crate) gossip_bytes_out: AtomicU64,
    pub(crate) sync_requests_in: AtomicU64,
    pub(crate) sync_requests_out: AtomicU64,
    pub(crate) sync_bytes_in: AtomicU64,
    pub(crate) sync_bytes_out: AtomicU64,
    pub(crate) invalid_messages: AtomicU64,
    pub(crate) dropped_events: AtomicU64,
    pub(crate) bans: AtomicU64,
    pub(crate) synced_blocks: AtomicU64,
    pub(crate) stalled_peers: AtomicU64,
    pub(crate) evicted_peers: AtomicU64,
    pub(crate) refused_inbound: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            peers: g(&self.peers),
            tx_in: g(&self.tx_in),
            tx_out: g(&self.tx_out),
            blocks_in: g(&self.blocks_in),
            blocks_out: g(&self.blocks_out),
            gossip_bytes_in: g(&self.gossip_bytes_in),
            gossip_bytes_out: g(&self.gossip_bytes_out),
            sync_requests_in: g(&self.sync_requests_in),
            sync_requests_out: g(&self.sync_requests_out),
            sync_bytes_in: g(&self.sync_bytes_in),
            sync_bytes_out: g(&self.sync_bytes_out),
            invalid_messages: g(&self.invalid_messages),
            dropped_events: g(&self.dropped_events),
            bans: g(&self.bans),
            synced_blocks: g(&self.synced_blocks),
            stalled_peers: g(&self.stalled_peers),
            evicted_peers: g(&self.evicted_peers),
            refused_inbound: g(&self.refused_inbound),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connected peers now.
    pub peers: u64,
    /// Gossiped transactions received / published.
    pub tx_in: u64,
    pub tx_out: u64,
    /// Gossiped blocks received / published.
    pub blocks_in: u64,
    pub blocks_out: u64,
    pub gossip_bytes_in: u64,
    pub gossip_bytes_out: u64,
    /// Sync requests served / sent.
    pub sync_requests_in: u64,
    pub sync_requests_out: u64,
    pub sync_bytes_in: u64,
    pub sync_bytes_out: u64,
    /// Malformed, oversized or rejected messages.
    pub invalid_messages: u64,
    /// Gossip messages dropped (answered Ignore) because the event queue was full.
    pub dropped_events: u64,
    /// Peers banned.
    pub bans: u64,
    /// Blocks the sync driver handed to the node and the node accepted.
    pub synced_blocks: u64,
    /// Sync peers dropped for answering with nothing `max_stalls` times in a row.
    pub stalled_peers: u64,
    /// Inbound peers disconnected to make room for a new inbound connection.
    pub evicted_peers: u64,
    /// Inbound connections refused (per-IP limit, or no inbound peer could be evicted).
    pub refused_inbound: u64,
}
