//! The HTTP layer in front of jsonrpsee.
//!
//! - `GET /metrics`: Prometheus text (RPC counters here, node gauges from the node).
//! - Bounds the body before reading it all and the batch length before parsing calls.
//! - JSON-RPC 1.0 requests (no `jsonrpc` member, or `"1.0"`), which many Bitcoin client libraries
//!   send, are passed to jsonrpsee as 2.0 and their responses rewritten the way Bitcoin Core
//!   answers them: `{"result", "error", "id"}`, both members present.
//! - Credentials: when configured, privileged methods always need them and, on a non-loopback
//!   address, every request does.
//! - Any content type is accepted for `POST` (Bitcoin Core's own examples send `text/plain`).

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::http::{Method, StatusCode};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::{Value, json};
use tower::{Layer, Service};

use crate::error::INVALID_REQUEST;
use crate::{Credentials, RpcConfig};

/// Methods that change node state or stop it: they need credentials whenever some are configured.
pub const PRIVILEGED_METHODS: &[&str] = &["stop", "generatetoaddress", "submitblock"];

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
                protect_all: config.credentials.is_some() && !config.addr.ip().is_loopback(),
                expected_auth,
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
            let authorised = match &shared.expected_auth {
                None => true,
                Some(expected) => {
                    req.headers()
                        .get(AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        == Some(expected.as_str())
                }
            };
            let unauthorised = || {
                shared
                    .metrics
                    .rejected_requests
                    .fetch_add(1, Ordering::Relaxed);
                let mut r = json_response(
                    StatusCode::UNAUTHORIZED,
                    error_body(
                        INVALID_REQUEST,
                        "authentication required (HTTP Basic, see the cookie file in the data dir)",
                    ),
                );
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"cairnd\""),
                );
                Ok(r)
            };
            if let Some(page) = explorer_response(&shared, &req) {
                if shared.protect_all && !authorised {
                    return unauthorised();
                }
                return Ok(page);
            }
            if req.method() == Method::GET && req.uri().path() == "/metrics" {
                if shared.protect_all && !authorised {
                    return unauthorised();
                }
                let text = format!("{}{}", (shared.node_metrics)(), shared.metrics.render());
                let mut r = HttpResponse::new(HttpBody::from(text));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return Ok(r);
            }
            if req.method() != Method::POST {
                // WebSocket upgrades and anything else: jsonrpsee decides.
                if shared.protect_all && !authorised {
                    return unauthorised();
                }
                let req = req.map(HttpBody::new);
                return inner.call(req).await.map_err(Into::into);
            }
            let started = Instant::now();
            shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
            let (mut parts, body) = req.into_parts();
            let bytes = match Limited::new(body, shared.max_body).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    shared
                        .metrics
                        .rejected_requests
                        .fetch_add(1, Ordering::Relaxed);
                    let msg = format!("request body too large (limit {} bytes)", shared.max_body);
                    return Ok(json_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        error_body(INVALID_REQUEST, &msg),
                    ));
                }
            };
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let prepared = prepare_request(&bytes);
            shared
                .metrics
                .calls
                .fetch_add(prepared.methods.len().max(1) as u64, Ordering::Relaxed);
            let needs_auth = shared.protect_all
                || prepared
                    .methods
                    .iter()
                    .any(|m| PRIVILEGED_METHODS.contains(&m.as_str()));
            if shared.expected_auth.is_some() && needs_auth && !authorised {
                return unauthorised();
            }
            if let Some(len) = prepared.batch_len.filter(|l| *l > shared.max_batch) {
                shared
                    .metrics
                    .rejected_requests
                    .fetch_add(1, Ordering::Relaxed);
                let msg = format!("batch too long: {len} calls, limit {}", shared.max_batch);
                return Ok(json_response(
                    StatusCode::OK,
                    error_body(INVALID_REQUEST, &msg),
                ));
            }
            let (legacy_single, legacy_batch) = (prepared.legacy_single, prepared.legacy_batch);
            let body_bytes = prepared.body.unwrap_or_else(|| bytes.to_vec());
            let req = HttpRequest::from_parts(parts, HttpBody::from(body_bytes));
            let resp = inner.call(req).await.map_err(Into::into)?;
            let resp = if legacy_single || legacy_batch.iter().any(|l| *l) {
                rewrite_legacy(resp, legacy_single, &legacy_batch).await?
            } else {
                resp
            };
            shared.metrics.observe(started.elapsed().as_secs_f64());
            Ok(resp)
        })
    }
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
