//! Mempool group: submission and test of transactions, pool contents.

use super::prelude::*;

/// JSON-RPC error for a refused transaction: consensus failures are -25, policy -26.
pub(super) fn mempool_error(e: &MempoolError) -> jsonrpsee::types::ErrorObjectOwned {
    let code = if e.is_policy() {
        VERIFY_REJECTED
    } else {
        VERIFY_ERROR
    };
    rpc_err(code, e.to_string())
}

pub(super) fn decode_tx(hex: &str) -> RpcResult<Transaction> {
    decode_hex(hex).map_err(|e| {
        rpc_err(
            DESERIALIZATION_ERROR,
            format!("transaction decode failed: {e}"),
        )
    })
}

pub(super) fn testmempoolaccept(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let raw = a.array(0)?;
    if raw.is_empty() || raw.len() > MAX_TEST_ACCEPT {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!(
                "rawtxs must hold 1 to {MAX_TEST_ACCEPT} transactions, got {}",
                raw.len()
            ),
        ));
    }
    let (tip_height, _) = tip(ctx)?;
    let pool = mempool(ctx);
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let hex = r
            .as_str()
            .ok_or_else(|| rpc_err(INVALID_PARAMS, "rawtxs must be an array of hex strings"))?;
        let tx = decode_tx(hex)?;
        let txid = tx.txid();
        let mut entry = json!({"txid": txid, "wtxid": tx.wtxid(), "vsize": tx.size()});
        if ctx.reader.transaction(&txid).map_err(internal)?.is_some() {
            entry["allowed"] = json!(false);
            entry["reject-reason"] = json!("txn-already-known");
        } else {
            match pool.test_accept(&tx, &ctx.reader, tip_height, now()) {
                Ok(t) => {
                    entry["allowed"] = json!(true);
                    entry["fees"] = json!({"base": t.fee.0});
                }
                Err(e) => {
                    entry["allowed"] = json!(false);
                    entry["reject-reason"] = json!(e.to_string());
                }
            }
        }
        out.push(entry);
    }
    Ok(Value::Array(out))
}

pub(super) fn getmempoolinfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let i = mempool(ctx).info();
    Ok(json!({
        "loaded": true,
        "size": i.size,
        "bytes": i.bytes,
        "usage": i.usage,
        "maxmempool": i.max_bytes,
        "mempoolminfee": i.min_fee_rate,
        "minrelaytxfee": i.min_relay_fee_rate,
        "dustthreshold": i.dust_threshold.0,
    }))
}

pub(super) fn entry_json(e: &cairn_mempool::EntryInfo) -> Value {
    json!({
        "size": e.size,
        "fee": e.fee.0,
        "feerate": e.fee_rate,
        "time": e.time,
        "height": e.height,
        "depends": e.depends,
        "spentby": e.spent_by,
        "ancestorcount": e.ancestor_count,
        "ancestorsize": e.ancestor_size,
        "ancestorfees": e.ancestor_fees.0,
        "descendantcount": e.descendant_count,
        "descendantsize": e.descendant_size,
        "descendantfees": e.descendant_fees.0,
    })
}

pub(super) fn getrawmempool(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let verbose = a.opt_bool(0)?.unwrap_or(false);
    let pool = mempool(ctx);
    let txids = pool.txids();
    if !verbose {
        return Ok(json!(txids));
    }
    let mut map = serde_json::Map::new();
    for t in txids {
        if let Some(e) = pool.entry(&t) {
            map.insert(t.to_hex(), entry_json(&e));
        }
    }
    Ok(Value::Object(map))
}

pub(super) fn getmempoolentry(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let txid: Txid = a.hash(0)?;
    mempool(ctx)
        .entry(&txid)
        .map(|e| entry_json(&e))
        .ok_or_else(|| {
            rpc_err(
                INVALID_ADDRESS_OR_KEY,
                format!("transaction not in mempool: {txid}"),
            )
        })
}

pub(super) fn sendrawtransaction(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let tx = decode_tx(a.str(0)?)?;
        let txid = tx.txid();
        let reader = ctx.reader.clone();
        let in_chain = tokio::task::spawn_blocking(move || reader.transaction(&txid))
            .await
            .map_err(internal)?
            .map_err(internal)?
            .is_some();
        if in_chain {
            return Err(rpc_err(
                VERIFY_ALREADY_IN_CHAIN,
                format!("transaction {txid} already in block chain"),
            ));
        }
        match ctx.control.send_transaction(tx).await {
            Ok(_) => Ok(json!(txid)),
            // Resubmitting a pooled transaction is not an error for the caller (as Bitcoin Core).
            Err(MempoolError::AlreadyInPool { .. }) => Ok(json!(txid)),
            Err(e) => Err(mempool_error(&e)),
        }
    })
}
