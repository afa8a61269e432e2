//! The scenarios. Each one drives the network, records what the nodes report, and ends with the
//! same check: one tip and one UTXO digest on every running host.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::events::Observations;
use crate::funds::{self, SignedTx};
use crate::network::Network;
use crate::report::{self, Measures};
use crate::topology::{self, APART_BRIDGE, DATA_BRIDGE};

/// Blocks the losing side of a partition mines; the winning side mines one more.
const LOSING_BLOCKS: usize = 2;
/// Filler transactions (about 80 kB each) per block of the late joiner's chain: about 960 kB.
pub const FILLERS_PER_BLOCK: usize = 12;
/// Blocks the surviving hosts mine while the churned ones are down.
const BLOCKS_WHILE_DOWN: usize = 2;
/// Burst: the target, every mempool holding every transaction this long after the last send.
const BURST_TARGET: Duration = Duration::from_secs(10);
/// Burst: how long to wait for the burst to reach every mempool before giving up.
const BURST_TIMEOUT: Duration = Duration::from_secs(120);
/// Burst: at most this many blocks mined to empty the pool afterwards.
const MAX_BURST_BLOCKS: usize = 4;
/// How long a late joiner may take to sync the chain.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// What a scenario adds to the common measurements.
pub struct Outcome {
    pub measures: Measures,
    /// Scenario-specific lines for the printed table.
    pub lines: Vec<String>,
    pub details: Value,
    /// The scenario's own pass condition (the end check is added to it).
    pub ok: bool,
}

/// Runs one scenario with the measurements every scenario has; never fails: an error is
/// reported in the scenario's entry.
pub fn run(
    net: &mut Network,
    name: &str,
    f: impl FnOnce(&mut Network) -> Result<Outcome>,
) -> Value {
    eprintln!("--- scenario {name} ---");
    let t = Instant::now();
    let hosts = net.live();
    let metrics_before = net.metrics(&hosts);
    let wire_before = net.counters(&hosts).unwrap_or_default();
    let result = f(net);
    let seconds = t.elapsed().as_secs_f64();
    let live = net.live();
    let end = net.end_check(&live);
    let mut v = json!({"name": name, "seconds": (seconds * 10.0).round() / 10.0});
    match end {
        Ok(e) => v["end_check"] = report::end_json(&e),
        Err(e) => v["end_check_error"] = json!(format!("{e:#}")),
    }
    let metrics_after = net.metrics(&hosts);
    let wire: Vec<topology::Counters> = net
        .counters(&hosts)
        .unwrap_or_default()
        .iter()
        .zip(&wire_before)
        .map(|(a, b)| a.since(*b))
        .collect();
    v["duplicates"] = report::duplicates(&metrics_before, &metrics_after, &wire);
    v["compact_blocks"] = report::compact_outcomes(&metrics_before, &metrics_after);
    v["repair"] = report::repair(&metrics_before, &metrics_after);
    v["memory"] = report::memory_json(&live, &net.memory(&live));
    v["peers"] = json!(net.peer_counts(&live));
    let lost = net.lost_subscriptions();
    v["lost_subscriptions"] = json!(lost);
    let end_ok = v["end_check"]["one_tip_and_utxo_digest"] == json!(true);
    match result {
        Ok(o) => {
            v["measures"] = o.measures.json();
            v["lines"] = json!(o.lines);
            v["details"] = o.details;
            v["ok"] = json!(o.ok && end_ok);
        }
        Err(e) => {
            v["error"] = json!(format!("{e:#}"));
            v["measures"] = Measures::default().json();
            v["ok"] = json!(false);
        }
    }
    v
}

