//! The running testnet: hosts, their subscriptions, the wallet that pays for the load, and the
//! operations scenarios are made of (send transactions, mine, partition, check the end state).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::events::{Events, Observations};
use crate::funds::{self, SignedTx, Wallet};
use crate::host::{self, Host, Memory};
use crate::signals::Registry;
use crate::topology::{self, Counters, Slot};
use crate::ws::Subscriber;

/// Start-up of one node (a debug build opening RocksDB on a loaded machine is the slow case).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// SIGTERM to exit, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Every host must reach this many peers (or all others, in a smaller net) before load starts.
const MIN_PEERS: u64 = 2;
const PEERS_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the hosts' indexes get to follow the funding blocks before the scenarios start.
const INDEX_TIMEOUT: Duration = Duration::from_secs(120);
/// Between two looks at the hosts' indexes.
const INDEX_POLL: Duration = Duration::from_millis(200);
/// How often convergence checks ask the nodes (checks at the end, never measurements).
const CHECK_POLL: Duration = Duration::from_millis(250);
/// Transactions per `sendrawtransaction` batch.
const SEND_BATCH: usize = 100;
/// Hosts started at once: more would only queue on two cores and time out their start-up.
const START_WAVE: usize = 10;

#[derive(Clone, Debug)]
pub struct Options {
    pub hosts: usize,
    pub seeds: usize,
    pub rate_mbit: u32,
    pub cairnd: PathBuf,
    pub genesis: Option<PathBuf>,
    pub workdir: PathBuf,
    /// How long to wait for transactions to reach every mempool before mining.
    pub settle: Duration,
    /// How long to wait for a block to reach every host.
    pub block_timeout: Duration,
    /// How long the end check waits for one tip.
    pub converge_timeout: Duration,
    /// Coins to fund for the whole run.
    pub coins: usize,
    /// Pause before each block is mined, so gossipsub's IHAVE gossip of the last transactions
    /// (3 heartbeats, 2.1 s) is over and the block's byte window holds the block's relay.
    pub quiet_before_block: Duration,
    /// Transactions per second over all hosts when sending (`None`: as fast as the RPC takes
    /// them, in batches of 100).
    pub tx_rate: Option<f64>,
    /// Lines of every host's `cairn.toml` (`key = value`), e.g. `gossip_idontwant = false`.
    pub node_config: Vec<String>,
}

/// A deterministic generator (SplitMix64): a run is repeatable from its `--seed`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick(&mut self, from: &[usize]) -> Option<usize> {
        (!from.is_empty()).then(|| from[self.below(from.len())])
    }
}

/// One mined block and what it cost.
#[derive(Clone, Debug)]
pub struct MinedBlock {
    pub hash: String,
    pub miner: usize,
    pub size: u64,
    pub ntx: u64,
    /// First host connected to last host connected (None: not every host within the timeout).
    pub spread_ms: Option<f64>,
    /// Bytes per host on the data links from just before mining to the last host connecting.
    pub traffic: Vec<Counters>,
    /// Over the same window, per host, the increase of each of [`BLOCK_WINDOW_METRICS`]
    /// (what the bytes were: gossip or request-response payload, syncs, fetches).
    pub window_metrics: Vec<Vec<f64>>,
    /// Per host, bytes received per second during the quiet period before mining (status
    /// rounds, pings, heartbeats: what the link carries with no block), and the window's length.
    pub idle_received_per_sec: Vec<f64>,
    pub window_secs: f64,
}

/// Counters read from every host's `/metrics` around each mined block.
/// The block-connect stages (seconds) are the hop's CPU on the connect path: what queues when
/// every host connects the same block on shared cores.
pub const BLOCK_WINDOW_METRICS: [&str; 17] = [
    "cairn_p2p_gossip_bytes_in_total",
    "cairn_p2p_sync_bytes_in_total",
    "cairn_p2p_gossip_block_duplicates_total",
    "cairn_p2p_relay_tip_syncs_total",
    "cairn_p2p_compact_full_fallbacks_total",
    "cairn_p2p_relay_txs_fetched_total",
    "cairn_p2p_sync_requests_out_total",
    "cairn_p2p_compact_pulled_total",
    "cairn_p2p_relay_requests_in_total",
    "cairn_p2p_relay_new_tips_in_total",
    "cairn_block_connect_seconds_total{stage=\"store\"}",
    "cairn_block_connect_seconds_total{stage=\"fetch_inputs\"}",
    "cairn_block_connect_seconds_total{stage=\"verify\"}",
    "cairn_block_connect_seconds_total{stage=\"apply\"}",
    "cairn_block_connect_seconds_total{stage=\"index\"}",
    "cairn_block_connect_seconds_total{stage=\"write\"}",
    "cairn_block_connect_seconds_total{stage=\"background_index\"}",
];

