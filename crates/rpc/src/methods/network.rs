//! Network group: peers and the node's own network state.

use super::prelude::*;

pub(super) fn getpeerinfo(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
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

pub(super) fn getnetworkinfo(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
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

pub(super) fn getconnectioncount(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let n = match &ctx.network {
            Some(net) => net.peers().await.len(),
            None => 0,
        };
        Ok(json!(n))
    })
}

/// `getnettotals`: bytes of gossip and sync payloads received and sent (application payloads:
/// transport framing and encryption are not counted).
pub(super) fn getnettotals(ctx: Ctx, _: Args) -> BoxFuture<'static, RpcResult<Value>> {
    Box::pin(async move {
        let m = ctx
            .network
            .as_ref()
            .map(|n| n.metrics())
            .unwrap_or_default();
        let millis = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(json!({
            "totalbytesrecv": m.gossip_bytes_in + m.sync_bytes_in,
            "totalbytessent": m.gossip_bytes_out + m.sync_bytes_out,
            "timemillis": millis,
        }))
    })
}
