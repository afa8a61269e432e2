//! Cairn's mempool: valid unconfirmed transactions, the relay policy that admits them, and the
//! selection of the next block's transactions.
//!
//! **Owns**: the pool (entries with ancestor/descendant aggregates, the spent-output index, a
//! fee-rate index for eviction), the orphan pool, replacement (RBF) rules, the byte limit with
//! its rolling minimum fee, expiry, block templates (ancestor fee rate, so a child pays for its
//! parent), the fee estimator and the pool file.
//!
//! **Never does**: sockets, RocksDB or reading a clock. It sees the chain only through a
//! [`cairn_consensus::UtxoView`] and is told the time (`now`, Unix seconds) and the tip height.
//! Consensus rules come from `cairn-consensus`; this crate adds policy on top.
//!
//! Acceptance is split in two so that signature checks run in parallel outside the owning task:
//! [`precheck`] (stateless: context-free rules and every signature whose coin is confirmed) and
//! [`Mempool::accept_prechecked`] (the owning task: inputs still unspent, the signatures that
//! spend unconfirmed outputs, fees, policy, replacement, insertion).

mod config;
mod error;
mod estimator;
mod persist;
mod pool;

pub use config::*;
pub use error::MempoolError;
pub use pool::{
    AcceptOutcome, AcceptedTx, AddressActivity, EntryInfo, LOCAL, Mempool, MempoolInfo, PeerTag,
    Prechecked, Template, TestAccept, precheck, precheck_cached,
};
