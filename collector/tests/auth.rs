//! Authentication of ingest over real sockets: both receivers refuse
//! missing and wrong keys in their wire format, the key decides the app,
//! the per-key rate limit answers HTTP 429 with `Retry-After` and gRPC
//! `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo`, and a key revoked
//! through one collector's authenticator is refused by another collector
//! within the cache TTL.

mod common;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic_types::StatusExt;
use xray_config::RateLimitConfig;
use xray_store::Scope;
use xray_store::testing::TestBackend;

const ADMIN: &str = "collector-admin-token-0123456789";

/// `google.rpc.Status`, as the HTTP receiver answers errors.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn request(trace: u8, pipeline: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![1; 8],
                    name: pipeline.into(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_001_000_000_000,
                    attributes: vec![KeyValue {
                        key: "xray.pipeline".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue(pipeline.into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn trace_hex(trace: u8) -> String {
    format!("{trace:02x}").repeat(16)
}

fn config(required: bool) -> xray_config::Config {
    let mut c = common::config();
    c.auth.required = required;
    c.auth.admin_token = ADMIN.into();
    c
}

async fn stored_in(store: &TestBackend, app: &str, trace: u8) -> Option<String> {
    store
        .backend
        .get_execution(&Scope::App(app.into()), &trace_hex(trace))
        .await
        .unwrap()
        .map(|d| d.execution.pipeline)
}

async fn post(
    addr: std::net::SocketAddr,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn json_body(trace: u8, pipeline: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"0101010101010101",
        "name":"{pipeline}","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
        "attributes":[{{"key":"xray.pipeline","value":{{"stringValue":"{pipeline}"}}}}]}}]}}]}}]}}"#,
        trace_hex(trace)
    )
    .into_bytes()
}

