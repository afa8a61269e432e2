//! Crash safety, proved: a child process imports blocks (with a deep reorganisation and
//! out-of-order delivery) and is killed with SIGKILL at random instants, over and over; after
//! each kill the database must reopen with a UTXO digest equal to a fresh in-memory replay of
//! the recovered main chain, and address and transaction indexes that agree with it. Half the
//! imports send every header first, as sync does, so most blocks are connected far below the
//! best header and their index entries are written by the background indexer: kills land
//! while the indexes lag, during its batches and during the reorganisation. A quarter of the
//! imports use a tiny UTXO cache, flushed every block or two, so kills land during flushes;
//! with the default cache nothing is flushed before the end, and every recovery replays the
//! UTXO changes from undo data. Half the imports hand the blocks over in batches, as a sync
//! does (`accept_blocks_from`), so kills also land inside the connect pipeline, between one
//! block's commit and the next block's signature checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_consensus::ChainParams;
use cairn_primitives::Block;
use cairn_primitives::encoding::{decode, encode};
use cairn_storage::test_utils::{TEST_NOW, TestChain};
use cairn_storage::{BlockSource, ChainState, StorageConfig};
use common::{check_consistency, temp};

const ENV_DIR: &str = "CAIRN_CRASH_CHILD_DIR";
const ENV_BLOCKS: &str = "CAIRN_CRASH_CHILD_BLOCKS";
const ENV_HEADERS_FIRST: &str = "CAIRN_CRASH_CHILD_HEADERS_FIRST";
const ENV_SMALL_CACHE: &str = "CAIRN_CRASH_CHILD_SMALL_CACHE";
const ENV_BATCHES: &str = "CAIRN_CRASH_CHILD_BATCHES";
/// Blocks per batch in the batch variants.
const BATCH_BLOCKS: usize = 8;
/// A UTXO cache of a few dozen coins: flushed every block or two, so kills also land during
/// flushes (the default cache is flushed only at the end, so its kills replay from genesis).
const SMALL_CACHE_BYTES: usize = 4 * 1024;
/// Flush batch size with the tiny cache: a few coins per chunk.
const SMALL_FLUSH_BATCH_BYTES: usize = 256;
/// Kills to perform.
const KILLS: usize = 60;
/// Import variants (see `run_child`): headers first or not, tiny UTXO cache or not, blocks one
/// at a time or in batches.
const VARIANTS: usize = 8;

/// The child: imports every block of the file into the database, then exits.
#[test]
#[ignore = "run by crash_at_random_points_leaves_a_consistent_database as a child process"]
fn crash_child() {
    let (Ok(dir), Ok(file)) = (std::env::var(ENV_DIR), std::env::var(ENV_BLOCKS)) else {
        return;
    };
    let blocks: Vec<Block> = decode(&std::fs::read(file).unwrap()).unwrap();
    let config = StorageConfig {
        utxo_cache_bytes: if std::env::var_os(ENV_SMALL_CACHE).is_some() {
            SMALL_CACHE_BYTES
        } else {
            StorageConfig::default().utxo_cache_bytes
        },
        // With the tiny cache, flushes in chunks of a few coins: kills land between chunks.
        utxo_flush_batch_bytes: if std::env::var_os(ENV_SMALL_CACHE).is_some() {
            SMALL_FLUSH_BATCH_BYTES
        } else {
            StorageConfig::default().utxo_flush_batch_bytes
        },
        ..StorageConfig::default()
    };
    let mut state = ChainState::open(&dir, ChainParams::devnet(), config).unwrap();
    if std::env::var_os(ENV_HEADERS_FIRST).is_some() {
        let mut by_height = blocks.clone();
        by_height.sort_by_key(|b| b.header.time);
        for b in &by_height {
            let _ = state.accept_header(&b.header, TEST_NOW);
        }
    }
    if std::env::var_os(ENV_BATCHES).is_some() {
        for batch in blocks.chunks(BATCH_BLOCKS) {
            let _ = state.accept_blocks_from(batch.to_vec(), TEST_NOW, BlockSource::Requested);
        }
    } else {
        for b in blocks {
            let _ = state.accept_block(b, TEST_NOW);
        }
    }
}

