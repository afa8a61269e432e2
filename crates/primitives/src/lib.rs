//! Cairn's vocabulary: the types every other crate speaks, their canonical byte encoding,
//! hashes, keys, Schnorr signatures and bech32m addresses.
//!
//! This crate owns *what things are* and *how they are written down*. It never does I/O, never
//! reads a clock and knows no consensus rule beyond the shape of the data: whether a transaction
//! is valid is `cairn-consensus`'s question.
//!
//! Main types: [`Transaction`], [`Block`], [`BlockHeader`], [`Txid`], [`BlockHash`], [`Amount`],
//! [`Address`], [`SecretKey`] / [`XOnlyPublicKey`]. Encoding goes through [`encoding`] only.

pub mod address;
pub mod amount;
pub mod block;
pub mod encoding;
mod error;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod transaction;

pub use address::{Address, Bech32mError};
pub use amount::{Amount, COIN};
pub use block::{Block, BlockHeader};
pub use error::PrimitivesError;
pub use hash::{BlockHash, Hash256, MerkleRoot, Txid, Wtxid, double_sha256, sha256, tagged_hash};
pub use keys::{SecretKey, Signature, XOnlyPublicKey, sighash};
pub use transaction::{OutPoint, Transaction, TxIn, TxOut};
