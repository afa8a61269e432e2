//! Address index: balances, coins and history of an address.

use cairn_storage::{HistoryPosition, MAX_PAGE_ENTRIES};

use super::prelude::*;

/// Entries per page when the options object gives no `limit`.
pub const DEFAULT_ADDRESS_PAGE: usize = 100;

/// The paging options of `getaddresstxids` / `getaddressutxos`: `{"limit", "after", "order"}`.
struct PageOptions<'a> {
    limit: usize,
    after: Option<&'a str>,
    newest_first: bool,
}

fn page_options<'a>(
    a: &'a Args,
    i: usize,
    allow_order: bool,
) -> RpcResult<Option<PageOptions<'a>>> {
    let Some(o) = a.opt_object(i)? else {
        return Ok(None);
    };
    let known: &[&str] = if allow_order {
        &["limit", "after", "order"]
    } else {
        &["limit", "after"]
    };
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!(
                "unknown page option `{}` (expected: {})",
                crate::params::truncate(k),
                known.join(", ")
            ),
        ));
    }
    let limit = match o.get("limit") {
        None | Some(Value::Null) => DEFAULT_ADDRESS_PAGE,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= MAX_PAGE_ENTRIES => n as usize,
            _ => {
                return Err(rpc_err(
                    INVALID_PARAMETER,
                    format!("limit must be an integer from 1 to {MAX_PAGE_ENTRIES}"),
                ));
            }
        },
    };
    let after = match o.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(rpc_err(INVALID_PARAMETER, "after must be a cursor string")),
    };
    let newest_first = match o.get("order") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "asc" => false,
        Some(Value::String(s)) if s == "desc" => true,
        Some(_) => {
            return Err(rpc_err(
                INVALID_PARAMETER,
                "order must be \"asc\" or \"desc\"",
            ));
        }
    };
    Ok(Some(PageOptions {
        limit,
        after,
        newest_first,
    }))
}

fn bad_cursor(c: &str) -> jsonrpsee::types::ErrorObjectOwned {
    rpc_err(
        INVALID_PARAMETER,
        format!(
            "invalid cursor {:?} (pass back a `next` value)",
            crate::params::truncate(c)
        ),
    )
}

/// A history cursor: `"<height>:<index in block>"` of the last entry returned.
fn history_cursor(p: HistoryPosition) -> String {
    format!("{}:{}", p.height, p.index)
}

fn parse_history_cursor(c: &str) -> RpcResult<HistoryPosition> {
    let (h, i) = c.split_once(':').ok_or_else(|| bad_cursor(c))?;
    Ok(HistoryPosition {
        height: h.parse().map_err(|_| bad_cursor(c))?,
        index: i.parse().map_err(|_| bad_cursor(c))?,
    })
}

/// A coin cursor: `"<txid>:<vout>"` of the last coin scanned.
fn parse_outpoint_cursor(c: &str) -> RpcResult<OutPoint> {
    let (t, v) = c.split_once(':').ok_or_else(|| bad_cursor(c))?;
    Ok(OutPoint::new(
        t.parse().map_err(|_| bad_cursor(c))?,
        v.parse().map_err(|_| bad_cursor(c))?,
    ))
}

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
    let confirmed = ctx.reader.address_balance(&pk).map_err(read_err)?;
    let view = address_view(&ctx.reader.address_utxos(&pk).map_err(read_err)?);
    let act = mempool(ctx).address_activity(&pk, &view);
    let received: i128 = act
        .received
        .iter()
        .map(|(_, o)| i128::from(o.value.0))
        .sum();
    let spent: i128 = act.spent.iter().map(|(_, v)| i128::from(v.0)).sum();
    Ok(json!({"confirmed": confirmed.0, "unconfirmed": (received - spent) as i64}))
}

fn confirmed_utxo_json(ctx: &RpcContext, tip_height: u64, op: &OutPoint, coin: &Coin) -> Value {
    let spendable = !coin.coinbase || tip_height + 1 >= coin.height + ctx.params.coinbase_maturity;
    json!({
        "txid": op.txid, "vout": op.vout, "value": coin.output.value.0, "height": coin.height,
        "confirmations": tip_height.saturating_sub(coin.height) + 1, "coinbase": coin.coinbase, "spendable": spendable,
    })
}