/// Small deterministic PRNG (xorshift64*), seeded from the clock; the seed is printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn run_child(dir: &Path, file: &Path, kill_after: Option<Duration>, variant: usize) -> bool {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if variant % 2 == 1 {
        cmd.env(ENV_HEADERS_FIRST, "1");
    }
    if variant % 4 >= 2 {
        cmd.env(ENV_SMALL_CACHE, "1");
    }
    if variant % 8 >= 4 {
        cmd.env(ENV_BATCHES, "1");
    }
    let mut child = cmd
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_BLOCKS, file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    match kill_after {
        None => child.wait().unwrap().success(),
        Some(d) => {
            std::thread::sleep(d);
            let killed = child.try_wait().unwrap().is_none();
            child.kill().unwrap_or(()); // SIGKILL on Unix
            child.wait().unwrap();
            killed
        }
    }
}

#[test]
fn crash_at_random_points_leaves_a_consistent_database() {
    let params = ChainParams::devnet();
    // Branch A: 60 blocks; branch B forks at 40 and overtakes with 25 blocks (a 20-deep reorg),
    // delivered with each pair swapped (child before parent).
    let mut chain = TestChain::new(params.clone());
    let a: Vec<Block> = (0..60).map(|_| chain.mine(6)).collect();
    chain.set_tip(a[39].hash());
    let b: Vec<Block> = (0..25)
        .map(|i| chain.mine_salted(6, if i == 0 { 1 } else { 0 }))
        .collect();
    let mut order: Vec<Block> = a.clone();
    for pair in b.chunks(2) {
        order.extend(pair.iter().rev().cloned());
    }
    let work = temp();
    let file = work.path().join("blocks.bin");
    std::fs::write(&file, encode(&order)).unwrap();

    // Expected digest at every block of both branches.
    let expected = common::expected_digests(&params, &chain, &[a[59].hash(), b[24].hash()]);

    // How long a full import takes in each variant (they differ: headers first, tiny cache),
    // the shortest of two runs, to spread the kills over it.
    let full: Vec<Duration> = (0..VARIANTS)
        .map(|v| {
            (0..2)
                .map(|_| {
                    let calib = temp();
                    let start = Instant::now();
                    assert!(
                        run_child(calib.path(), &file, None, v),
                        "child import failed"
                    );
                    start.elapsed()
                })
                .min()
                .unwrap_or_default()
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test: full import {full:?}, seed {seed:#x}");
    let mut rng = Rng(seed);

    let budget = Instant::now();
    let mut dir = temp();
    let mut killed_mid_import = 0;
    let mut heights = Vec::new();
    for i in 0..KILLS {
        // Mostly fresh directories; every third kill hits a database recovering from the last.
        if i % 3 != 0 {
            dir = temp();
        }
        let span = full[i % VARIANTS].as_micros() as u64;
        let delay = Duration::from_micros(rng.next() % span.max(1));
        if run_child(dir.path(), &file, Some(delay), i) {
            killed_mid_import += 1;
        }
        let state = ChainState::open(dir.path(), params.clone(), StorageConfig::default()).unwrap();
        let r = state.reader();
        let s = r.utxo_stats().unwrap();
        let want = expected
            .get(&s.best_hash)
            .expect("tip is a generated block");
        assert_eq!(
            (s.txouts, s.total_amount.0, s.digest),
            (want.txouts, want.total_amount, want.digest),
            "kill {i} (seed {seed:#x})"
        );
        // Full recomputation on some kills (it is the slow part).
        if i % 4 == 0 {
            check_consistency(&r, &chain);
        }
        heights.push(s.height);
    }
    eprintln!(
        "crash test: {KILLS} kills ({killed_mid_import} mid-import) in {:?}; recovered heights {heights:?}",
        budget.elapsed()
    );
    assert!(
        killed_mid_import >= KILLS / 2,
        "most kills must land during the import"
    );
    // After all that, one clean run finishes the chain.
    assert!(run_child(dir.path(), &file, None, 3));
    assert!(run_child(dir.path(), &file, None, 7));
    let state = ChainState::open(dir.path(), params, StorageConfig::default()).unwrap();
    assert_eq!(state.tip().hash, b[24].hash());
    check_consistency(&state.reader(), &chain);
}
