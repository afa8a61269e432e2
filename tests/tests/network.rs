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
