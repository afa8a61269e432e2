//! `balance`: confirmed, unconfirmed, spendable and immature coins.

use anyhow::{Result, anyhow};
use serde_json::json;

use cairn_wallet::signed_coin_string;

use crate::common::{
    Ctx, coins, encode_address, load_wallet, node_on_wallet_chain, print_json, wallet_keys,
};
use crate::send::spendable_now;

pub fn cmd_balance(ctx: &Ctx) -> Result<()> {
    let (wallet, chain) = load_wallet(ctx)?;
    let info = node_on_wallet_chain(ctx, &chain)?;
    let (mut confirmed, mut unconfirmed, mut spendable, mut immature) = (0u64, 0i64, 0u64, 0u64);
    let keys = wallet_keys(&wallet)?;
    for (key_chain, _, pk) in &keys {
        let addr = encode_address(pk, &info.addressprefix)?;
        let b = ctx.rpc.address_balance(&addr)?;
        confirmed = confirmed
            .checked_add(b.confirmed)
            .ok_or_else(|| anyhow!("balance overflow"))?;
        unconfirmed = unconfirmed
            .checked_add(b.unconfirmed)
            .ok_or_else(|| anyhow!("balance overflow"))?;
        for u in ctx.rpc.address_utxos(&addr)? {
            if spendable_now(&u, *key_chain) {
                spendable = spendable.saturating_add(u.value);
            } else if u.coinbase && u.confirmations >= 1 {
                immature = immature.saturating_add(u.value);
            }
        }
    }
    if ctx.json {
        return print_json(&json!({
            "confirmed": confirmed, "unconfirmed": unconfirmed, "spendable": spendable, "immature": immature,
            "confirmed_coins": coins(confirmed), "unconfirmed_coins": signed_coin_string(i128::from(unconfirmed)),
            "spendable_coins": coins(spendable), "immature_coins": coins(immature),
            "addresses": keys.len(),
        }));
    }
    let rows = [
        ("confirmed", coins(confirmed)),
        ("unconfirmed", signed_coin_string(i128::from(unconfirmed))),
        ("spendable", coins(spendable)),
        ("immature", coins(immature)),
    ];
    let width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("{label:<12} {value:>width$}");
    }
    Ok(())
}
