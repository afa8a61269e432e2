//! Property tests: connect-then-undo restores the UTXO view exactly; the merkle root commits to
//! every transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_consensus::connect_block;
use cairn_consensus::subsidy::block_subsidy;
use cairn_primitives::{Amount, OutPoint, SecretKey};
use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random chains of spends over a few blocks: applying each block's delta then reverting
    /// them in reverse order gives back the original set, byte for byte.
    #[test]
    fn connect_then_undo_restores_the_view(splits in prop::collection::vec(1usize..5, 1..4), fee in 0u64..1000) {
        let p = params();
        let (mut utxos, op, value) = genesis_utxos(&p);
        let original = utxos.clone();
        let key = faucet();
        let mut prev = p.genesis_hash();
        let mut spendable = vec![(op, value.0)];
        let mut deltas = Vec::new();
        for (i, n) in splits.iter().enumerate() {
            let height = i as u64 + 1;
            let mut txs = Vec::new();
            let mut next = Vec::new();
            let mut fees = 0;
            for (op, v) in spendable.drain(..) {
                let each = (v - fee) / *n as u64;
                let tx = spend(&p, &[op], &vec![each; *n], &key, &key);
                fees += v - each * *n as u64;
                for k in 0..*n { next.push((OutPoint::new(tx.txid(), k as u32), each)); }
                txs.push(tx);
            }
            spendable = next;
            let mut all = vec![coinbase(height, block_subsidy(&p, height).0 + fees, &key)];
            all.extend(txs);
            let b = block(&p, prev, p.genesis_time + height, all);
            let d = connect_block(&b, height, &utxos, &p).unwrap();
            prop_assert_eq!(d.fees, Amount(fees));
            utxos.apply(&d);
            deltas.push(d);
            prev = b.hash();
        }
        for d in deltas.iter().rev() {
            utxos.revert(d);
        }
        prop_assert_eq!(utxos, original);
    }

    /// Changing any one transaction (even only a signature) changes the block's merkle root.
    #[test]
    fn merkle_root_commits_to_every_transaction(n in 1usize..8, pick in 0usize..8, byte in 0usize..64) {
        let p = params();
        let key = SecretKey::from_bytes([3; 32]).unwrap();
        let txs: Vec<_> = (0..n)
            .map(|i| spend(&p, &[OutPoint::new(cairn_primitives::Txid([i as u8; 32]), 0)], &[1], &key, &key))
            .collect();
        let b = block(&p, p.genesis_hash(), p.genesis_time + 1, txs);
        let mut changed = b.clone();
        let i = pick % n;
        changed.transactions[i].inputs[0].signature.0[byte] ^= 1;
        prop_assert_ne!(changed.compute_merkle_root(), b.compute_merkle_root());
    }
}
