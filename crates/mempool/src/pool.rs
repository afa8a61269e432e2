//! The pool itself. See the crate docs for what it owns.

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use cairn_consensus::rules::tx::{check_transaction, coinbase_is_mature, lock_time_is_final};
use cairn_consensus::{ChainParams, Coin, ConsensusError, SigCache, UtxoView};
use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{
    Amount, Block, BlockHash, OutPoint, Transaction, TxIn, TxOut, Txid, Wtxid, XOnlyPublicKey,
};

use crate::estimator::{BlockFees, Estimator, FULL_BLOCK_PERCENT};
use crate::{MempoolConfig, MempoolError, persist};

/// Who sent a transaction: an opaque tag (a hash of the peer id) for the orphan pool's per-peer
/// share. [`LOCAL`] is the node itself (RPC, the pool file).
pub type PeerTag = u64;
pub const LOCAL: PeerTag = 0;
/// A template stops looking once this many packages in a row did not fit a nearly full block.
pub const MAX_TEMPLATE_MISSES: usize = 1_000;
/// "Nearly full": less than this many bytes left.
pub const TEMPLATE_NEARLY_FULL: usize = 4_000;

/// A fee rate as a sortable key: fees per byte, scaled by 2^16 so small differences count.
/// A `u64` rather than a `u128`: the fee-rate index holds one per transaction.
fn score(fees: u64, size: u64) -> u64 {
    // 16 fractional bits; saturates only for fees above ~2.8 million coins per byte.
    let s = (u128::from(fees) << 16) / u128::from(size.max(1));
    u64::try_from(s).unwrap_or(u64::MAX)
}

/// A transaction that passed [`precheck`].
#[derive(Clone, Debug)]
pub struct Prechecked {
    tx: Arc<Transaction>,
    txid: Txid,
    size: usize,
    outputs_total: Amount,
    /// `verified[i]`: the key input i's signature was checked against, if its coin was found.
    verified: Vec<Option<XOnlyPublicKey>>,
    /// Signatures were checked when the transaction was first accepted (re-adds after a
    /// reorganisation, the pool file of this node): skip checking them again.
    trusted: bool,
}

impl Prechecked {
    pub fn txid(&self) -> Txid {
        self.txid
    }
    pub fn tx(&self) -> &Arc<Transaction> {
        &self.tx
    }
}

/// Stage 1, stateless, for any thread: context-free consensus rules, size and dust policy, and
/// the signature of every input whose coin `chain` has. Inputs it cannot resolve (unconfirmed
/// parents) are checked by [`Mempool::accept_prechecked`].
pub fn precheck(
    tx: Transaction,
    chain: &impl UtxoView,
    params: &ChainParams,
    config: &MempoolConfig,
) -> Result<Prechecked, MempoolError> {
    precheck_cached(tx, chain, params, config, None, |_| false)
}

