//! Who may run what: decided on the calls jsonrpsee actually executes, never on a second parse
//! of the body.
//!
//! The HTTP layer checks the `Authorization` header once per HTTP request or WebSocket upgrade
//! and attaches the outcome ([`CallerAuth`]) to the request's extensions; jsonrpsee hands those
//! extensions to every call parsed from that request (each call of a batch, each message on a
//! WebSocket). [`Authorize`], an RPC middleware, then refuses every method that is not on the
//! open list unless the caller authenticated. A body jsonrpsee cannot parse runs nothing, so
//! nothing there can be smuggled past the check.
//!
//! Deny by default: a registered method is open only if it is listed in [`OPEN_METHODS`]; the
//! server refuses to start if a registered method is in neither list, so a new method is
//! classified on purpose. Names the server does not have pass through to jsonrpsee's -32601.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::types::{ErrorObject, Request};
use sha2::{Digest, Sha256};

/// Methods anyone who reaches the port may call (on loopback; beyond loopback every call needs
/// credentials): reads, relaying a transaction, and the subscriptions.
pub const OPEN_METHODS: &[&str] = &[
    "getblockchaininfo",
    "getblockcount",
    "getbestblockhash",
    "getblockhash",
    "getblockheader",
    "getblock",
    "getrawtransaction",
    "gettxout",
    "gettxoutsetinfo",
    "testmempoolaccept",
    "getmempoolinfo",
    "getrawmempool",
    "getmempoolentry",
    "estimatefee",
    "getaddressbalance",
    "getaddressutxos",
    "getaddresstxids",
    "getmininginfo",
    "sendrawtransaction",
    "getpeerinfo",
    "getnetworkinfo",
    "getconnectioncount",
    "subscribe_newblocks",
    "unsubscribe_newblocks",
    "subscribe_newtransactions",
    "unsubscribe_newtransactions",
    "decoderawtransaction",
    "getblockstats",
    "getchaintips",
    "getdifficulty",
    "getindexinfo",
    "getnettotals",
    "getnetworkhashps",
    "help",
    "uptime",
    "validateaddress",
    "gettxspendingprevout",
    "getmempoolancestors",
    "getmempooldescendants",
    "estimatesmartfee",
    "getchaintxstats",
];

/// Methods that change node state beyond relaying a transaction, or stop it: they always need
/// credentials (listed for documentation and the classification test; the check itself is
/// "not open").
pub const PRIVILEGED_METHODS: &[&str] = &["stop", "generatetoaddress", "submitblock"];

/// JSON-RPC error code of a call refused for lack of credentials (Bitcoin Core answers such
/// requests with HTTP 401 and no JSON; over WebSocket a code is needed).
pub const UNAUTHORIZED: i32 = -32001;

/// How long the next attempt from an address waits after a failed one (Bitcoin Core: 250 ms).
pub const FAILED_AUTH_DELAY: Duration = Duration::from_millis(250);
/// Most addresses remembered for the failed-attempt delay; beyond it the oldest are forgotten.
pub const MAX_TRACKED_FAILURES: usize = 4_096;

/// What the HTTP layer learnt about the caller, attached to every call of the request.
#[derive(Clone, Debug)]
pub struct CallerAuth {
    /// The request carried valid credentials.
    pub authenticated: bool,
    /// Set when a call was refused for lack of credentials (the HTTP layer then answers 401).
    pub refused: Arc<AtomicBool>,
}

pub fn is_open(method: &str) -> bool {
    OPEN_METHODS.contains(&method)
}

/// Registered methods that are neither open nor privileged (must be empty at start).
pub fn unclassified<'a>(registered: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    registered
        .into_iter()
        .filter(|m| !is_open(m) && !PRIVILEGED_METHODS.contains(m))
        .collect()
}

fn allowed(method: &str, registered: &HashSet<String>, ext: &jsonrpsee::Extensions) -> bool {
    // An unknown name runs nothing: jsonrpsee answers it with -32601.
    if is_open(method) || !registered.contains(method) {
        return true;
    }
    match ext.get::<CallerAuth>() {
        Some(a) if a.authenticated => true,
        Some(a) => {
            a.refused.store(true, Ordering::Relaxed);
            false
        }
        // No transport context: refuse (every request passes through the HTTP layer).
        None => false,
    }
}

