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
