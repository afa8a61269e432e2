//! The HTTP layer in front of jsonrpsee.
//!
//! - `GET /metrics`: Prometheus text (RPC counters here, node gauges from the node).
//! - Bounds the body before reading it all and the batch length before parsing calls.
//! - JSON-RPC 1.0 requests (no `jsonrpc` member, or `"1.0"`), which many Bitcoin client libraries
//!   send, are passed to jsonrpsee as 2.0 and their responses rewritten the way Bitcoin Core
//!   answers them: `{"result", "error", "id"}`, both members present.
//! - Browser defences first ([`crate::guard`]): `Host` and `Origin` (403), and a `POST` must be
//!   `application/json` (415). Nothing runs for a refused request.
//! - Credentials: checked once per request or WebSocket upgrade, in constant time, with a delay
//!   after a failed attempt from the same address; the outcome travels with the request to the
//!   RPC middleware ([`crate::auth`]), which decides per executed call. Wrong credentials are a
//!   401 at once; on a non-loopback address every request needs them.
//! - Every JSON answer carries exactly `Content-Type: application/json`, as Bitcoin Core sends
//!   (python-bitcoinrpc refuses anything else, `charset` included).

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, ORIGIN, WWW_AUTHENTICATE};
use hyper::http::{Method, StatusCode};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::{Value, json};
use tower::{Layer, Service};

use crate::auth::{CallerAuth, FailedAuthThrottle, credentials_match};
use crate::error::INVALID_REQUEST;
use crate::guard::{BrowserGuard, Refusal, check_content_type};
use crate::{Credentials, RpcConfig};

/// The remote address of the connection a request came on (inserted by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Upper bounds (seconds) of the RPC latency histogram buckets.
const LATENCY_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// RPC counters, shown on `/metrics`.
#[derive(Default)]
pub struct RpcMetrics {
    pub http_requests: AtomicU64,
    pub calls: AtomicU64,
    pub rejected_requests: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_micros: AtomicU64,
    /// Calls, errors and time per method.
    pub per_method: Arc<crate::call_metrics::MethodMetrics>,
}

impl RpcMetrics {
    fn observe(&self, secs: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let n = self.http_requests.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_http_requests_total HTTP requests to the RPC server.\n# TYPE cairn_rpc_http_requests_total counter\ncairn_rpc_http_requests_total {n}"
        );
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_calls_total JSON-RPC calls (batch members counted one by one).\n# TYPE cairn_rpc_calls_total counter\ncairn_rpc_calls_total {}",
            self.calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_rejected_total Requests refused before dispatch (too large, batch too long, unauthorised).\n# TYPE cairn_rpc_rejected_total counter\ncairn_rpc_rejected_total {}",
            self.rejected_requests.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_latency_seconds Time to answer an HTTP JSON-RPC request.\n# TYPE cairn_rpc_latency_seconds histogram"
        );
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "cairn_rpc_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "cairn_rpc_latency_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "cairn_rpc_latency_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "cairn_rpc_latency_seconds_count {n}");
        out.push_str(&self.per_method.render());
        out
    }
}

#[derive(Clone)]
pub struct CairnHttpLayer {
    shared: Arc<Shared>,
}

struct Shared {
    max_body: usize,
    max_batch: usize,
    expected_auth: Option<String>,
    protect_all: bool,
    guard: BrowserGuard,
    throttle: FailedAuthThrottle,
    metrics: Arc<RpcMetrics>,
    node_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Serve the built-in explorer's static files (see [`explorer_response`]).
    explorer: bool,
}

