//! Chain state machine tests on a real RocksDB in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_consensus::ChainParams;
use cairn_primitives::BlockHash;
use cairn_storage::test_utils::{TEST_NOW, TestChain};
use cairn_storage::{
    AcceptStatus, BlockSource, BlockStatus, ChainEvent, ChainState, StorageConfig, StorageError,
};
use common::{check_consistency, temp};

fn open(dir: &std::path::Path) -> ChainState {
    ChainState::open(dir, ChainParams::devnet(), StorageConfig::default()).unwrap()
}

fn submit(state: &mut ChainState, block: &cairn_primitives::Block) -> cairn_storage::AcceptOutcome {
    state.accept_block(block.clone(), TEST_NOW).unwrap()
}

#[test]
fn fresh_chain_has_genesis_and_reopens() {
    let dir = temp();
    let params = ChainParams::devnet();
    let stats = {
        let state = open(dir.path());
        let r = state.reader();
        assert_eq!(r.tip().unwrap(), (0, params.genesis_hash()));
        let s = r.utxo_stats().unwrap();
        assert_eq!(s.txouts, params.allocations.len() as u64);
        assert_eq!(s.total_amount, params.allocations[0].amount);
        let faucet = params.allocations[0].address.pubkey;
        assert_eq!(
            r.address_balance(&faucet).unwrap(),
            params.allocations[0].amount
        );
        assert_eq!(r.locator().unwrap(), vec![params.genesis_hash()]);
        s
    };
    let state = open(dir.path());
    assert_eq!(state.reader().utxo_stats().unwrap(), stats);
    assert_eq!(state.utxo_stats(), stats);
}

#[test]
fn linear_chain_with_spends_and_indexes() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    for i in 0..30 {
        let b = chain.mine(i % 7);
        let out = submit(&mut state, &b);
        assert_eq!(out.status, AcceptStatus::New);
        assert_eq!(out.connected(), vec![(i as u64 + 1, b.hash())]);
        assert_eq!(out.new_tip(), Some((i as u64 + 1, b.hash())));
    }
    let r = state.reader();
    check_consistency(&r, &chain);
    // Duplicates change nothing.
    let b = chain.block(&chain.tip()).unwrap().clone();
    let out = submit(&mut state, &b);
    assert_eq!(out.status, AcceptStatus::Duplicate);
    assert!(out.events.is_empty());
    // State survives a reopen.
    let stats = r.utxo_stats().unwrap();
    drop(r);
    drop(state);
    let state = open(dir.path());
    assert_eq!(state.reader().utxo_stats().unwrap(), stats);
    check_consistency(&state.reader(), &chain);
}

#[test]
fn reorg_one_deep() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let mut main = Vec::new();
    for _ in 0..5 {
        let b = chain.mine(3);
        submit(&mut state, &b);
        main.push(b);
    }
    chain.set_tip(main[3].hash());
    let b5 = chain.mine_salted(2, 1);
    let out = submit(&mut state, &b5);
    assert_eq!(out.status, AcceptStatus::New);
    assert!(out.events.is_empty(), "equal work: first seen stays");
    assert_eq!(state.tip().hash, main[4].hash());
    let b6 = chain.mine(2);
    let out = submit(&mut state, &b6);
    assert_eq!(out.disconnected(), vec![(5, main[4].hash())]);
    assert_eq!(out.connected(), vec![(5, b5.hash()), (6, b6.hash())]);
    let disconnected_txs: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockDisconnected { block, .. } => Some(block.transactions.len()),
            _ => None,
        })
        .collect();
    assert_eq!(disconnected_txs, vec![main[4].transactions.len()]);
    let r = state.reader();
    assert_eq!(r.tip().unwrap(), (6, b6.hash()));
    // Transactions only in the disconnected block left the tx index.
    for tx in &main[4].transactions {
        assert!(r.transaction(&tx.txid()).unwrap().is_none());
    }
    let info = r.header_info(&main[4].hash()).unwrap().unwrap();
    assert!(!info.is_on_main_chain);
    assert_eq!(info.status, BlockStatus::ConnectedValid);
    check_consistency(&r, &chain);
}