/// [`precheck`] that records every signature it verifies in `sigs`, so the block that later
/// confirms the transaction does not verify it again (as Bitcoin Core's signature cache).
/// A transaction `pooled` says the pool already holds is refused at once, before any coin read
/// or signature check, with the error the final stage would give: most copies of a relayed
/// transaction arrive after it was pooled (fetched from one peer, then gossiped by others).
pub fn precheck_cached(
    tx: Transaction,
    chain: &impl UtxoView,
    params: &ChainParams,
    config: &MempoolConfig,
    sigs: Option<&SigCache>,
    pooled: impl Fn(&Txid) -> bool,
) -> Result<Prechecked, MempoolError> {
    let txid = tx.txid();
    if pooled(&txid) {
        return Err(MempoolError::AlreadyInPool { txid });
    }
    if tx.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase { txid }.into());
    }
    let size = tx.size();
    if size > config.max_tx_size {
        return Err(MempoolError::TooLarge {
            size,
            limit: config.max_tx_size,
        });
    }
    let outputs_total = check_transaction(&tx, txid, params)?;
    if let Some((vout, o)) = tx
        .outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.value < config.dust_threshold)
    {
        return Err(MempoolError::Dust {
            vout,
            value: o.value.0,
            threshold: config.dust_threshold.0,
        });
    }
    let msg = sighash(&params.genesis_hash(), &txid);
    let mut verified = vec![None; tx.inputs.len()];
    for (i, input) in tx.inputs.iter().enumerate() {
        if let Some(coin) = chain.coin(&input.prevout) {
            let valid = match sigs {
                Some(cache) => cache.verify_and_insert(&coin.output.pubkey, &msg, &input.signature),
                None => verify(&coin.output.pubkey, &msg, &input.signature),
            };
            if !valid {
                return Err(ConsensusError::InvalidSignature { txid, input: i }.into());
            }
            verified[i] = Some(coin.output.pubkey);
        }
    }
    Ok(Prechecked {
        tx: Arc::new(tx),
        txid,
        size,
        outputs_total,
        verified,
        trusted: false,
    })
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

    // ------------------------------------------------------------ acceptance

    /// [`precheck`] then [`Mempool::accept_prechecked`], on this thread.
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
        source: PeerTag,
    ) -> Result<AcceptOutcome, MempoolError> {
        let p = precheck(tx, chain, &self.params, &self.config)?;
        self.accept_prechecked(p, chain, tip_height, now, source)
    }

    /// Would `tx` be accepted now? Changes nothing.
    pub fn test_accept(
        &self,
        tx: &Transaction,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
    ) -> Result<TestAccept, MempoolError> {
        let p = precheck(tx.clone(), chain, &self.params, &self.config)?;
        let c = self.check(p, chain, tip_height, now)?;
        Ok(TestAccept {
            txid: c.p.txid,
            wtxid: c.p.tx.wtxid(),
            size: c.p.size,
            fee: Amount(c.fee),
        })
    }

    /// Stage 2, on the task that owns the pool. `chain` is the chain at `tip_height`; the
    /// transaction must be valid in block `tip_height + 1`.
    pub fn accept_prechecked(
        &mut self,
        p: Prechecked,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
        source: PeerTag,
    ) -> Result<AcceptOutcome, MempoolError> {
        let mut outcome = AcceptOutcome::default();
        let txid = p.txid;
        let tx = Arc::clone(&p.tx);
        match self.accept_one(p, chain, tip_height, now, &mut outcome) {
            Ok(()) => {}
            Err(e @ MempoolError::MissingInputs { .. }) => {
                if source != LOCAL {
                    self.add_orphan(tx, source, now);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        self.retry_orphans(vec![txid], chain, tip_height, now, &mut outcome);
        Ok(outcome)
    }

    fn accept_one(
        &mut self,
        p: Prechecked,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
        outcome: &mut AcceptOutcome,
    ) -> Result<(), MempoolError> {
        let checked = self.check(p, chain, tip_height, now)?;
        let (txid, tx, size, fee) = (
            checked.p.txid,
            Arc::clone(&checked.p.tx),
            checked.p.size,
            checked.fee,
        );
        outcome.replaced.extend(checked.evict.iter().copied());
        self.insert(checked, tip_height, now);
        self.trim(now);
        if !self.entries.contains_key(&txid) {
            return Err(MempoolError::PoolFull);
        }
        outcome.accepted.push(AcceptedTx {
            txid,
            tx,
            size,
            fee: Amount(fee),
        });
        Ok(())
    }

    /// Every rule, without changing anything.
    fn check(
        &self,
        p: Prechecked,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
    ) -> Result<Checked, MempoolError> {
        let (txid, size) = (p.txid, p.size as u64);
        let tx = Arc::clone(&p.tx);
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::AlreadyInPool { txid });
        }
        let height = tip_height + 1;
        lock_time_is_final(&tx, txid, height)?;

        // Inputs: a pooled parent's output or a confirmed coin; outputs already spent in the
        // pool are conflicts (a replacement candidate), not missing.
        let mut conflicts: Vec<Txid> = Vec::new();
        let mut parents: Vec<Txid> = Vec::new();
        let mut total = Amount::ZERO;
        let msg = sighash(&self.genesis, &txid);
        for (i, input) in tx.inputs.iter().enumerate() {
            let op = input.prevout;
            if let Some(s) = self.spenders.get(&op) {
                conflicts.push(*s);
            }
            let coin = if let Some(parent) = self.entries.get(&op.txid) {
                parents.push(op.txid);
                let output = *parent
                    .tx
                    .outputs
                    .get(op.vout as usize)
                    .ok_or(MempoolError::MissingInputs { txid, outpoint: op })?;
                Coin {
                    output,
                    height,
                    coinbase: false,
                }
            } else {
                chain
                    .coin(&op)
                    .ok_or(MempoolError::MissingInputs { txid, outpoint: op })?
            };
            coinbase_is_mature(&coin, txid, op, height, &self.params)?;
            total = total
                .checked_add(coin.output.value)
                .filter(|t| *t <= self.params.max_supply)
                .ok_or(ConsensusError::InputValueTooLarge { txid })?;
            let already = p.verified.get(i).copied().flatten() == Some(coin.output.pubkey);
            if !already && !p.trusted && !verify(&coin.output.pubkey, &msg, &input.signature) {
                return Err(ConsensusError::InvalidSignature { txid, input: i }.into());
            }
        }
        let fee = total
            .checked_sub(p.outputs_total)
            .ok_or(ConsensusError::NegativeFee {
                txid,
                inputs: total,
                outputs: p.outputs_total,
            })?
            .0;

        // Fee policy.
        let relay_rate = self.config.min_relay_fee_rate;
        let required = size.saturating_mul(relay_rate);
        if fee < required {
            return Err(MempoolError::FeeTooLow {
                fee,
                required,
                size: size as usize,
                rate: relay_rate,
            });
        }
        let pool_rate = self.min_fee_rate(now);
        if pool_rate > relay_rate && fee < size.saturating_mul(pool_rate) {
            return Err(MempoolError::PoolMinFeeNotMet {
                fee,
                required: size.saturating_mul(pool_rate),
                rate: pool_rate,
            });
        }

        // Replacement (Bitcoin Core's rules, simplified to the ones that protect the pool).
        let mut evict: HashSet<Txid> = HashSet::new();
        if !conflicts.is_empty() {
            for c in &conflicts {
                evict.insert(*c);
                evict.extend(self.descendants(c));
                if evict.len() > self.config.max_replacements {
                    return Err(MempoolError::TooManyReplacements {
                        count: evict.len(),
                        limit: self.config.max_replacements,
                    });
                }
            }
            if let Some(p) = parents.iter().find(|p| evict.contains(p)) {
                return Err(MempoolError::Replacement {
                    reason: format!("spends {p}, which it would replace"),
                });
            }
            let mut evicted_fees = 0u64;
            for t in &evict {
                let e = &self.entries[t];
                // New fee rate strictly above every replaced transaction's.
                if u128::from(fee) * u128::from(e.size) <= u128::from(e.fee) * u128::from(size) {
                    return Err(MempoolError::Replacement {
                        reason: format!(
                            "fee rate {}/byte not above the {}/byte of {t}",
                            fee / size.max(1),
                            e.fee / u64::from(e.size.max(1))
                        ),
                    });
                }
                evicted_fees = evicted_fees.saturating_add(e.fee);
            }
            if fee <= evicted_fees {
                return Err(MempoolError::Replacement {
                    reason: format!(
                        "fee {fee} not above the {evicted_fees} of the transactions it replaces"
                    ),
                });
            }
            if fee - evicted_fees < required {
                return Err(MempoolError::Replacement {
                    reason: format!(
                        "additional fee {} does not pay for its own relay ({required})",
                        fee - evicted_fees
                    ),
                });
            }
        }

        // Package limits.
        parents.sort_unstable();
        parents.dedup();
        let ancestors = self
            .ancestors_from(&parents, self.config.max_ancestors)
            .map_err(|count| MempoolError::TooManyAncestors {
                count: count + 1,
                limit: self.config.max_ancestors,
            })?;
        if ancestors.len() + 1 > self.config.max_ancestors {
            return Err(MempoolError::TooManyAncestors {
                count: ancestors.len() + 1,
                limit: self.config.max_ancestors,
            });
        }
        let (mut anc_size, mut anc_fees) = (0u64, 0u64);
        for a in &ancestors {
            let e = &self.entries[a];
            anc_size += u64::from(e.size);
            anc_fees = anc_fees.saturating_add(e.fee);
            if e.desc_count as usize + 1 > self.config.max_descendants {
                return Err(MempoolError::TooManyDescendants {
                    ancestor: *a,
                    count: e.desc_count as usize + 1,
                    limit: self.config.max_descendants,
                });
            }
            if (e.desc_size + size) as usize > self.config.max_descendant_bytes {
                return Err(MempoolError::DescendantsTooLarge {
                    ancestor: *a,
                    size: (e.desc_size + size) as usize,
                    limit: self.config.max_descendant_bytes,
                });
            }
        }
        if (anc_size + size) as usize > self.config.max_ancestor_bytes {
            return Err(MempoolError::AncestorsTooLarge {
                size: (anc_size + size) as usize,
                limit: self.config.max_ancestor_bytes,
            });
        }
        Ok(Checked {
            p,
            fee,
            ancestors,
            anc_size,
            anc_fees,
            evict,
        })
    }

    fn update_desc(&mut self, txid: &Txid, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.entries.get_mut(txid) {
            self.by_desc_score.remove(&e.desc_key(*txid));
            f(e);
            self.by_desc_score.insert(e.desc_key(*txid));
        }
    }

    fn insert(&mut self, c: Checked, tip_height: u64, now: u64) {
        self.remove_set(&c.evict);
        let txid = c.p.txid;
        let size = c.p.size as u64;
        for a in &c.ancestors {
            self.update_desc(a, |e| {
                e.desc_count += 1;
                e.desc_size += size;
                e.desc_fees = e.desc_fees.saturating_add(c.fee);
            });
        }
        for i in &c.p.tx.inputs {
            self.spenders.insert(i.prevout, txid);
        }
        let e = Entry {
            tx: Arc::clone(&c.p.tx),
            size: size as u32,
            fee: c.fee,
            time: u32::try_from(now).unwrap_or(u32::MAX),
            height: u32::try_from(tip_height).unwrap_or(u32::MAX),
            anc_count: c.ancestors.len() as u32 + 1,
            anc_size: c.anc_size + size,
            anc_fees: c.anc_fees.saturating_add(c.fee),
            desc_count: 1,
            desc_size: size,
            desc_fees: c.fee,
        };
        self.by_desc_score.insert(e.desc_key(txid));
        self.total_bytes += c.p.size;
        self.usage += entry_usage(&c.p.tx);
        self.entries.insert(txid, Box::new(e));
    }

    /// Removes a set of transactions, keeping the aggregates of the ones that stay right: their
    /// ancestors lose them as descendants, their descendants (when a confirmed transaction
    /// leaves without them) lose them as ancestors.
    fn remove_set(&mut self, set: &HashSet<Txid>) {
        for t in set {
            let Some(e) = self.entries.get(t) else {
                continue;
            };
            let (size, fee) = (u64::from(e.size), e.fee);
            let parents = self.parents(&e.tx);
            let ancestors = self
                .ancestors_from(&parents, usize::MAX)
                .unwrap_or_default();
            for a in ancestors.iter().filter(|a| !set.contains(a)) {
                self.update_desc(a, |e| {
                    e.desc_count -= 1;
                    e.desc_size -= size;
                    e.desc_fees -= fee;
                });
            }
            for d in self.descendants(t).iter().filter(|d| !set.contains(d)) {
                if let Some(e) = self.entries.get_mut(d) {
                    e.anc_count -= 1;
                    e.anc_size -= size;
                    e.anc_fees -= fee;
                }
            }
        }
        for t in set {
            let Some(e) = self.entries.remove(t) else {
                continue;
            };
            self.by_desc_score.remove(&e.desc_key(*t));
            for i in &e.tx.inputs {
                if self.spenders.get(&i.prevout) == Some(t) {
                    self.spenders.remove(&i.prevout);
                }
            }
            self.total_bytes -= e.size as usize;
            self.usage -= entry_usage(&e.tx);
        }
    }

    fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<Txid> {
        if !self.entries.contains_key(txid) {
            return Vec::new();
        }
        let mut set = self.descendants(txid);
        set.insert(*txid);
        self.remove_set(&set);
        set.into_iter().collect()
    }

    /// Evicts the lowest descendant fee rate packages until the pool fits, raising the rolling
    /// minimum fee above what was evicted.
    fn trim(&mut self, now: u64) -> Vec<Txid> {
        let mut evicted = Vec::new();
        while self.usage > self.config.max_bytes {
            let Some((_, txid)) = self.by_desc_score.first().copied() else {
                break;
            };
            let Some(e) = self.entries.get(&txid) else {
                break;
            };
            let rate = e.desc_fees.div_ceil(e.desc_size.max(1));
            let new_min = rate + self.config.min_relay_fee_rate;
            if new_min > self.min_fee_rate(now) {
                self.rolling_min_fee = new_min;
                self.rolling_since = now;
            }
            evicted.extend(self.remove_with_descendants(&txid));
        }
        evicted
    }

    // ------------------------------------------------------------ orphans

    fn add_orphan(&mut self, tx: Arc<Transaction>, source: PeerTag, now: u64) {
        let txid = tx.txid();
        let size = tx.size();
        if self.orphans.contains_key(&txid)
            || size > self.config.max_tx_size
            || self.config.orphan_max_count == 0
        {
            return;
        }
        let from_peer = self.orphans.values().filter(|o| o.source == source).count();
        if from_peer >= self.config.orphan_max_per_peer {
            // The peer's oldest goes: one peer cannot crowd the others out.
            if let Some(old) = self
                .orphans
                .iter()
                .filter(|(_, o)| o.source == source)
                .min_by_key(|(_, o)| o.time)
                .map(|(t, _)| *t)
            {
                self.remove_orphan(&old);
            }
        }
        while self.orphans.len() >= self.config.orphan_max_count
            || self.orphan_bytes + size > self.config.orphan_max_bytes
        {
            let Some(old) = self
                .orphans
                .iter()
                .min_by_key(|(_, o)| o.time)
                .map(|(t, _)| *t)
            else {
                break;
            };
            self.remove_orphan(&old);
        }
        for i in &tx.inputs {
            let waiting = self.orphans_by_parent.entry(i.prevout.txid).or_default();
            if !waiting.contains(&txid) {
                waiting.push(txid);
            }
        }
        self.orphan_bytes += size;
        self.orphans.insert(
            txid,
            Orphan {
                tx,
                source,
                time: now,
                size,
            },
        );
    }

    fn remove_orphan(&mut self, txid: &Txid) -> Option<Orphan> {
        let o = self.orphans.remove(txid)?;
        self.orphan_bytes -= o.size;
        for i in &o.tx.inputs {
            if let Some(w) = self.orphans_by_parent.get_mut(&i.prevout.txid) {
                w.retain(|t| t != txid);
                if w.is_empty() {
                    self.orphans_by_parent.remove(&i.prevout.txid);
                }
            }
        }
        Some(o)
    }

    /// Retries the orphans waiting for any of `parents` (and, transitively, for what they unlock).
    fn retry_orphans(
        &mut self,
        parents: Vec<Txid>,
        chain: &impl UtxoView,
        tip_height: u64,
        now: u64,
        outcome: &mut AcceptOutcome,
    ) {
        let mut queue = parents;
        while let Some(parent) = queue.pop() {
            let Some(waiting) = self.orphans_by_parent.get(&parent).cloned() else {
                continue;
            };
            for t in waiting {
                let Some(o) = self.remove_orphan(&t) else {
                    continue;
                };
                let p = match precheck((*o.tx).clone(), chain, &self.params, &self.config) {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                match self.accept_one(p, chain, tip_height, now, outcome) {
                    Ok(()) => queue.push(t),
                    Err(MempoolError::MissingInputs { .. }) => {
                        self.add_orphan(o.tx, o.source, o.time)
                    }
                    Err(_) => {}
                }
            }
        }
    }

    // ------------------------------------------------------------ chain events

    /// A block was connected at `new_height`: its transactions leave the pool, and so does
    /// everything that conflicts with them (with descendants). Orphans waiting for its
    /// transactions are retried. Returns the removed txids.
    pub fn block_connected(
        &mut self,
        block: &Block,
        chain_after: &impl UtxoView,
        new_height: u64,
        now: u64,
    ) -> Vec<Txid> {
        let mut removed = Vec::new();
        let mut min_rate: Option<u64> = None;
        let mut confirmed = Vec::new();
        for tx in block.transactions.iter().skip(1) {
            let txid = tx.txid();
            confirmed.push(txid);
            if let Some(e) = self.entries.get(&txid) {
                let rate = e.fee / u64::from(e.size.max(1));
                min_rate = Some(min_rate.map_or(rate, |m| m.min(rate)));
                let one: HashSet<Txid> = [txid].into();
                self.remove_set(&one);
                removed.push(txid);
            }
            for i in &tx.inputs {
                if let Some(s) = self.spenders.get(&i.prevout).copied()
                    && s != txid
                {
                    removed.extend(self.remove_with_descendants(&s));
                }
            }
        }
        let full = block.size() * 100 >= self.params.max_block_size * FULL_BLOCK_PERCENT;
        self.estimator.record(BlockFees { min_rate, full });
        let mut outcome = AcceptOutcome::default();
        self.retry_orphans(confirmed, chain_after, new_height, now, &mut outcome);
        removed
    }

    /// Blocks were disconnected (oldest first): their transactions come back, in order, ahead
    /// of what the pool held, and everything is re-validated against `chain_after` (the chain
    /// after the whole reorganisation). Signatures are not checked again: they were valid
    /// and do not depend on the chain.
    pub fn blocks_disconnected(
        &mut self,
        blocks: &[Arc<Block>],
        chain_after: &impl UtxoView,
        tip_height: u64,
        now: u64,
    ) {
        let old: Vec<(Arc<Transaction>, u64)> = self
            .txids()
            .iter()
            .filter_map(|t| {
                self.entries
                    .get(t)
                    .map(|e| (Arc::clone(&e.tx), u64::from(e.time)))
            })
            .collect();
        self.entries.clear();
        self.spenders.clear();
        self.by_desc_score.clear();
        self.total_bytes = 0;
        self.usage = 0;
        let back = blocks.iter().flat_map(|b| {
            b.transactions
                .iter()
                .skip(1)
                .map(|t| (Arc::new(t.clone()), now))
        });
        let mut outcome = AcceptOutcome::default();
        for (tx, time) in back.chain(old) {
            let Ok(mut p) = precheck_trusted(&tx, &self.params, &self.config) else {
                continue;
            };
            p.trusted = true;
            if self
                .accept_one(p, chain_after, tip_height, time, &mut outcome)
                .is_err()
            {
                continue;
            }
        }
    }

    pub fn block_disconnected(
        &mut self,
        block: &Arc<Block>,
        chain_after: &impl UtxoView,
        tip_height: u64,
        now: u64,
    ) {
        self.blocks_disconnected(std::slice::from_ref(block), chain_after, tip_height, now);
    }

    /// Drops transactions older than `expiry_secs` (with descendants) and stale orphans.
    pub fn expire(&mut self, now: u64) -> Vec<Txid> {
        let cutoff = now.saturating_sub(self.config.expiry_secs);
        let old: Vec<Txid> = self
            .entries
            .iter()
            .filter(|(_, e)| u64::from(e.time) < cutoff)
            .map(|(t, _)| *t)
            .collect();
        let mut removed = Vec::new();
        for t in old {
            removed.extend(self.remove_with_descendants(&t));
        }
        let orphan_cutoff = now.saturating_sub(self.config.orphan_expiry_secs);
        let stale: Vec<Txid> = self
            .orphans
            .iter()
            .filter(|(_, o)| o.time < orphan_cutoff)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.remove_orphan(&t);
        }
        removed
    }

    // ------------------------------------------------------------ mining and fees

    /// The best transactions for a block of at most `max_bytes`, by ancestor fee rate: a
    /// package (a transaction with its not-yet-selected ancestors) is taken whole, so a child
    /// pays for its parent. Parents always precede children.
    pub fn block_template(&self, max_bytes: usize) -> Template {
        let mut heap: BinaryHeap<(u64, Txid)> = self
            .entries
            .iter()
            .map(|(t, e)| (score(e.anc_fees, e.anc_size), *t))
            .collect();
        // Remaining package (size, fees) of entries whose ancestors were partly selected.
        let mut modified: HashMap<Txid, (u64, u64)> = HashMap::new();
        let mut included: HashSet<Txid> = HashSet::new();
        let mut t = Template::default();
        let mut fees = 0u64;
        let mut misses = 0usize;
        while let Some((s, txid)) = heap.pop() {
            if included.contains(&txid) {
                continue;
            }
            let Some(e) = self.entries.get(&txid) else {
                continue;
            };
            let (psize, pfees) = modified
                .get(&txid)
                .copied()
                .unwrap_or((e.anc_size, e.anc_fees));
            if s != score(pfees, psize) {
                continue; // a stale heap entry; the fresh one is in the heap
            }
            if t.total_bytes + psize as usize > max_bytes {
                misses += 1;
                if misses > MAX_TEMPLATE_MISSES && t.total_bytes + TEMPLATE_NEARLY_FULL > max_bytes
                {
                    break;
                }
                continue;
            }
            let parents = self.parents(&e.tx);
            let ancestors = self
                .ancestors_from(&parents, usize::MAX)
                .unwrap_or_default();
            let mut package: Vec<(u32, Txid)> = ancestors
                .into_iter()
                .filter(|a| !included.contains(a))
                .map(|a| (self.entries[&a].anc_count, a))
                .collect();
            package.push((e.anc_count, txid));
            package.sort_unstable();
            for (_, p) in &package {
                let pe = &self.entries[p];
                included.insert(*p);
                t.txs.push(Arc::clone(&pe.tx));
                t.total_bytes += pe.size as usize;
                fees = fees.saturating_add(pe.fee);
            }
            for (_, p) in &package {
                for d in self.descendants(p) {
                    if included.contains(&d) {
                        continue;
                    }
                    let de = &self.entries[&d];
                    let dparents = self.parents(&de.tx);
                    let rest = self
                        .ancestors_from(&dparents, usize::MAX)
                        .unwrap_or_default();
                    let (mut sz, mut fe) = (u64::from(de.size), de.fee);
                    for a in rest.iter().filter(|a| !included.contains(a)) {
                        sz += u64::from(self.entries[a].size);
                        fe = fe.saturating_add(self.entries[a].fee);
                    }
                    modified.insert(d, (sz, fe));
                    heap.push((score(fe, sz), d));
                }
            }
        }
        t.total_fees = Amount(fees);
        t
    }

    /// Fee rate (base units per byte) for confirmation within `target_blocks`; see
    /// [`crate::estimator`] for the three rules.
    pub fn estimate_fee(&self, target_blocks: u32) -> u64 {
        let floor = self.rolling_min_fee.max(self.config.min_relay_fee_rate);
        let capacity = self
            .params
            .max_block_size
            .saturating_mul(target_blocks.max(1) as usize);
        let pool_rate = if self.total_bytes <= capacity {
            0
        } else {
            let mut by_rate: Vec<(u64, u32, u64, u64)> = self
                .entries
                .values()
                .map(|e| {
                    (
                        score(e.anc_fees, e.anc_size),
                        e.size,
                        e.anc_fees,
                        e.anc_size,
                    )
                })
                .collect();
            by_rate.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            let mut used = 0usize;
            let mut rate = 0;
            for (_, size, f, s) in by_rate {
                used += size as usize;
                if used > capacity {
                    rate = f.div_ceil(s.max(1)) + 1;
                    break;
                }
            }
            rate
        };
        floor.max(pool_rate).max(self.estimator.recent_full_rate())
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

/// Context-free checks only, for transactions whose signatures were already verified.
fn precheck_trusted(
    tx: &Arc<Transaction>,
    params: &ChainParams,
    config: &MempoolConfig,
) -> Result<Prechecked, MempoolError> {
    let txid = tx.txid();
    if tx.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase { txid }.into());
    }
    let outputs_total = check_transaction(tx, txid, params)?;
    let size = tx.size();
    if size > config.max_tx_size {
        return Err(MempoolError::TooLarge {
            size,
            limit: config.max_tx_size,
        });
    }
    Ok(Prechecked {
        tx: Arc::clone(tx),
        txid,
        size,
        outputs_total,
        verified: vec![None; tx.inputs.len()],
        trusted: true,
    })
}
