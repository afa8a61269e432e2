//! Cairn's consensus: chain parameters, every validation rule, proof of work and difficulty,
//! chain work for fork choice, and block connection as a pure function.
//!
//! This crate owns *what is valid*. It never does I/O, never reads a clock (the caller passes
//! `now`), and never imports storage, networking or an async runtime: rules are pure functions
//! over data and a [`UtxoView`], so they can be tested and audited on their own.
//!
//! Each rule is one small public function whose doc comment quotes the rule from
//! `docs/protocol.md`; each failure is a [`ConsensusError`] variant carrying the values compared.
//!
//! Main entry points: [`ChainParams::from_genesis_json`], [`rules::header`] (header rules),
//! [`rules::block::check_block`] (context-free block rules), [`connect::connect_block`] (UTXO
//! changes and undo data, signatures checked in parallel), [`difficulty::next_bits`].

pub mod connect;
pub mod difficulty;
mod error;
pub mod params;
pub mod pow;
pub mod rules;
pub mod sigcache;
pub mod subsidy;
pub mod view;

pub use connect::{
    BlockConnect, InputsChecked, SigCheck, check_signatures, connect_block, connect_checked_block,
    connect_checked_block_cached, connect_inputs, disconnect_block,
};
pub use error::ConsensusError;
pub use params::{ChainParams, DifficultyAlgorithm};
pub use pow::{ChainWork, Target};
pub use sigcache::SigCache;
pub use view::{Coin, MemoryUtxoSet, UtxoView};

/// Maximum seconds a block's time may be ahead of the validating node's clock (2 hours).
pub const MAX_FUTURE_BLOCK_TIME: u64 = 2 * 60 * 60;
/// Number of previous blocks whose median time a new block's time must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;