#[test]
fn reorg_ten_deep_and_back() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let mut a = Vec::new();
    for _ in 0..20 {
        a.push(chain.mine(4));
    }
    for b in &a {
        submit(&mut state, b);
    }
    chain.set_tip(a[9].hash());
    let mut b = Vec::new();
    for i in 0..11 {
        b.push(chain.mine_salted(3, if i == 0 { 1 } else { 0 }));
    }
    let mut disconnected = 0;
    for blk in &b {
        disconnected += submit(&mut state, blk).disconnected().len();
    }
    assert_eq!(disconnected, 10);
    assert_eq!(state.tip().hash, b[10].hash());
    assert_eq!(state.tip().height, 21);
    check_consistency(&state.reader(), &chain);
    // And back onto branch A, which grows longer.
    chain.set_tip(a[19].hash());
    let a21 = chain.mine(2);
    let a22 = chain.mine(2);
    submit(&mut state, &a21);
    let out = submit(&mut state, &a22);
    assert_eq!(out.disconnected().len(), 11);
    assert_eq!(out.connected().len(), 12);
    check_consistency(&state.reader(), &chain);
}

#[test]
fn invalid_branch_is_marked_and_never_retried() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let mut a = Vec::new();
    for _ in 0..10 {
        a.push(chain.mine(2));
    }
    for b in &a {
        submit(&mut state, b);
    }
    let digest_before = state.utxo_stats();
    chain.set_tip(a[4].hash());
    let b6 = chain.mine_salted(1, 1);
    let b7 = chain.mine_invalid_signature();
    let mut rest = Vec::new();
    for _ in 0..5 {
        rest.push(chain.mine(1));
    }
    submit(&mut state, &b6);
    // Gossiped (nobody asked for it), a side-branch block with less work than the tip is not
    // stored: its bad signature would only be found when connecting it.
    let out = state
        .accept_block_from(b7.clone(), TEST_NOW, BlockSource::Unrequested)
        .unwrap();
    assert!(
        matches!(out.status, AcceptStatus::NotStored { .. }),
        "{:?}",
        out.status
    );
    assert!(!state.has_block(&b7.hash()) && !state.has_header(&b7.hash()));
    // Asked for (sync downloads bodies of validated headers), it is stored.
    let out = submit(&mut state, &b7);
    assert_eq!(
        out.status,
        AcceptStatus::New,
        "requested: stored, not yet worth connecting"
    );
    for blk in &rest[..3] {
        submit(&mut state, blk);
    }
    // rest[3] is B11: more work than A10, so the switch is tried, B7 fails, A10 comes back.
    let out = submit(&mut state, &rest[3]);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, ChainEvent::BlockInvalid { hash, .. } if *hash == b7.hash()))
    );
    assert!(matches!(out.status, AcceptStatus::Invalid { .. }));
    assert_eq!(state.tip().hash, a[9].hash());
    assert_eq!(state.utxo_stats(), digest_before);
    let r = state.reader();
    assert_eq!(
        r.header_info(&b7.hash()).unwrap().unwrap().status,
        BlockStatus::Invalid
    );
    assert_eq!(
        r.header_info(&rest[3].hash()).unwrap().unwrap().status,
        BlockStatus::InvalidAncestor
    );
    assert_eq!(r.best_header().unwrap().hash, a[9].hash());
    assert!(r.missing_blocks(100).unwrap().is_empty());
    // Re-submitting is refused at once, with the reason; so are descendants.
    match state.accept_block(b7.clone(), TEST_NOW) {
        Err(StorageError::KnownInvalid { hash, reason }) => {
            assert_eq!(hash, b7.hash());
            assert!(reason.contains("signature"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        state.accept_block(rest[4].clone(), TEST_NOW),
        Err(StorageError::KnownInvalid { .. })
    ));
    assert!(matches!(
        state.accept_header(&rest[4].header, TEST_NOW),
        Err(StorageError::KnownInvalid { .. })
    ));
    check_consistency(&r, &chain);
    // After a restart too.
    drop(r);
    drop(state);
    let mut state = open(dir.path());
    assert_eq!(state.tip().hash, a[9].hash());
    assert!(matches!(
        state.accept_block(b7, TEST_NOW),
        Err(StorageError::KnownInvalid { .. })
    ));
}

#[test]
fn blocks_out_of_order_and_orphans() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<_> = (0..12).map(|_| chain.mine(2)).collect();
    for b in blocks.iter().skip(1).rev() {
        assert_eq!(submit(&mut state, b).status, AcceptStatus::Orphan);
    }
    assert_eq!(state.orphan_pool_size().0, 11);
    assert_eq!(
        submit(&mut state, &blocks[5]).status,
        AcceptStatus::Duplicate
    );
    let out = submit(&mut state, &blocks[0]);
    assert_eq!(out.connected().len(), 12);
    assert_eq!(state.tip().hash, blocks[11].hash());
    assert_eq!(state.orphan_pool_size(), (0, 0));
    check_consistency(&state.reader(), &chain);
}

