//! The RPC methods explorers call, against a real node: result shapes with values checked
//! against what the test itself built (amounts, fees, spenders, counts), error codes for bad
//! input, paging by cursor while blocks arrive, and the explorer's static files and their
//! Content-Security-Policy (on by default, off with `--no-explorer`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_primitives::Address;
use cairn_primitives::encoding::encode_hex;
use cairn_tests::{RPC_TIMEOUT, TestNode, faucet_key};
use serde_json::{Value, json};

fn code(node: &TestNode, method: &str, params: Value) -> i64 {
    match node.call(method, params.clone()) {
        Ok(v) => panic!("{method} {params} succeeded with {v}"),
        Err(e) => e.code,
    }
}

/// Every page of `getaddresstxids` with `opts` (plus `after`), concatenated.
fn all_pages(node: &TestNode, addr: &str, opts: Value) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut after = Value::Null;
    for pages in 1..=1_000 {
        let mut o = opts.clone();
        o["after"] = after;
        let page = node.rpc("getaddresstxids", json!([addr, o])).unwrap();
        out.extend(
            page["txs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["txid"].clone()),
        );
        if page["next"].is_null() {
            return (out, pages);
        }
        after = page["next"].clone();
    }
    panic!("paging did not end");
}

#[test]
fn explorer_methods_answer_with_core_shapes_and_right_values() {
    let node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let faucet = faucet_key();
    let addr = Address::new(faucet.public_key()).encode(&prefix).unwrap();
    node.rpc("generatetoaddress", json!([3, addr])).unwrap();

    // A pooled spend of the genesis allocation: prevout and fee known before it confirms.
    let alloc = node.rpc("getaddressutxos", json!([addr])).unwrap();
    let alloc = alloc
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["height"] == json!(0))
        .unwrap()
        .clone();
    let alloc_value = alloc["value"].as_u64().unwrap();
    let tx = cairn_tests::spend_genesis_allocation(&node, 10_000).unwrap();
    let hex = encode_hex(&tx);
    let txid = node.rpc("sendrawtransaction", json!([hex])).unwrap();
    let pooled = node.rpc("getrawtransaction", json!([txid, 2])).unwrap();
    assert_eq!(pooled["fee"], json!(10_000), "{pooled}");
    let prevout = &pooled["vin"][0]["prevout"];
    assert_eq!(prevout["value"], json!(alloc_value));
    assert_eq!(prevout["address"], json!(addr));
    assert_eq!(prevout["height"], json!(0));
    assert_eq!(prevout["generated"], json!(false));
    // Verbosity 1 is unchanged: no prevout, no fee.
    let v1 = node.rpc("getrawtransaction", json!([txid, true])).unwrap();
    assert!(v1["vin"][0].get("prevout").is_none() && v1.get("fee").is_none());
    assert_eq!(code(&node, "getrawtransaction", json!([txid, 3])), -8);

    assert_eq!(
        node.rpc("getmempoolancestors", json!([txid])).unwrap(),
        json!([])
    );
    assert_eq!(
        node.rpc("getmempooldescendants", json!([txid, true]))
            .unwrap(),
        json!({})
    );
    let unknown = "00".repeat(32);
    assert_eq!(code(&node, "getmempoolancestors", json!([unknown])), -5);
    let entry = node.rpc("getrawmempool", json!([true])).unwrap();
    assert_eq!(entry[txid.as_str().unwrap()]["fees"]["base"], json!(10_000));
    let mp = node
        .rpc("getmempoolinfo", json!([[0, 5, 1_000_000]]))
        .unwrap();
    let hist = mp["fee_histogram"].as_array().unwrap();
    assert_eq!(hist.len(), 3);
    let counted: u64 = hist.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 1);
    assert_eq!(hist[2]["to"], Value::Null);
    assert_eq!(code(&node, "getmempoolinfo", json!([[5, 1]])), -8);
    let alloc_op = json!([{"txid": alloc["txid"], "vout": alloc["vout"]}]);
    let spend = node.rpc("gettxspendingprevout", json!([alloc_op])).unwrap();
    assert_eq!(spend[0]["spendingtxid"], txid);
    assert!(spend[0].get("blockhash").is_none());

    // Confirmed: the same answers come from the undo data and the spender index.
    let block4 = node.rpc("generatetoaddress", json!([1, addr])).unwrap()[0].clone();
    let confirmed = node.rpc("getrawtransaction", json!([txid, 2])).unwrap();
    assert_eq!(confirmed["fee"], json!(10_000));
    assert_eq!(confirmed["vin"][0]["prevout"]["value"], json!(alloc_value));
    assert_eq!(confirmed["blockhash"], block4);
    let b3 = node.rpc("getblock", json!([block4, 3])).unwrap();
    assert_eq!(b3["tx"][1]["txid"], txid);
    assert_eq!(b3["tx"][1]["fee"], json!(10_000));
    assert_eq!(b3["tx"][1]["vin"][0]["prevout"]["address"], json!(addr));
    assert!(b3["tx"][0].get("fee").is_none(), "no fee for the coinbase");
    let b2 = node.rpc("getblock", json!([block4, 2])).unwrap();
    assert!(b2["tx"][1]["vin"][0].get("prevout").is_none());
    assert_eq!(b2["tx"][1]["fee"], json!(10_000));
    assert_eq!(code(&node, "getblock", json!([block4, 4])), -8);
    let spend = node.rpc("gettxspendingprevout", json!([alloc_op])).unwrap();
    assert_eq!(spend[0]["spendingtxid"], txid);
    assert_eq!(spend[0]["blockhash"], block4);
    assert_eq!(spend[0]["height"], json!(4));
    let unspent = json!([{"txid": txid, "vout": 0}]);
    let spend = node.rpc("gettxspendingprevout", json!([unspent])).unwrap();
    assert!(spend[0].get("spendingtxid").is_none(), "{spend}");
    assert_eq!(code(&node, "gettxspendingprevout", json!([[]])), -8);
    assert_eq!(
        code(&node, "gettxspendingprevout", json!([[{"txid": "x"}]])),
        -8
    );

    // Block statistics.
    let stats = node.rpc("getblockstats", json!([4])).unwrap();
    assert_eq!(stats, node.rpc("getblockstats", json!([block4])).unwrap());
    assert_eq!(stats["totalfee"], json!(10_000));
    assert_eq!(stats["txs"], json!(2));
    assert_eq!(stats["ins"], json!(1));
    assert_eq!(stats["total_size"], json!(tx.size()));
    assert_eq!(stats["height"], json!(4));
    assert_eq!(stats["blockhash"], block4);
    let fee_rate = 10_000 / tx.size() as u64;
    assert_eq!(stats["feerate_percentiles"], json!(vec![fee_rate; 5]));
    let some = node
        .rpc("getblockstats", json!([4, ["totalfee", "txs"]]))
        .unwrap();
    assert_eq!(some, json!({"totalfee": 10_000, "txs": 2}));
    assert_eq!(code(&node, "getblockstats", json!([4, ["nope"]])), -8);
    assert_eq!(code(&node, "getblockstats", json!([99])), -8);

    // Chain-wide figures.
    let tips = node.rpc("getchaintips", json!([])).unwrap();
    assert_eq!(
        tips,
        json!([{"height": 4, "hash": block4, "branchlen": 0, "status": "active"}])
    );
    // Genesis (1 tx), 4 coinbases and the spend.
    let txstats = node.rpc("getchaintxstats", json!([])).unwrap();
    assert_eq!(txstats["txcount"], json!(6), "{txstats}");
    assert_eq!(txstats["window_final_block_height"], json!(4));
    let w = node.rpc("getchaintxstats", json!([2])).unwrap();
    assert_eq!(w["window_block_count"], json!(2));
    assert_eq!(w["window_tx_count"], json!(3), "{w}");
    assert_eq!(code(&node, "getchaintxstats", json!([4])), -8);
    assert!(node.rpc("getdifficulty", json!([])).unwrap().is_f64());
    assert!(
        node.rpc("getnetworkhashps", json!([]))
            .unwrap()
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        node.rpc("getnetworkhashps", json!([2, 3]))
            .unwrap()
            .is_f64()
    );
    assert_eq!(code(&node, "getnetworkhashps", json!([120, 99])), -8);
    let totals = node.rpc("getnettotals", json!([])).unwrap();
    for k in ["totalbytesrecv", "totalbytessent", "timemillis"] {
        assert!(totals[k].is_u64(), "{totals}");
    }
    assert!(node.rpc("uptime", json!([])).unwrap().is_u64());
    let idx = node.rpc("getindexinfo", json!([])).unwrap();
    for k in ["txindex", "addressindex", "txospenderindex"] {
        assert_eq!(idx[k], json!({"synced": true, "best_block_height": 4}));
    }
    assert_eq!(
        node.rpc("getindexinfo", json!(["txindex"]))
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        1
    );

    // Util and raw transactions.
    let decoded = node.rpc("decoderawtransaction", json!([hex])).unwrap();
    assert_eq!(decoded["txid"], txid);
    assert!(decoded.get("hex").is_none() && decoded.get("confirmations").is_none());
    assert_eq!(code(&node, "decoderawtransaction", json!(["zz"])), -22);
    let valid = node.rpc("validateaddress", json!([addr])).unwrap();
    assert_eq!(valid["isvalid"], json!(true));
    assert_eq!(
        valid["witness_program"],
        json!(faucet.public_key().to_hex())
    );
    let invalid = node.rpc("validateaddress", json!(["cdev1nope"])).unwrap();
    assert_eq!(invalid["isvalid"], json!(false));
    assert!(!invalid["error"].as_str().unwrap().is_empty());
    let fee = node.rpc("estimatesmartfee", json!([6])).unwrap();
    assert!(fee["feerate"].is_u64() && fee["blocks"] == json!(6));
    assert_eq!(code(&node, "estimatesmartfee", json!([0])), -8);
    assert_eq!(code(&node, "estimatesmartfee", json!([2, "fast"])), -8);
    let help = node.rpc("help", json!([])).unwrap();
    for m in [
        "getblockstats",
        "gettxspendingprevout",
        "subscribe_newblocks",
    ] {
        assert!(help.as_str().unwrap().contains(m), "{m} missing from help");
    }
    let one = node.rpc("help", json!(["getchaintips"])).unwrap();
    assert!(
        one.as_str().unwrap().starts_with("getchaintips\n\n"),
        "{one}"
    );
}

