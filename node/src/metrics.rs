//! Node counters and gauges for the Prometheus `GET /metrics` endpoint (served by the RPC
//! server, which appends its own call counters and latency histogram). Gauges are read when
//! scraped; counters are atomics bumped on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_p2p::MetricsSnapshot;

#[derive(Default)]
pub struct NodeMetrics {
    pub blocks_validated: AtomicU64,
    pub blocks_rejected: AtomicU64,
    pub txs_accepted: AtomicU64,
    pub txs_rejected: AtomicU64,
}

impl NodeMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Point-in-time values gathered at scrape time.
pub struct Gauges {
    pub height: u64,
    pub headers: u64,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub p2p: MetricsSnapshot,
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
    out
}
