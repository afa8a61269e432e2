//! The orphan pool: transactions whose parents are not known yet, bounded per peer and in
//! total so no peer can fill it, and retried when a parent arrives.

use std::sync::Arc;

use cairn_consensus::UtxoView;
use cairn_primitives::{Transaction, Txid};

use super::precheck::precheck;
use super::{AcceptOutcome, Mempool, Orphan, PeerTag};
use crate::MempoolError;

impl Mempool {
    pub(super) fn add_orphan(&mut self, tx: Arc<Transaction>, source: PeerTag, now: u64) {
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

    pub(super) fn remove_orphan(&mut self, txid: &Txid) -> Option<Orphan> {
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
    pub(super) fn retry_orphans(
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
}
