//! Browser defences: what keeps web pages out of a node that answers on loopback without
//! credentials.
//!
//! A page the operator visits can send a "simple" cross-origin `POST` (`text/plain`, no CORS
//! preflight), open a WebSocket (CORS does not cover those), or rebind its own host name to
//! 127.0.0.1. So: a `POST` that names a `Content-Type` must name `application/json` (415
//! otherwise: a browser cannot send that cross-origin without a preflight, which we never
//! approve); a request with an
//! `Origin` header must come from the node's own origin (a page it serves itself) or one the
//! operator listed (403 otherwise, WebSocket upgrades included); and the `Host` header must name
//! the bind address, `localhost`, or a host the operator listed (403 otherwise: DNS rebinding
//! needs a name of the attacker's).
//!
//! Pure functions, so they are tested without a server.

use std::net::{IpAddr, SocketAddr};

/// The operator's exceptions and the address the server is bound to.
#[derive(Clone, Debug)]
pub struct BrowserGuard {
    bind: SocketAddr,
    /// Extra `Host` names accepted (lower case, without port).
    allowed_hosts: Vec<String>,
    /// Extra origins accepted (`scheme://host[:port]`, lower case, no trailing slash).
    allowed_origins: Vec<String>,
}

/// Why a request was refused before anything ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the `Host` header names neither the bind address nor an allowed host.
    Host(String),
    /// 403: a foreign `Origin`.
    Origin(String),
    /// 415: a `POST` that is not `application/json`.
    ContentType(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Host(h) => write!(
                f,
                "Host {h:?} is not this node's address; list it in rpc_allowed_hosts to allow it"
            ),
            Refusal::Origin(o) => write!(
                f,
                "requests from web pages of origin {o:?} are refused; list it in rpc_allowed_origins to allow it"
            ),
            Refusal::ContentType(c) => {
                write!(f, "Content-Type must be application/json (got {c:?})")
            }
        }
    }
}

fn normalise_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The host part of a `Host` header value (`name`, `name:port`, `[v6]:port`), lower case.
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.to_ascii_lowercase()
}

impl BrowserGuard {
    pub fn new(bind: SocketAddr, allowed_hosts: &[String], allowed_origins: &[String]) -> Self {
        Self {
            bind,
            allowed_hosts: allowed_hosts.iter().map(|h| host_name(h)).collect(),
            allowed_origins: allowed_origins
                .iter()
                .map(|o| normalise_origin(o))
                .collect(),
        }
    }

    /// The `Host` header, if any (HTTP/1.0 clients may omit it; browsers never do).
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        let Some(host) = host else { return Ok(()) };
        let name = host_name(host);
        if name == "localhost" || self.allowed_hosts.contains(&name) {
            return Ok(());
        }
        let bind = self.bind.ip();
        match name.parse::<IpAddr>() {
            // Rebinding needs a name; an address literal is the address the client dialled.
            Ok(ip) if ip == bind || bind.is_unspecified() => Ok(()),
            Ok(ip) if ip.is_loopback() && bind.is_loopback() => Ok(()),
            _ => Err(Refusal::Host(host.to_string())),
        }
    }

    /// The `Origin` header, if any. The node's own origin is `http://<Host>` (its explorer page).
    pub fn check_origin(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), Refusal> {
        let Some(origin) = origin else { return Ok(()) };
        let o = normalise_origin(origin);
        if let Some(h) = host
            && o == format!("http://{}", h.trim().to_ascii_lowercase())
        {
            return Ok(());
        }
        if self.allowed_origins.contains(&o) {
            return Ok(());
        }
        Err(Refusal::Origin(origin.to_string()))
    }
}

/// Whether a `POST`'s `Content-Type` is acceptable: JSON (`application/json`, parameters such as
/// `charset` allowed), or none at all. Some RPC clients send none (npm `bitcoin-core` 5); a
/// browser can also send none (a `Blob` body), but never cross-origin without an `Origin`
/// header, which [`BrowserGuard::check_origin`] refuses.
pub fn check_content_type(ct: Option<&str>) -> Result<(), Refusal> {
    let Some(value) = ct else { return Ok(()) };
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Refusal::ContentType(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> BrowserGuard {
        BrowserGuard::new(
            "127.0.0.1:8645".parse().unwrap(),
            &["node.example".into()],
            &["https://explorer.example/".into()],
        )
    }

    #[test]
    fn host_names_parse() {
        assert_eq!(host_name("Localhost:8645"), "localhost");
        assert_eq!(host_name("[::1]:8645"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            None,
            Some("127.0.0.1:8645"),
            Some("localhost:8645"),
            Some("LOCALHOST"),
            Some("[::1]:8645"),
            Some("node.example:8645"),
        ] {
            assert_eq!(g.check_host(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "evil.example:8645",
            "127.0.0.1.nip.io:8645",
            "10.0.0.1:8645",
            "",
        ] {
            assert!(g.check_host(Some(bad)).is_err(), "{bad}");
        }
        let wide = BrowserGuard::new("0.0.0.0:8645".parse().unwrap(), &[], &[]);
        assert_eq!(wide.check_host(Some("192.0.2.7:8645")), Ok(()));
        assert!(wide.check_host(Some("evil.example")).is_err());
    }

    #[test]
    fn origins() {
        let g = guard();
        assert_eq!(g.check_origin(None, Some("127.0.0.1:8645")), Ok(()));
        assert_eq!(
            g.check_origin(Some("http://127.0.0.1:8645"), Some("127.0.0.1:8645")),
            Ok(())
        );
        assert_eq!(
            g.check_origin(Some("https://explorer.example"), Some("127.0.0.1:8645")),
            Ok(())
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "https://127.0.0.1:8645",
        ] {
            assert!(
                g.check_origin(Some(bad), Some("127.0.0.1:8645")).is_err(),
                "{bad}"
            );
        }
        assert!(g.check_origin(Some("http://127.0.0.1:8645"), None).is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(check_content_type(Some("application/json")), Ok(()));
        assert_eq!(check_content_type(None), Ok(()));
        assert_eq!(
            check_content_type(Some("Application/JSON; charset=utf-8")),
            Ok(())
        );
        for bad in [
            Some(""),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
        ] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