fn pooled_utxo_json(op: &OutPoint, o: &cairn_primitives::TxOut) -> Value {
    json!({
        "txid": op.txid, "vout": op.vout, "value": o.value.0, "height": null,
        "confirmations": 0, "coinbase": false, "spendable": true,
    })
}

pub(super) fn getaddressutxos(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let pk = a.address(0, &ctx.params.address_prefix)?;
    let paging = page_options(a, 1, false)?;
    if let Some(p) = paging {
        let (tip_height, _) = tip(ctx)?;
        let after = p.after.map(parse_outpoint_cursor).transpose()?;
        let page = ctx
            .reader
            .address_utxos_page(&pk, after, p.limit)
            .map_err(read_err)?;
        let pool = mempool(ctx);
        let next = if page.more {
            page.entries
                .last()
                .map(|(op, _)| format!("{}:{}", op.txid, op.vout))
        } else {
            None
        };
        let utxos: Vec<Value> = page
            .entries
            .iter()
            .filter(|(op, _)| pool.spender_of(op).is_none())
            .map(|(op, coin)| confirmed_utxo_json(ctx, tip_height, op, coin))
            .collect();
        let mut pooled = Vec::new();
        if after.is_none() {
            let view = address_view(&ctx.reader.address_utxos(&pk).map_err(read_err)?);
            for (op, o) in pool.address_activity(&pk, &view).received {
                if pooled.len() < p.limit && pool.spender_of(&op).is_none() {
                    pooled.push(pooled_utxo_json(&op, &o));
                }
            }
        }
        return Ok(json!({"utxos": utxos, "mempool": pooled, "next": next}));
    }
    // The coins and the tip from one snapshot: confirmations never underflow.
    let ((tip_height, _), coins) = ctx.reader.address_utxos_at_tip(&pk).map_err(read_err)?;
    let view = address_view(&coins);
    let pool = mempool(ctx);
    let mut out = Vec::with_capacity(coins.len());
    for (op, coin) in &coins {
        if pool.spender_of(op).is_some() {
            continue;
        }
        out.push(confirmed_utxo_json(ctx, tip_height, op, coin));
    }
    for (op, o) in pool.address_activity(&pk, &view).received {
        if pool.spender_of(&op).is_some() {
            continue;
        }
        out.push(pooled_utxo_json(&op, &o));
    }
    Ok(Value::Array(out))
}

pub(super) fn getaddresstxids(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let pk = a.address(0, &ctx.params.address_prefix)?;
    if let Some(p) = page_options(a, 1, true)? {
        let after = p.after.map(parse_history_cursor).transpose()?;
        let page = ctx
            .reader
            .address_txs_page(&pk, after, p.limit, p.newest_first)
            .map_err(read_err)?;
        let next = if page.more {
            page.entries.last().map(|e| history_cursor(e.position))
        } else {
            None
        };
        let txs: Vec<Value> = page
            .entries
            .iter()
            .map(|e| json!({"txid": e.txid, "height": e.position.height, "blockindex": e.position.index}))
            .collect();
        let mut pooled: Vec<Txid> = Vec::new();
        if after.is_none() {
            let view = address_view(&ctx.reader.address_utxos(&pk).map_err(read_err)?);
            pooled = mempool(ctx).address_activity(&pk, &view).txids;
            pooled.truncate(p.limit);
        }
        return Ok(json!({"txs": txs, "mempool": pooled, "next": next}));
    }
    let mut txids = ctx.reader.address_txids(&pk).map_err(read_err)?;
    let view = address_view(&ctx.reader.address_utxos(&pk).map_err(read_err)?);
    let mut seen: std::collections::HashSet<Txid> = txids.iter().copied().collect();
    for t in mempool(ctx).address_activity(&pk, &view).txids {
        if seen.insert(t) {
            txids.push(t);
        }
    }
    Ok(json!(txids))
}
