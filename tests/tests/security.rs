//! RPC and wallet security against real `cairnd` processes: no web page or local process
//! controls the node, and the wallet cannot be tricked into overpaying.
//!
//! Each attack of the security review is replayed against a default node (cookie, no
//! configuration) and against one with `rpc_user`/`rpc_password`; each must fail, and the node
//! must keep serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use cairn_primitives::Address;
use cairn_tests::{NodeOptions, TestNode, WsClient, post_full, post_with, wait_until};
use serde_json::{Value, json};

const STOP: &str = r#"{"jsonrpc":"2.0","id":1,"method":"stop"}"#;

fn default_node() -> TestNode {
    TestNode::run(&[]).unwrap()
}

fn node_with_credentials() -> TestNode {
    let dir = tempfile::Builder::new()
        .prefix("cairn-sec-")
        .tempdir()
        .unwrap()
        .keep();
    std::fs::write(
        dir.join("cairn.toml"),
        "rpc_user = \"alice\"\nrpc_password = \"s3cret-pw\"\n",
    )
    .unwrap();
    TestNode::start(NodeOptions {
        dev: false,
        args: vec![],
        datadir: Some(dir),
    })
    .unwrap()
}

fn still_serving(node: &TestNode) {
    assert!(
        node.call_anonymous("getblockcount", json!([])).is_ok(),
        "node stopped serving:\n{}",
        node.log_tail(20)
    );
}

/// Every browser-borne and smuggled attack, replayed against `node`.
fn attacks_fail(node: &TestNode) {
    let url = &node.rpc_url;
    let evil = [("Origin", "http://evil.example")];
    // A "simple" cross-origin POST (text/plain, no preflight) of `stop`.
    let (status, _) = post_with(
        url,
        STOP,
        None,
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
        ],
    )
    .unwrap();
    assert_eq!(status, 403, "foreign Origin");
    let (status, _) = post_with(url, STOP, None, &[("Content-Type", "text/plain")]).unwrap();
    assert_eq!(status, 415, "text/plain");
    // A JSON POST from a foreign origin, even with a valid read.
    let (status, _) = post_with(
        url,
        r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#,
        None,
        &evil,
    )
    .unwrap();
    assert_eq!(status, 403);
    // DNS rebinding: the page's own name in Host.
    let (status, _) = post_with(
        url,
        STOP,
        None,
        &[("Host", &format!("rebind.evil.example:{}", node.rpc_port))],
    )
    .unwrap();
    assert_eq!(status, 403, "rebinding Host");
    // A WebSocket from a foreign origin.
    let ws = WsClient::connect_with(node.rpc_port, &evil);
    assert!(
        ws.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("403")),
        "WebSocket from a foreign origin must get 403"
    );
    // Bodies serde_json::Value rejects but jsonrpsee accepts: nothing privileged runs.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"stop","x":"\udead"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"stop","x":1e400}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"getblockcount"},{"jsonrpc":"2.0","id":2,"method":"stop","x":"\ud800"}]"#,
        r#"{"jsonrpc":"2.0","method":"stop"}"#,
    ] {
        let (status, text) = post_with(url, body, None, &[]).unwrap();
        assert!(
            status == 401 || (status == 200 && text.is_empty()),
            "{body}: {status} {text}"
        );
        still_serving(node);
    }
    // A privileged call over a WebSocket without credentials.
    let mut ws = WsClient::connect(node.rpc_port).unwrap();
    ws.send(r#"{"jsonrpc":"2.0","id":7,"method":"stop"}"#)
        .unwrap();
    let answer = ws.recv().unwrap();
    assert_eq!(answer["error"]["code"], json!(-32001), "{answer}");
    still_serving(node);
    // Reads stay open to local JSON clients.
    let (status, ct, text) = post_full(
        url,
        r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#,
        None,
        &[],
    )
    .unwrap();
    assert_eq!((status, ct.as_deref()), (200, Some("application/json")));
    assert!(text.contains("\"result\""), "{text}");
}

#[test]
fn default_node_refuses_web_pages_and_unauthenticated_privileged_calls() {
    let mut node = default_node();
    attacks_fail(&node);
    // The cookie exists, is private, and works for privileged calls, over HTTP and WebSocket.
    let cookie_path = node.datadir.join(".cookie");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cookie_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cookie = node.cookie().expect("cookie written on a default start");
    let addr = Address::new(cairn_tests::faucet_key().public_key())
        .encode("cdev")
        .unwrap();
    let hashes = node
        .call_as("generatetoaddress", json!([2, addr]), Some(&cookie))
        .unwrap();
    assert_eq!(hashes.as_array().unwrap().len(), 2);
    let auth = cairn_tests::basic_auth(&cookie);
    let mut ws = WsClient::connect_with(node.rpc_port, &[("Authorization", &auth)]).unwrap();
    ws.send(
        &json!({"jsonrpc":"2.0","id":1,"method":"generatetoaddress","params":[1, addr]})
            .to_string(),
    )
    .unwrap();
    let answer = ws.recv().unwrap();
    assert_eq!(
        answer["result"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    // Wrong credentials: 401, and the next attempt from this address is delayed.
    let (status, _) = post_with(&node.rpc_url, STOP, Some("__cookie__:wrong"), &[]).unwrap();
    assert_eq!(status, 401);
    let started = std::time::Instant::now();
    let (status, _) = post_with(&node.rpc_url, STOP, Some("__cookie__:wrong"), &[]).unwrap();
    assert_eq!(status, 401);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "no delay after a failed attempt: {:?}",
        started.elapsed()
    );
    still_serving(&node);
    // A clean exit removes the cookie.
    node.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        !cookie_path.exists(),
        "cookie left behind after a clean exit"
    );
}

