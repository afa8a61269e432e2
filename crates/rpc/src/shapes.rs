//! JSON shapes of RPC results, following Bitcoin Core's field names where it has the method.
//! Amounts are integer base units; hashes are hex of their bytes in order.

use cairn_consensus::{ChainParams, Target};
use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, BlockHeader, Transaction, XOnlyPublicKey};
use serde_json::{Value, json};

/// Where a transaction sits in the chain, when it is confirmed.
pub struct TxPlace {
    pub block_hash: cairn_primitives::BlockHash,
    pub height: u64,
    pub block_time: u64,
    pub confirmations: u64,
}

pub fn address_of(pubkey: &XOnlyPublicKey, params: &ChainParams) -> Value {
    Address::new(*pubkey)
        .encode(&params.address_prefix)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// `getrawtransaction` verbose shape.
pub fn tx_json(
    tx: &Transaction,
    params: &ChainParams,
    place: Option<&TxPlace>,
    fee: Option<u64>,
) -> Value {
    let wtxid = tx.wtxid().to_hex();
    let vin: Vec<Value> = tx
        .inputs
        .iter()
        .map(|i| json!({"txid": i.prevout.txid.to_hex(), "vout": i.prevout.vout, "signature": hex::encode(i.signature.0)}))
        .collect();
    let vout: Vec<Value> = tx
        .outputs
        .iter()
        .enumerate()
        .map(|(n, o)| json!({"value": o.value.0, "n": n, "address": address_of(&o.pubkey, params), "pubkey": o.pubkey.to_hex()}))
        .collect();
    let mut v = json!({
        "txid": tx.txid().to_hex(),
        "wtxid": wtxid,
        "hash": wtxid,
        "hex": encode_hex(tx),
        "size": tx.size(),
        "version": tx.version,
        "locktime": tx.lock_time,
        "vin": vin,
        "vout": vout,
    });
    if tx.is_coinbase() {
        v["coinbase"] = Value::Bool(true);
    }
    if let Some(fee) = fee {
        v["fee"] = json!(fee);
    }
    if let Some(p) = place {
        v["blockhash"] = json!(p.block_hash.to_hex());
        v["height"] = json!(p.height);
        v["confirmations"] = json!(p.confirmations);
        v["time"] = json!(p.block_time);
        v["blocktime"] = json!(p.block_time);
    } else {
        v["confirmations"] = json!(0);
    }
    v
}

/// Header fields shared by `getblockheader` and `getblock`.
#[allow(clippy::too_many_arguments)]
pub fn header_json(
    header: &BlockHeader,
    height: u64,
    confirmations: i64,
    chain_work_hex: &str,
    median_time: u64,
    ntx: Option<usize>,
    next: Option<cairn_primitives::BlockHash>,
    params: &ChainParams,
) -> Value {
    let target = Target::from_compact(header.bits);
    let mut v = json!({
        "hash": header.hash().to_hex(),
        "confirmations": confirmations,
        "height": height,
        "version": header.version,
        "merkleroot": header.merkle_root.to_hex(),
        "time": header.time,
        "mediantime": median_time,
        "nonce": header.nonce,
        "bits": format!("{:08x}", header.bits),
        "target": target.map(|t| hex::encode(t.0.to_be_bytes::<32>())).unwrap_or_default(),
        "difficulty": target.map(|t| t.difficulty(params.pow_limit())).unwrap_or(0.0),
        "chainwork": chain_work_hex,
    });
    if height > 0 {
        v["previousblockhash"] = json!(header.prev_hash.to_hex());
    }
    if let Some(n) = ntx {
        v["ntx"] = json!(n);
    }
    if let Some(n) = next {
        v["nextblockhash"] = json!(n.to_hex());
    }
    v
}

/// The output an input spends, as Bitcoin Core's `prevout` (`getblock` verbosity 3,
/// `getrawtransaction` verbosity 2): `height` is `null` for an output still in the mempool.
pub fn prevout_json(coin: &cairn_consensus::Coin, confirmed: bool, params: &ChainParams) -> Value {
    json!({
        "generated": coin.coinbase,
        "height": if confirmed { json!(coin.height) } else { Value::Null },
        "value": coin.output.value.0,
        "address": address_of(&coin.output.pubkey, params),
        "pubkey": coin.output.pubkey.to_hex(),
    })
}

/// Adds `prevout` to each input of a `tx_json` value and, when every spent output is known and
/// the transaction is not a coinbase, its `fee`.
pub fn add_prevouts(v: &mut Value, tx: &Transaction, prevouts: &[Option<Value>], fee: Option<u64>) {
    if let Some(vin) = v.get_mut("vin").and_then(Value::as_array_mut) {
        for (i, p) in vin.iter_mut().zip(prevouts) {
            if let Some(p) = p {
                i["prevout"] = p.clone();
            }
        }
    }
    if !tx.is_coinbase()
        && let Some(fee) = fee
    {
        v["fee"] = json!(fee);
    }
}
