//! Control group: stopping the node.

use super::prelude::*;

pub(super) fn stop(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        ctx.control.request_stop();
        Ok(json!("Cairn server stopping"))
    })
}
