use cairn_primitives::{Amount, BlockHash, OutPoint, Txid};
use thiserror::Error;

/// The first consensus rule a header, block, transaction or genesis file breaks, with the values
/// a log reader needs.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConsensusError {
    // --- genesis.json ---
    #[error("genesis: field `{field}`: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("genesis: {0}")]
    GenesisJson(String),

    // --- transaction rules ---
    #[error("transaction {txid} has no inputs")]
    NoInputs { txid: Txid },
    #[error("transaction {txid} has no outputs")]
    NoOutputs { txid: Txid },
    #[error("transaction {txid} spends {outpoint} twice")]
    DuplicateInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid}: output values sum above the maximum supply {max_supply:?}")]
    OutputValueTooLarge { txid: Txid, max_supply: Amount },
    #[error("transaction {txid}: input values sum above the maximum supply")]
    InputValueTooLarge { txid: Txid },
    #[error("transaction {txid} is {size} bytes, above the limit of {limit}")]
    TxTooLarge {
        txid: Txid,
        size: usize,
        limit: usize,
    },
    #[error("transaction {txid} spends {outpoint}, which does not exist or is already spent")]
    MissingInput { txid: Txid, outpoint: OutPoint },
    #[error(
        "transaction {txid} spends coinbase output {outpoint} from height {coin_height} at height {height}; coinbase outputs mature after {maturity} blocks"
    )]
    ImmatureCoinbaseSpend {
        txid: Txid,
        outpoint: OutPoint,
        coin_height: u64,
        height: u64,
        maturity: u64,
    },
    #[error("transaction {txid} spends {inputs:?} but creates {outputs:?} (negative fee)")]
    NegativeFee {
        txid: Txid,
        inputs: Amount,
        outputs: Amount,
    },
    #[error("transaction {txid} has lock time {lock_time}, not final at height {height}")]
    NotFinal {
        txid: Txid,
        lock_time: u32,
        height: u64,
    },
    #[error("transaction {txid} input {input}: invalid signature")]
    InvalidSignature { txid: Txid, input: usize },
    #[error("transaction {txid} is a coinbase outside the first position of a block")]
    UnexpectedCoinbase { txid: Txid },

    // --- block rules ---
    #[error("block {hash} is {size} bytes, above the limit of {limit}")]
    BlockTooLarge {
        hash: BlockHash,
        size: usize,
        limit: usize,
    },
    #[error("block {hash} has no transactions")]
    EmptyBlock { hash: BlockHash },
    #[error("block {hash}: first transaction is not a coinbase")]
    FirstTxNotCoinbase { hash: BlockHash },
    #[error("block {hash}: transaction {index} is a second coinbase")]
    MultipleCoinbase { hash: BlockHash, index: usize },
    #[error("block {hash}: coinbase lock time {found} does not commit to height {height}")]
    CoinbaseHeightMismatch {
        hash: BlockHash,
        found: u32,
        height: u64,
    },
    #[error("block {hash}: coinbase pays {paid:?}, above subsidy + fees {allowed:?}")]
    CoinbaseOverpays {
        hash: BlockHash,
        paid: Amount,
        allowed: Amount,
    },
    #[error("block {hash}: merkle root does not match its transactions")]
    BadMerkleRoot { hash: BlockHash },
    #[error("block {hash}: transaction {txid} appears twice")]
    DuplicateTransaction { hash: BlockHash, txid: Txid },
    #[error("block {hash}: output {outpoint} is spent twice within the block")]
    DoubleSpendInBlock { hash: BlockHash, outpoint: OutPoint },
    #[error("block {hash}: total fees overflow")]
    FeeOverflow { hash: BlockHash },

    // --- header rules ---
    #[error("header {hash}: hash is above the target of bits {bits:#010x}")]
    HighHash { hash: BlockHash, bits: u32 },
    #[error(
        "header {hash}: bits {bits:#010x} is not a valid target at or below the easiest target"
    )]
    InvalidBits { hash: BlockHash, bits: u32 },
    #[error("header {hash}: bits {found:#010x}, expected {expected:#010x}")]
    UnexpectedBits {
        hash: BlockHash,
        found: u32,
        expected: u32,
    },
    #[error("header {hash}: time {time} is not above the median time past {median}")]
    TimeTooOld {
        hash: BlockHash,
        time: u64,
        median: u64,
    },
    #[error("header {hash}: time {time} is more than {max_ahead} s ahead of local time {now}")]
    TimeTooNew {
        hash: BlockHash,
        time: u64,
        now: u64,
        max_ahead: u64,
    },
    #[error("header {hash}: parent {parent} does not match the expected {expected}")]
    WrongParent {
        hash: BlockHash,
        parent: BlockHash,
        expected: BlockHash,
    },
}

impl ConsensusError {
    /// Whether the failure depends on the validating node's clock ("too far in the future"):
    /// such a header may become valid later, so it is neither cached as invalid nor punished.
    pub fn depends_on_clock(&self) -> bool {
        matches!(self, ConsensusError::TimeTooNew { .. })
    }
}