/// Sends `n` payments spread over `targets`, waits until they are in every mempool of `hosts`
/// (at most the settle time), and records the relay traffic. Returns the accepted txids.
fn load_round(
    net: &mut Network,
    n: usize,
    targets: &[usize],
    hosts: &[usize],
    m: &mut Measures,
) -> Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let txs: Vec<SignedTx> = net.payments(n)?;
    let before = net.counters(hosts)?;
    let t = Instant::now();
    let (ok, refused) = net.send_spread(&txs, targets)?;
    let sent_s = t.elapsed().as_secs_f64();
    if let Some(r) = refused.first() {
        eprintln!("  {} refused, e.g. {r}", refused.len());
    }
    let settled = net.wait_txs(&ok, hosts, net.opts.settle);
    let after = net.counters(hosts)?;
    m.add_tx_traffic(
        &after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.since(*b))
            .collect::<Vec<_>>(),
    );
    m.tx_sent += ok.len();
    m.tx_refused += refused.len();
    eprintln!(
        "  {} txs sent in {sent_s:.1} s to {} hosts; in every mempool after {:.1} s{}",
        ok.len(),
        targets.len(),
        t.elapsed().as_secs_f64(),
        if settled {
            ""
        } else {
            " (settle time over: some are missing)"
        }
    );
    Ok(ok)
}

/// Records first-to-last mempool times of `txids` over `hosts`.
fn tx_spreads(net: &Network, txids: &[String], hosts: &[usize], m: &mut Measures) {
    let o = net.events.lock();
    let mut seen = Vec::with_capacity(txids.len());
    for id in txids {
        match o.txs.get(id).and_then(|at| Observations::spread(at, hosts)) {
            Some((a, b)) => {
                let ms = (b - a).as_secs_f64() * 1e3;
                m.tx_ms.push(ms);
                seen.push((a, ms));
            }
            None => m.tx_incomplete += 1,
        }
    }
    slowest_by_time(&seen);
}

/// Prints when the slowest 1 % of `seen` (first sight, spread in ms) were first seen, in
/// seconds since the first: whether a tail comes from one moment (a block, a round's start)
/// or from everywhere.
fn slowest_by_time(seen: &[(Instant, f64)]) {
    let Some(first) = seen.iter().map(|(a, _)| *a).min() else {
        return;
    };
    let mut by_ms: Vec<&(Instant, f64)> = seen.iter().collect();
    by_ms.sort_by(|x, y| y.1.total_cmp(&x.1));
    let n = seen.len().div_ceil(100);
    let mut seconds: std::collections::BTreeMap<u64, usize> = Default::default();
    for (a, _) in by_ms.iter().take(n) {
        *seconds.entry((*a - first).as_secs()).or_default() += 1;
    }
    let list: Vec<String> = seconds.iter().map(|(s, c)| format!("{s}s:{c}")).collect();
    eprintln!(
        "  slowest 1 % ({n}, from {:.0} ms) first seen at (seconds since the first): {}",
        by_ms.get(n.saturating_sub(1)).map_or(0.0, |x| x.1),
        list.join(" ")
    );
}

fn mine_logged(
    net: &mut Network,
    miner: usize,
    hosts: &[usize],
    m: &mut Measures,
) -> Result<String> {
    let b = net.mine(miner, hosts)?;
    eprintln!(
        "  block {}… ({} txs, {} bytes) mined at host {miner}: every host in {}",
        b.hash.get(..12).unwrap_or(""),
        b.ntx,
        b.size,
        b.spread_ms
            .map_or("- (timeout)".into(), |x| format!("{x:.0} ms"))
    );
    let hash = b.hash.clone();
    m.blocks.push(b);
    Ok(hash)
}

/// Steady load: rounds of transactions spread over all hosts, each followed by a block mined at
/// a random host, block sizes cycling through `block_txs`.
pub fn steady(net: &mut Network, rounds: usize, block_txs: &[usize]) -> Result<Outcome> {
    let hosts = net.live();
    let mut m = Measures::default();
    let mut all = Vec::new();
    for r in 0..rounds {
        let n = block_txs
            .get(r % block_txs.len().max(1))
            .copied()
            .unwrap_or(0);
        eprintln!(" round {}/{rounds}: {n} txs", r + 1);
        all.extend(load_round(net, n, &hosts, &hosts, &mut m)?);
        let miner = net.rng.pick(&hosts).context("no host")?;
        mine_logged(net, miner, &hosts, &mut m)?;
    }
    tx_spreads(net, &all, &hosts, &mut m);
    let ok = m.blocks.iter().all(|b| b.spread_ms.is_some());
    Ok(Outcome {
        measures: m,
        lines: Vec::new(),
        details: json!({"rounds": rounds, "block_txs": block_txs}),
        ok,
    })
}

