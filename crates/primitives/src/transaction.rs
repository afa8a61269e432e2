//! Transactions: inputs name a previous output and carry one BIP340 signature; outputs pay an
//! amount to a 32-byte x-only public key.

use crate::Amount;
use crate::encoding::{encode_into, encoded_len};
use crate::hash::{Txid, Wtxid, double_sha256};
use crate::keys::{Signature, XOnlyPublicKey};

/// A reference to one output of an earlier transaction.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, bincode::Encode, bincode::Decode,
)]
pub struct OutPoint {
    pub txid: Txid,
    pub vout: u32,
}

impl OutPoint {
    pub const fn new(txid: Txid, vout: u32) -> Self {
        Self { txid, vout }
    }
}

impl std::fmt::Display for OutPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.txid, self.vout)
    }
}

/// A spend of `prevout`, authorised by a Schnorr signature of the spent output's key.
#[derive(Clone, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct TxIn {
    pub prevout: OutPoint,
    pub signature: Signature,
}

/// `value` base units payable to whoever can sign for `pubkey`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct TxOut {
    pub value: Amount,
    pub pubkey: XOnlyPublicKey,
}

/// A transaction. A coinbase has no inputs and its `lock_time` equals its block's height.
///
/// `lock_time` is the earliest block height at which the transaction may be included.
#[derive(Clone, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct Transaction {
    pub version: u32,
    pub inputs: Vec<TxIn>,
    pub outputs: Vec<TxOut>,
    pub lock_time: u32,
}

/// The signature-free view of a transaction that its txid commits to.
#[derive(bincode::Encode)]
struct TxidPreimage<'a> {
    version: u32,
    prevouts: Vec<&'a OutPoint>,
    outputs: &'a [TxOut],
    lock_time: u32,
}

impl Transaction {
    /// Current transaction version.
    pub const VERSION: u32 = 1;

    pub fn is_coinbase(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Double SHA-256 of the transaction with its signatures left out, so the id is fixed before
    /// signing and no third party can change it (no malleability).
    pub fn txid(&self) -> Txid {
        let pre = TxidPreimage {
            version: self.version,
            prevouts: self.inputs.iter().map(|i| &i.prevout).collect(),
            outputs: &self.outputs,
            lock_time: self.lock_time,
        };
        let mut buf = Vec::with_capacity(16 + 36 * self.inputs.len() + 40 * self.outputs.len());
        encode_into(&pre, &mut buf);
        Txid(double_sha256(&buf))
    }

    /// Double SHA-256 of the full encoding, signatures included.
    pub fn wtxid(&self) -> Wtxid {
        Wtxid(double_sha256(&crate::encoding::encode(self)))
    }

    /// Size in bytes of the canonical encoding.
    pub fn size(&self) -> usize {
        encoded_len(self)
    }

    /// Sum of output values, `None` on overflow.
    pub fn total_output(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|o| o.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{decode, encode};

    fn sample() -> Transaction {
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint::new(Txid([1; 32]), 3),
                signature: Signature([9; 64]),
            }],
            outputs: vec![TxOut {
                value: Amount(5),
                pubkey: XOnlyPublicKey([2; 32]),
            }],
            lock_time: 0,
        }
    }

    #[test]
    fn txid_ignores_signatures_wtxid_does_not() {
        let a = sample();
        let mut b = sample();
        b.inputs[0].signature = Signature([8; 64]);
        assert_eq!(a.txid(), b.txid());
        assert_ne!(a.wtxid(), b.wtxid());
    }

    #[test]
    fn size_matches_encoding() {
        let t = sample();
        assert_eq!(t.size(), encode(&t).len());
        assert_eq!(decode::<Transaction>(&encode(&t)).unwrap(), t);
    }
}
