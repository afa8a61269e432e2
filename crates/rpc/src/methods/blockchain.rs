//! Blockchain group: chain, block and UTXO-set reads.

use super::prelude::*;

pub(super) fn getblockchaininfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let tip = ctx.reader.tip_info().map_err(internal)?;
    let best_header = ctx.reader.best_header().map_err(internal)?;
    let info = ctx
        .reader
        .header_info(&tip.hash)
        .map_err(internal)?
        .ok_or_else(|| internal("tip header missing"))?;
    let mtp = ctx
        .reader
        .median_time_past(&tip.hash)
        .map_err(internal)?
        .unwrap_or(info.header.time);
    let target_height = best_header
        .height
        .max(ctx.control.best_peer_height())
        .max(tip.height);
    let progress = if target_height == 0 {
        1.0
    } else {
        tip.height as f64 / target_height as f64
    };
    let ibd =
        tip.height < target_height || info.header.time.saturating_add(IBD_MAX_TIP_AGE_SECS) < now();
    Ok(json!({
        "chain": ctx.params.chain_id,
        "blocks": tip.height,
        "headers": best_header.height,
        "bestblockhash": tip.hash,
        "difficulty": difficulty(ctx, info.header.bits),
        "mediantime": mtp,
        "time": info.header.time,
        "chainwork": tip.chain_work.to_hex(),
        "verificationprogress": progress,
        "initialblockdownload": ibd,
        "size_on_disk": dir_size(&ctx.datadir),
        "genesishash": ctx.params.genesis_hash(),
        "addressprefix": ctx.params.address_prefix,
        "coinbasematurity": ctx.params.coinbase_maturity,
    }))
}

pub(super) fn difficulty(ctx: &RpcContext, bits: u32) -> f64 {
    Target::from_compact(bits)
        .map(|t| t.difficulty(ctx.params.pow_limit()))
        .unwrap_or(0.0)
}

/// Bytes of files under `dir` (not following links; unreadable entries count zero).
pub(super) fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub(super) fn getblockcount(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    Ok(json!(tip(ctx)?.0))
}

pub(super) fn getbestblockhash(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    Ok(json!(tip(ctx)?.1))
}

pub(super) fn getblockhash(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let height = a.u64(0)?;
    match ctx.reader.block_hash(height).map_err(internal)? {
        Some(h) => Ok(json!(h)),
        None => Err(rpc_err(
            INVALID_PARAMETER,
            format!(
                "block height {height} out of range (tip is {})",
                tip(ctx)?.0
            ),
        )),
    }
}

/// Header JSON of a known block, with confirmations relative to the main chain.
pub(super) fn header_value(
    ctx: &RpcContext,
    hash: &BlockHash,
) -> RpcResult<(Value, cairn_storage::HeaderInfo)> {
    let info = ctx
        .reader
        .header_info(hash)
        .map_err(internal)?
        .ok_or_else(|| rpc_err(INVALID_ADDRESS_OR_KEY, format!("block not found: {hash}")))?;
    // From the same snapshot as the header: never an underflow when a block connects between.
    let confirmations: i64 = if info.is_on_main_chain {
        info.confirmations as i64
    } else {
        -1
    };
    let next = if info.is_on_main_chain {
        ctx.reader.block_hash(info.height + 1).map_err(internal)?
    } else {
        None
    };
    let mtp = ctx
        .reader
        .median_time_past(hash)
        .map_err(internal)?
        .unwrap_or(info.header.time);
    let ntx = ctx
        .reader
        .block(hash)
        .map_err(internal)?
        .map(|b| b.transactions.len());
    let v = header_json(
        &info.header,
        info.height,
        confirmations,
        &info.chain_work.to_hex(),
        mtp,
        ntx,
        next,
        &ctx.params,
    );
    Ok((v, info))
}

pub(super) fn getblockheader(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let hash: BlockHash = a.hash(0)?;
    let verbose = a.opt_bool(1)?.unwrap_or(true);
    let (v, info) = header_value(ctx, &hash)?;
    if verbose {
        Ok(v)
    } else {
        Ok(json!(encode_hex(&info.header)))
    }
}