/// A burst: `n` transactions sent as fast as the hosts' RPC takes them (batches of 100, every
/// host from its own thread), spread over all hosts; then the time from the last send until
/// every mempool holds every one of them (target: within [`BURST_TARGET`]); then blocks are
/// mined until the pool is empty (full blocks of transactions every host already has).
pub fn burst(net: &mut Network, n: usize) -> Result<Outcome> {
    let hosts = net.live();
    let mut m = Measures::default();
    let txs: Vec<SignedTx> = net.payments(n)?;
    let before = net.counters(&hosts)?;
    let t = Instant::now();
    // A burst is never paced.
    let rate = net.opts.tx_rate.take();
    let sent = net.send_spread(&txs, &hosts);
    net.opts.tx_rate = rate;
    let (ok, refused) = sent?;
    let last_send = Instant::now();
    let send_s = last_send.duration_since(t).as_secs_f64();
    if let Some(r) = refused.first() {
        eprintln!("  {} refused, e.g. {r}", refused.len());
    }
    let settled = net.wait_txs(&ok, &hosts, BURST_TIMEOUT.max(net.opts.settle));
    let after = net.counters(&hosts)?;
    m.add_tx_traffic(
        &after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.since(*b))
            .collect::<Vec<_>>(),
    );
    m.tx_sent += ok.len();
    m.tx_refused += refused.len();
    // The last mempool arrival of the whole burst, from the hosts' own notifications.
    let last_arrival = {
        let o = net.events.lock();
        ok.iter()
            .filter_map(|id| {
                o.txs
                    .get(id)
                    .and_then(|at| Observations::spread(at, &hosts))
            })
            .map(|(_, last)| last)
            .max()
    };
    let after_last_send_ms = if settled {
        last_arrival.map(|l| l.saturating_duration_since(last_send).as_secs_f64() * 1e3)
    } else {
        None
    };
    eprintln!(
        "  {} txs sent in {send_s:.1} s ({:.0} tx/s) to {} hosts; every mempool holds all {}",
        ok.len(),
        ok.len() as f64 / send_s.max(1e-3),
        hosts.len(),
        after_last_send_ms.map_or("- (timeout)".into(), |x| format!(
            "{x:.0} ms after the last send"
        ))
    );
    tx_spreads(net, &ok, &hosts, &mut m);
    let met = after_last_send_ms.is_some_and(|x| x <= BURST_TARGET.as_secs_f64() * 1e3);
    // Mine the burst away: blocks as large as the chain allows, of gossiped transactions.
    let mut blocks = 0;
    while blocks < MAX_BURST_BLOCKS && !net.mempool(hosts[0])?.is_empty() {
        let miner = net.rng.pick(&hosts).context("no host")?;
        mine_logged(net, miner, &hosts, &mut m)?;
        blocks += 1;
    }
    let lines = vec![format!(
        "burst of {} txs sent in {send_s:.1} s ({:.0} tx/s); every mempool holds every one {} after the last send (target {} s: {})",
        ok.len(),
        ok.len() as f64 / send_s.max(1e-3),
        after_last_send_ms.map_or("never (timeout)".into(), |x| format!("{x:.0} ms")),
        BURST_TARGET.as_secs(),
        if met { "met" } else { "missed" }
    )];
    let blocks_ok = m.blocks.iter().all(|b| b.spread_ms.is_some());
    Ok(Outcome {
        measures: m,
        lines,
        details: json!({
            "burst_txs": ok.len(),
            "send_seconds": (send_s * 10.0).round() / 10.0,
            "send_rate_tx_per_s": (ok.len() as f64 / send_s.max(1e-3)).round(),
            "every_mempool_after_last_send_ms": after_last_send_ms.map(|x| x.round()),
            "target_ms": BURST_TARGET.as_millis() as u64,
            "target_met": met,
        }),
        ok: settled && blocks_ok,
    })
}

