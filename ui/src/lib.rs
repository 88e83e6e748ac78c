//! The X-Ray web UI: hand-written HTML, CSS and JavaScript (ES modules, no
//! build step) embedded in the binary and served by one axum [`router`].
//!
//! | route | what |
//! |---|---|
//! | `GET /` and any client-side route (`/executions/…`, `/pipelines/…`, `/diff…`) | `index.html`, revalidated on every load (`no-cache` + `ETag`) |
//! | `GET /assets/{version}/{file}` | scripts, styles, icons; cached for a year (`immutable`) because `{version}` is a hash of every asset |
//! | anything under [`RESERVED_PREFIXES`] not served by another router | a JSON 404, never the UI |
//!
//! The UI only talks to the public dashboard API (`/api/v1`) of the same
//! origin. Merge the router with the API's: `api_router.merge(xray_ui::router())`.
//! The UI router has no `fallback`, only a catch-all route, so merging never
//! conflicts and the API's own routes always win over the catch-all.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{any, get};

/// Path prefixes the UI never answers with `index.html`: the API, health
/// checks and metrics. A request under one of them that no other router
/// serves gets a JSON 404 (`{"code": "not_found", "message": …}`, the API's
/// error shape), so a typo in an API path is never mistaken for the UI.
pub const RESERVED_PREFIXES: &[&str] = &["/api", "/healthz", "/readyz", "/metrics"];

/// True when `path` is one of [`RESERVED_PREFIXES`] or below one
/// (`/api`, `/api/v1/x`; not `/apis`).
pub fn is_reserved(path: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Content security policy of the HTML page: everything from this origin,
/// nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ct:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            bytes: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

/// Content type of every script.
const JS: &str = "text/javascript; charset=utf-8";

/// Every file below `/assets/{version}/`.
const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("json.js", JS),
    asset!("charts.js", JS),
    asset!("waterfall.js", JS),
    asset!("views/executions.js", JS),
    asset!("views/execution.js", JS),
    asset!("views/pipelines.js", JS),
    asset!("views/diff.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The page template; `{{VERSION}}` becomes the asset version.
const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

/// FNV-1a 64: a cheap content fingerprint for ETags and the asset version.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    let mut h = h;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

struct Bundle {
    /// Hash of every asset and the template, 16 hex.
    version: String,
    index: String,
    index_etag: String,
    etags: Vec<String>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(|| {
    let mut h = fnv1a(FNV_OFFSET, INDEX_TEMPLATE.as_bytes());
    let etags = ASSETS
        .iter()
        .map(|a| {
            h = fnv1a(h, a.name.as_bytes());
            h = fnv1a(h, a.bytes);
            format!("\"{:016x}\"", fnv1a(FNV_OFFSET, a.bytes))
        })
        .collect();
    let version = format!("{h:016x}");
    let index = INDEX_TEMPLATE.replace("{{VERSION}}", &version);
    let index_etag = format!("\"{:016x}\"", fnv1a(FNV_OFFSET, index.as_bytes()));
    Bundle {
        version,
        index,
        index_etag,
        etags,
    }
});

/// The version segment of asset URLs: a hash of every embedded file, so a
/// new build never serves stale cached scripts.
pub fn asset_version() -> &'static str {
    &BUNDLE.version
}

/// The UI: `index.html` at `/` and every client-side route, the assets under
/// `/assets/{version}/`, JSON 404s under [`RESERVED_PREFIXES`]. Stateless;
/// merge it with the API router (it sets no fallback, so `merge` works in
/// either order).
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            any(|method: Method, headers: HeaderMap| async move { index(&method, &headers) }),
        )
        .route("/assets/{version}/{*file}", get(asset))
        .route("/{*path}", any(spa))
}

fn index(method: &Method, headers: &HeaderMap) -> Response {
    if let Some(r) = reject_method(method) {
        return r;
    }
    let b = &*BUNDLE;
    let mut r = conditional(
        method,
        headers,
        &b.index_etag,
        "text/html; charset=utf-8",
        b.index.as_bytes(),
    );
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn asset(
    method: Method,
    headers: HeaderMap,
    Path((version, file)): Path<(String, String)>,
) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == file) else {
        return plain(StatusCode::NOT_FOUND, "no such asset");
    };
    let a = &ASSETS[i];
    let mut r = conditional(&method, &headers, &BUNDLE.etags[i], a.content_type, a.bytes);
    // Only the current version may be cached for good: an old page asking
    // for an old version gets today's file, revalidated next time.
    let cache = if version == BUNDLE.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn spa(method: Method, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path();
    if is_reserved(path) {
        let body = format!(
            "{{\"code\":\"not_found\",\"message\":{}}}",
            json_string(&format!("no route for {method} {path}"))
        );
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    if let Some(r) = reject_method(&method) {
        return r;
    }
    // A missing file (`/robots.txt`, `/x.png`) is a 404, not the page: only
    // extension-less paths are client-side routes.
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    index(&method, &headers)
}

fn reject_method(method: &Method) -> Option<Response> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

/// 200 with the body, or 304 when `If-None-Match` names `etag`.
fn conditional(
    method: &Method,
    headers: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    bytes: &'static [u8],
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut r = if matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        r
    } else {
        Response::new(Body::from(bytes))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    r
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON string literal for `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