pub(super) fn getblock(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let hash: BlockHash = a.hash(0)?;
    let verbosity = a.verbosity(1, 1)?;
    if verbosity > 2 {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!("verbosity must be 0, 1 or 2, got {verbosity}"),
        ));
    }
    let block = ctx.reader.block(&hash).map_err(internal)?.ok_or_else(|| {
        rpc_err(
            INVALID_ADDRESS_OR_KEY,
            format!("block not found (or not yet downloaded): {hash}"),
        )
    })?;
    if verbosity == 0 {
        return Ok(json!(encode_hex(&block)));
    }
    let (mut v, info) = header_value(ctx, &hash)?;
    v["size"] = json!(block.size());
    v["tx"] = if verbosity == 1 {
        json!(
            block
                .transactions
                .iter()
                .map(|t| t.txid())
                .collect::<Vec<_>>()
        )
    } else {
        let place = TxPlace {
            block_hash: hash,
            height: info.height,
            block_time: info.header.time,
            confirmations: info.confirmations,
        };
        // Fees from the block's undo data (the coins it spent), one read for the whole block,
        // as Bitcoin Core does; a block without undo data (not on the main chain) shows none.
        let spent: std::collections::HashMap<OutPoint, u64> = ctx
            .reader
            .block_spent_coins(&hash)
            .map_err(internal)?
            .unwrap_or_default()
            .into_iter()
            .map(|(op, c)| (op, c.output.value.0))
            .collect();
        let mut created: std::collections::HashMap<Txid, &Transaction> =
            std::collections::HashMap::new();
        let mut txs = Vec::with_capacity(block.transactions.len());
        for tx in &block.transactions {
            let fee = if tx.is_coinbase() {
                None
            } else {
                fee_in_block(tx, &spent, &created)
            };
            txs.push(tx_json(tx, &ctx.params, Some(&place), fee));
            created.insert(tx.txid(), tx);
        }
        Value::Array(txs)
    };
    Ok(v)
}

/// Fee of a transaction in a block: its inputs' values are coins the block spent (undo data)
/// or outputs of earlier transactions of the same block.
pub(super) fn fee_in_block(
    tx: &Transaction,
    spent: &std::collections::HashMap<OutPoint, u64>,
    same_block: &std::collections::HashMap<Txid, &Transaction>,
) -> Option<u64> {
    let mut total = Amount::ZERO;
    for i in &tx.inputs {
        let value = match spent.get(&i.prevout) {
            Some(v) => Amount(*v),
            None => {
                same_block
                    .get(&i.prevout.txid)?
                    .outputs
                    .get(i.prevout.vout as usize)?
                    .value
            }
        };
        total = total.checked_add(value)?;
    }
    Some(total.checked_sub(tx.total_output()?)?.0)
}

pub(super) fn gettxout(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let txid: Txid = a.hash(0)?;
    let n = a.u64(1)?;
    let vout = u32::try_from(n).map_err(|_| rpc_err(INVALID_PARAMETER, "n out of range"))?;
    let include_mempool = a.opt_bool(2)?.unwrap_or(true);
    let op = OutPoint::new(txid, vout);
    // The coin and the tip from one snapshot: confirmations never underflow.
    let ((tip_height, tip_hash), mut coins) = ctx.reader.coins_at_tip(&[op]).map_err(internal)?;
    let pool = mempool(ctx);
    if include_mempool && pool.spender_of(&op).is_some() {
        return Ok(Value::Null);
    }
    let coin_json = |coin: &Coin, confirmations: u64| {
        json!({
            "bestblock": tip_hash,
            "confirmations": confirmations,
            "value": coin.output.value.0,
            "address": address_of(&coin.output.pubkey, &ctx.params),
            "pubkey": coin.output.pubkey.to_hex(),
            "coinbase": coin.coinbase,
        })
    };
    if let Some(coin) = coins.pop().flatten() {
        return Ok(coin_json(&coin, tip_height.saturating_sub(coin.height) + 1));
    }
    if include_mempool && let Some(out) = pool.output(&op) {
        return Ok(coin_json(
            &Coin {
                output: out,
                height: tip_height + 1,
                coinbase: false,
            },
            0,
        ));
    }
    Ok(Value::Null)
}

pub(super) fn gettxoutsetinfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let s = ctx.reader.utxo_stats().map_err(internal)?;
    Ok(json!({
        "height": s.height,
        "bestblock": s.best_hash,
        "txouts": s.txouts,
        "total_amount": s.total_amount.0,
        "utxo_digest": s.digest_hex(),
    }))
}
