//! Reads for the RPC, the mempool and the network, from any thread, never waiting for the
//! chain task: each call reads one RocksDB snapshot, so it sees the state between two batches,
//! never half of one.

use std::sync::{Arc, RwLock};

use cairn_consensus::rules::header::median_time_past;
use cairn_consensus::{ChainParams, ChainWork, Coin, MEDIAN_TIME_SPAN, UtxoView};
use cairn_primitives::{
    Amount, Block, BlockHash, BlockHeader, OutPoint, Transaction, Txid, XOnlyPublicKey,
};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, Snapshot};

use crate::cache::{Lookup, UtxoCache};
use crate::chain::ChainTip;
use crate::chain::read_lock;
use crate::config::INDEX_READ_WAIT;
use crate::config::{
    LOCATOR_DENSE_ENTRIES, MAX_HEADERS_PER_REQUEST, MAX_MISSING_BLOCKS_PER_REQUEST,
    MAX_MISSING_BLOCKS_SCAN,
};
use crate::digest::UtxoStats;
use crate::error::{StorageError, StorageResult};
use crate::index::{IndexProgress, IndexShared};
use crate::schema::*;
use crate::store::cf;
use crate::timings::ConnectTimingsSnapshot;

/// Bytes of memory the chain state holds ([`ChainReader::memory_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The UTXO cache's hash table, every bucket counted (what `--dbcache` bounds).
    pub utxo_cache: u64,
    /// RocksDB memtables of every column family, active and waiting to be written.
    pub memtables: u64,
    /// RocksDB's block cache (shared by every column family).
    pub block_cache: u64,
    /// RocksDB's SST index and filter blocks held outside the block cache.
    pub table_readers: u64,
}

/// The tip `(height, hash)` a batch of coins was read at, and the coins (input order).
pub type CoinsAtTip = ((u64, BlockHash), Vec<Option<Coin>>);
/// An address's unspent outputs and the tip `(height, hash)` they were read at.
pub type AddressCoinsAtTip = ((u64, BlockHash), Vec<(OutPoint, Coin)>);

/// What is known about one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub hash: BlockHash,
    pub header: BlockHeader,
    pub height: u64,
    pub chain_work: ChainWork,
    pub status: BlockStatus,
    /// Empty unless the block is invalid.
    pub invalid_reason: String,
    pub is_on_main_chain: bool,
    /// Main-chain blocks from this one to the tip, both included (0 off the main chain), read
    /// in the same snapshot as the rest, so it can never underflow.
    pub confirmations: u64,
}

/// A confirmed transaction and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    pub tx: Transaction,
    pub block_hash: BlockHash,
    pub height: u64,
    /// Position in the block (0: the coinbase).
    pub index: u32,
    /// Main-chain blocks from its block to the tip, both included, from the same snapshot.
    pub confirmations: u64,
}

/// What a miner needs to build the next block on the tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTemplateContext {
    /// Height of the block to build.
    pub height: u64,
    pub prev_hash: BlockHash,
    /// Compact target the block must carry.
    pub bits: u32,
    /// Smallest valid time (median time past of the tip + 1).
    pub min_time: u64,
    /// Time of the tip.
    pub prev_time: u64,
}

/// One raw index entry: column family, key, value (see [`ChainReader::index_dump`]).
#[cfg(any(test, feature = "test-utils"))]
pub type IndexEntryDump = (&'static str, Vec<u8>, Vec<u8>);

/// A cloneable, thread-safe read handle on the chain database.
#[derive(Clone)]
pub struct ChainReader {
    db: Arc<DB>,
    params: Arc<ChainParams>,
    indexes: Arc<IndexShared>,
    /// The chain's UTXO cache: coins changed since the last flush are only there.
    cache: Arc<RwLock<UtxoCache>>,
}

impl std::fmt::Debug for ChainReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainReader")
            .field("chain", &self.params.chain_id)
            .finish_non_exhaustive()
    }
}

/// One consistent view: a snapshot and the read options pointing at it.
pub(crate) struct View<'a> {
    db: &'a DB,
    snap: Snapshot<'a>,
}