#[test]
fn address_paging_holds_while_blocks_arrive() {
    let node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let addr = Address::new(faucet_key().public_key())
        .encode(&prefix)
        .unwrap();
    node.rpc("generatetoaddress", json!([12, addr])).unwrap();
    let full = node.rpc("getaddresstxids", json!([addr])).unwrap();
    let full: Vec<Value> = full.as_array().unwrap().clone();
    assert_eq!(full.len(), 13, "genesis allocation and 12 coinbases");

    let (asc, pages) = all_pages(&node, &addr, json!({"limit": 5}));
    assert_eq!(asc, full);
    assert_eq!(pages, 3);
    let (desc, _) = all_pages(&node, &addr, json!({"limit": 4, "order": "desc"}));
    let mut reversed = full.clone();
    reversed.reverse();
    assert_eq!(desc, reversed);

    // A newest-first cursor, then 3 new blocks: the next pages continue below the cursor,
    // with nothing skipped or repeated.
    let first = node
        .rpc(
            "getaddresstxids",
            json!([addr, {"limit": 4, "order": "desc"}]),
        )
        .unwrap();
    let cursor = first["next"].clone();
    node.rpc("generatetoaddress", json!([3, addr])).unwrap();
    let (rest, _) = {
        let mut out: Vec<Value> = Vec::new();
        let mut after = cursor;
        let mut pages = 0;
        loop {
            pages += 1;
            let p = node
                .rpc(
                    "getaddresstxids",
                    json!([addr, {"limit": 4, "order": "desc", "after": after}]),
                )
                .unwrap();
            out.extend(
                p["txs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["txid"].clone()),
            );
            if p["next"].is_null() || pages > 100 {
                break (out, pages);
            }
            after = p["next"].clone();
        }
    };
    assert_eq!(rest, reversed[4..].to_vec());

    // Coins page the same way and match the unpaged answer.
    let coins = node.rpc("getaddressutxos", json!([addr])).unwrap();
    let mut paged = Vec::new();
    let mut after = Value::Null;
    loop {
        let p = node
            .rpc(
                "getaddressutxos",
                json!([addr, {"limit": 6, "after": after}]),
            )
            .unwrap();
        paged.extend(p["utxos"].as_array().unwrap().iter().cloned());
        if p["next"].is_null() {
            break;
        }
        after = p["next"].clone();
    }
    let mut coins = coins.as_array().unwrap().clone();
    let sort = |v: &mut Vec<Value>| v.sort_by_key(|c| (c["txid"].to_string(), c["vout"].as_u64()));
    sort(&mut coins);
    sort(&mut paged);
    assert_eq!(paged, coins);

    // Bad paging input.
    assert_eq!(
        code(&node, "getaddresstxids", json!([addr, {"limit": 1001}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddresstxids", json!([addr, {"limit": 0}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddresstxids", json!([addr, {"after": "x"}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddresstxids", json!([addr, {"order": "up"}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddresstxids", json!([addr, {"page": 2}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddressutxos", json!([addr, {"order": "desc"}])),
        -8
    );
    assert_eq!(
        code(&node, "getaddressutxos", json!([addr, {"after": "00:1"}])),
        -8
    );
}

fn get(url: &str) -> (u16, String, Option<String>, Option<String>) {
    let agent = ureq::AgentBuilder::new().timeout(RPC_TIMEOUT).build();
    match agent.get(url).call() {
        Ok(r) => {
            let csp = r.header("Content-Security-Policy").map(String::from);
            let ty = r.header("Content-Type").map(String::from);
            (r.status(), r.into_string().unwrap(), csp, ty)
        }
        Err(ureq::Error::Status(code, r)) => {
            (code, r.into_string().unwrap_or_default(), None, None)
        }
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn explorer_files_are_served_with_a_strict_policy_and_can_be_turned_off() {
    let node = TestNode::run(&[]).unwrap();
    let base = node.rpc_url.trim_end_matches('/').to_string();
    for path in ["/", "/block/1", "/tx/00", "/address/x"] {
        let (status, body, csp, ty) = get(&format!("{base}{path}"));
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains("<script src=\"/static/explorer.js\""),
            "{path}"
        );
        assert_eq!(ty.as_deref(), Some("text/html; charset=utf-8"));
        let csp = csp.expect("a Content-Security-Policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    }
    let (status, js, _, ty) = get(&format!("{base}/static/explorer.js"));
    assert_eq!(status, 200);
    assert!(js.contains("subscribe_newblocks"));
    assert_eq!(ty.as_deref(), Some("text/javascript; charset=utf-8"));
    // JSON-RPC on the same path is untouched.
    assert_eq!(node.rpc("getblockcount", json!([])).unwrap(), json!(0));
    drop(node);

    let off = TestNode::run(&["--no-explorer"]).unwrap();
    let base = off.rpc_url.trim_end_matches('/').to_string();
    let (status, body, _, _) = get(&format!("{base}/"));
    assert_ne!(status, 200, "explorer still served: {body}");
    assert!(!body.contains("<script"));
    let (status, _, _, _) = get(&format!("{base}/static/explorer.js"));
    assert_ne!(status, 200);
    assert_eq!(off.rpc("getblockcount", json!([])).unwrap(), json!(0));
}
