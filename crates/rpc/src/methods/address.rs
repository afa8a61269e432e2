//! Address index: balances, coins and history of an address.

use super::prelude::*;

/// The address's confirmed coins as a view: what the pool's address scan looks spent coins up
/// in, from memory rather than with one database read per pooled input.
pub(super) fn address_view(coins: &[(OutPoint, Coin)]) -> cairn_consensus::MemoryUtxoSet {
    let mut view = cairn_consensus::MemoryUtxoSet::new();
    for (op, coin) in coins {
        view.insert(*op, *coin);
    }
    view
}

pub(super) fn getaddressbalance(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let pk = a.address(0, &ctx.params.address_prefix)?;
    let confirmed = ctx.reader.address_balance(&pk).map_err(internal)?;
    let view = address_view(&ctx.reader.address_utxos(&pk).map_err(internal)?);
    let act = mempool(ctx).address_activity(&pk, &view);
    let received: i128 = act
        .received
        .iter()
        .map(|(_, o)| i128::from(o.value.0))
        .sum();
    let spent: i128 = act.spent.iter().map(|(_, v)| i128::from(v.0)).sum();
    Ok(json!({"confirmed": confirmed.0, "unconfirmed": (received - spent) as i64}))
}

pub(super) fn getaddressutxos(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let pk = a.address(0, &ctx.params.address_prefix)?;
    // The coins and the tip from one snapshot: confirmations never underflow.
    let ((tip_height, _), coins) = ctx.reader.address_utxos_at_tip(&pk).map_err(internal)?;
    let view = address_view(&coins);
    let pool = mempool(ctx);
    let mut out = Vec::with_capacity(coins.len());
    for (op, coin) in coins {
        if pool.spender_of(&op).is_some() {
            continue;
        }
        let spendable =
            !coin.coinbase || tip_height + 1 >= coin.height + ctx.params.coinbase_maturity;
        out.push(json!({
            "txid": op.txid, "vout": op.vout, "value": coin.output.value.0, "height": coin.height,
            "confirmations": tip_height.saturating_sub(coin.height) + 1, "coinbase": coin.coinbase, "spendable": spendable,
        }));
    }
    for (op, o) in pool.address_activity(&pk, &view).received {
        if pool.spender_of(&op).is_some() {
            continue;
        }
        out.push(json!({
            "txid": op.txid, "vout": op.vout, "value": o.value.0, "height": null,
            "confirmations": 0, "coinbase": false, "spendable": true,
        }));
    }
    Ok(Value::Array(out))
}

pub(super) fn getaddresstxids(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let pk = a.address(0, &ctx.params.address_prefix)?;
    let mut txids = ctx.reader.address_txids(&pk).map_err(internal)?;
    let view = address_view(&ctx.reader.address_utxos(&pk).map_err(internal)?);
    let mut seen: std::collections::HashSet<Txid> = txids.iter().copied().collect();
    for t in mempool(ctx).address_activity(&pk, &view).txids {
        if seen.insert(t) {
            txids.push(t);
        }
    }
    Ok(json!(txids))
}
