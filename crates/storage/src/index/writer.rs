//! What the indexes hold for one block, added to (connect) or removed from (disconnect) a
//! batch. Used by the chain task for one block and by the indexer for several.

use std::collections::HashMap;

use cairn_consensus::{BlockConnect, Coin};
use cairn_primitives::{Block, BlockHash, OutPoint, Txid, XOnlyPublicKey};
use rocksdb::{DB, WriteBatch};

use crate::error::{StorageError, StorageResult};
use crate::explorer_index::write_explorer_indexes;
use crate::schema::*;
use crate::store::cf;

/// Per-pubkey balance changes of one batch.
type BalanceDeltas = HashMap<XOnlyPublicKey, i128>;

/// Index entries of one or more consecutive blocks, into one batch. Balances and the running
/// transaction count are carried from block to block (the database does not see the batch
/// until it is written), then [`IndexWriter::finish`] writes them and the index tip.
pub(crate) struct IndexWriter<'a> {
    db: &'a DB,
    balances: BalanceDeltas,
    /// Transactions in blocks 1..=the last block connected into this batch, if any.
    chain_tx: Option<u64>,
}

impl<'a> IndexWriter<'a> {
    pub(crate) fn new(db: &'a DB) -> Self {
        Self {
            db,
            balances: BalanceDeltas::new(),
            chain_tx: None,
        }
    }

    /// Adds the entries of main-chain block `block` at `height`; `undo` is its connect delta.
    pub(crate) fn connect(
        &mut self,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        undo: &BlockConnect,
    ) -> StorageResult<()> {
        let addr_utxo = cf(self.db, CF_ADDR_UTXO)?;
        for (op, coin) in &undo.spent {
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            *self.balances.entry(coin.output.pubkey).or_default() -=
                i128::from(coin.output.value.0);
        }
        for (op, coin) in &undo.created {
            batch.put_cf(
                addr_utxo,
                addr_utxo_key(&coin.output.pubkey, op),
                encode_value(coin),
            );
            *self.balances.entry(coin.output.pubkey).or_default() +=
                i128::from(coin.output.value.0);
        }
        let spent: HashMap<OutPoint, Coin> = undo.spent.iter().copied().collect();
        write_tx_indexes(
            self.db,
            batch,
            block,
            txids,
            hash,
            height,
            |op| spent.get(op).copied(),
            true,
        )?;
        self.chain_tx = Some(write_explorer_indexes(
            self.db,
            batch,
            block,
            txids,
            height,
            true,
            self.chain_tx,
        )?);
        Ok(())
    }

    /// Removes the entries of main-chain block `block` at `height` (the index tip).
    pub(crate) fn disconnect(
        &mut self,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        undo: &BlockConnect,
    ) -> StorageResult<()> {
        let addr_utxo = cf(self.db, CF_ADDR_UTXO)?;
        for (op, coin) in &undo.created {
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            *self.balances.entry(coin.output.pubkey).or_default() -=
                i128::from(coin.output.value.0);
        }
        for (op, coin) in &undo.spent {
            batch.put_cf(
                addr_utxo,
                addr_utxo_key(&coin.output.pubkey, op),
                encode_value(coin),
            );
            *self.balances.entry(coin.output.pubkey).or_default() +=
                i128::from(coin.output.value.0);
        }
        let spent: HashMap<OutPoint, Coin> = undo.spent.iter().copied().collect();
        write_tx_indexes(
            self.db,
            batch,
            block,
            txids,
            hash,
            height,
            |op| spent.get(op).copied(),
            false,
        )?;
        write_explorer_indexes(self.db, batch, block, txids, height, false, None)?;
        self.chain_tx = None;
        Ok(())
    }

    /// Writes the balances changed since [`IndexWriter::new`] and the new index tip.
    pub(crate) fn finish(self, batch: &mut WriteBatch, index_tip: TipRecord) -> StorageResult<()> {
        write_balances(self.db, batch, &self.balances, index_tip.hash)?;
        batch.put_cf(
            cf(self.db, CF_META)?,
            MetaKey::IndexTip.key(),
            encode_value(&index_tip),
        );
        Ok(())
    }
}

/// Adds (`connect`) or removes the tx-index and address-history entries of `block`.
/// `prior_coin` finds the coin an input spends when it predates the block.
#[allow(clippy::too_many_arguments)]
fn write_tx_indexes(
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
    let position: HashMap<Txid, usize> = txids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
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

/// Reads the balances `deltas` touch (committed: only index writers change them, under the
/// index lock) and writes the new ones; a zero balance is deleted.
fn write_balances(
    db: &DB,
    batch: &mut WriteBatch,
    deltas: &BalanceDeltas,
    at: BlockHash,
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
                format!("{old} + {d} out of range at block {at}"),
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
