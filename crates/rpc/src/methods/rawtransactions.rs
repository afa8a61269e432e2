//! Raw transactions group: `getrawtransaction`.

use super::prelude::*;

pub(super) fn getrawtransaction(ctx: &RpcContext, a: &Args) -> RpcResult<Value> {
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
