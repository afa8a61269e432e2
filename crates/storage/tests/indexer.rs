//! The background indexer: a node that syncs (headers first, bodies far below the best header)
//! leaves its index entries to the indexer, and must end with indexes identical, byte for byte,
//! to those of a node that wrote them in each block's batch, including across a reorganisation
//! and a restart while they lag; while they lag, reads say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cairn_consensus::ChainParams;
use cairn_primitives::Block;
use cairn_storage::test_utils::{TEST_NOW, TestChain};
use cairn_storage::{ChainReader, ChainState, StorageConfig, StorageError};
use common::{check_consistency, temp};

/// How long a test waits for the indexer to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

fn open(dir: &std::path::Path) -> ChainState {
    ChainState::open(dir, ChainParams::devnet(), StorageConfig::default()).unwrap()
}

/// A chain that writes a tip block's index entries in the block's own batch.
fn open_inline(dir: &std::path::Path) -> ChainState {
    let config = StorageConfig {
        tip_indexes_inline: true,
        ..StorageConfig::default()
    };
    ChainState::open(dir, ChainParams::devnet(), config).unwrap()
}

/// A node that receives `blocks` one by one, as at the tip: indexes written inline.
fn inline_reference(blocks: &[Block]) -> (tempfile::TempDir, ChainState) {
    let dir = temp();
    let mut s = open_inline(dir.path());
    for b in blocks {
        s.accept_block(b.clone(), TEST_NOW).unwrap();
    }
    assert_eq!(s.connect_timings().background_blocks, 0);
    (dir, s)
}

/// Headers first, then bodies: what sync does.
fn sync_headers_first(s: &mut ChainState, blocks: &[Block]) {
    for b in blocks {
        s.accept_header(&b.header, TEST_NOW).unwrap();
    }
    for b in blocks {
        s.accept_block(b.clone(), TEST_NOW).unwrap();
    }
}