#[test]
fn headers_first_then_bodies_in_any_order() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<_> = (0..25).map(|_| chain.mine(1)).collect();
    let headers: Vec<_> = blocks.iter().map(|b| b.header).collect();
    assert_eq!(state.accept_headers(&headers, TEST_NOW).unwrap(), 25);
    let r = state.reader();
    let best = r.best_header().unwrap();
    assert_eq!((best.height, best.hash), (25, blocks[24].hash()));
    assert_eq!(r.tip().unwrap().0, 0);
    let locator = r.locator().unwrap();
    assert_eq!(locator[0], blocks[24].hash());
    assert_eq!(
        *locator.last().unwrap(),
        ChainParams::devnet().genesis_hash()
    );
    assert!(locator.len() < 25);
    let missing = r.missing_blocks(10).unwrap();
    assert_eq!(
        missing,
        blocks[..10].iter().map(|b| b.hash()).collect::<Vec<_>>()
    );
    // Bodies out of order: 3, 1, 2, 0, ...
    for i in [3usize, 1, 2] {
        assert_eq!(submit(&mut state, &blocks[i]).status, AcceptStatus::New);
    }
    assert_eq!(state.tip().height, 0);
    assert_eq!(
        r.missing_blocks(3).unwrap(),
        vec![blocks[0].hash(), blocks[4].hash(), blocks[5].hash()]
    );
    let out = submit(&mut state, &blocks[0]);
    assert_eq!(out.connected().len(), 4);
    for b in blocks.iter().skip(4) {
        submit(&mut state, b);
    }
    assert_eq!(r.tip().unwrap(), (25, blocks[24].hash()));
    assert!(r.missing_blocks(10).unwrap().is_empty());
    // Serving headers from a locator.
    let served = r
        .headers_after(&[blocks[9].hash(), BlockHash([9; 32])], 5)
        .unwrap();
    assert_eq!(served, headers[10..15].to_vec());
    let from_genesis = r.headers_after(&[BlockHash([9; 32])], 3000).unwrap();
    assert_eq!(from_genesis.len(), 25);
    // Template context and median time past.
    let ctx = r.block_template_context().unwrap();
    assert_eq!(ctx.height, 26);
    assert_eq!(ctx.prev_hash, blocks[24].hash());
    assert_eq!(
        Some(ctx.bits),
        r.next_bits_after(&blocks[24].hash()).unwrap()
    );
    assert_eq!(
        ctx.min_time,
        r.median_time_past(&blocks[24].hash()).unwrap().unwrap() + 1
    );
    // Unknown parent header.
    let mut other = TestChain::new(ChainParams::devnet());
    other.mine_salted(0, 5);
    let orphan_header = other.mine(0).header;
    assert!(matches!(
        state.accept_header(&orphan_header, TEST_NOW),
        Err(StorageError::UnknownParent { .. })
    ));
    check_consistency(&r, &chain);
}

