//! Errors of the RPC crate, and the JSON-RPC error codes of `docs/rpc.md`.

use std::net::SocketAddr;

use jsonrpsee::types::ErrorObjectOwned;
use thiserror::Error;

/// Failure to start the server.
#[derive(Debug, Error)]
pub enum RpcError {
    #[error("cannot serve JSON-RPC on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("registering RPC method: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
    #[error(
        "RPC methods neither open nor privileged: {0} (classify each in crates/rpc/src/auth.rs)"
    )]
    Unclassified(String),
}

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;
/// `RPC_MISC_ERROR`: method not available here.
pub const MISC_ERROR: i32 = -1;
/// `RPC_INVALID_ADDRESS_OR_KEY`: bad address, or not found.
pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
/// `RPC_INVALID_PARAMETER`.
pub const INVALID_PARAMETER: i32 = -8;
/// `RPC_DESERIALIZATION_ERROR`.
pub const DESERIALIZATION_ERROR: i32 = -22;
/// `RPC_VERIFY_ERROR`: consensus failure.
pub const VERIFY_ERROR: i32 = -25;
/// `RPC_VERIFY_REJECTED`: policy refusal.
pub const VERIFY_REJECTED: i32 = -26;
/// `RPC_IN_WARMUP`: the indexes a read needs are still catching up (after a sync); retry.
pub const INDEX_CATCHING_UP: i32 = -28;
/// `RPC_VERIFY_ALREADY_IN_CHAIN`.
pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;

/// Result of a handler.
pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

pub fn rpc_err(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// A storage read failure: indexes still catching up are reported as such (-28, retry);
/// anything else is an internal error.
pub fn read_err(e: cairn_storage::StorageError) -> ErrorObjectOwned {
    match e {
        cairn_storage::StorageError::IndexBehind { .. }
        | cairn_storage::StorageError::IndexFailed { .. } => {
            rpc_err(INDEX_CATCHING_UP, e.to_string())
        }
        e => internal(e),
    }
}

/// Whether a confirmed transaction is known, where "not indexed yet" counts as unknown (for
/// checks that only avoid redundant work, like sendrawtransaction's "already in the chain").
pub fn indexed_or_none<T>(
    r: Result<Option<T>, cairn_storage::StorageError>,
) -> RpcResult<Option<T>> {
    match r {
        Ok(v) => Ok(v),
        Err(cairn_storage::StorageError::IndexBehind { .. }) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// A storage failure seen by a handler: logged, reported as an internal error.
pub fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    tracing::error!(error = %e, "RPC read failed");
    rpc_err(INTERNAL_ERROR, format!("internal error: {e}"))
}