/// A partition into two groups (even and odd hosts: one seed on each side) that mine apart,
/// the odd side fewer blocks; then the groups are joined again. Every host must end on the
/// even side's chain, and the odd side's transactions, confirmed only on the losing chain, must
/// be back in the odd side's mempools.
pub fn partition(net: &mut Network, txs_per_side: usize) -> Result<Outcome> {
    let hosts = net.live();
    if hosts.len() < 4 {
        bail!("a partition needs at least 4 hosts");
    }
    let winners: Vec<usize> = hosts.iter().copied().filter(|h| h % 2 == 0).collect();
    let losers: Vec<usize> = hosts.iter().copied().filter(|h| h % 2 == 1).collect();
    let mut m = Measures::default();
    net.attach(&losers, APART_BRIDGE)?;
    eprintln!(" partitioned: {} | {} hosts", winners.len(), losers.len());
    let winner_txs = load_round(net, txs_per_side, &winners, &winners, &mut m)?;
    let loser_txs = load_round(net, txs_per_side, &losers, &losers, &mut m)?;
    let mut losing_blocks = Vec::new();
    for _ in 0..LOSING_BLOCKS {
        let miner = net.rng.pick(&losers).context("no host")?;
        losing_blocks.push(mine_logged(net, miner, &losers, &mut m)?);
    }
    let mut tip = String::new();
    for _ in 0..=LOSING_BLOCKS {
        let miner = net.rng.pick(&winners).context("no host")?;
        tip = mine_logged(net, miner, &winners, &mut m)?;
    }
    let mut confirmed_on_losing_side = Vec::new();
    for b in &losing_blocks {
        // The first transaction is the coinbase: it disappears with its block.
        confirmed_on_losing_side.extend(net.block_txids(losers[0], b)?.into_iter().skip(1));
    }
    // Healing: nothing is mined after it, so the losing side's transactions can only be in
    // the mempools (the winning chain, longer already, never saw them).
    net.attach(&losers, DATA_BRIDGE)?;
    let healed = Instant::now();
    eprintln!(" healed");
    let reached = net.events.wait(net.opts.converge_timeout, |o| {
        o.block_everywhere(&tip, &hosts)
    });
    let heal_ms = if reached {
        let o = net.events.lock();
        o.blocks
            .get(&tip)
            .and_then(|b| Observations::spread(&b.at, &losers))
            .map(|(_, last)| (last - healed).as_secs_f64() * 1e3)
    } else {
        None
    };
    // Propagation within each side (nothing crossed while apart).
    tx_spreads(net, &winner_txs, &winners, &mut m);
    tx_spreads(net, &loser_txs, &losers, &mut m);
    let mut back = Vec::new();
    for &h in &hosts {
        let pool = net.mempool(h)?;
        let n = confirmed_on_losing_side
            .iter()
            .filter(|t| pool.contains(t))
            .count();
        back.push(json!({"host": h, "losing_side": h % 2 == 1, "back_in_mempool": n}));
    }
    let losers_ok = back
        .iter()
        .filter(|b| b["losing_side"] == json!(true))
        .all(|b| b["back_in_mempool"] == json!(confirmed_on_losing_side.len()));
    let winners_with_all = back
        .iter()
        .filter(|b| b["losing_side"] == json!(false))
        .filter(|b| b["back_in_mempool"] == json!(confirmed_on_losing_side.len()))
        .count();
    let lines = vec![
        format!(
            "partition {} | {} hosts; losing side mined {LOSING_BLOCKS} blocks with {} txs, winning side {}",
            winners.len(),
            losers.len(),
            confirmed_on_losing_side.len(),
            LOSING_BLOCKS + 1
        ),
        format!(
            "heal to every losing-side host on the winning tip (reorganised): {}",
            heal_ms.map_or("- (timeout)".into(), |x| format!("{x:.0} ms"))
        ),
        format!(
            "losing-side txs back in the mempool: every losing-side host: {}; winning-side hosts holding them all: {}/{}",
            if losers_ok { "yes" } else { "NO" },
            winners_with_all,
            winners.len()
        ),
    ];
    Ok(Outcome {
        measures: m,
        lines,
        details: json!({
            "winning_side": winners,
            "losing_side": losers,
            "winning_tip": tip,
            "heal_to_every_host_ms": heal_ms,
            "confirmed_on_losing_side": confirmed_on_losing_side.len(),
            "mempools": back,
        }),
        ok: losers_ok && heal_ms.is_some(),
    })
}

