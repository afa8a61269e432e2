//! Cairn's storage: everything the node keeps on disk, in RocksDB, and the chain state machine
//! that decides which chain is best.
//!
//! This crate owns the block index (headers with their status and cumulative work), block
//! bodies, undo data, the UTXO set (with an in-memory write-through cache and an
//! order-independent digest), the transaction and address indexes (written in the block's batch
//! at the tip, by a background indexer while syncing), and the best-chain decision:
//! most cumulative work among fully available, valid chains, with reorganisations applied one
//! atomic batch per block, so a crash at any instant leaves a consistent database.
//!
//! It never validates anything itself beyond calling `cairn-consensus` (header rules,
//! `connect_block`), never does networking, and never reads the wall clock (`now` is a
//! parameter); the monotonic clock is read only for timings and for when the background
//! indexer runs.
//!
//! Main types:
//! - [`ChainState`]: owned by one task; `accept_header`, `accept_block` (`&mut self`).
//! - [`ChainReader`]: `Clone + Send + Sync`, snapshot reads for the RPC, mempool and network;
//!   implements [`cairn_consensus::UtxoView`].
//! - [`StorageConfig`], [`StorageError`], [`UtxoStats`].
//!
//! Explorer indexes (spender, chain transaction count) and paged reads: [`explorer_index`].
//!
//! Layout on disk: see [`schema`].

pub mod cache;
pub mod chain;
pub mod config;
pub mod digest;
mod error;
pub mod explorer_index;
mod index;
pub mod reader;
pub mod schema;
mod store;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod timings;

pub use chain::{
    AcceptOutcome, AcceptStatus, BatchOutcome, BlockSource, ChainEvent, ChainState, ChainTip,
    HeaderOutcome,
};
pub use config::StorageConfig;
pub use digest::{UtxoDigest, UtxoStats};
pub use error::{StorageError, StorageResult};
pub use explorer_index::{
    AddressTx, ChainTipInfo, HistoryPosition, MAX_PAGE_ENTRIES, Page, Spender, TipStatus,
};
pub use index::IndexProgress;
pub use reader::{BlockTemplateContext, ChainReader, HeaderInfo, MemoryUsage, TxInfo};
pub use schema::BlockStatus;
pub use timings::{ConnectTimingsSnapshot, Stage};