/// The state every host ends in: tip, height, UTXO digest.
#[derive(Clone, Debug)]
pub struct EndCheck {
    pub agree: bool,
    pub converge_ms: f64,
    pub per_host: Vec<Value>,
}

pub struct Network {
    pub opts: Options,
    pub registry: Registry,
    pub hosts: Vec<Host>,
    subs: Vec<Option<Subscriber>>,
    pub events: Arc<Events>,
    pub wallet: Option<Wallet>,
    pub rng: Rng,
}

impl Network {
    /// Creates the topology, starts every host knowing only the seeds, waits for peers, funds
    /// the wallet. `extra_slots` are reserved for hosts added later (the late joiner).
    pub fn start(
        opts: Options,
        registry: Registry,
        seed: u64,
        extra_slots: usize,
    ) -> Result<Network> {
        let slots = opts.hosts + extra_slots;
        let mut net = Network {
            events: Arc::new(Events::new(slots)),
            hosts: Vec::new(),
            subs: (0..slots).map(|_| None).collect(),
            wallet: None,
            rng: Rng::new(seed),
            registry,
            opts,
        };
        net.registry.raise_neighbour_limits(slots)?;
        net.registry.guarded(topology::create_bridges)?;
        for i in 0..net.opts.hosts {
            net.add_slot(i, Some(topology::DATA_BRIDGE))?;
            net.shape(i, Some(net.opts.rate_mbit), Some(net.opts.rate_mbit))?;
        }
        // Seeds first: the others dial them at start.
        let seeds = net.opts.seeds.min(net.opts.hosts);
        let order: Vec<usize> = (0..net.opts.hosts).collect();
        for wave in std::iter::once(&order[..seeds]).chain(order[seeds..].chunks(START_WAVE)) {
            for &i in wave {
                net.spawn(i)?;
            }
            for &i in wave {
                net.hosts[i].wait_ready(STARTUP_TIMEOUT)?;
                net.subscribe(i)?;
            }
        }
        net.wait_peers(&net.live(), PEERS_TIMEOUT)?;
        let mut wallet = Wallet::faucet(&net.hosts[0])?;
        let t = Instant::now();
        wallet.fund(&net.hosts[0], net.opts.coins)?;
        let tip = net.hosts[0].best_hash()?;
        let live = net.live();
        if !net.events.wait(net.opts.converge_timeout, |o| {
            o.block_everywhere(&tip, &live)
        }) {
            bail!("the funding blocks did not reach every host");
        }
        eprintln!(
            "funded {} coins in {:.1} s",
            wallet.coins_left(),
            t.elapsed().as_secs_f64()
        );
        // The first round must not race the hosts' background indexers over the funding
        // blocks (tens of thousands of outputs): its first second measured 1.1-1.8 s spreads.
        let t = Instant::now();
        net.wait_indexes(&live, INDEX_TIMEOUT)?;
        eprintln!(
            "every host's indexes at the tip after {:.1} s",
            t.elapsed().as_secs_f64()
        );
        net.wallet = Some(wallet);
        Ok(net)
    }

    /// Waits until every index of every host in `hosts` says it is synced (`getindexinfo`).
    fn wait_indexes(&self, hosts: &[usize], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for &i in hosts {
            loop {
                let (synced, info) = self.hosts[i].indexes_synced()?;
                if synced {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("host {i}'s indexes did not reach the tip: {info}");
                }
                std::thread::sleep(INDEX_POLL);
            }
        }
        Ok(())
    }

    /// Creates slot `i`'s namespace and links; `data_bridge` None leaves it unreachable.
    pub fn add_slot(&mut self, i: usize, data_bridge: Option<&str>) -> Result<()> {
        let slot = Slot::new(i)?;
        self.registry
            .guarded(|| topology::create_slot(&slot, data_bridge))?;
        if self.hosts.len() == i {
            self.hosts.push(Host::new(slot, &self.opts.workdir));
        } else {
            bail!(
                "slots are added in order (slot {i} after {})",
                self.hosts.len()
            );
        }
        Ok(())
    }

