//! The in-memory UTXO cache: a bounded, write-through, LRU-ish map from outpoint to coin.
//!
//! RocksDB always holds the complete UTXO set (every block connect is one atomic batch), so the
//! cache is only an accelerator: losing it loses nothing. It is updated after a batch commits,
//! never before, so it can never hold a coin the database does not.
//!
//! Eviction is generational (a cheap approximation of LRU): entries live in a `hot` map; when it
//! fills half the budget, it becomes the `cold` map and the old cold map is dropped. A hit in
//! `cold` moves the entry back to `hot`. Recently created or read coins therefore survive at
//! least one generation, and memory stays within the budget.

use std::collections::HashMap;

use cairn_consensus::Coin;
use cairn_primitives::OutPoint;

/// Approximate bytes one entry costs: key, value and hash-map overhead.
pub const CACHE_ENTRY_BYTES: usize =
    std::mem::size_of::<OutPoint>() + std::mem::size_of::<Coin>() + 32;

/// A bounded write-through UTXO cache.
#[derive(Debug)]
pub struct UtxoCache {
    hot: HashMap<OutPoint, Coin>,
    cold: HashMap<OutPoint, Coin>,
    /// Entries per generation.
    generation_entries: usize,
    hits: u64,
    misses: u64,
}

impl UtxoCache {
    /// A cache using at most about `max_bytes` (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            hot: HashMap::new(),
            cold: HashMap::new(),
            generation_entries: max_bytes / CACHE_ENTRY_BYTES / 2,
            hits: 0,
            misses: 0,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.generation_entries > 0
    }

    /// The cached coin, refreshing its age.
    pub fn get(&mut self, op: &OutPoint) -> Option<Coin> {
        if let Some(c) = self.hot.get(op) {
            self.hits += 1;
            return Some(*c);
        }
        if let Some(c) = self.cold.remove(op) {
            self.hits += 1;
            self.insert(*op, c);
            return Some(c);
        }
        self.misses += 1;
        None
    }

    /// Records a coin that the database now holds.
    pub fn insert(&mut self, op: OutPoint, coin: Coin) {
        if !self.is_enabled() {
            return;
        }
        if self.hot.len() >= self.generation_entries {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(op, coin);
    }

    /// Forgets a coin the database no longer holds.
    pub fn remove(&mut self, op: &OutPoint) {
        self.hot.remove(op);
        self.cold.remove(op);
    }

    /// Drops everything (after a failed write, when the cache may disagree with the database).
    pub fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes in use.
    pub fn bytes(&self) -> usize {
        self.len() * CACHE_ENTRY_BYTES
    }

    /// (hits, misses) since creation.
    pub fn hit_stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_primitives::{Amount, TxOut, Txid, XOnlyPublicKey};

    fn op(i: u32) -> OutPoint {
        OutPoint::new(Txid([1; 32]), i)
    }
    fn coin() -> Coin {
        Coin {
            output: TxOut {
                value: Amount(1),
                pubkey: XOnlyPublicKey([2; 32]),
            },
            height: 1,
            coinbase: false,
        }
    }

    #[test]
    fn bounded_and_recent_entries_survive() {
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 20);
        for i in 0..1000 {
            c.insert(op(i), coin());
            assert!(c.bytes() <= CACHE_ENTRY_BYTES * 20);
        }
        assert!(c.get(&op(999)).is_some());
        assert!(c.get(&op(0)).is_none());
        c.remove(&op(999));
        assert!(c.get(&op(999)).is_none());
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let mut c = UtxoCache::new(0);
        c.insert(op(1), coin());
        assert!(c.is_empty());
    }
}
