//! Connecting and disconnecting blocks: UTXO changes, undo data, indexes and stats, one
//! atomic batch per block.

use std::time::Instant;

use rayon::slice::ParallelSliceMut;

use super::*;
use crate::cache::Lookup;
use crate::config::{INLINE_INDEX_MAX_BEHIND, UTXO_FLUSH_MAX_BLOCKS};
use crate::index::IndexWriter;
use crate::timings::Stage;

use super::blocks::Body;

/// A block between the two halves of its connect: every rule but the signatures checked, its
/// changes computed and not yet written (see [`ChainState::connect_path`]).
pub(super) struct PreparedConnect {
    hash: BlockHash,
    entry: IndexEntry,
    block: Arc<Block>,
    txids: Arc<[Txid]>,
    checked: InputsChecked,
    /// `checked.delta` as a view, for the next block's inputs before this one is committed
    /// (built only when a next block follows).
    ahead: Option<AheadView>,
}

/// One UTXO change on its way to a flush batch: its key ([`outpoint_key`]) and the coin to
/// put (`None`: delete).
type FlushEntry = ([u8; 36], Option<Coin>);

/// A prepared block's changes as a view (see [`ChainState::prefetch_inputs`]).
struct AheadView {
    created: HashMap<OutPoint, Coin>,
    spent: HashSet<OutPoint>,
}