impl CairnHttpLayer {
    pub fn new(
        config: &RpcConfig,
        metrics: Arc<RpcMetrics>,
        node_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        let expected_auth = config.credentials.as_ref().map(basic_auth_value);
        Self {
            shared: Arc::new(Shared {
                max_body: config.max_body_bytes as usize,
                max_batch: config.max_batch_len as usize,
                // Beyond loopback every call needs credentials (with none configured, nothing runs).
                protect_all: !config.addr.ip().is_loopback(),
                expected_auth,
                guard: BrowserGuard::new(
                    config.addr,
                    &config.allowed_hosts,
                    &config.allowed_origins,
                ),
                throttle: FailedAuthThrottle::default(),
                metrics,
                node_metrics,
                explorer: config.explorer,
            }),
        }
    }
}

/// `Basic base64(user:password)`.
pub fn basic_auth_value(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password))
    )
}

impl<S> Layer<S> for CairnHttpLayer {
    type Service = CairnHttp<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CairnHttp {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CairnHttp<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn json_response(status: StatusCode, body: Value) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_body(code: i32, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": null})
}

/// Is this request object in the JSON-RPC 1.0 form?
fn is_legacy(call: &Value) -> bool {
    match call.get("jsonrpc") {
        None => true,
        Some(Value::String(v)) => v == "1.0",
        Some(_) => false,
    }
}

/// Rewrites a legacy call as 2.0 (jsonrpsee speaks only 2.0). A missing id becomes `null`, so
/// the call is answered rather than treated as a notification, as Bitcoin Core does.
fn upgrade_call(call: &mut Value) {
    if let Value::Object(m) = call {
        m.insert("jsonrpc".into(), Value::String("2.0".into()));
        m.entry("id").or_insert(Value::Null);
    }
}

/// A 2.0 response as Bitcoin Core answers a 1.0 request: `result`, `error`, `id`.
fn downgrade_response(resp: &mut Value) {
    if let Value::Object(m) = resp {
        m.remove("jsonrpc");
        m.entry("result").or_insert(Value::Null);
        m.entry("error").or_insert(Value::Null);
        m.entry("id").or_insert(Value::Null);
    }
}

/// What the transport makes of a POST body before jsonrpsee sees it.
#[derive(Debug, Default)]
pub struct PreparedRequest {
    /// Method names of the call or of every call in the batch (for auth and counting).
    pub methods: Vec<String>,
    /// `Some(n)` for a batch of `n` calls.
    pub batch_len: Option<usize>,
    /// The single call was JSON-RPC 1.0 (its answer is rewritten the way Bitcoin Core shapes it).
    pub legacy_single: bool,
    /// Per batch call, whether it was 1.0.
    pub legacy_batch: Vec<bool>,
    /// The body rewritten as 2.0, when anything was upgraded; `None`: forward it unchanged
    /// (including bodies that are not JSON at all: jsonrpsee answers those with -32700).
    pub body: Option<Vec<u8>>,
}

/// Classifies and upgrades a request body. Pure, so the fuzzer can drive it.
pub fn prepare_request(bytes: &[u8]) -> PreparedRequest {
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return PreparedRequest::default();
    };
    let mut p = PreparedRequest {
        methods: methods_of(&v).into_iter().map(String::from).collect(),
        ..PreparedRequest::default()
    };
    match &mut v {
        Value::Array(calls) => {
            p.batch_len = Some(calls.len());
            for c in calls.iter_mut() {
                let l = is_legacy(c);
                if l {
                    upgrade_call(c);
                }
                p.legacy_batch.push(l);
            }
        }
        call @ Value::Object(_) if is_legacy(call) => {
            p.legacy_single = true;
            upgrade_call(call);
        }
        _ => {}
    }
    if p.legacy_single || p.legacy_batch.iter().any(|l| *l) {
        p.body = Some(v.to_string().into_bytes());
    }
    p
}

fn methods_of(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(calls) => calls
            .iter()
            .filter_map(|c| c.get("method")?.as_str())
            .collect(),
        other => other
            .get("method")
            .and_then(Value::as_str)
            .into_iter()
            .collect(),
    }
}