impl View<'_> {
    fn get(&self, name: &'static str, key: impl AsRef<[u8]>) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.snap.get_cf(cf(self.db, name)?, key)?)
    }

    fn tip(&self) -> StorageResult<TipRecord> {
        let b = self
            .get(CF_META, MetaKey::Tip.key())?
            .ok_or_else(|| StorageError::corrupt("tip", "meta", "missing"))?;
        decode_value("tip", "meta", &b)
    }

    fn index_tip(&self) -> StorageResult<TipRecord> {
        let b = self
            .get(CF_META, MetaKey::IndexTip.key())?
            .ok_or_else(|| StorageError::corrupt("index tip", "meta", "missing"))?;
        decode_value("index tip", "meta", &b)
    }

    fn header(&self, hash: &BlockHash) -> StorageResult<Option<HeaderRecord>> {
        self.get(CF_HEADERS, hash.0)?
            .map(|b| decode_value("header record", hash, &b))
            .transpose()
    }

    fn hash_at(&self, name: &'static str, height: u64) -> StorageResult<Option<BlockHash>> {
        self.get(name, height_key(height))?
            .map(|b| decode_hash("block hash", format!("{name} {height}"), &b))
            .transpose()
    }

    fn read_opts(&self) -> ReadOptions {
        let mut o = ReadOptions::default();
        o.set_snapshot(&self.snap);
        o
    }

    /// Keys and values of `name` starting with `prefix`, in key order.
    fn prefix_scan(
        &self,
        name: &'static str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let it = self.db.iterator_cf_opt(
            cf(self.db, name)?,
            self.read_opts(),
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v)?;
        }
        Ok(())
    }

    fn median_time_past(&self, hash: &BlockHash) -> StorageResult<Option<u64>> {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = *hash;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(r) = self.header(&cur)? else {
                if times.is_empty() {
                    return Ok(None);
                }
                return Err(StorageError::corrupt("header", cur, "ancestor missing"));
            };
            times.push(r.header.time);
            if r.height == 0 {
                break;
            }
            cur = r.header.prev_hash;
        }
        Ok(Some(median_time_past(&times)))
    }
}

impl ChainReader {
    pub(crate) fn new(
        db: Arc<DB>,
        params: Arc<ChainParams>,
        indexes: Arc<IndexShared>,
        cache: Arc<RwLock<UtxoCache>>,
    ) -> Self {
        Self {
            db,
            params,
            indexes,
            cache,
        }
    }

