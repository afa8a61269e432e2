//! Node counters and gauges for the Prometheus `GET /metrics` endpoint (served by the RPC
//! server, which appends its own call counters and latency histogram). Gauges are read when
//! scraped; counters are atomics bumped on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_p2p::MetricsSnapshot;
use cairn_storage::{ConnectTimingsSnapshot, IndexProgress, Stage};

#[derive(Default)]
pub struct NodeMetrics {
    pub blocks_validated: AtomicU64,
    pub blocks_rejected: AtomicU64,
    pub txs_accepted: AtomicU64,
    pub txs_rejected: AtomicU64,
    /// Local blocks or transactions not published because the relay queue was full.
    pub relay_queue_full: AtomicU64,
    /// Accepted txids dropped from the announcement queue before the relay task took them.
    pub fresh_txids_dropped: AtomicU64,
}

impl NodeMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Point-in-time values gathered at scrape time.
pub struct Gauges {
    pub height: u64,
    pub headers: u64,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub p2p: MetricsSnapshot,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Seconds between now and the tip's timestamp (0 if the tip is from the future).
    pub tip_age_secs: u64,
    /// Where block-connect time went, and how far the indexes are.
    pub storage: StorageGauges,
}

/// The storage figures `/metrics` shows.
pub struct StorageGauges {
    pub connect: ConnectTimingsSnapshot,
    pub index: IndexProgress,
    /// (signatures verified into the cache, signatures connects found there, checks the
    /// cache answered without verifying again).
    pub sig_cache: (u64, u64, u64),
    /// What the chain state holds in memory (`None`: RocksDB did not answer).
    pub memory: Option<cairn_storage::MemoryUsage>,
}

/// Resident memory and CPU time of this process, from `/proc/self` (Linux); `None` elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Kernel clock ticks per second as `/proc/<pid>/stat` counts them (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// Bytes per page in `/proc/self/statm` (4 KiB on the platforms Cairn runs on).
const PAGE_SIZE: u64 = 4096;

pub fn process_stats() -> Option<ProcessStats> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcessStats {
        rss_bytes: rss_pages * PAGE_SIZE,
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
    })
}

