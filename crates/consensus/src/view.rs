//! The UTXO view that rules read: the only window consensus has on chain state.

use std::collections::HashMap;

use cairn_primitives::{OutPoint, TxOut};

/// An unspent output with the facts consensus needs about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Coin {
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u64,
    /// Created by a coinbase (subject to maturity).
    pub coinbase: bool,
}

/// Read access to unspent outputs. Implemented by storage (cache over RocksDB), by the mempool
/// (chain plus pool) and by [`MemoryUtxoSet`] in tests.
pub trait UtxoView {
    /// The unspent output at `outpoint`, or `None` if it does not exist or is spent.
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin>;
}

impl<T: UtxoView + ?Sized> UtxoView for &T {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        (**self).coin(outpoint)
    }
}

/// A UTXO set in memory: for tests, benchmarks and as a prefetched view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryUtxoSet {
    pub coins: HashMap<OutPoint, Coin>,
}

impl MemoryUtxoSet {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, outpoint: OutPoint, coin: Coin) {
        self.coins.insert(outpoint, coin);
    }
    pub fn remove(&mut self, outpoint: &OutPoint) -> Option<Coin> {
        self.coins.remove(outpoint)
    }
    pub fn len(&self) -> usize {
        self.coins.len()
    }
    pub fn is_empty(&self) -> bool {
        self.coins.is_empty()
    }
    /// Applies a connected block's changes.
    pub fn apply(&mut self, delta: &crate::BlockConnect) {
        for (op, _) in &delta.spent {
            self.coins.remove(op);
        }
        for (op, coin) in &delta.created {
            self.coins.insert(*op, *coin);
        }
    }
    /// Reverts a connected block's changes.
    pub fn revert(&mut self, delta: &crate::BlockConnect) {
        for (op, _) in &delta.created {
            self.coins.remove(op);
        }
        for (op, coin) in &delta.spent {
            self.coins.insert(*op, *coin);
        }
    }
}

impl UtxoView for MemoryUtxoSet {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.coins.get(outpoint).copied()
    }
}
