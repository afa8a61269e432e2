//! Block-connect benchmark: imports N blocks of 200 one-in-two-out signed transactions into a
//! fresh RocksDB chain, beside the raw BIP340 verify rate measured in the same run (one core
//! and all cores). Three ways:
//! - as a sync: every header first, then the bodies in the sync driver's batches, so the
//!   indexes wait for the end as in a node that syncs (`sync_bench` without the network);
//! - one by one at the tip, the background indexer following each block, as a node does at the
//!   tip;
//! - the same without the UTXO cache (every input read from RocksDB).
//!
//! `cargo run --release -p cairn-storage --features test-utils --example connect_bench -- [--blocks N] [--full] [--sync-only] [--batch N] [--flush-batch-mib N]`
//! (`--full`: 10,000 blocks; `--sync-only`: the first way alone, for profiling the connect path
//! without a network; `--batch`: blocks per call in it, 16 by default; `--flush-batch-mib`:
//! the UTXO flush's batch size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use cairn_consensus::ChainParams;
use cairn_primitives::keys::{sighash, verify};
use cairn_primitives::{Block, Signature, Txid, XOnlyPublicKey};
use cairn_storage::config::MAX_HEADERS_PER_REQUEST;
use cairn_storage::test_utils::{TEST_NOW, TestChain, faucet_key};
use cairn_storage::{BlockSource, ChainState, Stage, StorageConfig};
use rayon::prelude::*;

/// Default block count: about a minute or two in release on a small machine.
const DEFAULT_BLOCKS: usize = 150;
/// Blocks per `accept_blocks_from` call in the sync run, as the sync driver hands them over
/// (`cairn_p2p::sync::MAX_SUBMIT_BATCH_BLOCKS`): their connects go through the pipeline.
const SYNC_BATCH_BLOCKS: usize = 16;
const FULL_BLOCKS: usize = 10_000;
const TXS_PER_BLOCK: usize = 200;
/// Signatures in the raw verify measurement.
const VERIFY_SAMPLES: usize = 20_000;
/// Block connect target, as a fraction of the all-core verify rate.
const CONNECT_TARGET_RATIO: f64 = 0.85;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut blocks_n = DEFAULT_BLOCKS;
    let mut sync_batch = SYNC_BATCH_BLOCKS;
    let mut sync_only = false;
    let mut flush_batch = cairn_storage::config::DEFAULT_UTXO_FLUSH_BATCH_BYTES;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--full" => blocks_n = FULL_BLOCKS,
            "--sync-only" => sync_only = true,
            "--flush-batch-mib" => {
                i += 1;
                flush_batch = args
                    .get(i)
                    .and_then(|s| s.parse::<usize>().ok())
                    .expect("--flush-batch-mib N")
                    << 20;
            }
            "--batch" => {
                i += 1;
                sync_batch = args.get(i).and_then(|s| s.parse().ok()).expect("--batch N");
            }
            "--blocks" => {
                i += 1;
                blocks_n = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .expect("--blocks N");
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    let params = ChainParams::devnet();
    let threads = rayon::current_num_threads();

    eprintln!("generating {blocks_n} blocks of {TXS_PER_BLOCK} signed transactions...");
    let t = Instant::now();
    let mut chain = TestChain::new(params.clone());
    let blocks: Vec<Block> = (0..blocks_n).map(|_| chain.mine(TXS_PER_BLOCK)).collect();
    let txs: usize = blocks.iter().map(|b| b.transactions.len() - 1).sum();
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());

    // Raw verify rate, same run.
    let key = faucet_key();
    let genesis = params.genesis_hash();
    let samples: Vec<(XOnlyPublicKey, [u8; 32], Signature)> = (0..VERIFY_SAMPLES as u32)
        .map(|i| {
            let mut t = [0u8; 32];
            t[..4].copy_from_slice(&i.to_le_bytes());
            let msg = sighash(&genesis, &Txid(t));
            (key.public_key(), msg, key.sign(&msg))
        })
        .collect();
    let t = Instant::now();
    assert!(samples.iter().all(|(pk, m, s)| verify(pk, m, s)));
    let single = VERIFY_SAMPLES as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    assert!(samples.par_iter().all(|(pk, m, s)| verify(pk, m, s)));
    let all_core = VERIFY_SAMPLES as f64 / t.elapsed().as_secs_f64();

    let mut results = Vec::new();
    let mut stages = Vec::new();
    let cache_bytes = cairn_storage::config::DEFAULT_UTXO_CACHE_BYTES;
    for (label, cache, batch, headers_first) in [
        ("as a sync", cache_bytes, sync_batch, true),
        ("one by one", cache_bytes, 1, false),
        ("no UTXO cache", 0, 1, false),
    ]
    .into_iter()
    .take(if sync_only { 1 } else { 3 })
    {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            utxo_cache_bytes: cache,
            utxo_flush_batch_bytes: flush_batch,
            ..StorageConfig::default()
        };
        let mut state = ChainState::open(dir.path(), params.clone(), config).unwrap();
        let t = Instant::now();
        if headers_first {
            for chunk in blocks.chunks(MAX_HEADERS_PER_REQUEST) {
                let headers: Vec<_> = chunk.iter().map(|b| b.header).collect();
                state.accept_headers(&headers, TEST_NOW).unwrap();
            }
        }
        for chunk in blocks.chunks(batch) {
            let out = state
                .accept_blocks_from(chunk.to_vec(), TEST_NOW, BlockSource::Requested)
                .unwrap();
            assert_eq!(out.connected().len(), chunk.len());
        }
        let secs = t.elapsed().as_secs_f64();
        let (hits, misses, _) = state.cache_stats();
        let timings = state.connect_timings();
        stages.push((
            label,
            timings.seconds(Stage::FetchInputs),
            timings.seconds(Stage::Flush),
        ));
        results.push((
            label,
            txs as f64 / secs,
            blocks_n as f64 / secs,
            hits,
            misses,
        ));
    }

    println!(
        "connect_bench: {blocks_n} blocks x {TXS_PER_BLOCK} one-in-two-out txs ({txs} txs), {threads} threads"
    );
    println!("  schnorr verify, 1 thread      : {single:>10.0} sig/s");
    println!(
        "  schnorr verify, all cores     : {all_core:>10.0} sig/s  (x{:.2})",
        all_core / single
    );
    for (label, tps, bps, hits, misses) in results {
        println!(
            "  block connect, {label:<13}: {tps:>10.0} tx/s ({bps:.1} blocks/s, cache hits {hits}, misses {misses}) \
             = {:.2} of all-core verify rate; target >= {CONNECT_TARGET_RATIO:.2} -> {}",
            tps / all_core,
            if tps / all_core >= CONNECT_TARGET_RATIO {
                "MET"
            } else {
                "NOT MET"
            }
        );
    }
    for (label, fetch, flush) in stages {
        println!(
            "  {label:<13}: reading coins not in the cache {fetch:.2} s, UTXO cache flushes {flush:.2} s (within the time above)"
        );
    }
}
