//! An in-memory [`ChainAccess`] for tests (of this crate and of others).
//!
//! Its only consensus is "the parent is known" and "the merkle root matches the
//! transactions"; every block adds one unit of work; the best chain is the longest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use cairn_primitives::{Block, BlockHash, BlockHeader, MerkleRoot, Transaction, Txid};
use libp2p::PeerId;

use crate::codec::{Status, work_from_u128};
use crate::config::MAX_LOCATOR_LEN;
use crate::sync::{ChainAccess, Refusal};

/// An in-memory chain (headers, bodies, a best header chain and a best block chain) and a
/// mempool that takes every transaction (no validation).
#[derive(Debug)]
pub struct MemoryChain {
    genesis: BlockHash,
    inner: Mutex<Inner>,
    pool: Mutex<MemoryPool>,
    /// Test knob: short-id lookups answer a wrong transaction for every position (as if every
    /// short id collided with another pool transaction).
    collide: std::sync::atomic::AtomicBool,
    /// Test knob and gauges of the sync path: batches handed to this chain
    /// ([`ChainAccess::submit_blocks`]) and blocks it served.
    batches: BatchProbe,
}

/// How [`MemoryChain::submit_blocks`] is slowed, what it saw, and how many blocks this chain
/// served.
#[derive(Debug, Default)]
struct BatchProbe {
    /// Milliseconds each batch takes before its blocks are added (a chain busy connecting).
    delay_ms: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Blocks this chain handed out through `block_bytes` (serving), counted per copy.
    served: AtomicU64,
    /// Milliseconds each `block_bytes` call takes (a slow peer; it runs on the blocking pool).
    serve_delay_ms: AtomicU64,
}

/// Transactions in arrival order, and those not yet announced.
#[derive(Debug, Default)]
struct MemoryPool {
    txs: HashMap<Txid, Transaction>,
    order: Vec<Txid>,
    fresh: std::collections::VecDeque<Txid>,
}

#[derive(Debug)]
struct Inner {
    /// Header and height of every known header.
    headers: HashMap<BlockHash, (BlockHeader, u64)>,
    bodies: HashMap<BlockHash, Block>,
    /// The best (longest) header chain, indexed by height.
    header_chain: Vec<BlockHash>,
    /// Height of the best block chain: a prefix of `header_chain` with every body stored.
    tip: u64,
}

/// The block the tests use as genesis for a given seed (different seeds, different chains).
pub fn genesis_block(seed: u64) -> Block {
    let coinbase = coinbase(0);
    let mut block = Block {
        header: BlockHeader {
            version: BlockHeader::VERSION,
            prev_hash: BlockHash::ZERO,
            merkle_root: MerkleRoot::ZERO,
            time: seed,
            bits: 0x207f_ffff,
            nonce: 0,
        },
        transactions: vec![coinbase],
    };
    block.header.merkle_root = block.compute_merkle_root();
    block
}

/// A coinbase-shaped transaction committing to `height` (unique per height).
pub fn coinbase(height: u64) -> Transaction {
    Transaction {
        version: Transaction::VERSION,
        inputs: Vec::new(),
        outputs: Vec::new(),
        lock_time: height as u32,
    }
}

/// A child of `parent` (at `height`) carrying `transactions` after a coinbase; `nonce` makes
/// siblings differ.
pub fn child_block(parent: &BlockHeader, height: u64, nonce: u64, txs: Vec<Transaction>) -> Block {
    let mut transactions = vec![coinbase(height)];
    transactions.extend(txs);
    let mut block = Block {
        header: BlockHeader {
            version: BlockHeader::VERSION,
            prev_hash: parent.hash(),
            merkle_root: MerkleRoot::ZERO,
            time: parent.time + 1,
            bits: parent.bits,
            nonce,
        },
        transactions,
    };
    block.header.merkle_root = block.compute_merkle_root();
    block
}

