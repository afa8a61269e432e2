//! A small blocking JSON-RPC 2.0 client for the node's API (`docs/rpc.md`), on `ureq`.
//!
//! Every call has bounded timeouts and a bounded response size. A transport failure becomes
//! [`WalletError::Unreachable`] naming the URL; a JSON-RPC error becomes [`WalletError::Rpc`]
//! with the node's code and message.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Result, WalletError};

/// Time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read from the node.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// `-26`: rejected by mempool policy.
pub const RPC_VERIFY_REJECTED: i64 = -26;
/// `-25`: failed consensus validation.
pub const RPC_VERIFY_ERROR: i64 = -25;
/// `-27`: already in the chain.
pub const RPC_VERIFY_ALREADY_IN_CHAIN: i64 = -27;
/// `-5`: not found / invalid address.
pub const RPC_INVALID_ADDRESS_OR_KEY: i64 = -5;

/// A connection to one node.
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
}

/// `getblockchaininfo` (the fields the wallet uses).
#[derive(Debug, Clone, Deserialize)]
pub struct BlockchainInfo {
    pub blocks: u64,
    pub genesishash: String,
    pub addressprefix: String,
    #[serde(default)]
    pub coinbasematurity: u64,
}

/// `getmempoolinfo` (the fields the wallet uses).
#[derive(Debug, Clone, Deserialize)]
pub struct MempoolInfo {
    #[serde(deserialize_with = "lenient_u64")]
    pub minrelaytxfee: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub dustthreshold: u64,
}

/// `getaddressbalance`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct AddressBalance {
    pub confirmed: u64,
    pub unconfirmed: i64,
}

/// One entry of `getaddressutxos`.
#[derive(Debug, Clone, Deserialize)]
pub struct AddressUtxo {
    pub txid: String,
    pub vout: u32,
    pub value: u64,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub confirmations: u64,
    #[serde(default)]
    pub coinbase: bool,
    pub spendable: bool,
}

/// An input of a verbose `getrawtransaction`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTxInput {
    pub txid: String,
    pub vout: u32,
}

/// An output of a verbose `getrawtransaction`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTxOutput {
    pub value: u64,
    pub n: u32,
    #[serde(default)]
    pub address: Option<String>,
    pub pubkey: String,
}

/// Verbose `getrawtransaction` (the fields the wallet uses).
#[derive(Debug, Clone, Deserialize)]
pub struct RawTransaction {
    pub txid: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub vin: Vec<RawTxInput>,
    #[serde(default)]
    pub vout: Vec<RawTxOutput>,
    #[serde(default)]
    pub coinbase: bool,
    #[serde(default)]
    pub blockhash: Option<String>,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub confirmations: Option<u64>,
    #[serde(default)]
    pub time: Option<u64>,
}

/// Accepts an integer or a non-negative float (rounded up) for a base-unit quantity.
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f <= u64::MAX as f64 => Ok(f.ceil() as u64),
        _ => Err(serde::de::Error::custom(format!(
            "expected a non-negative number, got {v}"
        ))),
    }
}

