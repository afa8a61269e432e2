use cairn_consensus::ConsensusError;
use cairn_primitives::{OutPoint, Txid};
use thiserror::Error;

/// Why a transaction was not accepted. The RPC shows the message to the user; consensus
/// failures map to JSON-RPC -25, policy refusals ([`MempoolError::is_policy`]) to -26.
#[derive(Debug, Error)]
pub enum MempoolError {
    #[error("{0}")]
    Consensus(#[from] ConsensusError),
    #[error("txn-already-in-mempool: {txid}")]
    AlreadyInPool { txid: Txid },
    #[error(
        "missing-inputs: {txid} spends {outpoint}, which is neither confirmed nor in the mempool"
    )]
    MissingInputs { txid: Txid, outpoint: OutPoint },
    #[error("tx-size: {size} bytes, above the relay limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("dust: output {vout} pays {value} base units, below the dust threshold of {threshold}")]
    Dust {
        vout: usize,
        value: u64,
        threshold: u64,
    },
    #[error("min relay fee not met: {fee} < {required} base units ({size} bytes at {rate}/byte)")]
    FeeTooLow {
        fee: u64,
        required: u64,
        size: usize,
        rate: u64,
    },
    #[error(
        "mempool min fee not met: {fee} < {required} base units (the pool is full; its minimum is {rate}/byte)"
    )]
    PoolMinFeeNotMet { fee: u64, required: u64, rate: u64 },
    #[error("too-long-mempool-chain: {count} unconfirmed ancestors (with itself), limit {limit}")]
    TooManyAncestors { count: usize, limit: usize },
    #[error("too-long-mempool-chain: unconfirmed ancestors weigh {size} bytes, limit {limit}")]
    AncestorsTooLarge { size: usize, limit: usize },
    #[error(
        "too-long-mempool-chain: ancestor {ancestor} would have {count} descendants, limit {limit}"
    )]
    TooManyDescendants {
        ancestor: Txid,
        count: usize,
        limit: usize,
    },
    #[error(
        "too-long-mempool-chain: descendants of {ancestor} would weigh {size} bytes, limit {limit}"
    )]
    DescendantsTooLarge {
        ancestor: Txid,
        size: usize,
        limit: usize,
    },
    #[error("txn-mempool-conflict: {reason}")]
    Replacement { reason: String },
    #[error("too many replacements: would evict {count} transactions, limit {limit}")]
    TooManyReplacements { count: usize, limit: usize },
    #[error("mempool full: the transaction's fee rate is below what the full pool keeps")]
    PoolFull,
    #[error("mempool file: {0}")]
    Io(#[from] std::io::Error),
    #[error("mempool file is corrupt: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl MempoolError {
    /// A refusal by this node's relay policy (JSON-RPC -26), as opposed to a transaction that no
    /// node may accept now (consensus or missing inputs: -25) or an internal failure.
    pub fn is_policy(&self) -> bool {
        !matches!(
            self,
            MempoolError::Consensus(_)
                | MempoolError::MissingInputs { .. }
                | MempoolError::Io(_)
                | MempoolError::Corrupt(_)
                | MempoolError::Internal(_)
        )
    }
}
