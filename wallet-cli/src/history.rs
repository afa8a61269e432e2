//! What a transaction means for the wallet: amounts in and out of its keys, net, fee.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::rpc::RawTransaction;

/// One input as the wallet sees it.
#[derive(Clone, Debug, Serialize)]
pub struct InputView {
    pub txid: String,
    pub vout: u32,
    /// `None` if the spent transaction could not be found.
    pub value: Option<u64>,
    pub address: Option<String>,
    pub mine: bool,
}

/// One output as the wallet sees it.
#[derive(Clone, Debug, Serialize)]
pub struct OutputView {
    pub n: u32,
    pub value: u64,
    pub address: Option<String>,
    pub mine: bool,
}

/// A transaction summarised for the wallet. Amounts in base units.
#[derive(Clone, Debug, Serialize)]
pub struct TxSummary {
    pub txid: String,
    pub confirmations: u64,
    pub height: Option<u64>,
    pub blockhash: Option<String>,
    pub time: Option<u64>,
    pub coinbase: bool,
    pub size: u64,
    /// Sum of outputs paying wallet keys.
    pub received: u64,
    /// Sum of wallet-owned outputs this transaction spends.
    pub sent: u64,
    /// `received - sent`: what the transaction did to the wallet's balance.
    pub net: i64,
    /// Inputs minus outputs, when every spent output is known (never for a coinbase).
    pub fee: Option<u64>,
    pub inputs: Vec<InputView>,
    pub outputs: Vec<OutputView>,
}

/// Summarises `tx` for a wallet owning the x-only keys (hex) in `mine`. `lookup` fetches a
/// spent transaction (verbose) by txid; results are cached in `cache`.
pub fn summarize(
    tx: &RawTransaction,
    mine: &HashSet<String>,
    cache: &mut HashMap<String, Option<RawTransaction>>,
    mut lookup: impl FnMut(&str) -> Result<Option<RawTransaction>>,
) -> Result<TxSummary> {
    let mut inputs = Vec::with_capacity(tx.vin.len());
    let (mut sent, mut in_total, mut all_known) = (0u128, 0u128, true);
    for vin in &tx.vin {
        if !cache.contains_key(&vin.txid) {
            let prev = lookup(&vin.txid)?;
            cache.insert(vin.txid.clone(), prev);
        }
        let prev_out = cache
            .get(&vin.txid)
            .and_then(Option::as_ref)
            .and_then(|p| p.vout.iter().find(|o| o.n == vin.vout));
        let (value, address, is_mine) = match prev_out {
            Some(o) => (Some(o.value), o.address.clone(), mine.contains(&o.pubkey)),
            None => {
                all_known = false;
                (None, None, false)
            }
        };
        if let Some(v) = value {
            in_total += u128::from(v);
            if is_mine {
                sent += u128::from(v);
            }
        }
        inputs.push(InputView {
            txid: vin.txid.clone(),
            vout: vin.vout,
            value,
            address,
            mine: is_mine,
        });
    }
    let mut received = 0u128;
    let mut out_total = 0u128;
    let outputs: Vec<OutputView> = tx
        .vout
        .iter()
        .map(|o| {
            let is_mine = mine.contains(&o.pubkey);
            out_total += u128::from(o.value);
            if is_mine {
                received += u128::from(o.value);
            }
            OutputView {
                n: o.n,
                value: o.value,
                address: o.address.clone(),
                mine: is_mine,
            }
        })
        .collect();
    let coinbase = tx.coinbase || tx.vin.is_empty();
    let fee = (!coinbase && all_known && in_total >= out_total)
        .then(|| u64::try_from(in_total - out_total).ok())
        .flatten();
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(TxSummary {
        txid: tx.txid.clone(),
        confirmations: tx.confirmations.unwrap_or(0),
        height: tx.height,
        blockhash: tx.blockhash.clone(),
        time: tx.time,
        coinbase,
        size: tx.size,
        received: clamp(received),
        sent: clamp(sent),
        net: i64::try_from(received).unwrap_or(i64::MAX) - i64::try_from(sent).unwrap_or(i64::MAX),
        fee,
        inputs,
        outputs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;
    use crate::rpc::{RawTxInput, RawTxOutput};

    fn raw(txid: &str, vin: Vec<(&str, u32)>, vout: Vec<(u64, &str)>) -> RawTransaction {
        RawTransaction {
            txid: txid.into(),
            size: 100,
            vin: vin
                .into_iter()
                .map(|(t, n)| RawTxInput {
                    txid: t.into(),
                    vout: n,
                })
                .collect(),
            vout: vout
                .into_iter()
                .enumerate()
                .map(|(n, (value, pk))| RawTxOutput {
                    value,
                    n: n as u32,
                    address: None,
                    pubkey: pk.into(),
                })
                .collect(),
            coinbase: false,
            blockhash: None,
            height: None,
            confirmations: None,
            time: None,
        }
    }

    #[test]
    fn net_and_fee() {
        let funding = raw("aa", vec![], vec![(1000, "me")]);
        let spend = raw("bb", vec![("aa", 0)], vec![(600, "them"), (350, "me")]);
        let mine: HashSet<String> = ["me".to_string()].into();
        let mut cache = HashMap::new();
        let s = summarize(&spend, &mine, &mut cache, |t| {
            Ok((t == "aa").then(|| funding.clone()))
        })
        .unwrap();
        assert_eq!(
            (s.sent, s.received, s.net, s.fee),
            (1000, 350, -650, Some(50))
        );
        let f = summarize(&funding, &mine, &mut cache, |_| Ok(None)).unwrap();
        assert_eq!((f.net, f.fee, f.coinbase), (1000, None, true));
    }
}
