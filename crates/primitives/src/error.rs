use thiserror::Error;

/// Everything that can go wrong when turning outside bytes or text into Cairn types.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PrimitivesError {
    #[error("encoded value is {size} bytes, above the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    #[error("encoding is not canonical (re-encoding gives different bytes)")]
    NonCanonical,
    #[error("invalid hex: {0}")]
    Hex(String),
    #[error("expected {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("invalid amount {input:?}: {reason}")]
    Amount { input: String, reason: &'static str },
    #[error("amount overflow")]
    AmountOverflow,
    #[error("invalid secret key")]
    InvalidSecretKey,
    #[error("invalid public key (not an x-only secp256k1 point)")]
    InvalidPublicKey,
    #[error(transparent)]
    Address(#[from] crate::address::Bech32mError),
}
