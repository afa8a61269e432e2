//! Signatures verified when a transaction enters the mempool are not verified again when the
//! block that confirms it is connected (the signature cache), and the block still connects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_primitives::encoding::encode_hex;
use cairn_tests::{TestNode, faucet_address};
use serde_json::json;

fn metric(node: &TestNode, name: &str) -> u64 {
    let text = ureq::get(&format!("{}metrics", node.rpc_url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[test]
fn a_block_of_mempool_transactions_skips_their_signatures() {
    let node = TestNode::run(&[]).unwrap();
    let tx = cairn_tests::spend_genesis_allocation(&node, 10_000).unwrap();
    node.rpc("sendrawtransaction", json!([encode_hex(&tx)]))
        .unwrap();
    assert_eq!(metric(&node, "cairn_sigcache_inserted_total"), 1);
    assert_eq!(metric(&node, "cairn_sigcache_hits_total"), 0);
    node.rpc("generatetoaddress", json!([1, faucet_address()]))
        .unwrap();
    assert_eq!(metric(&node, "cairn_sigcache_hits_total"), 1);
    let info = node
        .rpc("getrawtransaction", json!([tx.txid().to_string(), true]))
        .unwrap();
    assert_eq!(info["confirmations"], json!(1), "{info}");
}
