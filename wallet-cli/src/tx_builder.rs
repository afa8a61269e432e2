//! Builds and signs a payment from a [`Selection`].

use cairn_primitives::keys::sign_transaction;
use cairn_primitives::{
    Amount, BlockHash, SecretKey, Signature, Transaction, TxIn, TxOut, XOnlyPublicKey,
};

use crate::coin_selection::Selection;
use crate::error::{Result, WalletError};

/// What to pay.
#[derive(Clone, Debug)]
pub struct Payment {
    pub to: XOnlyPublicKey,
    pub amount: Amount,
    /// Where change goes, required when the selection has change.
    pub change_to: Option<XOnlyPublicKey>,
    /// Put the change output first (callers pick this at random, so the change position does
    /// not reveal which output is the payment).
    pub change_first: bool,
    /// Earliest height the transaction may be included at.
    pub lock_time: u32,
}

/// Builds the transaction and signs input `i` with `keys[i]` over `sighash(genesis, txid)`.
/// Checks that inputs minus outputs equal the selection's fee.
pub fn build_signed(
    selection: &Selection,
    payment: &Payment,
    keys: &[SecretKey],
    genesis: &BlockHash,
) -> Result<Transaction> {
    if keys.len() != selection.inputs.len() {
        return Err(WalletError::Other(format!(
            "{} keys for {} inputs",
            keys.len(),
            selection.inputs.len()
        )));
    }
    let mut outputs = vec![TxOut {
        value: payment.amount,
        pubkey: payment.to,
    }];
    if let Some(change) = selection.change {
        let pubkey = payment.change_to.ok_or_else(|| {
            WalletError::Other("selection has change but no change key was given".into())
        })?;
        let out = TxOut {
            value: change,
            pubkey,
        };
        if payment.change_first {
            outputs.insert(0, out);
        } else {
            outputs.push(out);
        }
    }
    let mut tx = Transaction {
        version: Transaction::VERSION,
        inputs: selection
            .inputs
            .iter()
            .map(|c| TxIn {
                prevout: c.outpoint,
                signature: Signature::EMPTY,
            })
            .collect(),
        outputs,
        lock_time: payment.lock_time,
    };
    let sum_in = Amount::checked_sum(selection.inputs.iter().map(|c| c.value))
        .ok_or_else(|| WalletError::Other("input sum overflows".into()))?;
    let sum_out = tx
        .total_output()
        .ok_or_else(|| WalletError::Other("output sum overflows".into()))?;
    if sum_in.checked_sub(sum_out) != Some(selection.fee) {
        return Err(WalletError::Other(
            "internal: inputs - outputs differs from the selected fee".into(),
        ));
    }
    let refs: Vec<&SecretKey> = keys.iter().collect();
    sign_transaction(&mut tx, genesis, &refs);
    Ok(tx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;
    use crate::coin_selection::{Candidate, select_coins};
    use crate::hd::KeyChain;
    use cairn_primitives::keys::verify;
    use cairn_primitives::{OutPoint, Txid, sighash};

    #[test]
    fn signed_transaction_verifies_and_pays_the_rate() {
        let key = SecretKey::from_bytes([3; 32]).unwrap();
        let coins = [Candidate {
            outpoint: OutPoint::new(Txid([1; 32]), 0),
            value: Amount(10_000_000),
            chain: KeyChain::Receive,
            index: 0,
        }];
        let sel = select_coins(&coins, Amount(2_500_000), 5, 546).unwrap();
        let payment = Payment {
            to: XOnlyPublicKey([9; 32]),
            amount: Amount(2_500_000),
            change_to: Some(SecretKey::from_bytes([4; 32]).unwrap().public_key()),
            change_first: true,
            lock_time: 7,
        };
        let genesis = BlockHash([8; 32]);
        let tx = build_signed(&sel, &payment, std::slice::from_ref(&key), &genesis).unwrap();
        assert_eq!(tx.outputs.len(), 2);
        assert_eq!(tx.outputs[1].value, Amount(2_500_000));
        assert!(sel.fee.0 >= 5 * tx.size() as u64);
        let msg = sighash(&genesis, &tx.txid());
        assert!(verify(&key.public_key(), &msg, &tx.inputs[0].signature));
    }
}
