//! Connecting and disconnecting blocks: UTXO changes, undo data, indexes and stats, one
//! atomic batch per block.

use std::time::Instant;

use super::*;
use crate::config::INLINE_INDEX_MAX_BEHIND;
use crate::index::IndexWriter;
use crate::timings::Stage;

impl ChainState {
    pub(super) fn load_block(&self, hash: &BlockHash) -> StorageResult<Block> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_BLOCKS)?, hash.0)?
            .ok_or_else(|| StorageError::corrupt("block", hash, "body missing"))?;
        decode_block(hash, &bytes)
    }

    /// Prefetches the coins `block` spends (cache, then one `multi_get`) into a memory view.
    pub(super) fn prefetch_inputs(&mut self, block: &Block) -> StorageResult<MemoryUtxoSet> {
        let mut view = MemoryUtxoSet::new();
        let mut missing: Vec<OutPoint> = Vec::new();
        for tx in block.transactions.iter().skip(1) {
            for input in &tx.inputs {
                match self.cache.get(&input.prevout) {
                    Some(c) => view.insert(input.prevout, c),
                    None => missing.push(input.prevout),
                }
            }
        }
        if !missing.is_empty() {
            let utxo = cf(&self.db, CF_UTXO)?;
            let keys: Vec<[u8; 36]> = missing.iter().map(outpoint_key).collect();
            let results = self.db.multi_get_cf(keys.iter().map(|k| (utxo, k)));
            for (op, r) in missing.iter().zip(results) {
                if let Some(bytes) = r? {
                    view.insert(*op, decode_coin(op, &bytes)?);
                }
            }
        }
        Ok(view)
    }

    /// Connects the block `hash` (whose parent is the tip) in one atomic batch. Its index
    /// entries go in the same batch when the indexes are at its parent and it is near the best
    /// header; otherwise the background indexer writes them later.
    pub(super) fn connect(
        &mut self,
        hash: BlockHash,
        events: &mut Vec<ChainEvent>,
        bodies: &HashMap<BlockHash, Arc<Block>>,
    ) -> Result<(), ConnectFailure> {
        let entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", hash, "missing from the index"))?;
        debug_assert_eq!(Some(&entry.header.prev_hash), self.main_chain.last());
        let block = match bodies.get(&hash) {
            Some(b) => b.clone(),
            None => Arc::new(self.load_block(&hash)?),
        };
        let shared = self.indexes.clone();
        let timings = &shared.timings;
        let started = Instant::now();
        let view = self.prefetch_inputs(&block)?;
        let fetched = Instant::now();
        timings.add(Stage::FetchInputs, fetched - started);
        let delta = connect_block(&block, entry.height, &view, &self.params)
            .map_err(|e| ConnectFailure::Invalid(e.to_string()))?;
        let verified = Instant::now();
        timings.add(Stage::Verify, verified - fetched);
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();

        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        self.write_chain_connect(&db, &mut batch, hash, entry.height, &delta, &mut stats)?;
        let mut new_entry = entry.clone();
        new_entry.status = BlockStatus::ConnectedValid;
        batch.put_cf(
            cf(&db, CF_HEADERS).map_err(ConnectFailure::Storage)?,
            hash.0,
            encode_value(&new_entry.record()),
        );
        let applied = Instant::now();
        timings.add(Stage::Apply, applied - verified);

        let new_tip = TipRecord {
            height: entry.height,
            hash,
        };
        let mut ix = shared.lock();
        let inline =
            ix.index_tip.hash == entry.header.prev_hash && self.indexes_inline(entry.height);
        if inline {
            let mut writer = IndexWriter::new(&db);
            writer.connect(&mut batch, &block, &txids, hash, entry.height, &delta)?;
            writer.finish(&mut batch, new_tip)?;
        }
        let indexed = Instant::now();
        timings.add(Stage::Index, indexed - applied);
        self.write(batch)?;
        timings.add(Stage::Write, indexed.elapsed());
        timings.block_connected(block.transactions.len());
        ix.chain_tip = new_tip;
        if inline {
            ix.index_tip = new_tip;
        }
        drop(ix);
        shared.notify();

        // Committed: now the in-memory state follows.
        self.stats = stats;
        self.main_chain.push(hash);
        self.index.insert(hash, new_entry);
        for (op, _) in &delta.spent {
            self.cache.remove(op);
        }
        for (op, coin) in &delta.created {
            self.cache.insert(*op, *coin);
        }
        tracing::debug!(height = entry.height, %hash, txs = block.transactions.len(), "block connected");
        events.push(ChainEvent::BlockConnected {
            hash,
            height: entry.height,
            block,
        });
        Ok(())
    }

    /// Whether a block connected at `height` gets its index entries in its own batch: only
    /// near the best header (a syncing node leaves them to the background indexer).
    fn indexes_inline(&self, height: u64) -> bool {
        self.best_header().height.saturating_sub(height) <= INLINE_INDEX_MAX_BEHIND
    }

    /// Writes into `batch` what validation needs after connecting a block: UTXO changes, undo
    /// data, height index, tip and UTXO stats (the indexes are written separately).
    pub(super) fn write_chain_connect(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        hash: BlockHash,
        height: u64,
        delta: &BlockConnect,
        stats: &mut UtxoDigest,
    ) -> StorageResult<()> {
        let utxo = cf(db, CF_UTXO)?;
        for (op, coin) in &delta.spent {
            batch.delete_cf(utxo, outpoint_key(op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "underflow spending"))?;
        }
        for (op, coin) in &delta.created {
            batch.put_cf(utxo, outpoint_key(op), encode_value(coin));
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "overflow"))?;
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
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        // The indexes cover this block only if they are at the tip; below it, the block was
        // never indexed and nothing needs undoing.
        let shared = self.indexes.clone();
        let mut ix = shared.lock();
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
        for (op, _) in &delta.created {
            self.cache.remove(op);
        }
        for (op, coin) in &delta.spent {
            self.cache.insert(*op, *coin);
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