#[test]
fn mutated_body_is_rejected_without_marking_the_header() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let good = chain.mine(2);
    let mut bad = good.clone();
    bad.transactions.pop();
    assert!(matches!(
        state.accept_block(bad, TEST_NOW),
        Err(StorageError::MutatedBlock { .. })
    ));
    assert_eq!(submit(&mut state, &good).connected().len(), 1);
}

#[test]
fn reorg_while_orphan_pool_is_full() {
    let dir = temp();
    let config = StorageConfig {
        orphan_max_blocks: 3,
        ..StorageConfig::default()
    };
    let mut state = ChainState::open(dir.path(), ChainParams::devnet(), config).unwrap();
    let mut chain = TestChain::new(ChainParams::devnet());
    let mut a = Vec::new();
    for _ in 0..6 {
        a.push(chain.mine(2));
    }
    for b in &a {
        submit(&mut state, b);
    }
    // Unrelated orphans (their parent is never sent) fill the pool; the oldest are evicted.
    chain.set_tip(a[2].hash());
    let hidden = chain.mine_salted(0, 7);
    let orphans: Vec<_> = (0..5).map(|_| chain.mine(0)).collect();
    let _ = hidden;
    for o in &orphans {
        assert_eq!(submit(&mut state, o).status, AcceptStatus::Orphan);
        assert!(state.orphan_pool_size().0 <= 3);
    }
    assert!(!state.has_block(&orphans[0].hash()));
    assert!(state.has_block(&orphans[4].hash()));
    // A competing branch from a[3] overtakes the main chain, delivered child-first.
    chain.set_tip(a[3].hash());
    let b: Vec<_> = (0..4)
        .map(|i| chain.mine_salted(1, if i == 0 { 3 } else { 0 }))
        .collect();
    for blk in b.iter().rev() {
        submit(&mut state, blk);
        assert!(state.orphan_pool_size().0 <= 3);
    }
    // The pool held at most 3: the oldest parts of branch b may have been evicted; resend all.
    for blk in &b {
        let _ = state.accept_block(blk.clone(), TEST_NOW).unwrap();
    }
    assert_eq!(state.tip().hash, b[3].hash());
    assert_eq!(state.tip().height, 8);
    check_consistency(&state.reader(), &chain);
}

#[test]
fn schema_version_mismatch_is_refused() {
    let dir = temp();
    drop(open(dir.path()));
    {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&opts, dir.path(), &cfs).unwrap();
        db.put_cf(
            db.cf_handle("meta").unwrap(),
            b"schema_version",
            (cairn_storage::schema::SCHEMA_VERSION + 1).to_le_bytes(),
        )
        .unwrap();
    }
    let err =
        ChainState::open(dir.path(), ChainParams::devnet(), StorageConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "schema version {}",
            cairn_storage::schema::SCHEMA_VERSION + 1
        )) && msg.contains(&format!(
            "reads version {}",
            cairn_storage::schema::SCHEMA_VERSION
        )),
        "{msg}"
    );

    // A RocksDB directory of another layout is refused, and left untouched.
    let foreign = temp();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, foreign.path()).unwrap();
        db.put(b"k", b"v").unwrap();
    }
    let err = ChainState::open(
        foreign.path(),
        ChainParams::devnet(),
        StorageConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{err}");
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), foreign.path()).unwrap();
    assert_eq!(cfs, vec!["default".to_string()]);

    // Another chain's data directory is refused too.
    let other_dir = temp();
    drop(open(other_dir.path()));
    let json = cairn_consensus::params::DEVNET_GENESIS.replace("cairn-devnet", "cairn-other");
    let other = ChainParams::from_genesis_json(&json).unwrap();
    let err = ChainState::open(other_dir.path(), other, StorageConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::WrongChain { .. }), "{err}");
}

#[test]
fn corrupt_record_is_reported_not_panicked() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let b = chain.mine(1);
    submit(&mut state, &b);
    drop(state);
    {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&opts, dir.path(), &cfs).unwrap();
        db.put_cf(db.cf_handle("headers").unwrap(), b.hash().0, b"garbage")
            .unwrap();
    }
    let err =
        ChainState::open(dir.path(), ChainParams::devnet(), StorageConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&b.hash().to_string()), "{err}");
}

