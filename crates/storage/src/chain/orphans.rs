//! The orphan pool: blocks whose parent is unknown, bounded in count and bytes.

use std::collections::{HashMap, VecDeque};

use cairn_primitives::{Block, BlockHash};

use super::BlockSource;

/// Stale entries `order` may hold beyond twice the live orphans before it is compacted.
const ORDER_SLACK: usize = 64;

/// Blocks whose parent is unknown, bounded in count and bytes (oldest evicted first).
#[derive(Debug)]
pub(super) struct OrphanPool {
    /// Each orphan with its size, its arrival sequence and whether it was asked for.
    pub(super) blocks: HashMap<BlockHash, (Block, usize, u64, BlockSource)>,
    pub(super) by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    pub(super) order: VecDeque<(u64, BlockHash)>,
    pub(super) bytes: usize,
    pub(super) seq: u64,
    pub(super) max_blocks: usize,
    pub(super) max_bytes: usize,
}

impl OrphanPool {
    pub(super) fn new(max_blocks: usize, max_bytes: usize) -> Self {
        Self {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            seq: 0,
            max_blocks,
            max_bytes,
        }
    }

    pub(super) fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Adds `block`, evicting the oldest orphans to stay within the limits. False if it can
    /// never fit.
    pub(super) fn insert(&mut self, hash: BlockHash, block: Block, source: BlockSource) -> bool {
        let size = block.size();
        if self.max_blocks == 0 || size > self.max_bytes {
            return false;
        }
        while self.blocks.len() >= self.max_blocks || self.bytes + size > self.max_bytes {
            let Some((seq, oldest)) = self.order.pop_front() else {
                break;
            };
            if self
                .blocks
                .get(&oldest)
                .is_some_and(|(_, _, s, _)| *s == seq)
            {
                self.remove(&oldest);
            }
        }
        self.seq += 1;
        self.bytes += size;
        self.by_parent
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.order.push_back((self.seq, hash));
        self.blocks.insert(hash, (block, size, self.seq, source));
        true
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let (block, size, _, _) = self.blocks.remove(hash)?;
        self.bytes -= size;
        if let Some(v) = self.by_parent.get_mut(&block.header.prev_hash) {
            v.retain(|h| h != hash);
            if v.is_empty() {
                self.by_parent.remove(&block.header.prev_hash);
            }
        }
        Some(block)
    }

    /// The orphans whose parent is `parent`, each with how it arrived, leaving the pool.
    pub(super) fn take_children(&mut self, parent: &BlockHash) -> Vec<(Block, BlockSource)> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        let children = hashes
            .iter()
            .filter_map(|h| {
                let (block, size, _, source) = self.blocks.remove(h)?;
                self.bytes -= size;
                Some((block, source))
            })
            .collect();
        self.compact_order();
        children
    }

    /// Drops the eviction-order entries of orphans that left the pool (resolved or removed),
    /// once they outnumber the live ones, so `order` stays within twice the pool plus a little
    /// (amortised O(1) per orphan).
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.blocks.len() + ORDER_SLACK {
            let blocks = &self.blocks;
            self.order
                .retain(|(seq, h)| blocks.get(h).is_some_and(|(_, _, s, _)| s == seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_primitives::{BlockHeader, MerkleRoot};

    use super::*;

    fn orphan(parent: u8, nonce: u64) -> Block {
        Block {
            header: BlockHeader {
                version: BlockHeader::VERSION,
                prev_hash: BlockHash([parent; 32]),
                merkle_root: MerkleRoot::ZERO,
                time: 0,
                bits: 0,
                nonce,
            },
            transactions: vec![],
        }
    }

    /// Orphans resolved through their parent leave `order` too (it used to grow by one entry
    /// per orphan ever seen while the pool itself stayed small).
    #[test]
    fn order_stays_bounded_when_orphans_are_resolved() {
        let mut pool = OrphanPool::new(100, 1 << 20);
        for i in 0..10_000u64 {
            let b = orphan((i % 7) as u8, i);
            assert!(pool.insert(b.hash(), b, BlockSource::Unrequested));
            if i % 3 == 0 {
                pool.take_children(&BlockHash([(i % 7) as u8; 32]));
            }
            assert!(
                pool.order.len() <= 2 * pool.blocks.len() + ORDER_SLACK + 1,
                "order {} for {} orphans",
                pool.order.len(),
                pool.blocks.len()
            );
        }
        // Eviction still goes oldest first.
        assert!(pool.blocks.len() <= 100);
    }
}
