//! Summaries (percentiles), the scenario measurements common to all scenarios, the printed
//! table and the JSON report.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::host::Memory;
use crate::network::{EndCheck, MinedBlock};
use crate::topology::Counters;

/// Block size classes of the "block connected by every host" table (upper bounds, bytes).
pub const SIZE_CLASSES: [(u64, &str); 4] = [
    (10_000, "<10 kB"),
    (100_000, "10-100 kB"),
    (500_000, "100-500 kB"),
    (u64::MAX, ">=500 kB"),
];

/// Gossip messages the node delivered (each is useful: gossipsub drops copies it has seen
/// before the node sees them).
const USEFUL_MESSAGE_METRICS: [&str; 2] = [
    "cairn_p2p_gossip_tx_in_total",
    "cairn_p2p_gossip_blocks_in_total",
];
/// Copies gossipsub received and dropped as already seen. cairnd does not export it yet; when a
/// node does, the duplicate factor is computed from it.
pub const DUPLICATE_METRIC: &str = "cairn_p2p_gossip_duplicates_total";
/// Payload bytes the node received by gossip and by sync.
const PAYLOAD_IN_METRICS: [&str; 2] = [
    "cairn_p2p_gossip_bytes_in_total",
    "cairn_p2p_sync_bytes_in_total",
];
/// Block gossip messages the node delivered (full, compact or announced).
const BLOCKS_IN_METRIC: &str = "cairn_p2p_gossip_blocks_in_total";
/// Copies dropped as already seen on the block topics.
const BLOCK_DUPLICATE_METRIC: &str = "cairn_p2p_gossip_block_duplicates_total";
/// Compact blocks received (pushed on gossip or pulled after an announcement).
const COMPACT_RECEIVED_METRIC: &str = "cairn_p2p_compact_received_total";
/// Compact-block outcomes: rebuilt from the mempool alone, needed a `GetBlockTxs` round trip,
/// fetched whole instead.
const COMPACT_OUTCOME_METRICS: [(&str, &str); 3] = [
    (
        "rebuilt_without_round_trip",
        "cairn_p2p_compact_rebuilt_total",
    ),
    ("round_trip", "cairn_p2p_compact_round_trips_total"),
    (
        "full_block_fallback",
        "cairn_p2p_compact_full_fallbacks_total",
    ),
];
/// What the repair path and gossipsub's loss counters did over a scenario (sums over hosts).
const REPAIR_METRICS: [(&str, &str); 7] = [
    (
        "txs_fetched_by_announcement",
        "cairn_p2p_relay_txs_fetched_total",
    ),
    (
        "gossip_validation_late",
        "cairn_p2p_gossip_validation_late_total",
    ),
    ("gossip_queue_full", "cairn_p2p_gossip_queue_full_total"),
    ("tip_syncs", "cairn_p2p_relay_tip_syncs_total"),
    ("compact_tip_pulls", "cairn_p2p_compact_tip_pulls_total"),
    (
        "announced_brought_in_quiet_delay",
        "cairn_p2p_relay_quiet_brought_total",
    ),
    (
        "announced_missing_after_quiet_delay",
        "cairn_p2p_relay_quiet_missing_total",
    ),
];
/// Gossip messages dropped because the node was busy.
const DROPPED_METRIC: &str = "cairn_p2p_dropped_events_total";

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(rank).copied()
}