    fn view(&self) -> View<'_> {
        View {
            db: &self.db,
            snap: self.db.snapshot(),
        }
    }

    /// A view in which the indexes cover the tip. While they catch up (after a sync), waits up
    /// to [`INDEX_READ_WAIT`] for them, then reports how far they are rather than answering
    /// from a partial index.
    pub(crate) fn indexed_view(&self) -> StorageResult<View<'_>> {
        self.indexed_view_after(true)
    }

    /// [`ChainReader::indexed_view`], waiting for the indexes only if `wait`: without it, a
    /// lagging index is reported at once (for callers on an async worker, which must not
    /// block).
    fn indexed_view_after(&self, wait: bool) -> StorageResult<View<'_>> {
        let mut waited = !wait;
        loop {
            let v = self.view();
            let tip = v.tip()?;
            let index_tip = v.index_tip()?;
            if tip == index_tip {
                return Ok(v);
            }
            if let Some(reason) = self.indexes.failure() {
                return Err(StorageError::IndexFailed {
                    indexed: index_tip.height,
                    reason,
                });
            }
            if waited {
                return Err(StorageError::IndexBehind {
                    indexed: index_tip.height,
                    tip: tip.height,
                });
            }
            drop(v);
            self.indexes.wait_caught_up(INDEX_READ_WAIT);
            waited = true;
        }
    }

    /// A snapshot in which the indexes cover the tip (see [`ChainReader::indexed_view`]).
    pub(crate) fn indexed_snapshot(&self) -> StorageResult<Snapshot<'_>> {
        Ok(self.indexed_view()?.snap)
    }

    /// Test hook: every entry of the index column families, with the index tip, in key order
    /// (to compare indexes built in different ways).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn index_dump(&self) -> StorageResult<Vec<IndexEntryDump>> {
        let v = self.view();
        let mut out = vec![(
            CF_META,
            MetaKey::IndexTip.key().to_vec(),
            v.get(CF_META, MetaKey::IndexTip.key())?.unwrap_or_default(),
        )];
        for name in INDEX_COLUMN_FAMILIES {
            v.prefix_scan(name, &[], |k, val| {
                out.push((name, k.to_vec(), val.to_vec()));
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// How far the transaction and address indexes are (`getindexinfo`).
    pub fn index_progress(&self) -> IndexProgress {
        self.indexes.progress()
    }

    /// Memory the chain state holds now: the UTXO cache's table and RocksDB's own (metrics,
    /// benchmarks; `--dbcache` bounds the first, `StorageConfig` the others).
    /// Waits for none of the chain's locks: `/metrics` reads it on the RPC's runtime.
    pub fn memory_usage(&self) -> StorageResult<MemoryUsage> {
        let property = |name: &'static str, p: &str| -> StorageResult<u64> {
            let handle = cf(&self.db, name)?;
            Ok(self.db.property_int_value_cf(handle, p)?.unwrap_or(0))
        };
        let mut usage = MemoryUsage {
            utxo_cache: self
                .indexes
                .utxo_cache_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            // One cache shared by every column family: read once.
            block_cache: property(CF_META, "rocksdb.block-cache-usage")?,
            ..MemoryUsage::default()
        };
        for name in COLUMN_FAMILIES {
            usage.memtables += property(name, "rocksdb.size-all-mem-tables")?;
            usage.table_readers += property(name, "rocksdb.estimate-table-readers-mem")?;
        }
        Ok(usage)
    }

    /// Where block-connect time went since the chain was opened (metrics, benchmarks).
    pub fn connect_timings(&self) -> ConnectTimingsSnapshot {
        self.indexes.timings.snapshot()
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The database, for the read functions of other modules (`explorer_index`).
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Height and hash of the main-chain tip.
    pub fn tip(&self) -> StorageResult<(u64, BlockHash)> {
        let t = self.view().tip()?;
        Ok((t.height, t.hash))
    }

    /// Height, hash and work of the best valid header (sync progress).
    pub fn best_header(&self) -> StorageResult<ChainTip> {
        let v = self.view();
        let b = v
            .get(CF_META, MetaKey::BestHeader.key())?
            .ok_or_else(|| StorageError::corrupt("best header", "meta", "missing"))?;
        let t: TipRecord = decode_value("best header", "meta", &b)?;
        let r = v
            .header(&t.hash)?
            .ok_or_else(|| StorageError::corrupt("header", t.hash, "best header missing"))?;
        Ok(ChainTip {
            height: t.height,
            hash: t.hash,
            chain_work: r.work(),
        })
    }

    /// Height, hash and work of the main-chain tip.
    pub fn tip_info(&self) -> StorageResult<ChainTip> {
        let v = self.view();
        let t = v.tip()?;
        let r = v
            .header(&t.hash)?
            .ok_or_else(|| StorageError::corrupt("header", t.hash, "tip header missing"))?;
        Ok(ChainTip {
            height: t.height,
            hash: t.hash,
            chain_work: r.work(),
        })
    }

    /// The main-chain block at `height`.
    pub fn block_hash(&self, height: u64) -> StorageResult<Option<BlockHash>> {
        self.view().hash_at(CF_HEIGHT, height)
    }

    pub fn header_info(&self, hash: &BlockHash) -> StorageResult<Option<HeaderInfo>> {
        let v = self.view();
        let Some(r) = v.header(hash)? else {
            return Ok(None);
        };
        let is_on_main_chain = v.hash_at(CF_HEIGHT, r.height)? == Some(*hash);
        let confirmations = if is_on_main_chain {
            confirmations(v.tip()?.height, r.height)
        } else {
            0
        };
        Ok(Some(HeaderInfo {
            confirmations,
            hash: *hash,
            header: r.header,
            height: r.height,
            chain_work: r.work(),
            status: r.status,
            invalid_reason: r.invalid_reason,
            is_on_main_chain,
        }))
    }

    /// The stored block (main chain or not).
    pub fn block(&self, hash: &BlockHash) -> StorageResult<Option<Block>> {
        self.block_bytes(hash)?
            .map(|b| decode_block(hash, &b))
            .transpose()
    }

    /// The stored block's canonical encoding (for serving peers without re-encoding).
    pub fn block_bytes(&self, hash: &BlockHash) -> StorageResult<Option<Vec<u8>>> {
        self.view().get(CF_BLOCKS, hash.0)
    }

    /// The coins a main-chain block spent, from its undo data (`None` once the block is
    /// disconnected): what explorers need for fees without looking up every parent transaction.
    pub fn block_spent_coins(
        &self,
        hash: &BlockHash,
    ) -> StorageResult<Option<Vec<(OutPoint, Coin)>>> {
        let Some(b) = self.view().get(CF_UNDO, hash.0)? else {
            return Ok(None);
        };
        let delta: cairn_consensus::BlockConnect = decode_value("undo data", hash, &b)?;
        Ok(Some(delta.spent))
    }

    /// Whether `txid` is in a main-chain block, from the transaction index alone (no block
    /// read). Never waits: while the indexes lag the tip it answers
    /// [`StorageError::IndexBehind`] at once, and the caller may ask [`ChainReader::transaction`],
    /// which waits.
    pub fn is_confirmed_now(&self, txid: &Txid) -> StorageResult<bool> {
        let v = self.indexed_view_after(false)?;
        Ok(v.get(CF_TX, txid.0)?.is_some())
    }

    /// A main-chain transaction and its location.
    pub fn transaction(&self, txid: &Txid) -> StorageResult<Option<TxInfo>> {
        let v = self.indexed_view()?;
        let Some(b) = v.get(CF_TX, txid.0)? else {
            return Ok(None);
        };
        let loc: TxLocation = decode_value("tx location", txid, &b)?;
        let bytes = v.get(CF_BLOCKS, loc.block_hash.0)?.ok_or_else(|| {
            StorageError::corrupt("block", loc.block_hash, "indexed block missing")
        })?;
        let block = decode_block(&loc.block_hash, &bytes)?;
        let tx = block
            .transactions
            .into_iter()
            .nth(loc.index as usize)
            .ok_or_else(|| StorageError::corrupt("tx location", txid, "index beyond the block"))?;
        Ok(Some(TxInfo {
            tx,
            block_hash: loc.block_hash,
            height: loc.height,
            index: loc.index,
            confirmations: confirmations(v.tip()?.height, loc.height),
        }))
    }

    /// The unspent output at `outpoint` (main chain tip).
    pub fn coin(&self, outpoint: &OutPoint) -> StorageResult<Option<Coin>> {
        let ((_, _), mut coins) = self.coins_at_tip(std::slice::from_ref(outpoint))?;
        Ok(coins.pop().flatten())
    }

    /// Several coins and the tip they are read at, from one snapshot (for the mempool).
    /// The cache first (coins changed since the last flush), then the database; the chain task
    /// commits a block and updates the cache under the cache's write lock, so holding the read
    /// lock while taking the snapshot makes both agree on the tip.
    pub fn coins_at_tip(&self, outpoints: &[OutPoint]) -> StorageResult<CoinsAtTip> {
        let cache = read_lock(&self.cache);
        let v = self.view();
        let tip = v.tip()?;
        let mut coins: Vec<Option<Coin>> = Vec::with_capacity(outpoints.len());
        let mut missing: Vec<(usize, [u8; 36])> = Vec::new();
        for (i, op) in outpoints.iter().enumerate() {
            match cache.lookup(op) {
                Lookup::Unspent(c) => coins.push(Some(c)),
                Lookup::Spent => coins.push(None),
                Lookup::Unknown => {
                    coins.push(None);
                    missing.push((i, outpoint_key(op)));
                }
            }
        }
        if !missing.is_empty() {
            let utxo = cf(&self.db, CF_UTXO)?;
            let results = v.snap.multi_get_cf(missing.iter().map(|(_, k)| (utxo, k)));
            for ((i, _), r) in missing.iter().zip(results) {
                coins[*i] = r?.map(|b| decode_coin(&outpoints[*i], &b)).transpose()?;
            }
        }
        Ok(((tip.height, tip.hash), coins))
    }

    /// Confirmed balance of `pubkey`.
    pub fn address_balance(&self, pubkey: &XOnlyPublicKey) -> StorageResult<Amount> {
        let b = self.indexed_view()?.get(CF_ADDR_BALANCE, pubkey.0)?;
        Ok(Amount(
            b.map(|b| decode_balance(pubkey, &b))
                .transpose()?
                .unwrap_or(0),
        ))
    }

    /// [`ChainReader::address_utxos`] with the tip `(height, hash)` they were read at, from
    /// one snapshot (so confirmations computed from them never underflow).
    pub fn address_utxos_at_tip(
        &self,
        pubkey: &XOnlyPublicKey,
    ) -> StorageResult<AddressCoinsAtTip> {
        let v = self.indexed_view()?;
        let tip = v.tip()?;
        Ok(((tip.height, tip.hash), self.address_utxos_in(&v, pubkey)?))
    }

    /// Unspent outputs paying `pubkey`, in outpoint order.
    pub fn address_utxos(&self, pubkey: &XOnlyPublicKey) -> StorageResult<Vec<(OutPoint, Coin)>> {
        self.address_utxos_in(&self.indexed_view()?, pubkey)
    }

    fn address_utxos_in(
        &self,
        view: &View<'_>,
        pubkey: &XOnlyPublicKey,
    ) -> StorageResult<Vec<(OutPoint, Coin)>> {
        let mut out = Vec::new();
        view.prefix_scan(CF_ADDR_UTXO, &pubkey.0, |k, v| {
            let op = decode_outpoint_key(&k[32..])?;
            out.push((op, decode_coin(&op, v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Main-chain transactions that pay or spend from `pubkey`, in chain order.
    pub fn address_txids(&self, pubkey: &XOnlyPublicKey) -> StorageResult<Vec<Txid>> {
        let mut out = Vec::new();
        self.indexed_view()?
            .prefix_scan(CF_ADDR_TX, &pubkey.0, |k, _| {
                out.push(decode_addr_tx_txid(k)?);
                Ok(())
            })?;
        Ok(out)
    }

    /// UTXO-set statistics at the tip (`gettxoutsetinfo`).
    pub fn utxo_stats(&self) -> StorageResult<UtxoStats> {
        let v = self.view();
        let tip = v.tip()?;
        let b = v
            .get(CF_META, MetaKey::UtxoStats.key())?
            .ok_or_else(|| StorageError::corrupt("utxo stats", "meta", "missing"))?;
        let s: UtxoStatsRecord = decode_value("utxo stats", "meta", &b)?;
        Ok(UtxoStats {
            height: tip.height,
            best_hash: tip.hash,
            txouts: s.txouts,
            total_amount: Amount(s.total_amount),
            digest: s.digest,
        })
    }

    /// A block locator of the best header chain: the last [`LOCATOR_DENSE_ENTRIES`] hashes,
    /// then exponentially spaced, then genesis.
    pub fn locator(&self) -> StorageResult<Vec<BlockHash>> {
        let v = self.view();
        let b = v
            .get(CF_META, MetaKey::BestHeader.key())?
            .ok_or_else(|| StorageError::corrupt("best header", "meta", "missing"))?;
        let best: TipRecord = decode_value("best header", "meta", &b)?;
        let mut out = Vec::new();
        let mut height = best.height;
        let mut step = 1u64;
        loop {
            let hash = v
                .hash_at(CF_HEADER_CHAIN, height)?
                .ok_or_else(|| StorageError::corrupt("header chain", height, "missing"))?;
            out.push(hash);
            if height == 0 {
                break;
            }
            if out.len() >= LOCATOR_DENSE_ENTRIES {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        Ok(out)
    }

    /// Main-chain headers after the first locator hash on the main chain (genesis if none),
    /// at most `max` (capped at [`MAX_HEADERS_PER_REQUEST`]).
    pub fn headers_after(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> StorageResult<Vec<BlockHeader>> {
        let v = self.view();
        let tip = v.tip()?;
        let mut start = 0;
        for hash in locator {
            if let Some(r) = v.header(hash)?
                && v.hash_at(CF_HEIGHT, r.height)? == Some(*hash)
            {
                start = r.height;
                break;
            }
        }
        let max = max.min(MAX_HEADERS_PER_REQUEST) as u64;
        let mut out = Vec::new();
        let mut h = start + 1;
        while h <= tip.height && (out.len() as u64) < max {
            let hash = v
                .hash_at(CF_HEIGHT, h)?
                .ok_or_else(|| StorageError::corrupt("height index", h, "missing below the tip"))?;
            let r = v.header(&hash)?.ok_or_else(|| {
                StorageError::corrupt("header", hash, "main-chain header missing")
            })?;
            out.push(r.header);
            h += 1;
        }
        Ok(out)
    }

    /// Blocks to download: on the best valid header chain, above its fork from the main chain,
    /// the headers whose body we lack, lowest first (at most `max`, capped at
    /// [`MAX_MISSING_BLOCKS_PER_REQUEST`]).
    pub fn missing_blocks(&self, max: usize) -> StorageResult<Vec<BlockHash>> {
        let v = self.view();
        let tip = v.tip()?;
        let b = v
            .get(CF_META, MetaKey::BestHeader.key())?
            .ok_or_else(|| StorageError::corrupt("best header", "meta", "missing"))?;
        let best: TipRecord = decode_value("best header", "meta", &b)?;
        let max = max.min(MAX_MISSING_BLOCKS_PER_REQUEST);
        // Fork point of the header chain and the main chain.
        let mut h = tip.height.min(best.height);
        while h > 0 && v.hash_at(CF_HEADER_CHAIN, h)? != v.hash_at(CF_HEIGHT, h)? {
            h -= 1;
        }
        let mut out = Vec::new();
        let end = best.height.min(h.saturating_add(MAX_MISSING_BLOCKS_SCAN));
        for height in h + 1..=end {
            if out.len() >= max {
                break;
            }
            let hash = v
                .hash_at(CF_HEADER_CHAIN, height)?
                .ok_or_else(|| StorageError::corrupt("header chain", height, "missing"))?;
            let r = v.header(&hash)?.ok_or_else(|| {
                StorageError::corrupt("header", hash, "header-chain header missing")
            })?;
            if !r.has_body {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Height of a known, valid header and whether it is on the best header chain (`None`:
    /// unknown or invalid), read from one snapshot.
    pub fn header_position(&self, hash: &BlockHash) -> StorageResult<Option<(u64, bool)>> {
        let v = self.view();
        let Some(r) = v.header(hash)? else {
            return Ok(None);
        };
        if r.status.is_invalid() {
            return Ok(None);
        }
        let on_best = v.hash_at(CF_HEADER_CHAIN, r.height)? == Some(*hash);
        Ok(Some((r.height, on_best)))
    }

    /// Median time of the 11 blocks ending at `hash` (`None` if unknown).
    pub fn median_time_past(&self, hash: &BlockHash) -> StorageResult<Option<u64>> {
        self.view().median_time_past(hash)
    }

    /// Height, parent, bits and minimum time of the next block on the tip.
    pub fn block_template_context(&self) -> StorageResult<BlockTemplateContext> {
        let v = self.view();
        let tip = v.tip()?;
        let r = v
            .header(&tip.hash)?
            .ok_or_else(|| StorageError::corrupt("header", tip.hash, "tip header missing"))?;
        let mtp = v.median_time_past(&tip.hash)?.unwrap_or(r.header.time);
        Ok(BlockTemplateContext {
            height: tip.height + 1,
            prev_hash: tip.hash,
            bits: cairn_consensus::difficulty::next_bits(&self.params, tip.height, r.header.time),
            min_time: mtp + 1,
            prev_time: r.header.time,
        })
    }

    /// The compact target required of the child of `hash` (`None` if unknown).
    pub fn next_bits_after(&self, hash: &BlockHash) -> StorageResult<Option<u32>> {
        let Some(r) = self.view().header(hash)? else {
            return Ok(None);
        };
        Ok(Some(cairn_consensus::difficulty::next_bits(
            &self.params,
            r.height,
            r.header.time,
        )))
    }
}

/// The mempool validates against the chain through this view; a database error reads as a
/// missing coin (and is logged), which can only make a transaction fail, never pass.
impl UtxoView for ChainReader {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        match ChainReader::coin(self, outpoint) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%outpoint, error = %e, "UTXO read failed");
                None
            }
        }
    }
}

/// Confirmations of a main-chain block at `height` when the tip is at `tip_height`, both read
/// from one snapshot (so `height <= tip_height`; saturating all the same).
fn confirmations(tip_height: u64, height: u64) -> u64 {
    tip_height.saturating_sub(height) + 1
}
