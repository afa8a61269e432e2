//! Cairn's JSON-RPC 2.0 server: HTTP `POST /` and WebSocket on one port (jsonrpsee), plus
//! `GET /metrics` for Prometheus.
//!
//! **Owns**: the method table (names and result shapes fixed in `docs/rpc.md`, following Bitcoin
//! Core), parameter parsing and error codes, the HTTP layer that answers JSON-RPC 1.0 requests
//! as Bitcoin Core does, bounds every body and batch, keeps web pages out ([`guard`]), decides
//! per executed call who may run it ([`auth`]), and the WebSocket subscriptions for new blocks
//! and transactions.
//!
//! **Never does**: write chain state or the mempool itself. Reads go to a
//! [`cairn_storage::ChainReader`] snapshot and the mempool's read lock (never waiting behind a
//! block import); anything that changes state (a transaction, a block, mining, stop) goes
//! through the [`NodeControl`] trait the node implements. It never exposes keys.

pub mod auth;
mod batch;
mod call_metrics;
pub mod error;
mod explorer;
pub mod guard;
mod http;
mod methods;
mod params;
pub mod shapes;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use cairn_consensus::ChainParams;
use cairn_mempool::{Mempool, MempoolError};
use cairn_p2p::NetworkHandle;
use cairn_primitives::{Block, BlockHash, Transaction, Txid, XOnlyPublicKey};
use cairn_storage::ChainReader;
use jsonrpsee::server::{BatchRequestConfig, ServerConfig, ServerHandle};
use tokio::sync::broadcast;

pub use error::RpcError;
pub use http::RpcMetrics;

/// The service every RPC middleware here wraps: jsonrpsee's, answering with `MethodResponse`.
/// One name for the bound the middlewares (`auth`, `batch`, `call_metrics`) share.
pub(crate) trait RpcService:
    jsonrpsee::core::middleware::RpcServiceT<
        MethodResponse = jsonrpsee::MethodResponse,
        BatchResponse = jsonrpsee::MethodResponse,
        NotificationResponse = jsonrpsee::MethodResponse,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> RpcService for T where
    T: jsonrpsee::core::middleware::RpcServiceT<
            MethodResponse = jsonrpsee::MethodResponse,
            BatchResponse = jsonrpsee::MethodResponse,
            NotificationResponse = jsonrpsee::MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Largest request body accepted, in bytes (a full block in hex is 2 MB for a 1 MB block).
pub const DEFAULT_MAX_BODY_BYTES: u32 = 16 * 1024 * 1024;
/// Largest response body, in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;
/// Most calls in one batch.
pub const DEFAULT_MAX_BATCH_LEN: u32 = 1_000;
/// Most simultaneous connections (HTTP keep-alive and WebSocket).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 128;
/// Most subscriptions per WebSocket connection.
pub const DEFAULT_MAX_SUBSCRIPTIONS: u32 = 64;
/// Queue of notifications per subscription; a subscriber that falls this far behind is dropped.
pub const SUBSCRIPTION_BUFFER: usize = 1_024;

/// `user:password` for HTTP Basic authentication (from the config, or the cookie file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    pub addr: SocketAddr,
    pub max_body_bytes: u32,
    pub max_response_bytes: u32,
    pub max_batch_len: u32,
    pub max_connections: u32,
    pub max_subscriptions_per_connection: u32,
    /// Privileged calls (`stop`, mining, `submitblock`) need them; if the server is not on a
    /// loopback address, every call does. `None`: privileged calls never run (the node always
    /// sets them: configured, or the cookie).
    pub credentials: Option<Credentials>,
    /// `Host` names accepted besides the bind address and `localhost` (`rpc_allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Web origins whose pages may call the RPC (`rpc_allowed_origins`); the node's own is implied.
    pub allowed_origins: Vec<String>,
    /// Serve the built-in explorer on `GET /` (and its page routes).
    pub explorer: bool,
}

impl RpcConfig {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_batch_len: DEFAULT_MAX_BATCH_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS,
            credentials: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            explorer: true,
        }
    }
}

/// What a block submission came to (Bitcoin Core's `submitblock` vocabulary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockSubmission {
    /// Stored and valid (connected, or on a side branch).
    Accepted,
    /// Already known.
    Duplicate,
    /// Parent unknown: held until it arrives.
    Inconclusive,
    /// Breaks a rule.
    Rejected(String),
}

/// A notification for WebSocket subscribers.
#[derive(Clone, Debug)]
pub enum Notification {
    NewBlock {
        hash: BlockHash,
        height: u64,
        time: u64,
        ntx: usize,
    },
    NewTransaction {
        txid: Txid,
        size: usize,
        fee: u64,
    },
}

