//! Helpers other crates' tests share: a block builder that makes valid blocks on any parent,
//! the devnet faucet key, and [`TestChain`], an in-memory chain generator with signed spends.
//!
//! Available with the `test-utils` feature (and in this crate's own tests).

use std::collections::{HashMap, VecDeque};

use cairn_consensus::rules::header::{median_time_past, pow_is_valid};
use cairn_consensus::subsidy::block_subsidy;
use cairn_consensus::{
    ChainParams, Coin, MEDIAN_TIME_SPAN, MemoryUtxoSet, UtxoView, difficulty::next_bits,
};
use cairn_primitives::keys::sign_transaction;
use cairn_primitives::{
    Amount, Block, BlockHash, BlockHeader, OutPoint, SecretKey, Signature, Transaction, TxIn,
    TxOut, XOnlyPublicKey, sha256,
};

use crate::error::StorageResult;
use crate::reader::ChainReader;

/// Secret key of the devnet genesis allocation: SHA-256("cairn devnet faucet").
pub const FAUCET_SECRET_HEX: &str =
    "add2d0eb5fdc56548bba0da5f277d5292da22bfe2bd7f76fa96e8c65d2cbfe5c";

/// A clock reading under which no test header is too far in the future.
pub const TEST_NOW: u64 = u64::MAX;

/// Fee every [`TestChain`] payment pays.
pub const TEST_FEE: Amount = Amount(1_000);

/// The devnet faucet key (owns the allocation in the repository's `genesis.json`).
pub fn faucet_key() -> SecretKey {
    #[allow(clippy::expect_used)]
    SecretKey::from_bytes(sha256(b"cairn devnet faucet"))
        .expect("SHA-256 of the faucet seed is a valid key")
}

/// A deterministic test key: `SHA-256("cairn test key " || i)`.
pub fn test_key(i: u32) -> SecretKey {
    let mut seed = b"cairn test key ".to_vec();
    seed.extend_from_slice(&i.to_le_bytes());
    #[allow(clippy::expect_used)]
    SecretKey::from_bytes(sha256(&seed))
        .expect("a SHA-256 output is a valid key with overwhelming probability")
}

/// Builds a valid block on a given parent: coinbase committing to the height and paying
/// subsidy + fees, the expected bits, a time above the median time past, the merkle root, and
/// a ground nonce (quick on a dev chain's easiest target).
#[derive(Clone, Debug)]
pub struct BlockBuilder {
    params: ChainParams,
    prev_hash: BlockHash,
    height: u64,
    bits: u32,
    time: u64,
    coinbase_pubkey: XOnlyPublicKey,
    fees: Amount,
    transactions: Vec<Transaction>,
}

impl BlockBuilder {
    /// A builder for the child of `parent` (at `parent_height`, whose median time past is
    /// `parent_mtp`). Default time: `max(parent_mtp + 1, parent.time + block_time_secs)`.
    pub fn new(
        params: &ChainParams,
        parent: &BlockHeader,
        parent_height: u64,
        parent_mtp: u64,
    ) -> Self {
        Self {
            params: params.clone(),
            prev_hash: parent.hash(),
            height: parent_height + 1,
            bits: next_bits(params, parent_height, parent.time),
            time: (parent_mtp + 1).max(parent.time + params.block_time_secs),
            coinbase_pubkey: test_key(0).public_key(),
            fees: Amount::ZERO,
            transactions: Vec::new(),
        }
    }

    /// A builder for the child of the reader's current tip.
    pub fn on_tip(reader: &ChainReader) -> StorageResult<Self> {
        let ctx = reader.block_template_context()?;
        Ok(Self {
            params: reader.params().clone(),
            prev_hash: ctx.prev_hash,
            height: ctx.height,
            bits: ctx.bits,
            time: ctx
                .min_time
                .max(ctx.prev_time + reader.params().block_time_secs),
            coinbase_pubkey: test_key(0).public_key(),
            fees: Amount::ZERO,
            transactions: Vec::new(),
        })
    }