#[test]
fn cache_disabled_gives_the_same_state() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<_> = (0..15).map(|_| chain.mine(5)).collect();
    let mut stats = Vec::new();
    for cache in [0, 1 << 20] {
        let dir = temp();
        let config = StorageConfig {
            utxo_cache_bytes: cache,
            ..StorageConfig::default()
        };
        let mut state = ChainState::open(dir.path(), ChainParams::devnet(), config).unwrap();
        for b in &blocks {
            submit(&mut state, b);
        }
        stats.push(state.utxo_stats());
    }
    assert_eq!(stats[0], stats[1]);
}

#[test]
fn readers_on_another_thread_see_consistent_states() {
    let dir = temp();
    let mut state = open(dir.path());
    let params = ChainParams::devnet();
    let mut chain = TestChain::new(params.clone());
    let a: Vec<_> = (0..25).map(|_| chain.mine(4)).collect();
    chain.set_tip(a[14].hash());
    let b: Vec<_> = (0..12)
        .map(|i| chain.mine_salted(4, if i == 0 { 1 } else { 0 }))
        .collect();
    // Expected digest at every block of both branches.
    let expected = common::expected_digests(&params, &chain, &[a[24].hash(), b[11].hash()]);
    let expected = Arc::new(expected);
    let done = Arc::new(AtomicBool::new(false));
    let reader = state.reader();
    let handle = {
        let (expected, done) = (expected.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let s = reader.utxo_stats().unwrap();
                let want = expected[&s.best_hash];
                assert_eq!(
                    (s.txouts, s.total_amount.0, s.digest),
                    (want.txouts, want.total_amount, want.digest)
                );
                let (h, hash) = reader.tip().unwrap();
                if let Some(at) = reader.block_hash(h).unwrap() {
                    // The tip may move between the two calls, but each is consistent.
                    let _ = at;
                }
                assert!(expected.contains_key(&hash));
                reads += 1;
            }
            reads
        })
    };
    for blk in a.iter().chain(b.iter()) {
        state.accept_block(blk.clone(), TEST_NOW).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = handle.join().unwrap();
    assert!(reads > 0);
    // Branch b (height 27) has more work than a (height 25).
    assert_eq!(state.tip().hash, b[11].hash());
    check_consistency(&state.reader(), &chain);
}

/// A write that fails (a full disk) changes nothing: the tip, the UTXO digest and the indexes
/// stay as they were, in memory and on disk, and the same block connects once writes work.
#[test]
fn failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<_> = (0..5).map(|_| chain.mine(20)).collect();
    let mut state = open(dir.path());
    for b in &blocks[..3] {
        submit(&mut state, b);
    }
    let before = state.reader().utxo_stats().unwrap();
    let tip_before = state.tip();

    // Fail the 1st, then the 2nd, ... write of accepting block 3 (its header; then its body
    // with the connect, one batch): each attempt leaves the chain exactly as it was.
    let mut failures = 0;
    for n in 0..10 {
        state.fail_writes_after(Some(n));
        let r = state.accept_block(blocks[3].clone(), TEST_NOW);
        state.fail_writes_after(None);
        if r.as_ref().is_ok_and(|o| !o.connected().is_empty()) {
            assert!(
                n >= 1,
                "the header is written before the block is connected"
            );
            break;
        }
        assert!(r.is_err(), "a failed write is reported: {r:?}");
        assert_eq!(state.tip().hash, tip_before.hash);
        assert_eq!(state.reader().utxo_stats().unwrap().digest, before.digest);
        assert!(
            state
                .reader()
                .transaction(&blocks[3].transactions[1].txid())
                .unwrap()
                .is_none()
        );
        failures += 1;
        // Back to the state before this attempt, on disk as in memory.
        drop(state);
        state = open(dir.path());
        assert_eq!(state.tip().hash, tip_before.hash);
        assert_eq!(state.reader().utxo_stats().unwrap().digest, before.digest);
    }
    assert!(failures >= 2, "both writes were made to fail");
    assert_eq!(state.tip().hash, blocks[3].hash());

    // The rest connects normally: nothing was marked invalid by the failures.
    for b in &blocks[4..] {
        let out = state.accept_block(b.clone(), TEST_NOW).unwrap();
        assert!(
            !matches!(out.status, cairn_storage::AcceptStatus::Invalid { .. }),
            "{:?}",
            out.status
        );
    }
    assert_eq!(state.tip().hash, blocks[4].hash());
}