pub fn summary(values: &[f64]) -> Value {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    json!({
        "count": v.len(),
        "p50": percentile(&v, 0.50).map(round1),
        "p99": percentile(&v, 0.99).map(round1),
        "max": v.last().copied().map(round1),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Per host, the bytes received in a block's window less what the link carried at the idle
/// rate measured just before (status rounds, pings, heartbeats), at least 0.
fn net_of_idle(b: &MinedBlock) -> Vec<f64> {
    b.traffic
        .iter()
        .zip(&b.idle_received_per_sec)
        .map(|(c, idle)| (c.received as f64 - idle * b.window_secs).max(0.0))
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn fmt_opt(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.0}"))
}

/// What every scenario measures.
#[derive(Default)]
pub struct Measures {
    /// Transaction: first mempool to last mempool, ms.
    pub tx_ms: Vec<f64>,
    pub tx_sent: usize,
    pub tx_refused: usize,
    /// Accepted where sent but missing from some mempool at the end of the scenario.
    pub tx_incomplete: usize,
    pub blocks: Vec<MinedBlock>,
    /// Bytes per host while transactions were relayed (the send-and-settle windows).
    pub tx_traffic: Vec<Counters>,
}

impl Measures {
    pub fn add_tx_traffic(&mut self, window: &[Counters]) {
        if self.tx_traffic.len() < window.len() {
            self.tx_traffic.resize(window.len(), Counters::default());
        }
        for (t, w) in self.tx_traffic.iter_mut().zip(window) {
            t.sent += w.sent;
            t.received += w.received;
        }
    }

    pub fn json(&self) -> Value {
        let mut classes = Vec::new();
        for (i, (limit, label)) in SIZE_CLASSES.iter().enumerate() {
            let low = if i == 0 { 0 } else { SIZE_CLASSES[i - 1].0 };
            let in_class: Vec<&MinedBlock> = self
                .blocks
                .iter()
                .filter(|b| b.size >= low && b.size < *limit)
                .collect();
            if in_class.is_empty() {
                continue;
            }
            let ms: Vec<f64> = in_class.iter().filter_map(|b| b.spread_ms).collect();
            let sent: Vec<f64> = in_class
                .iter()
                .flat_map(|b| b.traffic.iter().map(|c| c.sent as f64))
                .collect();
            let received: Vec<f64> = in_class
                .iter()
                .flat_map(|b| b.traffic.iter().map(|c| c.received as f64))
                .collect();
            let mean_size =
                in_class.iter().map(|b| b.size as f64).sum::<f64>() / in_class.len() as f64;
            let mean_received = received.iter().sum::<f64>() / received.len().max(1) as f64;
            let net: Vec<f64> = in_class.iter().flat_map(|b| net_of_idle(b)).collect();
            let mean_net = net.iter().sum::<f64>() / net.len().max(1) as f64;
            classes.push(json!({
                "size_class": label,
                "blocks": in_class.len(),
                "incomplete": in_class.len() - ms.len(),
                "mean_size_bytes": mean_size.round(),
                "connected_by_every_host_ms": summary(&ms),
                "bytes_sent_per_host": summary(&sent),
                "bytes_received_per_host": summary(&received),
                "received_per_block_byte": round2(mean_received / mean_size.max(1.0)),
                "bytes_received_per_host_net_of_idle": summary(&net),
                "received_net_of_idle_per_block_byte": round3(mean_net / mean_size.max(1.0)),
            }));
        }
        let per_tx = |f: fn(&Counters) -> u64| -> Value {
            let v: Vec<f64> = self
                .tx_traffic
                .iter()
                .map(|c| f(c) as f64 / self.tx_sent.max(1) as f64)
                .collect();
            summary(&v)
        };
        json!({
            "tx_to_every_mempool_ms": summary(&self.tx_ms),
            "tx_sent": self.tx_sent,
            "tx_refused": self.tx_refused,
            "tx_incomplete": self.tx_incomplete,
            "tx_bytes_sent_per_host_per_tx": per_tx(|c| c.sent),
            "tx_bytes_received_per_host_per_tx": per_tx(|c| c.received),
            "blocks": self.blocks.iter().map(|b| json!({
                "hash": b.hash, "miner": b.miner, "size": b.size, "ntx": b.ntx,
                "connected_by_every_host_ms": b.spread_ms.map(round1),
                "bytes_sent_per_host": summary(&b.traffic.iter().map(|c| c.sent as f64).collect::<Vec<_>>()),
                "bytes_received_per_host": summary(&b.traffic.iter().map(|c| c.received as f64).collect::<Vec<_>>()),
                "window_secs": round2(b.window_secs),
                "idle_bytes_received_per_host_per_sec": summary(&b.idle_received_per_sec),
                "bytes_received_per_host_net_of_idle": summary(&net_of_idle(b)),
                "window_metrics_per_host": crate::network::BLOCK_WINDOW_METRICS.iter().enumerate().map(|(i, name)| {
                    let per_host: Vec<f64> = b.window_metrics.iter().map(|m| m.get(i).copied().unwrap_or(0.0)).collect();
                    (name.trim_start_matches("cairn_p2p_").to_string(), json!({
                        "sum": per_host.iter().sum::<f64>(),
                        "per_host": summary(&per_host),
                    }))
                }).collect::<serde_json::Map<String, Value>>(),
            })).collect::<Vec<_>>(),
            "block_classes": classes,
        })
    }
}

/// Duplicate factor and its closest available substitute, from `/metrics` before and after
/// and the interface counters over the same interval.
pub fn duplicates(
    before: &[HashMap<String, f64>],
    after: &[HashMap<String, f64>],
    wire: &[Counters],
) -> Value {
    let delta = |name: &str| metric_delta(before, after, name);
    let has = |name: &str| after.iter().any(|m| m.contains_key(name));
    let useful: f64 = USEFUL_MESSAGE_METRICS.iter().map(|m| delta(m)).sum();
    let payload: f64 = PAYLOAD_IN_METRICS.iter().map(|m| delta(m)).sum();
    let wire_in: f64 = wire.iter().map(|c| c.received as f64).sum();
    let factor = if has(DUPLICATE_METRIC) && useful > 0.0 {
        json!(round2((useful + delta(DUPLICATE_METRIC)) / useful))
    } else {
        Value::Null
    };
    let blocks_in = delta(BLOCKS_IN_METRIC);
    let block_factor = if has(BLOCK_DUPLICATE_METRIC) && blocks_in > 0.0 {
        json!(round2(
            (blocks_in + delta(BLOCK_DUPLICATE_METRIC)) / blocks_in
        ))
    } else {
        Value::Null
    };
    json!({
        "duplicate_factor": factor,
        "duplicate_factor_note": if factor.is_null() {
            format!("unavailable: cairnd does not export gossipsub's duplicate count ({DUPLICATE_METRIC})")
        } else {
            "copies received (useful + duplicates) per useful gossip message".to_string()
        },
        "block_duplicate_factor": block_factor,
        "useful_gossip_messages": useful,
        "wire_bytes_per_payload_byte": if payload > 0.0 { json!(round2(wire_in / payload)) } else { Value::Null },
        "wire_bytes_per_payload_byte_note": "interface bytes received / gossip+sync payload bytes the nodes delivered (includes duplicates, IHAVE/IWANT, framing, TCP)",
        "dropped_events": delta(DROPPED_METRIC),
    })
}

/// Compact-block outcomes summed over the hosts, and the share rebuilt from the mempool
/// without a round trip (target: at least 95 %).
pub fn compact_outcomes(before: &[HashMap<String, f64>], after: &[HashMap<String, f64>]) -> Value {
    let received = metric_delta(before, after, COMPACT_RECEIVED_METRIC);
    let mut v = json!({"received": received});
    for (key, metric) in COMPACT_OUTCOME_METRICS {
        v[key] = json!(metric_delta(before, after, metric));
    }
    let rebuilt = v["rebuilt_without_round_trip"].as_f64().unwrap_or(0.0);
    v["share_without_round_trip"] = if received > 0.0 {
        json!(round2(rebuilt / received))
    } else {
        Value::Null
    };
    v
}

/// The repair path's counters summed over the hosts (see [`REPAIR_METRICS`]).
pub fn repair(before: &[HashMap<String, f64>], after: &[HashMap<String, f64>]) -> Value {
    let mut v = json!({});
    for (key, metric) in REPAIR_METRICS {
        v[key] = json!(metric_delta(before, after, metric));
    }
    v
}

/// A counter's increase summed over the hosts (a host restarted in between counts from zero).
fn metric_delta(
    before: &[HashMap<String, f64>],
    after: &[HashMap<String, f64>],
    name: &str,
) -> f64 {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| {
            let (a, b) = (
                a.get(name).copied().unwrap_or(0.0),
                b.get(name).copied().unwrap_or(0.0),
            );
            if a >= b { a - b } else { a }
        })
        .sum()
}

pub fn memory_json(hosts: &[usize], mem: &[Option<Memory>]) -> Value {
    let rss: Vec<f64> = mem.iter().flatten().map(|m| m.rss as f64 / 1e6).collect();
    let peak: Vec<f64> = mem
        .iter()
        .flatten()
        .map(|m| m.peak_rss as f64 / 1e6)
        .collect();
    json!({
        "rss_mb": summary(&rss),
        "peak_rss_mb": summary(&peak),
        "per_host": hosts.iter().zip(mem).map(|(h, m)| json!({
            "host": h,
            "rss_bytes": m.map(|m| m.rss),
            "peak_rss_bytes": m.map(|m| m.peak_rss),
        })).collect::<Vec<_>>(),
    })
}

pub fn end_json(e: &EndCheck) -> Value {
    let first = e.per_host.first().cloned().unwrap_or(Value::Null);
    json!({
        "one_tip_and_utxo_digest": e.agree,
        "tip": first["tip"],
        "height": first["height"],
        "utxo_digest": first["utxo_digest"],
        "converge_ms": round1(e.converge_ms),
        "per_host": e.per_host,
    })
}

/// The printed table: one block of lines per scenario.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    let h = &report["harness"];
    out.push_str(&format!(
        "cairn-testnet: {} hosts, {} Mbit/s per host each way, seeds {}, load {} -> {}\n",
        h["hosts"],
        h["rate_mbit"],
        h["seeds"],
        h["load_start"].as_str().unwrap_or("?"),
        h["load_end"].as_str().unwrap_or("?")
    ));
    for s in report["scenarios"].as_array().into_iter().flatten() {
        let m = &s["measures"];
        out.push_str(&format!(
            "\n== {} ({}; {:.0} s) ==\n",
            s["name"].as_str().unwrap_or("?"),
            if s["ok"] == json!(true) {
                "ok"
            } else {
                "FAILED"
            },
            s["seconds"].as_f64().unwrap_or(0.0)
        ));
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("  error: {e}\n"));
        }
        let tx = &m["tx_to_every_mempool_ms"];
        if m["tx_sent"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "  tx to every mempool: p50 {} ms, p99 {} ms, max {} ms ({} txs, {} refused, {} never reached every mempool)\n",
                fmt_opt(&tx["p50"]), fmt_opt(&tx["p99"]), fmt_opt(&tx["max"]),
                m["tx_sent"], m["tx_refused"], m["tx_incomplete"]
            ));
            out.push_str(&format!(
                "  tx relay bytes per host per tx: sent p50 {}, received p50 {}\n",
                fmt_opt(&m["tx_bytes_sent_per_host_per_tx"]["p50"]),
                fmt_opt(&m["tx_bytes_received_per_host_per_tx"]["p50"])
            ));
        }
        let classes = m["block_classes"].as_array().cloned().unwrap_or_default();
        if !classes.is_empty() {
            out.push_str("  block size class | blocks | mean size | every host p50/p99 ms | sent/host p50 | recv/host p50 (max) | recv/block byte\n");
            for c in classes {
                let t = &c["connected_by_every_host_ms"];
                out.push_str(&format!(
                    "  {:<16} | {:>6} | {:>9} | {:>9} / {:<9} | {:>13} | {:>10} ({}) | {} (net of idle {})\n",
                    c["size_class"].as_str().unwrap_or("?"),
                    c["blocks"],
                    fmt_opt(&c["mean_size_bytes"]),
                    fmt_opt(&t["p50"]),
                    fmt_opt(&t["p99"]),
                    fmt_opt(&c["bytes_sent_per_host"]["p50"]),
                    fmt_opt(&c["bytes_received_per_host"]["p50"]),
                    fmt_opt(&c["bytes_received_per_host"]["max"]),
                    c["received_per_block_byte"],
                    c["received_net_of_idle_per_block_byte"]
                ));
            }
        }
        let d = &s["duplicates"];
        if !d.is_null() {
            out.push_str(&format!(
                "  duplicate factor: {} (block topics: {}); wire bytes per payload byte received: {}; dropped gossip events: {}\n",
                if d["duplicate_factor"].is_null() { "n/a (not exported by cairnd)".to_string() } else { d["duplicate_factor"].to_string() },
                d["block_duplicate_factor"],
                d["wire_bytes_per_payload_byte"],
                d["dropped_events"]
            ));
        }
        let r = &s["repair"];
        if !r.is_null() {
            out.push_str(&format!(
                "  repair: {} txs fetched by announcement, {} late verdicts, {} gossip queue-full drops, {} tip syncs, {} compact tip pulls; announced before gossip: {} brought within the quiet delay, {} still missing\n",
                r["txs_fetched_by_announcement"], r["gossip_validation_late"], r["gossip_queue_full"],
                r["tip_syncs"], r["compact_tip_pulls"], r["announced_brought_in_quiet_delay"],
                r["announced_missing_after_quiet_delay"]
            ));
        }
        let c = &s["compact_blocks"];
        if c["received"].as_f64().unwrap_or(0.0) > 0.0 {
            out.push_str(&format!(
                "  compact blocks: {} received, {} rebuilt without a round trip (share {}), {} round trips, {} full-block fallbacks\n",
                c["received"], c["rebuilt_without_round_trip"], c["share_without_round_trip"],
                c["round_trip"], c["full_block_fallback"]
            ));
        }
        let mem = &s["memory"];
        if !mem.is_null() {
            out.push_str(&format!(
                "  RSS per host: p50 {} MB, max {} MB (peak max {} MB)\n",
                fmt_opt(&mem["rss_mb"]["p50"]),
                fmt_opt(&mem["rss_mb"]["max"]),
                fmt_opt(&mem["peak_rss_mb"]["max"])
            ));
        }
        for line in s["lines"].as_array().into_iter().flatten() {
            out.push_str(&format!("  {}\n", line.as_str().unwrap_or("")));
        }
        let e = &s["end_check"];
        if !e.is_null() {
            out.push_str(&format!(
                "  end check: {} hosts, one tip and one UTXO digest: {} (height {}, tip {}…, digest {}…)\n",
                e["per_host"].as_array().map_or(0, Vec::len),
                if e["one_tip_and_utxo_digest"] == json!(true) { "yes" } else { "NO" },
                e["height"],
                e["tip"].as_str().unwrap_or("").get(..12).unwrap_or(""),
                e["utxo_digest"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(51.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(summary(&[3.0, 1.0, 2.0])["p50"], json!(2.0));
    }

    #[test]
    fn duplicate_factor_comes_from_the_metric_when_a_node_exports_it() {
        let m = |useful: f64, dup: Option<f64>| {
            let mut h = HashMap::from([(USEFUL_MESSAGE_METRICS[0].to_string(), useful)]);
            if let Some(d) = dup {
                h.insert(DUPLICATE_METRIC.to_string(), d);
            }
            h
        };
        let wire = [Counters {
            sent: 0,
            received: 0,
        }];
        let without = duplicates(&[m(0.0, None)], &[m(10.0, None)], &wire);
        assert!(without["duplicate_factor"].is_null());
        let with = duplicates(&[m(0.0, Some(0.0))], &[m(10.0, Some(25.0))], &wire);
        assert_eq!(with["duplicate_factor"], json!(3.5));
    }

    #[test]
    fn compact_share_is_rebuilt_without_round_trip_over_received() {
        let m = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<HashMap<_, _>>()
        };
        let before = [m(&[(COMPACT_RECEIVED_METRIC, 5.0)]), m(&[])];
        let after = [
            m(&[
                (COMPACT_RECEIVED_METRIC, 15.0),
                ("cairn_p2p_compact_rebuilt_total", 9.0),
                ("cairn_p2p_compact_round_trips_total", 1.0),
            ]),
            m(&[
                (COMPACT_RECEIVED_METRIC, 10.0),
                ("cairn_p2p_compact_rebuilt_total", 10.0),
            ]),
        ];
        let v = compact_outcomes(&before, &after);
        assert_eq!(v["received"], json!(20.0));
        assert_eq!(v["round_trip"], json!(1.0));
        assert_eq!(v["share_without_round_trip"], json!(0.95));
        assert!(compact_outcomes(&before, &before)["share_without_round_trip"].is_null());
    }
}
