//! Context-free prechecks: the part of acceptance that needs no pool state, so it runs on any
//! thread (signatures in parallel) outside the task that owns the pool.

use std::sync::Arc;

use cairn_consensus::rules::tx::check_transaction;
use cairn_consensus::{ChainParams, ConsensusError, SigCache, UtxoView};
use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{Amount, Transaction, Txid, XOnlyPublicKey};

use crate::{MempoolConfig, MempoolError};

/// A transaction that passed [`precheck`].
#[derive(Clone, Debug)]
pub struct Prechecked {
    pub(super) tx: Arc<Transaction>,
    pub(super) txid: Txid,
    pub(super) size: usize,
    pub(super) outputs_total: Amount,
    /// `verified[i]`: the key input i's signature was checked against, if its coin was found.
    pub(super) verified: Vec<Option<XOnlyPublicKey>>,
    /// Signatures were checked when the transaction was first accepted (re-adds after a
    /// reorganisation, the pool file of this node): skip checking them again.
    pub(super) trusted: bool,
}

impl Prechecked {
    pub fn txid(&self) -> Txid {
        self.txid
    }
    pub fn tx(&self) -> &Arc<Transaction> {
        &self.tx
    }
}

/// Stage 1, stateless, for any thread: context-free consensus rules, size and dust policy, and
/// the signature of every input whose coin `chain` has. Inputs it cannot resolve (unconfirmed
/// parents) are checked by [`Mempool::accept_prechecked`](super::Mempool::accept_prechecked).
pub fn precheck(
    tx: Transaction,
    chain: &impl UtxoView,
    params: &ChainParams,
    config: &MempoolConfig,
) -> Result<Prechecked, MempoolError> {
    precheck_cached(tx, chain, params, config, None, |_| false)
}

/// [`precheck`] that records every signature it verifies in `sigs`, so the block that later
/// confirms the transaction does not verify it again (as Bitcoin Core's signature cache).
/// A transaction `pooled` says the pool already holds is refused at once, before any coin read
/// or signature check, with the error the final stage would give: most copies of a relayed
/// transaction arrive after it was pooled (fetched from one peer, then gossiped by others).
pub fn precheck_cached(
    tx: Transaction,
    chain: &impl UtxoView,
    params: &ChainParams,
    config: &MempoolConfig,
    sigs: Option<&SigCache>,
    pooled: impl Fn(&Txid) -> bool,
) -> Result<Prechecked, MempoolError> {
    let txid = tx.txid();
    if pooled(&txid) {
        return Err(MempoolError::AlreadyInPool { txid });
    }
    if tx.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase { txid }.into());
    }
    let size = tx.size();
    if size > config.max_tx_size {
        return Err(MempoolError::TooLarge {
            size,
            limit: config.max_tx_size,
        });
    }
    let outputs_total = check_transaction(&tx, txid, params)?;
    if let Some((vout, o)) = tx
        .outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.value < config.dust_threshold)
    {
        return Err(MempoolError::Dust {
            vout,
            value: o.value.0,
            threshold: config.dust_threshold.0,
        });
    }
    let msg = sighash(&params.genesis_hash(), &txid);
    let mut verified = vec![None; tx.inputs.len()];
    for (i, input) in tx.inputs.iter().enumerate() {
        if let Some(coin) = chain.coin(&input.prevout) {
            let valid = match sigs {
                Some(cache) => cache.verify_and_insert(&coin.output.pubkey, &msg, &input.signature),
                None => verify(&coin.output.pubkey, &msg, &input.signature),
            };
            if !valid {
                return Err(ConsensusError::InvalidSignature { txid, input: i }.into());
            }
            verified[i] = Some(coin.output.pubkey);
        }
    }
    Ok(Prechecked {
        tx: Arc::new(tx),
        txid,
        size,
        outputs_total,
        verified,
        trusted: false,
    })
}

/// Context-free checks only, for transactions whose signatures were already verified.
pub(super) fn precheck_trusted(
    tx: &Arc<Transaction>,
    params: &ChainParams,
    config: &MempoolConfig,
) -> Result<Prechecked, MempoolError> {
    let txid = tx.txid();
    if tx.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase { txid }.into());
    }
    let outputs_total = check_transaction(tx, txid, params)?;
    let size = tx.size();
    if size > config.max_tx_size {
        return Err(MempoolError::TooLarge {
            size,
            limit: config.max_tx_size,
        });
    }
    Ok(Prechecked {
        tx: Arc::clone(tx),
        txid,
        size,
        outputs_total,
        verified: vec![None; tx.inputs.len()],
        trusted: true,
    })
}
