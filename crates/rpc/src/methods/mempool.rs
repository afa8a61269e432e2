//! Mempool group: submission and test of transactions, pool contents.

use cairn_storage::StorageError;

use super::prelude::*;

/// Most transactions `getmempoolancestors` / `getmempooldescendants` report.
pub const MAX_RELATIVES: usize = 10_000;
/// Most buckets of `getmempoolinfo`'s fee-rate histogram.
pub const MAX_FEE_HISTOGRAM_BUCKETS: usize = 64;

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
        if indexed_or_none(ctx.reader.transaction(&txid))?.is_some() {
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

pub(super) fn getmempoolinfo(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let bounds = fee_histogram_bounds(a)?;
    let pool = mempool(ctx);
    let i = pool.info();
    let mut v = json!({
        "loaded": true,
        "size": i.size,
        "bytes": i.bytes,
        "usage": i.usage,
        "maxmempool": i.max_bytes,
        "mempoolminfee": i.min_fee_rate,
        "minrelaytxfee": i.min_relay_fee_rate,
        "dustthreshold": i.dust_threshold.0,
    });
    if let Some(bounds) = bounds {
        let mut buckets: Vec<(u64, u64, u64)> = vec![(0, 0, 0); bounds.len()];
        for t in pool.txids() {
            let Some(e) = pool.entry(&t) else {
                continue;
            };
            // The bucket of the highest lower bound not above the rate; rates below the first
            // bound count in the first bucket.
            let k = bounds
                .partition_point(|b| *b <= e.fee_rate)
                .saturating_sub(1);
            buckets[k].0 += 1;
            buckets[k].1 += e.size as u64;
            buckets[k].2 += e.fee.0;
        }
        v["fee_histogram"] = Value::Array(
            bounds
                .iter()
                .enumerate()
                .map(|(k, from)| {
                    json!({
                        "from": from,
                        "to": bounds.get(k + 1),
                        "count": buckets[k].0,
                        "size": buckets[k].1,
                        "fees": buckets[k].2,
                    })
                })
                .collect(),
        );
    }
    Ok(v)
}

/// The optional `fee_histogram` argument of `getmempoolinfo`: ascending fee-rate lower bounds
/// (base units per byte), at most [`MAX_FEE_HISTOGRAM_BUCKETS`].
fn fee_histogram_bounds(a: &Args) -> RpcResult<Option<Vec<u64>>> {
    let Some(raw) = a.raw(0) else {
        return Ok(None);
    };
    let bad = || {
        rpc_err(
            INVALID_PARAMETER,
            format!(
                "fee_histogram must be 1 to {MAX_FEE_HISTOGRAM_BUCKETS} ascending non-negative integers"
            ),
        )
    };
    let list = raw.as_array().ok_or_else(bad)?;
    if list.is_empty() || list.len() > MAX_FEE_HISTOGRAM_BUCKETS {
        return Err(bad());
    }
    let bounds: Vec<u64> = list
        .iter()
        .map(Value::as_u64)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad());
    }
    Ok(Some(bounds))
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
        "vsize": e.size,
        "fees": {
            "base": e.fee.0,
            "modified": e.fee.0,
            "ancestor": e.ancestor_fees.0,
            "descendant": e.descendant_fees.0,
        },
    })
}

/// Pooled ancestors (`up`) or descendants of `txid`, walking `depends` / `spentby`, at most
/// [`MAX_RELATIVES`] (the pool's package limits keep real answers far below it).
fn relatives(pool: &cairn_mempool::Mempool, txid: &Txid, up: bool) -> Vec<Txid> {
    let mut seen: std::collections::HashSet<Txid> = std::collections::HashSet::new();
    let mut stack = vec![*txid];
    let mut out = Vec::new();
    while let Some(t) = stack.pop() {
        let Some(e) = pool.entry(&t) else { continue };
        let next = if up { e.depends } else { e.spent_by };
        for n in next {
            if out.len() >= MAX_RELATIVES {
                return out;
            }
            if seen.insert(n) {
                out.push(n);
                stack.push(n);
            }
        }
    }
    out
}

fn mempool_relatives(ctx: &RpcContext, a: &Args, up: bool) -> RpcResult<Value> {
    let txid: Txid = a.hash(0)?;
    let verbose = a.opt_bool(1)?.unwrap_or(false);
    let pool = mempool(ctx);
    if !pool.contains(&txid) {
        return Err(rpc_err(
            INVALID_ADDRESS_OR_KEY,
            format!("transaction not in mempool: {txid}"),
        ));
    }
    let found = relatives(&pool, &txid, up);
    if !verbose {
        return Ok(json!(found));
    }
    let mut map = serde_json::Map::new();
    for t in found {
        if let Some(e) = pool.entry(&t) {
            map.insert(t.to_hex(), entry_json(&e));
        }
    }
    Ok(Value::Object(map))
}

pub(super) fn getmempoolancestors(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    mempool_relatives(ctx, a, true)
}

