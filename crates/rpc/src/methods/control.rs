//! Control group: stopping the node, uptime, help.

use super::prelude::*;

pub(super) fn stop(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        ctx.control.request_stop();
        Ok(json!("Cairn server stopping"))
    })
}

pub(super) fn uptime(ctx: &RpcContext, _: &Args) -> RpcResult<Value> {
    Ok(json!(ctx.started.elapsed().as_secs()))
}

/// `help ( "command" )`: Bitcoin Core's plain-text answers, from [`super::help::METHODS`].
pub(super) fn help(_: &RpcContext, a: &Args) -> RpcResult<Value> {
    Ok(json!(super::help::text(a.opt_str(0)?)))
}
