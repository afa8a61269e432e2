//! Every RPC method of docs/rpc.md against a real node: result shapes, error codes for bad input,
//! JSON-RPC 1.0 compatibility, limits; the node keeps serving throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, Amount, OutPoint, Signature, Transaction, TxIn, TxOut};
use cairn_tests::{TestNode, faucet_key, post_json, post_raw};
use serde_json::{Value, json};

fn keys(v: &Value, want: &[&str]) {
    for k in want {
        assert!(v.get(*k).is_some(), "missing `{k}` in {v}");
    }
}

fn code(node: &TestNode, method: &str, params: Value) -> i64 {
    match node.call(method, params.clone()) {
        Ok(v) => panic!("{method} {params} succeeded with {v}"),
        Err(e) => e.code,
    }
}

#[test]
fn every_method_answers_with_its_shape() {
    let node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    keys(
        &info,
        &[
            "chain",
            "blocks",
            "headers",
            "bestblockhash",
            "difficulty",
            "mediantime",
            "time",
            "chainwork",
            "verificationprogress",
            "initialblockdownload",
            "size_on_disk",
            "genesishash",
            "addressprefix",
            "coinbasematurity",
        ],
    );
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let genesis: cairn_primitives::BlockHash =
        info["genesishash"].as_str().unwrap().parse().unwrap();
    let faucet = faucet_key();
    let addr = Address::new(faucet.public_key()).encode(&prefix).unwrap();

    // Mining.
    let hashes = node.rpc("generatetoaddress", json!([3, addr])).unwrap();
    assert_eq!(hashes.as_array().unwrap().len(), 3);
    assert_eq!(node.rpc("getblockcount", json!([])).unwrap(), json!(3));
    let best = node.rpc("getbestblockhash", json!([])).unwrap();
    assert_eq!(best, hashes[2]);
    assert_eq!(node.rpc("getblockhash", json!([3])).unwrap(), best);
    assert_eq!(
        node.rpc("getblockhash", json!({"height": 0})).unwrap(),
        json!(genesis.to_hex()),
        "named params"
    );
    let mi = node.rpc("getmininginfo", json!([])).unwrap();
    keys(
        &mi,
        &[
            "blocks",
            "difficulty",
            "networkhashps",
            "pooledtx",
            "chain",
            "mining",
            "target",
        ],
    );

    // Blocks and headers.
    let h = node.rpc("getblockheader", json!([best])).unwrap();
    keys(
        &h,
        &[
            "hash",
            "confirmations",
            "height",
            "version",
            "merkleroot",
            "time",
            "mediantime",
            "nonce",
            "bits",
            "target",
            "difficulty",
            "chainwork",
            "ntx",
            "previousblockhash",
        ],
    );
    assert_eq!(h["confirmations"], json!(1));
    assert!(
        node.rpc("getblockheader", json!([best, false]))
            .unwrap()
            .is_string()
    );
    let b1 = node.rpc("getblock", json!([best])).unwrap();
    keys(&b1, &["hash", "size", "tx", "height"]);
    let coinbase_txid = b1["tx"][0].as_str().unwrap().to_string();
    let b0 = node.rpc("getblock", json!([best, 0])).unwrap();
    assert!(b0.is_string());
    assert_eq!(
        node.rpc("submitblock", json!([b0])).unwrap(),
        json!("duplicate")
    );
    let b2 = node.rpc("getblock", json!([best, 2])).unwrap();
    assert_eq!(b2["tx"][0]["coinbase"], json!(true));
    let prev = node
        .rpc("getblock", json!([h["previousblockhash"]]))
        .unwrap();
    assert_eq!(prev["nextblockhash"], best);

    // Transactions.
    let raw = node
        .rpc("getrawtransaction", json!([coinbase_txid]))
        .unwrap();
    assert!(raw.is_string());
    let v = node
        .rpc("getrawtransaction", json!([coinbase_txid, true]))
        .unwrap();
    keys(
        &v,
        &[
            "txid",
            "wtxid",
            "hash",
            "hex",
            "size",
            "version",
            "locktime",
            "vin",
            "vout",
            "blockhash",
            "height",
            "confirmations",
            "time",
            "blocktime",
        ],
    );
    assert_eq!(v["vout"][0]["address"], json!(addr));
    let out = node.rpc("gettxout", json!([coinbase_txid, 0])).unwrap();
    keys(
        &out,
        &[
            "bestblock",
            "confirmations",
            "value",
            "address",
            "pubkey",
            "coinbase",
        ],
    );
    assert_eq!(
        node.rpc("gettxout", json!([coinbase_txid, 7])).unwrap(),
        Value::Null
    );
    let set = node.rpc("gettxoutsetinfo", json!([])).unwrap();
    keys(
        &set,
        &[
            "height",
            "bestblock",
            "txouts",
            "total_amount",
            "utxo_digest",
        ],
    );

    // Mempool: spend the genesis allocation.
    let utxos = node.rpc("getaddressutxos", json!([addr])).unwrap();
    let alloc = utxos
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["height"] == json!(0))
        .unwrap()
        .clone();
    keys(
        &alloc,
        &[
            "txid",
            "vout",
            "value",
            "height",
            "confirmations",
            "coinbase",
            "spendable",
        ],
    );
    let tx = cairn_tests::spend_genesis_allocation(&node, 10_000).unwrap();
    assert_eq!(
        tx.inputs[0].prevout.txid.to_hex(),
        alloc["txid"].as_str().unwrap()
    );
    let hex = encode_hex(&tx);
    let test = node.rpc("testmempoolaccept", json!([[hex]])).unwrap();
    assert_eq!(test[0]["allowed"], json!(true), "{test}");
    assert_eq!(test[0]["fees"]["base"], json!(10_000));
    let txid = node.rpc("sendrawtransaction", json!([hex])).unwrap();
    assert_eq!(txid, json!(tx.txid().to_hex()));
    assert_eq!(node.rpc("getrawmempool", json!([])).unwrap(), json!([txid]));
    let verbose = node.rpc("getrawmempool", json!([true])).unwrap();
    keys(
        &verbose[txid.as_str().unwrap()],
        &[
            "size",
            "fee",
            "feerate",
            "time",
            "height",
            "depends",
            "spentby",
            "ancestorcount",
            "ancestorsize",
            "ancestorfees",
            "descendantcount",
            "descendantsize",
            "descendantfees",
        ],
    );
    let entry = node.rpc("getmempoolentry", json!([txid])).unwrap();
    assert_eq!(entry["fee"], json!(10_000));
    let mp = node.rpc("getmempoolinfo", json!([])).unwrap();
    keys(
        &mp,
        &[
            "loaded",
            "size",
            "bytes",
            "usage",
            "maxmempool",
            "mempoolminfee",
            "minrelaytxfee",
            "dustthreshold",
        ],
    );
    assert_eq!(mp["size"], json!(1));
    let fee = node.rpc("estimatefee", json!([])).unwrap();
    keys(&fee, &["feerate", "blocks"]);
    assert_eq!(fee["blocks"], json!(6));
    assert!(
        node.rpc("getrawtransaction", json!([txid, true]))
            .unwrap()
            .get("blockhash")
            .is_none()
    );
    // The spent allocation is gone from gettxout with the mempool, present without.
    assert_eq!(
        node.rpc("gettxout", json!([alloc["txid"], alloc["vout"]]))
            .unwrap(),
        Value::Null
    );
    assert!(
        node.rpc("gettxout", json!([alloc["txid"], alloc["vout"], false]))
            .unwrap()
            .is_object()
    );

    // Address index: the mempool's net change is unconfirmed (-fee here).
    let bal = node.rpc("getaddressbalance", json!([addr])).unwrap();
    assert_eq!(bal["unconfirmed"], json!(-10_000), "{bal}");
    let txids = node.rpc("getaddresstxids", json!([addr])).unwrap();
    assert_eq!(txids.as_array().unwrap().last().unwrap(), &txid);

    // Resubmitting is harmless; the transaction confirms; then it is "already in chain".
    assert_eq!(node.rpc("sendrawtransaction", json!([hex])).unwrap(), txid);
    let mined = node.rpc("generatetoaddress", json!([1, addr])).unwrap();
    assert_eq!(node.rpc("getrawmempool", json!([])).unwrap(), json!([]));
    assert_eq!(code(&node, "sendrawtransaction", json!([hex])), -27);
    // getblock verbosity 2 shows each transaction's fee (from the block's undo data).
    let full = node.rpc("getblock", json!([mined[0], 2])).unwrap();
    let entry = full["tx"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["txid"] == txid)
        .unwrap();
    assert_eq!(entry["fee"], json!(10_000));
    assert!(full["tx"][0].get("fee").is_none(), "a coinbase has no fee");

    // Network.
    let ni = node.rpc("getnetworkinfo", json!([])).unwrap();
    keys(
        &ni,
        &[
            "version",
            "subversion",
            "protocolversion",
            "connections",
            "connections_in",
            "connections_out",
            "networkactive",
            "peerid",
            "localaddresses",
            "relayfee",
        ],
    );
    let peer_id = ni["peerid"].as_str().unwrap();
    for a in ni["localaddresses"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        assert!(a.ends_with(&format!("/p2p/{peer_id}")), "{a}");
        assert_eq!(a.matches("/p2p/").count(), 1, "one peer id suffix: {a}");
    }
    assert_eq!(node.rpc("getpeerinfo", json!([])).unwrap(), json!([]));
    assert_eq!(node.rpc("getconnectioncount", json!([])).unwrap(), json!(0));

    assert_eq!(
        node.rpc("stop", json!([])).unwrap(),
        json!("Cairn server stopping")
    );
}

