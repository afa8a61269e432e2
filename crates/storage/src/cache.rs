//! The UTXO cache, as Bitcoin Core's `CCoinsViewCache` with `-dbcache`: the working set of the
//! UTXO set in memory, written to RocksDB only when it is flushed.
//!
//! Connecting a block changes only the cache (and writes its undo data, height index and tip in
//! the block's own batch). Coins created and spent between two flushes never touch the disk
//! (`fresh`). A flush writes every changed (`dirty`) entry in batches of a bounded size (as
//! Core's `-dbbatchsize`), then `meta/utxo_tip`, the block the UTXO column family then
//! reflects. After a crash, the blocks from `utxo_tip` to the tip are applied again from their
//! undo data (see `ChainState::open`), so nothing is lost: the undo data of every connected
//! block is written with the block. Applying them again is idempotent (as Core's
//! `ReplayBlocks`): a flush the crash cut short may have written some of their changes, so a
//! replayed coin is never taken for one the disk lacks, and its later spend writes a deletion.
//!
//! The cache is bounded by its byte budget, counted as the hash table's real footprint (every
//! bucket, full or not): it is flushed and emptied before the table would grow past it.
//!
//! Readers on other threads share it behind a lock (see [`crate::ChainReader`]): the chain task
//! holds the write lock while it commits a block and updates the cache, so a reader sees the
//! cache and a database snapshot of the same tip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_consensus::Coin;
use cairn_primitives::OutPoint;

/// Approximate bytes one entry costs in a full table: key, value, flags and hash-map overhead.
/// Bounds the entry count (what matters for tiny budgets); the table's footprint
/// ([`UtxoCache::bytes`]) bounds the memory.
pub const CACHE_ENTRY_BYTES: usize =
    std::mem::size_of::<OutPoint>() + std::mem::size_of::<Entry>() + 24;
/// Bytes one bucket of the table costs, full or empty: key, entry and the control byte.
const BUCKET_BYTES: usize = std::mem::size_of::<(OutPoint, Entry)>() + 1;
/// Entries one block may add between two flush checks: a 1 MB block holds at most ~25,000
/// outputs (40 bytes each) and fewer inputs. The table must take them without growing past
/// the budget.
pub const BLOCK_ENTRIES_HEADROOM: usize = 32_768;

/// The most entries a table within `max_bytes` holds (see [`table_bytes`]).
fn largest_capacity(max_bytes: usize) -> usize {
    let buckets = max_bytes / BUCKET_BYTES;
    if buckets < 8 {
        return 0;
    }
    // The largest power of two at most `buckets`, 7/8 of it full.
    let buckets = 1usize << (usize::BITS - 1 - buckets.leading_zeros());
    buckets / 8 * 7
}

