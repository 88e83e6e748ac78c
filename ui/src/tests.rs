use std::collections::BTreeSet;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tower::ServiceExt;

use super::*;

async fn call(app: Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
}

async fn get_path(app: Router, uri: &str) -> (StatusCode, HeaderMap, String) {
    let r = call(app, "GET", uri, &[]).await;
    let status = r.status();
    let headers = r.headers().clone();
    let body = to_bytes(r.into_body(), 10 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn ct(h: &HeaderMap) -> &str {
    h.get(header::CONTENT_TYPE).unwrap().to_str().unwrap()
}

fn cache(h: &HeaderMap) -> &str {
    h.get(header::CACHE_CONTROL).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn index_is_html_revalidated_and_points_at_versioned_assets() {
    let (s, h, body) = get_path(router(), "/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct(&h), "text/html; charset=utf-8");
    assert_eq!(cache(&h), "no-cache");
    assert!(h.get(header::ETAG).is_some());
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let v = asset_version();
    assert_eq!(v.len(), 16);
    assert!(body.contains(&format!("/assets/{v}/app.js")), "{body}");
    assert!(body.contains(&format!("/assets/{v}/style.css")), "{body}");
    assert!(!body.contains("{{VERSION}}"));
}

#[tokio::test]
async fn client_side_routes_get_the_page() {
    for path in [
        "/executions",
        "/executions/6f1c2d/steps",
        "/pipelines/competitor-selection?from=1&to=2",
        "/diff?a=x&b=y",
        "/apis",
        "/api-keys",
        "/metricsboard",
    ] {
        let (s, h, body) = get_path(router(), path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(ct(&h), "text/html; charset=utf-8", "{path}");
        assert!(body.contains("<!doctype html>"), "{path}");
    }
}

#[tokio::test]
async fn assets_have_their_content_types_and_long_caching() {
    let v = asset_version();
    for (file, want) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("views/execution.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let (s, h, body) = get_path(router(), &format!("/assets/{v}/{file}")).await;
        assert_eq!(s, StatusCode::OK, "{file}");
        assert_eq!(ct(&h), want, "{file}");
        assert_eq!(cache(&h), "public, max-age=31536000, immutable", "{file}");
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert!(!body.is_empty());
    }
    // A stale version still gets the file, but not cached for good.
    let (s, h, _) = get_path(router(), "/assets/0000000000000000/app.js").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cache(&h), "no-cache");
    let (s, _, _) = get_path(router(), &format!("/assets/{v}/nope.js")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get_path(router(), &format!("/assets/{v}/../Cargo.toml")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn etags_give_304() {
    let r = call(router(), "GET", "/", &[]).await;
    let etag = r
        .headers()
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let r = call(router(), "GET", "/executions", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(to_bytes(r.into_body(), 1024).await.unwrap().is_empty());
    let r = call(router(), "GET", "/", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);

    let path = format!("/assets/{}/style.css", asset_version());
    let r = call(router(), "GET", &path, &[]).await;
    let etag = r
        .headers()
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let r = call(
        router(),
        "GET",
        &path,
        &[("if-none-match", &format!("\"x\", W/{etag}"))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn head_has_length_and_no_body_and_writes_are_refused() {
    let r = call(router(), "HEAD", "/", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let len: usize = r.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(len > 100);
    assert!(to_bytes(r.into_body(), 1024).await.unwrap().is_empty());

    for path in ["/", "/executions/x"] {
        let r = call(router(), "POST", path, &[]).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }
}

#[tokio::test]
async fn missing_files_are_404_not_the_page() {
    for path in ["/robots.txt", "/favicon.ico", "/executions/x/export.csv"] {
        let (s, h, _) = get_path(router(), path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(ct(&h), "text/plain; charset=utf-8");
    }
}

#[tokio::test]
async fn reserved_paths_are_json_404_on_their_own() {
    for path in [
        "/api",
        "/api/",
        "/api/v1/executions",
        "/api/v1/nope?x=1",
        "/healthz",
        "/readyz",
        "/metrics",
        "/metrics/x",
    ] {
        for method in ["GET", "POST", "DELETE"] {
            let r = call(router(), method, path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(ct(r.headers()), "application/json", "{method} {path}");
            let body = to_bytes(r.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["code"], "not_found");
            let p = path.split('?').next().unwrap();
            assert_eq!(v["message"], format!("no route for {method} {p}"));
        }
    }
}

/// A stand-in for the dashboard API: a few routes and its own fallback,
/// like the real one.
fn fake_api() -> Router {
    Router::new()
        .route(
            "/api/v1/executions",
            get(|| async { Json(serde_json::json!({"items": [], "next_cursor": null})) }),
        )
        .route("/api/v1/executions/{id}", get(|| async { "detail" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(|| async { "# metrics" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "api fallback") })
}

#[tokio::test]
async fn merged_with_the_api_never_shadows_it() {
    for app in [fake_api().merge(router()), router().merge(fake_api())] {
        let (s, h, body) = get_path(app.clone(), "/api/v1/executions?limit=5").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct(&h), "application/json");
        assert!(body.contains("items"));
        let (_, _, body) = get_path(app.clone(), "/api/v1/executions/abc").await;
        assert_eq!(body, "detail");
        for (path, want) in [
            ("/healthz", "ok"),
            ("/readyz", "ready"),
            ("/metrics", "# metrics"),
        ] {
            let (s, _, body) = get_path(app.clone(), path).await;
            assert_eq!((s, body.as_str()), (StatusCode::OK, want), "{path}");
        }
        let (s, _, body) = get_path(app.clone(), "/api/v1/unknown").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(!body.contains("<!doctype html>"), "{body}");
        let (s, _, body) = get_path(app.clone(), "/executions/abc").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("<!doctype html>"));
        let (s, _, body) = get_path(app.clone(), "/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("<!doctype html>"));
    }
}

#[tokio::test]
async fn serves_over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, fake_api().merge(router()))
            .await
            .unwrap();
    });
    let fetch = |path: String| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let page = fetch("/pipelines".into()).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8")
    );
    let js = fetch(format!("/assets/{}/app.js", asset_version())).await;
    assert!(js.starts_with("HTTP/1.1 200"), "{js}");
    assert!(
        js.to_ascii_lowercase()
            .contains("content-type: text/javascript")
    );
    let api = fetch("/healthz".into()).await;
    assert!(api.ends_with("ok"), "{api}");
    server.abort();
}

/// Every file under `assets/` is embedded, and every module import and
/// asset reference in the sources resolves to an embedded file.
#[test]
fn every_asset_is_embedded_and_every_import_resolves() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut on_disk = BTreeSet::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "index.html" {
                    on_disk.insert(rel);
                }
            }
        }
    }
    let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
    assert_eq!(on_disk, embedded, "ui/assets and ASSETS differ");

    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let src = std::str::from_utf8(a.bytes).unwrap();
        let base: Vec<&str> = a.name.split('/').collect();
        for line in src.lines() {
            let t = line.trim_start();
            if !(t.starts_with("import ") || t.starts_with("export ") && t.contains(" from ")) {
                continue;
            }
            let Some(spec) = t.split(['\'', '"']).nth(1) else {
                continue;
            };
            assert!(
                spec.starts_with("./") || spec.starts_with("../"),
                "{}: {spec}",
                a.name
            );
            let mut parts: Vec<&str> = base[..base.len() - 1].to_vec();
            for seg in spec.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            let target = parts.join("/");
            assert!(
                embedded.contains(&target),
                "{} imports missing {target}",
                a.name
            );
        }
        assert!(
            !src.contains("http://") && !src.contains("https://") || !src.contains("cdn"),
            "{}",
            a.name
        );
    }
    for reference in INDEX_TEMPLATE.split("/assets/{{VERSION}}/").skip(1) {
        let file = reference.split('"').next().unwrap();
        assert!(
            embedded.contains(file),
            "index.html references missing {file}"
        );
    }
}

#[test]
fn reserved_prefixes_match_whole_segments() {
    assert!(is_reserved("/api"));
    assert!(is_reserved("/api/v1/x"));
    assert!(is_reserved("/metrics"));
    assert!(!is_reserved("/apis"));
    assert!(!is_reserved("/"));
    assert!(!is_reserved("/executions/api"));
}

#[test]
fn json_strings_are_escaped() {
    assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
}