impl RpcClient {
    pub fn new(url: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        Self {
            url: url.to_string(),
            agent,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params` and decodes the result.
    pub fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = match self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_json(body)
        {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                // jsonrpsee may answer errors with a non-200 status; the body still says why.
                match read_json(r) {
                    Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) => {
                        return Err(rpc_error(method, &v["error"]));
                    }
                    _ => {
                        return Err(WalletError::Http {
                            url: self.url.clone(),
                            method: method.into(),
                            status,
                        });
                    }
                }
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(WalletError::Unreachable {
                    url: self.url.clone(),
                    cause: transport_cause(&t),
                });
            }
        };
        let v = read_json(response).map_err(|detail| WalletError::BadResponse {
            method: method.into(),
            detail,
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(rpc_error(method, err));
        }
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| WalletError::BadResponse {
            method: method.into(),
            detail: e.to_string(),
        })
    }

    pub fn blockchain_info(&self) -> Result<BlockchainInfo> {
        self.call("getblockchaininfo", json!([]))
    }

    pub fn mempool_info(&self) -> Result<MempoolInfo> {
        self.call("getmempoolinfo", json!([]))
    }

    /// `estimatefee` -> base units per byte.
    pub fn estimate_fee(&self) -> Result<u64> {
        #[derive(Deserialize)]
        struct Estimate {
            #[serde(deserialize_with = "lenient_u64")]
            feerate: u64,
        }
        Ok(self.call::<Estimate>("estimatefee", json!([6]))?.feerate)
    }

    pub fn address_balance(&self, address: &str) -> Result<AddressBalance> {
        self.call("getaddressbalance", json!([address]))
    }

    pub fn address_utxos(&self, address: &str) -> Result<Vec<AddressUtxo>> {
        self.call("getaddressutxos", json!([address]))
    }

    pub fn address_txids(&self, address: &str) -> Result<Vec<String>> {
        self.call("getaddresstxids", json!([address]))
    }

    /// Verbose `getrawtransaction`; `Ok(None)` if the node does not know the transaction.
    pub fn raw_transaction(&self, txid: &str) -> Result<Option<RawTransaction>> {
        match self.call("getrawtransaction", json!([txid, true])) {
            Ok(tx) => Ok(Some(tx)),
            Err(WalletError::Rpc {
                code: RPC_INVALID_ADDRESS_OR_KEY,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Non-verbose `getrawtransaction`: the transaction's hex; `Ok(None)` if the node does not
    /// know it.
    pub fn raw_transaction_hex(&self, txid: &str) -> Result<Option<String>> {
        match self.call("getrawtransaction", json!([txid, false])) {
            Ok(hex) => Ok(Some(hex)),
            Err(WalletError::Rpc {
                code: RPC_INVALID_ADDRESS_OR_KEY,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `sendrawtransaction`; a policy or validation refusal becomes [`WalletError::Rejected`].
    /// `max_fee_rate`: the node's `maxfeerate` in coins per kB (`None`: the node's default).
    pub fn send_raw_transaction(&self, hex_tx: &str, max_fee_rate: Option<f64>) -> Result<String> {
        let params = match max_fee_rate {
            Some(r) => json!([hex_tx, r]),
            None => json!([hex_tx]),
        };
        match self.call("sendrawtransaction", params) {
            Err(WalletError::Rpc {
                code: RPC_VERIFY_REJECTED,
                message,
                ..
            }) => Err(WalletError::Rejected { reason: message }),
            Err(WalletError::Rpc {
                code: RPC_VERIFY_ERROR,
                message,
                ..
            }) => Err(WalletError::Rejected {
                reason: format!("invalid transaction: {message}"),
            }),
            Err(WalletError::Rpc {
                code: RPC_VERIFY_ALREADY_IN_CHAIN,
                message,
                ..
            }) => Err(WalletError::Rejected {
                reason: format!("already in the chain: {message}"),
            }),
            other => other,
        }
    }
}

fn read_json(r: ureq::Response) -> std::result::Result<Value, String> {
    let mut buf = Vec::new();
    r.into_reader()
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if buf.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
    }
    serde_json::from_slice(&buf).map_err(|e| format!("not JSON: {e}"))
}

fn rpc_error(method: &str, err: &Value) -> WalletError {
    WalletError::Rpc {
        method: method.into(),
        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: one_line(
            err.get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)"),
        ),
    }
}

/// The cause of a transport failure without the URL (the caller names it).
fn transport_cause(t: &ureq::Transport) -> String {
    let mut cause = t.kind().to_string();
    if let Some(m) = t.message() {
        cause.push_str(": ");
        cause.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        let src = src.to_string();
        if !cause.contains(&src) {
            cause.push_str(": ");
            cause.push_str(&src);
        }
    }
    one_line(&cause)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn unreachable_node_names_the_url() {
        // Port 9 on localhost (discard) is essentially never open; the connection is refused.
        let c = RpcClient::new("http://127.0.0.1:9/");
        match c.blockchain_info() {
            Err(WalletError::Unreachable { url, .. }) => assert_eq!(url, "http://127.0.0.1:9/"),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[test]
    fn lenient_numbers() {
        let m: MempoolInfo =
            serde_json::from_value(json!({"minrelaytxfee": 1.2, "dustthreshold": 546})).unwrap();
        assert_eq!((m.minrelaytxfee, m.dustthreshold), (2, 546));
    }
}
