//! Property tests for the canonical encoding and the text formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_primitives::encoding::{decode, encode};
use cairn_primitives::{
    Address, Amount, Block, BlockHash, BlockHeader, MerkleRoot, OutPoint, Signature, Transaction,
    TxIn, TxOut, Txid, XOnlyPublicKey,
};
use proptest::prelude::*;

fn outpoint() -> impl Strategy<Value = OutPoint> {
    (any::<[u8; 32]>(), any::<u32>()).prop_map(|(t, v)| OutPoint::new(Txid(t), v))
}

fn transaction() -> impl Strategy<Value = Transaction> {
    let input =
        (outpoint(), prop::collection::vec(any::<u8>(), 64)).prop_map(|(prevout, s)| TxIn {
            prevout,
            signature: Signature(s.try_into().unwrap()),
        });
    let output = (any::<u64>(), any::<[u8; 32]>()).prop_map(|(v, k)| TxOut {
        value: Amount(v),
        pubkey: XOnlyPublicKey(k),
    });
    (
        any::<u32>(),
        prop::collection::vec(input, 0..4),
        prop::collection::vec(output, 0..4),
        any::<u32>(),
    )
        .prop_map(|(version, inputs, outputs, lock_time)| Transaction {
            version,
            inputs,
            outputs,
            lock_time,
        })
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(version, p, m, time, bits, nonce)| BlockHeader {
            version,
            prev_hash: BlockHash(p),
            merkle_root: MerkleRoot(m),
            time,
            bits,
            nonce,
        })
}

/// decode(encode(x)) == x, and the bytes are canonical.
fn round_trips<T: bincode::Encode + bincode::Decode<()> + PartialEq + std::fmt::Debug>(
    x: &T,
) -> Result<(), TestCaseError> {
    let bytes = encode(x);
    let back: T = decode(&bytes).unwrap();
    prop_assert_eq!(&back, x);
    prop_assert_eq!(encode(&back), bytes);
    Ok(())
}

/// Whatever bytes decode, re-encode to exactly those bytes.
fn canonical_if_accepted<T: bincode::Encode + bincode::Decode<()>>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(v) = decode::<T>(bytes) {
        prop_assert_eq!(encode(&v), bytes.to_vec());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transaction_round_trip(tx in transaction()) { round_trips(&tx)?; }

    #[test]
    fn header_round_trip(h in header()) { round_trips(&h)?; }

    #[test]
    fn outpoint_round_trip(o in outpoint()) { round_trips(&o)?; }

    #[test]
    fn block_round_trip(h in header(), txs in prop::collection::vec(transaction(), 0..4)) {
        round_trips(&Block { header: h, transactions: txs })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_bytes_are_canonical(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        canonical_if_accepted::<Transaction>(&bytes)?;
        canonical_if_accepted::<Block>(&bytes)?;
        canonical_if_accepted::<BlockHeader>(&bytes)?;
        canonical_if_accepted::<OutPoint>(&bytes)?;
    }

    #[test]
    fn mutated_encodings_never_panic(tx in transaction(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(&tx);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        canonical_if_accepted::<Transaction>(&bytes)?;
        bytes.truncate(i);
        canonical_if_accepted::<Transaction>(&bytes)?;
    }

    #[test]
    fn address_round_trip(key in any::<[u8; 32]>(), prefix in "[a-z]{1,8}") {
        let a = Address::new(XOnlyPublicKey(key));
        let s = a.encode(&prefix).unwrap();
        prop_assert_eq!(Address::parse(&s, &prefix).unwrap(), a);
    }

    #[test]
    fn txid_ignores_signatures(tx in transaction(), sig in any::<u8>()) {
        let mut other = tx.clone();
        for i in &mut other.inputs { i.signature.0[0] ^= sig | 1; }
        prop_assert_eq!(other.txid(), tx.txid());
    }
}