pub fn render(m: &NodeMetrics, g: &Gauges) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut extra = String::new();
    let _ = writeln!(
        extra,
        "# HELP cairn_build_info Build of this node (always 1).\n# TYPE cairn_build_info gauge\ncairn_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    metric(
        "cairn_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        g.uptime_secs,
    );
    metric(
        "cairn_tip_age_seconds",
        "gauge",
        "Seconds since the timestamp of the best block.",
        g.tip_age_secs,
    );
    if let Some(p) = process_stats() {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the cairnd process.",
            p.rss_bytes,
        );
        let _ = writeln!(
            extra,
            "# HELP process_cpu_seconds_total CPU time (user + system) of the cairnd process.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            p.cpu_seconds
        );
    }
    metric(
        "cairn_chain_height",
        "gauge",
        "Height of the best valid chain.",
        g.height,
    );
    metric(
        "cairn_chain_headers",
        "gauge",
        "Height of the best known header.",
        g.headers,
    );
    metric(
        "cairn_mempool_transactions",
        "gauge",
        "Transactions in the mempool.",
        g.mempool_txs as u64,
    );
    metric(
        "cairn_mempool_bytes",
        "gauge",
        "Bytes of transactions in the mempool.",
        g.mempool_bytes as u64,
    );
    metric(
        "cairn_blocks_validated_total",
        "counter",
        "Blocks accepted.",
        load(&m.blocks_validated),
    );
    metric(
        "cairn_blocks_rejected_total",
        "counter",
        "Blocks rejected as invalid.",
        load(&m.blocks_rejected),
    );
    metric(
        "cairn_transactions_accepted_total",
        "counter",
        "Transactions accepted to the mempool.",
        load(&m.txs_accepted),
    );
    metric(
        "cairn_transactions_rejected_total",
        "counter",
        "Transactions refused by the mempool.",
        load(&m.txs_rejected),
    );
    let p = &g.p2p;
    metric("cairn_peers", "gauge", "Connected peers.", p.peers);
    metric(
        "cairn_p2p_gossip_tx_in_total",
        "counter",
        "Gossiped transactions received.",
        p.tx_in,
    );
    metric(
        "cairn_p2p_gossip_tx_out_total",
        "counter",
        "Transactions published.",
        p.tx_out,
    );
    metric(
        "cairn_p2p_gossip_blocks_in_total",
        "counter",
        "Gossiped blocks received.",
        p.blocks_in,
    );
    metric(
        "cairn_p2p_gossip_blocks_out_total",
        "counter",
        "Blocks published.",
        p.blocks_out,
    );
    metric(
        "cairn_p2p_gossip_bytes_in_total",
        "counter",
        "Gossip payload bytes received.",
        p.gossip_bytes_in,
    );
    metric(
        "cairn_p2p_gossip_bytes_out_total",
        "counter",
        "Gossip payload bytes published.",
        p.gossip_bytes_out,
    );
    metric(
        "cairn_p2p_sync_requests_in_total",
        "counter",
        "Sync requests served.",
        p.sync_requests_in,
    );
    metric(
        "cairn_p2p_sync_requests_out_total",
        "counter",
        "Sync requests sent.",
        p.sync_requests_out,
    );
    metric(
        "cairn_p2p_sync_bytes_in_total",
        "counter",
        "Sync bytes received.",
        p.sync_bytes_in,
    );
    metric(
        "cairn_p2p_sync_bytes_out_total",
        "counter",
        "Sync bytes sent.",
        p.sync_bytes_out,
    );
    metric(
        "cairn_p2p_invalid_messages_total",
        "counter",
        "Malformed, oversized or rejected messages.",
        p.invalid_messages,
    );
    metric(
        "cairn_p2p_dropped_events_total",
        "counter",
        "Gossip messages dropped because the node was busy.",
        p.dropped_events,
    );
    metric(
        "cairn_p2p_gossip_publish_failed_total",
        "counter",
        "Publishes gossipsub refused (no peers on the topic, every queue full, too large); duplicates excluded.",
        p.gossip_publish_failed,
    );
    metric(
        "cairn_p2p_gossip_slow_peer_publish_total",
        "counter",
        "Our own messages gossipsub could not send a peer in a heartbeat (its SlowPeer report).",
        p.gossip_slow_peer_publish,
    );
    metric(
        "cairn_p2p_gossip_slow_peer_forward_total",
        "counter",
        "Forwards gossipsub could not send a peer in a heartbeat (its SlowPeer report).",
        p.gossip_slow_peer_forward,
    );
    metric(
        "cairn_p2p_gossip_queue_full_total",
        "counter",
        "Messages dropped because a peer's gossipsub send queue was full.",
        p.gossip_queue_full,
    );
    metric(
        "cairn_p2p_gossip_send_timeout_total",
        "counter",
        "Messages dropped because they waited too long in a peer's gossipsub send queue.",
        p.gossip_send_timeout,
    );
    metric(
        "cairn_p2p_gossip_validation_late_total",
        "counter",
        "Verdicts that came after gossipsub's message cache let go of the message (an Accept then forwards nothing).",
        p.gossip_validation_late,
    );
    metric(
        "cairn_p2p_relay_inputs_dropped_total",
        "counter",
        "Relay inputs (inventories, requests, compact blocks) dropped because the relay queue was full.",
        p.relay_inputs_dropped,
    );
    metric(
        "cairn_p2p_relay_announced_total",
        "counter",
        "Txids announced to peers (each copy counted).",
        p.relay_announced,
    );
    metric(
        "cairn_p2p_relay_outbox_dropped_total",
        "counter",
        "Announcements dropped because a peer's outbox was full.",
        p.relay_outbox_dropped,
    );
    metric(
        "cairn_p2p_relay_wanted_dropped_total",
        "counter",
        "Announced transactions not tracked because too many were wanted.",
        p.relay_wanted_dropped,
    );
    metric(
        "cairn_p2p_relay_txs_fetched_total",
        "counter",
        "Transactions received through GetTxs (gossip had not brought them).",
        p.relay_txs_fetched,
    );
    metric(
        "cairn_p2p_relay_txs_served_total",
        "counter",
        "Transactions sent in answer to GetTxs.",
        p.relay_txs_served,
    );
    metric(
        "cairn_p2p_relay_tx_not_found_total",
        "counter",
        "Wanted transactions given up: no announcer could send them.",
        p.relay_tx_not_found,
    );
    metric(
        "cairn_p2p_relay_quiet_brought_total",
        "counter",
        "Announced transactions gossip brought within the quiet fetch delay.",
        p.relay_quiet_brought,
    );
    metric(
        "cairn_p2p_relay_quiet_missing_total",
        "counter",
        "Announced transactions still missing after the quiet fetch delay (fetched then while gossip keeps up).",
        p.relay_quiet_missing,
    );
    metric(
        "cairn_p2p_relay_requests_in_total",
        "counter",
        "Relay requests received (every kind).",
        p.relay_requests_in,
    );
    metric(
        "cairn_p2p_relay_new_tips_in_total",
        "counter",
        "NewTip announcements received.",
        p.relay_new_tips_in,
    );
    metric(
        "cairn_p2p_relay_requests_failed_total",
        "counter",
        "Relay requests that failed (timeout, disconnect, unsupported).",
        p.relay_requests_failed,
    );
    metric(
        "cairn_p2p_compact_received_total",
        "counter",
        "Compact blocks received and rebuilt (pushed on gossip or pulled after an announcement), one per block.",
        p.compact_received,
    );
    metric(
        "cairn_p2p_compact_rebuilt_total",
        "counter",
        "Compact blocks rebuilt from the mempool alone.",
        p.compact_rebuilt,
    );
    metric(
        "cairn_p2p_compact_round_trips_total",
        "counter",
        "Compact blocks that needed a GetBlockTxs round trip.",
        p.compact_round_trips,
    );
    metric(
        "cairn_p2p_compact_txs_requested_total",
        "counter",
        "Transactions asked for with GetBlockTxs.",
        p.compact_txs_requested,
    );
    metric(
        "cairn_p2p_compact_collisions_total",
        "counter",
        "Compact blocks whose short ids collided or whose rebuild missed the merkle root.",
        p.compact_collisions,
    );
    metric(
        "cairn_p2p_compact_full_fallbacks_total",
        "counter",
        "Compact blocks fetched whole over sync instead.",
        p.compact_full_fallbacks,
    );
    metric(
        "cairn_p2p_compact_failed_total",
        "counter",
        "Compact blocks neither rebuilt nor fetched.",
        p.compact_failed,
    );
    metric(
        "cairn_p2p_compact_dropped_total",
        "counter",
        "Compact blocks dropped because too many rebuilds were in flight.",
        p.compact_dropped,
    );
    metric(
        "cairn_p2p_compact_published_total",
        "counter",
        "Compact blocks published.",
        p.compact_published,
    );
    metric(
        "cairn_p2p_block_announcements_in_total",
        "counter",
        "Block announcements (headers) received on gossip, first copies.",
        p.block_announcements_in,
    );
    metric(
        "cairn_p2p_block_announcements_published_total",
        "counter",
        "Block announcements published (own blocks).",
        p.block_announcements_published,
    );
    metric(
        "cairn_p2p_compact_pulled_total",
        "counter",
        "Compact blocks pulled from an announcer with GetCompact.",
        p.compact_pulled,
    );
    metric(
        "cairn_p2p_compact_pull_failed_total",
        "counter",
        "GetCompact requests that brought no usable compact block (the full block is fetched).",
        p.compact_pull_failed,
    );
    metric(
        "cairn_p2p_compact_served_total",
        "counter",
        "GetCompact requests answered with a compact block.",
        p.compact_served,
    );
    metric(
        "cairn_p2p_compact_tip_pulls_total",
        "counter",
        "Compact blocks pulled because a peer's NewTip (one block ahead) came before any gossip announcement.",
        p.compact_tip_pulls,
    );
    metric(
        "cairn_p2p_gossip_duplicates_total",
        "counter",
        "Gossip copies gossipsub received and dropped as already seen, every topic.",
        p.gossip_duplicates,
    );
    metric(
        "cairn_p2p_gossip_block_duplicates_total",
        "counter",
        "Gossip copies dropped as already seen on the block topics (block, cmpctblock, blockann).",
        p.gossip_block_duplicates,
    );
    metric(
        "cairn_p2p_full_blocks_for_legacy_total",
        "counter",
        "Full blocks published for peers that do not take compact blocks.",
        p.full_blocks_for_legacy,
    );
    metric(
        "cairn_p2p_gossip_peers_below_gossip",
        "gauge",
        "Connected peers whose gossipsub score is below the gossip threshold (-10): no IHAVE to or from them.",
        p.gossip_peers_below_gossip,
    );
    metric(
        "cairn_p2p_gossip_peers_below_publish",
        "gauge",
        "Connected peers whose gossipsub score is below the publish threshold (-50): our own messages skip them.",
        p.gossip_peers_below_publish,
    );
    metric(
        "cairn_p2p_gossip_peers_graylisted",
        "gauge",
        "Connected peers whose gossipsub score is below the graylist threshold (-80): everything they send is ignored.",
        p.gossip_peers_graylisted,
    );
    metric(
        "cairn_p2p_tx_gossip_peers",
        "gauge",
        "Connected peers on the transaction topic that do not speak /cairn/relay/1: while there is one, accepted transactions are also published on gossip.",
        p.tx_gossip_peers,
    );
    metric(
        "cairn_p2p_relay_tip_syncs_total",
        "counter",
        "Syncs started because a peer announced a better tip that gossip had not brought within the grace period.",
        p.relay_tip_syncs,
    );
    metric(
        "cairn_relay_queue_full_total",
        "counter",
        "Local blocks or transactions not published because the relay queue was full.",
        load(&m.relay_queue_full),
    );
    metric(
        "cairn_relay_fresh_dropped_total",
        "counter",
        "Accepted txids dropped from the announcement queue before the relay task took them.",
        load(&m.fresh_txids_dropped),
    );
    render_storage(&mut out, &g.storage);
    out.push_str(&extra);
    out
}