pub(super) fn getmempooldescendants(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    mempool_relatives(ctx, a, false)
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

/// `sendrawtransaction`'s default `maxfeerate`: 0.10 coins per kB, as Bitcoin Core.
pub const DEFAULT_MAX_FEE_RATE_PER_KB: u64 = 10_000_000;

/// The fee of `tx` if every input is known (pool first, then the chain); `None` otherwise (the
/// mempool then reports the missing input, or holds the orphan).
fn known_fee(ctx: &RpcContext, tx: &Transaction) -> RpcResult<Option<u64>> {
    let mut input = 0u64;
    {
        let pool = mempool(ctx);
        for i in &tx.inputs {
            let value = match pool.output(&i.prevout) {
                Some(o) => o.value.0,
                None => match ctx.reader.coin(&i.prevout).map_err(internal)? {
                    Some(c) => c.output.value.0,
                    None => return Ok(None),
                },
            };
            input = input.saturating_add(value);
        }
    }
    let output = tx
        .outputs
        .iter()
        .fold(0u64, |sum, o| sum.saturating_add(o.value.0));
    Ok(input.checked_sub(output))
}

/// `maxfeerate` (coins per kB; 0: no limit): refuses a transaction that pays more, before it
/// reaches the mempool. A guard against a mistyped fee, as Bitcoin Core's.
fn check_max_fee_rate(fee: u64, size: usize, max_per_kb: u64) -> RpcResult<()> {
    let size = size as u128;
    if max_per_kb == 0 || u128::from(fee) * 1000 <= u128::from(max_per_kb) * size {
        return Ok(());
    }
    let rate = u64::try_from(u128::from(fee) * 1000 / size.max(1)).unwrap_or(u64::MAX);
    Err(rpc_err(
        VERIFY_REJECTED,
        format!(
            "max-fee-exceeded: fee rate {} coins/kB is above maxfeerate {} coins/kB (pass a higher maxfeerate, or 0, if this fee is meant)",
            Amount(rate).to_coin_string(),
            Amount(max_per_kb).to_coin_string()
        ),
    ))
}

pub(super) fn sendrawtransaction(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let tx = decode_tx(a.str(0)?)?;
        let max_per_kb = a.opt_coins(1)?.unwrap_or(DEFAULT_MAX_FEE_RATE_PER_KB);
        let txid = tx.txid();
        // These lookups are point reads (microseconds), done on this worker: a trip to the
        // blocking pool and back cost more than the work (rpc_bench: 0.40 -> 0.48 of the
        // verify rate).
        let in_chain = match ctx.reader.is_confirmed_now(&txid) {
            Ok(confirmed) => confirmed,
            // The transaction index follows each connect in the background and can lag the
            // tip by seconds under load. Waiting for it (up to 3 s a call) made a burst sent
            // right after a large block take 16 s instead of 2 on the 20-host testnet. So
            // decide as Bitcoin Core does without an index: in the chain if one of its outputs
            // is an unspent coin at the tip. One whose outputs are all spent is then refused
            // by the pool for its spent inputs (-25), as in Core.
            Err(StorageError::IndexBehind { .. }) => {
                let outpoints: Vec<OutPoint> = (0..tx.outputs.len())
                    .filter_map(|vout| u32::try_from(vout).ok())
                    .map(|vout| OutPoint { txid, vout })
                    .collect();
                let (_, coins) = ctx.reader.coins_at_tip(&outpoints).map_err(internal)?;
                coins.iter().any(Option::is_some)
            }
            Err(e) => return Err(internal(e)),
        };
        let fee = if max_per_kb > 0 && !in_chain {
            known_fee(&ctx, &tx)?
        } else {
            None
        };
        if in_chain {
            return Err(rpc_err(
                VERIFY_ALREADY_IN_CHAIN,
                format!("transaction {txid} already in block chain"),
            ));
        }
        if let Some(fee) = fee {
            check_max_fee_rate(fee, tx.size(), max_per_kb)?;
        }
        match ctx.control.send_transaction(tx).await {
            Ok(_) => Ok(json!(txid)),
            // Resubmitting a pooled transaction is not an error for the caller (as Bitcoin Core).
            Err(MempoolError::AlreadyInPool { .. }) => Ok(json!(txid)),
            Err(e) => Err(mempool_error(&e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_fee_rate() {
        // 0.10 coins/kB = 10,000 base units per byte.
        assert!(check_max_fee_rate(10_000 * 200, 200, DEFAULT_MAX_FEE_RATE_PER_KB).is_ok());
        let e = check_max_fee_rate(10_000 * 200 + 1, 200, DEFAULT_MAX_FEE_RATE_PER_KB).unwrap_err();
        assert_eq!(e.code(), VERIFY_REJECTED);
        assert!(e.message().contains("max-fee-exceeded"), "{}", e.message());
        assert!(
            check_max_fee_rate(u64::MAX, 1, 0).is_ok(),
            "0 means no limit"
        );
    }
}