#[test]
fn node_with_configured_credentials_refuses_the_same_attacks() {
    let node = node_with_credentials();
    assert!(
        node.cookie().is_none(),
        "no cookie when credentials are configured"
    );
    attacks_fail(&node);
    let r = node
        .call_as("stop", json!([]), Some("alice:s3cret-pw"))
        .unwrap();
    assert_eq!(r, json!("Cairn server stopping"));
}

/// A one-connection-at-a-time HTTP proxy that forwards to `upstream` and halves every value in
/// `getaddressutxos` answers: a lying node, or a man in the middle on plain HTTP.
fn lying_proxy(upstream: String) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            let mut first = true;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if first && line.starts_with("QUIT") {
                    return;
                }
                first = false;
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body = String::from_utf8_lossy(&body).to_string();
            let (_, mut text) = post_with(&upstream, &body, None, &[]).unwrap();
            if body.contains("getaddressutxos") {
                let mut v: Value = serde_json::from_str(&text).unwrap();
                if let Some(list) = v["result"].as_array_mut() {
                    for u in list {
                        let value = u["value"].as_u64().unwrap();
                        u["value"] = json!(value / 2);
                    }
                }
                text = v.to_string();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, handle)
}

fn wallet_cmd(wallet: &Path, rpc: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cairn_tests::bin("cairn-wallet"))
        .args(["--wallet", &wallet.to_string_lossy(), "--rpc", rpc])
        .args(args)
        .env("CAIRN_WALLET_PASSPHRASE", "")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn wallet_refuses_a_node_that_lies_about_input_values_and_caps_the_fee() {
    let node = default_node();
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("w.json");
    let out = wallet_cmd(&wallet, &node.rpc_url, &["new"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let filler = node.fund_by_mining(&addr).unwrap();

    // Through the lying proxy: the send stops before signing; nothing reaches the mempool.
    let (proxy, proxy_thread) = lying_proxy(node.rpc_url.clone());
    let out = wallet_cmd(&wallet, &proxy, &["send", "--to", &filler, "--amount", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "send through a lying node succeeded");
    assert!(err.contains("misreported"), "{err}");
    assert_eq!(
        node.rpc("getrawmempool", json!([])).unwrap(),
        json!([]),
        "nothing broadcast"
    );

    // A fee rate above the cap is refused before anything is signed.
    let out = wallet_cmd(
        &wallet,
        &node.rpc_url,
        &[
            "send",
            "--to",
            &filler,
            "--amount",
            "1",
            "--fee-rate",
            "20000",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("above the cap"), "{err}");
    assert_eq!(node.rpc("getrawmempool", json!([])).unwrap(), json!([]));

    // Straight to the node, with no set-up: the send works and reports its fee.
    let out = wallet_cmd(
        &wallet,
        &node.rpc_url,
        &["--json", "send", "--to", &filler, "--amount", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["fee"].as_u64().unwrap() > 0, "{summary}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fee"));
    wait_until(Duration::from_secs(10), "tx in the mempool", || {
        let pool = node.rpc("getrawmempool", json!([])).ok()?;
        (pool.as_array()?.len() == 1).then_some(())
    })
    .unwrap();

    // Stop the proxy thread.
    if let Ok(mut s) =
        std::net::TcpStream::connect(proxy.trim_start_matches("http://").trim_end_matches('/'))
    {
        let _ = s.write_all(b"QUIT\r\n\r\n");
    }
    let _ = proxy_thread.join();
}

/// `sendrawtransaction` honours `maxfeerate` (default 0.10 coins/kB): an overpaying transaction
/// is refused and nothing enters the mempool; an explicit higher limit, or 0, lets it through.
#[test]
fn maxfeerate_refuses_an_overpaying_transaction() {
    let node = default_node();
    // 1 coin of fee on a ~150-byte transaction: ~0.67 coins/kB.
    let tx = cairn_tests::spend_genesis_allocation(&node, 100_000_000).unwrap();
    let hex = cairn_primitives::encoding::encode_hex(&tx);
    let err = node
        .call_anonymous("sendrawtransaction", json!([hex]))
        .unwrap_err();
    assert_eq!(err.code, -26, "{}", err.message);
    assert!(err.message.contains("max-fee-exceeded"), "{}", err.message);
    let err = node
        .call_anonymous("sendrawtransaction", json!([hex, 0.5]))
        .unwrap_err();
    assert!(err.message.contains("max-fee-exceeded"), "{}", err.message);
    assert_eq!(node.rpc("getrawmempool", json!([])).unwrap(), json!([]));
    let txid = node
        .call_anonymous("sendrawtransaction", json!([hex, "0"]))
        .unwrap();
    assert_eq!(txid, json!(tx.txid().to_hex()));
}
