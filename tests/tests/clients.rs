//! Bitcoin RPC client libraries against a real `cairnd`: python-bitcoinrpc 1.0 and npm
//! `bitcoin-core` 5.0.0, pinned, unmodified, with their default settings. "Compatible with
//! client X" means tested with client X itself: one `charset=utf-8` in a header broke
//! python-bitcoinrpc although every hand-written test passed.
//!
//! The clients are installed on first use into `$CAIRN_CLIENTS_DIR` (default
//! `~/.cache/cairn-clients`), outside the clone, with pip and npm from the package registries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_primitives::Address;
use cairn_tests::TestNode;
use serde_json::{Value, json};

const PYTHON_BITCOINRPC: &str = "python-bitcoinrpc==1.0";
const NPM_BITCOIN_CORE: &str = "bitcoin-core@5.0.0";

fn clients_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_CLIENTS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache").join("cairn-clients")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn ensure_python_client(dir: &Path) -> PathBuf {
    let target = dir.join("py");
    if !target.join("bitcoinrpc").join("authproxy.py").exists() {
        run(
            Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                &target.to_string_lossy(),
                PYTHON_BITCOINRPC,
            ]),
            "pip install python-bitcoinrpc",
        );
    }
    target
}

fn ensure_npm_client(dir: &Path) -> PathBuf {
    let prefix = dir.join("npm");
    let modules = prefix.join("node_modules");
    if !modules.join("bitcoin-core").join("package.json").exists() {
        std::fs::create_dir_all(&prefix).unwrap();
        run(
            Command::new("npm").args([
                "install",
                "--prefix",
                &prefix.to_string_lossy(),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                NPM_BITCOIN_CORE,
            ]),
            "npm install bitcoin-core",
        );
    }
    modules
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// What each client saw must match the node's own answers.
fn check(node: &TestNode, seen: &Value, height_before: u64) {
    let genesis = node.rpc("getblockhash", json!([0])).unwrap();
    assert_eq!(seen["getblockcount"], json!(height_before), "{seen}");
    assert_eq!(seen["getblockhash0"], genesis);
    assert_eq!(seen["getblock_height"], json!(0));
    assert_eq!(seen["batch"], json!([height_before, genesis]));
    assert_eq!(seen["unknown"], json!(-32601));
    assert_eq!(seen["generated"], json!(2));
    assert_eq!(seen["after"], json!(height_before + 2));
    assert_eq!(seen["getbestblockhash"].as_str().map(str::len), Some(64));
    assert!(seen["chain"].is_string());
}

fn miner_address() -> String {
    Address::new(cairn_tests::faucet_key().public_key())
        .encode("cdev")
        .unwrap()
}

#[test]
fn python_bitcoinrpc_drives_the_node() {
    let path = ensure_python_client(&clients_dir());
    let node = TestNode::run(&[]).unwrap();
    let height = node.height().unwrap();
    let cookie = node.cookie().expect("cookie");
    let url = format!("http://{cookie}@127.0.0.1:{}/", node.rpc_port);
    let out = run(
        Command::new("python3")
            .arg(script("python_bitcoinrpc.py"))
            .args([&url, &miner_address()])
            .env("PYTHONPATH", &path),
        "python-bitcoinrpc script",
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    check(&node, &seen, height);
}

#[test]
fn npm_bitcoin_core_drives_the_node() {
    let modules = ensure_npm_client(&clients_dir());
    let node = TestNode::run(&[]).unwrap();
    let height = node.height().unwrap();
    let cookie = node.cookie().expect("cookie");
    let (user, password) = cookie.split_once(':').unwrap();
    let out = run(
        Command::new("node")
            .arg(script("bitcoin_core.js"))
            .args([
                &format!("http://127.0.0.1:{}", node.rpc_port),
                user,
                password,
                &miner_address(),
            ])
            .env("NODE_PATH", &modules),
        "bitcoin-core script",
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    check(&node, &seen, height);
}

/// Every JSON answer, whatever its path through the server, carries exactly
/// `application/json` (no `charset`).
#[test]
fn every_json_response_has_the_exact_content_type() {
    let node = TestNode::run(&[]).unwrap();
    let url = &node.rpc_url;
    let cases: &[(&str, Option<&str>)] = &[
        (r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#, None),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"getblockcount"}]"#,
            None,
        ),
        (r#"{"id":1,"method":"getblockcount"}"#, None),
        (r#"{"jsonrpc":"2.0","id":1,"method":"nosuchmethod"}"#, None),
        (r#"{"jsonrpc":"2.0","id":1,"#, None),
        (r#"{"jsonrpc":"2.0","id":1,"method":"stop"}"#, None),
        (r#"{"jsonrpc":"2.0","id":1,"method":"stop"}"#, Some("x:y")),
    ];
    for (body, creds) in cases {
        let (status, ct, _) = cairn_tests::post_full(url, body, *creds, &[]).unwrap();
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "{body} -> {status}"
        );
    }
}