/// Everything that changes node state, implemented by the node (which routes it to its chain
/// task, miner and network).
#[async_trait::async_trait]
pub trait NodeControl: Send + Sync + 'static {
    /// Validates `tx` and adds it to the mempool, relaying it. Returns its fee in base units.
    async fn send_transaction(&self, tx: Transaction) -> Result<u64, MempoolError>;
    /// Validates and stores `block`, relaying it if it is new and valid.
    async fn submit_block(&self, block: Block) -> BlockSubmission;
    /// Mines `count` blocks now, paying `pubkey` (dev chains only).
    async fn generate(&self, count: u32, pubkey: XOnlyPublicKey) -> Result<Vec<BlockHash>, String>;
    /// Whether the built-in miner is running.
    fn mining(&self) -> bool;
    /// Starts a graceful shutdown.
    fn request_stop(&self);
    /// Highest height any connected peer reported (for sync progress).
    fn best_peer_height(&self) -> u64;
}

/// What the handlers read from and act through.
pub struct RpcContext {
    pub params: Arc<ChainParams>,
    pub reader: ChainReader,
    pub mempool: Arc<RwLock<Mempool>>,
    pub network: Option<NetworkHandle>,
    pub control: Arc<dyn NodeControl>,
    pub notifications: broadcast::Sender<Notification>,
    /// Data directory (for `size_on_disk`).
    pub datadir: PathBuf,
    /// Extra Prometheus text appended to `GET /metrics` (the node's gauges and counters).
    pub node_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub started: Instant,
}

/// A running server.
pub struct RpcServer {
    handle: ServerHandle,
    pub local_addr: SocketAddr,
    pub metrics: Arc<RpcMetrics>,
}

impl RpcServer {
    /// Stops accepting connections and waits for the server to wind down.
    pub async fn stop(self) {
        let _ = self.handle.stop();
        self.handle.stopped().await;
    }
}

/// Binds `config.addr` and serves the methods of `docs/rpc.md`.
pub async fn start(config: RpcConfig, ctx: RpcContext) -> Result<RpcServer, RpcError> {
    let listener = std::net::TcpListener::bind(config.addr).map_err(|e| RpcError::Bind {
        addr: config.addr,
        reason: e.to_string(),
    })?;
    start_on(listener, config, ctx).await
}

/// Serves on a listener bound beforehand (the node binds first, so that a busy port stops
/// start-up before anything else happens). `config.addr` is still what `Host` is checked against.
pub async fn start_on(
    listener: std::net::TcpListener,
    config: RpcConfig,
    ctx: RpcContext,
) -> Result<RpcServer, RpcError> {
    let metrics = Arc::new(RpcMetrics::default());
    let ctx = Arc::new(ctx);
    let module = methods::module(ctx.clone())?;
    let registered: HashSet<String> = module.method_names().map(String::from).collect();
    let unclassified = auth::unclassified(registered.iter().map(String::as_str));
    if !unclassified.is_empty() {
        return Err(RpcError::Unclassified(unclassified.join(", ")));
    }
    let registered = Arc::new(registered);
    let layer = http::CairnHttpLayer::new(&config, metrics.clone(), ctx.node_metrics.clone());
    let max_response = config.max_response_bytes as usize;
    let method_metrics = Arc::clone(&metrics.per_method);
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_body_bytes)
        .max_response_body_size(config.max_response_bytes)
        .max_connections(config.max_connections)
        .max_subscriptions_per_connection(config.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch_len))
        .build();
    let bind_error = |e: std::io::Error| RpcError::Bind {
        addr: config.addr,
        reason: e.to_string(),
    };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let builder = jsonrpsee::server::Server::builder()
        .set_config(server_config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(layer))
        .set_rpc_middleware(
            jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                // Outermost: authorisation sees every call, batch member and notification
                // before anything runs.
                .layer_fn(move |inner| auth::Authorize {
                    inner,
                    registered: Arc::clone(&registered),
                })
                .layer_fn(move |inner| batch::ConcurrentBatch {
                    inner,
                    max_response_bytes: max_response,
                })
                .layer_fn(move |inner| call_metrics::CountCalls {
                    inner,
                    metrics: Arc::clone(&method_metrics),
                }),
        )
        .to_service_builder();
    let methods: jsonrpsee::Methods = module.into();
    let (stop_handle, handle) = jsonrpsee::server::stop_channel();
    // Our own accept loop (instead of `Server::start`) so that each request carries the
    // connection's remote address: the failed-credentials delay is per address.
    tokio::spawn(async move {
        loop {
            let (socket, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "RPC accept failed");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
                () = stop_handle.clone().shutdown() => break,
            };
            let (builder, methods, stop) = (builder.clone(), methods.clone(), stop_handle.clone());
            let service =
                tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(http::PeerAddr(remote));
                    let mut svc = builder.clone().build(methods.clone(), stop.clone());
                    async move { tower::Service::call(&mut svc, req).await }
                });
            let stopped = stop_handle.clone().shutdown();
            // Connection errors (a client going away mid-request) are the client's business.
            tokio::spawn(jsonrpsee::server::serve_with_graceful_shutdown(
                socket, service, stopped,
            ));
        }
    });
    Ok(RpcServer {
        handle,
        local_addr,
        metrics,
    })
}