/// A block whose body breaks a rule that needs no UTXO context (here: no coinbase) is refused
/// before anything is stored, requested or not; a valid-looking child of genesis pushed by a
/// peer to a node at height 30 is not stored either (less work than the tip).
#[test]
fn junk_and_low_work_blocks_are_not_stored() {
    use cairn_consensus::ConsensusError;
    use cairn_primitives::{OutPoint, Signature, Transaction, TxIn, TxOut, Txid};
    use cairn_storage::test_utils::{BlockBuilder, grind};

    let dir = temp();
    let mut state = open(dir.path());
    let params = ChainParams::devnet();
    let mut chain = TestChain::new(params.clone());
    for _ in 0..30 {
        submit(&mut state, &chain.mine(0));
    }
    let genesis = params.genesis_block().header;
    let junk_tx = |i: u32| Transaction {
        version: Transaction::VERSION,
        inputs: (0..100)
            .map(|j| TxIn {
                prevout: OutPoint::new(Txid([(i + j) as u8; 32]), j),
                signature: Signature([0; 64]),
            })
            .collect(),
        outputs: vec![TxOut {
            value: cairn_primitives::Amount(1),
            pubkey: cairn_storage::test_utils::test_key(1).public_key(),
        }],
        lock_time: 0,
    };
    let bytes_before = dir_size(dir.path());
    for i in 0..5u32 {
        // No coinbase: the first transaction spends made-up coins.
        let mut junk = BlockBuilder::new(&params, &genesis, 0, genesis.time)
            .time_offset(u64::from(i))
            .build();
        junk.transactions = vec![junk_tx(i)];
        junk.header.merkle_root = junk.compute_merkle_root();
        grind(&mut junk.header, &params);
        for source in [BlockSource::Unrequested, BlockSource::Requested] {
            match state.accept_block_from(junk.clone(), TEST_NOW, source) {
                Err(StorageError::Consensus(ConsensusError::FirstTxNotCoinbase { .. })) => {}
                other => panic!("{other:?}"),
            }
            assert!(!state.has_header(&junk.hash()), "nothing of it is kept");
        }
        // A valid-looking child of genesis (coinbase, junk spends) pushed by a peer.
        let low = BlockBuilder::new(&params, &genesis, 0, genesis.time)
            .time_offset(100 + u64::from(i))
            .transaction(junk_tx(i))
            .build();
        let out = state
            .accept_block_from(low.clone(), TEST_NOW, BlockSource::Unrequested)
            .unwrap();
        assert!(
            matches!(out.status, AcceptStatus::NotStored { .. }),
            "{:?}",
            out.status
        );
        assert!(!state.has_header(&low.hash()) && !state.has_block(&low.hash()));
    }
    assert_eq!(state.tip().height, 30);
    // A body that does not match its header is refused and nothing is cached.
    let mut mutated = chain.mine(1);
    mutated.transactions.pop();
    assert!(matches!(
        state.accept_block_from(mutated.clone(), TEST_NOW, BlockSource::Unrequested),
        Err(StorageError::MutatedBlock { .. })
    ));
    assert!(!state.has_header(&mutated.hash()));
    let grown = dir_size(dir.path()).saturating_sub(bytes_before);
    assert!(grown < 1_000_000, "the data dir grew by {grown} bytes");
    check_consistency(&state.reader(), &chain_without_last(&chain));
}