/// Block-connect time per stage (what the sync benchmark prints per block) and index progress.
fn render_storage(out: &mut String, s: &StorageGauges) {
    let _ = writeln!(
        out,
        "# HELP cairn_block_connect_seconds_total Time spent connecting blocks, per stage.\n# TYPE cairn_block_connect_seconds_total counter"
    );
    for stage in Stage::ALL {
        let _ = writeln!(
            out,
            "cairn_block_connect_seconds_total{{stage=\"{}\"}} {:.6}",
            stage.as_str(),
            s.connect.seconds(stage)
        );
    }
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "cairn_blocks_connected_total",
        "counter",
        "Blocks connected by this process.",
        s.connect.blocks,
    );
    metric(
        "cairn_block_txs_connected_total",
        "counter",
        "Transactions (coinbases included) in the blocks connected by this process.",
        s.connect.txs,
    );
    metric(
        "cairn_index_background_blocks_total",
        "counter",
        "Blocks indexed by the background indexer (while syncing).",
        s.connect.background_blocks,
    );
    metric(
        "cairn_sigcache_inserted_total",
        "counter",
        "Signatures verified ahead of their block's connect (mempool acceptance).",
        s.sig_cache.0,
    );
    metric(
        "cairn_sigcache_hits_total",
        "counter",
        "Signatures a block connect did not have to verify again.",
        s.sig_cache.1,
    );
    metric(
        "cairn_sigcache_reused_total",
        "counter",
        "Signature checks answered from the cache (a transaction received again, a block pre-checked twice).",
        s.sig_cache.2,
    );
    metric(
        "cairn_index_height",
        "gauge",
        "Last main-chain block the transaction and address indexes cover.",
        s.index.indexed_height,
    );
    metric(
        "cairn_index_synced",
        "gauge",
        "1 if the indexes cover the tip.",
        u64::from(s.index.synced()),
    );
    if let Some(mem) = s.memory {
        for (name, help, bytes) in [
            (
                "cairn_utxo_cache_bytes",
                "The UTXO cache's hash table, every bucket counted (bounded by --dbcache).",
                mem.utxo_cache,
            ),
            (
                "cairn_db_memtable_bytes",
                "RocksDB memtables of every column family.",
                mem.memtables,
            ),
            (
                "cairn_db_block_cache_bytes",
                "RocksDB's block cache, shared by every column family.",
                mem.block_cache,
            ),
            (
                "cairn_db_table_readers_bytes",
                "RocksDB's SST index and filter blocks held outside the block cache.",
                mem.table_readers,
            ),
        ] {
            metric(name, "gauge", help, bytes);
        }
    }
}
