//! The method table of `docs/rpc.md`, one file per Bitcoin Core RPC group (blockchain,
//! rawtransactions, mempool, fees, address index, mining, network, control) plus the WebSocket
//! subscriptions. Read methods run on the blocking pool against a chain snapshot and the
//! mempool's read lock; state changes go through [`crate::NodeControl`].

mod address;
mod blockchain;
mod control;
mod fees;
mod help;
mod mempool;
mod mining;
mod network;
mod rawtransactions;
mod subscriptions;
mod util;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_mempool::Mempool;
use cairn_primitives::BlockHash;
use futures::future::BoxFuture;
use jsonrpsee::types::Params;
use jsonrpsee::{Extensions, RpcModule};
use serde_json::Value;

use crate::RpcContext;
use crate::error::*;
use crate::params::Args;

use prelude::*;

/// What the method files share: common imports, the context helpers of this module and each
/// other's helpers (one glob, so a method moving between groups touches no import list).
mod prelude {
    pub(super) use std::time::UNIX_EPOCH;

    pub(super) use cairn_consensus::{Coin, Target};
    pub(super) use cairn_mempool::MempoolError;
    pub(super) use cairn_primitives::encoding::{decode_hex, encode_hex};
    pub(super) use cairn_primitives::{Amount, Block, BlockHash, OutPoint, Transaction, Txid};
    pub(super) use futures::future::BoxFuture;
    pub(super) use serde_json::{Value, json};

    pub(super) use super::{
        Ctx, DEFAULT_CONF_TARGET, HASHPS_WINDOW, IBD_MAX_TIP_AGE_SECS, MAX_CONF_TARGET,
        MAX_GENERATE, MAX_TEST_ACCEPT, mempool, now, tip,
    };
    pub(super) use super::{
        address::*, blockchain::*, control::*, fees::*, mempool::*, mining::*, network::*,
        rawtransactions::*, util::*,
    };
    pub(super) use crate::error::*;
    pub(super) use crate::params::Args;
    pub(super) use crate::shapes::{
        TxPlace, add_prevouts, address_of, header_json, prevout_json, tx_json,
    };
    pub(super) use crate::{BlockSubmission, RpcContext};
}

/// Most blocks one `generatetoaddress` call may mine.
pub const MAX_GENERATE: u64 = 1_000;
/// Most transactions one `testmempoolaccept` call may test (Bitcoin Core's package limit).
pub const MAX_TEST_ACCEPT: usize = 25;
/// Default confirmation target of `estimatefee`, and its largest value.
pub const DEFAULT_CONF_TARGET: u64 = 6;
pub const MAX_CONF_TARGET: u64 = 1_008;
/// Blocks looked back over to estimate the network hash rate.
pub const HASHPS_WINDOW: u64 = 120;
/// A node whose tip is older than this is in initial block download (Bitcoin Core: 24 h).
pub const IBD_MAX_TIP_AGE_SECS: u64 = 24 * 60 * 60;

pub(crate) type Ctx = Arc<RpcContext>;
type Sync = fn(&RpcContext, &Args) -> RpcResult<Value>;
type Async = fn(Ctx, Args) -> BoxFuture<'static, RpcResult<Value>>;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Read methods: name, parameter names, handler (run on the blocking pool).
const READS: &[(&str, &[&str], Sync)] = &[
    ("getblockchaininfo", &[], getblockchaininfo),
    ("getblockcount", &[], getblockcount),
    ("getbestblockhash", &[], getbestblockhash),
    ("getblockhash", &["height"], getblockhash),
    ("getblockheader", &["blockhash", "verbose"], getblockheader),
    ("getblock", &["blockhash", "verbosity"], getblock),
    (
        "getrawtransaction",
        &["txid", "verbose", "blockhash"],
        getrawtransaction,
    ),
    ("gettxout", &["txid", "n", "include_mempool"], gettxout),
    ("gettxoutsetinfo", &[], gettxoutsetinfo),
    ("testmempoolaccept", &["rawtxs"], testmempoolaccept),
    ("getmempoolinfo", &["fee_histogram"], getmempoolinfo),
    ("getrawmempool", &["verbose"], getrawmempool),
    (
        "getmempoolancestors",
        &["txid", "verbose"],
        getmempoolancestors,
    ),
    (
        "getmempooldescendants",
        &["txid", "verbose"],
        getmempooldescendants,
    ),
    ("decoderawtransaction", &["hexstring"], decoderawtransaction),
    (
        "gettxspendingprevout",
        &["outputs", "options"],
        gettxspendingprevout,
    ),
    ("getblockstats", &["hash_or_height", "stats"], getblockstats),
    ("getchaintips", &[], getchaintips),
    (
        "getchaintxstats",
        &["nblocks", "blockhash"],
        getchaintxstats,
    ),
    ("getdifficulty", &[], getdifficulty),
    ("getnetworkhashps", &["nblocks", "height"], getnetworkhashps),
    (
        "estimatesmartfee",
        &["conf_target", "estimate_mode"],
        estimatesmartfee,
    ),
    ("validateaddress", &["address"], validateaddress),
    ("getindexinfo", &["index_name"], getindexinfo),
    ("uptime", &[], uptime),
    ("help", &["command"], help),
    ("getmempoolentry", &["txid"], getmempoolentry),
    ("estimatefee", &["conf_target"], estimatefee),
    ("getaddressbalance", &["address"], getaddressbalance),
    ("getaddressutxos", &["address", "options"], getaddressutxos),
    ("getaddresstxids", &["address", "options"], getaddresstxids),
    ("getmininginfo", &[], getmininginfo),
];

