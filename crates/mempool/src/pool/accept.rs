//! Acceptance: every rule a transaction must pass against the pool and the chain, and the
//! bookkeeping (aggregates, indexes, eviction) that keeps the pool consistent as it changes.

use std::collections::HashSet;
use std::sync::Arc;

use cairn_consensus::rules::tx::{coinbase_is_mature, lock_time_is_final};
use cairn_consensus::{Coin, ConsensusError, UtxoView};
use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{Amount, Transaction, Txid};

use super::precheck::{Prechecked, precheck};
use super::{
    AcceptOutcome, AcceptedTx, Checked, Entry, LOCAL, Mempool, PeerTag, TestAccept, entry_usage,
};
use crate::MempoolError;

impl Mempool {
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

    pub(super) fn accept_one(
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
    pub(super) fn remove_set(&mut self, set: &HashSet<Txid>) {
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

    pub(super) fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<Txid> {
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
}
