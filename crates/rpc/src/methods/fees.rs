//! Fee estimation.

use super::prelude::*;

pub(super) fn estimatefee(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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

/// `estimatesmartfee [conf_target, estimate_mode]` as Bitcoin Core shapes it, the rate in base
/// units per byte like every Cairn fee rate. The mode (`economical`, `conservative`, `unset`)
/// is accepted for compatibility; the estimator has one mode.
pub(super) fn estimatesmartfee(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let target = a.u64(0)?;
    if target == 0 || target > MAX_CONF_TARGET {
        return Err(rpc_err(
            INVALID_PARAMETER,
            format!("conf_target must be between 1 and {MAX_CONF_TARGET}"),
        ));
    }
    if let Some(mode) = a.opt_str(1)?
        && !["unset", "economical", "conservative"].contains(&mode.to_ascii_lowercase().as_str())
    {
        return Err(rpc_err(
            INVALID_PARAMETER,
            "Invalid estimate_mode parameter",
        ));
    }
    let rate = mempool(ctx).estimate_fee(target as u32);
    Ok(json!({"feerate": rate, "blocks": target}))
}
