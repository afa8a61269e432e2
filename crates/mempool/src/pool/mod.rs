//! The pool itself. See the crate docs for what it owns.
//!
//! The types and queries are here; each submodule adds the `impl Mempool` of one concept, so
//! a rule can be read with the state it changes but without the rest of the pool around it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use cairn_consensus::{ChainParams, UtxoView};
use cairn_primitives::{
    Amount, BlockHash, OutPoint, Transaction, TxIn, TxOut, Txid, Wtxid, XOnlyPublicKey,
};

use crate::estimator::Estimator;
use crate::{MempoolConfig, MempoolError, persist};

mod accept;
mod chain;
mod orphans;
mod precheck;
mod template;

pub use precheck::{Prechecked, precheck, precheck_cached};

/// Who sent a transaction: an opaque tag (a hash of the peer id) for the orphan pool's per-peer
/// share. [`LOCAL`] is the node itself (RPC, the pool file).
pub type PeerTag = u64;
pub const LOCAL: PeerTag = 0;

/// A fee rate as a sortable key: fees per byte, scaled by 2^16 so small differences count.
/// A `u64` rather than a `u128`: the fee-rate index holds one per transaction.
fn score(fees: u64, size: u64) -> u64 {
    // 16 fractional bits; saturates only for fees above ~2.8 million coins per byte.
    let s = (u128::from(fees) << 16) / u128::from(size.max(1));
    u64::try_from(s).unwrap_or(u64::MAX)
}

/// One pooled transaction with its package aggregates (counts include itself).
#[derive(Debug)]
struct Entry {
    tx: Arc<Transaction>,
    size: u32,
    fee: u64,
    /// Unix seconds (u32 until 2106) and tip height when it entered: narrow, because every
    /// pooled transaction carries them.
    time: u32,
    height: u32,
    anc_count: u32,
    anc_size: u64,
    anc_fees: u64,
    desc_count: u32,
    desc_size: u64,
    desc_fees: u64,
}

impl Entry {
    fn desc_key(&self, txid: Txid) -> (u64, Txid) {
        (score(self.desc_fees, self.desc_size), txid)
    }
}

/// A transaction waiting for a parent.
#[derive(Debug)]
struct Orphan {
    tx: Arc<Transaction>,
    source: PeerTag,
    time: u64,
    size: usize,
}

/// A transaction that was accepted.
#[derive(Clone, Debug)]
pub struct AcceptedTx {
    pub txid: Txid,
    pub tx: Arc<Transaction>,
    pub size: usize,
    pub fee: Amount,
}

/// The result of an acceptance: the transaction first, then the orphans it unlocked, in order.
#[derive(Clone, Debug, Default)]
pub struct AcceptOutcome {
    pub accepted: Vec<AcceptedTx>,
    /// Transactions evicted by replacement.
    pub replaced: Vec<Txid>,
}

/// What `testmempoolaccept` reports.
#[derive(Clone, Debug)]
pub struct TestAccept {
    pub txid: Txid,
    pub wtxid: Wtxid,
    pub size: usize,
    pub fee: Amount,
}

/// A block's worth of transactions, parents before children.
#[derive(Clone, Debug, Default)]
pub struct Template {
    pub txs: Vec<Arc<Transaction>>,
    pub total_fees: Amount,
    pub total_bytes: usize,
}

/// `getmempoolentry`.
#[derive(Clone, Debug)]
pub struct EntryInfo {
    pub size: usize,
    pub fee: Amount,
    /// Base units per byte (rounded down).
    pub fee_rate: u64,
    pub time: u64,
    pub height: u64,
    pub depends: Vec<Txid>,
    pub spent_by: Vec<Txid>,
    pub ancestor_count: usize,
    pub ancestor_size: usize,
    pub ancestor_fees: Amount,
    pub descendant_count: usize,
    pub descendant_size: usize,
    pub descendant_fees: Amount,
}

/// `getmempoolinfo`.
#[derive(Clone, Debug)]
pub struct MempoolInfo {
    pub size: usize,
    pub bytes: usize,
    pub usage: usize,
    pub max_bytes: usize,
    pub min_fee_rate: u64,
    pub min_relay_fee_rate: u64,
    pub dust_threshold: Amount,
}

/// What the pool does to one address (for the address-index RPCs).
#[derive(Clone, Debug, Default)]
pub struct AddressActivity {
    /// Outputs to the address created by pool transactions.
    pub received: Vec<(OutPoint, TxOut)>,
    /// Outputs of the address (confirmed or pooled) that pool transactions spend, with values.
    pub spent: Vec<(OutPoint, Amount)>,
    /// Pool transactions touching the address, parents first.
    pub txids: Vec<Txid>,
}

