//! The orphan pool: blocks whose parent is unknown, bounded in count and bytes.

use std::collections::{HashMap, VecDeque};

use cairn_primitives::{Block, BlockHash};

/// Blocks whose parent is unknown, bounded in count and bytes (oldest evicted first).
#[derive(Debug)]
pub(super) struct OrphanPool {
    pub(super) blocks: HashMap<BlockHash, (Block, usize, u64)>,
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
    pub(super) fn insert(&mut self, hash: BlockHash, block: Block) -> bool {
        let size = block.size();
        if self.max_blocks == 0 || size > self.max_bytes {
            return false;
        }
        while self.blocks.len() >= self.max_blocks || self.bytes + size > self.max_bytes {
            let Some((seq, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.blocks.get(&oldest).is_some_and(|(_, _, s)| *s == seq) {
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
        self.blocks.insert(hash, (block, size, self.seq));
        true
    }

    pub(super) fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let (block, size, _) = self.blocks.remove(hash)?;
        self.bytes -= size;
        if let Some(v) = self.by_parent.get_mut(&block.header.prev_hash) {
            v.retain(|h| h != hash);
            if v.is_empty() {
                self.by_parent.remove(&block.header.prev_hash);
            }
        }
        Some(block)
    }

    pub(super) fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes
            .iter()
            .filter_map(|h| {
                let (block, size, _) = self.blocks.remove(h)?;
                self.bytes -= size;
                Some(block)
            })
            .collect()
    }
}
