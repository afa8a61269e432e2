//! Util group: address validation and index status.

use super::prelude::*;

/// `validateaddress ["addr"]`: Bitcoin Core's shape for a witness v1 (Taproot-like) output.
pub(super) fn validateaddress(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    let s = a.str(0)?;
    match cairn_primitives::Address::parse(s, &ctx.params.address_prefix) {
        Ok(addr) => Ok(json!({
            "isvalid": true,
            "address": s,
            "pubkey": addr.pubkey.to_hex(),
            "isscript": false,
            "iswitness": true,
            "witness_version": 1,
            "witness_program": addr.pubkey.to_hex(),
        })),
        Err(e) => Ok(json!({
            "isvalid": false,
            "error": e.to_string(),
            "error_locations": [],
        })),
    }
}

/// `getindexinfo ( "index_name" )`: Cairn's indexes are always on and written in the batch that
/// connects each block, so they are always synced to the tip.
pub(super) fn getindexinfo(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
    // One indexer writes all three in the same batches, so they are always at the same height.
    let p = ctx.reader.index_progress();
    let only = a.opt_str(0)?;
    let mut out = serde_json::Map::new();
    for name in ["txindex", "addressindex", "txospenderindex"] {
        if only.is_none_or(|o| o == name) {
            out.insert(
                name.into(),
                json!({"synced": p.synced(), "best_block_height": p.indexed_height}),
            );
        }
    }
    Ok(Value::Object(out))
}