/// Everything [`Mempool::check`] established about a transaction.
struct Checked {
    p: Prechecked,
    fee: u64,
    ancestors: HashSet<Txid>,
    anc_size: u64,
    anc_fees: u64,
    evict: HashSet<Txid>,
}

/// The pool.
pub struct Mempool {
    params: ChainParams,
    genesis: BlockHash,
    config: MempoolConfig,
    /// Boxed: a table slot is then 40 bytes instead of 104, and tables sit half empty after
    /// each doubling, so this saves memory at every pool size but the fullest moments.
    entries: HashMap<Txid, Box<Entry>>,
    /// Outpoint -> the pool transaction spending it.
    spenders: HashMap<OutPoint, Txid>,
    /// Lowest descendant fee rate first: what eviction removes.
    by_desc_score: BTreeSet<(u64, Txid)>,
    total_bytes: usize,
    usage: usize,
    /// Rolling minimum fee rate after evictions, and when it was set (it halves every
    /// `min_fee_halflife_secs` after that).
    rolling_min_fee: u64,
    rolling_since: u64,
    orphans: HashMap<Txid, Orphan>,
    orphans_by_parent: HashMap<Txid, Vec<Txid>>,
    orphan_bytes: usize,
    estimator: Estimator,
}

/// Estimated heap memory of one entry: the transaction's allocations, its slot in `entries`,
/// one `spenders` slot per input and its node in the fee-rate index. Hash tables run between
/// 7/16 and 7/8 full (they double when full), so slots are counted at 4/7 load; B-tree
/// entries at 2/3 node fill. `examples/mempool_bench.rs` checks this against a counting
/// allocator.
fn entry_usage(tx: &Transaction) -> usize {
    use std::mem::size_of;
    let tx_heap = 16
        + size_of::<Transaction>()
        + tx.inputs.len() * size_of::<TxIn>()
        + tx.outputs.len() * size_of::<TxOut>();
    let slot = (size_of::<Txid>() + size_of::<Box<Entry>>() + 1) * 7 / 4 + size_of::<Entry>();
    let spenders = tx.inputs.len() * (size_of::<OutPoint>() + size_of::<Txid>() + 1) * 7 / 4;
    let index = size_of::<(u64, Txid)>() * 3 / 2;
    tx_heap + slot + spenders + index
}

