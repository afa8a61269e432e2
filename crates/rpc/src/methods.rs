//! The method table of `docs/rpc.md`. Read methods run on the blocking pool against a chain
//! snapshot and the mempool's read lock; state changes go through [`crate::NodeControl`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_consensus::{Coin, Target};
use cairn_mempool::{Mempool, MempoolError};
use cairn_primitives::encoding::{decode_hex, encode_hex};
use cairn_primitives::{Amount, Block, BlockHash, OutPoint, Transaction, Txid};
use futures::future::BoxFuture;
use jsonrpsee::types::Params;
use jsonrpsee::{Extensions, RpcModule, SubscriptionMessage};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::error::*;
use crate::params::Args;
use crate::shapes::{TxPlace, address_of, header_json, tx_json};
use crate::{BlockSubmission, Notification, RpcContext};

/// Most blocks one `generatetoaddress` call may mine.
pub const MAX_GENERATE: u64 = 1_000;
/// Most transactions one `testmempoolaccept` call may test (Bitcoin Core's package limit).
pub const MAX_TEST_ACCEPT: usize = 25;
/// Default confirmation target of `estimatefee`, and its largest value.
pub const DEFAULT_CONF_TARGET: u64 = 6;
pub const MAX_CONF_TARGET: u64 = 1_008;
/// Blocks looked back over to estimate the network hash rate.
pub const HASHPS_WINDOW: u64 = 120;
/// A node whose tip is older than this is in initial block download (Bitcoin Core: 24 h).
pub const IBD_MAX_TIP_AGE_SECS: u64 = 24 * 60 * 60;

