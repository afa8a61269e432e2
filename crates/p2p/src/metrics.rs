//! Counters of the network service, readable at any time without asking the swarm task.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::registry::Registry;

/// Gossipsub's counter of every message received on a topic, duplicates included.
const RECEIVED_UNFILTERED: &str = "topic_msg_recv_counts_unfiltered_total";
/// Gossipsub's counter of messages received on a topic that were not duplicates.
const RECEIVED_FIRST: &str = "topic_msg_recv_counts_total";
/// Suffix of the transaction topic's name (`/cairn/1/<genesis hex>/tx`).
const TX_TOPIC_SUFFIX: &str = "/tx";

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
    pub(crate) gossip_publish_failed: AtomicU64,
    pub(crate) gossip_slow_peer_publish: AtomicU64,
    pub(crate) gossip_slow_peer_forward: AtomicU64,
    pub(crate) gossip_queue_full: AtomicU64,
    pub(crate) gossip_send_timeout: AtomicU64,
    pub(crate) gossip_validation_late: AtomicU64,
    pub(crate) relay_inputs_dropped: AtomicU64,
    pub(crate) relay_announced: AtomicU64,
    pub(crate) relay_outbox_dropped: AtomicU64,
    pub(crate) relay_wanted_dropped: AtomicU64,
    pub(crate) relay_txs_fetched: AtomicU64,
    pub(crate) relay_txs_served: AtomicU64,
    pub(crate) relay_tx_not_found: AtomicU64,
    pub(crate) relay_quiet_brought: AtomicU64,
    pub(crate) relay_requests_in: AtomicU64,
    pub(crate) relay_new_tips_in: AtomicU64,
    pub(crate) relay_quiet_missing: AtomicU64,
    pub(crate) relay_requests_failed: AtomicU64,
    pub(crate) compact_received: AtomicU64,
    pub(crate) compact_rebuilt: AtomicU64,
    pub(crate) compact_round_trips: AtomicU64,
    pub(crate) compact_txs_requested: AtomicU64,
    pub(crate) compact_collisions: AtomicU64,
    pub(crate) compact_full_fallbacks: AtomicU64,
    pub(crate) compact_failed: AtomicU64,
    pub(crate) compact_dropped: AtomicU64,
    pub(crate) compact_published: AtomicU64,
    pub(crate) block_announcements_in: AtomicU64,
    pub(crate) block_announcements_published: AtomicU64,
    pub(crate) compact_pulled: AtomicU64,
    pub(crate) compact_pull_failed: AtomicU64,
    pub(crate) compact_served: AtomicU64,
    pub(crate) compact_tip_pulls: AtomicU64,
    pub(crate) full_blocks_for_legacy: AtomicU64,
    pub(crate) relay_tip_syncs: AtomicU64,
    pub(crate) gossip_peers_below_gossip: AtomicU64,
    pub(crate) gossip_peers_below_publish: AtomicU64,
    pub(crate) gossip_peers_graylisted: AtomicU64,
    pub(crate) tx_gossip_peers: AtomicU64,
    /// Whether a peer needs every accepted transaction on gossip (a gossip-only peer, or
    /// announcements off; see `Service::refresh_tx_gossip`): written by the swarm task.
    pub(crate) tx_gossip_for_peers: std::sync::atomic::AtomicBool,
    /// Whether few enough transactions arrive to gossip them all (written by the relay task,
    /// see `relay::pacer::GossipLoad`).
    pub(crate) tx_gossip_quiet: std::sync::atomic::AtomicBool,
    /// Gossipsub's own metrics (set once, when the swarm is built): its duplicate count.
    pub(crate) gossip_registry: OnceLock<Registry>,
}

/// Copies gossipsub received and dropped as already seen: (every topic, block topics only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipDuplicates {
    pub all: u64,
    pub blocks: u64,
}

/// Reads the duplicate count out of gossipsub's prometheus registry: per topic, messages
/// received (`..._unfiltered`) minus messages that were new. The difference also holds the
/// rare message gossipsub refused before its duplicate check (a graylisted sender, an id it
/// already rejected): those are copies nobody could use either.
pub fn gossip_duplicates(registry: &Registry) -> GossipDuplicates {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return GossipDuplicates::default();
    }
    duplicates_from_text(&text)
}