    pub fn shape(&self, i: usize, up: Option<u32>, down: Option<u32>) -> Result<()> {
        let slot = &self.hosts[i].slot;
        self.registry.guarded(|| topology::shape(slot, up, down))
    }

    pub fn attach(&self, hosts: &[usize], bridge: &str) -> Result<()> {
        for &i in hosts {
            let slot = &self.hosts[i].slot;
            self.registry.guarded(|| topology::attach(slot, bridge))?;
        }
        Ok(())
    }

    /// The seeds a host knows at start: the other seeds for a seed, one or both seeds for the
    /// others. Discovery (Kademlia) finds the rest.
    pub fn bootnodes(&self, i: usize) -> Vec<String> {
        let seeds = self.opts.seeds.min(self.opts.hosts);
        (0..seeds)
            .filter(|s| *s != i)
            .map(|s| host::p2p_multiaddr(&self.hosts[s].slot))
            .collect()
    }

    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let boot = self.bootnodes(i);
        self.spawn_with(i, &boot)
    }

    pub fn spawn_with(&mut self, i: usize, bootnodes: &[String]) -> Result<()> {
        let (cairnd, genesis) = (self.opts.cairnd.clone(), self.opts.genesis.clone());
        let config = self.opts.node_config.clone();
        self.hosts[i].spawn(
            &cairnd,
            genesis.as_deref(),
            bootnodes,
            &config,
            &self.registry,
        )
    }

    pub fn subscribe(&mut self, i: usize) -> Result<()> {
        let h = &self.hosts[i];
        let addr = SocketAddr::new(h.slot.control_ip.into(), host::RPC_PORT);
        let sub = Subscriber::start(
            i,
            addr,
            h.rpc.credentials.as_deref(),
            Arc::clone(&self.events),
        )?;
        self.subs[i] = Some(sub);
        Ok(())
    }

    pub fn unsubscribe(&mut self, i: usize) {
        if let Some(s) = self.subs.get_mut(i).and_then(Option::take) {
            s.stop();
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.unsubscribe(i);
        let registry = self.registry.clone();
        self.hosts[i].kill(&registry);
    }

    /// SIGTERM, then SIGKILL after a timeout.
    pub fn stop(&mut self, i: usize) {
        self.unsubscribe(i);
        let registry = self.registry.clone();
        self.hosts[i].stop(&registry, STOP_TIMEOUT);
    }

    /// Running hosts of the main network (a late joiner is not one of them).
    pub fn live(&self) -> Vec<usize> {
        (0..self.opts.hosts.min(self.hosts.len()))
            .filter(|i| self.hosts[*i].is_running())
            .collect()
    }

    pub fn wallet(&mut self) -> Result<&mut Wallet> {
        self.wallet.as_mut().ok_or_else(|| anyhow!("not funded"))
    }

    /// Waits until every host in `hosts` has at least [`MIN_PEERS`] peers (or all the others).
    pub fn wait_peers(&self, hosts: &[usize], timeout: Duration) -> Result<()> {
        let want = MIN_PEERS.min(self.opts.hosts.saturating_sub(1) as u64);
        let deadline = Instant::now() + timeout;
        loop {
            let short: Vec<usize> = hosts
                .iter()
                .copied()
                .filter(|i| self.hosts[*i].peers().unwrap_or(0) < want)
                .collect();
            if short.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("hosts {short:?} have fewer than {want} peers after {timeout:?}");
            }
            std::thread::sleep(CHECK_POLL);
        }
    }

    pub fn peer_counts(&self, hosts: &[usize]) -> Vec<u64> {
        hosts
            .iter()
            .map(|i| self.hosts[*i].peers().unwrap_or(0))
            .collect()
    }

    /// Signs `n` payments.
    pub fn payments(&mut self, n: usize) -> Result<Vec<SignedTx>> {
        let w = self.wallet()?;
        (0..n).map(|_| w.payment()).collect()
    }

    /// Sends each transaction to a random host of `targets`, in batches, every host from its
    /// own thread; returns the txids accepted where they were sent and the refusals.
    pub fn send_spread(
        &mut self,
        txs: &[SignedTx],
        targets: &[usize],
    ) -> Result<(Vec<String>, Vec<String>)> {
        if targets.is_empty() {
            bail!("no host to send to");
        }
        // Each transaction's place in the whole send: with a rate, it is not sent before
        // `start + place / rate`.
        let mut per_host: HashMap<usize, Vec<(usize, &SignedTx)>> = HashMap::new();
        for (k, t) in txs.iter().enumerate() {
            let h = self.rng.pick(targets).context("no host")?;
            per_host.entry(h).or_default().push((k, t));
        }
        let hosts = &self.hosts;
        let rate = self.opts.tx_rate.filter(|r| *r > 0.0);
        let start = std::time::Instant::now();
        let results: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|s| {
            let workers: Vec<_> = per_host
                .iter()
                .map(|(h, list)| {
                    let host = &hosts[*h];
                    s.spawn(move || {
                        let mut ok = Vec::new();
                        let mut refused = Vec::new();
                        let mut next = 0;
                        while next < list.len() {
                            // Paced: wait for the next one's time, then send all that are due.
                            let n = match rate {
                                None => SEND_BATCH.min(list.len() - next),
                                Some(r) => {
                                    let due =
                                        |k: usize| start + Duration::from_secs_f64(k as f64 / r);
                                    let first = due(list[next].0);
                                    if let Some(wait) =
                                        first.checked_duration_since(std::time::Instant::now())
                                    {
                                        std::thread::sleep(wait);
                                    }
                                    let now = std::time::Instant::now();
                                    list[next..]
                                        .iter()
                                        .take(SEND_BATCH)
                                        .take_while(|(k, _)| due(*k) <= now)
                                        .count()
                                        .max(1)
                                }
                            };
                            let chunk: Vec<&SignedTx> =
                                list[next..next + n].iter().map(|(_, t)| *t).collect();
                            next += n;
                            let params: Vec<Value> = chunk.iter().map(|t| json!([t.hex])).collect();
                            match host.rpc.batch("sendrawtransaction", &params) {
                                Ok(answers) => {
                                    for (a, t) in answers.into_iter().zip(&chunk) {
                                        match a {
                                            Ok(_) => ok.push(t.txid.clone()),
                                            Err(e) => refused.push(format!("{}: {e:#}", t.txid)),
                                        }
                                    }
                                }
                                Err(e) => refused
                                    .extend(chunk.iter().map(|t| format!("{}: {e:#}", t.txid))),
                            }
                        }
                        (ok, refused)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for (o, r) in results {
            ok.extend(o);
            refused.extend(r);
        }
        Ok((ok, refused))
    }

    /// Waits until every transaction is in every mempool of `hosts`; returns whether it happened
    /// within the settle time.
    pub fn wait_txs(&self, txids: &[String], hosts: &[usize], timeout: Duration) -> bool {
        let mut done = 0;
        self.events.wait(timeout, |o| {
            // Resume where the last wake-up stopped: a burst wakes this thousands of times.
            while done < txids.len() && o.tx_everywhere(&txids[done], hosts) {
                done += 1;
            }
            done == txids.len()
        })
    }

    pub fn counters(&self, hosts: &[usize]) -> Result<Vec<Counters>> {
        hosts
            .iter()
            .map(|i| topology::counters(&self.hosts[*i].slot))
            .collect()
    }

    /// Mines one block at `miner` and waits until every host in `hosts` connected it.
    pub fn mine(&mut self, miner: usize, hosts: &[usize]) -> Result<MinedBlock> {
        // The quiet period doubles as the idle baseline (status rounds, pings, heartbeats).
        let quiet_start = self.counters(hosts)?;
        let quiet_t = Instant::now();
        std::thread::sleep(self.opts.quiet_before_block);
        let metrics_before = self.metrics(hosts);
        let before = self.counters(hosts)?;
        let window_t = Instant::now();
        let idle_secs = window_t.duration_since(quiet_t).as_secs_f64();
        let address = self.wallet()?.address.clone();
        let hash = funds::generate(&self.hosts[miner], &address)?
            .pop()
            .context("generatetoaddress returned no hash")?;
        let complete = self.events.wait(self.opts.block_timeout, |o| {
            o.block_everywhere(&hash, hosts)
        });
        let after = self.counters(hosts)?;
        let window_secs = window_t.elapsed().as_secs_f64();
        let metrics_after = self.metrics(hosts);
        let window_metrics = metrics_after
            .iter()
            .zip(&metrics_before)
            .map(|(a, b)| {
                BLOCK_WINDOW_METRICS
                    .iter()
                    .map(|n| a.get(*n).copied().unwrap_or(0.0) - b.get(*n).copied().unwrap_or(0.0))
                    .collect()
            })
            .collect();
        let block = self.hosts[miner].rpc.call("getblock", json!([hash, 1]))?;
        let spread_ms = if complete {
            let o = self.events.lock();
            o.blocks
                .get(&hash)
                .and_then(|b| Observations::spread(&b.at, hosts))
                .map(|(a, b)| (b - a).as_secs_f64() * 1e3)
        } else {
            None
        };
        Ok(MinedBlock {
            size: block["size"].as_u64().unwrap_or(0),
            ntx: block["tx"].as_array().map_or(0, |t| t.len() as u64),
            hash,
            miner,
            spread_ms,
            traffic: after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.since(*b))
                .collect(),
            window_metrics,
            idle_received_per_sec: before
                .iter()
                .zip(&quiet_start)
                .map(|(b, q)| b.since(*q).received as f64 / idle_secs.max(1e-3))
                .collect(),
            window_secs,
        })
    }

    /// Txids confirmed in block `hash` (asked of `host`).
    pub fn block_txids(&self, host: usize, hash: &str) -> Result<Vec<String>> {
        let b = self.hosts[host].rpc.call("getblock", json!([hash, 1]))?;
        Ok(b["tx"]
            .as_array()
            .context("getblock tx")?
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect())
    }

    pub fn mempool(&self, host: usize) -> Result<Vec<String>> {
        let v = self.hosts[host].rpc.call("getrawmempool", json!([]))?;
        Ok(v.as_array()
            .context("getrawmempool is an array")?
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect())
    }

    pub fn memory(&self, hosts: &[usize]) -> Vec<Option<Memory>> {
        hosts.iter().map(|i| self.hosts[*i].memory()).collect()
    }

    /// `/metrics` of each host (empty when a host does not answer).
    pub fn metrics(&self, hosts: &[usize]) -> Vec<HashMap<String, f64>> {
        hosts
            .iter()
            .map(|i| {
                self.hosts[*i]
                    .rpc
                    .metrics()
                    .map(|m| m.into_iter().collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until every host in `hosts` reports one best block (polling `getbestblockhash`:
    /// a check, not a measurement), then reads every host's `gettxoutsetinfo`.
    pub fn end_check(&self, hosts: &[usize]) -> Result<EndCheck> {
        let t = Instant::now();
        let deadline = t + self.opts.converge_timeout;
        let mut tips: Vec<String>;
        loop {
            tips = hosts
                .iter()
                .map(|i| self.hosts[*i].best_hash().unwrap_or_default())
                .collect();
            let one = tips
                .first()
                .is_some_and(|f| !f.is_empty() && tips.iter().all(|x| x == f));
            if one || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(CHECK_POLL);
        }
        let converge_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut per_host = Vec::new();
        let mut digests = Vec::new();
        for (&i, tip) in hosts.iter().zip(&tips) {
            let info = self.hosts[i]
                .rpc
                .call("gettxoutsetinfo", json!([]))
                .unwrap_or(Value::Null);
            let digest = info["utxo_digest"].as_str().unwrap_or("").to_string();
            digests.push((
                info["bestblock"].as_str().unwrap_or("").to_string(),
                digest.clone(),
            ));
            per_host.push(json!({
                "host": i,
                "tip": tip,
                "height": info["height"],
                "utxo_digest": digest,
            }));
        }
        let agree = !digests.is_empty()
            && digests.iter().all(|(b, d)| !b.is_empty() && !d.is_empty())
            && digests.iter().all(|x| *x == digests[0]);
        Ok(EndCheck {
            agree,
            converge_ms,
            per_host,
        })
    }

    /// Stops every subscription and node; the caller then runs the registry's clean-up.
    pub fn shutdown(&mut self) {
        for i in 0..self.hosts.len() {
            self.unsubscribe(i);
        }
        let registry = self.registry.clone();
        for h in &mut self.hosts {
            h.stop(&registry, STOP_TIMEOUT);
        }
    }

    pub fn lost_subscriptions(&self) -> Vec<String> {
        self.events.lock().lost.clone()
    }
}