impl Mempool {
    pub fn new(params: ChainParams, config: MempoolConfig) -> Mempool {
        Mempool {
            genesis: params.genesis_hash(),
            params,
            config,
            entries: HashMap::new(),
            spenders: HashMap::new(),
            by_desc_score: BTreeSet::new(),
            total_bytes: 0,
            usage: 0,
            rolling_min_fee: 0,
            rolling_since: 0,
            orphans: HashMap::new(),
            orphans_by_parent: HashMap::new(),
            orphan_bytes: 0,
            estimator: Estimator::default(),
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    // ------------------------------------------------------------ queries

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }
    pub fn get(&self, txid: &Txid) -> Option<Arc<Transaction>> {
        self.entries.get(txid).map(|e| Arc::clone(&e.tx))
    }
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }
    /// Whether the pool or the orphan pool holds `txid` (relay: no need to fetch it).
    pub fn knows(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid) || self.orphans.contains_key(txid)
    }
    /// Every pooled and orphan transaction, in no order (compact blocks match short ids
    /// against them).
    pub fn transactions(&self) -> impl Iterator<Item = &Transaction> {
        self.entries
            .values()
            .map(|e| &*e.tx)
            .chain(self.orphans.values().map(|o| &*o.tx))
    }
    pub fn spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spenders.get(outpoint).copied()
    }
    /// An output created by a pool transaction (spent in the pool or not).
    pub fn output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.entries
            .get(&outpoint.txid)?
            .tx
            .outputs
            .get(outpoint.vout as usize)
            .copied()
    }

    /// Every txid, parents before children (a parent has fewer ancestors than its child).
    pub fn txids(&self) -> Vec<Txid> {
        let mut v: Vec<(u32, Txid)> = self
            .entries
            .iter()
            .map(|(t, e)| (e.anc_count, *t))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, t)| t).collect()
    }

    fn parents(&self, tx: &Transaction) -> Vec<Txid> {
        let mut p: Vec<Txid> = tx
            .inputs
            .iter()
            .map(|i| i.prevout.txid)
            .filter(|t| self.entries.contains_key(t))
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    fn children(&self, txid: &Txid) -> Vec<Txid> {
        let Some(e) = self.entries.get(txid) else {
            return Vec::new();
        };
        let mut c: Vec<Txid> = (0..e.tx.outputs.len() as u32)
            .filter_map(|vout| self.spenders.get(&OutPoint::new(*txid, vout)).copied())
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Pool ancestors of a transaction with these pool parents; stops (returning `Err(count)`)
    /// once more than `limit` are found.
    fn ancestors_from(&self, parents: &[Txid], limit: usize) -> Result<HashSet<Txid>, usize> {
        let mut seen: HashSet<Txid> = HashSet::new();
        let mut stack: Vec<Txid> = parents.to_vec();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            if seen.len() > limit {
                return Err(seen.len());
            }
            if let Some(e) = self.entries.get(&t) {
                stack.extend(self.parents(&e.tx));
            }
        }
        Ok(seen)
    }

    fn descendants(&self, txid: &Txid) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut stack = self.children(txid);
        while let Some(t) = stack.pop() {
            if seen.insert(t) {
                stack.extend(self.children(&t));
            }
        }
        seen
    }

    pub fn entry(&self, txid: &Txid) -> Option<EntryInfo> {
        let e = self.entries.get(txid)?;
        Some(EntryInfo {
            size: e.size as usize,
            fee: Amount(e.fee),
            fee_rate: e.fee / u64::from(e.size.max(1)),
            time: u64::from(e.time),
            height: u64::from(e.height),
            depends: self.parents(&e.tx),
            spent_by: self.children(txid),
            ancestor_count: e.anc_count as usize,
            ancestor_size: e.anc_size as usize,
            ancestor_fees: Amount(e.anc_fees),
            descendant_count: e.desc_count as usize,
            descendant_size: e.desc_size as usize,
            descendant_fees: Amount(e.desc_fees),
        })
    }

    /// The fee rate a new transaction must pay now: the relay minimum, or the rolling minimum
    /// left by evictions, which halves every `min_fee_halflife_secs` so a pool that emptied
    /// becomes cheap again.
    pub fn min_fee_rate(&self, now: u64) -> u64 {
        let halvings =
            now.saturating_sub(self.rolling_since) / self.config.min_fee_halflife_secs.max(1);
        let rolling = self
            .rolling_min_fee
            .checked_shr(halvings.min(63) as u32)
            .unwrap_or(0);
        rolling.max(self.config.min_relay_fee_rate)
    }

    pub fn info(&self) -> MempoolInfo {
        MempoolInfo {
            size: self.entries.len(),
            bytes: self.total_bytes,
            usage: self.usage,
            max_bytes: self.config.max_bytes,
            min_fee_rate: self.rolling_min_fee.max(self.config.min_relay_fee_rate),
            min_relay_fee_rate: self.config.min_relay_fee_rate,
            dust_threshold: self.config.dust_threshold,
        }
    }

    /// Scans the pool (it is bounded; an index per address would cost memory per output).
    /// `chain` resolves the confirmed coins pool transactions spend; only coins of `pubkey`
    /// matter, so a view of just that address's coins is enough (and avoids a database read
    /// per pooled input).
    pub fn address_activity(
        &self,
        pubkey: &XOnlyPublicKey,
        chain: &impl UtxoView,
    ) -> AddressActivity {
        let mut act = AddressActivity::default();
        // Only the touched transactions are put in parents-first order, not the whole pool.
        let mut touched_txids: Vec<(u32, Txid)> = Vec::new();
        for (&txid, e) in &self.entries {
            let mut touched = false;
            for (vout, o) in e.tx.outputs.iter().enumerate() {
                if o.pubkey == *pubkey {
                    act.received.push((OutPoint::new(txid, vout as u32), *o));
                    touched = true;
                }
            }
            for i in &e.tx.inputs {
                let out = self
                    .output(&i.prevout)
                    .or_else(|| chain.coin(&i.prevout).map(|c| c.output));
                if let Some(o) = out.filter(|o| o.pubkey == *pubkey) {
                    act.spent.push((i.prevout, o.value));
                    touched = true;
                }
            }
            if touched {
                touched_txids.push((e.anc_count, txid));
            }
        }
        touched_txids.sort_unstable();
        act.txids = touched_txids.into_iter().map(|(_, t)| t).collect();
        act
    }

    // ------------------------------------------------------------ persistence

    /// Writes the pool, parents first, atomically.
    pub fn save(&self, path: &Path) -> Result<(), MempoolError> {
        let txids = self.txids();
        let txs: Vec<&Transaction> = txids
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| &*e.tx))
            .collect();
        persist::save(path, &txs)
    }

    /// Reads a pool file; the caller re-accepts each transaction (they are re-validated).
    pub fn load(path: &Path) -> Result<Vec<Transaction>, MempoolError> {
        persist::load(path)
    }
}
