//! Where block-connect time goes, per stage, summed since the chain was opened: what the sync
//! benchmark and `/metrics` report as the per-block split.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Stages of accepting and connecting one block, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Before connecting: header, merkle root, context-free rules, storing the body.
    Store,
    /// Reading the coins the block spends (UTXO cache, then one RocksDB `multi_get`).
    FetchInputs,
    /// Every consensus rule, signatures included: `connect_inputs`, plus the signature pass,
    /// which the connect pipeline runs beside the previous block's apply and write (so the
    /// stages together can exceed the wall time).
    Verify,
    /// Building the batch: UTXO changes, undo data, height index, tip, digest.
    Apply,
    /// Index entries written in the block's own batch (steady state).
    Index,
    /// The RocksDB write of the batch.
    Write,
    /// Index entries written later by the background indexer (while syncing).
    BackgroundIndex,
    /// Writing the UTXO cache's changes (when full, every few thousand blocks, before a
    /// disconnect and at shutdown).
    Flush,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Store,
        Stage::FetchInputs,
        Stage::Verify,
        Stage::Apply,
        Stage::Index,
        Stage::Write,
        Stage::BackgroundIndex,
        Stage::Flush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Store => "store",
            Stage::FetchInputs => "fetch_inputs",
            Stage::Verify => "verify",
            Stage::Apply => "apply",
            Stage::Index => "index",
            Stage::Write => "write",
            Stage::BackgroundIndex => "background_index",
            Stage::Flush => "flush",
        }
    }
}

/// Summed nanoseconds per stage and counts, updated by the chain task and the indexer.
#[derive(Debug, Default)]
pub struct ConnectTimings {
    nanos: [AtomicU64; 8],
    blocks: AtomicU64,
    txs: AtomicU64,
    background_blocks: AtomicU64,
}

/// A copy of [`ConnectTimings`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectTimingsSnapshot {
    /// Nanoseconds per stage, in [`Stage::ALL`] order.
    pub nanos: [u64; 8],
    /// Blocks connected (by this process).
    pub blocks: u64,
    /// Transactions in them, coinbases included.
    pub txs: u64,
    /// Blocks indexed by the background indexer.
    pub background_blocks: u64,
}

impl ConnectTimingsSnapshot {
    pub fn seconds(&self, stage: Stage) -> f64 {
        self.nanos[stage as usize] as f64 / 1e9
    }
}

impl ConnectTimings {
    pub(crate) fn add(&self, stage: Stage, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[stage as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn block_connected(&self, txs: usize) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.txs.fetch_add(txs as u64, Ordering::Relaxed);
    }

    pub(crate) fn blocks_indexed(&self, n: u64) {
        self.background_blocks.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ConnectTimingsSnapshot {
        ConnectTimingsSnapshot {
            nanos: std::array::from_fn(|i| self.nanos[i].load(Ordering::Relaxed)),
            blocks: self.blocks.load(Ordering::Relaxed),
            txs: self.txs.load(Ordering::Relaxed),
            background_blocks: self.background_blocks.load(Ordering::Relaxed),
        }
    }
}