/// Methods that await the node or the network: name, parameter names, handler.
const ASYNCS: &[(&str, &[&str], Async)] = &[
    (
        "sendrawtransaction",
        &["hexstring", "maxfeerate"],
        sendrawtransaction,
    ),
    ("submitblock", &["hexdata"], submitblock),
    (
        "generatetoaddress",
        &["nblocks", "address", "maxtries"],
        generatetoaddress,
    ),
    ("getpeerinfo", &[], getpeerinfo),
    ("getnetworkinfo", &[], getnetworkinfo),
    ("getconnectioncount", &[], getconnectioncount),
    ("getnettotals", &[], getnettotals),
    ("stop", &[], stop),
];

pub fn module(ctx: Ctx) -> Result<RpcModule<RpcContext>, RegisterError> {
    let mut m = RpcModule::from_arc(ctx);
    for (name, names, f) in READS {
        let (names, f) = (*names, *f);
        m.register_blocking_method(name, move |params: Params<'_>, ctx: Ctx, _: Extensions| {
            let args = Args::parse(&params, names)?;
            f(&ctx, &args)
        })?;
    }
    for (name, names, f) in ASYNCS {
        let (names, f) = (*names, *f);
        m.register_async_method(
            name,
            move |params: Params<'static>, ctx: Ctx, _: Extensions| async move {
                let args = Args::parse(&params, names)?;
                f(ctx, args).await
            },
        )?;
    }
    subscriptions::register(&mut m)?;
    Ok(m)
}

pub type RegisterError = jsonrpsee::core::RegisterMethodError;

pub(crate) fn mempool(ctx: &RpcContext) -> std::sync::RwLockReadGuard<'_, Mempool> {
    // A panic while holding the lock cannot leave the pool half-changed in a way reads would
    // misreport worse than failing; keep serving.
    ctx.mempool.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn tip(ctx: &RpcContext) -> RpcResult<(u64, BlockHash)> {
    ctx.reader.tip().map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::help::{METHODS, SUBSCRIPTIONS, text};

    /// Every method the server registers is in `help`, and `help` lists nothing else.
    #[test]
    fn help_lists_exactly_the_registered_methods() {
        let mut registered: Vec<&str> = super::READS
            .iter()
            .map(|r| r.0)
            .chain(super::ASYNCS.iter().map(|r| r.0))
            .collect();
        registered.sort_unstable();
        let n = registered.len();
        registered.dedup();
        assert_eq!(registered.len(), n, "a method is registered twice");
        let mut listed: Vec<&str> = METHODS.iter().map(|m| m.1).collect();
        listed.sort_unstable();
        assert_eq!(registered, listed);
        assert!(text(None).contains("== Blockchain ==\ngetbestblockhash\n"));
        assert!(text(Some("getblock")).starts_with("getblock \"blockhash\" ( verbosity )\n\n"));
        assert_eq!(text(Some("nope")), "help: unknown command: nope");
        assert!(SUBSCRIPTIONS.iter().all(|s| text(None).contains(s.0)));
    }
}
