//! Block headers and blocks.

use crate::Transaction;
use crate::encoding::{encode_into, encoded_len};
use crate::hash::{BlockHash, MerkleRoot, double_sha256};

/// Encoded size of a header: 4 + 32 + 32 + 8 + 4 + 8.
pub const HEADER_SIZE: usize = 88;

/// A block header. Its hash is the proof-of-work preimage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct BlockHeader {
    pub version: u32,
    pub prev_hash: BlockHash,
    pub merkle_root: MerkleRoot,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Compact target (Bitcoin's `nBits` format).
    pub bits: u32,
    pub nonce: u64,
}

impl BlockHeader {
    pub const VERSION: u32 = 1;

    /// Double SHA-256 of the encoded header.
    pub fn hash(&self) -> BlockHash {
        let mut buf = Vec::with_capacity(HEADER_SIZE);
        encode_into(self, &mut buf);
        BlockHash(double_sha256(&buf))
    }
}

/// A block: a header and its transactions, coinbase first.
#[derive(Clone, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// Size in bytes of the canonical encoding.
    pub fn size(&self) -> usize {
        encoded_len(self)
    }

    /// The merkle root these transactions commit to.
    pub fn compute_merkle_root(&self) -> MerkleRoot {
        crate::merkle::merkle_root(self.transactions.iter().map(|t| t.wtxid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode;

    #[test]
    fn header_size_is_fixed() {
        let h = BlockHeader {
            version: 1,
            prev_hash: BlockHash::ZERO,
            merkle_root: MerkleRoot::ZERO,
            time: 5,
            bits: 0x207fffff,
            nonce: 9,
        };
        assert_eq!(encode(&h).len(), HEADER_SIZE);
    }
}
