//! Block connection as a pure function: a block and a UTXO view in, the UTXO changes and the
//! undo data out, or the first rule the block breaks.

use std::collections::{HashMap, HashSet};

use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{Amount, Block, OutPoint, Txid};
use rayon::prelude::*;

use crate::rules::{block as block_rules, tx as tx_rules};
use crate::subsidy::block_subsidy;
use crate::view::{Coin, UtxoView};
use crate::{ChainParams, ConsensusError};

/// What connecting a block does to the UTXO set.
///
/// `spent` is also the undo data: restoring those coins and removing `created` disconnects the
/// block exactly. Outputs created and spent within the block appear in neither list.
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BlockConnect {
    /// Coins that existed before the block and that it spends, in spending order.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Coins the block creates that are still unspent at its end.
    pub created: Vec<(OutPoint, Coin)>,
    /// Total fees paid by the block's transactions.
    pub fees: Amount,
}

/// A view of the chain's UTXO set plus the outputs created earlier in the block being connected.
struct BlockOverlay<'a, V: UtxoView> {
    base: &'a V,
    created: HashMap<OutPoint, Coin>,
    spent: HashSet<OutPoint>,
}

impl<V: UtxoView> UtxoView for BlockOverlay<'_, V> {
    fn coin(&self, op: &OutPoint) -> Option<Coin> {
        if self.spent.contains(op) {
            return None;
        }
        self.created.get(op).copied().or_else(|| self.base.coin(op))
    }
}

/// Validates `block` at `height` against `view` and returns its UTXO changes.
///
/// Runs the context-free block rules, the coinbase rules, every transaction's input rules in
/// order (a transaction may spend an output of an earlier one in the same block, never of a
/// later one), and then every signature in parallel across cores. Header rules (proof of work,
/// target, time) are the caller's: they need the header chain, not the UTXO set.
pub fn connect_block(
    block: &Block,
    height: u64,
    view: &impl UtxoView,
    params: &ChainParams,
) -> Result<BlockConnect, ConsensusError> {
    let txids = block_rules::check_block(block, params)?;
    block_rules::coinbase_commits_to_height(block, block.hash(), height)?;
    connect_checked_block(block, &txids, height, view, params)
}

/// [`connect_block`] for a block that already passed [`block_rules::check_block`] and
/// [`block_rules::coinbase_commits_to_height`] at `height` (storage runs them before it stores
/// a body), with the `txids` those checks computed: the contents are not checked, nor the
/// transactions hashed, again. Checking them is the caller's duty; this function trusts it.
pub fn connect_checked_block(
    block: &Block,
    txids: &[Txid],
    height: u64,
    view: &impl UtxoView,
    params: &ChainParams,
) -> Result<BlockConnect, ConsensusError> {
    let hash = block.hash();
    if txids.len() != block.transactions.len() || block.transactions.is_empty() {
        // A broken caller, not a bad block: refuse rather than index out of bounds.
        return Err(ConsensusError::BadMerkleRoot { hash });
    }

    let mut overlay = BlockOverlay {
        base: view,
        created: HashMap::new(),
        spent: HashSet::new(),
    };
    let mut spent = Vec::new();
    let mut fees = Amount::ZERO;
    // (tx index, input index, coin) for the parallel signature pass.
    let mut checks: Vec<(usize, usize, Coin)> = Vec::new();

    for (i, (tx, txid)) in block.transactions.iter().zip(txids).enumerate().skip(1) {
        tx_rules::lock_time_is_final(tx, *txid, height)?;
        let outputs_total = tx
            .total_output()
            .ok_or(ConsensusError::OutputValueTooLarge {
                txid: *txid,
                max_supply: params.max_supply,
            })?;
        for input in &tx.inputs {
            if overlay.spent.contains(&input.prevout) {
                return Err(ConsensusError::DoubleSpendInBlock {
                    hash,
                    outpoint: input.prevout,
                });
            }
        }
        let (fee, coins) =
            tx_rules::check_inputs(tx, *txid, outputs_total, &overlay, height, params)?;
        fees = fees
            .checked_add(fee)
            .ok_or(ConsensusError::FeeOverflow { hash })?;
        for (j, (input, coin)) in tx.inputs.iter().zip(coins).enumerate() {
            overlay.spent.insert(input.prevout);
            if overlay.created.remove(&input.prevout).is_none() {
                spent.push((input.prevout, coin));
            }
            checks.push((i, j, coin));
        }
        for (vout, out) in tx.outputs.iter().enumerate() {
            overlay.created.insert(
                OutPoint::new(*txid, vout as u32),
                Coin {
                    output: *out,
                    height,
                    coinbase: false,
                },
            );
        }
    }

    let coinbase = &block.transactions[0];
    let paid = coinbase
        .total_output()
        .ok_or(ConsensusError::OutputValueTooLarge {
            txid: txids[0],
            max_supply: params.max_supply,
        })?;
    let allowed = block_subsidy(params, height)
        .checked_add(fees)
        .ok_or(ConsensusError::FeeOverflow { hash })?;
    block_rules::coinbase_value_within(paid, allowed, hash)?;
    for (vout, out) in coinbase.outputs.iter().enumerate() {
        overlay.created.insert(
            OutPoint::new(txids[0], vout as u32),
            Coin {
                output: *out,
                height,
                coinbase: true,
            },
        );
    }

    signatures_in_parallel(block, txids, &checks, params)?;

    // Deterministic order for storage and tests: by transaction, then output index.
    let mut created: Vec<(OutPoint, Coin)> = overlay.created.into_iter().collect();
    let order: HashMap<_, _> = txids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    created.sort_by_key(|(op, _)| (order.get(&op.txid).copied().unwrap_or(usize::MAX), op.vout));
    Ok(BlockConnect {
        spent,
        created,
        fees,
    })
}

/// # Consensus
/// > Every input's signature must be valid (see the transaction rule); the block is invalid at
/// > the first failing input in block order.
fn signatures_in_parallel(
    block: &Block,
    txids: &[cairn_primitives::Txid],
    checks: &[(usize, usize, Coin)],
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    let genesis = params.genesis_hash();
    let messages: Vec<[u8; 32]> = txids.iter().map(|t| sighash(&genesis, t)).collect();
    let first_bad = checks
        .par_iter()
        .enumerate()
        .filter(|(_, (i, j, coin))| {
            !verify(
                &coin.output.pubkey,
                &messages[*i],
                &block.transactions[*i].inputs[*j].signature,
            )
        })
        .map(|(k, _)| k)
        .min();
    match first_bad {
        None => Ok(()),
        Some(k) => {
            let (i, j, _) = checks[k];
            Err(ConsensusError::InvalidSignature {
                txid: txids[i],
                input: j,
            })
        }
    }
}

/// Undoes `delta` (from [`connect_block`]) on a set of UTXO changes: the coins to restore and
/// the outpoints to delete. Provided so storage and tests share one definition of "undo".
pub fn disconnect_block(delta: &BlockConnect) -> (Vec<(OutPoint, Coin)>, Vec<OutPoint>) {
    (
        delta.spent.clone(),
        delta.created.iter().map(|(op, _)| *op).collect(),
    )
}