fn wait_caught_up(r: &ChainReader) {
    let deadline = Instant::now() + CATCH_UP;
    while !r.index_progress().synced() {
        assert!(Instant::now() < deadline, "indexer did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn background_indexes_equal_inline_indexes() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<Block> = (0..80).map(|_| chain.mine(6)).collect();
    let (_ref_dir, reference) = inline_reference(&blocks);

    let dir = temp();
    let mut s = open(dir.path());
    sync_headers_first(&mut s, &blocks);
    assert_eq!(s.tip().hash, blocks[79].hash());
    let r = s.reader();
    wait_caught_up(&r);
    // Blocks more than INLINE_INDEX_MAX_BEHIND below the best header went to the indexer.
    assert!(
        s.connect_timings().background_blocks >= 50,
        "{:?}",
        s.connect_timings()
    );
    assert_eq!(
        r.index_dump().unwrap(),
        reference.reader().index_dump().unwrap()
    );
    check_consistency(&r, &chain);
    // Caught up: the non-waiting confirmation check answers from the index.
    for b in [&blocks[0], &blocks[79]] {
        assert!(r.is_confirmed_now(&b.transactions[1].txid()).unwrap());
    }
    assert!(
        !r.is_confirmed_now(&cairn_primitives::Txid([7; 32]))
            .unwrap()
    );
}

#[test]
fn lagging_index_is_reported_then_survives_reorg_and_restart() {
    let params = ChainParams::devnet();
    let mut chain = TestChain::new(params.clone());
    let a: Vec<Block> = (0..60).map(|_| chain.mine(4)).collect();
    chain.set_tip(a[39].hash());
    let b: Vec<Block> = (0..25)
        .map(|i| chain.mine_salted(4, if i == 0 { 1 } else { 0 }))
        .collect();
    let mut b_path: Vec<Block> = a[..40].to_vec();
    b_path.extend(b.iter().cloned());
    let (_ref_dir, reference) = inline_reference(&b_path);

    let dir = temp();
    {
        let mut s = open(dir.path());
        s.pause_indexer(true);
        sync_headers_first(&mut s, &a);
        let r = s.reader();
        let p = r.index_progress();
        assert!(!p.synced());
        assert!(p.indexed_height < p.tip_height, "{p:?}");
        // A read that needs the indexes waits, then says how far they are.
        let key = chain.keys()[0].public_key();
        match r.address_balance(&key) {
            Err(StorageError::IndexBehind { indexed, tip }) => {
                assert_eq!((indexed, tip), (p.indexed_height, 60));
            }
            other => panic!("expected IndexBehind, got {other:?}"),
        }
        // The non-waiting check answers at once, and never "not confirmed" from a partial index.
        let started = std::time::Instant::now();
        let txid = a[59].transactions[0].txid();
        assert!(matches!(
            r.is_confirmed_now(&txid),
            Err(StorageError::IndexBehind { tip: 60, .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Reads that need no index still answer.
        assert_eq!(r.tip().unwrap().1, a[59].hash());
        // Reorganise onto B while the indexes lag.
        sync_headers_first(&mut s, &b);
        assert_eq!(s.tip().hash, b[24].hash());
        // Stop with the indexes still behind.
        assert!(!s.index_progress().synced());
    }
    let s = open(dir.path());
    let r = s.reader();
    wait_caught_up(&r);
    assert_eq!(s.tip().hash, b[24].hash());
    assert_eq!(
        r.index_dump().unwrap(),
        reference.reader().index_dump().unwrap()
    );
    check_consistency(&r, &chain);
}

/// Branch A (12 blocks), then branch B (9 blocks) forking after A's sixth and winning.
fn fork_at_the_tip() -> (TestChain, Vec<Block>, Vec<Block>) {
    let mut chain = TestChain::new(ChainParams::devnet());
    let a: Vec<Block> = (0..12).map(|_| chain.mine(4)).collect();
    chain.set_tip(a[5].hash());
    let b: Vec<Block> = (0..9)
        .map(|i| chain.mine_salted(4, if i == 0 { 1 } else { 0 }))
        .collect();
    (chain, a, b)
}

/// The blocks of the winning branch of [`fork_at_the_tip`], from the first.
fn winning_path(a: &[Block], b: &[Block]) -> Vec<Block> {
    a[..6].iter().chain(b).cloned().collect()
}

#[test]
fn reorg_at_the_tip_unindexes_inline() {
    // Indexes at the tip (steady state): a reorg disconnects indexed blocks in their own
    // batches; the result must equal a node that only ever saw the winning branch.
    let (_chain, a, b) = fork_at_the_tip();
    let (_ref_dir, reference) = inline_reference(&winning_path(&a, &b));

    let dir = temp();
    let mut s = open_inline(dir.path());
    for blk in a.iter().chain(&b) {
        s.accept_block(blk.clone(), TEST_NOW).unwrap();
        assert!(s.index_progress().synced());
    }
    assert_eq!(s.tip().hash, b[8].hash());
    assert_eq!(s.connect_timings().background_blocks, 0);
    assert_eq!(
        s.reader().index_dump().unwrap(),
        reference.reader().index_dump().unwrap()
    );
}

#[test]
fn tip_blocks_are_indexed_just_after_their_connect_by_default() {
    // The default: a block at the tip is committed without its index entries (so it is relayed
    // sooner) and the background indexer adds them at once. The blocks are accepted without
    // waiting for it, across a reorg; the result must equal a node that wrote them inline and
    // only ever saw the winning branch.
    let (chain, a, b) = fork_at_the_tip();
    let (_ref_dir, reference) = inline_reference(&winning_path(&a, &b));

    let dir = temp();
    let mut s = open(dir.path());
    for blk in a.iter().chain(&b) {
        s.accept_block(blk.clone(), TEST_NOW).unwrap();
    }
    assert_eq!(s.tip().hash, b[8].hash());
    let r = s.reader();
    wait_caught_up(&r);
    let timings = s.connect_timings();
    assert!(timings.background_blocks > 0, "{timings:?}");
    assert_eq!(
        r.index_dump().unwrap(),
        reference.reader().index_dump().unwrap()
    );
    check_consistency(&r, &chain);
}

#[test]
fn a_schema_2_directory_is_upgraded_in_place() {
    use cairn_storage::schema::{CF_META, COLUMN_FAMILIES, MetaKey};
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<Block> = (0..12).map(|_| chain.mine(4)).collect();
    let dir = temp();
    {
        // Version 2 wrote every block's index entries in its own batch.
        let mut s = open_inline(dir.path());
        for b in &blocks {
            s.accept_block(b.clone(), TEST_NOW).unwrap();
        }
    }
    // Make it what version 2 wrote: no index or UTXO tip, version 2 (everything else was
    // already written per block by version 2, which the clean shutdown's flush reproduces).
    let set_version = |v: u32| {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), COLUMN_FAMILIES)
            .unwrap();
        let meta = db.cf_handle(CF_META).unwrap();
        db.delete_cf(meta, MetaKey::IndexTip.key()).unwrap();
        db.delete_cf(meta, MetaKey::UtxoTip.key()).unwrap();
        db.put_cf(meta, MetaKey::SchemaVersion.key(), v.to_le_bytes())
            .unwrap();
    };
    set_version(2);
    {
        let s = open(dir.path());
        assert_eq!(s.tip().hash, blocks[11].hash());
        assert!(s.index_progress().synced());
        check_consistency(&s.reader(), &chain);
    }
    // Version 1 is not upgradable: refused, never misread.
    set_version(1);
    let err =
        ChainState::open(dir.path(), ChainParams::devnet(), StorageConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{err}");
}