impl<S, B> Service<HttpRequest<B>> for CairnHttp<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        let shared = self.shared.clone();
        // The clone is the one that was polled ready; keep it for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let reject = |status: StatusCode, message: &str| {
                shared
                    .metrics
                    .rejected_requests
                    .fetch_add(1, Ordering::Relaxed);
                Ok(json_response(status, error_body(INVALID_REQUEST, message)))
            };
            let guarded = {
                let (host, origin) = (header_of(&req, HOST), header_of(&req, ORIGIN));
                shared
                    .guard
                    .check_host(host)
                    .and_then(|()| shared.guard.check_origin(origin, host))
            };
            if let Err(r) = guarded {
                return reject(StatusCode::FORBIDDEN, &r.to_string());
            }
            let authenticated = match req.headers().get(AUTHORIZATION) {
                None => false,
                Some(given) => {
                    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
                    if let Some(ip) = peer {
                        let wait = shared.throttle.delay_for(ip, Instant::now());
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    let ok = shared
                        .expected_auth
                        .as_ref()
                        .is_some_and(|e| credentials_match(given.as_bytes(), e.as_bytes()));
                    match (ok, peer) {
                        (true, Some(ip)) => shared.throttle.succeeded(ip),
                        (false, Some(ip)) => shared.throttle.failed(ip, Instant::now()),
                        _ => {}
                    }
                    if !ok {
                        tracing::warn!(peer = ?peer, "RPC request with wrong credentials");
                        return unauthorised(&shared);
                    }
                    true
                }
            };
            if shared.protect_all && !authenticated {
                return unauthorised(&shared);
            }
            if let Some(page) = explorer_response(&shared, &req) {
                return Ok(page);
            }
            if req.method() == Method::GET && req.uri().path() == "/metrics" {
                let text = format!("{}{}", (shared.node_metrics)(), shared.metrics.render());
                let mut r = HttpResponse::new(HttpBody::from(text));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return Ok(r);
            }
            let refused = Arc::new(AtomicBool::new(false));
            let mut req = req;
            req.extensions_mut().insert(CallerAuth {
                authenticated,
                refused: Arc::clone(&refused),
            });
            if req.method() != Method::POST {
                // WebSocket upgrades and anything else: jsonrpsee decides; the caller's
                // credentials travel with the connection to every call made over it.
                let req = req.map(HttpBody::new);
                return inner.call(req).await.map_err(Into::into);
            }
            if let Err(r @ Refusal::ContentType(_)) =
                check_content_type(header_of(&req, CONTENT_TYPE))
            {
                return reject(StatusCode::UNSUPPORTED_MEDIA_TYPE, &r.to_string());
            }
            let started = Instant::now();
            shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
            let (mut parts, body) = req.into_parts();
            // jsonrpsee insists on the header; a request without one was accepted above.
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let bytes = match Limited::new(body, shared.max_body).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    let msg = format!("request body too large (limit {} bytes)", shared.max_body);
                    return reject(StatusCode::PAYLOAD_TOO_LARGE, &msg);
                }
            };
            let prepared = prepare_request(&bytes);
            shared
                .metrics
                .calls
                .fetch_add(prepared.methods.len().max(1) as u64, Ordering::Relaxed);
            if let Some(len) = prepared.batch_len.filter(|l| *l > shared.max_batch) {
                let msg = format!("batch too long: {len} calls, limit {}", shared.max_batch);
                return reject(StatusCode::OK, &msg);
            }
            let (legacy_single, mut legacy_batch) = (prepared.legacy_single, prepared.legacy_batch);
            if legacy_batch_client(&parts.headers) {
                // python-bitcoinrpc marks its batch calls 2.0 but reads every answer as Bitcoin
                // Core's legacy shape (`error` present even on success).
                legacy_batch.iter_mut().for_each(|l| *l = true);
            }
            let body_bytes = prepared.body.unwrap_or_else(|| bytes.to_vec());
            let req = HttpRequest::from_parts(parts, HttpBody::from(body_bytes));
            let resp = inner.call(req).await.map_err(Into::into)?;
            if refused.load(Ordering::Relaxed) {
                // A call needed credentials the request did not carry: it did not run. Answer
                // as Bitcoin Core answers an unauthenticated request.
                return unauthorised(&shared);
            }
            let mut resp = if legacy_single || legacy_batch.iter().any(|l| *l) {
                rewrite_legacy(resp, legacy_single, &legacy_batch).await?
            } else {
                resp
            };
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            shared.metrics.observe(started.elapsed().as_secs_f64());
            Ok(resp)
        })
    }
}

