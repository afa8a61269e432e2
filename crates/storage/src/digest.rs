//! The UTXO-set digest (as Bitcoin Core's `gettxoutsetinfo` muhash, simpler): the sum modulo
//! 2^256 of `SHA-256(outpoint || coin)` over all unspent outputs, with their count and total
//! amount. Addition is commutative, so the digest does not depend on insertion order, and it is
//! maintained incrementally: adding a coin adds its hash, spending it subtracts it. Two nodes at
//! one tip compare UTXO sets by comparing 32 bytes.

use cairn_consensus::Coin;
use cairn_primitives::encoding::encode_into;
use cairn_primitives::{Amount, BlockHash, OutPoint};
use sha2::{Digest, Sha256};

use crate::schema::UtxoStatsRecord;

/// SHA-256 of one UTXO entry, as a 256-bit number (big-endian bytes).
pub fn coin_hash(outpoint: &OutPoint, coin: &Coin) -> [u8; 32] {
    let mut buf = Vec::with_capacity(96);
    encode_into(outpoint, &mut buf);
    encode_into(coin, &mut buf);
    Sha256::digest(&buf).into()
}

fn add_256(a: &mut [u8; 32], b: &[u8; 32]) {
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        a[i] = s as u8;
        carry = s >> 8;
    }
}

fn sub_256(a: &mut [u8; 32], b: &[u8; 32]) {
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        a[i] = d as u8;
    }
}

/// UTXO-set statistics maintained incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UtxoDigest {
    pub txouts: u64,
    pub total_amount: u64,
    pub digest: [u8; 32],
}

impl UtxoDigest {
    /// Accounts for a coin entering the set. `None` if a counter would overflow (corruption).
    #[must_use]
    pub fn add(&mut self, outpoint: &OutPoint, coin: &Coin) -> Option<()> {
        self.txouts = self.txouts.checked_add(1)?;
        self.total_amount = self.total_amount.checked_add(coin.output.value.0)?;
        add_256(&mut self.digest, &coin_hash(outpoint, coin));
        Some(())
    }

    /// Accounts for a coin leaving the set. `None` if a counter would underflow (corruption).
    #[must_use]
    pub fn remove(&mut self, outpoint: &OutPoint, coin: &Coin) -> Option<()> {
        self.txouts = self.txouts.checked_sub(1)?;
        self.total_amount = self.total_amount.checked_sub(coin.output.value.0)?;
        sub_256(&mut self.digest, &coin_hash(outpoint, coin));
        Some(())
    }

    /// The digest of a whole set, computed from scratch (for tests and audits).
    pub fn of_set<'a>(
        coins: impl IntoIterator<Item = (&'a OutPoint, &'a Coin)>,
    ) -> Option<UtxoDigest> {
        let mut d = UtxoDigest::default();
        for (op, coin) in coins {
            d.add(op, coin)?;
        }
        Some(d)
    }

    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn to_record(self) -> UtxoStatsRecord {
        UtxoStatsRecord {
            txouts: self.txouts,
            total_amount: self.total_amount,
            digest: self.digest,
        }
    }

    pub(crate) fn from_record(r: UtxoStatsRecord) -> Self {
        Self {
            txouts: r.txouts,
            total_amount: r.total_amount,
            digest: r.digest,
        }
    }
}

/// What `gettxoutsetinfo` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtxoStats {
    pub height: u64,
    pub best_hash: BlockHash,
    pub txouts: u64,
    pub total_amount: Amount,
    /// Order-independent digest of the set (see the module docs).
    pub digest: [u8; 32],
}

impl UtxoStats {
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_primitives::{TxOut, Txid, XOnlyPublicKey};

    fn coin(v: u64) -> Coin {
        Coin {
            output: TxOut {
                value: Amount(v),
                pubkey: XOnlyPublicKey([v as u8; 32]),
            },
            height: v,
            coinbase: false,
        }
    }

    #[test]
    fn order_independent_and_reversible() {
        let items: Vec<(OutPoint, Coin)> = (0..50u8)
            .map(|i| {
                (
                    OutPoint::new(Txid([i; 32]), u32::from(i)),
                    coin(u64::from(i) * 7 + 1),
                )
            })
            .collect();
        let a = UtxoDigest::of_set(items.iter().map(|(o, c)| (o, c))).unwrap();
        let b = UtxoDigest::of_set(items.iter().rev().map(|(o, c)| (o, c))).unwrap();
        assert_eq!(a, b);
        let mut c = a;
        for (o, k) in &items[10..] {
            c.remove(o, k).unwrap();
        }
        assert_eq!(
            c,
            UtxoDigest::of_set(items[..10].iter().map(|(o, c)| (o, c))).unwrap()
        );
        for (o, k) in &items[..10] {
            c.remove(o, k).unwrap();
        }
        assert_eq!(c, UtxoDigest::default());
    }

    #[test]
    fn wraps_modulo_2_256() {
        let mut a = [0xffu8; 32];
        let mut one = [0u8; 32];
        one[31] = 1;
        add_256(&mut a, &one);
        assert_eq!(a, [0u8; 32]);
        sub_256(&mut a, &one);
        assert_eq!(a, [0xffu8; 32]);
    }
}
