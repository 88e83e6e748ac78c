//! A few tests over a real TCP socket: the router served by `axum::serve`,
//! spoken to with plain HTTP/1.1.

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xray_config::ApiConfig;
use xray_dashboard_api::{AppState, router};
use xray_store::Store;
use xray_store::testing::{TestBackend, backends};

async fn serve(t: &TestBackend, api: ApiConfig) -> std::net::SocketAddr {
    let store: Arc<dyn Store> = t.backend.clone();
    let app = router(AppState::new(store, api));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends one request and returns (status line, headers, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

fn dechunk(headers: &str, body: &str) -> String {
    if !headers.contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
}

#[tokio::test]
async fn serves_json_over_a_socket() {
    let t = backends().await.remove(0);
    write(&t, shop_run("shop-1", T0)).await;
    let addr = serve(&t, ApiConfig::default()).await;
    let (status, headers, body) = http(addr, "GET", "/api/v1/executions/shop-1/funnel", &[]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&dechunk(&headers, &body)).unwrap();
    assert_eq!(v["candidates_in"], 5000);
    // No CORS headers when no origin is configured.
    let (_, headers, _) = http(addr, "GET", "/healthz", &[("origin", "http://ui.example")]).await;
    assert!(!headers.contains("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_follows_the_config() {
    let t = backends().await.remove(0);
    let api = ApiConfig {
        cors_origins: vec!["http://ui.example".into()],
        ..ApiConfig::default()
    };
    let addr = serve(&t, api).await;
    let (status, headers, _) = http(
        addr,
        "OPTIONS",
        "/api/v1/executions",
        &[
            ("origin", "http://ui.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers.contains("access-control-allow-origin: http://ui.example"),
        "{headers}"
    );
    let (_, headers, _) = http(
        addr,
        "GET",
        "/api/v1/executions",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert!(
        !headers.contains("access-control-allow-origin"),
        "{headers}"
    );

    let any = ApiConfig {
        cors_origins: vec!["*".into()],
        ..ApiConfig::default()
    };
    let addr = serve(&t, any).await;
    let (_, headers, _) = http(
        addr,
        "GET",
        "/healthz",
        &[("origin", "http://anything.example")],
    )
    .await;
    assert!(
        headers.contains("access-control-allow-origin: *"),
        "{headers}"
    );
}