fn metric(name: &str) -> u64 {
    let text = xray_collector::render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn required_keys_are_checked_on_both_receivers() {
    let config = config(true);
    let store = xray_store::testing::sqlite().await;
    let (app, key) = xray_auth::create_app(store.backend.as_ref(), "Ingest Shop")
        .await
        .unwrap();
    let collector = common::start_on(&config, &store).await;
    let http = collector.http_addr();
    let missing_before = metric("xray_collector_auth_refused_total{reason=\"missing_key\"}");
    let invalid_before = metric("xray_collector_auth_refused_total{reason=\"invalid_key\"}");

    // HTTP/protobuf without a key: 401, google.rpc.Status in protobuf
    let resp = post(
        http,
        "application/x-protobuf",
        request(1, "p").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (16, "Missing API key")
    );
    // HTTP/JSON with a wrong key: 401 in JSON
    let wrong = format!("xr_{}", "w".repeat(32));
    let resp = post(
        http,
        "application/json",
        json_body(2, "p"),
        &[("x-api-key", &wrong)],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"code": 16, "message": "Invalid API key"})
    );

    // gRPC: UNAUTHENTICATED with the same messages
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap();
    let err = grpc.export(request(3, "p")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(err.message(), "Missing API key");
    let mut req = tonic::Request::new(request(3, "p"));
    req.metadata_mut()
        .insert("authorization", "Bearer not-a-key".parse().unwrap());
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(err.message(), "Invalid API key");

    // valid keys, in either header, on either transport: the key's app
    let bearer = format!("Bearer {key}");
    let resp = post(
        http,
        "application/x-protobuf",
        request(4, "http-run").encode_to_vec(),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        http,
        "application/json",
        json_body(5, "json-run"),
        &[("x-api-key", &key)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut req = tonic::Request::new(request(6, "grpc-run"));
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    grpc.export(req).await.unwrap();
    // the admin token may ingest too, into "default"
    let mut req = tonic::Request::new(request(7, "admin-run"));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    grpc.export(req).await.unwrap();

    assert!(
        metric("xray_collector_auth_refused_total{reason=\"missing_key\"}") >= missing_before + 2
    );
    assert!(
        metric("xray_collector_auth_refused_total{reason=\"invalid_key\"}") >= invalid_before + 2
    );
    collector.shutdown().await.unwrap();

    for t in 1..=3 {
        assert_eq!(stored_in(&store, &app.id, t).await, None);
        assert_eq!(stored_in(&store, "default", t).await, None);
    }
    assert_eq!(
        stored_in(&store, &app.id, 4).await.as_deref(),
        Some("http-run")
    );
    assert_eq!(
        stored_in(&store, &app.id, 5).await.as_deref(),
        Some("json-run")
    );
    assert_eq!(
        stored_in(&store, &app.id, 6).await.as_deref(),
        Some("grpc-run")
    );
    assert_eq!(stored_in(&store, "default", 6).await, None);
    assert_eq!(
        stored_in(&store, "default", 7).await.as_deref(),
        Some("admin-run")
    );
}

#[tokio::test]
async fn optional_keys_send_anonymous_data_to_default_and_still_refuse_wrong_keys() {
    let config = config(false);
    let store = xray_store::testing::sqlite().await;
    let collector = common::start_on(&config, &store).await;
    let resp = post(
        collector.http_addr(),
        "application/x-protobuf",
        request(1, "anon").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        collector.http_addr(),
        "application/x-protobuf",
        request(2, "wrong").encode_to_vec(),
        &[("x-api-key", "xr_wrong")],
    )
    .await;
    assert_eq!(resp.status(), 401, "a wrong key is refused, not ignored");
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap();
    let mut req = tonic::Request::new(request(3, "wrong"));
    req.metadata_mut()
        .insert("x-api-key", "xr_wrong".parse().unwrap());
    assert_eq!(
        grpc.export(req).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    grpc.export(request(4, "anon-grpc")).await.unwrap();
    collector.shutdown().await.unwrap();
    assert_eq!(
        stored_in(&store, "default", 1).await.as_deref(),
        Some("anon")
    );
    assert_eq!(stored_in(&store, "default", 2).await, None);
    assert_eq!(stored_in(&store, "default", 3).await, None);
    assert_eq!(
        stored_in(&store, "default", 4).await.as_deref(),
        Some("anon-grpc")
    );
}

#[tokio::test]
async fn rate_limit_is_per_key_429_over_http_resource_exhausted_over_grpc() {
    let mut config = config(true);
    // 2 requests at once, then one every 20 s: the test never waits for a refill
    config.auth.rate_limit = RateLimitConfig {
        requests_per_sec: 0.05,
        burst: 2,
    };
    let store = xray_store::testing::sqlite().await;
    let (_, busy) = xray_auth::create_app(store.backend.as_ref(), "Busy")
        .await
        .unwrap();
    let (quiet_app, quiet) = xray_auth::create_app(store.backend.as_ref(), "Quiet")
        .await
        .unwrap();
    let collector = common::start_on(&config, &store).await;
    let http = collector.http_addr();
    let limited_before = metric("xray_collector_auth_refused_total{reason=\"rate_limited\"}");

    for t in 1..=2 {
        let resp = post(
            http,
            "application/x-protobuf",
            request(t, "ok").encode_to_vec(),
            &[("x-api-key", &busy)],
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    // over the limit: 429, Retry-After, google.rpc.Status RESOURCE_EXHAUSTED
    let resp = post(
        http,
        "application/x-protobuf",
        request(3, "limited").encode_to_vec(),
        &[("x-api-key", &busy)],
    )
    .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 8);
    assert!(
        status
            .message
            .starts_with("Rate limit exceeded for this API key; retry in "),
        "{}",
        status.message
    );
    let resp = post(
        http,
        "application/json",
        json_body(3, "limited"),
        &[("x-api-key", &busy)],
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    // the same key's bucket is shared by the gRPC receiver
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap();
    let mut req = tonic::Request::new(request(3, "limited"));
    req.metadata_mut()
        .insert("x-api-key", busy.parse().unwrap());
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let delay = err
        .get_details_retry_info()
        .expect("RetryInfo detail")
        .retry_delay
        .expect("a retry delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(20),
        "{delay:?}"
    );

    // another key has its own bucket
    for t in 10..=11 {
        let mut req = tonic::Request::new(request(t, "quiet"));
        req.metadata_mut()
            .insert("x-api-key", quiet.parse().unwrap());
        grpc.export(req).await.unwrap();
    }
    assert!(
        metric("xray_collector_auth_refused_total{reason=\"rate_limited\"}") >= limited_before + 3
    );
    collector.shutdown().await.unwrap();
    assert_eq!(stored_in(&store, "busy", 3).await, None);
    assert_eq!(stored_in(&store, "busy", 2).await.as_deref(), Some("ok"));
    assert_eq!(
        stored_in(&store, &quiet_app.id, 11).await.as_deref(),
        Some("quiet")
    );
}

#[tokio::test]
async fn a_key_revoked_on_one_collector_is_refused_by_another_within_the_ttl() {
    let mut config = config(true);
    config.auth.cache_ttl_ms = 300;
    let store = xray_store::testing::sqlite().await;
    let (_, key) = xray_auth::create_app(store.backend.as_ref(), "Replicated")
        .await
        .unwrap();
    // two replicas over one store, each with its own authenticator (cache)
    let auth_one = common::auth(&config, &store);
    let one = xray_collector::Collector::start(
        &config,
        store.backend.clone(),
        Vec::new(),
        auth_one.clone(),
    )
    .await
    .unwrap();
    let two = common::start_on(&config, &store).await;
    for (t, c) in [(1, &one), (2, &two)] {
        let resp = post(
            c.http_addr(),
            "application/x-protobuf",
            request(t, "before").encode_to_vec(),
            &[("x-api-key", &key)],
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    let keys = store.backend.list_api_keys("replicated").await.unwrap();
    assert!(auth_one.revoke_key(&keys[0].id).await.unwrap());
    let resp = post(
        one.http_addr(),
        "application/x-protobuf",
        request(3, "after").encode_to_vec(),
        &[("x-api-key", &key)],
    )
    .await;
    assert_eq!(resp.status(), 401, "the revoking replica refuses at once");
    // the other replica: polled until refused, with a deadline far above the TTL
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut grpc = TraceServiceClient::connect(format!("http://{}", two.grpc_addr()))
        .await
        .unwrap();
    loop {
        let mut req = tonic::Request::new(request(4, "after"));
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
        match grpc.export(req).await {
            Err(e) if e.code() == tonic::Code::Unauthenticated => break,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the second replica still accepts the revoked key"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}
