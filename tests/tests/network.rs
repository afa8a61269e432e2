//! Real nodes on loopback: a new node syncs from a bootnode given without `/p2p/<id>`, and
//! transactions and blocks relay both ways through gossip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::keys::sign_transaction;
use cairn_primitives::{Address, Amount, OutPoint, Signature, Transaction, TxIn, TxOut, Txid};
use cairn_tests::{TestNode, faucet_key, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn address(node: &TestNode, key: &cairn_primitives::SecretKey) -> String {
    let prefix = node.rpc("getblockchaininfo", json!([])).unwrap()["addressprefix"]
        .as_str()
        .unwrap()
        .to_string();
    Address::new(key.public_key()).encode(&prefix).unwrap()
}

#[test]
fn nodes_sync_and_relay() {
    let a = TestNode::run(&[]).unwrap();
    let faucet = faucet_key();
    let miner = address(&a, &faucet);
    let hashes = a.rpc("generatetoaddress", json!([30, miner])).unwrap();
    assert_eq!(hashes.as_array().unwrap().len(), 30);

    // B knows A only by IP and port: the bootnode address may omit /p2p/<id>.
    let full = a.p2p_addr().unwrap();
    let bare = full.split("/p2p/").next().unwrap().to_string();
    let b = TestNode::run(&["--bootnode", &bare]).unwrap();
    wait_until(WAIT, "B syncs A's 30 blocks", || {
        (b.height().ok()? == 30).then_some(())
    })
    .unwrap();
    assert_eq!(
        a.rpc("getbestblockhash", json!([])).unwrap(),
        b.rpc("getbestblockhash", json!([])).unwrap()
    );
    assert_eq!(
        a.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"],
        b.rpc("gettxoutsetinfo", json!([])).unwrap()["utxo_digest"],
        "same tip, same UTXO set"
    );
    let peers = b.rpc("getpeerinfo", json!([])).unwrap();
    assert_eq!(peers.as_array().unwrap().len(), 1);
    assert_eq!(peers[0]["inbound"], json!(false));

    // A transaction sent to B reaches A's mempool through gossip.
    let genesis: cairn_primitives::BlockHash =
        b.rpc("getblockchaininfo", json!([])).unwrap()["genesishash"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let utxos = b.rpc("getaddressutxos", json!([miner])).unwrap();
    let coin = utxos
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["spendable"] == json!(true) && u["value"].as_u64().unwrap() > 10_000)
        .expect("a spendable coin")
        .clone();
    let txid: Txid = coin["txid"].as_str().unwrap().parse().unwrap();
    let value = coin["value"].as_u64().unwrap();
    let mut tx = Transaction {
        version: Transaction::VERSION,
        inputs: vec![TxIn {
            prevout: OutPoint::new(txid, coin["vout"].as_u64().unwrap() as u32),
            signature: Signature([0; 64]),
        }],
        outputs: vec![TxOut {
            value: Amount(value - 5_000),
            pubkey: faucet.public_key(),
        }],
        lock_time: 0,
    };
    sign_transaction(&mut tx, &genesis, &[&faucet]);
    let sent = b
        .rpc("sendrawtransaction", json!([encode_hex(&tx)]))
        .unwrap();
    assert_eq!(sent, json!(tx.txid().to_hex()));
    wait_until(WAIT, "the tx reaches A's mempool", || {
        let pool = a.rpc("getrawmempool", json!([])).ok()?;
        pool.as_array()?.iter().any(|t| t == &sent).then_some(())
    })
    .unwrap();

    // A mines it; the block reaches B, which drops the tx from its pool.
    a.rpc("generatetoaddress", json!([1, miner])).unwrap();
    wait_until(WAIT, "B gets block 31", || {
        (b.height().ok()? == 31).then_some(())
    })
    .unwrap();
    wait_until(WAIT, "B's mempool empties", || {
        (b.rpc("getmempoolinfo", json!([])).ok()?["size"] == json!(0)).then_some(())
    })
    .unwrap();
    let tx_b = b.rpc("getrawtransaction", json!([sent, true])).unwrap();
    assert_eq!(tx_b["confirmations"], json!(1));
}

/// Signed transactions each spending one mature coinbase of `miner_key` (so they are
/// independent of each other), paying `fee`.
fn spend_coinbases(
    node: &TestNode,
    key: &cairn_primitives::SecretKey,
    n: usize,
) -> Vec<Transaction> {
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let genesis: cairn_primitives::BlockHash =
        info["genesishash"].as_str().unwrap().parse().unwrap();
    let utxos = node
        .rpc("getaddressutxos", json!([address(node, key)]))
        .unwrap();
    utxos
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["spendable"] == json!(true) && u["value"].as_u64().unwrap() > 10_000)
        .take(n)
        .map(|u| {
            let mut tx = Transaction {
                version: Transaction::VERSION,
                inputs: vec![TxIn {
                    prevout: OutPoint::new(
                        u["txid"].as_str().unwrap().parse().unwrap(),
                        u["vout"].as_u64().unwrap() as u32,
                    ),
                    signature: Signature([0; 64]),
                }],
                outputs: vec![TxOut {
                    value: Amount(u["value"].as_u64().unwrap() - 5_000),
                    pubkey: key.public_key(),
                }],
                lock_time: 0,
            };
            sign_transaction(&mut tx, &genesis, &[key]);
            tx
        })
        .collect()
}

/// Gossip delivers a transaction once, to the peers connected at that moment. A node that
/// joins later gets the pool it missed: its peers announce their pools to every new peer over
/// `/cairn/relay/1`, and it fetches what it lacks.
#[test]
fn a_node_that_joins_gets_the_pool_it_missed() {
    let a = TestNode::run(&[]).unwrap();
    let faucet = faucet_key();
    a.rpc("generatetoaddress", json!([40, address(&a, &faucet)]))
        .unwrap();
    let txs = spend_coinbases(&a, &faucet, 20);
    assert!(txs.len() >= 20, "enough mature coinbases");
    for tx in &txs {
        a.rpc("sendrawtransaction", json!([encode_hex(tx)]))
            .unwrap();
    }
    assert_eq!(
        a.rpc("getmempoolinfo", json!([])).unwrap()["size"],
        json!(txs.len())
    );

    // B was not there when they were gossiped.
    let b = TestNode::run(&["--bootnode", &a.p2p_addr().unwrap()]).unwrap();
    let synced = wait_until(WAIT, "B syncs and gets A's pool", || {
        let size = b.rpc("getmempoolinfo", json!([])).ok()?["size"].as_u64()?;
        (b.height().ok()? == 40 && size == txs.len() as u64).then_some(())
    });
    if let Err(e) = synced {
        panic!(
            "{e}: B at height {:?}, pool {}",
            b.height(),
            b.rpc("getmempoolinfo", json!([])).unwrap()
        );
    }
    let metrics = ureq::get(&format!("{}metrics", b.rpc_url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let fetched = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_p2p_relay_txs_fetched_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    assert_eq!(fetched, txs.len() as u64, "fetched over the relay protocol");
}