/// The parsing half of [`gossip_duplicates`], over the text exposition format.
fn duplicates_from_text(text: &str) -> GossipDuplicates {
    // topic -> (received, first)
    let mut per_topic: std::collections::HashMap<&str, (u64, u64)> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(topic) = labels
            .split_once("hash=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(t, _)| t)
        else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = per_topic.entry(topic).or_default();
        if name.ends_with(RECEIVED_UNFILTERED) {
            entry.0 = v as u64;
        } else if name.ends_with(RECEIVED_FIRST) {
            entry.1 = v as u64;
        }
    }
    let mut d = GossipDuplicates::default();
    for (topic, (received, first)) in per_topic {
        let dup = received.saturating_sub(first);
        d.all += dup;
        if !topic.ends_with(TX_TOPIC_SUFFIX) {
            d.blocks += dup;
        }
    }
    d
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
        let dup = self
            .gossip_registry
            .get()
            .map(gossip_duplicates)
            .unwrap_or_default();
        MetricsSnapshot {
            gossip_duplicates: dup.all,
            gossip_block_duplicates: dup.blocks,
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
            gossip_publish_failed: g(&self.gossip_publish_failed),
            gossip_slow_peer_publish: g(&self.gossip_slow_peer_publish),
            gossip_slow_peer_forward: g(&self.gossip_slow_peer_forward),
            gossip_queue_full: g(&self.gossip_queue_full),
            gossip_send_timeout: g(&self.gossip_send_timeout),
            gossip_validation_late: g(&self.gossip_validation_late),
            relay_inputs_dropped: g(&self.relay_inputs_dropped),
            relay_announced: g(&self.relay_announced),
            relay_outbox_dropped: g(&self.relay_outbox_dropped),
            relay_wanted_dropped: g(&self.relay_wanted_dropped),
            relay_txs_fetched: g(&self.relay_txs_fetched),
            relay_txs_served: g(&self.relay_txs_served),
            relay_tx_not_found: g(&self.relay_tx_not_found),
            relay_quiet_brought: g(&self.relay_quiet_brought),
            relay_requests_in: g(&self.relay_requests_in),
            relay_new_tips_in: g(&self.relay_new_tips_in),
            relay_quiet_missing: g(&self.relay_quiet_missing),
            relay_requests_failed: g(&self.relay_requests_failed),
            compact_received: g(&self.compact_received),
            compact_rebuilt: g(&self.compact_rebuilt),
            compact_round_trips: g(&self.compact_round_trips),
            compact_txs_requested: g(&self.compact_txs_requested),
            compact_collisions: g(&self.compact_collisions),
            compact_full_fallbacks: g(&self.compact_full_fallbacks),
            compact_failed: g(&self.compact_failed),
            compact_dropped: g(&self.compact_dropped),
            compact_published: g(&self.compact_published),
            block_announcements_in: g(&self.block_announcements_in),
            block_announcements_published: g(&self.block_announcements_published),
            compact_pulled: g(&self.compact_pulled),
            compact_pull_failed: g(&self.compact_pull_failed),
            compact_served: g(&self.compact_served),
            compact_tip_pulls: g(&self.compact_tip_pulls),
            full_blocks_for_legacy: g(&self.full_blocks_for_legacy),
            relay_tip_syncs: g(&self.relay_tip_syncs),
            gossip_peers_below_gossip: g(&self.gossip_peers_below_gossip),
            gossip_peers_below_publish: g(&self.gossip_peers_below_publish),
            gossip_peers_graylisted: g(&self.gossip_peers_graylisted),
            tx_gossip_peers: g(&self.tx_gossip_peers),
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
    /// Gossip copies gossipsub dropped as already seen (every topic): with `tx_in + blocks_in`
    /// (the first copies), the duplicate factor.
    pub gossip_duplicates: u64,
    /// The same on the block topics (block, compact block, block announcement).
    pub gossip_block_duplicates: u64,
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
    /// Publishes gossipsub refused (no peers on the topic, every queue full, too large); duplicates excluded.
    pub gossip_publish_failed: u64,
    /// Our own messages gossipsub could not send a peer in a heartbeat (its `SlowPeer` report).
    pub gossip_slow_peer_publish: u64,
    /// Forwards gossipsub could not send a peer in a heartbeat (its `SlowPeer` report).
    pub gossip_slow_peer_forward: u64,
    /// Messages dropped because a peer's gossipsub send queue was full.
    pub gossip_queue_full: u64,
    /// Messages dropped because they waited too long in a peer's gossipsub send queue.
    pub gossip_send_timeout: u64,
    /// Verdicts that came after gossipsub's message cache let go of the message (an `Accept` then forwards nothing).
    pub gossip_validation_late: u64,
    /// Relay inputs (inventories, requests, compact blocks) dropped because the relay queue was full.
    pub relay_inputs_dropped: u64,
    /// Txids announced to peers (each copy counted).
    pub relay_announced: u64,
    /// Announcements dropped because a peer's outbox was full.
    pub relay_outbox_dropped: u64,
    /// Announced transactions not tracked because too many were wanted.
    pub relay_wanted_dropped: u64,
    /// Transactions received through `GetTxs` (gossip had not brought them).
    pub relay_txs_fetched: u64,
    /// Transactions sent in answer to `GetTxs`.
    pub relay_txs_served: u64,
    /// Wanted transactions given up: no announcer could send them.
    pub relay_tx_not_found: u64,
    /// Wanted transactions that gossip brought by their quiet deadline (see `relay::pacer`).
    pub relay_quiet_brought: u64,
    /// Wanted transactions still missing at their quiet deadline.
    pub relay_quiet_missing: u64,
    /// Relay requests received (every kind, each on its own stream).
    pub relay_requests_in: u64,
    /// `NewTip`s received.
    pub relay_new_tips_in: u64,
    /// Relay requests that failed (timeout, disconnect, unsupported).
    pub relay_requests_failed: u64,
    /// Compact blocks received and rebuilt: pushed on gossip or pulled (`GetCompact`) after an
    /// announcement; one per block (a second copy of a block being rebuilt is not counted).
    pub compact_received: u64,
    /// Compact blocks rebuilt from the mempool alone.
    pub compact_rebuilt: u64,
    /// Compact blocks that needed a `GetBlockTxs` round trip.
    pub compact_round_trips: u64,
    /// Transactions asked for with `GetBlockTxs`.
    pub compact_txs_requested: u64,
    /// Compact blocks whose short ids collided or whose rebuild missed the merkle root.
    pub compact_collisions: u64,
    /// Compact blocks fetched whole over sync instead.
    pub compact_full_fallbacks: u64,
    /// Compact blocks neither rebuilt nor fetched.
    pub compact_failed: u64,
    /// Compact blocks dropped because too many rebuilds were in flight.
    pub compact_dropped: u64,
    /// Compact blocks published (pushed on the `cmpctblock` topic).
    pub compact_published: u64,
    /// Block announcements (headers) received on gossip: first copies only.
    pub block_announcements_in: u64,
    /// Block announcements published (our own blocks).
    pub block_announcements_published: u64,
    /// Compact blocks pulled from an announcer with `GetCompact`.
    pub compact_pulled: u64,
    /// `GetCompact` requests that brought no usable compact block (the full block is fetched).
    pub compact_pull_failed: u64,
    /// `GetCompact` requests answered with a compact block.
    pub compact_served: u64,
    /// Compact blocks pulled because a peer's `NewTip` (one block ahead) came before any
    /// gossip announcement.
    pub compact_tip_pulls: u64,
    /// Full blocks published for peers that do not take compact blocks.
    pub full_blocks_for_legacy: u64,
    /// Syncs started because a peer announced a better tip that gossip had not brought within the grace period.
    pub relay_tip_syncs: u64,
    /// Connected peers whose gossipsub score is below the gossip threshold (-10): no IHAVE to or from them. (gauge, refreshed every second)
    pub gossip_peers_below_gossip: u64,
    /// Connected peers whose gossipsub score is below the publish threshold (-50): our own messages skip them. (gauge, refreshed every second)
    pub gossip_peers_below_publish: u64,
    /// Connected peers whose gossipsub score is below the graylist threshold (-80): everything they send is ignored. (gauge, refreshed every second)
    pub gossip_peers_graylisted: u64,
    /// Connected peers on the transaction topic that do not speak `/cairn/relay/1` (identify did not list it): while there is one, the transactions the node accepts are also published on gossip. (gauge)
    pub tx_gossip_peers: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_received_minus_first_copies_per_topic() {
        let text = "# HELP topic_msg_recv_counts_unfiltered Number...\n\
            # TYPE topic_msg_recv_counts_unfiltered counter\n\
            topic_msg_recv_counts_unfiltered_total{hash=\"/cairn/1/ab/tx\"} 30\n\
            topic_msg_recv_counts_unfiltered_total{hash=\"/cairn/1/ab/cmpctblock\"} 7\n\
            topic_msg_recv_counts_total{hash=\"/cairn/1/ab/tx\"} 10\n\
            topic_msg_recv_counts_total{hash=\"/cairn/1/ab/cmpctblock\"} 2\n\
            topic_msg_recv_bytes_total{hash=\"/cairn/1/ab/tx\"} 999\n\
            # EOF\n";
        assert_eq!(
            duplicates_from_text(text),
            GossipDuplicates { all: 25, blocks: 5 }
        );
        assert_eq!(duplicates_from_text(""), GossipDuplicates::default());
    }
}