type Ctx = Arc<RpcContext>;
type Sync = fn(&RpcContext, &Args) -> RpcResult<Value>;
type Async = fn(Ctx, Args) -> BoxFuture<'static, RpcResult<Value>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn module(ctx: Ctx) -> Result<RpcModule<RpcContext>, RegisterError> {
    let mut m = RpcModule::from_arc(ctx);
    let reads: &[(&'static str, &'static [&'static str], Sync)] = &[
        ("getblockchaininfo", &[], getblockchaininfo),
        ("getblockcount", &[], getblockcount),
        ("getbestblockhash", &[], getbestblockhash),
        ("getblockhash", &["height"], getblockhash),
        ("getblockheader", &["blockhash", "verbose"], getblockheader),
        ("getblock", &["blockhash", "verbosity"], getblock),
        (
            "getrawtransaction",
            &["txid", "verbose", "blockhash"],
            getrawtransaction,
        ),
        ("gettxout", &["txid", "n", "include_mempool"], gettxout),
        ("gettxoutsetinfo", &[], gettxoutsetinfo),
        ("testmempoolaccept", &["rawtxs"], testmempoolaccept),
        ("getmempoolinfo", &[], getmempoolinfo),
        ("getrawmempool", &["verbose"], getrawmempool),
        ("getmempoolentry", &["txid"], getmempoolentry),
        ("estimatefee", &["conf_target"], estimatefee),
        ("getaddressbalance", &["address"], getaddressbalance),
        ("getaddressutxos", &["address"], getaddressutxos),
        ("getaddresstxids", &["address"], getaddresstxids),
        ("getmininginfo", &[], getmininginfo),
    ];
    for (name, names, f) in reads {
        let (names, f) = (*names, *f);
        m.register_blocking_method(name, move |params: Params<'_>, ctx: Ctx, _: Extensions| {
            let args = Args::parse(&params, names)?;
            f(&ctx, &args)
        })?;
    }
    let writes: &[(&'static str, &'static [&'static str], Async)] = &[
        (
            "sendrawtransaction",
            &["hexstring", "maxfeerate"],
            sendrawtransaction,
        ),
        ("submitblock", &["hexdata"], submitblock),
        (
            "generatetoaddress",
            &["nblocks", "address", "maxtries"],
            generatetoaddress,
        ),
        ("getpeerinfo", &[], getpeerinfo),
        ("getnetworkinfo", &[], getnetworkinfo),
        ("getconnectioncount", &[], getconnectioncount),
        ("stop", &[], stop),
    ];
    for (name, names, f) in writes {
        let (names, f) = (*names, *f);
        m.register_async_method(
            name,
            move |params: Params<'static>, ctx: Ctx, _: Extensions| async move {
                let args = Args::parse(&params, names)?;
                f(ctx, args).await
            },
        )?;
    }
    register_subscriptions(&mut m)?;
    Ok(m)
}

pub type RegisterError = jsonrpsee::core::RegisterMethodError;

fn register_subscriptions(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterError> {
    for (sub, notif, unsub, want_blocks) in [
        (
            "subscribe_newblocks",
            "newblocks",
            "unsubscribe_newblocks",
            true,
        ),
        (
            "subscribe_newtransactions",
            "newtransactions",
            "unsubscribe_newtransactions",
            false,
        ),
    ] {
        m.register_subscription(
            sub,
            notif,
            unsub,
            move |_params, pending, ctx: Ctx, _| async move {
                let mut rx = ctx.notifications.subscribe();
                let sink = pending.accept().await?;
                loop {
                    let n = tokio::select! {
                        _ = sink.closed() => return Ok(()),
                        n = rx.recv() => n,
                    };
                    let value = match n {
                        Ok(Notification::NewBlock {
                            hash,
                            height,
                            time,
                            ntx,
                        }) if want_blocks => {
                            json!({"hash": hash, "height": height, "time": time, "ntx": ntx})
                        }
                        Ok(Notification::NewTransaction { txid, size, fee }) if !want_blocks => {
                            json!({"txid": txid, "size": size, "fee": fee})
                        }
                        Ok(_) => continue,
                        // The subscriber fell too far behind: it is told by the connection closing.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return Ok(()),
                    };
                    let msg = SubscriptionMessage::from(serde_json::value::to_raw_value(&value)?);
                    if sink.send(msg).await.is_err() {
                        return Ok(());
                    }
                }
            },
        )?;
    }
    Ok(())
}

fn mempool(ctx: &RpcContext) -> std::sync::RwLockReadGuard<'_, Mempool> {
    // A panic while holding the lock cannot leave the pool half-changed in a way reads would
    // misreport worse than failing; keep serving.
    ctx.mempool.read().unwrap_or_else(|p| p.into_inner())
}

fn tip(ctx: &RpcContext) -> RpcResult<(u64, BlockHash)> {
    ctx.reader.tip().map_err(internal)
}

// ---------------------------------------------------------------- chain

fn getblockchaininfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
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

fn difficulty(ctx: &RpcContext, bits: u32) -> f64 {
    Target::from_compact(bits)
        .map(|t| t.difficulty(ctx.params.pow_limit()))
        .unwrap_or(0.0)
}

/// Bytes of files under `dir` (not following links; unreadable entries count zero).
fn dir_size(dir: &std::path::Path) -> u64 {
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

fn getblockcount(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    Ok(json!(tip(ctx)?.0))
}

fn getbestblockhash(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    Ok(json!(tip(ctx)?.1))
}

fn getblockhash(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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
fn header_value(
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

fn getblockheader(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let hash: BlockHash = a.hash(0)?;
    let verbose = a.opt_bool(1)?.unwrap_or(true);
    let (v, info) = header_value(ctx, &hash)?;
    if verbose {
        Ok(v)
    } else {
        Ok(json!(encode_hex(&info.header)))
    }
}

fn getblock(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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
fn fee_in_block(
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

fn getrawtransaction(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let txid: Txid = a.hash(0)?;
    let verbose = a.verbosity(1, 0)? > 0;
    let in_block: Option<BlockHash> = a.opt_hash(2)?;
    if in_block.is_none()
        && let Some(tx) = mempool(ctx).get(&txid)
    {
        return Ok(if verbose {
            tx_json(&tx, &ctx.params, None, None)
        } else {
            json!(encode_hex(&*tx))
        });
    }
    if let Some(info) = ctx.reader.transaction(&txid).map_err(internal)? {
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
        return Ok(tx_json(&info.tx, &ctx.params, Some(&place), None));
    }
    Err(rpc_err(
        INVALID_ADDRESS_OR_KEY,
        format!("no such mempool or blockchain transaction: {txid}"),
    ))
}

fn gettxout(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn gettxoutsetinfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let s = ctx.reader.utxo_stats().map_err(internal)?;
    Ok(json!({
        "height": s.height,
        "bestblock": s.best_hash,
        "txouts": s.txouts,
        "total_amount": s.total_amount.0,
        "utxo_digest": s.digest_hex(),
    }))
}

// ---------------------------------------------------------------- mempool

/// JSON-RPC error for a refused transaction: consensus failures are -25, policy -26.
pub fn mempool_error(e: &MempoolError) -> jsonrpsee::types::ErrorObjectOwned {
    let code = if e.is_policy() {
        VERIFY_REJECTED
    } else {
        VERIFY_ERROR
    };
    rpc_err(code, e.to_string())
}

fn decode_tx(hex: &str) -> RpcResult<Transaction> {
    decode_hex(hex).map_err(|e| {
        rpc_err(
            DESERIALIZATION_ERROR,
            format!("transaction decode failed: {e}"),
        )
    })
}

fn testmempoolaccept(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn getmempoolinfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
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

fn entry_json(e: &cairn_mempool::EntryInfo) -> Value {
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

fn getrawmempool(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn getmempoolentry(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn estimatefee(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let target = a.opt_u64(0)?.unwrap_or(DEFAULT_CONF_TARGET);
    if target == 0 || target > MAX_CONF_TARGET {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!("conf_target must be between 1 and {MAX_CONF_TARGET}"),
        ));
    }
    let rate = mempool(ctx).estimate_fee(target as u32);
    Ok(json!({"feerate": rate, "blocks": target}))
}

// ---------------------------------------------------------------- address index

/// The address's confirmed coins as a view: what the pool's address scan looks spent coins up
/// in, from memory rather than with one database read per pooled input.
fn address_view(coins: &[(OutPoint, Coin)]) -> cairn_consensus::MemoryUtxoSet {
    let mut view = cairn_consensus::MemoryUtxoSet::new();
    for (op, coin) in coins {
        view.insert(*op, *coin);
    }
    view
}

fn getaddressbalance(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn getaddressutxos(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

fn getaddresstxids(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

// ---------------------------------------------------------------- mining

fn getmininginfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    let (height, hash) = tip(ctx)?;
    let info = ctx
        .reader
        .header_info(&hash)
        .map_err(internal)?
        .ok_or_else(|| internal("tip header missing"))?;
    let target = Target::from_compact(info.header.bits);
    Ok(json!({
        "blocks": height,
        "difficulty": difficulty(ctx, info.header.bits),
        "networkhashps": network_hashps(ctx, height, &info)?,
        "pooledtx": mempool(ctx).info().size,
        "chain": ctx.params.chain_id,
        "mining": ctx.control.mining(),
        "target": target.map(|t| hex::encode(t.0.to_be_bytes::<32>())).unwrap_or_default(),
    }))
}

/// Work done over the last [`HASHPS_WINDOW`] blocks divided by the time they took.
fn network_hashps(
    ctx: &RpcContext,
    height: u64,
    tip: &cairn_storage::HeaderInfo,
) -> RpcResult<f64> {
    if height == 0 {
        return Ok(0.0);
    }
    let start_height = height.saturating_sub(HASHPS_WINDOW);
    let Some(start_hash) = ctx.reader.block_hash(start_height).map_err(internal)? else {
        return Ok(0.0);
    };
    let Some(start) = ctx.reader.header_info(&start_hash).map_err(internal)? else {
        return Ok(0.0);
    };
    let secs = tip.header.time.saturating_sub(start.header.time).max(1);
    let work = tip.chain_work.0.saturating_sub(start.chain_work.0);
    let work_f: f64 = work.to_string().parse().unwrap_or(0.0);
    Ok(work_f / secs as f64)
}

fn generatetoaddress(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let n = a.u64(0)?;
        let pk = a.address(1, &ctx.params.address_prefix)?;
        if !ctx.params.is_dev_chain() {
            return Err(rpc_err(
                MISC_ERROR,
                "generatetoaddress is only available on dev chains (this chain has real difficulty: use --mine)",
            ));
        }
        if n > MAX_GENERATE {
            return Err(rpc_err(
                INVALID_PARAMETER,
                format!("nblocks must be at most {MAX_GENERATE}"),
            ));
        }
        let hashes = ctx
            .control
            .generate(n as u32, pk)
            .await
            .map_err(|e| rpc_err(MISC_ERROR, e))?;
        Ok(json!(hashes))
    })
}

fn submitblock(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let block: Block = decode_hex(a.str(0)?)
            .map_err(|e| rpc_err(DESERIALIZATION_ERROR, format!("block decode failed: {e}")))?;
        Ok(match ctx.control.submit_block(block).await {
            BlockSubmission::Accepted => Value::Null,
            BlockSubmission::Duplicate => json!("duplicate"),
            BlockSubmission::Inconclusive => json!("inconclusive"),
            BlockSubmission::Rejected(r) => json!(format!("rejected: {r}")),
        })
    })
}

fn sendrawtransaction(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
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

// ---------------------------------------------------------------- network and control

fn getpeerinfo(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let Some(net) = &ctx.network else {
            return Ok(json!([]));
        };
        let peers = net.peers().await;
        Ok(Value::Array(
            peers
                .iter()
                .map(|p| {
                    json!({
                        "id": p.peer_id.to_string(),
                        "addr": p.address.to_string(),
                        "inbound": p.direction == cairn_p2p::Direction::Inbound,
                        "connection_type": if p.direction == cairn_p2p::Direction::Inbound { "inbound" } else { "outbound-full-relay" },
                        "conntime": p.connected_since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "synced_height": p.status.as_ref().map(|s| s.best_height),
                        "protocols": p.protocols,
                        "subver": p.agent_version,
                    })
                })
                .collect(),
        ))
    })
}

fn getnetworkinfo(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let relayfee = mempool(&ctx).info().min_relay_fee_rate;
        let (peer_id, addrs, peers) = match &ctx.network {
            Some(net) => (
                Some(net.local_peer_id()),
                net.listen_addrs().await,
                net.peers().await,
            ),
            None => (None, Vec::new(), Vec::new()),
        };
        let inbound = peers
            .iter()
            .filter(|p| p.direction == cairn_p2p::Direction::Inbound)
            .count();
        // The service reports its listen addresses with `/p2p/<peer id>` already appended.
        let local: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "subversion": format!("/cairnd:{}/", env!("CARGO_PKG_VERSION")),
            "protocolversion": 1,
            "connections": peers.len(),
            "connections_in": inbound,
            "connections_out": peers.len() - inbound,
            "networkactive": ctx.network.is_some(),
            "peerid": peer_id.map(|p| p.to_string()),
            "localaddresses": local,
            "relayfee": relayfee,
        }))
    })
}

fn getconnectioncount(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let n = match &ctx.network {
            Some(net) => net.peers().await.len(),
            None => 0,
        };
        Ok(json!(n))
    })
}

fn stop(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        ctx.control.request_stop();
        Ok(json!("Cairn server stopping"))
    })
}