fn refusal(method: &str) -> ErrorObject<'static> {
    ErrorObject::owned(
        UNAUTHORIZED,
        format!(
            "{method} needs credentials: HTTP Basic with the cookie in the data dir (<datadir>/.cookie) or rpc_user/rpc_password"
        ),
        None::<()>,
    )
}

/// The RPC middleware that enforces [`OPEN_METHODS`] (see the module docs).
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    pub inner: S,
    /// Every method the server has.
    pub registered: Arc<HashSet<String>>,
}

impl<S> RpcServiceT for Authorize<S>
where
    S: crate::RpcService,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let ok = allowed(
            request.method_name(),
            &self.registered,
            request.extensions(),
        );
        let inner = self.inner.clone();
        async move {
            if ok {
                inner.call(request).await
            } else {
                let err = refusal(request.method_name());
                MethodResponse::error(request.id, err)
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let ok = allowed(n.method_name(), &self.registered, n.extensions());
        let inner = self.inner.clone();
        async move {
            if ok {
                inner.notification(n).await
            } else {
                MethodResponse::notification()
            }
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let Ok(e) = entry else { continue };
            if allowed(e.method_name(), &self.registered, e.extensions()) {
                continue;
            }
            let err = refusal(e.method_name());
            *entry = match e {
                BatchEntry::Call(req) => Err(BatchEntryErr::new(req.id.clone().into_owned(), err)),
                // A refused notification must not run; it gets no answer either way.
                BatchEntry::Notification(_) => {
                    Err(BatchEntryErr::new(jsonrpsee::types::Id::Null, err))
                }
            };
        }
        self.inner.batch(batch)
    }
}

/// Compares credentials in time independent of where they differ (both sides are hashed first,
/// so the length does not leak either).
pub fn credentials_match(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Slows down guessing: after a failed attempt from an address, each further attempt from it
/// is served no sooner than [`FAILED_AUTH_DELAY`] after the previous one. Bounded memory.
#[derive(Debug, Default)]
pub struct FailedAuthThrottle {
    next_allowed: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailedAuthThrottle {
    /// How long an attempt from `ip` arriving at `now` must wait; reserves its slot.
    pub fn delay_for(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut map = self.next_allowed.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&ip) {
            Some(next) if *next > now => {
                let wait = *next - now;
                *next += FAILED_AUTH_DELAY;
                wait
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.next_allowed.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_FAILURES && !map.contains_key(&ip) {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_TRACKED_FAILURES {
                // Still full of live entries: forget the one that frees soonest.
                if let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let next = map.entry(ip).or_insert(now);
        *next = (*next).max(now) + FAILED_AUTH_DELAY;
    }

    /// A successful attempt clears the address.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.next_allowed.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&ip);
    }

    pub fn tracked(&self) -> usize {
        self.next_allowed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_privileged_lists_do_not_overlap() {
        for m in PRIVILEGED_METHODS {
            assert!(!is_open(m), "{m} is privileged and open");
        }
    }

    #[test]
    fn credential_comparison() {
        assert!(credentials_match(b"Basic abc", b"Basic abc"));
        assert!(!credentials_match(b"Basic abd", b"Basic abc"));
        assert!(!credentials_match(b"Basic ab", b"Basic abc"));
        assert!(!credentials_match(b"", b"Basic abc"));
    }

    #[test]
    fn failed_attempts_delay_the_next_ones_from_that_address_only() {
        let t = FailedAuthThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap());
        let now = Instant::now();
        assert_eq!(t.delay_for(a, now), Duration::ZERO);
        t.failed(a, now);
        assert_eq!(t.delay_for(a, now), FAILED_AUTH_DELAY);
        // A second concurrent attempt queues behind the first.
        assert_eq!(t.delay_for(a, now), 2 * FAILED_AUTH_DELAY);
        assert_eq!(t.delay_for(b, now), Duration::ZERO);
        t.succeeded(a);
        assert_eq!(t.delay_for(a, now), Duration::ZERO);
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let t = FailedAuthThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_FAILURES as u32 + 500) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.tracked() <= MAX_TRACKED_FAILURES);
    }
}
