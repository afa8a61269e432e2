//! WebSocket subscriptions: `subscribe_newblocks` and `subscribe_newtransactions`.

use jsonrpsee::{RpcModule, SubscriptionMessage};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Ctx, RegisterError};
use crate::{Notification, RpcContext};

pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterError> {
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
                        // The subscriber fell too far behind: the subscription ends with an error
                        // notification (`params.error`), so it knows what it missed is lost.
                        Err(RecvError::Lagged(n)) => {
                            return Err(format!(
                                "subscriber too slow: {n} notifications dropped; subscribe again"
                            )
                            .into());
                        }
                        Err(RecvError::Closed) => return Ok(()),
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
