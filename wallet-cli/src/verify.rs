//! What the wallet checks before it signs, so that neither a lying node nor anyone between the
//! wallet and a node reached over plain HTTP can make it pay more than the user asked.
//!
//! - Each spent coin's value and key come from the node's `getaddressutxos`. The signature does
//!   not commit to input values, so a node that under-reports a value would have the difference
//!   signed away as fee. The wallet therefore fetches each coin's parent transaction, checks that
//!   it hashes to the txid being spent (the txid commits to every output), and that the output's
//!   value and key are what the node reported.
//! - The fee is capped: a rate and an absolute amount, named constants a user can raise with an
//!   explicit flag (a node's `estimatefee` is only advice).

use cairn_primitives::encoding::decode_hex;
use cairn_primitives::{Amount, OutPoint, Transaction, XOnlyPublicKey};

use crate::{Result, WalletError};

/// Highest fee rate the wallet pays without `--max-fee-rate` (base units per byte): 0.10 coins
/// per kB, the default `maxfeerate` of Bitcoin Core's `sendrawtransaction` and of Cairn's.
pub const DEFAULT_MAX_FEE_RATE: u64 = 10_000;
/// Highest absolute fee the wallet pays without `--max-fee` (base units): 0.10 coins, Bitcoin
/// Core's `-maxtxfee` default.
pub const DEFAULT_MAX_FEE: u64 = 10_000_000;

/// The caps in force for one `send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeCaps {
    /// Base units per byte.
    pub max_rate: u64,
    /// Base units.
    pub max_fee: u64,
}

impl Default for FeeCaps {
    fn default() -> Self {
        Self {
            max_rate: DEFAULT_MAX_FEE_RATE,
            max_fee: DEFAULT_MAX_FEE,
        }
    }
}

impl FeeCaps {
    /// Refuses a rate above the cap before coins are selected.
    pub fn check_rate(&self, rate: u64) -> Result<()> {
        if rate > self.max_rate {
            return Err(WalletError::FeeTooHigh(format!(
                "fee rate {rate} base units per byte is above the cap of {} (raise it with --max-fee-rate if you mean it)",
                self.max_rate
            )));
        }
        Ok(())
    }

    /// Refuses a total fee above the cap before signing.
    pub fn check_fee(&self, fee: Amount, size: u64) -> Result<()> {
        if fee.0 > self.max_fee {
            return Err(WalletError::FeeTooHigh(format!(
                "fee {} coins for {size} bytes is above the cap of {} coins (raise it with --max-fee if you mean it)",
                fee.to_coin_string(),
                Amount(self.max_fee).to_coin_string()
            )));
        }
        Ok(())
    }
}

/// Checks one coin the node reported against its parent transaction `parent_hex` (the raw
/// transaction the node returned for `outpoint.txid`).
pub fn check_reported_coin(
    outpoint: &OutPoint,
    reported_value: Amount,
    expected_key: &XOnlyPublicKey,
    parent_hex: &str,
) -> Result<()> {
    let lie = |detail: String| WalletError::NodeLied {
        outpoint: format!("{}:{}", outpoint.txid.to_hex(), outpoint.vout),
        detail,
    };
    let parent: Transaction = decode_hex(parent_hex)
        .map_err(|e| lie(format!("its parent transaction does not decode: {e}")))?;
    let txid = parent.txid();
    if txid != outpoint.txid {
        return Err(lie(format!(
            "the transaction sent as its parent hashes to {}",
            txid.to_hex()
        )));
    }
    let out = usize::try_from(outpoint.vout)
        .ok()
        .and_then(|i| parent.outputs.get(i))
        .ok_or_else(|| {
            lie(format!(
                "its parent has only {} outputs",
                parent.outputs.len()
            ))
        })?;
    if out.value != reported_value {
        return Err(lie(format!(
            "reported value {} coins, the parent transaction says {} coins",
            reported_value.to_coin_string(),
            out.value.to_coin_string()
        )));
    }
    if out.pubkey != *expected_key {
        return Err(lie("the output pays another key than this wallet's".into()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_primitives::encoding::encode_hex;
    use cairn_primitives::{Signature, TxIn, TxOut, Txid};

    fn parent(key: XOnlyPublicKey) -> Transaction {
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint::new(Txid::from_byte_array([7; 32]), 0),
                signature: Signature([0; 64]),
            }],
            outputs: vec![TxOut {
                value: Amount(5_000),
                pubkey: key,
            }],
            lock_time: 0,
        }
    }

    #[test]
    fn a_true_report_passes_and_each_lie_is_caught() {
        let key = XOnlyPublicKey([3; 32]);
        let tx = parent(key);
        let hex = encode_hex(&tx);
        let op = OutPoint::new(tx.txid(), 0);
        check_reported_coin(&op, Amount(5_000), &key, &hex).unwrap();
        // Under-reported value: the difference would have gone to the fee.
        let e = check_reported_coin(&op, Amount(4_000), &key, &hex).unwrap_err();
        assert!(matches!(e, WalletError::NodeLied { .. }), "{e}");
        // Another transaction passed off as the parent.
        let mut other = tx.clone();
        other.outputs[0].value = Amount(4_000);
        let e = check_reported_coin(&op, Amount(4_000), &key, &encode_hex(&other)).unwrap_err();
        assert!(e.to_string().contains("hashes to"), "{e}");
        // Wrong key, missing output, garbage.
        assert!(check_reported_coin(&op, Amount(5_000), &XOnlyPublicKey([4; 32]), &hex).is_err());
        let op1 = OutPoint::new(tx.txid(), 1);
        assert!(check_reported_coin(&op1, Amount(5_000), &key, &hex).is_err());
        assert!(check_reported_coin(&op, Amount(5_000), &key, "zz").is_err());
    }

    #[test]
    fn caps() {
        let c = FeeCaps::default();
        assert!(c.check_rate(DEFAULT_MAX_FEE_RATE).is_ok());
        assert!(c.check_rate(DEFAULT_MAX_FEE_RATE + 1).is_err());
        assert!(c.check_fee(Amount(DEFAULT_MAX_FEE), 200).is_ok());
        let e = c.check_fee(Amount(DEFAULT_MAX_FEE + 1), 200).unwrap_err();
        assert!(e.to_string().contains("0.10000001"), "{e}");
    }
}
