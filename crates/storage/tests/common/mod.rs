//! Shared checks: recompute the UTXO set and the indexes from the best chain and compare.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use cairn_consensus::{ChainParams, Coin, MemoryUtxoSet, UtxoView, connect_block};
use cairn_primitives::{Block, BlockHash, OutPoint, Txid, XOnlyPublicKey};
use cairn_storage::test_utils::TestChain;
use cairn_storage::{ChainReader, UtxoDigest};

pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Genesis outputs as the UTXO set starts (non-coinbase coins at height 0).
pub fn genesis_utxos(params: &ChainParams) -> MemoryUtxoSet {
    let mut set = MemoryUtxoSet::new();
    let cb = &params.genesis_block().transactions[0];
    let txid = cb.txid();
    for (vout, out) in cb.outputs.iter().enumerate() {
        set.insert(
            OutPoint::new(txid, vout as u32),
            Coin {
                output: *out,
                height: 0,
                coinbase: false,
            },
        );
    }
    set
}

/// What the indexes should say, recomputed from a chain of blocks.
pub struct Expected {
    pub utxos: MemoryUtxoSet,
    pub txids: BTreeMap<XOnlyPublicKey, Vec<Txid>>,
    pub tx_locations: Vec<(Txid, BlockHash, u64, u32)>,
}

/// Replays `blocks` (heights 1..) with consensus `connect_block` from genesis.
pub fn replay(params: &ChainParams, blocks: &[Block]) -> Expected {
    let mut utxos = genesis_utxos(params);
    let mut txids: BTreeMap<XOnlyPublicKey, Vec<Txid>> = BTreeMap::new();
    let mut tx_locations = Vec::new();
    let genesis = params.genesis_block();
    let g_txid = genesis.transactions[0].txid();
    for o in &genesis.transactions[0].outputs {
        let v = txids.entry(o.pubkey).or_default();
        if v.last() != Some(&g_txid) {
            v.push(g_txid);
        }
    }
    tx_locations.push((g_txid, genesis.hash(), 0, 0));
    for (i, block) in blocks.iter().enumerate() {
        let height = i as u64 + 1;
        // Address history needs the coins inputs spend, including in-block ones.
        let mut overlay: std::collections::HashMap<OutPoint, XOnlyPublicKey> = Default::default();
        for (j, tx) in block.transactions.iter().enumerate() {
            let txid = tx.txid();
            let mut keys = BTreeSet::new();
            for o in &tx.outputs {
                keys.insert(o.pubkey);
            }
            for input in &tx.inputs {
                let k = overlay
                    .get(&input.prevout)
                    .copied()
                    .or_else(|| utxos.coin(&input.prevout).map(|c| c.output.pubkey))
                    .expect("input exists");
                keys.insert(k);
            }
            for k in keys {
                txids.entry(k).or_default().push(txid);
            }
            for (vout, o) in tx.outputs.iter().enumerate() {
                overlay.insert(OutPoint::new(txid, vout as u32), o.pubkey);
            }
            tx_locations.push((txid, block.hash(), height, j as u32));
        }
        let delta = connect_block(block, height, &utxos, params).expect("replayed block is valid");
        utxos.apply(&delta);
    }
    Expected {
        utxos,
        txids,
        tx_locations,
    }
}

/// The main chain as the reader sees it, as blocks looked up in `chain` (the generator).
pub fn main_chain_blocks(reader: &ChainReader, chain: &TestChain) -> Vec<Block> {
    let (height, _) = reader.tip().unwrap();
    (1..=height)
        .map(|h| {
            let hash = reader
                .block_hash(h)
                .unwrap()
                .expect("height index complete");
            chain.block(&hash).cloned().unwrap_or_else(|| {
                reader
                    .block(&hash)
                    .unwrap()
                    .expect("main-chain block stored")
            })
        })
        .collect()
}

/// Checks UTXO digest, balances, address UTXOs, address history and tx index against a replay
/// of the reader's main chain.
pub fn check_consistency(reader: &ChainReader, chain: &TestChain) {
    let params = reader.params().clone();
    let blocks = main_chain_blocks(reader, chain);
    let exp = replay(&params, &blocks);
    let stats = reader.utxo_stats().unwrap();
    let digest = UtxoDigest::of_set(exp.utxos.coins.iter()).unwrap();
    assert_eq!(stats.height, blocks.len() as u64);
    assert_eq!(stats.txouts, digest.txouts, "utxo count");
    assert_eq!(stats.total_amount.0, digest.total_amount, "utxo total");
    assert_eq!(stats.digest, digest.digest, "utxo digest");

    // The UTXO set itself (cache + database): every expected coin, and no spent one.
    for (op, c) in &exp.utxos.coins {
        assert_eq!(reader.coin(op).unwrap(), Some(*c), "coin {op:?}");
    }
    for b in &blocks {
        for tx in b.transactions.iter().skip(1) {
            for input in &tx.inputs {
                assert_eq!(
                    reader.coin(&input.prevout).unwrap(),
                    None,
                    "spent {input:?}"
                );
            }
        }
    }

    let mut by_key: BTreeMap<XOnlyPublicKey, Vec<(OutPoint, Coin)>> = BTreeMap::new();
    for (op, c) in &exp.utxos.coins {
        by_key.entry(c.output.pubkey).or_default().push((*op, *c));
    }
    let all_keys: BTreeSet<XOnlyPublicKey> =
        by_key.keys().chain(exp.txids.keys()).copied().collect();
    for k in all_keys {
        let mut want = by_key.get(&k).cloned().unwrap_or_default();
        want.sort_by_key(|(o, _)| *o);
        let mut got = reader.address_utxos(&k).unwrap();
        got.sort_by_key(|(o, _)| *o);
        assert_eq!(got, want, "address utxos of {k:?}");
        let bal: u64 = want.iter().map(|(_, c)| c.output.value.0).sum();
        assert_eq!(
            reader.address_balance(&k).unwrap().0,
            bal,
            "balance of {k:?}"
        );
        assert_eq!(
            reader.address_txids(&k).unwrap(),
            exp.txids.get(&k).cloned().unwrap_or_default(),
            "txids of {k:?}"
        );
    }
    for (txid, hash, height, index) in &exp.tx_locations {
        let info = reader.transaction(txid).unwrap().expect("indexed tx");
        assert_eq!(
            (info.block_hash, info.height, info.index),
            (*hash, *height, *index)
        );
    }
}

/// The UTXO digest expected at every block on the paths from genesis to `tips` (and at
/// genesis), each from a fresh replay.
pub fn expected_digests(
    params: &ChainParams,
    chain: &TestChain,
    tips: &[BlockHash],
) -> std::collections::HashMap<BlockHash, UtxoDigest> {
    let mut expected = std::collections::HashMap::new();
    expected.insert(
        params.genesis_hash(),
        UtxoDigest::of_set(genesis_utxos(params).coins.iter()).unwrap(),
    );
    for tip in tips {
        let path = chain.path_to(tip);
        for n in 1..=path.len() {
            let e = replay(params, &path[..n]);
            expected.insert(
                path[n - 1].hash(),
                UtxoDigest::of_set(e.utxos.coins.iter()).unwrap(),
            );
        }
    }
    expected
}
