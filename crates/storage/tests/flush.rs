//! UTXO cache flushes written in chunks (`StorageConfig::utxo_flush_batch_bytes`): a flush cut
//! short leaves part of the cache's changes on disk beyond `meta/utxo_tip`, and the replay at
//! the next open must apply the blocks after it again without resurrecting a coin they spend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_consensus::ChainParams;
use cairn_primitives::{Block, OutPoint};
use cairn_storage::test_utils::{TEST_NOW, TestChain};
use cairn_storage::{ChainState, StorageConfig};
use common::{check_consistency, temp};

/// One coin per batch: every change of a flush is a chunk of its own.
fn one_change_per_batch() -> StorageConfig {
    StorageConfig {
        utxo_flush_batch_bytes: 1,
        ..StorageConfig::default()
    }
}

fn open(dir: &std::path::Path, config: StorageConfig) -> ChainState {
    ChainState::open(dir, ChainParams::devnet(), config).unwrap()
}

#[test]
fn a_flush_cut_short_by_a_crash_is_replayed_without_resurrecting_spent_coins() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<Block> = (0..40).map(|_| chain.mine(20)).collect();
    for cut in [1, 7, 40, 150, 400] {
        let dir = temp();
        let mut state = open(dir.path(), one_change_per_batch());
        for b in &blocks[..20] {
            state.accept_block(b.clone(), TEST_NOW).unwrap();
        }
        let utxo_tip_before = state.reader().utxo_stats().unwrap();
        // The shutdown flush writes `cut` of its chunks, then every write fails: on disk, as a
        // process killed part way through the flush.
        state.fail_writes_after(Some(cut));
        drop(state);

        // Reopened: blocks 1..=20 applied again from undo data over the partial flush, then
        // 20 more blocks spend coins those blocks created, some of which the cut flush wrote.
        let mut state = open(dir.path(), one_change_per_batch());
        assert_eq!(
            state.reader().utxo_stats().unwrap().digest,
            utxo_tip_before.digest
        );
        for b in &blocks[20..] {
            state.accept_block(b.clone(), TEST_NOW).unwrap();
        }
        check_consistency(&state.reader(), &chain);
        drop(state);
        // Flushed whole this time; every spent coin absent from the database itself.
        let state = open(dir.path(), StorageConfig::default());
        check_consistency(&state.reader(), &chain);
    }
}

#[test]
fn a_flush_that_fails_part_way_leaves_spent_coins_spent() {
    // No cache budget: every block's changes are flushed right after it, one chunk per change.
    let config = StorageConfig {
        utxo_cache_bytes: 1,
        ..one_change_per_batch()
    };
    let mut cut_flushes = 0;
    for cut in 1..=12 {
        let mut chain = TestChain::new(ChainParams::devnet());
        let before: Vec<Block> = (0..8).map(|_| chain.mine(10)).collect();
        let paying = chain.mine(10);
        // The next block spends what `paying` created.
        let created: Vec<OutPoint> = paying
            .transactions
            .iter()
            .skip(1)
            .flat_map(|tx| (0..tx.outputs.len() as u32).map(move |v| OutPoint::new(tx.txid(), v)))
            .collect();
        let txs: Vec<_> = created.iter().filter_map(|op| chain.payment(*op)).collect();
        assert!(!txs.is_empty());
        let spending = chain.mine_with(txs);

        let dir = temp();
        let mut state = open(dir.path(), config.clone());
        for b in &before {
            state.accept_block(b.clone(), TEST_NOW).unwrap();
        }
        // `cut` writes succeed (the header, the body, the connect, then flush chunks), then
        // every write fails.
        state.fail_writes_after(Some(cut));
        let r = state.accept_block(paying.clone(), TEST_NOW);
        state.fail_writes_after(None);
        if r.is_err() && state.tip().hash == paying.hash() {
            // Connected, and its flush failed part way: some of its coins are on disk.
            cut_flushes += 1;
        } else if state.tip().hash != paying.hash() {
            state.accept_block(paying.clone(), TEST_NOW).unwrap();
        }
        state.accept_block(spending.clone(), TEST_NOW).unwrap();
        assert_eq!(state.tip().hash, spending.hash());
        check_consistency(&state.reader(), &chain);
        drop(state);
        let state = open(dir.path(), StorageConfig::default());
        check_consistency(&state.reader(), &chain);
    }
    assert!(cut_flushes >= 3, "flushes cut part way: {cut_flushes}");
}
