//! Shared builders for consensus tests: devnet params, the published faucet key, signed spends
//! and mined blocks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use cairn_consensus::{ChainParams, Coin, MemoryUtxoSet, Target};
use cairn_primitives::keys::sign_transaction;
use cairn_primitives::{
    Amount, Block, BlockHash, BlockHeader, OutPoint, SecretKey, Signature, Transaction, TxIn, TxOut,
};

pub fn params() -> ChainParams {
    ChainParams::devnet()
}

/// The devnet faucet key (secret = SHA-256("cairn devnet faucet"), see docs/genesis.md).
pub fn faucet() -> SecretKey {
    SecretKey::from_bytes(cairn_primitives::sha256(b"cairn devnet faucet")).unwrap()
}

/// The UTXO set right after genesis: its allocations, spendable at once.
pub fn genesis_utxos(p: &ChainParams) -> (MemoryUtxoSet, OutPoint, Amount) {
    let g = &p.genesis_block().transactions[0];
    let mut set = MemoryUtxoSet::new();
    let op = OutPoint::new(g.txid(), 0);
    set.insert(
        op,
        Coin {
            output: g.outputs[0],
            height: 0,
            coinbase: false,
        },
    );
    (set, op, g.outputs[0].value)
}

/// A transaction spending `prevouts` (all owned by `key`) into outputs of `values` paying `to`.
pub fn spend(
    p: &ChainParams,
    prevouts: &[OutPoint],
    values: &[u64],
    key: &SecretKey,
    to: &SecretKey,
) -> Transaction {
    let mut tx = Transaction {
        version: 1,
        inputs: prevouts
            .iter()
            .map(|op| TxIn {
                prevout: *op,
                signature: Signature::EMPTY,
            })
            .collect(),
        outputs: values
            .iter()
            .map(|v| TxOut {
                value: Amount(*v),
                pubkey: to.public_key(),
            })
            .collect(),
        lock_time: 0,
    };
    let keys: Vec<&SecretKey> = prevouts.iter().map(|_| key).collect();
    sign_transaction(&mut tx, &p.genesis_hash(), &keys);
    tx
}

pub fn coinbase(height: u64, value: u64, to: &SecretKey) -> Transaction {
    Transaction {
        version: 1,
        inputs: vec![],
        outputs: vec![TxOut {
            value: Amount(value),
            pubkey: to.public_key(),
        }],
        lock_time: height as u32,
    }
}

/// A block on `prev` with `txs`, correct merkle root, the easiest target and a valid nonce.
pub fn block(p: &ChainParams, prev: BlockHash, time: u64, txs: Vec<Transaction>) -> Block {
    let mut b = Block {
        header: BlockHeader {
            version: 1,
            prev_hash: prev,
            merkle_root: Default::default(),
            time,
            bits: p.pow_limit_bits,
            nonce: 0,
        },
        transactions: txs,
    };
    b.header.merkle_root = b.compute_merkle_root();
    mine(p, &mut b.header);
    b
}

/// Grinds the nonce until the header meets its own bits.
pub fn mine(_p: &ChainParams, h: &mut BlockHeader) {
    let target = Target::from_compact(h.bits).unwrap();
    while !target.is_met_by(&h.hash()) {
        h.nonce += 1;
    }
}

/// Grinds the nonce until the header does NOT meet its bits (for the high-hash case).
pub fn unmine(h: &mut BlockHeader) {
    let target = Target::from_compact(h.bits).unwrap();
    while target.is_met_by(&h.hash()) {
        h.nonce += 1;
    }
}
