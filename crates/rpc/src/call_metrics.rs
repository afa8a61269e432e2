//! Calls and latency per method, for `/metrics`: an RPC middleware, so each call of a batch and
//! each WebSocket call is counted under its own method. Method names are the server's own
//! (a client's unknown method names are counted under `other`), so the table cannot grow
//! because a client invents names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceT};
use jsonrpsee::types::Request;

use crate::auth::{OPEN_METHODS, PRIVILEGED_METHODS};

/// Label for calls to methods the server does not have.
const OTHER: &str = "other";

#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    calls: u64,
    errors: u64,
    seconds: f64,
}

/// Per-method counters.
#[derive(Debug, Default)]
pub struct MethodMetrics {
    by_method: Mutex<BTreeMap<&'static str, Stats>>,
}

fn label(method: &str) -> &'static str {
    OPEN_METHODS
        .iter()
        .chain(PRIVILEGED_METHODS)
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

impl MethodMetrics {
    fn record(&self, method: &str, secs: f64, error: bool) {
        let mut map = self.by_method.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(label(method)).or_default();
        s.calls += 1;
        s.errors += u64::from(error);
        s.seconds += secs;
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let map = self.by_method.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_method_calls_total JSON-RPC calls per method.\n# TYPE cairn_rpc_method_calls_total counter"
        );
        for (m, s) in map.iter() {
            let _ = writeln!(
                out,
                "cairn_rpc_method_calls_total{{method=\"{m}\"}} {}",
                s.calls
            );
        }
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_method_errors_total JSON-RPC calls per method answered with an error.\n# TYPE cairn_rpc_method_errors_total counter"
        );
        for (m, s) in map.iter() {
            let _ = writeln!(
                out,
                "cairn_rpc_method_errors_total{{method=\"{m}\"}} {}",
                s.errors
            );
        }
        let _ = writeln!(
            out,
            "# HELP cairn_rpc_method_seconds_total Time spent answering each method.\n# TYPE cairn_rpc_method_seconds_total counter"
        );
        for (m, s) in map.iter() {
            let _ = writeln!(
                out,
                "cairn_rpc_method_seconds_total{{method=\"{m}\"}} {:.6}",
                s.seconds
            );
        }
        out
    }
}

/// The middleware (see the module docs).
#[derive(Clone, Debug)]
pub struct CountCalls<S> {
    pub inner: S,
    pub metrics: Arc<MethodMetrics>,
}

impl<S> RpcServiceT for CountCalls<S>
where
    S: crate::RpcService,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let (inner, metrics) = (self.inner.clone(), Arc::clone(&self.metrics));
        let method = label(request.method_name());
        async move {
            let started = Instant::now();
            let resp = inner.call(request).await;
            metrics.record(method, started.elapsed().as_secs_f64(), resp.is_error());
            resp
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.batch(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let m = MethodMetrics::default();
        m.record("getblockcount", 0.001, false);
        m.record("no-such-method-1", 0.001, true);
        m.record("no-such-method-2", 0.001, true);
        let text = m.render();
        assert!(text.contains("cairn_rpc_method_calls_total{method=\"getblockcount\"} 1"));
        assert!(text.contains("cairn_rpc_method_calls_total{method=\"other\"} 2"));
        assert!(text.contains("cairn_rpc_method_errors_total{method=\"other\"} 2"));
        assert!(!text.contains("no-such-method"));
    }
}