    /// Who the coinbase pays (default: `test_key(0)`).
    pub fn coinbase_to(mut self, pubkey: XOnlyPublicKey) -> Self {
        self.coinbase_pubkey = pubkey;
        self
    }
    /// Fees the coinbase may claim on top of the subsidy (default 0: claims only the subsidy).
    pub fn fees(mut self, fees: Amount) -> Self {
        self.fees = fees;
        self
    }
    /// Header time (default: see [`BlockBuilder::new`]).
    pub fn time(mut self, time: u64) -> Self {
        self.time = time;
        self
    }
    /// Adds `seconds` to the time: distinct siblings on one parent.
    pub fn time_offset(mut self, seconds: u64) -> Self {
        self.time += seconds;
        self
    }
    pub fn transaction(mut self, tx: Transaction) -> Self {
        self.transactions.push(tx);
        self
    }
    pub fn transactions(mut self, txs: impl IntoIterator<Item = Transaction>) -> Self {
        self.transactions.extend(txs);
        self
    }
    /// Height of the block being built.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The block, with a valid proof of work.
    pub fn build(self) -> Block {
        let value = block_subsidy(&self.params, self.height)
            .checked_add(self.fees)
            .unwrap_or(Amount(u64::MAX));
        let coinbase = Transaction {
            version: Transaction::VERSION,
            inputs: vec![],
            outputs: vec![TxOut {
                value,
                pubkey: self.coinbase_pubkey,
            }],
            lock_time: self.height as u32,
        };
        let mut transactions = vec![coinbase];
        transactions.extend(self.transactions);
        let mut block = Block {
            header: BlockHeader {
                version: BlockHeader::VERSION,
                prev_hash: self.prev_hash,
                merkle_root: Default::default(),
                time: self.time,
                bits: self.bits,
                nonce: 0,
            },
            transactions,
        };
        block.header.merkle_root = block.compute_merkle_root();
        grind(&mut block.header, &self.params);
        block
    }
}

/// Increments the nonce until the header meets its target.
pub fn grind(header: &mut BlockHeader, params: &ChainParams) {
    while pow_is_valid(header, params).is_err() {
        header.nonce = header.nonce.wrapping_add(1);
    }
}

/// Applies `block`'s transactions to `utxos` without validating anything.
pub fn apply_unchecked(utxos: &mut MemoryUtxoSet, block: &Block, height: u64) {
    for (i, tx) in block.transactions.iter().enumerate() {
        for input in &tx.inputs {
            utxos.remove(&input.prevout);
        }
        let txid = tx.txid();
        for (vout, out) in tx.outputs.iter().enumerate() {
            utxos.insert(
                OutPoint::new(txid, vout as u32),
                Coin {
                    output: *out,
                    height,
                    coinbase: i == 0 && height > 0,
                },
            );
        }
    }
}

#[derive(Clone, Debug)]
struct TestBlock {
    block: Block,
    height: u64,
}

/// An in-memory chain generator: mines valid blocks with signed one-in-two-out payments
/// between [`test_key`]s, starting from the faucet allocation, on any branch.
#[derive(Clone, Debug)]
pub struct TestChain {
    pub params: ChainParams,
    /// keys[0] is the faucet; the others are `test_key(1..)`.
    keys: Vec<SecretKey>,
    key_index: HashMap<XOnlyPublicKey, usize>,
    blocks: HashMap<BlockHash, TestBlock>,
    tip: BlockHash,
    utxos: MemoryUtxoSet,
    /// Non-coinbase coins owned by `keys` at the tip, oldest first.
    spendable: VecDeque<OutPoint>,
    rotation: usize,
}

/// Number of keys a [`TestChain`] pays between (faucet included).
pub const TEST_CHAIN_KEYS: u32 = 8;