/// Churn: `victims` hosts, the seeds among them, are killed with SIGKILL while the rest carry
/// load and mine; they are restarted on the same data dirs and must catch up; then a block
/// mined at a restarted host must reach everyone.
pub fn churn(net: &mut Network, victims: usize, txs: usize) -> Result<Outcome> {
    let hosts = net.live();
    let seeds = net.opts.seeds.min(hosts.len());
    let most = hosts.len().saturating_sub(2);
    let mut chosen: Vec<usize> = (0..seeds).collect();
    let mut others: Vec<usize> = hosts[seeds..].to_vec();
    while chosen.len() < victims.min(most) && !others.is_empty() {
        let i = net.rng.below(others.len());
        chosen.push(others.swap_remove(i));
    }
    chosen.sort_unstable();
    if chosen.len() > most {
        bail!("churn needs at least 2 hosts that stay up");
    }
    let mut m = Measures::default();
    for &v in &chosen {
        net.kill(v);
    }
    eprintln!(" killed (SIGKILL) hosts {chosen:?}");
    let survivors = net.live();
    let while_down = load_round(net, txs, &survivors, &survivors, &mut m)?;
    tx_spreads(net, &while_down, &survivors, &mut m);
    for _ in 0..BLOCKS_WHILE_DOWN {
        let miner = net.rng.pick(&survivors).context("no host")?;
        mine_logged(net, miner, &survivors, &mut m)?;
    }
    let target = net.hosts[survivors[0]].best_hash()?;
    for &v in &chosen {
        net.spawn(v)?;
    }
    let mut rows = Vec::new();
    for &v in &chosen {
        net.hosts[v].wait_ready(crate::network::STARTUP_TIMEOUT)?;
        let started = net.hosts[v].started_at.context("started")?;
        let ready_ms = started.elapsed().as_secs_f64() * 1e3;
        net.subscribe(v)?;
        rows.push((v, started, ready_ms));
    }
    let mut lines = Vec::new();
    let mut details = Vec::new();
    let mut all_caught_up = true;
    for (v, started, ready_ms) in rows {
        // The time the host connected the network's tip: its notification when it was already
        // subscribed then, else its own log line (`new tip hash=...`, logged at info once the
        // node is no longer behind), else it is waited for.
        let stamp = |o: &Observations| {
            o.blocks
                .get(&target)
                .and_then(|b| b.at.get(v).copied().flatten())
        };
        let needle = format!("hash={target}");
        let logged = || {
            log_time(&net.hosts[v].log_path(), |l| {
                l.contains("new tip") && l.contains(&needle)
            })
            .and_then(|wall| net.events.instant_of(wall))
        };
        // The guard is dropped here, before anything below locks the events again.
        let notified = stamp(&net.events.lock());
        let at = notified.or_else(logged).or_else(|| {
            net.events
                .wait(net.opts.converge_timeout, |o| stamp(o).is_some())
                .then(|| stamp(&net.events.lock()))
                .flatten()
        });
        let caught_up_ms = at.map(|t| t.saturating_duration_since(started).as_secs_f64() * 1e3);
        all_caught_up &= caught_up_ms.is_some();
        let peers = net.hosts[v].peers().unwrap_or(0);
        lines.push(format!(
            "host {v}{}: restart to RPC {ready_ms:.0} ms, to the network's tip {}, {peers} peers",
            if v < seeds { " (seed)" } else { "" },
            caught_up_ms.map_or("- (timeout)".into(), |x| format!("{x:.0} ms"))
        ));
        details.push(json!({"host": v, "seed": v < seeds, "restart_to_rpc_ms": ready_ms, "restart_to_tip_ms": caught_up_ms, "peers": peers}));
    }
    let everyone = net.live();
    let after = load_round(net, txs, &everyone, &everyone, &mut m)?;
    tx_spreads(net, &after, &everyone, &mut m);
    let miner = net.rng.pick(&chosen).context("no victim")?;
    mine_logged(net, miner, &everyone, &mut m)?;
    let last_ok = m.blocks.last().is_some_and(|b| b.spread_ms.is_some());
    Ok(Outcome {
        measures: m,
        lines,
        details: json!({"killed": chosen, "restarts": details}),
        ok: all_caught_up && last_ok,
    })
}

