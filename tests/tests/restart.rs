//! A restart keeps the chain and the mempool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cairn_primitives::Address;
use cairn_primitives::encoding::encode_hex;
use cairn_tests::{NodeOptions, TestNode, faucet_key};
use serde_json::json;

#[test]
fn restart_keeps_chain_and_mempool() {
    let mut node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let faucet = faucet_key();
    let addr = Address::new(faucet.public_key()).encode(&prefix).unwrap();
    node.rpc("generatetoaddress", json!([5, addr])).unwrap();

    // Spend the faucet's genesis allocation (output 0 of the genesis coinbase).
    let tx = cairn_tests::spend_genesis_allocation(&node, 10_000).unwrap();
    let txid = node
        .rpc("sendrawtransaction", json!([encode_hex(&tx)]))
        .unwrap();
    let best = node.rpc("getbestblockhash", json!([])).unwrap();
    let digest = node.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"].clone();
    assert!(node.terminate(Duration::from_secs(30)).unwrap().success());

    let datadir = node.datadir.clone();
    let (_tmp, _) = node.into_datadir();
    let node = TestNode::start(NodeOptions {
        dev: false,
        args: vec![],
        datadir: Some(datadir),
    })
    .unwrap();
    assert_eq!(node.height().unwrap(), 5);
    assert_eq!(node.rpc("getbestblockhash", json!([])).unwrap(), best);
    assert_eq!(
        node.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"],
        digest
    );
    let pool = node.rpc("getrawmempool", json!([])).unwrap();
    assert_eq!(pool, json!([txid]), "the mempool survived the restart");
}
