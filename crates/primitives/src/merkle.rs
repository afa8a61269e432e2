//! The transaction merkle tree.
//!
//! Bitcoin duplicates the last node of an odd level, so `[a, b, c]` and `[a, b, c, c]` share a
//! root (CVE-2012-2459), and leaves and inner nodes are hashed alike, so a 64-byte transaction
//! can pose as an inner node. Cairn removes both ambiguities:
//! - leaves and inner nodes use different tagged hashes;
//! - an odd node is carried up unchanged, never paired with itself;
//! - the root commits to the number of leaves.

use crate::hash::{MerkleRoot, Tag, Wtxid};

const LEAF_TAG: &str = "cairn/merkle/leaf";
const NODE_TAG: &str = "cairn/merkle/node";
const ROOT_TAG: &str = "cairn/merkle/root";
static LEAF: Tag = Tag::new(LEAF_TAG);
static NODE: Tag = Tag::new(NODE_TAG);
static ROOT: Tag = Tag::new(ROOT_TAG);

/// Merkle root over wtxids (so signatures are committed to).
pub fn merkle_root<I: IntoIterator<Item = Wtxid>>(leaves: I) -> MerkleRoot {
    let mut level: Vec<[u8; 32]> = leaves.into_iter().map(|w| LEAF.hash(&[&w.0])).collect();
    let count = level.len() as u64;
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => next.push(NODE.hash(&[l, r])),
                [odd] => next.push(*odd),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    let top = level.first().copied().unwrap_or([0u8; 32]);
    MerkleRoot(ROOT.hash(&[&count.to_le_bytes(), &top]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::tagged_hash;

    fn w(b: u8) -> Wtxid {
        Wtxid([b; 32])
    }

    #[test]
    fn duplicated_last_leaf_changes_root() {
        assert_ne!(
            merkle_root([w(1), w(2), w(3)]),
            merkle_root([w(1), w(2), w(3), w(3)])
        );
        assert_ne!(merkle_root([w(1)]), merkle_root([w(1), w(1)]));
    }

    #[test]
    fn order_and_content_matter() {
        assert_ne!(merkle_root([w(1), w(2)]), merkle_root([w(2), w(1)]));
        assert_ne!(merkle_root([w(1), w(2)]), merkle_root([w(1), w(3)]));
    }

    #[test]
    fn inner_node_cannot_pose_as_leaf() {
        let l1 = tagged_hash(LEAF_TAG, &[&w(1).0]);
        let l2 = tagged_hash(LEAF_TAG, &[&w(2).0]);
        let inner = tagged_hash(NODE_TAG, &[&l1, &l2]);
        assert_ne!(merkle_root([w(1), w(2)]), merkle_root([Wtxid(inner)]));
    }
}
