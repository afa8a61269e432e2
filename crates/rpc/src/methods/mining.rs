//! Mining group: mining info, hash rate, block generation and submission.

use super::prelude::*;

pub(super) fn getmininginfo(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
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
pub(super) fn network_hashps(
    ctx: &RpcContext,
    height: u64,
    tip: &cairn_storage::HeaderInfo,
) -> RpcResult<f64> {
    network_hashps_over(ctx, height, tip, HASHPS_WINDOW)
}

/// Work done over the `window` blocks ending at `tip` (at `height`) divided by their time.
fn network_hashps_over(
    ctx: &RpcContext,
    height: u64,
    tip: &cairn_storage::HeaderInfo,
    window: u64,
) -> RpcResult<f64> {
    if height == 0 {
        return Ok(0.0);
    }
    let start_height = height.saturating_sub(window);
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

/// `getnetworkhashps ( nblocks height )`: `nblocks` <= 0 means [`HASHPS_WINDOW`] (difficulty
/// changes every block, so Bitcoin Core's "since the last change" has no meaning here); `height`
/// -1 (the default) is the tip.
pub(super) fn getnetworkhashps(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let window = match a.opt_i64(0)? {
        Some(n) if n > 0 => n as u64,
        _ => HASHPS_WINDOW,
    };
    let (tip_height, tip_hash) = tip(ctx)?;
    let (height, hash) = match a.opt_i64(1)? {
        None | Some(-1) => (tip_height, tip_hash),
        Some(h) if h >= 0 && (h as u64) <= tip_height => {
            let hash = ctx
                .reader
                .block_hash(h as u64)
                .map_err(internal)?
                .ok_or_else(|| internal("main-chain block missing"))?;
            (h as u64, hash)
        }
        Some(h) => {
            return Err(rpc_err(
                INVALID_PARAMETER,
                format!("height {h} is neither -1 nor a main-chain height (tip {tip_height})"),
            ));
        }
    };
    let info = ctx
        .reader
        .header_info(&hash)
        .map_err(internal)?
        .ok_or_else(|| internal("main-chain header missing"))?;
    Ok(json!(network_hashps_over(ctx, height, &info, window)?))
}

pub(super) fn generatetoaddress(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
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

pub(super) fn submitblock(ctx: Ctx, a: Args) -> BoxFuture<'static, RpcResult<Value>> {
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
