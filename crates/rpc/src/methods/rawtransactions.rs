//! Raw transactions group: `getrawtransaction`, `decoderawtransaction`, and
//! `gettxspendingprevout` (which Bitcoin Core files under blockchain, answered here from the
//! mempool and the spender index).

use super::prelude::*;

/// Most outputs one `gettxspendingprevout` call may ask about.
pub const MAX_SPENDING_PREVOUTS: usize = 2_500;

pub(super) fn getrawtransaction(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let txid: Txid = a.hash(0)?;
    let verbosity = a.verbosity(1, 0)?;
    if verbosity > 2 {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!("verbosity must be 0, 1 or 2, got {verbosity}"),
        ));
    }
    let verbose = verbosity > 0;
    let in_block: Option<BlockHash> = a.opt_hash(2)?;
    let (tip_height, _) = tip(ctx)?;
    if in_block.is_none() {
        let pool = mempool(ctx);
        if let Some(tx) = pool.get(&txid) {
            if !verbose {
                return Ok(json!(encode_hex(&*tx)));
            }
            let mut v = tx_json(&tx, &ctx.params, None, None);
            if verbosity == 2 {
                // Spent outputs of a pooled transaction: confirmed coins, or outputs of
                // pooled parents.
                let (_, coins) = ctx
                    .reader
                    .coins_at_tip(&tx.inputs.iter().map(|i| i.prevout).collect::<Vec<_>>())
                    .map_err(internal)?;
                let mut prevouts = Vec::with_capacity(coins.len());
                let mut known = Vec::with_capacity(coins.len());
                for (i, c) in tx.inputs.iter().zip(coins) {
                    let (coin, confirmed) = match c {
                        Some(c) => (Some(c), true),
                        None => (
                            pool.output(&i.prevout).map(|output| Coin {
                                output,
                                height: tip_height + 1,
                                coinbase: false,
                            }),
                            false,
                        ),
                    };
                    prevouts.push(coin.map(|c| prevout_json(&c, confirmed, &ctx.params)));
                    known.push(coin);
                }
                add_prevouts(&mut v, &tx, &prevouts, fee_from_coins(&tx, &known));
            }
            return Ok(v);
        }
    }
    if let Some(info) = ctx.reader.transaction(&txid).map_err(read_err)? {
        if let Some(b) = in_block
            && b != info.block_hash
        {
            return Err(rpc_err(
                INVALID_ADDRESS_OR_KEY,
                format!("transaction {txid} not found in block {b}"),
            ));
        }
        if !verbose {
            return Ok(json!(encode_hex(&info.tx)));
        }
        let time = ctx
            .reader
            .header_info(&info.block_hash)
            .map_err(internal)?
            .map(|h| h.header.time)
            .unwrap_or(0);
        let place = TxPlace {
            block_hash: info.block_hash,
            height: info.height,
            block_time: time,
            confirmations: info.confirmations,
        };
        let mut v = tx_json(&info.tx, &ctx.params, Some(&place), None);
        if verbosity == 2 {
            let coins = confirmed_input_coins(ctx, &info)?;
            let prevouts: Vec<Option<Value>> = coins
                .iter()
                .map(|c| c.map(|c| prevout_json(&c, true, &ctx.params)))
                .collect();
            add_prevouts(
                &mut v,
                &info.tx,
                &prevouts,
                fee_from_coins(&info.tx, &coins),
            );
        }
        return Ok(v);
    }
    Err(rpc_err(
        INVALID_ADDRESS_OR_KEY,
        format!("no such mempool or blockchain transaction: {txid}"),
    ))
}

/// The coins a confirmed transaction's inputs spent: from its block's undo data (one read), or
/// for an output created earlier in the same block, from the transaction index.
fn confirmed_input_coins(
    ctx: &RpcContext,
    info: &cairn_storage::TxInfo,
) -> RpcResult<Vec<Option<Coin>>> {
    if info.tx.is_coinbase() {
        return Ok(Vec::new());
    }
    let spent = block_spent_map(ctx, &info.block_hash)?;
    let mut out = Vec::with_capacity(info.tx.inputs.len());
    for i in &info.tx.inputs {
        let coin = match spent.get(&i.prevout) {
            Some(c) => Some(*c),
            None => ctx
                .reader
                .transaction(&i.prevout.txid)
                .map_err(read_err)?
                .and_then(|p| {
                    let output = *p.tx.outputs.get(i.prevout.vout as usize)?;
                    Some(Coin {
                        output,
                        height: p.height,
                        coinbase: p.tx.is_coinbase(),
                    })
                }),
        };
        out.push(coin);
    }
    Ok(out)
}

pub(super) fn decoderawtransaction(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let tx = decode_tx(a.str(0)?)?;
    let mut v = tx_json(&tx, &ctx.params, None, None);
    if let Value::Object(m) = &mut v {
        // Bitcoin Core's decoderawtransaction has neither the hex it was given nor a
        // confirmation count.
        m.remove("hex");
        m.remove("confirmations");
    }
    Ok(v)
}

/// `gettxspendingprevout [[{"txid", "vout"}, ...], {"mempool_only": bool}]`: the transaction
/// spending each output, from the mempool first, then the spender index (as Bitcoin Core with
/// `-txospenderindex`).
pub(super) fn gettxspendingprevout(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let raw = a.array(0)?;
    if raw.is_empty() || raw.len() > MAX_SPENDING_PREVOUTS {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!(
                "outputs must hold 1 to {MAX_SPENDING_PREVOUTS} entries, got {}",
                raw.len()
            ),
        ));
    }
    let mempool_only = match a.opt_object(1)? {
        Some(o) => match o.get("mempool_only") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(rpc_err(INVALID_PARAMS, "mempool_only must be a boolean")),
        },
        None => false,
    };
    let mut ops = Vec::with_capacity(raw.len());
    for r in raw {
        let txid: Option<Txid> = r
            .get("txid")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        let vout = r
            .get("vout")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        match (txid, vout) {
            (Some(t), Some(v)) => ops.push(OutPoint::new(t, v)),
            _ => {
                return Err(rpc_err(
                    INVALID_PARAMETER,
                    "each output must be {\"txid\": 64 hex characters, \"vout\": integer}",
                ));
            }
        }
    }
    let confirmed = if mempool_only {
        vec![None; ops.len()]
    } else {
        ctx.reader.spenders(&ops).map_err(read_err)?
    };
    let pool = mempool(ctx);
    let mut out = Vec::with_capacity(ops.len());
    for (op, spender) in ops.iter().zip(confirmed) {
        let mut e = json!({"txid": op.txid, "vout": op.vout});
        if let Some(t) = pool.spender_of(op) {
            e["spendingtxid"] = json!(t);
        } else if let Some(s) = spender {
            e["spendingtxid"] = json!(s.txid);
            e["spendingvin"] = json!(s.vin);
            if let Some(h) = ctx.reader.block_hash(s.height).map_err(internal)? {
                e["blockhash"] = json!(h);
            }
            e["height"] = json!(s.height);
        }
        out.push(e);
    }
    Ok(Value::Array(out))
}