impl ChainState {
    pub(super) fn load_block(&self, hash: &BlockHash) -> StorageResult<Block> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_BLOCKS)?, hash.0)?
            .ok_or_else(|| StorageError::corrupt("block", hash, "body missing"))?;
        decode_block(hash, &bytes)
    }

    /// Prefetches the coins `block` spends (cache, then one `multi_get`) into a memory view.
    /// Coins spent since the last flush are absent from the view even if the database still
    /// holds them. With `ahead`, the block before `block` is prepared but not committed: the
    /// view follows its changes first.
    fn prefetch_inputs(
        &mut self,
        block: &Block,
        ahead: Option<&AheadView>,
    ) -> StorageResult<MemoryUtxoSet> {
        let mut view = MemoryUtxoSet::new();
        let mut missing: Vec<OutPoint> = Vec::new();
        {
            let cache = read_lock(&self.cache);
            for tx in block.transactions.iter().skip(1) {
                for input in &tx.inputs {
                    if let Some(p) = ahead {
                        if let Some(coin) = p.created.get(&input.prevout) {
                            view.insert(input.prevout, *coin);
                            continue;
                        }
                        if p.spent.contains(&input.prevout) {
                            continue;
                        }
                    }
                    match cache.lookup(&input.prevout) {
                        Lookup::Unspent(c) => view.insert(input.prevout, c),
                        Lookup::Spent => {}
                        Lookup::Unknown => missing.push(input.prevout),
                    }
                }
            }
        }
        if !missing.is_empty() {
            // Only this task writes the UTXO column family (at flushes), so no lock is needed.
            let utxo = cf(&self.db, CF_UTXO)?;
            let keys: Vec<[u8; 36]> = missing.iter().map(outpoint_key).collect();
            let results = self.db.multi_get_cf(keys.iter().map(|k| (utxo, k)));
            let mut cache = write_lock(&self.cache);
            for (op, r) in missing.iter().zip(results) {
                if let Some(bytes) = r? {
                    let coin = decode_coin(op, &bytes)?;
                    view.insert(*op, coin);
                    cache.add_clean(*op, coin);
                }
            }
        }
        Ok(view)
    }

    /// Writes every UTXO change held in the cache, in batches of about `flush_batch_bytes`, and
    /// `meta/utxo_tip` = the tip in the last (see [`crate::cache`]); then empties the cache, or
    /// with `keep_coins` keeps its unspent coins (a flush that is not for room).
    pub(super) fn flush_utxos(&mut self, keep_coins: bool) -> StorageResult<()> {
        let tip = self.tip();
        let tip = TipRecord {
            height: tip.height,
            hash: tip.hash,
        };
        let db = self.db.clone();
        let done = |cache: &mut UtxoCache| {
            if keep_coins {
                cache.flushed_keeping_coins();
            } else {
                cache.flushed();
            }
        };
        // Written under the read lock: readers (`ChainReader::coins_at_tip`, on the RPC and
        // mempool threads) go on meanwhile. Every entry being written is still in the cache,
        // which they consult first, so whatever part of the writes they see changes nothing.
        // Only this task changes the cache, so nothing moves before the write lock below.
        let cache = read_lock(&self.cache);
        if self.utxo_tip == tip && !cache.is_dirty() {
            drop(cache);
            done(&mut write_lock(&self.cache));
            return Ok(());
        }
        let started = Instant::now();
        let (mut entries, mut chunks) = (0usize, 0usize);
        // In chunks of `flush_batch_bytes`, `utxo_tip` in the last: a crash between chunks
        // leaves some of the changes after `utxo_tip` on disk, which the replay at the next
        // open writes again (it never takes a replayed coin for one the disk lacks).
        let written = (|| -> StorageResult<()> {
            let utxo = cf(&db, CF_UTXO)?;
            let mut batch = WriteBatch::default();
            // The changes go to RocksDB in runs sorted by key: the table hands them out in hash
            // order, and the memtable inserts a key that follows the previous one much faster
            // than one anywhere (the flushes of a 6,000-block sync: 3.9-4.9 s unsorted,
            // 1.5-1.8 s sorted). A run is copied out of the table, at most a batch's worth of
            // bytes, so a flush never holds a copy of all the changes; its entries carry their
            // key, so comparisons never follow a pointer into the table.
            let run_max = (self.flush_batch_bytes / std::mem::size_of::<FlushEntry>()).max(1);
            let mut run: Vec<FlushEntry> = Vec::new();
            let mut dirty = cache.dirty_entries().peekable();
            while dirty.peek().is_some() {
                run.extend(
                    dirty
                        .by_ref()
                        .take(run_max)
                        .map(|(op, coin)| (outpoint_key(op), coin.copied())),
                );
                // On every core: the pipeline waits for the flush anyway.
                run.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
                for (key, coin) in run.drain(..) {
                    match coin {
                        Some(c) => batch.put_cf(utxo, key, encode_value(&c)),
                        None => batch.delete_cf(utxo, key),
                    }
                    entries += 1;
                    if batch.size_in_bytes() >= self.flush_batch_bytes {
                        self.write(std::mem::take(&mut batch))?;
                        chunks += 1;
                    }
                }
            }
            batch.put_cf(
                cf(&db, CF_META)?,
                MetaKey::UtxoTip.key(),
                encode_value(&tip),
            );
            self.write(batch)?;
            chunks += 1;
            Ok(())
        })();
        drop(cache);
        let mut cache = write_lock(&self.cache);
        if let Err(e) = written {
            // Some chunks may be on disk: a coin created since the last flush is no longer
            // one the disk lacks, so spending it must write its deletion.
            cache.disk_may_hold_all();
            return Err(e);
        }
        done(&mut cache);
        self.publish_cache_bytes(&cache);
        drop(cache);
        self.utxo_tip = tip;
        self.blocks_since_flush = 0;
        self.indexes.timings.add(Stage::Flush, started.elapsed());
        tracing::debug!(height = tip.height, entries, chunks, "UTXO cache flushed");
        Ok(())
    }

    /// Makes the cache's footprint readable without its lock (see
    /// `IndexShared::utxo_cache_bytes`).
    fn publish_cache_bytes(&self, cache: &UtxoCache) {
        self.indexes
            .utxo_cache_bytes
            .store(cache.bytes() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Applies the blocks after `meta/utxo_tip` to the cache again from their undo data (after
    /// a crash, or a stop without a flush): the UTXO column family is as of `utxo_tip`.
    pub(super) fn replay_unflushed(&mut self) -> StorageResult<()> {
        let tip = self.tip();
        if self.block_hash(self.utxo_tip.height) != Some(self.utxo_tip.hash) {
            return Err(StorageError::corrupt(
                "utxo tip",
                "meta",
                "not on the main chain",
            ));
        }
        let from = self.utxo_tip.height;
        let mut cache = write_lock(&self.cache);
        for height in from + 1..=tip.height {
            let hash = self.block_hash(height).ok_or_else(|| {
                StorageError::corrupt("height index", height, "main chain shorter than its tip")
            })?;
            let undo: BlockConnect = decode_value(
                "undo data",
                hash,
                &self
                    .db
                    .get_cf(cf(&self.db, CF_UNDO)?, hash.0)?
                    .ok_or_else(|| StorageError::corrupt("undo data", hash, "missing"))?,
            )?;
            for (op, _) in &undo.spent {
                cache.spend(*op);
            }
            for (op, coin) in &undo.created {
                cache.recreate(*op, *coin);
            }
        }
        self.publish_cache_bytes(&cache);
        drop(cache);
        if tip.height > from {
            self.blocks_since_flush = tip.height - from;
            tracing::info!(
                from,
                to = tip.height,
                "UTXO changes of the blocks since the last flush applied again from undo data"
            );
        }
        Ok(())
    }

    /// Flushes if the cache is over its budget or has gone [`UTXO_FLUSH_MAX_BLOCKS`] blocks
    /// without a flush (which bounds the replay after a crash).
    fn maybe_flush(&mut self) -> StorageResult<()> {
        let full = read_lock(&self.cache).needs_flush();
        if full || self.blocks_since_flush >= UTXO_FLUSH_MAX_BLOCKS {
            self.flush_utxos(!full)?;
        }
        Ok(())
    }

    /// Connects `path` in order (the first block's parent is the tip; each next block's parent
    /// is the block before it), each in one atomic batch, and stops at the first invalid block,
    /// which it marks invalid.
    ///
    /// Pipelined, as a node syncing at the signature-verification limit needs: while one
    /// block's signatures are checked on every core, the same pool commits the block before it
    /// and runs the UTXO rules of the block after it against a view that includes the checked
    /// block's changes ([`PreparedConnect`]). A block is committed only after its own
    /// signatures passed, so nothing unverified reaches the database or readers; a block found
    /// invalid discards the work done ahead of it, which lived in memory only.
    pub(super) fn connect_path(
        &mut self,
        path: &[BlockHash],
        events: &mut Vec<ChainEvent>,
        bodies: &HashMap<BlockHash, Body>,
    ) -> StorageResult<()> {
        let Some((&first, rest)) = path.split_first() else {
            return Ok(());
        };
        let mut current = match self.prepare_connect(first, bodies, None, !rest.is_empty()) {
            Ok(p) => p,
            Err(ConnectFailure::Invalid(reason)) => {
                return self.found_invalid(first, reason, events);
            }
            Err(ConnectFailure::Storage(e)) => return Err(e),
        };
        let params = Arc::clone(&self.params);
        let sig_cache = self.sig_cache.clone();
        let shared = Arc::clone(&self.indexes);
        let mut verified: Option<PreparedConnect> = None;
        let mut rest = rest.iter().copied().peekable();
        loop {
            let next = rest.next();
            let followed = rest.peek().is_some();
            let checking = &current;
            debug_assert_eq!(
                checking.ahead.is_some(),
                next.is_some(),
                "a view for the next"
            );
            let (signatures, (committed, prepared)) = rayon::join(
                || {
                    let started = Instant::now();
                    let r = check_signatures(
                        &checking.block,
                        &checking.txids,
                        &checking.checked.checks,
                        &params,
                        sig_cache.as_deref(),
                    );
                    shared.timings.add(Stage::Verify, started.elapsed());
                    r
                },
                || {
                    let committed = match verified.take() {
                        Some(v) => self.commit_connect(v, events),
                        None => Ok(()),
                    };
                    let prepared = match (&committed, next) {
                        (Ok(()), Some(h)) => Some((
                            h,
                            self.prepare_connect(h, bodies, checking.ahead.as_ref(), followed),
                        )),
                        _ => None,
                    };
                    (committed, prepared)
                },
            );
            committed?;
            if let Err(e) = signatures {
                return self.found_invalid(current.hash, e.to_string(), events);
            }
            match prepared {
                Some((_, Ok(p))) => {
                    verified = Some(std::mem::replace(&mut current, p));
                }
                Some((bad, Err(ConnectFailure::Invalid(reason)))) => {
                    self.commit_connect(current, events)?;
                    return self.found_invalid(bad, reason, events);
                }
                Some((_, Err(ConnectFailure::Storage(e)))) => return Err(e),
                None => return self.commit_connect(current, events),
            }
        }
    }

    fn found_invalid(
        &mut self,
        hash: BlockHash,
        reason: String,
        events: &mut Vec<ChainEvent>,
    ) -> StorageResult<()> {
        tracing::warn!(%hash, %reason, "block is invalid");
        self.mark_invalid(hash, reason, events)
    }

    /// The first half of connecting `hash`: its coins fetched (through `ahead`, the block
    /// before it when that one is not committed yet) and every rule checked except the
    /// signatures. Reads only; the block is not valid until [`check_signatures`] passed.
    /// `followed`: a next block will be prepared against this one before it is committed.
    fn prepare_connect(
        &mut self,
        hash: BlockHash,
        bodies: &HashMap<BlockHash, Body>,
        ahead: Option<&AheadView>,
        followed: bool,
    ) -> Result<PreparedConnect, ConnectFailure> {
        let entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", hash, "missing from the index"))?;
        // The body passed the contents and coinbase-height rules before it was stored; only
        // what needs the UTXO set is left (the txids come from those checks when at hand).
        let (block, txids) = match bodies.get(&hash) {
            Some(b) => (Arc::clone(&b.block), Arc::clone(&b.txids)),
            None => {
                let block = self.load_block(&hash)?;
                let txids = block.transactions.iter().map(Transaction::txid).collect();
                (Arc::new(block), txids)
            }
        };
        let timings = &Arc::clone(&self.indexes).timings;
        let started = Instant::now();
        let view = self.prefetch_inputs(&block, ahead)?;
        let fetched = Instant::now();
        timings.add(Stage::FetchInputs, fetched - started);
        let checked = connect_inputs(&block, &txids, entry.height, &view, &self.params)
            .map_err(|e| ConnectFailure::Invalid(e.to_string()))?;
        let ahead = followed.then(|| AheadView {
            created: checked.delta.created.iter().copied().collect(),
            spent: checked.delta.spent.iter().map(|(op, _)| *op).collect(),
        });
        timings.add(Stage::Verify, fetched.elapsed());
        Ok(PreparedConnect {
            hash,
            entry,
            block,
            txids,
            checked,
            ahead,
        })
    }

    /// The second half of connecting a block whose signatures passed: one atomic batch, then
    /// the in-memory state. Its index entries go in the same batch only with
    /// `tip_indexes_inline`, when the indexes are at its parent and it is near the best header;
    /// otherwise the background indexer writes them just after (at once near the best header,
    /// once a sync pauses otherwise).
    fn commit_connect(
        &mut self,
        prepared: PreparedConnect,
        events: &mut Vec<ChainEvent>,
    ) -> StorageResult<()> {
        let PreparedConnect {
            hash,
            entry,
            block,
            txids,
            checked,
            ..
        } = prepared;
        let delta = checked.delta;
        debug_assert_eq!(Some(&entry.header.prev_hash), self.main_chain.last());
        let shared = self.indexes.clone();
        let timings = &shared.timings;
        let started = Instant::now();
        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        self.write_chain_connect(
            &db,
            &mut batch,
            hash,
            entry.height,
            &delta,
            &mut stats,
            false,
        )?;
        let mut new_entry = entry.clone();
        new_entry.status = BlockStatus::ConnectedValid;
        batch.put_cf(
            cf(&db, CF_HEADERS)?,
            hash.0,
            encode_value(&new_entry.record()),
        );
        let applied = Instant::now();
        timings.add(Stage::Apply, applied - started);

        let new_tip = TipRecord {
            height: entry.height,
            hash,
        };
        // Never waits behind the indexer's batch: while one is being written, this block is
        // left to the indexer.
        let near_best_header = self.near_best_header(entry.height);
        let mut ix = shared.lock();
        let inline = self.tip_indexes_inline
            && !ix.committing
            && ix.index_tip.hash == entry.header.prev_hash
            && near_best_header;
        if inline {
            let mut writer = IndexWriter::new(&db);
            writer.connect(&mut batch, &block, &txids, hash, entry.height, &delta)?;
            writer.finish(&mut batch, new_tip)?;
        }
        let indexed = Instant::now();
        timings.add(Stage::Index, indexed - applied);
        {
            // Readers see the new tip and the cache that goes with it together.
            let mut cache = write_lock(&self.cache);
            self.write(batch)?;
            for (op, _) in &delta.spent {
                cache.spend(*op);
            }
            for (op, coin) in &delta.created {
                cache.create(*op, *coin);
            }
            self.publish_cache_bytes(&cache);
        }
        timings.add(Stage::Write, indexed.elapsed());
        timings.block_connected(block.transactions.len());
        ix.chain_tip = new_tip;
        if inline {
            ix.index_tip = new_tip;
        }
        ix.last_sync_connect = (!near_best_header).then(Instant::now);
        drop(ix);
        shared.notify();

        // Committed: now the in-memory state follows.
        self.stats = stats;
        self.main_chain.push(hash);
        self.index.insert(hash, new_entry);
        self.blocks_since_flush += 1;
        self.maybe_flush()?;
        tracing::debug!(height = entry.height, %hash, txs = block.transactions.len(), "block connected");
        events.push(ChainEvent::BlockConnected {
            hash,
            height: entry.height,
            block,
        });
        Ok(())
    }

    /// Whether a block connected at `height` is near the best header (following the network,
    /// not syncing: the indexer need not wait for a sync to pause).
    fn near_best_header(&self, height: u64) -> bool {
        self.best_header().height.saturating_sub(height) <= INLINE_INDEX_MAX_BEHIND
    }

    /// Writes into `batch` what validation needs after connecting a block: undo data, height
    /// index, tip and UTXO stats, and, with `utxo_write_through`, the UTXO changes themselves
    /// (otherwise they go to the cache; the indexes are written separately).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_chain_connect(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        hash: BlockHash,
        height: u64,
        delta: &BlockConnect,
        stats: &mut UtxoDigest,
        utxo_write_through: bool,
    ) -> StorageResult<()> {
        let utxo = cf(db, CF_UTXO)?;
        for (op, coin) in &delta.spent {
            if utxo_write_through {
                batch.delete_cf(utxo, outpoint_key(op));
            }
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "underflow spending"))?;
        }
        for (op, coin) in &delta.created {
            if utxo_write_through {
                batch.put_cf(utxo, outpoint_key(op), encode_value(coin));
            }
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "overflow"))?;
        }
        if utxo_write_through {
            batch.put_cf(
                cf(db, CF_META)?,
                MetaKey::UtxoTip.key(),
                encode_value(&TipRecord { height, hash }),
            );
        }
        batch.put_cf(cf(db, CF_UNDO)?, hash.0, encode_value(delta));
        batch.put_cf(cf(db, CF_HEIGHT)?, height_key(height), hash.0);
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::Tip.key(),
            encode_value(&TipRecord { height, hash }),
        );
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        Ok(())
    }

    /// Disconnects the tip in one atomic batch, restoring the coins it spent from undo data.
    pub(super) fn disconnect_tip(&mut self, events: &mut Vec<ChainEvent>) -> StorageResult<()> {
        let tip = self.tip();
        if tip.height == 0 {
            return Err(StorageError::corrupt(
                "chain",
                tip.hash,
                "asked to disconnect genesis",
            ));
        }
        let db = self.db.clone();
        let entry = self
            .index
            .get(&tip.hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", tip.hash, "missing"))?;
        // Disconnects write the UTXO set directly, after a flush: `utxo_tip` then always stays
        // on the main chain, so a restart only ever replays forward.
        self.flush_utxos(true)?;
        let block = self.load_block(&tip.hash)?;
        let undo_bytes = db
            .get_cf(cf(&db, CF_UNDO)?, tip.hash.0)?
            .ok_or_else(|| StorageError::corrupt("undo data", tip.hash, "missing"))?;
        let delta: BlockConnect = decode_value("undo data", tip.hash, &undo_bytes)?;
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();

        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        let utxo = cf(&db, CF_UTXO)?;
        for (op, coin) in &delta.created {
            batch.delete_cf(utxo, outpoint_key(op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "underflow"))?;
        }
        for (op, coin) in &delta.spent {
            batch.put_cf(utxo, outpoint_key(op), encode_value(coin));
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "overflow"))?;
        }
        let parent = TipRecord {
            height: tip.height - 1,
            hash: entry.header.prev_hash,
        };
        batch.delete_cf(cf(&db, CF_HEIGHT)?, height_key(tip.height));
        batch.put_cf(cf(&db, CF_META)?, MetaKey::Tip.key(), encode_value(&parent));
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::UtxoTip.key(),
            encode_value(&parent),
        );
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        // The indexes cover this block only if they are at the tip; below it, the block was
        // never indexed and nothing needs undoing.
        let shared = self.indexes.clone();
        let mut ix = shared.lock_no_commit();
        let inline = ix.index_tip.hash == tip.hash;
        if inline {
            let mut writer = IndexWriter::new(&db);
            writer.disconnect(&mut batch, &block, &txids, tip.hash, tip.height, &delta)?;
            writer.finish(&mut batch, parent)?;
        }
        self.write(batch)?;
        ix.chain_tip = parent;
        if inline {
            ix.index_tip = parent;
        }
        drop(ix);
        shared.notify();

        self.stats = stats;
        self.main_chain.pop();
        self.utxo_tip = parent;
        {
            let mut cache = write_lock(&self.cache);
            for (op, _) in delta.created.iter().chain(&delta.spent) {
                cache.forget(op);
            }
        }
        tracing::debug!(height = tip.height, hash = %tip.hash, "block disconnected");
        events.push(ChainEvent::BlockDisconnected {
            hash: tip.hash,
            height: tip.height,
            block: Arc::new(block),
        });
        Ok(())
    }
}
