//! Shared fixture for the mempool tests: devnet parameters, a chain UTXO set of synthetic
//! confirmed coins owned by one key, and builders for signed spends and blocks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use cairn_consensus::{ChainParams, Coin, MemoryUtxoSet};
use cairn_mempool::{Mempool, MempoolConfig};
use cairn_primitives::keys::signed_spend;
use cairn_primitives::{
    Amount, Block, BlockHash, BlockHeader, OutPoint, SecretKey, Transaction, TxOut, Txid,
};

/// Value of every synthetic confirmed coin: 1 coin.
pub const COIN_VALUE: u64 = 100_000_000;
/// Tip height the fixture's chain is at.
pub const TIP: u64 = 100;
/// A fixed "now" (Unix seconds).
pub const NOW: u64 = 1_800_000_000;

pub struct Fx {
    pub params: ChainParams,
    pub key: SecretKey,
    pub chain: MemoryUtxoSet,
    /// Confirmed coins, unspent in the chain, in creation order.
    pub coins: Vec<OutPoint>,
    pub pool: Mempool,
}

pub fn key() -> SecretKey {
    SecretKey::from_bytes(cairn_primitives::sha256(b"mempool test key")).unwrap()
}

impl Fx {
    pub fn new(n_coins: usize, config: MempoolConfig) -> Fx {
        let params = ChainParams::devnet();
        let key = key();
        let mut chain = MemoryUtxoSet::new();
        let mut coins = Vec::with_capacity(n_coins);
        for i in 0..n_coins as u64 {
            let op = OutPoint::new(Txid(cairn_primitives::sha256(&i.to_le_bytes())), 0);
            chain.insert(
                op,
                Coin {
                    output: TxOut {
                        value: Amount(COIN_VALUE),
                        pubkey: key.public_key(),
                    },
                    height: 1,
                    coinbase: false,
                },
            );
            coins.push(op);
        }
        let pool = Mempool::new(params.clone(), config);
        Fx {
            params,
            key,
            chain,
            coins,
            pool,
        }
    }

    /// A signed transaction spending `inputs` (all the fixture key's) into `outputs` values.
    pub fn spend(&self, inputs: &[OutPoint], outputs: &[u64]) -> Transaction {
        signed_spend(inputs, outputs, &self.key, &self.params.genesis_hash())
    }

    /// One input of `value` (a confirmed coin or a pool output) to one output, paying `fee`.
    pub fn pay(&self, input: OutPoint, value: u64, fee: u64) -> Transaction {
        self.spend(&[input], &[value - fee])
    }

    pub fn accept(
        &mut self,
        tx: &Transaction,
    ) -> Result<cairn_mempool::AcceptOutcome, cairn_mempool::MempoolError> {
        self.pool
            .accept(tx.clone(), &self.chain, TIP, NOW, cairn_mempool::LOCAL)
    }

    pub fn accept_from(
        &mut self,
        tx: &Transaction,
        peer: u64,
    ) -> Result<cairn_mempool::AcceptOutcome, cairn_mempool::MempoolError> {
        self.pool.accept(tx.clone(), &self.chain, TIP, NOW, peer)
    }

    /// A block at `TIP + 1` on an arbitrary parent holding `txs` after a coinbase that takes
    /// exactly the fees (header rules are not the mempool's concern).
    pub fn block(&self, txs: &[Transaction], fees: u64) -> Block {
        block_at(TIP + 1, txs, fees, &self.key)
    }
}

pub fn block_at(height: u64, txs: &[Transaction], fees: u64, to: &SecretKey) -> Block {
    let coinbase = Transaction {
        version: Transaction::VERSION,
        inputs: vec![],
        outputs: vec![TxOut {
            value: Amount(fees.max(1)),
            pubkey: to.public_key(),
        }],
        lock_time: height as u32,
    };
    let mut transactions = vec![coinbase];
    transactions.extend(txs.iter().cloned());
    let mut b = Block {
        header: BlockHeader {
            version: 1,
            prev_hash: BlockHash::ZERO,
            merkle_root: Default::default(),
            time: NOW,
            bits: 0,
            nonce: 0,
        },
        transactions,
    };
    b.header.merkle_root = b.compute_merkle_root();
    b
}

/// Applies a block's transactions to a UTXO set (no validation: the caller validated it).
pub fn apply(chain: &mut MemoryUtxoSet, block: &Block, height: u64) {
    for (i, tx) in block.transactions.iter().enumerate() {
        for input in &tx.inputs {
            chain.remove(&input.prevout);
        }
        let txid = tx.txid();
        for (vout, o) in tx.outputs.iter().enumerate() {
            chain.insert(
                OutPoint::new(txid, vout as u32),
                Coin {
                    output: *o,
                    height,
                    coinbase: i == 0,
                },
            );
        }
    }
}
