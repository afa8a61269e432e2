//! The transaction, address and explorer indexes: what they hold for one block, and how they
//! follow the main chain.
//!
//! The indexes (`tx`, `addr_tx`, `addr_utxo`, `addr_balance`, `spent_by`, `chain_tx`) are not
//! needed to validate anything, so, as Bitcoin Core's `txindex` (`BaseIndex`), they may lag the
//! tip. Their own tip, `meta/index_tip`, is written in the same atomic batch as their entries,
//! so on disk they are always exactly the indexes of the main chain up to that block.
//!
//! Who writes them:
//! - The chain task, in the block's own batch, when the index is at the tip's parent and the
//!   block is near the best header (steady state: answers never lag).
//! - The [`indexer`] thread, which catches up from `index_tip` to the tip in batches of several
//!   blocks, at low CPU priority, while the node syncs (the chain task then writes only what
//!   validation needs: UTXOs, undo data, the height index).
//!
//! One mutex ([`IndexShared`]) orders the two, so `index_tip` is always on the main chain and
//! the indexer only ever moves forward (a disconnect of the block at `index_tip` is un-indexed
//! by the chain task in the disconnect's batch). Every main-chain commit holds it. The indexer
//! holds it only to check and to publish: it checks that its blocks are still on the main
//! chain and marks a commit in flight, writes without the lock, then publishes the new index
//! tip. A connect meanwhile simply leaves its block to the indexer (a connect cannot take a
//! block off the main chain); a disconnect waits for the write in flight. So a syncing chain
//! task never waits behind a large index batch.
//!
//! Readers that answer from the indexes use a snapshot in which `index_tip == tip`; otherwise
//! they wait a bounded time for the indexer and then report how far it is
//! ([`crate::StorageError::IndexBehind`]), never a partial answer as if complete.

pub(crate) mod indexer;
mod writer;

use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use writer::IndexWriter;

use crate::config::SYNC_IDLE_GRACE;
use crate::schema::TipRecord;
use crate::timings::ConnectTimings;

/// State shared by the chain task, the indexer thread and the readers.
#[derive(Debug)]
pub(crate) struct IndexShared {
    state: Mutex<IndexState>,
    /// Signalled when the main chain moves past the index (wakes the indexer) or when the index
    /// moves (wakes readers waiting for it), and on shutdown.
    changed: Condvar,
    /// Where block-connect time goes (read by metrics and benchmarks).
    pub(crate) timings: ConnectTimings,
    /// The UTXO cache's table footprint in bytes, stored by the chain task each time it has
    /// changed the cache: metrics read it without taking the cache's lock at all.
    pub(crate) utxo_cache_bytes: AtomicU64,
}

#[derive(Debug, Clone)]
pub(crate) struct IndexState {
    /// The last block the indexes cover (on the main chain).
    pub(crate) index_tip: TipRecord,
    /// The main-chain tip as last committed.
    pub(crate) chain_tip: TipRecord,
    /// Set when the chain state is dropped: the indexer exits.
    pub(crate) stop: bool,
    /// The indexer stopped on a storage error (the indexes stay at `index_tip`).
    pub(crate) failed: Option<String>,
    /// Test hook: the indexer waits (see `ChainState::pause_indexer`).
    pub(crate) paused: bool,
    /// The indexer is writing a batch it checked (see the module docs).
    pub(crate) committing: bool,
    /// When the chain task last connected a block far below the best header (a sync in
    /// progress); `None` once it connects near the best header.
    pub(crate) last_sync_connect: Option<Instant>,
}

/// How far the indexes are, for `getindexinfo` and the RPC errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexProgress {
    pub indexed_height: u64,
    pub tip_height: u64,
}

impl IndexProgress {
    pub fn synced(&self) -> bool {
        self.indexed_height == self.tip_height
    }
}

impl IndexShared {
    pub(crate) fn new(index_tip: TipRecord, chain_tip: TipRecord) -> Self {
        Self {
            state: Mutex::new(IndexState {
                index_tip,
                chain_tip,
                stop: false,
                failed: None,
                paused: false,
                committing: false,
                last_sync_connect: None,
            }),
            changed: Condvar::new(),
            timings: ConnectTimings::default(),
            utxo_cache_bytes: AtomicU64::new(0),
        }
    }

    /// The lock every main-chain or index commit holds. A poisoned lock means a writer
    /// panicked mid-commit (a broken invariant): the state it guards is two records that are
    /// only replaced whole, so it is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, IndexState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }

    pub(crate) fn progress(&self) -> IndexProgress {
        let s = self.lock();
        IndexProgress {
            indexed_height: s.index_tip.height,
            tip_height: s.chain_tip.height,
        }
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Waits until the index has caught up with the chain tip, at most `timeout`. Returns
    /// whether it has.
    pub(crate) fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.index_tip == s.chain_tip {
                return true;
            }
            if s.stop || s.failed.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The lock, once no index batch is being written (for disconnects, which may remove
    /// what that batch indexes).
    pub(crate) fn lock_no_commit(&self) -> MutexGuard<'_, IndexState> {
        let mut s = self.lock();
        while s.committing {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s
    }

    /// Blocks the indexer until there is work (or shutdown); returns a copy of the state.
    /// While a sync is connecting blocks, the indexer waits: it would take CPU and RocksDB's
    /// write queue from block validation, and the indexes are not needed to validate. It starts
    /// once the sync reaches the best header, or pauses for [`SYNC_IDLE_GRACE`] (a stalled
    /// sync must not leave the indexes behind forever).
    fn wait_for_work(&self) -> IndexState {
        let mut s = self.lock();
        loop {
            if s.stop {
                break;
            }
            if s.paused || s.index_tip == s.chain_tip {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            match s.last_sync_connect.map(|t| t.elapsed()) {
                Some(idle) if idle < SYNC_IDLE_GRACE => {
                    s = self
                        .changed
                        .wait_timeout(s, SYNC_IDLE_GRACE - idle)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                _ => break,
            }
        }
        s.clone()
    }
}
