//! Full-node sync benchmark: a `cairnd` mines N nearly empty blocks (`generatetoaddress`), a
//! fresh `cairnd` syncs them from it over `/cairn/sync/1` with full validation and RocksDB, and
//! the figure is blocks per second from the second node's start to its reaching the tip.
//!
//! `cargo build --release --workspace --bins && cargo run --release -p cairn-tests --example sync_bench -- [--blocks N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_primitives::Address;
use cairn_tests::{TestNode, faucet_key};
use serde_json::json;

const DEFAULT_BLOCKS: u64 = 2_000;
/// Blocks per `generatetoaddress` call.
const GENERATE_CHUNK: u64 = 500;
/// Design brief: Bitcoin Core syncs 2,000 nearly empty blocks from one peer at 1,239 blocks/s
/// on this machine; the target is 2,500.
const TARGET_BLOCKS_PER_SEC: f64 = 2_500.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let blocks: u64 = args
        .iter()
        .position(|a| a == "--blocks")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(DEFAULT_BLOCKS);

    let a = TestNode::run(&[]).unwrap();
    let prefix = a.rpc("getblockchaininfo", json!([])).unwrap()["addressprefix"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = Address::new(faucet_key().public_key())
        .encode(&prefix)
        .unwrap();
    let t = Instant::now();
    let mut mined = 0;
    while mined < blocks {
        let n = GENERATE_CHUNK.min(blocks - mined);
        a.rpc("generatetoaddress", json!([n, addr])).unwrap();
        mined += n;
    }
    let mine_secs = t.elapsed().as_secs_f64();
    let best = a.rpc("getbestblockhash", json!([])).unwrap();

    let source = a.p2p_addr().unwrap();
    let t = Instant::now();
    let b = TestNode::run(&["--bootnode", &source]).unwrap();
    b.wait_height(blocks, Duration::from_secs(600)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(b.rpc("getbestblockhash", json!([])).unwrap(), best);
    assert_eq!(
        a.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"],
        b.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"]
    );

    println!(
        "full-node sync benchmark (release={}, two cairnd processes on loopback)",
        !cfg!(debug_assertions)
    );
    println!(
        "  mining {blocks} blocks on the source: {mine_secs:.2} s ({:.0} blocks/s)",
        blocks as f64 / mine_secs
    );
    println!(
        "  fresh node syncs {blocks} blocks: {secs:.2} s = {:.0} blocks/s, process start-up included (target >= {TARGET_BLOCKS_PER_SEC:.0}; Bitcoin Core here 1,239)",
        blocks as f64 / secs
    );
}
