//! Block connection as a pure function: a block and a UTXO view in, the UTXO changes and the
//! undo data out, or the first rule the block breaks.

use std::collections::{HashMap, HashSet};

use cairn_primitives::keys::{XOnlyPublicKey, sighash, verify};
use cairn_primitives::{Amount, Block, OutPoint, Txid};
use rayon::prelude::*;

use crate::rules::{block as block_rules, tx as tx_rules};
use crate::sigcache::SigCache;
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
    /// With the index of the transaction that created it, for the order of the result.
    created: HashMap<OutPoint, (usize, Coin)>,
    spent: HashSet<OutPoint>,
}

impl<V: UtxoView> UtxoView for BlockOverlay<'_, V> {
    fn coin(&self, op: &OutPoint) -> Option<Coin> {
        if self.spent.contains(op) {
            return None;
        }
        self.created
            .get(op)
            .map(|(_, c)| *c)
            .or_else(|| self.base.coin(op))
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
    connect_checked_block_cached(block, txids, height, view, params, None)
}

/// [`connect_checked_block`] skipping the signatures `sigs` holds (checked before; each entry
/// is consumed).
pub fn connect_checked_block_cached(
    block: &Block,
    txids: &[Txid],
    height: u64,
    view: &impl UtxoView,
    params: &ChainParams,
    sigs: Option<&SigCache>,
) -> Result<BlockConnect, ConsensusError> {
    let checked = connect_inputs(block, txids, height, view, params)?;
    check_signatures(block, txids, &checked.checks, params, sigs)?;
    Ok(checked.delta)
}

/// One signature a block's connect leaves for last: input `input` of transaction `tx`, by the
/// key of the coin it spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigCheck {
    pub tx: usize,
    pub input: usize,
    pub pubkey: XOnlyPublicKey,
}

/// A block that passed every rule that reads the UTXO set: its changes, and the signatures
/// still to check before it is valid ([`check_signatures`]).
#[derive(Clone, Debug)]
pub struct InputsChecked {
    pub delta: BlockConnect,
    pub checks: Vec<SigCheck>,
}

/// The UTXO half of [`connect_checked_block`]: every rule except the signatures, which it
/// returns as [`SigCheck`]s. Split so a caller can check one block's signatures on every core
/// while it runs this half of the next block against a view that includes the first block's
/// changes (storage's sync pipeline); the block is valid only once [`check_signatures`] passed.
pub fn connect_inputs(
    block: &Block,
    txids: &[Txid],
    height: u64,
    view: &impl UtxoView,
    params: &ChainParams,
) -> Result<InputsChecked, ConsensusError> {
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
    let mut checks: Vec<SigCheck> = Vec::new();

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
            checks.push(SigCheck {
                tx: i,
                input: j,
                pubkey: coin.output.pubkey,
            });
        }
        for (vout, out) in tx.outputs.iter().enumerate() {
            overlay.created.insert(
                OutPoint::new(*txid, vout as u32),
                (
                    i,
                    Coin {
                        output: *out,
                        height,
                        coinbase: false,
                    },
                ),
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
            (
                0,
                Coin {
                    output: *out,
                    height,
                    coinbase: true,
                },
            ),
        );
    }

    // Deterministic order for storage and tests: by transaction, then output index.
    let mut created: Vec<(usize, OutPoint, Coin)> = overlay
        .created
        .into_iter()
        .map(|(op, (i, coin))| (i, op, coin))
        .collect();
    created.sort_unstable_by_key(|(i, op, _)| (*i, op.vout));
    let created = created.into_iter().map(|(_, op, c)| (op, c)).collect();
    Ok(InputsChecked {
        delta: BlockConnect {
            spent,
            created,
            fees,
        },
        checks,
    })
}

/// Checks `checks` (from [`connect_inputs`] on the same block and txids) on every core,
/// skipping the signatures `sigs` holds.
///
/// # Consensus
/// > Every input's signature must be valid (see the transaction rule); the block is invalid at
/// > the first failing input in block order.
pub fn check_signatures(
    block: &Block,
    txids: &[Txid],
    checks: &[SigCheck],
    params: &ChainParams,
    sigs: Option<&SigCache>,
) -> Result<(), ConsensusError> {
    let genesis = params.genesis_hash();
    let messages: Vec<[u8; 32]> = txids.iter().map(|t| sighash(&genesis, t)).collect();
    // An empty cache cannot answer: a node syncing from scratch has verified nothing ahead,
    // and a lookup costs a SHA-256 and a lock per signature.
    let sigs = sigs.filter(|cache| !cache.is_empty());
    let valid = |c: &SigCheck| -> Option<bool> {
        let msg = messages.get(c.tx)?;
        let sig = &block.transactions.get(c.tx)?.inputs.get(c.input)?.signature;
        let known_valid = sigs.is_some_and(|cache| cache.take(&c.pubkey, msg, sig));
        Some(known_valid || verify(&c.pubkey, msg, sig))
    };
    let first_bad = checks
        .par_iter()
        .enumerate()
        .filter(|(_, c)| valid(c) != Some(true))
        .map(|(k, _)| k)
        .min();
    match first_bad {
        None => Ok(()),
        Some(k) => {
            let c = checks[k];
            match txids.get(c.tx) {
                Some(txid) => Err(ConsensusError::InvalidSignature {
                    txid: *txid,
                    input: c.input,
                }),
                // Checks that do not belong to this block: a broken caller, refused.
                None => Err(ConsensusError::BadMerkleRoot { hash: block.hash() }),
            }
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
