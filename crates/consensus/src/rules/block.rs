//! Block rules that need no chain state, and the coinbase rules that need only the height.

use std::collections::HashSet;

use cairn_primitives::{Amount, Block, BlockHash, Txid};

use crate::{ChainParams, ConsensusError};

/// # Consensus
/// > A block's encoding must not exceed `max_block_size` bytes.
pub fn size_within_limit(
    block: &Block,
    hash: BlockHash,
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    let size = block.size();
    if size > params.max_block_size {
        return Err(ConsensusError::BlockTooLarge {
            hash,
            size,
            limit: params.max_block_size,
        });
    }
    Ok(())
}

/// # Consensus
/// > A block must contain exactly one coinbase (a transaction with no inputs), and it must be
/// > the first transaction.
pub fn coinbase_is_first_and_only(block: &Block, hash: BlockHash) -> Result<(), ConsensusError> {
    let first = block
        .transactions
        .first()
        .ok_or(ConsensusError::EmptyBlock { hash })?;
    if !first.is_coinbase() {
        return Err(ConsensusError::FirstTxNotCoinbase { hash });
    }
    if let Some(index) = block
        .transactions
        .iter()
        .skip(1)
        .position(|t| t.is_coinbase())
    {
        return Err(ConsensusError::MultipleCoinbase {
            hash,
            index: index + 1,
        });
    }
    Ok(())
}

/// # Consensus
/// > The header's merkle root must equal the merkle root of the block's wtxids, computed with
/// > domain-separated leaves and inner nodes, odd nodes carried up, and the leaf count committed
/// > (so `[a, b, c]` and `[a, b, c, c]` differ: CVE-2012-2459).
pub fn merkle_root_matches(block: &Block, hash: BlockHash) -> Result<(), ConsensusError> {
    if block.compute_merkle_root() != block.header.merkle_root {
        return Err(ConsensusError::BadMerkleRoot { hash });
    }
    Ok(())
}

/// # Consensus
/// > No two transactions of a block may have the same txid.
pub fn no_duplicate_transactions(txids: &[Txid], hash: BlockHash) -> Result<(), ConsensusError> {
    let mut seen = HashSet::with_capacity(txids.len());
    for txid in txids {
        if !seen.insert(*txid) {
            return Err(ConsensusError::DuplicateTransaction { hash, txid: *txid });
        }
    }
    Ok(())
}

/// # Consensus
/// > The coinbase's lock time must equal the block's height (so coinbase txids are unique).
pub fn coinbase_commits_to_height(
    block: &Block,
    hash: BlockHash,
    height: u64,
) -> Result<(), ConsensusError> {
    let found = block.transactions.first().map_or(0, |t| t.lock_time);
    if u64::from(found) != height {
        return Err(ConsensusError::CoinbaseHeightMismatch {
            hash,
            found,
            height,
        });
    }
    Ok(())
}

/// # Consensus
/// > The coinbase's outputs must sum to at most the block subsidy plus the block's fees.
pub fn coinbase_value_within(
    paid: Amount,
    allowed: Amount,
    hash: BlockHash,
) -> Result<(), ConsensusError> {
    if paid > allowed {
        return Err(ConsensusError::CoinbaseOverpays {
            hash,
            paid,
            allowed,
        });
    }
    Ok(())
}

/// Context-free block checks: size, coinbase placement, merkle root, duplicate txids and each
/// transaction's own rules. Returns the txids (computed once, reused by the caller).
pub fn check_block(block: &Block, params: &ChainParams) -> Result<Vec<Txid>, ConsensusError> {
    let hash = block.hash();
    size_within_limit(block, hash, params)?;
    coinbase_is_first_and_only(block, hash)?;
    merkle_root_matches(block, hash)?;
    check_block_contents(block, hash, params)
}

/// The checks of [`check_block`] other than the merkle root, for a caller that checked the root
/// first (storage does: a body that does not match its header says nothing about the header,
/// while a matching body that breaks a rule makes the block invalid).
pub fn check_block_contents(
    block: &Block,
    hash: BlockHash,
    params: &ChainParams,
) -> Result<Vec<Txid>, ConsensusError> {
    size_within_limit(block, hash, params)?;
    coinbase_is_first_and_only(block, hash)?;
    let txids: Vec<Txid> = block.transactions.iter().map(|t| t.txid()).collect();
    no_duplicate_transactions(&txids, hash)?;
    let coinbase = &block.transactions[0];
    crate::rules::tx::output_values_in_range(coinbase, txids[0], params)?;
    for (tx, txid) in block.transactions.iter().zip(&txids).skip(1) {
        crate::rules::tx::check_transaction(tx, *txid, params)?;
    }
    Ok(txids)
}
