//! The operator's first hour, with real processes: a wallet before any node exists, start-up
//! checks that come first and say how to fix things, logs without escape codes, a fast stop,
//! the metrics an operator graphs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{NodeOptions, TestNode, bin, free_port};
use serde_json::json;

fn wallet(args: &[&str]) -> Output {
    Command::new(bin("cairn-wallet"))
        .args(args)
        .env("CAIRN_WALLET_PASSPHRASE", "")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn testnet_genesis() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/genesis-testnet.json")
}

/// `new` and `address` with no node anywhere; `--genesis` picks the chain; a node of another
/// chain is refused and the wallet file is left as it was.
#[test]
fn wallet_works_before_any_node_exists() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let w = dir.path().join("w.json");
    let w_s = w.to_string_lossy().to_string();
    let addr = stdout(&wallet(&["--wallet", &w_s, "--rpc", &dead, "new"]));
    assert!(addr.starts_with("cdev1"), "{addr}");
    assert_eq!(
        stdout(&wallet(&["--wallet", &w_s, "--rpc", &dead, "address"])),
        addr
    );
    let fresh = stdout(&wallet(&[
        "--wallet", &w_s, "--rpc", &dead, "address", "--new",
    ]));
    assert_ne!(fresh, addr);

    // A wallet for another chain, from its genesis file, offline.
    let t = dir.path().join("t.json");
    let t_s = t.to_string_lossy().to_string();
    let g = testnet_genesis();
    let taddr = stdout(&wallet(&[
        "--wallet",
        &t_s,
        "--rpc",
        &dead,
        "--genesis",
        &g.to_string_lossy(),
        "new",
    ]));
    assert!(!taddr.starts_with("cdev1"), "{taddr}");
    // Its address can fund a node of that chain: the miner takes it.
    let node = TestNode::start(NodeOptions {
        dev: false,
        args: vec![
            "--genesis".into(),
            g.to_string_lossy().to_string(),
            "--miner-address".into(),
            taddr.clone(),
        ],
        datadir: None,
    })
    .unwrap();
    // Pointed at that node (another chain than the devnet wallet's): refused, file unchanged.
    let before = std::fs::read(&w).unwrap();
    let out = wallet(&["--wallet", &w_s, "--rpc", &node.rpc_url, "balance"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to the chain"), "{err}");
    let out = wallet(&["--wallet", &w_s, "--rpc", &node.rpc_url, "address"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&w).unwrap(), before, "wallet file changed");
    // The testnet wallet and that node agree.
    let out = wallet(&["--wallet", &t_s, "--rpc", &node.rpc_url, "balance"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_fails(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(bin("cairnd"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!out.status.success(), "start should have failed: {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // Printed once.
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    (err, elapsed)
}

#[test]
fn start_up_checks_come_first_and_name_the_fix() {
    let node = TestNode::run(&[]).unwrap();
    let p2p = node.p2p_addr().unwrap();
    let p2p_port = p2p.split('/').nth(4).unwrap().to_string();
    let other = tempfile::tempdir().unwrap();
    let other_dir = other.path().to_string_lossy().to_string();

    // The same P2P port (libp2p would share it through SO_REUSEPORT).
    let (err, _) = start_fails(&[
        "run",
        "--datadir",
        &other_dir,
        "--rpc-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--p2p-listen",
        &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
    ]);
    assert!(err.contains("already in use"), "{err}");
    // The same RPC port.
    let (err, _) = start_fails(&[
        "run",
        "--datadir",
        &other_dir,
        "--rpc-addr",
        &format!("127.0.0.1:{}", node.rpc_port),
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert!(
        err.contains("already in use") && err.contains("--rpc-addr"),
        "{err}"
    );
    // Nothing was created in the other data dir by either failed start.
    let created: Vec<_> = std::fs::read_dir(other.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != "cairnd.pid")
        .collect();
    assert!(created.is_empty(), "failed starts created {created:?}");

    // A second start on the running node's data dir: named, with its pid, and the running node's
    // RocksDB log is not touched.
    let logs_before: Vec<_> = std::fs::read_dir(node.datadir.join("chain"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    let (err, _) = start_fails(&[
        "run",
        "--datadir",
        &node.datadir.to_string_lossy(),
        "--rpc-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert!(
        err.contains("another cairnd is using")
            && err.contains(&format!("pid {}", node.pid().unwrap())),
        "{err}"
    );
    let logs_after: Vec<_> = std::fs::read_dir(node.datadir.join("chain"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(logs_before.len(), logs_after.len(), "RocksDB files changed");

    // A bad miner address from cairn.toml names the key, not the flag.
    std::fs::write(
        other.path().join("cairn.toml"),
        "mine = true\nminer_address = \"cdev1notanaddress\"\n",
    )
    .unwrap();
    let (err, _) = start_fails(&[
        "run",
        "--datadir",
        &other_dir,
        "--rpc-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert!(err.contains("miner_address in cairn.toml"), "{err}");
    assert!(
        !other.path().join("chain").exists(),
        "chain created before the checks"
    );
}

#[test]
fn relative_genesis_in_the_config_file_is_relative_to_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testnet_genesis(), dir.path().join("my-genesis.json")).unwrap();
    std::fs::write(
        dir.path().join("cairn.toml"),
        "genesis = \"my-genesis.json\"\n",
    )
    .unwrap();
    let node = TestNode::start(NodeOptions {
        dev: false,
        args: vec![],
        datadir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    assert_ne!(info["addressprefix"], json!("cdev"), "{info}");
}

#[test]
fn logs_have_no_escape_codes_and_dev_stops_fast_while_mining() {
    let mut node = TestNode::dev().unwrap();
    node.wait_height(2, Duration::from_secs(30)).unwrap();
    // Metrics an operator graphs.
    let metrics = ureq::get(&format!("{}metrics", node.rpc_url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for name in [
        "cairn_build_info{version=",
        "cairn_uptime_seconds",
        "cairn_tip_age_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "cairn_rpc_method_calls_total{method=\"getblockcount\"}",
        "cairn_rpc_method_seconds_total{method=\"getblockcount\"}",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    let started = Instant::now();
    let status = node.terminate(Duration::from_secs(10)).unwrap();
    let stop_time = started.elapsed();
    assert!(status.success(), "{status}");
    let log = node.log_text();
    assert!(!log.contains('\u{1b}'), "escape codes in a log file");
    assert!(
        !log.contains("libp2p_kad"),
        "Kademlia noise on a lone dev node"
    );
    // The node's own account, from its log (RFC 3339 timestamps): SIGTERM to "stopped". The
    // wall clock around it also counts the test's polling and, under a loaded CI, scheduling.
    let stamp = |needle: &str| -> f64 {
        let line = log
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log"));
        let time = line.split_whitespace().next().unwrap();
        let hms = time.split('T').nth(1).unwrap().trim_end_matches('Z');
        let mut parts = hms.split(':');
        let (h, m, sec): (f64, f64, f64) = (
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap().parse().unwrap(),
        );
        h * 3600.0 + m * 60.0 + sec
    };
    let own = stamp("SIGTERM received");
    let stopped = stamp("cairnd::app: stopped");
    let own_ms = (stopped - own) * 1000.0;
    assert!(
        own_ms < 200.0,
        "--dev took {own_ms:.0} ms from SIGTERM to stopped while mining"
    );
    assert!(
        stop_time < Duration::from_secs(1),
        "--dev process took {stop_time:?} to exit after SIGTERM"
    );
}

#[test]
fn rpc_addr_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(bin("cairnd"))
        .args([
            "run",
            "--datadir",
            &dir.path().to_string_lossy(),
            "--rpc-addr",
            &format!("localhost:{port}"),
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#;
    let answered = cairn_tests::wait_until(Duration::from_secs(30), "RPC on localhost", || {
        cairn_tests::post_raw(&format!("http://localhost:{port}/"), body)
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    answered.unwrap();
}

/// A mined wallet has many small coins: a payment that needs more inputs than fit in one
/// transaction is refused with the way out, `send --all` to an own address consolidates, and
/// the payment then works. `history` pages instead of printing everything.
#[test]
fn too_many_small_coins_are_consolidated_and_history_pages() {
    let node = TestNode::run(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.json");
    let w_s = w.to_string_lossy().to_string();
    let rpc = node.rpc_url.clone();
    let run = |args: &[&str]| {
        let mut full = vec!["--wallet", w_s.as_str(), "--rpc", rpc.as_str()];
        full.extend_from_slice(args);
        wallet(&full)
    };
    let addr = stdout(&run(&["new"]));
    node.rpc("generatetoaddress", json!([920, addr])).unwrap();
    let filler = cairn_primitives::Address::new(cairn_tests::faucet_key().public_key())
        .encode("cdev")
        .unwrap();
    node.rpc("generatetoaddress", json!([10, filler])).unwrap();

    // 920 coinbases of 50 coins: 45,500 coins need more than 900 inputs.
    let out = run(&["send", "--to", &filler, "--amount", "45500"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("consolidate") && err.contains("--all"),
        "{err}"
    );

    // The way out, as the message says it.
    let own = stdout(&run(&["address"]));
    let out = run(&["--json", "send", "--to", &own, "--all"]);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["inputs"], json!(900), "{summary}");
    assert!(summary["change"].is_null());
    node.rpc("generatetoaddress", json!([1, filler])).unwrap();
    let out = run(&["send", "--to", &filler, "--amount", "45500"]);
    stdout(&out);

    // History: newest first, a page at a time, with the way to the next page.
    let out = run(&["--json", "history", "--limit", "5"]);
    let page1: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page1.as_array().unwrap().len(), 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--skip 5"));
    let out = run(&["--json", "history", "--limit", "5", "--skip", "5"]);
    let page2: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids = |p: &serde_json::Value| -> Vec<String> {
        p.as_array()
            .unwrap()
            .iter()
            .map(|t| t["txid"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (ids(&page1), ids(&page2));
    assert!(a.iter().all(|t| !b.contains(t)), "pages overlap");
    // Newest first: the unconfirmed payment leads the first page.
    assert!(page1[0]["height"].is_null(), "{}", page1[0]);
    let h = |p: &serde_json::Value, i: usize| p[i]["height"].as_u64().unwrap_or(u64::MAX);
    assert!(h(&page1, 4) >= h(&page2, 0));
}

/// What an operator needs to read in the log: an unreachable bootnode with its retry time, a
/// peer of another chain refused with both genesis hashes, a finished sync that is not called a
/// chain switch, and one progress format.
#[test]
fn logs_say_what_happened_where_it_happened() {
    let dead = free_port();
    let a = TestNode::run(&["--bootnode", &format!("/ip4/127.0.0.1/tcp/{dead}")]).unwrap();
    let addr = cairn_primitives::Address::new(cairn_tests::faucet_key().public_key())
        .encode("cdev")
        .unwrap();
    a.rpc("generatetoaddress", json!([20, addr])).unwrap();
    cairn_tests::wait_until(Duration::from_secs(20), "bootnode warning", || {
        let log = a.log_text();
        (log.contains("bootnode unreachable") && log.contains("retry_in_secs")).then_some(())
    })
    .unwrap();

    // A node of the same chain syncs from `a`: progress, but no "switching".
    let b = TestNode::run(&["--bootnode", &a.p2p_addr().unwrap()]).unwrap();
    b.wait_height(20, Duration::from_secs(30)).unwrap();
    let log = b.log_text();
    assert!(!log.contains("switching to the chain"), "{log}");

    // A node of another chain: both sides say why they refused each other.
    let g = testnet_genesis();
    let c = TestNode::run(&[
        "--genesis",
        &g.to_string_lossy(),
        "--bootnode",
        &a.p2p_addr().unwrap(),
    ])
    .unwrap();
    cairn_tests::wait_until(Duration::from_secs(20), "genesis refusal logged", || {
        let (la, lc) = (a.log_text(), c.log_text());
        (la.contains("on another chain") || lc.contains("on another chain")).then_some(())
    })
    .unwrap();
}
