//! WebSocket subscriptions on the RPC port: new blocks and new mempool transactions reach a
//! subscriber, and unsubscribing works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_primitives::Address;
use cairn_primitives::encoding::encode_hex;
use cairn_tests::{TestNode, WsClient, faucet_key};
use serde_json::{Value, json};

/// Sends a call and returns its answer, skipping notifications that arrive in between.
fn call(ws: &mut WsClient, id: u64, method: &str, params: Value) -> Value {
    ws.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
        .unwrap();
    loop {
        let msg = ws.recv().unwrap();
        if msg["id"] == json!(id) {
            return msg;
        }
    }
}

/// The next notification of `method`.
fn notification(ws: &mut WsClient, method: &str) -> Value {
    loop {
        let msg = ws.recv().unwrap();
        if msg["method"] == json!(method) {
            return msg["params"]["result"].clone();
        }
    }
}

#[test]
fn subscriptions_deliver_blocks_and_transactions() {
    let node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let faucet = faucet_key();
    let addr = Address::new(faucet.public_key()).encode(&prefix).unwrap();

    let mut ws = WsClient::connect(node.rpc_port).unwrap();
    // Plain calls work over the WebSocket too.
    assert_eq!(
        call(&mut ws, 1, "getblockcount", json!([]))["result"],
        json!(0)
    );
    let blocks_sub = call(&mut ws, 2, "subscribe_newblocks", json!([]))["result"].clone();
    assert!(!blocks_sub.is_null(), "a subscription id");
    let txs_sub = call(&mut ws, 3, "subscribe_newtransactions", json!([]))["result"].clone();
    assert!(!txs_sub.is_null());

    let hashes = node.rpc("generatetoaddress", json!([1, addr])).unwrap();
    let b = notification(&mut ws, "newblocks");
    assert_eq!(b["hash"], hashes[0]);
    assert_eq!(b["height"], json!(1));
    assert_eq!(b["ntx"], json!(1));

    let tx = cairn_tests::spend_genesis_allocation(&node, 7_000).unwrap();
    let txid = node
        .rpc("sendrawtransaction", json!([encode_hex(&tx)]))
        .unwrap();
    let t = notification(&mut ws, "newtransactions");
    assert_eq!(t["txid"], txid);
    assert_eq!(t["fee"], json!(7_000));
    assert_eq!(t["size"], json!(tx.size()));

    // Unsubscribed: the next block is not announced, but calls still answer.
    assert_eq!(
        call(&mut ws, 4, "unsubscribe_newblocks", json!([blocks_sub]))["result"],
        json!(true)
    );
    node.rpc("generatetoaddress", json!([1, addr])).unwrap();
    // The node announces a block before its RPC answer returns; anything queued for this
    // connection arrives before the answer to a later call.
    ws.send(
        &json!({"jsonrpc": "2.0", "id": 5, "method": "getblockcount", "params": []}).to_string(),
    )
    .unwrap();
    loop {
        let msg = ws.recv().unwrap();
        assert_ne!(
            msg["method"],
            json!("newblocks"),
            "no block notification after unsubscribing"
        );
        if msg["id"] == json!(5) {
            assert_eq!(msg["result"], json!(2));
            break;
        }
    }
}
