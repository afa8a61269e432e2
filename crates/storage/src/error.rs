use cairn_consensus::ConsensusError;
use cairn_primitives::BlockHash;
use thiserror::Error;

/// Everything storage and the chain state machine can fail with.
#[derive(Debug, Error)]
pub enum StorageError {
    /// RocksDB itself failed (I/O error, full disk, lock held by another process...).
    #[error("database error: {0}")]
    Db(#[from] rocksdb::Error),
    /// Bytes read from disk do not decode, or facts on disk contradict each other.
    #[error("corrupt database: {what} at {location}: {detail}")]
    Corrupt {
        what: &'static str,
        location: String,
        detail: String,
    },
    /// The data directory was written by an incompatible version of Cairn.
    #[error(
        "incompatible data directory {dir}: schema version {found}, this build reads version {expected}; \
         re-sync into a new data directory (or use a matching cairnd)"
    )]
    SchemaMismatch {
        dir: String,
        found: String,
        expected: u32,
    },
    /// A read needs the transaction/address indexes, which are still catching up with the tip
    /// (after a sync); see `getindexinfo`.
    #[error(
        "the transaction and address indexes are catching up: indexed to height {indexed} of {tip}; try again shortly"
    )]
    IndexBehind { indexed: u64, tip: u64 },
    /// The background indexer stopped on an error; the indexes stay where they were.
    #[error("the transaction and address indexes stopped at height {indexed}: {reason}")]
    IndexFailed { indexed: u64, reason: String },
    /// The data directory holds another chain (different genesis).
    #[error("data directory {dir} holds the chain with genesis {found}, not {expected}")]
    WrongChain {
        dir: String,
        found: BlockHash,
        expected: BlockHash,
    },
    /// The header or block breaks a consensus rule (not cached: e.g. a mutated body or a time
    /// too far in the future may be fine when it arrives again correctly).
    #[error("{0}")]
    Consensus(#[from] ConsensusError),
    /// The block or header was found invalid before; it is never tried again.
    #[error("block {hash} is known invalid: {reason}")]
    KnownInvalid { hash: BlockHash, reason: String },
    /// A header whose parent is unknown (headers must arrive in order).
    #[error("header {hash} has unknown parent {parent}")]
    UnknownParent { hash: BlockHash, parent: BlockHash },
    /// A block whose header does not match the one claimed (e.g. merkle root mismatch).
    #[error("block {hash} does not match its header: {reason}")]
    MutatedBlock { hash: BlockHash, reason: String },
    /// Valid as far as checked, but not kept: below the minimum chain work, beyond the
    /// side-branch limits, or an unrequested block that cannot become the tip. Nobody's fault.
    #[error("block {hash} not kept: {reason}")]
    NotKept { hash: BlockHash, reason: String },
    /// Something asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

impl StorageError {
    /// A [`StorageError::Corrupt`] for a value that failed to decode.
    pub(crate) fn corrupt(
        what: &'static str,
        location: impl std::fmt::Display,
        detail: impl std::fmt::Display,
    ) -> Self {
        StorageError::Corrupt {
            what,
            location: location.to_string(),
            detail: detail.to_string(),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
