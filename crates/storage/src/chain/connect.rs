//! Connecting and disconnecting blocks: UTXO changes, undo data, indexes and stats, one
//! atomic batch per block.

use super::*;

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

    /// Connects the block `hash` (whose parent is the tip) in one atomic batch.
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
        let view = self.prefetch_inputs(&block)?;
        let delta = connect_block(&block, entry.height, &view, &self.params)
            .map_err(|e| ConnectFailure::Invalid(e.to_string()))?;
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();

        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        self.apply_connect_to_batch(
            &db,
            &mut batch,
            &block,
            &txids,
            hash,
            entry.height,
            &delta,
            &mut stats,
            &view.coins,
        )?;
        let mut new_entry = entry.clone();
        new_entry.status = BlockStatus::ConnectedValid;
        batch.put_cf(
            cf(&db, CF_HEADERS).map_err(ConnectFailure::Storage)?,
            hash.0,
            encode_value(&new_entry.record()),
        );
        self.write(batch)?;

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

    /// Writes into `batch` everything connecting `block` changes: UTXOs, undo data, tx and
    /// address indexes, height index, tip and UTXO stats.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_connect_to_batch(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        delta: &BlockConnect,
        stats: &mut UtxoDigest,
        prior_coins: &HashMap<OutPoint, Coin>,
    ) -> StorageResult<()> {
        let utxo = cf(db, CF_UTXO)?;
        let addr_utxo = cf(db, CF_ADDR_UTXO)?;
        let mut deltas = BalanceDeltas::new();
        for (op, coin) in &delta.spent {
            batch.delete_cf(utxo, outpoint_key(op));
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "underflow spending"))?;
            *deltas.entry(coin.output.pubkey).or_default() -= i128::from(coin.output.value.0);
        }
        for (op, coin) in &delta.created {
            let value = encode_value(coin);
            batch.put_cf(utxo, outpoint_key(op), &value);
            batch.put_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op), &value);
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "overflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() += i128::from(coin.output.value.0);
        }
        self.write_balances(db, batch, &deltas, hash)?;
        self.write_tx_indexes(
            db,
            batch,
            block,
            txids,
            hash,
            height,
            |op| prior_coins.get(op).copied(),
            true,
        )?;
        crate::explorer_index::write_explorer_indexes(db, batch, block, txids, height, true)?;
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

    /// Adds (`connect`) or removes the tx-index and address-history entries of `block`.
    /// `prior_coin` finds the coin an input spends when it predates the block.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_tx_indexes(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        prior_coin: impl Fn(&OutPoint) -> Option<Coin>,
        connect: bool,
    ) -> StorageResult<()> {
        let tx_cf = cf(db, CF_TX)?;
        let addr_tx = cf(db, CF_ADDR_TX)?;
        let position: HashMap<Txid, usize> =
            txids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let mut keys: Vec<XOnlyPublicKey> = Vec::new();
        for (i, (tx, txid)) in block.transactions.iter().zip(txids).enumerate() {
            if connect {
                let loc = TxLocation {
                    block_hash: hash,
                    height,
                    index: i as u32,
                };
                batch.put_cf(tx_cf, txid.0, encode_value(&loc));
            } else {
                batch.delete_cf(tx_cf, txid.0);
            }
            keys.clear();
            keys.extend(tx.outputs.iter().map(|o| o.pubkey));
            for input in &tx.inputs {
                let pubkey = match prior_coin(&input.prevout) {
                    Some(c) => c.output.pubkey,
                    None => position
                        .get(&input.prevout.txid)
                        .and_then(|j| {
                            block.transactions[*j]
                                .outputs
                                .get(input.prevout.vout as usize)
                        })
                        .map(|o| o.pubkey)
                        .ok_or_else(|| {
                            StorageError::corrupt(
                                "spent coin",
                                input.prevout,
                                "neither in the undo data nor in the block",
                            )
                        })?,
                };
                keys.push(pubkey);
            }
            keys.sort_unstable();
            keys.dedup();
            for k in &keys {
                let key = addr_tx_key(k, height, i as u32, txid);
                if connect {
                    batch.put_cf(addr_tx, key, []);
                } else {
                    batch.delete_cf(addr_tx, key);
                }
            }
        }
        Ok(())
    }

    /// Reads the balances `deltas` touch (the database is current: this task is the only
    /// writer) and writes the new ones; a zero balance is deleted.
    pub(super) fn write_balances(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        deltas: &BalanceDeltas,
        hash: BlockHash,
    ) -> StorageResult<()> {
        let bal = cf(db, CF_ADDR_BALANCE)?;
        let keys: Vec<(&XOnlyPublicKey, &i128)> = deltas.iter().filter(|(_, d)| **d != 0).collect();
        let current = db.multi_get_cf(keys.iter().map(|(k, _)| (bal, k.0)));
        for ((pubkey, d), cur) in keys.iter().zip(current) {
            let old = match cur? {
                Some(b) => decode_balance(pubkey, &b)?,
                None => 0,
            };
            let new = i128::from(old) + **d;
            let new = u64::try_from(new).map_err(|_| {
                StorageError::corrupt(
                    "address balance",
                    pubkey.to_hex(),
                    format!("{old} + {d} out of range at block {hash}"),
                )
            })?;
            if new == 0 {
                batch.delete_cf(bal, pubkey.0);
            } else {
                batch.put_cf(bal, pubkey.0, new.to_le_bytes());
            }
        }
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
        let addr_utxo = cf(&db, CF_ADDR_UTXO)?;
        let mut deltas = BalanceDeltas::new();
        for (op, coin) in &delta.created {
            batch.delete_cf(utxo, outpoint_key(op));
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "underflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() -= i128::from(coin.output.value.0);
        }
        for (op, coin) in &delta.spent {
            let value = encode_value(coin);
            batch.put_cf(utxo, outpoint_key(op), &value);
            batch.put_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op), &value);
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "overflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() += i128::from(coin.output.value.0);
        }
        self.write_balances(&db, &mut batch, &deltas, tip.hash)?;
        let spent: HashMap<OutPoint, Coin> = delta.spent.iter().copied().collect();
        self.write_tx_indexes(
            &db,
            &mut batch,
            &block,
            &txids,
            tip.hash,
            tip.height,
            |op| spent.get(op).copied(),
            false,
        )?;
        let parent = TipRecord {
            height: tip.height - 1,
            hash: entry.header.prev_hash,
        };
        crate::explorer_index::write_explorer_indexes(
            &db, &mut batch, &block, &txids, tip.height, false,
        )?;
        batch.delete_cf(cf(&db, CF_HEIGHT)?, height_key(tip.height));
        batch.put_cf(cf(&db, CF_META)?, MetaKey::Tip.key(), encode_value(&parent));
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        self.write(batch)?;

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
