//! `history`: every transaction touching a wallet address.

use std::collections::HashSet;

use anyhow::Result;
use serde_json::{Value, json};

use cairn_wallet::WalletFile;
use std::collections::HashMap;

use cairn_wallet::history::{TxSummary, summarize};
use cairn_wallet::signed_coin_string;

use crate::common::{
    Ctx, coins, encode_address, load_wallet, node_on_wallet_chain, print_json, wallet_keys,
};

pub fn summary_json(s: &TxSummary) -> Result<Value> {
    let mut v = serde_json::to_value(s)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "net_coins".into(),
            json!(signed_coin_string(i128::from(s.net))),
        );
        obj.insert("fee_coins".into(), json!(s.fee.map(coins)));
    }
    Ok(v)
}

pub fn mine_set(wallet: &WalletFile) -> Result<HashSet<String>> {
    Ok(wallet_keys(wallet)?
        .into_iter()
        .map(|(_, _, pk)| pk.to_hex())
        .collect())
}

/// Newest first, `limit` rows after skipping the `skip` newest (`limit` 0: all).
///
/// The node lists an address's transactions in chain order, mempool last, so the newest
/// `skip + limit` of the whole wallet are among the newest `skip + limit` of each address: only
/// those are fetched, and a long history costs no more than the page shown.
pub fn cmd_history(ctx: &Ctx, limit: usize, skip: usize) -> Result<()> {
    let (wallet, chain) = load_wallet(ctx)?;
    let info = node_on_wallet_chain(ctx, &chain)?;
    let mine = mine_set(&wallet)?;
    let window = if limit == 0 {
        usize::MAX
    } else {
        skip.saturating_add(limit)
    };
    let mut all = HashSet::new();
    let mut txids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (_, _, pk) in wallet_keys(&wallet)? {
        let list = ctx
            .rpc
            .address_txids(&encode_address(&pk, &info.addressprefix)?)?;
        let newest = list.len().saturating_sub(window);
        for (i, t) in list.into_iter().enumerate() {
            if i >= newest && seen.insert(t.clone()) {
                txids.push(t.clone());
            }
            all.insert(t);
        }
    }
    let mut cache = HashMap::new();
    let mut rows = Vec::new();
    for t in &txids {
        let Some(tx) = ctx.rpc.raw_transaction(t)? else {
            eprintln!("warning: node no longer knows transaction {t}");
            continue;
        };
        rows.push(summarize(&tx, &mine, &mut cache, |id| {
            ctx.rpc.raw_transaction(id)
        })?);
    }
    // Newest first: mempool transactions, then by height, descending.
    rows.sort_by_key(|s| std::cmp::Reverse(s.height.unwrap_or(u64::MAX)));
    let total = all.len();
    let rows: Vec<_> = rows
        .into_iter()
        .skip(skip)
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    if skip + rows.len() < total {
        eprintln!(
            "showing {} to {} of {total} transactions, newest first; next page: --skip {}",
            skip + 1,
            skip + rows.len(),
            skip + rows.len()
        );
    }
    if ctx.json {
        return print_json(&Value::Array(
            rows.iter().map(summary_json).collect::<Result<_>>()?,
        ));
    }
    if rows.is_empty() {
        eprintln!("no transactions");
        return Ok(());
    }
    let nets: Vec<String> = rows
        .iter()
        .map(|s| {
            let n = signed_coin_string(i128::from(s.net));
            if s.net > 0 { format!("+{n}") } else { n }
        })
        .collect();
    let fees: Vec<String> = rows
        .iter()
        .map(|s| s.fee.map_or_else(|| "-".into(), coins))
        .collect();
    let nw = nets.iter().map(String::len).max().unwrap_or(0).max(3);
    let fw = fees.iter().map(String::len).max().unwrap_or(0).max(3);
    println!(
        "{:<64}  {:>7}  {:>6}  {:>nw$}  {:>fw$}",
        "TXID", "HEIGHT", "CONFS", "NET", "FEE"
    );
    for ((s, n), f) in rows.iter().zip(&nets).zip(&fees) {
        let height = s
            .height
            .map_or_else(|| "mempool".to_string(), |h| h.to_string());
        println!(
            "{:<64}  {height:>7}  {:>6}  {n:>nw$}  {f:>fw$}",
            s.txid, s.confirmations
        );
    }
    Ok(())
}