/// The footprint of a table holding `capacity` entries: hashbrown fills at most 7/8 of its
/// buckets, a power of two of them.
fn table_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    (capacity * 8 / 7).next_power_of_two() * BUCKET_BYTES
}

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
    max_bytes: usize,
    max_entries: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl UtxoCache {
    /// A cache using at most about `max_bytes`. With 0, every change is flushed with its block.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_bytes,
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
        self.put(op, coin, fresh);
    }

    /// A block applied again after a restart created `coin`: never fresh, as a flush cut short
    /// by the crash may have written it already (so a later spend writes its deletion).
    pub(crate) fn recreate(&mut self, op: OutPoint, coin: Coin) {
        self.put(op, coin, false);
    }

    fn put(&mut self, op: OutPoint, coin: Coin, fresh: bool) {
        self.map.insert(
            op,
            Entry {
                coin: Some(coin),
                dirty: true,
                fresh,
            },
        );
    }

    /// After a flush failed part way: the database may now hold any coin created since the
    /// last complete flush, so none is fresh any more.
    pub(crate) fn disk_may_hold_all(&mut self) {
        for e in self.map.values_mut() {
            e.fresh = false;
        }
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

    /// Whether the cache must be flushed now (always, when it has changes and no budget): it
    /// holds more entries than the budget allows, or the next block may make the table grow
    /// past the budget. Growing doubles the table and keeps the old one until its entries are
    /// moved, three times the table for a moment; a flush empties the table and keeps its
    /// buckets, so it never grows.
    pub fn needs_flush(&self) -> bool {
        let may_grow = self.map.len() + BLOCK_ENTRIES_HEADROOM > self.map.capacity();
        self.map.len() > self.max_entries || (may_grow && self.bytes() * 3 > self.max_bytes)
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
    /// flush for room, and at shutdown).
    ///
    /// A table that was about to double into its largest size within the budget is replaced
    /// by one of that size: freed first, so the old and the new never coexist (growing would
    /// have held both, past the budget), and the cache can fill it without growing again.
    pub(crate) fn flushed(&mut self) {
        self.map.clear();
        let largest = largest_capacity(self.max_bytes);
        if largest > self.map.capacity() && self.map.capacity() * 2 >= largest {
            self.map = HashMap::new();
            self.map.reserve(largest);
        }
    }

    /// After a flush committed that was not for room (every [`UTXO_FLUSH_MAX_BLOCKS`] blocks,
    /// before a disconnect): the unspent coins stay, now equal to the database, so the next
    /// blocks still find their inputs here (as Bitcoin Core's `Sync`, which writes without
    /// erasing).
    ///
    /// [`UTXO_FLUSH_MAX_BLOCKS`]: crate::config::UTXO_FLUSH_MAX_BLOCKS
    pub(crate) fn flushed_keeping_coins(&mut self) {
        self.map.retain(|_, e| e.coin.is_some());
        for e in self.map.values_mut() {
            e.dirty = false;
            e.fresh = false;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the table holds, every bucket counted, full or empty.
    pub fn bytes(&self) -> usize {
        table_bytes(self.map.capacity())
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
    fn a_replayed_or_partly_flushed_coin_is_deleted_when_spent() {
        // After a crash the disk may hold a coin a replayed block created.
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 100);
        c.recreate(op(1), coin());
        c.spend(op(1));
        assert_eq!(c.lookup(&op(1)), Lookup::Spent);
        assert_eq!(c.dirty_entries().collect::<Vec<_>>(), vec![(&op(1), None)]);
        // After a flush failed part way, the disk may hold any coin created since the last.
        c.create(op(2), coin());
        c.disk_may_hold_all();
        c.spend(op(2));
        assert_eq!(c.lookup(&op(2)), Lookup::Spent);
        assert_eq!(c.dirty_entries().count(), 2);
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
    fn the_table_never_grows_past_the_budget_between_flush_checks() {
        for budget in [1 << 20, 8 << 20, 64 << 20] {
            let mut c = UtxoCache::new(budget);
            let mut n = 0u32;
            let mut flushes = 0;
            // Blocks of 1,000 new coins, a flush check after each, as the chain does.
            for _ in 0..1_000 {
                if c.needs_flush() {
                    c.flushed();
                    flushes += 1;
                }
                for _ in 0..1_000 {
                    c.create(OutPoint::new(Txid([n as u8; 32]), n), coin());
                    n += 1;
                }
                // The table within budget, and the moment it grew (old and new together) too:
                // it grows only below half the budget.
                assert!(c.bytes() <= budget, "{} of {budget}", c.bytes());
                if c.bytes() * 2 > budget {
                    assert!(
                        flushes > 0,
                        "grew into the largest size instead of replacing"
                    );
                }
            }
            assert!(flushes > 0, "budget {budget}: never flushed");
            assert!(c.bytes() <= budget);
            // After the first flush for room the table has its largest size within the budget.
            assert!(c.bytes() * 2 > budget, "{} of {budget}", c.bytes());
        }
    }

    #[test]
    fn budget_and_zero_budget() {
        let mut c = UtxoCache::new(CACHE_ENTRY_BYTES * 2);
        c.create(op(1), coin());
        c.create(op(2), coin());
        c.create(op(3), coin());
        assert!(c.needs_flush());
        c.flushed();
        assert!(c.is_empty());
        // Written without erasing: the coins stay, clean, and the spent entries go.
        c.create(op(1), coin());
        c.add_clean(op(2), coin());
        c.spend(op(2));
        c.flushed_keeping_coins();
        assert_eq!(c.lookup(&op(1)), Lookup::Unspent(coin()));
        assert_eq!(c.lookup(&op(2)), Lookup::Unknown);
        assert!(!c.is_dirty());
        // A coin kept is on disk now: spending it leaves a deletion.
        c.spend(op(1));
        assert_eq!(c.dirty_entries().collect::<Vec<_>>(), vec![(&op(1), None)]);
        let mut z = UtxoCache::new(0);
        z.add_clean(op(1), coin());
        assert!(z.is_empty());
        z.create(op(1), coin());
        assert!(z.needs_flush());
    }
}