impl MemoryChain {
    /// A chain holding only `genesis_block(seed)`.
    pub fn new(seed: u64) -> Self {
        let genesis = genesis_block(seed);
        let hash = genesis.hash();
        let inner = Inner {
            headers: HashMap::from([(hash, (genesis.header, 0))]),
            bodies: HashMap::from([(hash, genesis)]),
            header_chain: vec![hash],
            tip: 0,
        };
        Self {
            genesis: hash,
            inner: Mutex::new(inner),
            pool: Mutex::new(MemoryPool::default()),
            collide: std::sync::atomic::AtomicBool::new(false),
            batches: BatchProbe::default(),
        }
    }

    /// Makes every [`ChainAccess::submit_blocks`] call take `delay` before it adds its blocks.
    pub fn slow_batches(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.batches.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Makes every answer this chain serves to a block request take `delay`.
    pub fn slow_serving(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.batches.serve_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The most `submit_blocks` calls that were running at once.
    pub fn max_concurrent_batches(&self) -> usize {
        self.batches.max_active.load(Ordering::Relaxed)
    }

    /// Blocks served to peers so far, each copy counted.
    pub fn blocks_served(&self) -> u64 {
        self.batches.served.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pool(&self) -> MutexGuard<'_, MemoryPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a transaction in the pool (as a node does once it accepted it); `false` if it was
    /// there already.
    pub fn add_tx(&self, tx: Transaction) -> bool {
        let txid = tx.txid();
        let mut pool = self.lock_pool();
        if pool.txs.contains_key(&txid) {
            return false;
        }
        pool.txs.insert(txid, tx);
        pool.order.push(txid);
        pool.fresh.push_back(txid);
        true
    }

    /// Makes every short-id lookup return a wrong transaction (a simulated collision).
    pub fn simulate_short_id_collisions(&self, on: bool) {
        self.collide.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the pool holds `txid`.
    pub fn pool_contains(&self, txid: &Txid) -> bool {
        self.lock_pool().txs.contains_key(txid)
    }

    /// Transactions in the pool.
    pub fn pool_len(&self) -> usize {
        self.lock_pool().txs.len()
    }

    pub fn genesis(&self) -> BlockHash {
        self.genesis
    }

    /// Height of the best block chain.
    pub fn height(&self) -> u64 {
        self.lock().tip
    }

    pub fn tip(&self) -> BlockHash {
        let inner = self.lock();
        inner.header_chain[inner.tip as usize]
    }

    /// Hash of the best header chain's block at `height`.
    pub fn hash_at(&self, height: u64) -> Option<BlockHash> {
        self.lock().header_chain.get(height as usize).copied()
    }

    pub fn contains_block(&self, hash: &BlockHash) -> bool {
        self.lock().bodies.contains_key(hash)
    }

    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.lock().bodies.get(hash).cloned()
    }

    /// Builds and stores `n` blocks on the best block chain (a coinbase each); returns them.
    pub fn mine(&self, n: usize) -> Vec<Block> {
        (0..n).map(|_| self.mine_with(Vec::new())).collect()
    }

    /// Builds and stores one block on the best block chain with these transactions.
    pub fn mine_with(&self, txs: Vec<Transaction>) -> Block {
        let mut inner = self.lock();
        let tip_hash = inner.header_chain[inner.tip as usize];
        let (parent, height) = inner.headers[&tip_hash];
        let block = child_block(&parent, height + 1, 0, txs);
        // Safe: the parent is known and the merkle root is right by construction.
        let _ = inner.add_block(block.clone());
        block
    }

    /// Stores a block and its header without any check (to build a liar's chain in tests).
    pub fn force_block(&self, block: Block) {
        let mut inner = self.lock();
        let hash = block.hash();
        let height = inner
            .headers
            .get(&block.header.prev_hash)
            .map_or(0, |h| h.1 + 1);
        inner.headers.insert(hash, (block.header, height));
        if height as usize == inner.header_chain.len() {
            inner.header_chain.push(hash);
        }
        inner.bodies.insert(hash, block);
        inner.advance_tip();
    }

    /// Accepts a block whose parent is known (the gossip path). `Err` if the parent is unknown
    /// or the merkle root is wrong.
    pub fn add_block(&self, block: Block) -> Result<(), String> {
        self.lock().add_block(block)
    }
}

impl Inner {
    fn add_header(&mut self, header: BlockHeader) -> Result<(), String> {
        let hash = header.hash();
        if self.headers.contains_key(&hash) {
            return Ok(());
        }
        let Some(&(_, parent_height)) = self.headers.get(&header.prev_hash) else {
            return Err(format!(
                "header {hash}: unknown parent {}",
                header.prev_hash
            ));
        };
        let height = parent_height + 1;
        self.headers.insert(hash, (header, height));
        if height as usize >= self.header_chain.len() {
            // New best header chain: rewrite it back to the fork point.
            self.header_chain
                .resize(height as usize + 1, BlockHash::ZERO);
            let mut h = hash;
            let mut i = height as usize;
            while self.header_chain[i] != h {
                self.header_chain[i] = h;
                if i == 0 {
                    break;
                }
                h = self.headers[&h].0.prev_hash;
                i -= 1;
                if self.tip as usize > i {
                    self.tip = i as u64;
                }
            }
            self.advance_tip();
        }
        Ok(())
    }

    fn add_block(&mut self, block: Block) -> Result<(), String> {
        let hash = block.hash();
        if block.compute_merkle_root() != block.header.merkle_root {
            return Err(format!("block {hash}: merkle root mismatch"));
        }
        self.add_header(block.header)?;
        self.bodies.insert(hash, block);
        self.advance_tip();
        Ok(())
    }

    fn advance_tip(&mut self) {
        while let Some(next) = self.header_chain.get(self.tip as usize + 1) {
            if !self.bodies.contains_key(next) {
                break;
            }
            self.tip += 1;
        }
    }
}

impl ChainAccess for MemoryChain {
    fn status(&self) -> Status {
        let inner = self.lock();
        Status {
            genesis: self.genesis,
            best_height: inner.tip,
            best_hash: inner.header_chain[inner.tip as usize],
            total_work: work_from_u128(u128::from(inner.tip) + 1),
        }
    }

    fn locator(&self) -> Vec<BlockHash> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut i = inner.header_chain.len() - 1;
        let mut step = 1;
        while i > 0 && out.len() < MAX_LOCATOR_LEN - 1 {
            out.push(inner.header_chain[i]);
            if out.len() >= 10 {
                step *= 2;
            }
            i = i.saturating_sub(step);
        }
        out.push(self.genesis);
        out
    }

    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader> {
        let inner = self.lock();
        let tip = inner.tip as usize;
        let start = locator
            .iter()
            .find_map(|h| {
                let &(_, height) = inner.headers.get(h)?;
                let height = height as usize;
                (height <= tip && inner.header_chain[height] == *h).then_some(height + 1)
            })
            .unwrap_or(1);
        inner.header_chain[start.min(tip + 1)..=tip]
            .iter()
            .take(max)
            .map(|h| inner.headers[h].0)
            .collect()
    }

    fn block_bytes(&self, hashes: &[BlockHash], budget: usize) -> Vec<Vec<u8>> {
        let delay = self.batches.serve_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        // Encoded outside the lock, so serving peers at once is not serialised here (the
        // node's storage reads snapshots without any lock).
        let blocks: Vec<Block> = {
            let inner = self.lock();
            hashes
                .iter()
                .filter_map(|h| inner.bodies.get(h).cloned())
                .collect()
        };
        let mut out = Vec::new();
        let mut total = 0;
        for bytes in blocks.iter().map(cairn_primitives::encoding::encode) {
            total += bytes.len();
            if total > budget {
                break;
            }
            out.push(bytes);
        }
        self.batches
            .served
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    fn missing_blocks(&self, max: usize) -> Vec<BlockHash> {
        let inner = self.lock();
        inner.header_chain[inner.tip as usize + 1..]
            .iter()
            .filter(|h| !inner.bodies.contains_key(*h))
            .take(max)
            .copied()
            .collect()
    }

    fn header_position(&self, hash: &BlockHash) -> Option<(u64, bool)> {
        let inner = self.lock();
        let &(_, height) = inner.headers.get(hash)?;
        let on_best = inner.header_chain.get(height as usize) == Some(hash);
        Some((height, on_best))
    }

    async fn submit_headers(
        &self,
        _peer: PeerId,
        headers: Vec<BlockHeader>,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        for header in headers {
            inner.add_header(header).map_err(Refusal::Invalid)?;
        }
        Ok(())
    }

    async fn submit_block(&self, _peer: PeerId, block: Block) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if !inner.headers.contains_key(&block.hash()) {
            return Err(Refusal::Invalid(format!(
                "block {}: header unknown",
                block.hash()
            )));
        }
        inner.add_block(block).map_err(Refusal::Invalid)
    }

    async fn submit_blocks(&self, blocks: Vec<(PeerId, Block)>) -> Vec<Result<(), Refusal>> {
        let probe = &self.batches;
        let active = probe.active.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_active.fetch_max(active, Ordering::SeqCst);
        let delay = probe.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let mut results = Vec::with_capacity(blocks.len());
        for (peer, block) in blocks {
            results.push(self.submit_block(peer, block).await);
        }
        probe.active.fetch_sub(1, Ordering::SeqCst);
        results
    }

    fn has_tx(&self, txid: &Txid) -> bool {
        self.pool_contains(txid)
    }

    fn fresh_txids(&self, max: usize) -> Vec<Txid> {
        let mut pool = self.lock_pool();
        let n = pool.fresh.len().min(max);
        pool.fresh.drain(..n).collect()
    }

    fn pool_txids(&self, max: usize) -> Vec<Txid> {
        self.lock_pool().order.iter().take(max).copied().collect()
    }

    fn tx_bytes(&self, txids: &[Txid], budget: usize) -> Vec<Vec<u8>> {
        let pool = self.lock_pool();
        let mut out = Vec::new();
        let mut total = 0;
        for tx in txids.iter().filter_map(|t| pool.txs.get(t)) {
            let bytes = cairn_primitives::encoding::encode(tx);
            total += bytes.len();
            if total > budget {
                break;
            }
            out.push(bytes);
        }
        out
    }

    async fn submit_tx(&self, _peer: PeerId, tx: Transaction) -> Result<(), Refusal> {
        self.add_tx(tx);
        Ok(())
    }

    fn txs_by_short_id(
        &self,
        keys: &crate::relay::compact::ShortIdKeys,
        wanted: &HashMap<u64, usize>,
    ) -> Vec<(usize, Transaction)> {
        if self.collide.load(std::sync::atomic::Ordering::Relaxed) {
            return wanted
                .values()
                .map(|&pos| (pos, coinbase(1_000_000 + pos as u64)))
                .collect();
        }
        let pool = self.lock_pool();
        crate::relay::compact::match_short_ids(keys, wanted, pool.txs.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_then_bodies_advance_the_tip() {
        let a = MemoryChain::new(1);
        let blocks = a.mine(30);
        let b = MemoryChain::new(1);
        let headers = a.headers_after(&b.locator(), 2000);
        assert_eq!(headers.len(), 30);
        futures::executor::block_on(async {
            b.submit_headers(PeerId::random(), headers).await.ok();
            assert_eq!(b.missing_blocks(100).len(), 30);
            for blk in blocks {
                assert!(b.submit_block(PeerId::random(), blk).await.is_ok());
            }
        });
        assert_eq!(b.height(), 30);
        assert_eq!(b.tip(), a.tip());
        assert!(a.headers_after(&b.locator(), 10).is_empty());
    }
}
