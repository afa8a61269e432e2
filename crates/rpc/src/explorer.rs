//! The built-in block explorer: static files served on `GET` for the explorer's paths, on the
//! RPC port. The page is read-only and talks to the node only same-origin, with the JSON-RPC
//! methods any client uses (`POST /` with `Content-Type: application/json`) and the WebSocket
//! subscriptions; it holds no credentials and adds no method, so it is no way around whatever
//! guards the RPC.
//!
//! Every file is compiled in (`include_str!`): nothing is read from disk and nothing is loaded
//! from outside the node. The Content-Security-Policy allows scripts, styles and connections to
//! this origin only (no inline script, no `eval`), and no framing.

use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::http::{HeaderMap, Method, StatusCode};
use jsonrpsee::server::{HttpBody, HttpResponse};

const INDEX_HTML: &str = include_str!("../explorer/index.html");
const EXPLORER_JS: &str = include_str!("../explorer/explorer.js");
const EXPLORER_CSS: &str = include_str!("../explorer/explorer.css");

/// Longest path the explorer answers (a route plus a hash or an address is far shorter).
const MAX_PATH_LEN: usize = 256;

/// The page's routes: each serves the same HTML, and the script renders the route.
const PAGE_PREFIXES: [&str; 4] = ["/block/", "/tx/", "/address/", "/search/"];

/// Static files under `/static/`.
const STATIC_FILES: [(&str, &str, &str); 2] = [
    (
        "/static/explorer.js",
        EXPLORER_JS,
        "text/javascript; charset=utf-8",
    ),
    (
        "/static/explorer.css",
        EXPLORER_CSS,
        "text/css; charset=utf-8",
    ),
];

/// What the explorer serves for a request, if it is one of its own: a plain `GET` (not a
/// WebSocket upgrade, which goes to the RPC) of `/`, a page route or a static file.
pub fn response(method: &Method, path: &str, headers: &HeaderMap) -> Option<HttpResponse> {
    if method != Method::GET || headers.contains_key(hyper::header::UPGRADE) {
        return None;
    }
    if path.len() > MAX_PATH_LEN {
        return None;
    }
    if path == "/favicon.ico" {
        // Browsers ask for it on every page; an empty answer keeps their consoles clean.
        let mut r = file("", "image/x-icon");
        *r.status_mut() = StatusCode::NO_CONTENT;
        return Some(r);
    }
    if let Some((_, body, ty)) = STATIC_FILES.iter().find(|f| f.0 == path) {
        return Some(file(body, ty));
    }
    let is_page = path == "/" || PAGE_PREFIXES.iter().any(|p| path.starts_with(p));
    is_page.then(|| file(INDEX_HTML, "text/html; charset=utf-8"))
}

/// The policy every explorer response carries. `'self'` covers same-origin `ws:` connections
/// in CSP Level 3, which every current browser implements.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<HttpResponse> {
        response(&Method::GET, path, &HeaderMap::new())
    }

    #[test]
    fn routes_serve_the_page_with_a_strict_policy() {
        for p in [
            "/",
            "/block/00ff",
            "/tx/ab",
            "/address/cdev1x",
            "/search/12",
        ] {
            let r = get(p).unwrap_or_else(|| panic!("{p} not served"));
            assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
            let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap_or("");
            assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        let js = get("/static/explorer.js").expect("script served");
        assert_eq!(js.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(get("/metrics").is_none());
        assert!(get("/static/other.js").is_none());
        assert!(get(&format!("/tx/{}", "a".repeat(MAX_PATH_LEN))).is_none());
        assert!(response(&Method::POST, "/", &HeaderMap::new()).is_none());
        let mut upgrade = HeaderMap::new();
        upgrade.insert(
            hyper::header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
        assert!(response(&Method::GET, "/", &upgrade).is_none());
    }

    /// The page must not run inline script or load anything from elsewhere.
    #[test]
    fn page_has_no_inline_script_and_no_external_resource() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/static/explorer.js\""));
        // No inline event handler (` onclick=` and the like).
        let bytes = html.as_bytes();
        for (i, _) in html.match_indices(" on") {
            let rest = &bytes[i + 3..];
            let name_len = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
            assert!(
                rest.get(name_len) != Some(&b'='),
                "inline handler at byte {i} of the page"
            );
        }
        for text in [INDEX_HTML, EXPLORER_JS, EXPLORER_CSS] {
            // The SVG namespace is an identifier, not a resource.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("eval(") && !text.contains("new Function"));
            assert!(!text.contains("innerHTML"));
        }
    }
}
