//! Shared helpers of the handler tests: a router over a real backend, a
//! fixture dataset written through `Sink::write`, and request helpers.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use xray_config::{ApiConfig, AuthConfig};
use xray_dashboard_api::{AppState, router};
use xray_model::{CandidateDecision, Decision, MappedBatch, Status, StepType};
use xray_store::Store;
use xray_store::testing::{TestBackend, execution, span_id_for, step};

pub const T0: i64 = 1_700_000_000_000_000_000;
pub const MS: i64 = 1_000_000;
/// `T0` in unix milliseconds, for query strings.
pub const T0_MS: i64 = T0 / MS;

/// The admin token of [`app_with_auth`] routers.
pub const ADMIN: &str = "admin-token-for-api-tests-0123";

/// The router over `t` with the `[auth]` defaults (keys optional, no admin
/// token).
pub fn app(t: &TestBackend) -> Router {
    let store: Arc<dyn Store> = t.backend.clone();
    router(AppState::new(store, ApiConfig::default()))
}

/// The router over `t` authenticating with `auth` over `t`'s keys.
pub fn app_with_auth(t: &TestBackend, auth: &AuthConfig) -> Router {
    let store: Arc<dyn Store> = t.backend.clone();
    let authenticator = xray_auth::Authenticator::new(auth, store.clone());
    router(AppState::new(store, ApiConfig::default()).with_auth(authenticator))
}

/// `[auth]` with [`ADMIN`] as the admin token.
pub fn auth_config(required: bool) -> AuthConfig {
    AuthConfig {
        required,
        admin_token: ADMIN.into(),
        ..AuthConfig::default()
    }
}

/// Creates an app named `name` on `t`'s store; returns its id and key.
pub async fn new_app(t: &TestBackend, name: &str) -> (String, String) {
    let (app, key) = xray_auth::create_app(t.backend.as_ref(), name)
        .await
        .unwrap_or_else(|e| panic!("[{}] create app {name}: {e}", t.name));
    (app.id, key)
}

pub async fn write(t: &TestBackend, batch: MappedBatch) {
    t.backend
        .write(&batch)
        .await
        .unwrap_or_else(|e| panic!("[{}] write failed: {e}", t.name));
}

/// Sends a request with these headers and returns status, headers and
/// body (JSON when it parses, else a string).
pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, v)
}

/// A GET sending `key` as `authorization: Bearer` (none when `None`).
pub async fn get_with_key(app: &Router, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    let (s, _, v) = send(app, "GET", uri, &headers, None).await;
    (s, v)
}

pub async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    get_with_key(app, uri, None).await
}

/// GET that must answer 200; returns the JSON body.
pub async fn ok(app: &Router, uri: &str) -> Value {
    let (s, v) = get(app, uri).await;
    assert_eq!(s, StatusCode::OK, "GET {uri} -> {s}: {v}");
    v
}

pub fn cand(id: &str, d: Decision, reason: Option<&str>) -> CandidateDecision {
    CandidateDecision {
        id: id.into(),
        decision: d,
        reason: reason.map(Into::into),
        score: Some(0.5),
    }
}

/// The `shop` execution `shop-1` with a hand-computed funnel:
///
/// ```text
/// search     retrieval  out 5000                        offset 1 ms
/// filters    logic      5000 -> 100                     offset 2 ms
///   price    filter     5000 -> 1000  price_above_limit 4000
///   brand    filter     1000 -> 100   brand_blocked 850 (+ sampled out_of_stock 1)
/// rank       rank       0 -> 0                          offset 10 ms
/// pick       llm        no counts, failed               offset 20 ms
/// ```
pub fn shop_run(id: &str, start: i64) -> MappedBatch {
    let mut e = execution("default", id, "shop", start, 30 * MS);
    e.environment = "prod".into();
    e.service = "shop-api".into();
    e.tags = vec!["checkout".into(), "vip".into()];
    e.input = Some(r#"{"query":"running shoes"}"#.into());
    e.output = Some("plain text answer".into());
    let mut search = step(&e, "search", StepType::Retrieval, MS, MS);
    search.candidates_out = Some(5000);
    search.input = Some(r#"{"keywords":["running","shoes"]}"#.into());
    let mut filters = step(&e, "filters", StepType::Logic, 2 * MS, 6 * MS);
    filters.candidates_in = Some(5000);
    filters.candidates_out = Some(100);
    let mut price = step(&e, "price", StepType::Filter, 3 * MS, 2 * MS);
    price.parent_span_id = filters.span_id.clone();
    price.candidates_in = Some(5000);
    price.candidates_out = Some(1000);
    price.rejections.insert("price_above_limit".into(), 4000);
    let mut brand = step(&e, "brand", StepType::Filter, 5 * MS, 2 * MS);
    brand.parent_span_id = filters.span_id.clone();
    brand.candidates_in = Some(1000);
    brand.candidates_out = Some(100);
    brand.rejections.insert("brand_blocked".into(), 850);
    brand.candidates = vec![
        cand("B1", Decision::Rejected, Some("brand_blocked")),
        cand("B2", Decision::Rejected, Some("out_of_stock")),
        cand("B3", Decision::Accepted, None),
    ];
    brand.reasoning = Some("blocked brands removed".into());
    let mut rank = step(&e, "rank", StepType::Rank, 10 * MS, 5 * MS);
    rank.candidates_in = Some(0);
    rank.candidates_out = Some(0);
    let mut pick = step(&e, "pick", StepType::Llm, 20 * MS, 8 * MS);
    pick.status = Status::Failed;
    pick.error = Some("model timeout".into());
    pick.model = Some("gpt-x".into());
    pick.provider = Some("openai".into());
    pick.input_tokens = Some(120);
    pick.output_tokens = Some(30);
    pick.cost = Some(0.002);
    pick.confidence = Some(0.7);
    pick.output = Some(r#"{"pick":"B001"}"#.into());
    MappedBatch {
        executions: vec![e],
        steps: vec![pick, brand, rank, search, price, filters],
    }
}

/// Span id of step `name` of fixture execution `id`.
pub fn sid(id: &str, name: &str) -> String {
    span_id_for(id, name)
}