/// User agents whose batch answers must have the legacy shape although their calls say 2.0:
/// python-bitcoinrpc's `AuthServiceProxy` (`batch_` indexes `response['error']`).
const LEGACY_BATCH_USER_AGENTS: &[&str] = &["AuthServiceProxy/"];

fn legacy_batch_client(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| LEGACY_BATCH_USER_AGENTS.iter().any(|p| ua.starts_with(p)))
}

fn header_of<B>(req: &HttpRequest<B>, name: hyper::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn unauthorised(shared: &Shared) -> Result<HttpResponse, BoxError> {
    shared
        .metrics
        .rejected_requests
        .fetch_add(1, Ordering::Relaxed);
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        error_body(
            INVALID_REQUEST,
            "authentication required (HTTP Basic: the cookie file <datadir>/.cookie, or rpc_user/rpc_password)",
        ),
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cairnd\""),
    );
    Ok(r)
}

/// The explorer hook: a plain `GET` of one of the explorer's paths gets its static file (with its
/// Content-Security-Policy); anything else, WebSocket upgrades included, goes on as before.
fn explorer_response<B>(shared: &Shared, req: &HttpRequest<B>) -> Option<HttpResponse> {
    if !shared.explorer {
        return None;
    }
    crate::explorer::response(req.method(), req.uri().path(), req.headers())
}

/// Rewrites the responses to legacy calls. Batch responses are matched to calls by `id`
/// (jsonrpsee keeps the order, but ids are what the spec guarantees).
async fn rewrite_legacy(
    resp: HttpResponse,
    single: bool,
    batch: &[bool],
) -> Result<HttpResponse, BoxError> {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(HttpResponse::from_parts(
            parts,
            HttpBody::from(bytes.to_vec()),
        ));
    };
    match &mut v {
        Value::Array(resps) if !single => {
            for (r, legacy) in resps
                .iter_mut()
                .zip(batch.iter().chain(std::iter::repeat(&false)))
            {
                if *legacy {
                    downgrade_response(r);
                }
            }
        }
        r => downgrade_response(r),
    }
    let mut parts = parts;
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(HttpResponse::from_parts(
        parts,
        HttpBody::from(v.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_detection() {
        assert!(is_legacy(&json!({"method": "x", "id": 1})));
        assert!(is_legacy(
            &json!({"jsonrpc": "1.0", "method": "x", "id": 1})
        ));
        assert!(!is_legacy(
            &json!({"jsonrpc": "2.0", "method": "x", "id": 1})
        ));
    }

    #[test]
    fn legacy_response_has_result_error_and_id() {
        let mut ok = json!({"jsonrpc": "2.0", "result": 5, "id": 1});
        downgrade_response(&mut ok);
        assert_eq!(ok, json!({"result": 5, "error": null, "id": 1}));
        let mut err = json!({"jsonrpc": "2.0", "error": {"code": -1, "message": "m"}, "id": "a"});
        downgrade_response(&mut err);
        assert_eq!(
            err,
            json!({"result": null, "error": {"code": -1, "message": "m"}, "id": "a"})
        );
    }

    #[test]
    fn basic_auth_header() {
        let c = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        assert_eq!(basic_auth_value(&c), "Basic dTpw");
    }
}
