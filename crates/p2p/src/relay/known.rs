//! A bounded set of txids, oldest forgotten first.

use std::collections::{HashSet, VecDeque};

use cairn_primitives::Txid;

/// Txids known to one peer. Keys are the first 8 bytes of the txid (a double SHA-256, so
/// uniform; a peer would need ~2^64 work to make its transaction shadow a given one), a
/// quarter of the memory of full ids. A false "known" costs one missed announcement to one
/// peer, which the other peers' announcements cover.
#[derive(Debug)]
pub struct KnownIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

fn key(txid: &Txid) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&txid.0[..8]);
    u64::from_le_bytes(b)
}

impl KnownIds {
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.set.contains(&key(txid))
    }

    /// Remembers `txid`; returns whether it was new.
    pub fn insert(&mut self, txid: &Txid) -> bool {
        let k = key(txid);
        if !self.set.insert(k) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(k);
        true
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_is_forgotten_at_the_cap() {
        let ids: Vec<Txid> = (0..5u8).map(|i| Txid([i; 32])).collect();
        let mut k = KnownIds::new(3);
        for id in &ids {
            assert!(k.insert(id));
        }
        assert!(!k.insert(&ids[4]));
        assert_eq!(k.len(), 3);
        assert!(!k.contains(&ids[0]) && !k.contains(&ids[1]));
        assert!(k.contains(&ids[2]) && k.contains(&ids[4]));
    }
}
