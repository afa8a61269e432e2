//! A node killed (SIGKILL) in the middle of a sync restarts and finishes it: its UTXO set is
//! rebuilt from undo data past the last cache flush, its indexes (built in the background while
//! syncing) catch up, and every answer then agrees with the node it synced from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_primitives::encoding::encode_hex;
use cairn_tests::{NodeOptions, TestNode, faucet_address};
use serde_json::{Value, json};

/// Blocks on the source: enough that the syncing node is caught mid-way.
const BLOCKS_AFTER_TX: u64 = 2_500;
const SYNC_TIMEOUT: Duration = Duration::from_secs(240);

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn node_killed_mid_sync_restarts_finishes_and_agrees() {
    let a = TestNode::run(&[]).unwrap();
    let faucet = faucet_address();
    a.rpc("generatetoaddress", json!([5, faucet])).unwrap();
    // A payment whose block ends up far below the tip: the syncing node indexes it in the
    // background, not in the block's batch.
    let tx = cairn_tests::spend_genesis_allocation(&a, 10_000).unwrap();
    let txid: String = serde_json::from_value(
        a.rpc("sendrawtransaction", json!([encode_hex(&tx)]))
            .unwrap(),
    )
    .unwrap();
    a.rpc("generatetoaddress", json!([1, faucet])).unwrap();
    let mut mined = 0;
    while mined < BLOCKS_AFTER_TX {
        let n = 500.min(BLOCKS_AFTER_TX - mined);
        a.rpc("generatetoaddress", json!([n, faucet])).unwrap();
        mined += n;
    }
    let tip = a.height().unwrap();

    let source = a.p2p_addr().unwrap();
    let mut b = TestNode::run(&["--bootnode", &source]).unwrap();
    let mut seen = 0;
    wait_for("the sync to start", SYNC_TIMEOUT, || {
        seen = b.height().unwrap_or(0);
        seen >= 50
    });
    b.kill();
    assert!(
        seen < tip,
        "the kill must land mid-sync (at {seen} of {tip})"
    );
    eprintln!("killed mid-sync at height {seen} of {tip}");
    let datadir = b.datadir.clone();
    let (_keep, _) = b.into_datadir();
    let b = TestNode::start(NodeOptions {
        dev: false,
        args: vec!["--bootnode".into(), source.clone()],
        datadir: Some(datadir),
    })
    .unwrap();
    b.wait_height(tip, SYNC_TIMEOUT).unwrap();
    wait_for("the indexes", SYNC_TIMEOUT, || {
        b.rpc("getindexinfo", json!([]))
            .is_ok_and(|i| i["addressindex"]["synced"] == json!(true))
    });

    let same = |method: &str, params: Value| {
        assert_eq!(
            a.rpc(method, params.clone()).unwrap(),
            b.rpc(method, params.clone()).unwrap(),
            "{method} {params}"
        );
    };
    same("getbestblockhash", json!([]));
    same("gettxoutsetinfo", json!([]));
    same("getindexinfo", json!([]));
    same("getaddressbalance", json!([faucet]));
    same("getaddresstxids", json!([faucet]));
    same("getaddressutxos", json!([faucet]));
    same("getrawtransaction", json!([txid, true]));
    // The coins themselves: the payment's outputs unspent, the allocation it spent gone.
    for vout in 0..tx.outputs.len() {
        same("gettxout", json!([txid, vout]));
    }
    let spent = &tx.inputs[0].prevout;
    same("gettxout", json!([spent.txid.to_string(), spent.vout]));
    assert_eq!(
        b.rpc("gettxout", json!([spent.txid.to_string(), spent.vout]))
            .unwrap(),
        Value::Null
    );
    assert_eq!(
        b.log_text().matches("applied again from undo data").count(),
        1
    );
}
