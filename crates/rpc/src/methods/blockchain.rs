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
    if verbosity > 3 {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!("verbosity must be 0, 1, 2 or 3, got {verbosity}"),
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
        let spent = block_spent_map(ctx, &hash)?;
        let mut txs = Vec::with_capacity(block.transactions.len());
        for (coins, tx) in block_input_coins(&block, info.height, &spent)
            .iter()
            .zip(&block.transactions)
        {
            let fee = fee_from_coins(tx, coins);
            let mut t = tx_json(tx, &ctx.params, Some(&place), fee);
            if verbosity == 3 {
                let prevouts: Vec<Option<Value>> = coins
                    .iter()
                    .map(|c| c.map(|c| prevout_json(&c, true, &ctx.params)))
                    .collect();
                add_prevouts(&mut t, tx, &prevouts, None);
            }
            txs.push(t);
        }
        Value::Array(txs)
    };
    Ok(v)
}

/// The coins a main-chain block spent (its undo data), by outpoint; empty off the main chain.
pub(super) fn block_spent_map(
    ctx: &RpcContext,
    hash: &BlockHash,
) -> RpcResult<std::collections::HashMap<OutPoint, Coin>> {
    Ok(ctx
        .reader
        .block_spent_coins(hash)
        .map_err(internal)?
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// For each transaction of `block` (at `height`), the coins its inputs spend, in input order:
/// from the block's undo data (`spent`) or, for an output of an earlier transaction of the same
/// block, from that transaction. `None` where neither knows the coin (a block off the main chain).
pub(super) fn block_input_coins(
    block: &Block,
    height: u64,
    spent: &std::collections::HashMap<OutPoint, Coin>,
) -> Vec<Vec<Option<Coin>>> {
    let mut created: std::collections::HashMap<Txid, (&Transaction, bool)> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(block.transactions.len());
    for tx in &block.transactions {
        let coins = tx
            .inputs
            .iter()
            .map(|i| match spent.get(&i.prevout) {
                Some(c) => Some(*c),
                None => {
                    let (parent, coinbase) = created.get(&i.prevout.txid)?;
                    let output = *parent.outputs.get(i.prevout.vout as usize)?;
                    Some(Coin {
                        output,
                        height,
                        coinbase: *coinbase,
                    })
                }
            })
            .collect();
        out.push(coins);
        created.insert(tx.txid(), (tx, tx.is_coinbase()));
    }
    out
}

/// Fee of a non-coinbase transaction whose spent coins are all known.
pub(super) fn fee_from_coins(tx: &Transaction, coins: &[Option<Coin>]) -> Option<u64> {
    if tx.is_coinbase() {
        return None;
    }
    let mut total = Amount::ZERO;
    for c in coins {
        total = total.checked_add((*c)?.output.value)?;
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

pub(super) fn getdifficulty(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let (_, hash) = tip(ctx)?;
    let info = ctx
        .reader
        .header_info(&hash)
        .map_err(internal)?
        .ok_or_else(|| internal("tip header missing"))?;
    Ok(json!(difficulty(ctx, info.header.bits)))
}

pub(super) fn getchaintips(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let tips = ctx.reader.chain_tips().map_err(internal)?;
    Ok(Value::Array(
        tips.iter()
            .map(|t| {
                json!({
                    "height": t.height,
                    "hash": t.hash,
                    "branchlen": t.branch_len,
                    "status": t.status.as_str(),
                })
            })
            .collect(),
    ))
}

/// A main-chain block named by hash or height (Bitcoin Core's `hash_or_height`).
fn main_chain_block(ctx: &RpcContext, a: &Args, i: usize) -> RpcResult<cairn_storage::HeaderInfo> {
    let hash: BlockHash = match a.raw(i) {
        Some(Value::Number(n)) => {
            let h = n
                .as_u64()
                .ok_or_else(|| rpc_err(INVALID_PARAMETER, "height must be non-negative"))?;
            ctx.reader.block_hash(h).map_err(internal)?.ok_or_else(|| {
                rpc_err(
                    INVALID_PARAMETER,
                    format!("target block height {h} after current tip"),
                )
            })?
        }
        _ => a.hash(i)?,
    };
    let info = ctx
        .reader
        .header_info(&hash)
        .map_err(internal)?
        .ok_or_else(|| rpc_err(INVALID_ADDRESS_OR_KEY, format!("block not found: {hash}")))?;
    if !info.is_on_main_chain {
        return Err(rpc_err(
            MISC_ERROR,
            format!("block {hash} is not on the main chain (no undo data for its statistics)"),
        ));
    }
    Ok(info)
}

/// Percentiles (10, 25, 50, 75, 90) of fee rates weighted by size, as Bitcoin Core.
fn feerate_percentiles(mut rates: Vec<(u64, u64)>) -> [u64; 5] {
    rates.sort_unstable();
    let total: u64 = rates.iter().map(|r| r.1).sum();
    let marks = [0.10, 0.25, 0.50, 0.75, 0.90].map(|p| (total as f64 * p) as u64);
    let mut out = [0u64; 5];
    let mut k = 0;
    let mut cum = 0u64;
    for (rate, size) in &rates {
        cum += size;
        while k < 5 && cum >= marks[k] {
            out[k] = *rate;
            k += 1;
        }
    }
    while k < 5 {
        out[k] = rates.last().map(|r| r.0).unwrap_or(0);
        k += 1;
    }
    out
}

fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// `getblockstats hash_or_height ( stats )`: Bitcoin Core's fields that apply (no segwit or
/// weight fields); fee rates in base units per byte.
pub(super) fn getblockstats(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let info = main_chain_block(ctx, a, 0)?;
    let wanted: Option<Vec<String>> = match a.raw(1) {
        None => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|s| s.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| rpc_err(INVALID_PARAMETER, "stats must be an array of names"))?,
        ),
        Some(_) => {
            return Err(rpc_err(
                INVALID_PARAMETER,
                "stats must be an array of names",
            ));
        }
    };
    let block = ctx
        .reader
        .block(&info.hash)
        .map_err(internal)?
        .ok_or_else(|| internal("main-chain block body missing"))?;
    let spent = block_spent_map(ctx, &info.hash)?;
    let coins = block_input_coins(&block, info.height, &spent);
    let mtp = ctx
        .reader
        .median_time_past(&info.hash)
        .map_err(internal)?
        .unwrap_or(info.header.time);
    let (mut ins, mut outs, mut total_out, mut total_size) = (0u64, 0u64, 0u64, 0u64);
    let (mut fees, mut sizes, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut utxo_increase: i64 = 0;
    for (tx, c) in block.transactions.iter().zip(&coins) {
        let size = tx.size() as u64;
        let out_value = tx.total_output().map(|v| v.0).unwrap_or(0);
        outs += tx.outputs.len() as u64;
        utxo_increase += tx.outputs.len() as i64 - tx.inputs.len() as i64;
        if tx.is_coinbase() {
            continue;
        }
        ins += tx.inputs.len() as u64;
        total_out += out_value;
        total_size += size;
        sizes.push(size);
        let fee = fee_from_coins(tx, c).unwrap_or(0);
        fees.push(fee);
        rates.push((fee / size.max(1), size));
    }
    let txs = block.transactions.len() as u64;
    let n = fees.len() as u64;
    let totalfee: u64 = fees.iter().sum();
    let subsidy = cairn_consensus::subsidy::block_subsidy(&ctx.params, info.height).0;
    let avg = |sum: u64| sum.checked_div(n).unwrap_or(0);
    let mut v = json!({
        "avgfee": avg(totalfee),
        "avgfeerate": totalfee.checked_div(total_size).unwrap_or(0),
        "avgtxsize": avg(total_size),
        "blockhash": info.hash,
        "feerate_percentiles": feerate_percentiles(rates.clone()),
        "height": info.height,
        "ins": ins,
        "maxfee": fees.iter().max().copied().unwrap_or(0),
        "maxfeerate": rates.iter().map(|r| r.0).max().unwrap_or(0),
        "maxtxsize": sizes.iter().max().copied().unwrap_or(0),
        "medianfee": median(fees.clone()),
        "mediantime": mtp,
        "mediantxsize": median(sizes.clone()),
        "minfee": fees.iter().min().copied().unwrap_or(0),
        "minfeerate": rates.iter().map(|r| r.0).min().unwrap_or(0),
        "mintxsize": sizes.iter().min().copied().unwrap_or(0),
        "outs": outs,
        "subsidy": subsidy,
        "time": info.header.time,
        "total_out": total_out,
        "total_size": total_size,
        "totalfee": totalfee,
        "txs": txs,
        "utxo_increase": utxo_increase,
    });
    if let (Some(wanted), Value::Object(m)) = (wanted, &mut v) {
        if let Some(bad) = wanted.iter().find(|w| !m.contains_key(w.as_str())) {
            return Err(rpc_err(
                INVALID_PARAMETER,
                format!(
                    "Invalid selected statistic '{}'",
                    crate::params::truncate(bad)
                ),
            ));
        }
        m.retain(|k, _| wanted.iter().any(|w| w == k));
    }
    Ok(v)
}

/// Default window of `getchaintxstats`: about one month of blocks at the chain's block time.
fn default_txstats_window(ctx: &RpcContext) -> u64 {
    (30 * 24 * 60 * 60 / ctx.params.block_time_secs.max(1)).max(1)
}

/// `getchaintxstats ( nblocks "blockhash" )`, as Bitcoin Core.
pub(super) fn getchaintxstats(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let end = match a.opt_hash::<BlockHash>(1)? {
        Some(h) => {
            let info = ctx
                .reader
                .header_info(&h)
                .map_err(internal)?
                .ok_or_else(|| rpc_err(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if !info.is_on_main_chain {
                return Err(rpc_err(INVALID_PARAMETER, "Block is not in main chain"));
            }
            info
        }
        None => {
            let (_, h) = tip(ctx)?;
            ctx.reader
                .header_info(&h)
                .map_err(internal)?
                .ok_or_else(|| internal("tip header missing"))?
        }
    };
    let nblocks = match a.opt_u64(0)? {
        Some(n) => {
            if n > 0 && n >= end.height {
                return Err(rpc_err(
                    INVALID_PARAMETER,
                    "Invalid block count: should be between 0 and the block's height - 1",
                ));
            }
            n
        }
        None => default_txstats_window(ctx).min(end.height.saturating_sub(1)),
    };
    let txcount = ctx
        .reader
        .chain_tx_count(end.height)
        .map_err(read_err)?
        .ok_or_else(|| internal("chain tx count missing below the tip"))?;
    let mut v = json!({
        "time": end.header.time,
        "txcount": txcount,
        "window_final_block_hash": end.hash,
        "window_final_block_height": end.height,
        "window_block_count": nblocks,
    });
    if nblocks > 0 {
        let start_height = end.height - nblocks;
        let start_hash = ctx
            .reader
            .block_hash(start_height)
            .map_err(internal)?
            .ok_or_else(|| internal("main-chain block missing"))?;
        let start = ctx
            .reader
            .header_info(&start_hash)
            .map_err(internal)?
            .ok_or_else(|| internal("main-chain header missing"))?;
        let start_count = ctx
            .reader
            .chain_tx_count(start_height)
            .map_err(read_err)?
            .ok_or_else(|| internal("chain tx count missing below the tip"))?;
        let interval = end.header.time as i64 - start.header.time as i64;
        let window_tx = txcount - start_count;
        v["window_tx_count"] = json!(window_tx);
        v["window_interval"] = json!(interval);
        if interval > 0 {
            v["txrate"] = json!(window_tx as f64 / interval as f64);
        }
    }
    Ok(v)
}
