//! `cairnd --dev`: one command, a chain that grows, a funded dev wallet, a clean stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cairn_tests::{TestNode, wait_until};
use serde_json::json;

#[test]
fn dev_node_mines_and_funds_its_wallet() {
    let mut node = TestNode::dev().unwrap();
    // Blocks arrive on their own (paced to the genesis block time, 2 s on the devnet).
    node.wait_height(2, Duration::from_secs(30)).unwrap();
    let log = node.log_text();
    assert!(
        log.contains(&format!("RPC:  {}", node.rpc_url)),
        "RPC URL printed:\n{log}"
    );
    let wallet = node.datadir.join("dev-wallet.json");
    assert!(
        log.contains(&wallet.display().to_string()),
        "dev wallet path printed:\n{log}"
    );
    assert!(wallet.exists());

    // The dev wallet's address receives the coinbases.
    let address = log
        .lines()
        .find_map(|l| l.split("(address ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .expect("dev wallet address printed")
        .to_string();
    let balance = wait_until(Duration::from_secs(30), "dev wallet balance", || {
        let b = node.rpc("getaddressbalance", json!([address])).ok()?;
        b["confirmed"].as_u64().filter(|v| *v > 0)
    })
    .unwrap();
    assert!(balance > 0);
    let info = node.rpc("getmininginfo", json!([])).unwrap();
    assert_eq!(info["mining"], json!(true));

    // SIGTERM: a clean exit (status 0) that saves the mempool.
    let status = node.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(node.datadir.join("mempool.dat").exists());
}
