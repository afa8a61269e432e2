//! The background indexer: one thread that brings the indexes from `index_tip` to the
//! main-chain tip, a few blocks per batch, at the lowest CPU priority, so that while a node
//! syncs, signature checks (on every core) come first and the indexes use what is left.
//!
//! It reads blocks and their undo data (never the UTXO set), builds one batch for up to
//! [`MAX_INDEX_BATCH_BLOCKS`] blocks outside the lock, then commits under the index lock only
//! if the index tip has not moved and the last block is still on the main chain; otherwise the
//! work is dropped and planned again from the new state (also when planning failed on a read
//! that a reorganisation's un-indexing made miss).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_consensus::BlockConnect;
use cairn_primitives::{Transaction, Txid};
use rocksdb::{DB, WriteBatch};

use super::{IndexShared, IndexWriter};
use crate::config::{MAX_INDEX_BATCH_BLOCKS, MAX_INDEX_BATCH_TXS};
use crate::error::{StorageError, StorageResult};
use crate::schema::*;
use crate::store::cf;
use crate::timings::Stage;

/// Pause after a round that found the main chain changing under it, so a reorganisation in
/// progress is not chased in a busy loop.
const REPLAN_PAUSE: Duration = Duration::from_millis(5);

/// Starts the indexer thread; it runs until `shared` is told to stop.
pub(crate) fn spawn(db: Arc<DB>, shared: Arc<IndexShared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cairn-indexer".into())
        .spawn(move || run(&db, &shared))
}

fn run(db: &DB, shared: &IndexShared) {
    lower_priority();
    loop {
        let state = shared.wait_for_work();
        if state.stop {
            return;
        }
        match step(db, shared, state.index_tip, state.chain_tip) {
            Ok(true) => {}
            Ok(false) => std::thread::sleep(REPLAN_PAUSE),
            Err(e) => {
                tracing::error!(error = %e, "the background indexer stopped; transaction and address queries will report it");
                shared.lock().failed = Some(e.to_string());
                shared.notify();
                return;
            }
        }
    }
}

/// Indexes the next blocks after `from` towards `target`. Ok(false): the chain or the index
/// moved meanwhile, nothing was written.
fn step(db: &DB, shared: &IndexShared, from: TipRecord, target: TipRecord) -> StorageResult<bool> {
    let started = Instant::now();
    let (batch, new_tip, blocks, txs) = match plan(db, from, target) {
        Ok(Some(planned)) => planned,
        Ok(None) => return Ok(false),
        // The writer reads running totals and balances from the live database, after the
        // snapshot: a reorganisation that un-indexed blocks meanwhile removes what it looks
        // for. That is the index moving, as the commit check below finds, not corruption.
        Err(_) if shared.lock().index_tip != from => return Ok(false),
        Err(e) => return Err(e),
    };
    {
        let mut state = shared.lock();
        if state.index_tip != from || !on_main_chain(db, &new_tip)? {
            return Ok(false);
        }
        state.committing = true;
    }
    let written = db.write(batch);
    {
        let mut state = shared.lock();
        state.committing = false;
        if written.is_ok() {
            state.index_tip = new_tip;
        }
    }
    shared.notify();
    written?;
    shared
        .timings
        .add(Stage::BackgroundIndex, started.elapsed());
    shared.timings.blocks_indexed(blocks);
    tracing::debug!(
        height = new_tip.height,
        blocks,
        txs,
        "indexes caught up to {}",
        new_tip.hash
    );
    Ok(true)
}

/// The batch that indexes the main-chain blocks after `from` towards `target` (at most
/// [`MAX_INDEX_BATCH_BLOCKS`] blocks, [`MAX_INDEX_BATCH_TXS`] transactions), with its new
/// index tip and how many blocks and transactions it covers. `None`: the chain no longer
/// follows `from`.
fn plan(
    db: &DB,
    from: TipRecord,
    target: TipRecord,
) -> StorageResult<Option<(WriteBatch, TipRecord, u64, usize)>> {
    let last_height = target
        .height
        .min(from.height.saturating_add(MAX_INDEX_BATCH_BLOCKS));
    let snap = db.snapshot();
    let mut batch = WriteBatch::default();
    let mut writer = IndexWriter::new(db);
    let mut planned: Option<TipRecord> = None;
    let mut prev = from.hash;
    let mut txs = 0usize;
    let mut blocks = 0u64;
    for height in from.height + 1..=last_height {
        let Some(bytes) = snap.get_cf(cf(db, CF_HEIGHT)?, height_key(height))? else {
            break;
        };
        let hash = decode_hash("block hash", format!("height {height}"), &bytes)?;
        let body = snap
            .get_cf(cf(db, CF_BLOCKS)?, hash.0)?
            .ok_or_else(|| StorageError::corrupt("block", hash, "main-chain body missing"))?;
        let block = decode_block(&hash, &body)?;
        if block.header.prev_hash != prev {
            // A reorganisation committed after the state was read.
            break;
        }
        let undo: BlockConnect = decode_value(
            "undo data",
            hash,
            &snap
                .get_cf(cf(db, CF_UNDO)?, hash.0)?
                .ok_or_else(|| StorageError::corrupt("undo data", hash, "missing"))?,
        )?;
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();
        writer.connect(&mut batch, &block, &txids, hash, height, &undo)?;
        planned = Some(TipRecord { height, hash });
        prev = hash;
        txs += block.transactions.len();
        blocks += 1;
        if txs >= MAX_INDEX_BATCH_TXS {
            break;
        }
    }
    drop(snap);
    let Some(new_tip) = planned else {
        return Ok(None);
    };
    writer.finish(&mut batch, new_tip)?;
    Ok(Some((batch, new_tip, blocks, txs)))
}

/// Whether `tip` is the main-chain block at its height (read under the index lock, so current).
fn on_main_chain(db: &DB, tip: &TipRecord) -> StorageResult<bool> {
    Ok(
        match db.get_cf(cf(db, CF_HEIGHT)?, height_key(tip.height))? {
            Some(b) => decode_hash("block hash", format!("height {}", tip.height), &b)? == tip.hash,
            None => false,
        },
    )
}

/// The indexer yields the CPU to validation (on Linux the nice value is per thread). Failure
/// only costs speed, so it is logged, not fatal.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, INDEXER_NICE) {
        tracing::debug!(error = %e, "could not lower the indexer's priority");
    }
}

/// The nice value of the indexer thread (19: the lowest priority).
#[cfg(target_os = "linux")]
const INDEXER_NICE: i32 = 19;
