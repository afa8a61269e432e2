//! `cairn-wallet` against a real `cairnd --dev`: create, fund by mining, send and wait, balances
//! on both sides, history, restore from the mnemonic, and every error the issue names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cairn_primitives::{Address, Amount};
use cairn_tests::{TestNode, wait_until};
use serde_json::{Value, json};

const PASS: &str = "correct horse battery staple";

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "wallet failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fails(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "stderr {err:?} should mention {needle:?}"
    );
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "one-line reason: {err}"
    );
    err
}

fn balance(node: &TestNode, wallet: &Path) -> Value {
    let out = node
        .wallet(
            wallet,
            &["--json", "balance"],
            &[("CAIRN_WALLET_PASSPHRASE", PASS)],
        )
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

/// The 24 words `new` shows on stderr ("  1. word      2. word ...").
fn mnemonic_from(stderr: &str) -> String {
    let mut words = Vec::new();
    for line in stderr.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for pair in tokens.windows(2) {
            if pair[0].ends_with('.') && pair[0].trim_end_matches('.').parse::<u32>().is_ok() {
                words.push(pair[1].to_string());
            }
        }
    }
    assert_eq!(words.len(), 24, "24 words in {stderr}");
    words.join(" ")
}

#[test]
fn wallet_end_to_end() {
    let node = TestNode::dev().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alice = dir.path().join("alice.json");
    let bob = dir.path().join("bob.json");
    let env = [("CAIRN_WALLET_PASSPHRASE", PASS)];

    // Create two wallets; `new` prints the first address on stdout, the words on stderr.
    let out = node.wallet(&alice, &["new"], &env).unwrap();
    let alice_addr = ok(&out);
    let words = mnemonic_from(&String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    let bob_addr = ok(&node.wallet(&bob, &["new"], &env).unwrap());
    assert_eq!(
        ok(&node.wallet(&alice, &["address"], &env).unwrap()),
        alice_addr
    );

    // The file is encrypted: no mnemonic, readable only with the passphrase, mode 0600.
    let text = std::fs::read_to_string(&alice).unwrap();
    assert!(!text.contains(&words.split(' ').take(3).collect::<Vec<_>>().join(" ")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let before = std::fs::read(&alice).unwrap();

    // Fund Alice: one block to her, then enough blocks for the coinbase to mature.
    node.fund_by_mining(&alice_addr).unwrap();
    let b = balance(&node, &alice);
    let funded = b["spendable"].as_u64().unwrap();
    assert!(funded > 0, "{b}");

    // Send 1.5 coins to Bob and wait for the confirmation (the dev node mines every 2 s).
    let out = node
        .wallet(
            &alice,
            &[
                "send",
                "--to",
                &bob_addr,
                "--amount",
                "1.5",
                "--wait",
                "--wait-timeout",
                "60",
            ],
            &env,
        )
        .unwrap();
    let txid = ok(&out);
    assert_eq!(txid.len(), 64, "bare txid on stdout: {txid}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("confirmed"),
        "progress on stderr"
    );
    let tx = node.rpc("getrawtransaction", json!([txid, true])).unwrap();
    assert!(tx["confirmations"].as_u64().unwrap() >= 1);
    let bob_balance = balance(&node, &bob);
    assert_eq!(
        bob_balance["confirmed"],
        json!(150_000_000),
        "{bob_balance}"
    );
    let alice_after = balance(&node, &alice);
    let fee = funded - 150_000_000 - alice_after["confirmed"].as_u64().unwrap();
    assert!(fee > 0 && fee < 100_000, "fee {fee}: {alice_after}");

    // History and tx on both sides.
    let hist: Value = serde_json::from_str(&ok(&node
        .wallet(&bob, &["--json", "history"], &env)
        .unwrap()))
    .unwrap();
    assert!(hist.to_string().contains(&txid), "{hist}");
    let detail: Value = serde_json::from_str(&ok(&node
        .wallet(&alice, &["--json", "tx", &txid], &env)
        .unwrap()))
    .unwrap();
    assert!(detail.to_string().contains(&txid));
    let human = ok(&node.wallet(&alice, &["history"], &env).unwrap());
    assert!(
        human.contains(&txid[..16]) || human.contains(&txid),
        "{human}"
    );

    // Restore from the words: same address, same balance.
    let restored = dir.path().join("restored.json");
    let out = node
        .wallet(
            &restored,
            &["import"],
            &[
                ("CAIRN_WALLET_PASSPHRASE", PASS),
                ("CAIRN_WALLET_MNEMONIC", &words),
            ],
        )
        .unwrap();
    ok(&out);
    // `address` gives the next unused address: the same one on both, derived from the same words.
    let next_restored: Value = serde_json::from_str(&ok(&node
        .wallet(&restored, &["--json", "address"], &env)
        .unwrap()))
    .unwrap();
    let next_alice: Value = serde_json::from_str(&ok(&node
        .wallet(&alice, &["--json", "address"], &env)
        .unwrap()))
    .unwrap();
    assert_eq!(next_restored["address"], next_alice["address"]);
    assert_ne!(
        next_alice["address"],
        json!(alice_addr),
        "the first address is used now"
    );
    let rb = balance(&node, &restored);
    assert_eq!(
        rb["confirmed"], alice_after["confirmed"],
        "restored {rb} vs {alice_after}"
    );

    // Errors.
    fails(
        &node
            .wallet(
                &alice,
                &["send", "--to", &bob_addr, "--amount", "1000000"],
                &env,
            )
            .unwrap(),
        "insufficient funds",
    );
    let other_net = Address::parse(&bob_addr, "cdev")
        .unwrap()
        .encode("ctest")
        .unwrap();
    fails(
        &node
            .wallet(&alice, &["send", "--to", &other_net, "--amount", "1"], &env)
            .unwrap(),
        "another network",
    );
    let mut typo = bob_addr.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'q' { 'p' } else { 'q' });
    fails(
        &node
            .wallet(&alice, &["send", "--to", &typo, "--amount", "1"], &env)
            .unwrap(),
        "checksum",
    );
    let out = std::process::Command::new(cairn_tests::bin("cairn-wallet"))
        .args([
            "--wallet",
            &alice.to_string_lossy(),
            "--rpc",
            "http://127.0.0.1:9/",
            "balance",
        ])
        .env("CAIRN_WALLET_PASSPHRASE", PASS)
        .output()
        .unwrap();
    fails(&out, "node unreachable at http://127.0.0.1:9/");
    fails(
        &node
            .wallet(
                &alice,
                &[
                    "send",
                    "--to",
                    &bob_addr,
                    "--amount",
                    "1",
                    "--fee-rate",
                    "0",
                ],
                &env,
            )
            .unwrap(),
        "minimum relay fee",
    );
    let out = node
        .wallet(
            &alice,
            &["send", "--to", &bob_addr, "--amount", "1"],
            &[("CAIRN_WALLET_PASSPHRASE", "wrong")],
        )
        .unwrap();
    fails(&out, "wrong passphrase");
    // Failed commands left nothing half-done: no coins moved, the file is intact.
    assert_eq!(
        balance(&node, &alice)["confirmed"],
        alice_after["confirmed"]
    );
    let after = std::fs::read(&alice).unwrap();
    assert!(!after.is_empty() && before.len() <= after.len() + 4096);
    wait_until(Duration::from_secs(5), "node still serving", || {
        node.height().ok()
    })
    .unwrap();
}

/// A refusal by the node's mempool reaches the user with the node's reason: a chain of
/// unconfirmed payments grows until it breaks the ancestor limit (no miner on this node).
#[test]
fn mempool_refusal_is_reported_with_the_reason() {
    let node = TestNode::run(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alice = dir.path().join("alice.json");
    let env = [("CAIRN_WALLET_PASSPHRASE", PASS)];
    let addr = ok(&node.wallet(&alice, &["new"], &env).unwrap());
    node.fund_by_mining(&addr).unwrap();
    let pay_to = cairn_tests::faucet_address();
    let amount = Amount(100_000).to_coin_string();
    for i in 0..40 {
        let out = node
            .wallet(
                &alice,
                &["send", "--to", &pay_to, "--amount", &amount],
                &env,
            )
            .unwrap();
        if !out.status.success() {
            let err = fails(&out, "rejected by the node's mempool");
            assert!(
                err.contains("too-long-mempool-chain"),
                "the node's reason in {err}"
            );
            assert!(i >= 20, "refused after only {i} chained payments: {err}");
            return;
        }
    }
    panic!("40 chained unconfirmed payments were all accepted: no ancestor limit");
}
