//! Start-up configuration and RPC security with real processes: `cairn.toml` mistakes stop
//! start-up with a message naming the key, configured credentials protect `stop` and mining,
//! and `generatetoaddress` is refused on a chain with real difficulty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cairn_tests::{NodeOptions, TestNode, post_json};
use serde_json::json;

fn with_config(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("cairn-e2e-cfg-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("cairn.toml"), toml).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[test]
fn a_mistake_in_cairn_toml_stops_start_up_naming_it() {
    for (toml, needle) in [
        ("rpc_adress = \"127.0.0.1:1\"\n", "rpc_adress"),
        ("max_peers = \"many\"\n", "max_peers"),
    ] {
        let (_dir, path) = with_config(toml);
        let err = TestNode::start(NodeOptions {
            dev: false,
            args: vec![],
            datadir: Some(path),
        })
        .err()
        .expect("start-up must fail");
        let text = format!("{err:#}");
        assert!(text.contains("exited during start-up"), "{text}");
        assert!(
            text.contains(needle),
            "the message names `{needle}`: {text}"
        );
    }
}

#[test]
fn configured_credentials_protect_stop_and_mining() {
    let (_dir, path) = with_config("rpc_user = \"alice\"\nrpc_password = \"s3cret\"\n");
    let node = TestNode::start(NodeOptions {
        dev: false,
        args: vec![],
        datadir: Some(path),
    })
    .unwrap();
    // Reads stay open on loopback.
    assert_eq!(node.rpc("getblockcount", json!([])).unwrap(), json!(0));
    // Privileged calls without credentials: HTTP 401, nothing happens.
    let (status, _) = cairn_tests::post_raw(
        &node.rpc_url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "stop"}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = cairn_tests::post_raw(
        &node.rpc_url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "generatetoaddress", "params": [1, "x"]})
            .to_string(),
    )
    .unwrap();
    assert_eq!(status, 401);
    // Hidden inside a batch: still refused.
    let (status, _) = cairn_tests::post_raw(&node.rpc_url, &json!([{"jsonrpc": "2.0", "id": 1, "method": "getblockcount"}, {"jsonrpc": "2.0", "id": 2, "method": "stop"}]).to_string()).unwrap();
    assert_eq!(status, 401);
    // Wrong password: refused too.
    let wrong = node.rpc_url.replace("http://", "http://alice:nope@");
    let (status, _) = cairn_tests::post_raw(
        &wrong,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "stop"}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(node.height().unwrap(), 0, "still running");
    // With them: served.
    let authed = node.rpc_url.replace("http://", "http://alice:s3cret@");
    let r = post_json(
        &authed,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "stop"}),
    )
    .unwrap();
    assert_eq!(r["result"], json!("Cairn server stopping"));
}

#[test]
fn generatetoaddress_is_refused_on_a_chain_with_real_difficulty() {
    let genesis = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/genesis-testnet.json");
    let node = TestNode::run(&["--genesis", genesis]).unwrap();
    let prefix = node.rpc("getblockchaininfo", json!([])).unwrap()["addressprefix"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = cairn_primitives::Address::new(cairn_tests::faucet_key().public_key())
        .encode(&prefix)
        .unwrap();
    let err = node
        .call("generatetoaddress", json!([1, addr]))
        .unwrap_err();
    assert!(
        err.message.contains("only available on dev chains"),
        "{err:?}"
    );
    assert_eq!(node.height().unwrap(), 0);
}

/// A valid genesis with a block size limit below the gossip transaction limit (256 KiB) starts
/// (the gossip limits follow the chain's) and mines. It used to stop `cairnd` at start-up.
#[test]
fn small_max_block_size_genesis_starts() {
    let mut genesis: serde_json::Value =
        serde_json::from_str(include_str!("../../genesis.json")).unwrap();
    genesis["max_block_size"] = json!(100_000);
    genesis["chain_id"] = json!("cairn-small-blocks");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("genesis.json");
    std::fs::write(&file, genesis.to_string()).unwrap();
    let node = TestNode::run(&["--genesis", file.to_str().unwrap()]).unwrap();
    let miner = cairn_primitives::Address::new(cairn_tests::faucet_key().public_key())
        .encode("cdev")
        .unwrap();
    node.rpc("generatetoaddress", json!([2, miner])).unwrap();
    assert_eq!(node.height().unwrap(), 2);
}
