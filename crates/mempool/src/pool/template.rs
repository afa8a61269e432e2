//! Mining and fees: choosing the next block's transactions and the fee rate to pay, both by
//! ancestor fee rate so a child pays for its parent.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use cairn_primitives::{Amount, Txid};

use super::{Mempool, Template, score};

/// A template stops looking once this many packages in a row did not fit a nearly full block.
pub const MAX_TEMPLATE_MISSES: usize = 1_000;
/// "Nearly full": less than this many bytes left.
pub const TEMPLATE_NEARLY_FULL: usize = 4_000;

impl Mempool {
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
}
