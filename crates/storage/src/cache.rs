//! The UTXO cache, as Bitcoin Core's `CCoinsViewCache` with `-dbcache`: the working set of the
//! UTXO set in memory, written to RocksDB only when it is flushed.
//!
//! Connecting a block changes only the cache (and writes its undo data, height index and tip in
//! the block's own batch). Coins created and spent between two flushes never touch the disk
//! (`fresh`). A flush writes every changed (`dirty`) entry and `meta/utxo_tip`, the block the
//! UTXO column family then reflects, in one atomic batch. After a crash, the blocks from
//! `utxo_tip` to the tip are applied again from their undo data (see `ChainState::open`), so
//! nothing is lost: the undo data of every connected block is written with the block.
//!
//! The cache is bounded by its byte budget: over it, it is flushed and emptied.
//!
//! Readers on other threads share it behind a lock (see [`crate::ChainReader`]): the chain task
//! holds the write lock while it commits a block and updates the cache, so a reader sees the
//! cache and a database snapshot of the same tip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_consensus::Coin;
use cairn_primitives::OutPoint;

/// Approximate bytes one entry costs: key, value, flags and hash-map overhead.
pub const CACHE_ENTRY_BYTES: usize =
    std::mem::size_of::<OutPoint>() + std::mem::size_of::<Entry>() + 24;

/// What the cache knows about an outpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Unspent(Coin),
    /// Spent since the last flush (the database may still hold it).
    Spent,
    /// Not in the cache: ask the database.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// `None`: spent.
    coin: Option<Coin>,
    /// Differs from the database.
    dirty: bool,
    /// The database does not hold it: if spent before a flush, it is simply forgotten.
    fresh: bool,
}

/// A bounded write-back UTXO cache.
#[derive(Debug)]
pub struct UtxoCache {
    map: HashMap<OutPoint, Entry>,
    max_entries: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl UtxoCache {
    /// A cache using at most about `max_bytes`. With 0, every change is flushed with its block.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_entries: max_bytes / CACHE_ENTRY_BYTES,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn lookup(&self, op: &OutPoint) -> Lookup {
        match self.map.get(op) {
            Some(e) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                match e.coin {
                    Some(c) => Lookup::Unspent(c),
                    None => Lookup::Spent,
                }
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Unknown
            }
        }
    }

    /// Records a coin just read from the database (unchanged).
    pub(crate) fn add_clean(&mut self, op: OutPoint, coin: Coin) {
        if self.max_entries > 0 {
            self.map.entry(op).or_insert(Entry {
                coin: Some(coin),
                dirty: false,
                fresh: false,
            });
        }
    }

    /// A connected block created `coin`.
    pub(crate) fn create(&mut self, op: OutPoint, coin: Coin) {
        // A spent entry still to be deleted on disk is not fresh: the disk holds the coin.
        let fresh = !matches!(self.map.get(&op), Some(e) if e.dirty && e.coin.is_none());
        self.map.insert(
            op,
            Entry {
                coin: Some(coin),
                dirty: true,
                fresh,
            },
        );
    }

    /// A connected block spent the coin at `op`.
    pub(crate) fn spend(&mut self, op: OutPoint) {
        match self.map.get_mut(&op) {
            Some(e) if e.fresh => {
                self.map.remove(&op);
            }
            Some(e) => {
                e.coin = None;
                e.dirty = true;
            }
            None => {
                self.map.insert(
                    op,
                    Entry {
                        coin: None,
                        dirty: true,
                        fresh: false,
                    },
                );
            }
        }
    }

    /// Forgets `op` (a disconnect wrote it straight to the database after a flush).
    pub(crate) fn forget(&mut self, op: &OutPoint) {
        self.map.remove(op);
    }

    /// Whether the cache is over its budget (always, when it has changes and no budget).
    pub fn needs_flush(&self) -> bool {
        self.map.len() > self.max_entries
    }

    /// Whether anything differs from the database.
    pub fn is_dirty(&self) -> bool {
        self.map.values().any(|e| e.dirty)
    }

    /// The changes a flush writes: (outpoint, `Some(coin)` to put / `None` to delete).
    pub(crate) fn dirty_entries(&self) -> impl Iterator<Item = (&OutPoint, Option<&Coin>)> {
        self.map
            .iter()
            .filter(|(_, e)| e.dirty)
            .map(|(op, e)| (op, e.coin.as_ref()))
    }

    /// After a flush committed: the database holds everything, so the cache is emptied (a
    /// flush happens when it is full, or before a disconnect and at shutdown).
    pub(crate) fn flushed(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate bytes in use.
    pub fn bytes(&self) -> usize {
        self.map.len() * CACHE_ENTRY_BYTES
    }

    /// (hits, misses) since creation.
    pub fn hit_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
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
    fn fresh_coins_spent_before_a_flush_never_reach_the_disk() {
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 100);
        c.create(op(1), coin());
        c.spend(op(1));
        assert_eq!(c.lookup(&op(1)), Lookup::Unknown);
        assert_eq!(c.dirty_entries().count(), 0);
    }

    #[test]
    fn spending_a_disk_coin_leaves_a_deletion() {
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 100);
        c.add_clean(op(2), coin());
        assert_eq!(c.dirty_entries().count(), 0);
        c.spend(op(2));
        assert_eq!(c.lookup(&op(2)), Lookup::Spent);
        let d: Vec<_> = c.dirty_entries().collect();
        assert_eq!(d, vec![(&op(2), None)]);
        // Spent without having been read: still a deletion.
        c.spend(op(3));
        assert_eq!(c.dirty_entries().count(), 2);
        // Re-created over a pending deletion (a reorg): a put, not fresh.
        c.create(op(3), coin());
        c.spend(op(3));
        assert_eq!(c.lookup(&op(3)), Lookup::Spent);
    }

    #[test]
    fn budget_and_zero_budget() {
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 2);
        c.create(op(1), coin());
        c.create(op(2), coin());
        assert!(!c.needs_flush());
        c.create(op(3), coin());
        assert!(c.needs_flush());
        c.flushed();
        assert!(c.is_empty());
        let mut z = UtxoCache::new(0);
        z.add_clean(op(1), coin());
        assert!(z.is_empty());
        z.create(op(1), coin());
        assert!(z.needs_flush());
    }
}