/// A known header whose body breaks a context-free rule is marked invalid for good.
#[test]
fn known_header_with_bad_body_is_marked_invalid() {
    let dir = temp();
    let mut state = open(dir.path());
    let params = ChainParams::devnet();
    let mut chain = TestChain::new(params.clone());
    let good = chain.mine(0);
    submit(&mut state, &good);
    // A block with two coinbases: the header is valid and stored first (as by sync).
    let mut bad = chain.builder().build();
    let mut second = bad.transactions[0].clone();
    second.lock_time += 1;
    bad.transactions.push(second);
    bad.header.merkle_root = bad.compute_merkle_root();
    cairn_storage::test_utils::grind(&mut bad.header, &params);
    state.accept_header(&bad.header, TEST_NOW).unwrap();
    assert!(matches!(
        state.accept_block(bad.clone(), TEST_NOW),
        Err(StorageError::Consensus(_))
    ));
    assert!(state.invalid_reason(&bad.hash()).is_some());
    assert!(matches!(
        state.accept_block(bad, TEST_NOW),
        Err(StorageError::KnownInvalid { .. })
    ));
    assert_eq!(state.tip().hash, good.hash());
}

/// Side-branch headers are bounded: beyond the limit a valid header that does not beat the
/// best header is not kept (and nobody is at fault: `NotKept`).
#[test]
fn side_branch_headers_are_bounded() {
    use cairn_storage::config::MAX_SIDE_BRANCH_HEADERS;
    use cairn_storage::test_utils::BlockBuilder;

    let dir = temp();
    let mut state = open(dir.path());
    let params = ChainParams::devnet();
    let mut chain = TestChain::new(params.clone());
    submit(&mut state, &chain.mine(0));
    submit(&mut state, &chain.mine(0));
    let genesis = params.genesis_block().header;
    let mut kept = 0;
    let mut refused = 0;
    for i in 0..(MAX_SIDE_BRANCH_HEADERS as u64 + 5) {
        let sibling = BlockBuilder::new(&params, &genesis, 0, genesis.time)
            .time_offset(1_000 + i)
            .build();
        match state.accept_header(&sibling.header, TEST_NOW) {
            Ok(_) => kept += 1,
            Err(StorageError::NotKept { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(kept, MAX_SIDE_BRANCH_HEADERS);
    assert_eq!(refused, 5);
    // A header with more work than the best one is always kept.
    let next = chain.mine(0);
    assert!(state.accept_header(&next.header, TEST_NOW).unwrap().is_new);
}

fn chain_without_last(chain: &TestChain) -> TestChain {
    let mut c = chain.clone();
    let tip = c.tip();
    let parent = c.block(&tip).unwrap().header.prev_hash;
    c.set_tip(parent);
    c
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Confirmations come from the same snapshot as the header or transaction they describe, so a
/// block connected in between can never make them underflow; off the main chain they are 0.
#[test]
fn confirmations_are_read_with_the_data() {
    let dir = temp();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks: Vec<_> = (0..5).map(|_| chain.mine(1)).collect();
    for b in &blocks {
        submit(&mut state, b);
    }
    let r = state.reader();
    let info = r.header_info(&blocks[4].hash()).unwrap().unwrap();
    assert_eq!(info.confirmations, 1);
    assert_eq!(
        r.header_info(&blocks[0].hash())
            .unwrap()
            .unwrap()
            .confirmations,
        5
    );
    let txid = blocks[2].transactions[1].txid();
    assert_eq!(r.transaction(&txid).unwrap().unwrap().confirmations, 3);
    let pk = blocks[0].transactions[0].outputs[0].pubkey;
    let ((tip_height, tip_hash), coins) = r.address_utxos_at_tip(&pk).unwrap();
    assert_eq!((tip_height, tip_hash), (5, blocks[4].hash()));
    assert!(coins.iter().all(|(_, c)| c.height <= tip_height));
    // A competing branch takes over: the old tip is off the main chain, 0 confirmations.
    chain.set_tip(blocks[3].hash());
    submit(&mut state, &chain.mine_salted(0, 7));
    submit(&mut state, &chain.mine(0));
    let old = r.header_info(&blocks[4].hash()).unwrap().unwrap();
    assert!(!old.is_on_main_chain);
    assert_eq!(old.confirmations, 0);
}