#[test]
fn bad_input_gets_the_right_error_and_the_node_keeps_serving() {
    let node = TestNode::run(&[]).unwrap();
    let url = node.rpc_url.clone();
    // Malformed JSON.
    let (_, body) = post_raw(&url, "{\"jsonrpc\": \"2.0\", \"method\": ").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        json!(-32700)
    );
    // Unknown method.
    assert_eq!(code(&node, "getnothing", json!([])), -32601);
    // Wrong types and counts.
    assert_eq!(code(&node, "getblockhash", json!(["ten"])), -32602);
    assert_eq!(code(&node, "getblockhash", json!([])), -32602);
    assert_eq!(code(&node, "getblockcount", json!([1])), -32602);
    assert_eq!(code(&node, "getblock", json!([12])), -32602);
    // Bad values.
    assert_eq!(code(&node, "getblockhash", json!([1_000_000])), -8);
    assert_eq!(code(&node, "getblock", json!(["zz"])), -8);
    assert_eq!(code(&node, "getblock", json!(["00".repeat(32)])), -5);
    assert_eq!(
        code(&node, "getrawtransaction", json!(["00".repeat(32)])),
        -5
    );
    assert_eq!(code(&node, "sendrawtransaction", json!(["deadbeef"])), -22);
    assert_eq!(code(&node, "getaddressbalance", json!(["cdev1qqqq"])), -5);
    assert_eq!(code(&node, "estimatefee", json!([0])), -8);
    // A transaction that breaks consensus (spends a coin that does not exist): -25.
    let tx = Transaction {
        version: Transaction::VERSION,
        inputs: vec![TxIn {
            prevout: OutPoint::new(cairn_primitives::Txid([7; 32]), 0),
            signature: Signature([1; 64]),
        }],
        outputs: vec![TxOut {
            value: Amount(1_000),
            pubkey: faucet_key().public_key(),
        }],
        lock_time: 0,
    };
    let c = code(&node, "sendrawtransaction", json!([encode_hex(&tx)]));
    assert!(c == -25 || c == -26, "missing inputs: {c}");
    // Oversized body: refused before it is read whole.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getblockcount\",\"params\":[\"{}\"]}}",
        "a".repeat(17 * 1024 * 1024)
    );
    // The server answers 413 and closes without reading the rest, so the client's write can
    // fail (broken pipe) before it reads the answer: a few tries must see the 413 itself.
    let (status, body) = (0..5)
        .find_map(|_| post_raw(&url, &big).ok())
        .expect("a 413 answer in 5 tries, not only broken pipes");
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        json!(-32600)
    );
    // A huge batch.
    let batch: Vec<Value> = (0..5_000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "getblockcount"}))
        .collect();
    let resp = post_json(&url, &Value::Array(batch)).unwrap();
    assert_eq!(resp["error"]["code"], json!(-32600), "{resp}");
    // A normal batch works, answers in order.
    let resp = post_json(&url, &json!([{"jsonrpc": "2.0", "id": 1, "method": "getblockcount"}, {"jsonrpc": "2.0", "id": 2, "method": "nope"}])).unwrap();
    assert_eq!(resp[0]["result"], json!(0));
    assert_eq!(resp[1]["error"]["code"], json!(-32601));
    // Calls of a batch run concurrently, yet answers keep the batch's order; a notification
    // (no id) gets no answer; a malformed entry gets its own error.
    let mut calls: Vec<Value> = (0..200)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": if i % 3 == 0 { "getblockhash" } else { "getbestblockhash" }, "params": if i % 3 == 0 { json!([0]) } else { json!([]) }}))
        .collect();
    calls.insert(50, json!({"jsonrpc": "2.0", "method": "getblockcount"}));
    calls.insert(100, json!({"jsonrpc": "2.0", "id": "bad", "method": 7}));
    let resp = post_json(&url, &Value::Array(calls)).unwrap();
    let answers = resp.as_array().unwrap();
    assert_eq!(
        answers.len(),
        201,
        "200 calls + 1 malformed, no answer to the notification"
    );
    let ids: Vec<Value> = answers.iter().map(|a| a["id"].clone()).collect();
    let mut want: Vec<Value> = (0..200).map(|i| json!(i)).collect();
    want.insert(99, json!("bad"));
    assert_eq!(ids, want, "answers in batch order");
    assert_eq!(answers[99]["error"]["code"], json!(-32600));
    let only_notifications =
        post_raw(&url, r#"[{"jsonrpc":"2.0","method":"getblockcount"}]"#).unwrap();
    // Nothing to answer: jsonrpsee sends an empty body or `null`, never an array of answers.
    assert!(
        matches!(only_notifications.1.trim(), "" | "null"),
        "{only_notifications:?}"
    );
    // JSON-RPC 1.0, as Bitcoin client libraries send it: result, error and id all present.
    let resp = post_json(
        &url,
        &json!({"method": "getblockcount", "params": [], "id": "x"}),
    )
    .unwrap();
    assert_eq!(resp, json!({"result": 0, "error": null, "id": "x"}));
    let resp = post_json(
        &url,
        &json!({"jsonrpc": "1.0", "method": "getblockhash", "params": [99], "id": 3}),
    )
    .unwrap();
    assert_eq!(resp["result"], Value::Null);
    assert_eq!(resp["error"]["code"], json!(-8));
    // Still serving.
    assert_eq!(node.rpc("getblockcount", json!([])).unwrap(), json!(0));
    // Metrics.
    let agent = ureq::AgentBuilder::new().build();
    let text = agent
        .get(&format!("{url}metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("cairn_chain_height 0"), "{text}");
    assert!(text.contains("cairn_rpc_calls_total"));
    // What the chain state holds in memory, from RocksDB itself.
    let gauge = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
    };
    assert!(
        gauge("cairn_db_memtable_bytes") > 0,
        "genesis sits in a memtable"
    );
    assert!(
        gauge("cairn_db_block_cache_bytes")
            <= cairn_storage::config::DEFAULT_BLOCK_CACHE_BYTES as u64
    );
    assert!(
        gauge("cairn_utxo_cache_bytes") <= cairn_storage::config::DEFAULT_UTXO_CACHE_BYTES as u64
    );
    gauge("cairn_db_table_readers_bytes");
}