/// Time of the first "peer connected" line of a node's log.
fn first_connection(log: &std::path::Path) -> Option<std::time::SystemTime> {
    log_time(log, |l| l.contains("peer connected"))
}

/// Time of the first line of a node's log that `matches` (its tracing timestamps are UTC,
/// `2026-11-26T15:28:49.798329Z`).
fn log_time(
    log: &std::path::Path,
    matches: impl Fn(&str) -> bool,
) -> Option<std::time::SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| matches(l))?;
    parse_utc(line.split_whitespace().next()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` to a `SystemTime`.
fn parse_utc(s: &str) -> Option<std::time::SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant, days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3_600 + mi * 60 + se).ok()?;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    Some(std::time::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Heights 1..=tip of `host`: (blocks, bytes).
fn chain_size(net: &Network, host: usize) -> Result<(u64, u64)> {
    let rpc = &net.hosts[host].rpc;
    let tip = net.hosts[host].height()?;
    let mut bytes = 0;
    for h in 1..=tip {
        let hash = rpc.call("getblockhash", json!([h]))?;
        let b = rpc.call("getblock", json!([hash, 1]))?;
        bytes += b["size"].as_u64().context("block size")?;
    }
    Ok((tip, bytes))
}

/// A late joiner: a chain of `blocks` full blocks is built, then a fresh host syncs it from
/// 1, 2, 4, 8 (`peers`) serving hosts, every host's upload shaped, the joiner's download not.
pub fn late_joiner(net: &mut Network, blocks: usize, peers: &[usize]) -> Result<Outcome> {
    let hosts = net.live();
    let most = peers.iter().copied().max().unwrap_or(1).min(hosts.len());
    let servers: Vec<usize> = hosts[..most].to_vec();
    let bystanders: Vec<usize> = hosts[most..].to_vec();
    let rate = net.opts.rate_mbit;
    let mut m = Measures::default();
    // Building the chain is set-up, not measured: unshaped, bystanders out of the way.
    net.attach(&bystanders, APART_BRIDGE)?;
    for &s in &servers {
        net.shape(s, None, None)?;
    }
    eprintln!(
        " building {blocks} full blocks on {} serving hosts",
        servers.len()
    );
    for b in 0..blocks {
        let miner = servers[b % servers.len()];
        let fillers = {
            let w = net.wallet()?;
            (0..FILLERS_PER_BLOCK)
                .map(|_| w.filler())
                .collect::<Result<Vec<_>>>()?
        };
        funds::send(&net.hosts[miner], &fillers)?;
        mine_logged(net, miner, &servers, &mut m)?;
    }
    for &s in &servers {
        net.shape(s, Some(rate), Some(rate))?;
    }
    let (chain_blocks, chain_bytes) = chain_size(net, servers[0])?;
    let tip = net.hosts[servers[0]].best_hash()?;
    let joiner = net.opts.hosts;
    if net.hosts.len() == joiner {
        net.add_slot(joiner, None)?;
    }
    // The joiner's download is not shaped: the peers' uploads are what is measured.
    net.shape(joiner, Some(rate), None)?;
    let mut lines = vec![format!(
        "chain: {chain_blocks} blocks, {:.1} MB; every host's upload at {rate} Mbit/s, the joiner's download unshaped",
        chain_bytes as f64 / 1e6
    )];
    let mut curve = Vec::new();
    for &k in peers.iter().filter(|k| **k <= servers.len()) {
        let (serving, idle) = servers.split_at(k);
        net.attach(idle, APART_BRIDGE)?;
        net.attach(serving, DATA_BRIDGE)?;
        let slot = net.hosts[joiner].slot.clone();
        net.registry.guarded(|| topology::detach(&slot))?;
        let datadir = net.hosts[joiner].datadir.clone();
        if datadir.exists() {
            std::fs::remove_dir_all(&datadir)
                .with_context(|| format!("remove {}", datadir.display()))?;
        }
        let boot: Vec<String> = serving
            .iter()
            .map(|s| crate::host::p2p_multiaddr(&net.hosts[*s].slot))
            .collect();
        net.events.reset_host(joiner);
        net.spawn_with(joiner, &boot)?;
        net.hosts[joiner].wait_ready(crate::network::STARTUP_TIMEOUT)?;
        net.subscribe(joiner)?;
        let before = topology::counters(&slot)?;
        // Reachable only now, with its notifications already recorded.
        let attached = Instant::now();
        net.attach(&[joiner], DATA_BRIDGE)?;
        let synced = net.events.wait(SYNC_TIMEOUT, |o| {
            o.blocks
                .get(&tip)
                .and_then(|b| b.at.get(joiner).copied().flatten())
                .is_some()
        });
        let received = topology::counters(&slot)?.since(before).received;
        let last = {
            let o = net.events.lock();
            o.blocks
                .get(&tip)
                .and_then(|b| b.at.get(joiner).copied().flatten())
        };
        // The start is the joiner's own log line for its first peer connection: the bootnode
        // dial that failed while its link was down is retried with a backoff the harness does
        // not control.
        let first = first_connection(&net.hosts[joiner].log_path())
            .and_then(|wall| net.events.instant_of(wall));
        net.stop(joiner);
        net.attach(idle, DATA_BRIDGE)?;
        let (Some(first), Some(last), true) = (first, last, synced) else {
            lines.push(format!("{k} peers: did not sync within {SYNC_TIMEOUT:?}"));
            curve.push(json!({"peers": k, "synced": false}));
            continue;
        };
        let secs = last
            .saturating_duration_since(first)
            .as_secs_f64()
            .max(1e-3);
        let wall = (last - attached).as_secs_f64();
        let mbps = chain_bytes as f64 * 8.0 / 1e6 / secs;
        lines.push(format!(
            "{k} peers: {secs:.2} s from first connection to tip ({mbps:.1} Mbit/s, {:.0} blocks/s), {wall:.2} s from link up, {:.1} MB received",
            chain_blocks as f64 / secs,
            received as f64 / 1e6
        ));
        curve.push(json!({
            "peers": k, "synced": true,
            "first_connection_to_tip_s": secs, "link_up_to_tip_s": wall,
            "mbit_per_s": mbps, "blocks_per_s": chain_blocks as f64 / secs,
            "bytes_received": received,
        }));
    }
    net.attach(&bystanders, DATA_BRIDGE)?;
    let ok = curve.iter().all(|c| c["synced"] == json!(true)) && !curve.is_empty();
    Ok(Outcome {
        measures: m,
        lines,
        details: json!({"chain_blocks": chain_blocks, "chain_bytes": chain_bytes, "curve": curve}),
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_as_utc() {
        let t = parse_utc("2026-11-26T15:28:49.798329Z");
        let since = t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        // date -u -d 2026-11-26T15:28:49Z +%s
        assert_eq!(since.map(|d| d.as_secs()), Some(1_795_706_929));
        assert_eq!(since.map(|d| d.subsec_micros()), Some(798_329));
        assert_eq!(parse_utc("2026-11-26 15:28:49"), None);
    }
}
