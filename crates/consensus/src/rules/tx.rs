//! Transaction rules.

use std::collections::HashSet;

use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{Amount, BlockHash, Transaction, Txid};

use crate::view::{Coin, UtxoView};
use crate::{ChainParams, ConsensusError};

/// # Consensus
/// > A non-coinbase transaction must have at least one input and at least one output.
pub fn has_inputs_and_outputs(tx: &Transaction, txid: Txid) -> Result<(), ConsensusError> {
    if tx.inputs.is_empty() {
        return Err(ConsensusError::NoInputs { txid });
    }
    if tx.outputs.is_empty() {
        return Err(ConsensusError::NoOutputs { txid });
    }
    Ok(())
}

/// # Consensus
/// > A transaction must not spend the same output twice (CVE-2018-17144).
pub fn no_duplicate_inputs(tx: &Transaction, txid: Txid) -> Result<(), ConsensusError> {
    let mut seen = HashSet::with_capacity(tx.inputs.len());
    for input in &tx.inputs {
        if !seen.insert(input.prevout) {
            return Err(ConsensusError::DuplicateInput {
                txid,
                outpoint: input.prevout,
            });
        }
    }
    Ok(())
}

/// # Consensus
/// > Every output value, and the sum of a transaction's output values, must be at most the
/// > chain's maximum supply, computed without overflow (CVE-2010-5139).
pub fn output_values_in_range(
    tx: &Transaction,
    txid: Txid,
    params: &ChainParams,
) -> Result<Amount, ConsensusError> {
    let err = ConsensusError::OutputValueTooLarge {
        txid,
        max_supply: params.max_supply,
    };
    let mut total = Amount::ZERO;
    for out in &tx.outputs {
        if out.value > params.max_supply {
            return Err(err);
        }
        total = total
            .checked_add(out.value)
            .filter(|t| *t <= params.max_supply)
            .ok_or(err.clone())?;
    }
    Ok(total)
}

/// # Consensus
/// > A transaction's encoding must not exceed the block size limit.
pub fn size_within_limit(
    tx: &Transaction,
    txid: Txid,
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    let size = tx.size();
    if size > params.max_block_size {
        return Err(ConsensusError::TxTooLarge {
            txid,
            size,
            limit: params.max_block_size,
        });
    }
    Ok(())
}

/// Context-free checks of a non-coinbase transaction. Returns the total output value.
pub fn check_transaction(
    tx: &Transaction,
    txid: Txid,
    params: &ChainParams,
) -> Result<Amount, ConsensusError> {
    has_inputs_and_outputs(tx, txid)?;
    size_within_limit(tx, txid, params)?;
    no_duplicate_inputs(tx, txid)?;
    output_values_in_range(tx, txid, params)
}

/// # Consensus
/// > A transaction's lock time is the earliest height of a block that may include it: it is
/// > final at height h when `lock_time <= h`.
pub fn lock_time_is_final(tx: &Transaction, txid: Txid, height: u64) -> Result<(), ConsensusError> {
    if u64::from(tx.lock_time) > height {
        return Err(ConsensusError::NotFinal {
            txid,
            lock_time: tx.lock_time,
            height,
        });
    }
    Ok(())
}

/// # Consensus
/// > A coinbase output created at height c may be spent only in a block at height
/// > `h >= c + coinbase_maturity`.
pub fn coinbase_is_mature(
    coin: &Coin,
    txid: Txid,
    outpoint: cairn_primitives::OutPoint,
    height: u64,
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    if coin.coinbase && height < coin.height.saturating_add(params.coinbase_maturity) {
        return Err(ConsensusError::ImmatureCoinbaseSpend {
            txid,
            outpoint,
            coin_height: coin.height,
            height,
            maturity: params.coinbase_maturity,
        });
    }
    Ok(())
}

/// Looks up every input in `view` and checks existence, maturity, value range and fee.
/// Returns the fee and the spent coins, in input order.
///
/// # Consensus
/// > Every input must name an existing unspent output; the sum of inputs must be at most the
/// > maximum supply; the fee (inputs minus outputs) must not be negative.
pub fn check_inputs(
    tx: &Transaction,
    txid: Txid,
    outputs_total: Amount,
    view: &impl UtxoView,
    height: u64,
    params: &ChainParams,
) -> Result<(Amount, Vec<Coin>), ConsensusError> {
    let mut coins = Vec::with_capacity(tx.inputs.len());
    let mut total = Amount::ZERO;
    for input in &tx.inputs {
        let coin = view
            .coin(&input.prevout)
            .ok_or(ConsensusError::MissingInput {
                txid,
                outpoint: input.prevout,
            })?;
        coinbase_is_mature(&coin, txid, input.prevout, height, params)?;
        total = total
            .checked_add(coin.output.value)
            .filter(|t| *t <= params.max_supply)
            .ok_or(ConsensusError::InputValueTooLarge { txid })?;
        coins.push(coin);
    }
    let fee = total
        .checked_sub(outputs_total)
        .ok_or(ConsensusError::NegativeFee {
            txid,
            inputs: total,
            outputs: outputs_total,
        })?;
    Ok((fee, coins))
}

/// # Consensus
/// > Input i must carry a valid BIP340 signature, by the x-only key of the output it spends, of
/// > `tagged_hash("cairn/sighash", genesis_hash || txid)`.
pub fn signatures_are_valid(
    tx: &Transaction,
    txid: Txid,
    coins: &[Coin],
    genesis: &BlockHash,
) -> Result<(), ConsensusError> {
    let msg = sighash(genesis, &txid);
    for (i, (input, coin)) in tx.inputs.iter().zip(coins).enumerate() {
        if !verify(&coin.output.pubkey, &msg, &input.signature) {
            return Err(ConsensusError::InvalidSignature { txid, input: i });
        }
    }
    Ok(())
}

/// Full validation of a non-coinbase transaction against a view at `height` (as the mempool
/// does before acceptance). Returns the fee and the spent coins.
pub fn validate_transaction(
    tx: &Transaction,
    view: &impl UtxoView,
    height: u64,
    params: &ChainParams,
) -> Result<(Amount, Vec<Coin>), ConsensusError> {
    let txid = tx.txid();
    if tx.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase { txid });
    }
    let outputs_total = check_transaction(tx, txid, params)?;
    lock_time_is_final(tx, txid, height)?;
    let (fee, coins) = check_inputs(tx, txid, outputs_total, view, height, params)?;
    signatures_are_valid(tx, txid, &coins, &params.genesis_hash())?;
    Ok((fee, coins))
}