/// Pause after a failed `accept` (for example when out of file descriptors).
const ACCEPT_ERROR_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Entry points for `cargo fuzz` (`fuzz/fuzz_targets/rpc_request.rs`); not an API.
#[doc(hidden)]
pub mod fuzz {
    use cairn_primitives::{BlockHash, Txid};
    use serde_json::Value;

    use crate::params::Args;

    /// Runs a request body through everything the RPC does to it before a method's logic:
    /// classification and 1.0 upgrade, then every typed parameter getter on every call.
    pub fn request(bytes: &[u8]) {
        let p = crate::http::prepare_request(bytes);
        if let Some(n) = p.batch_len {
            assert_eq!(p.legacy_batch.len(), n, "one legacy flag per batch call");
        }
        let body = match &p.body {
            Some(b) => {
                let v: Value = serde_json::from_slice(b).expect("a rewritten body is JSON");
                v
            }
            None => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        let calls = match body {
            Value::Array(c) => c,
            other => vec![other],
        };
        for call in calls.iter().take(64) {
            let Some(params) = call.get("params") else {
                continue;
            };
            let raw = params.to_string();
            let params = jsonrpsee::types::Params::new(Some(&raw));
            let Ok(args) = Args::parse(&params, &["a", "b", "c"]) else {
                continue;
            };
            for i in 0..4 {
                let _ = args.str(i);
                let _ = args.opt_u64(i);
                let _ = args.u64(i);
                let _ = args.opt_bool(i);
                let _ = args.verbosity(i, 1);
                let _ = args.array(i);
                let _ = args.hash::<Txid>(i);
                let _ = args.opt_hash::<BlockHash>(i);
                let _ = args.address(i, "cdev");
            }
        }
    }
}

#[cfg(test)]
mod fuzz_corpus {
    /// The fuzz target's seed corpus, run on every `cargo test` (the fuzzer itself needs nightly).
    #[test]
    fn request_handling_survives_hostile_bodies() {
        let bodies: &[&[u8]] = &[
            b"",
            b"{",
            b"null",
            b"[]",
            b"[1,2,3]",
            b"{\"method\":\"getblock\"}",
            b"{\"jsonrpc\":\"1.0\",\"id\":\"x\",\"method\":\"getblock\",\"params\":[\"00\", 99999999999999999999]}",
            b"{\"jsonrpc\":2,\"method\":[],\"params\":{}}",
            b"[{\"method\":\"getblockhash\",\"params\":{\"height\":-1}}, {\"jsonrpc\":\"2.0\",\"params\":[null,null,null,null,null]}]",
            b"{\"method\":\"x\",\"params\":{\"a\":\"cdev1qqqq\",\"b\":[[[[[]]]]],\"c\":1e400}}",
            b"{\"method\":\"x\",\"params\":\"not an array\"}",
            "{\"method\":\"x\",\"params\":[\"\u{10ffff}\u{0}\"]}".as_bytes(),
            &[0xff, 0xfe, 0x00],
        ];
        for b in bodies {
            super::fuzz::request(b);
        }
        let upgraded = crate::http::prepare_request(
            br#"[{"method":"a","id":1},{"jsonrpc":"2.0","method":"b","id":2}]"#,
        );
        assert_eq!(upgraded.legacy_batch, vec![true, false]);
        assert_eq!(upgraded.methods, vec!["a", "b"]);
        assert!(upgraded.body.is_some());
        let plain = crate::http::prepare_request(br#"{"jsonrpc":"2.0","method":"b","id":2}"#);
        assert!(plain.body.is_none() && !plain.legacy_single && plain.batch_len.is_none());
    }
}
