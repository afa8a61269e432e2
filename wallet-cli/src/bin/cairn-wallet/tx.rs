//! `tx`: one transaction, from the wallet's point of view.

use std::str::FromStr;

use anyhow::{Result, anyhow};

use cairn_primitives::Txid;
use std::collections::HashMap;

use cairn_wallet::history::summarize;
use cairn_wallet::signed_coin_string;

use crate::common::{Ctx, coins, load_wallet, print_json};
use crate::history::{mine_set, summary_json};

pub fn cmd_tx(ctx: &Ctx, txid: &str) -> Result<()> {
    Txid::from_str(txid).map_err(|e| anyhow!("invalid txid {txid:?}: {e}"))?;
    let (wallet, _chain) = load_wallet(ctx)?;
    let mine = mine_set(&wallet)?;
    let tx = ctx.rpc.raw_transaction(txid)?.ok_or_else(|| {
        anyhow!(
            "transaction {txid} not found (neither in the node's transaction index nor its mempool)"
        )
    })?;
    let mut cache = HashMap::new();
    let s = summarize(&tx, &mine, &mut cache, |id| ctx.rpc.raw_transaction(id))?;
    if ctx.json {
        return print_json(&summary_json(&s)?);
    }
    let status = match (s.height, &s.blockhash) {
        (Some(h), Some(b)) => format!(
            "confirmed ({} confirmations, height {h}, block {b})",
            s.confirmations
        ),
        _ => "unconfirmed (in the mempool)".to_string(),
    };
    let fee = match (s.coinbase, s.fee) {
        (true, _) => "none (coinbase)".to_string(),
        (false, Some(f)) => format!(
            "{} ({} per byte)",
            coins(f),
            f.checked_div(s.size).unwrap_or(0)
        ),
        (false, None) => "unknown".to_string(),
    };
    let net = signed_coin_string(i128::from(s.net));
    println!("{:<8} {}", "txid", s.txid);
    println!("{:<8} {status}", "status");
    println!("{:<8} {} bytes", "size", s.size);
    println!("{:<8} {fee}", "fee");
    println!("{:<8} {}{net}", "net", if s.net > 0 { "+" } else { "" });
    let mark = |m: bool| if m { "  (wallet)" } else { "" };
    if !s.inputs.is_empty() {
        println!("inputs");
        for i in &s.inputs {
            let value = i.value.map_or_else(|| "?".into(), coins);
            let addr = i.address.as_deref().unwrap_or("?");
            println!(
                "  {}:{:<4} {value:>20}  {addr}{}",
                i.txid,
                i.vout,
                mark(i.mine)
            );
        }
    }
    println!("outputs");
    for o in &s.outputs {
        let addr = o.address.as_deref().unwrap_or("?");
        println!(
            "  {:<4} {:>20}  {addr}{}",
            o.n,
            coins(o.value),
            mark(o.mine)
        );
    }
    Ok(())
}