impl TestChain {
    /// A chain at `params`' genesis. The faucet key must own at least one genesis output for
    /// spends to be possible (true of the devnet genesis).
    pub fn new(params: ChainParams) -> Self {
        let mut keys = vec![faucet_key()];
        keys.extend((1..TEST_CHAIN_KEYS).map(test_key));
        let key_index = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.public_key(), i))
            .collect();
        let genesis = params.genesis_block().clone();
        let hash = genesis.hash();
        let mut blocks = HashMap::new();
        blocks.insert(
            hash,
            TestBlock {
                block: genesis,
                height: 0,
            },
        );
        let mut chain = Self {
            params,
            keys,
            key_index,
            blocks,
            tip: hash,
            utxos: MemoryUtxoSet::new(),
            spendable: VecDeque::new(),
            rotation: 0,
        };
        chain.set_tip(hash);
        chain
    }

    pub fn tip(&self) -> BlockHash {
        self.tip
    }
    pub fn height(&self) -> u64 {
        self.blocks.get(&self.tip).map_or(0, |b| b.height)
    }
    pub fn block(&self, hash: &BlockHash) -> Option<&Block> {
        self.blocks.get(hash).map(|b| &b.block)
    }
    pub fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.blocks.get(hash).map(|b| b.height)
    }
    /// The UTXO set at the generator's tip.
    pub fn utxos(&self) -> &MemoryUtxoSet {
        &self.utxos
    }
    pub fn keys(&self) -> &[SecretKey] {
        &self.keys
    }
    pub fn key_for(&self, pubkey: &XOnlyPublicKey) -> Option<&SecretKey> {
        self.key_index.get(pubkey).map(|i| &self.keys[*i])
    }
    /// Non-coinbase coins the generator can spend at its tip.
    pub fn spendable(&self) -> Vec<(OutPoint, Coin)> {
        self.spendable
            .iter()
            .filter_map(|op| self.utxos.coin(op).map(|c| (*op, c)))
            .collect()
    }

    /// Blocks from genesis (excluded) to `hash`, in order.
    pub fn path_to(&self, hash: &BlockHash) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cur = *hash;
        while let Some(b) = self.blocks.get(&cur) {
            if b.height == 0 {
                break;
            }
            out.push(b.block.clone());
            cur = b.block.header.prev_hash;
        }
        out.reverse();
        out
    }

    /// Moves the generator to `hash` (any block it made): later blocks build on it (a fork).
    pub fn set_tip(&mut self, hash: BlockHash) {
        assert!(self.blocks.contains_key(&hash), "unknown block {hash}");
        let mut utxos = MemoryUtxoSet::new();
        apply_unchecked(&mut utxos, self.params.genesis_block(), 0);
        for (i, block) in self.path_to(&hash).iter().enumerate() {
            apply_unchecked(&mut utxos, block, i as u64 + 1);
        }
        let mut spendable: Vec<(OutPoint, Coin)> = utxos
            .coins
            .iter()
            .filter(|(_, c)| !c.coinbase && self.key_index.contains_key(&c.output.pubkey))
            .map(|(o, c)| (*o, *c))
            .collect();
        spendable.sort_by_key(|(o, c)| (c.height, *o));
        self.spendable = spendable.into_iter().map(|(o, _)| o).collect();
        self.utxos = utxos;
        self.tip = hash;
    }

    fn mtp(&self, hash: &BlockHash) -> u64 {
        let mut times = Vec::new();
        let mut cur = *hash;
        while let Some(b) = self.blocks.get(&cur) {
            times.push(b.block.header.time);
            if times.len() == MEDIAN_TIME_SPAN || b.height == 0 {
                break;
            }
            cur = b.block.header.prev_hash;
        }
        median_time_past(&times)
    }

    /// A builder for the child of the generator's tip.
    pub fn builder(&self) -> BlockBuilder {
        let tip = &self.blocks[&self.tip];
        BlockBuilder::new(
            &self.params,
            &tip.block.header,
            tip.height,
            self.mtp(&self.tip),
        )
    }

    /// A signed one-in-two-out payment spending `outpoint` (a coin at the generator's tip,
    /// owned by one of the keys) to the next keys in rotation, paying [`TEST_FEE`]. `None` if
    /// the coin is unknown or too small.
    pub fn payment(&mut self, outpoint: OutPoint) -> Option<Transaction> {
        let coin = self.utxos.coin(&outpoint)?;
        self.sign_payment(outpoint, coin)
    }

    fn sign_payment(&mut self, outpoint: OutPoint, coin: Coin) -> Option<Transaction> {
        let key = self.key_for(&coin.output.pubkey)?.clone();
        let rest = coin.output.value.checked_sub(TEST_FEE)?;
        if rest.0 < 2 {
            return None;
        }
        let a = self.next_key();
        let b = self.next_key();
        let mut tx = Transaction {
            version: Transaction::VERSION,
            inputs: vec![TxIn {
                prevout: outpoint,
                signature: Signature::EMPTY,
            }],
            outputs: vec![
                TxOut {
                    value: Amount(rest.0 / 2),
                    pubkey: a,
                },
                TxOut {
                    value: Amount(rest.0 - rest.0 / 2),
                    pubkey: b,
                },
            ],
            lock_time: 0,
        };
        sign_transaction(&mut tx, &self.params.genesis_hash(), &[&key]);
        Some(tx)
    }

    fn next_key(&mut self) -> XOnlyPublicKey {
        self.rotation = (self.rotation + 1) % self.keys.len();
        self.keys[self.rotation].public_key()
    }

    /// `count` payments (fewer if coins run out), spending the oldest spendable coins and,
    /// if needed, outputs of earlier payments in the same batch. The coins they spend are
    /// reserved (never offered again), whether or not the payments are mined.
    pub fn payments(&mut self, count: usize) -> Vec<Transaction> {
        let mut txs = Vec::with_capacity(count);
        let mut created: HashMap<OutPoint, Coin> = HashMap::new();
        let mut local: VecDeque<OutPoint> = VecDeque::new();
        while txs.len() < count {
            let Some(op) = self.spendable.pop_front().or_else(|| local.pop_front()) else {
                break;
            };
            let Some(coin) = created.remove(&op).or_else(|| self.utxos.coin(&op)) else {
                continue;
            };
            let Some(tx) = self.sign_payment(op, coin) else {
                continue;
            };
            let txid = tx.txid();
            for (vout, out) in tx.outputs.iter().enumerate() {
                let o = OutPoint::new(txid, vout as u32);
                created.insert(
                    o,
                    Coin {
                        output: *out,
                        height: self.height() + 1,
                        coinbase: false,
                    },
                );
                local.push_back(o);
            }
            txs.push(tx);
        }
        txs
    }

    /// Mines a block with `txs` (fees computed from the generator's UTXO set) on the tip and
    /// moves the tip to it.
    pub fn mine_with(&mut self, txs: Vec<Transaction>) -> Block {
        let fees = self.fees_of(&txs);
        let block = self.builder().fees(fees).transactions(txs).build();
        self.push(block.clone());
        block
    }

    /// Mines a block with `spends` payments on the tip and moves the tip to it.
    pub fn mine(&mut self, spends: usize) -> Block {
        let txs = self.payments(spends);
        self.mine_with(txs)
    }

    /// Mines a sibling-distinct block (time offset `salt`) with `spends` payments.
    pub fn mine_salted(&mut self, spends: usize, salt: u64) -> Block {
        let txs = self.payments(spends);
        let fees = self.fees_of(&txs);
        let block = self
            .builder()
            .fees(fees)
            .time_offset(salt)
            .transactions(txs)
            .build();
        self.push(block.clone());
        block
    }

    /// Mines a block whose header and merkle root are valid but one payment carries a broken
    /// signature (invalid when connected), and moves the tip to it as if it were valid, so
    /// descendants can be built on it.
    pub fn mine_invalid_signature(&mut self) -> Block {
        let mut txs = self.payments(1);
        if let Some(tx) = txs.first_mut() {
            tx.inputs[0].signature.0[0] ^= 1;
        }
        self.mine_with(txs)
    }

    fn fees_of(&self, txs: &[Transaction]) -> Amount {
        let mut created: HashMap<OutPoint, u64> = HashMap::new();
        let mut fees = 0u64;
        for tx in txs {
            let inputs: u64 = tx
                .inputs
                .iter()
                .filter_map(|i| {
                    created
                        .get(&i.prevout)
                        .copied()
                        .or_else(|| self.utxos.coin(&i.prevout).map(|c| c.output.value.0))
                })
                .sum();
            let outputs: u64 = tx.outputs.iter().map(|o| o.value.0).sum();
            fees += inputs.saturating_sub(outputs);
            let txid = tx.txid();
            for (vout, out) in tx.outputs.iter().enumerate() {
                created.insert(OutPoint::new(txid, vout as u32), out.value.0);
            }
        }
        Amount(fees)
    }

    /// Records a block built elsewhere on the tip (e.g. with [`TestChain::builder`]) and moves
    /// the tip to it.
    pub fn push(&mut self, block: Block) {
        let hash = block.hash();
        let parent = self
            .blocks
            .get(&block.header.prev_hash)
            .map_or(0, |b| b.height);
        let height = parent + 1;
        let on_tip = block.header.prev_hash == self.tip;
        self.blocks.insert(
            hash,
            TestBlock {
                block: block.clone(),
                height,
            },
        );
        if on_tip {
            apply_unchecked(&mut self.utxos, &block, height);
            // Spent entries are skipped lazily (`payments` checks the UTXO set).
            for tx in block.transactions.iter().skip(1) {
                let txid = tx.txid();
                for (vout, out) in tx.outputs.iter().enumerate() {
                    if self.key_index.contains_key(&out.pubkey) {
                        self.spendable.push_back(OutPoint::new(txid, vout as u32));
                    }
                }
            }
            self.tip = hash;
        } else {
            self.set_tip(hash);
        }
    }
}
