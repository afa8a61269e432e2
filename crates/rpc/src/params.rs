//! Parameter parsing: positional (`[...]`) or named (`{...}`) params, typed getters whose
//! errors name the parameter (JSON-RPC -32602 for a wrong type or count, -8 for a bad value).

use std::str::FromStr;

use cairn_primitives::{Address, XOnlyPublicKey};
use jsonrpsee::types::Params;
use serde_json::Value;

use crate::error::{INVALID_ADDRESS_OR_KEY, INVALID_PARAMETER, INVALID_PARAMS, RpcResult, rpc_err};

/// A method's arguments, in the order of its parameter names.
pub struct Args {
    values: Vec<Value>,
    names: &'static [&'static str],
}

impl Args {
    pub fn parse(params: &Params<'_>, names: &'static [&'static str]) -> RpcResult<Args> {
        let raw = params.as_str().unwrap_or("[]");
        let parsed: Value = serde_json::from_str(raw)
            .map_err(|e| rpc_err(INVALID_PARAMS, format!("invalid params: {e}")))?;
        let values = match parsed {
            Value::Null => Vec::new(),
            Value::Array(v) => {
                if v.len() > names.len() {
                    return Err(rpc_err(
                        INVALID_PARAMS,
                        format!(
                            "too many parameters: got {}, at most {} ({})",
                            v.len(),
                            names.len(),
                            names.join(", ")
                        ),
                    ));
                }
                v
            }
            Value::Object(mut map) => {
                let mut v = Vec::with_capacity(names.len());
                for n in names {
                    v.push(map.remove(*n).unwrap_or(Value::Null));
                }
                if let Some(unknown) = map.keys().next() {
                    return Err(rpc_err(
                        INVALID_PARAMS,
                        format!(
                            "unknown parameter `{unknown}` (expected: {})",
                            names.join(", ")
                        ),
                    ));
                }
                v
            }
            other => {
                return Err(rpc_err(
                    INVALID_PARAMS,
                    format!("params must be an array or an object, not {other}"),
                ));
            }
        };
        Ok(Args { values, names })
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !v.is_null())
    }

    fn name(&self, i: usize) -> &'static str {
        self.names.get(i).copied().unwrap_or("?")
    }

    fn missing(&self, i: usize) -> jsonrpsee::types::ErrorObjectOwned {
        rpc_err(
            INVALID_PARAMS,
            format!("missing required parameter `{}`", self.name(i)),
        )
    }

    fn wrong(&self, i: usize, expected: &str) -> jsonrpsee::types::ErrorObjectOwned {
        rpc_err(
            INVALID_PARAMS,
            format!("parameter `{}` must be {expected}", self.name(i)),
        )
    }

    pub fn str(&self, i: usize) -> RpcResult<&str> {
        match self.get(i) {
            None => Err(self.missing(i)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.wrong(i, "a string")),
        }
    }

    pub fn opt_u64(&self, i: usize) -> RpcResult<Option<u64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(i, "a non-negative integer")),
        }
    }

    pub fn u64(&self, i: usize) -> RpcResult<u64> {
        self.opt_u64(i)?.ok_or_else(|| self.missing(i))
    }

    /// An amount in coins given as a number or a string (`0.1`, `"0.1"`), as Bitcoin Core takes
    /// fee rates; returned in base units. Parsed from its decimal text, never through a float.
    pub fn opt_coins(&self, i: usize) -> RpcResult<Option<u64>> {
        let text = match self.get(i) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(self.wrong(i, "an amount in coins")),
        };
        cairn_primitives::Amount::parse_coins(text.trim())
            .map(|a| Some(a.0))
            .map_err(|e| self.wrong(i, &format!("an amount in coins ({e})")))
    }

    pub fn opt_bool(&self, i: usize) -> RpcResult<Option<bool>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(i, "a boolean")),
        }
    }

    /// A verbosity given as a number or (as Bitcoin Core accepts) a boolean.
    pub fn verbosity(&self, i: usize, default: u64) -> RpcResult<u64> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(u64::from(*b)),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.wrong(i, "0, 1, 2 or a boolean")),
        }
    }

    pub fn opt_str(&self, i: usize) -> RpcResult<Option<&str>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(i, "a string")),
        }
    }

    /// A signed integer (Bitcoin Core uses -1 for "the tip" in a few places).
    pub fn opt_i64(&self, i: usize) -> RpcResult<Option<i64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong(i, "an integer")),
        }
    }

    /// An options object (`{"limit": .., "after": ..}`), absent or null as `None`.
    pub fn opt_object(&self, i: usize) -> RpcResult<Option<&serde_json::Map<String, Value>>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.wrong(i, "an object")),
        }
    }

    /// The raw value at `i` (null when absent), for parameters of several accepted types.
    pub fn raw(&self, i: usize) -> Option<&Value> {
        self.get(i)
    }

    pub fn array(&self, i: usize) -> RpcResult<&Vec<Value>> {
        match self.get(i) {
            None => Err(self.missing(i)),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.wrong(i, "an array")),
        }
    }

    /// A 32-byte hash in hex (txid or block hash).
    pub fn hash<H: FromStr>(&self, i: usize) -> RpcResult<H> {
        let s = self.str(i)?;
        s.parse().map_err(|_| {
            rpc_err(
                INVALID_PARAMETER,
                format!(
                    "parameter `{}` must be 64 hex characters, got {:?}",
                    self.name(i),
                    truncate(s)
                ),
            )
        })
    }

    pub fn opt_hash<H: FromStr>(&self, i: usize) -> RpcResult<Option<H>> {
        if self.get(i).is_none() {
            return Ok(None);
        }
        self.hash(i).map(Some)
    }

    /// An address of this chain; the error says whether the prefix or the checksum is wrong.
    pub fn address(&self, i: usize, prefix: &str) -> RpcResult<XOnlyPublicKey> {
        let s = self.str(i)?;
        Address::parse(s, prefix).map(|a| a.pubkey).map_err(|e| {
            rpc_err(
                INVALID_ADDRESS_OR_KEY,
                format!("invalid address {:?}: {e}", truncate(s)),
            )
        })
    }
}

/// At most 80 characters of user input, for error messages.
pub fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        format!(
            "{}...",
            &s[..s.char_indices().nth(77).map(|(i, _)| i).unwrap_or(0)]
        )
    }
}
