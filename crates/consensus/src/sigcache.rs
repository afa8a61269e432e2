//! A cache of signatures already found valid (as Bitcoin Core's signature cache), so that a
//! block connect skips the ones mempool acceptance checked earlier.
//!
//! An entry is the SHA-256 of (public key, message, signature): it can only be added by a
//! successful verification of exactly that triple, so a hit proves validity as well as the
//! check itself would. Entries are removed when used (a signature is connected once) and the
//! whole set is dropped when it reaches its bound.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_primitives::hash::sha256;
use cairn_primitives::keys::verify;
use cairn_primitives::{Signature, XOnlyPublicKey};

/// Most entries kept (about 3 MiB of keys plus the set's overhead).
pub const MAX_SIG_CACHE_ENTRIES: usize = 100_000;

/// Valid (public key, message, signature) triples, bounded.
#[derive(Debug, Default)]
pub struct SigCache {
    entries: Mutex<HashSet<[u8; 32]>>,
    inserted: AtomicU64,
    hits: AtomicU64,
    reused: AtomicU64,
}

fn key(pubkey: &XOnlyPublicKey, msg: &[u8; 32], sig: &Signature) -> [u8; 32] {
    let mut buf = [0u8; 128];
    buf[..32].copy_from_slice(&pubkey.0);
    buf[32..64].copy_from_slice(msg);
    buf[64..].copy_from_slice(&sig.0);
    sha256(&buf)
}

impl SigCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set holds only proven-valid keys; a panic elsewhere cannot make it lie.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies and, if valid, remembers the triple. A triple already remembered is valid
    /// without a second check: a transaction that reaches the mempool twice (fetched from one
    /// peer, then its gossip copy from another) costs one signature check, not two.
    pub fn verify_and_insert(
        &self,
        pubkey: &XOnlyPublicKey,
        msg: &[u8; 32],
        sig: &Signature,
    ) -> bool {
        let k = key(pubkey, msg, sig);
        if self.lock().contains(&k) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !verify(pubkey, msg, sig) {
            return false;
        }
        let mut set = self.lock();
        if set.len() >= MAX_SIG_CACHE_ENTRIES {
            set.clear();
        }
        set.insert(k);
        self.inserted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// (signatures cached, signatures a connect found cached) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inserted.load(Ordering::Relaxed),
            self.hits.load(Ordering::Relaxed),
        )
    }

    /// Checks `verify_and_insert` answered from the cache since creation.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Whether the triple was verified before; the entry is consumed.
    pub fn take(&self, pubkey: &XOnlyPublicKey, msg: &[u8; 32], sig: &Signature) -> bool {
        let k = key(pubkey, msg, sig);
        let hit = self.lock().remove(&k);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
