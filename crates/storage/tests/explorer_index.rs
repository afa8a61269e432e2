//! The explorer indexes (spender, chain transaction count) and paged address reads, on a real
//! RocksDB, through a reorganisation: every answer is checked against what the blocks of the
//! main chain say, recomputed here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use cairn_consensus::ChainParams;
use cairn_primitives::{Block, OutPoint, XOnlyPublicKey};
use cairn_storage::test_utils::{TEST_NOW, TestChain};
use cairn_storage::{ChainReader, ChainState, HistoryPosition, Spender, StorageConfig, TipStatus};
use common::temp;

fn open(dir: &std::path::Path) -> ChainState {
    ChainState::open(dir, ChainParams::devnet(), StorageConfig::default()).unwrap()
}

/// Every outpoint the given blocks create or spend, and who spends it on this chain.
fn expected_spenders(main: &[Block]) -> (Vec<OutPoint>, HashMap<OutPoint, Spender>) {
    let mut all = Vec::new();
    let mut spent = HashMap::new();
    for (h, b) in main.iter().enumerate() {
        for tx in &b.transactions {
            let txid = tx.txid();
            for (vin, i) in tx.inputs.iter().enumerate() {
                all.push(i.prevout);
                spent.insert(
                    i.prevout,
                    Spender {
                        txid,
                        vin: vin as u32,
                        height: h as u64 + 1,
                    },
                );
            }
            for n in 0..tx.outputs.len() {
                all.push(OutPoint::new(txid, n as u32));
            }
        }
    }
    (all, spent)
}

fn check_spenders(r: &ChainReader, main: &[Block], also: &[OutPoint]) {
    let (mut all, spent) = expected_spenders(main);
    all.extend_from_slice(also);
    let got = r.spenders(&all).unwrap();
    let mut n_spent = 0;
    for (op, g) in all.iter().zip(got) {
        assert_eq!(g, spent.get(op).copied(), "spender of {op}");
        n_spent += usize::from(g.is_some());
    }
    assert!(n_spent > 10, "the chain spends outputs ({n_spent})");
}

fn check_tx_counts(r: &ChainReader, main: &[Block], params: &ChainParams) {
    let mut total = params.genesis_block().transactions.len() as u64;
    assert_eq!(r.chain_tx_count(0).unwrap(), Some(total));
    for (h, b) in main.iter().enumerate() {
        total += b.transactions.len() as u64;
        assert_eq!(r.chain_tx_count(h as u64 + 1).unwrap(), Some(total));
    }
    assert_eq!(r.chain_tx_count(main.len() as u64 + 1).unwrap(), None);
}

/// Pages through an address's history with `limit`, from `after`, collecting every entry.
fn page_all(
    r: &ChainReader,
    pk: &XOnlyPublicKey,
    mut after: Option<HistoryPosition>,
    limit: usize,
    newest_first: bool,
) -> Vec<cairn_primitives::Txid> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let page = r.address_txs_page(pk, after, limit, newest_first).unwrap();
        assert!(page.entries.len() <= limit);
        out.extend(page.entries.iter().map(|e| e.txid));
        if !page.more {
            return out;
        }
        after = page.entries.last().map(|e| e.position);
    }
    panic!("paging did not end");
}

#[test]
fn spender_index_and_paging_follow_a_reorganisation() {
    let dir = temp();
    let params = ChainParams::devnet();
    let mut state = open(dir.path());
    let mut chain = TestChain::new(params.clone());
    let mut a = Vec::new();
    for _ in 0..12 {
        let b = chain.mine(3);
        state.accept_block(b.clone(), TEST_NOW).unwrap();
        a.push(b);
    }
    let r = state.reader();
    check_spenders(&r, &a, &[]);
    check_tx_counts(&r, &a, &params);

    // The key with the longest history.
    let pk = chain
        .keys()
        .iter()
        .map(|k| k.public_key())
        .max_by_key(|pk| r.address_txids(pk).unwrap().len())
        .unwrap();
    let full = r.address_txids(&pk).unwrap();
    assert!(full.len() >= 8, "history of {} entries", full.len());
    assert_eq!(page_all(&r, &pk, None, 3, false), full);
    let mut reversed = full.clone();
    reversed.reverse();
    assert_eq!(page_all(&r, &pk, None, 3, true), reversed);
    // The per-call maximum holds whatever is asked.
    let big = r.address_txs_page(&pk, None, usize::MAX, false).unwrap();
    assert_eq!(big.entries.len(), full.len());
    assert!(!big.more);

    // Coins page the same way.
    let coins = r.address_utxos(&pk).unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let p = r.address_utxos_page(&pk, after, 2).unwrap();
        paged.extend(p.entries.iter().copied());
        if !p.more {
            break;
        }
        after = p.entries.last().map(|e| e.0);
    }
    assert_eq!(paged, coins);

    // A newest-first cursor taken before a reorganisation that replaces the top 4 blocks.
    let first = r.address_txs_page(&pk, None, 2, true).unwrap();
    let cursor = first.entries.last().unwrap().position;
    drop(r);
    chain.set_tip(a[7].hash());
    let mut b = a[..8].to_vec();
    for i in 0..6 {
        let blk = chain.mine_salted(2, 100 + i);
        state.accept_block(blk.clone(), TEST_NOW).unwrap();
        b.push(blk);
    }
    assert_eq!(state.tip().hash, b.last().unwrap().hash());
    let r = state.reader();
    // Outputs of the abandoned blocks are in no index now; spends there are forgotten.
    let (abandoned, _) = expected_spenders(&a[8..]);
    check_spenders(&r, &b, &abandoned);
    check_tx_counts(&r, &b, &params);

    // The old cursor still pages: the rest is exactly the new history below its position.
    let rest = page_all(&r, &pk, Some(cursor), 3, true);
    let below: Vec<_> = {
        let mut all = Vec::new();
        let page = r.address_txs_page(&pk, None, 1_000, true).unwrap();
        for e in page.entries {
            if e.position < cursor {
                all.push(e.txid);
            }
        }
        all
    };
    assert!(!below.is_empty());
    assert_eq!(rest, below);

    // Chain tips: the active one and the abandoned branch, 4 blocks long.
    let tips = r.chain_tips().unwrap();
    assert_eq!(tips[0].status, TipStatus::Active);
    assert_eq!(tips[0].branch_len, 0);
    assert_eq!(tips[0].hash, b.last().unwrap().hash());
    let fork = tips
        .iter()
        .find(|t| t.hash == a.last().unwrap().hash())
        .expect("old tip listed");
    assert_eq!(fork.status, TipStatus::ValidFork);
    assert_eq!(fork.branch_len, 4);
    assert_eq!(tips.len(), 2);

    // Everything survives a reopen.
    drop(r);
    drop(state);
    let state = open(dir.path());
    check_spenders(&state.reader(), &b, &abandoned);
}
