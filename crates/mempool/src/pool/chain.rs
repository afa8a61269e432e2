//! Chain events: what a connected or disconnected block does to the pool, so it stays valid on
//! top of the new tip, and expiry of what has waited too long.

use std::collections::HashSet;
use std::sync::Arc;

use cairn_consensus::UtxoView;
use cairn_primitives::{Block, Transaction, Txid};

use super::precheck::precheck_trusted;
use super::{AcceptOutcome, Mempool};
use crate::estimator::{BlockFees, FULL_BLOCK_PERCENT};

impl Mempool {
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
}
