//! The wallet library's one error type. Every variant carries what the user needs to act on it,
//! and every message fits on one line (the CLI prints it after `error: `).

use std::path::PathBuf;

use cairn_primitives::Bech32mError;
use thiserror::Error;

/// Everything that can go wrong in the wallet library.
#[derive(Debug, Error)]
pub enum WalletError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wallet file already exists at {0} (refusing to overwrite it)")]
    AlreadyExists(PathBuf),
    #[error("no wallet file at {0} (create one with `cairn-wallet new` or `cairn-wallet import`)")]
    NotFound(PathBuf),
    #[error("wallet file {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("wallet file {path} has version {found}; this wallet reads version {supported}")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("invalid key-derivation parameters: {0}")]
    Kdf(String),
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    #[error("key derivation failed: {0}")]
    Derivation(String),
    #[error(
        "wallet file does not match its seed: cached {chain} key {index} differs from the derived one (file tampered with?)"
    )]
    CacheMismatch { chain: &'static str, index: u32 },
    #[error("invalid address {address:?}: {kind}")]
    InvalidAddress { address: String, kind: Bech32mError },
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    #[error(
        "insufficient funds: need {needed} coins (amount + fee), spendable {available} coins, short by {short} coins"
    )]
    InsufficientFunds {
        needed: String,
        available: String,
        short: String,
    },
    #[error("amount {amount} coins is below the node's dust threshold of {dust} coins")]
    AmountBelowDust { amount: String, dust: String },
    #[error(
        "fee rate {given} is below the node's minimum relay fee rate of {minimum} base units per byte"
    )]
    FeeRateTooLow { given: u64, minimum: u64 },
    #[error(
        "paying this would need more than {limit} inputs (too many small coins): consolidate them first with `cairn-wallet send --to \"$(cairn-wallet address)\" --all`, then send again"
    )]
    TooManyInputs { limit: usize },
    #[error(
        "this wallet belongs to the chain with genesis {wallet_genesis} (addresses {wallet_prefix}1...), but {other} is on the chain with genesis {other_genesis} (addresses {other_prefix}1...); nothing was changed: use a wallet made for that chain (`cairn-wallet --genesis FILE new`)"
    )]
    WrongChain {
        wallet_genesis: String,
        wallet_prefix: String,
        other: String,
        other_genesis: String,
        other_prefix: String,
    },
    #[error("fee refused: {0}")]
    FeeTooHigh(String),
    #[error(
        "the node misreported the coin {outpoint}: {detail}; nothing was signed or sent (is the node, or the connection to it, trustworthy?)"
    )]
    NodeLied { outpoint: String, detail: String },
    #[error("node unreachable at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("node at {url} answered HTTP {status} to {method}")]
    Http {
        url: String,
        method: String,
        status: u16,
    },
    #[error("node error on {method} (code {code}): {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("transaction rejected by the node's mempool: {reason}")]
    Rejected { reason: String },
    #[error("unexpected answer from the node to {method}: {detail}")]
    BadResponse { method: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl WalletError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        WalletError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result with [`WalletError`].
pub type Result<T, E = WalletError> = std::result::Result<T, E>;
