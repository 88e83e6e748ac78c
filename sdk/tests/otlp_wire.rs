//! End to end over the wire: the competitor-selection example runs against
//! real OTLP receivers started in the test (a tonic `TraceService` for gRPC,
//! an axum `/v1/traces` endpoint for HTTP/protobuf), and the test reads back
//! what arrived: the execution, its steps and its candidate funnel.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use xray_sdk::{DeliveryMode, Protocol, XRay};

#[allow(dead_code, unreachable_pub, clippy::print_stdout)]
#[path = "../examples/competitor_selection.rs"]
mod example;

/// What a receiver saw: each request with the API key header it carried.
#[derive(Debug, Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivery>>>);

/// One request and the API key it carried.
type Delivery = (Option<String>, ExportTraceServiceRequest);

impl Received {
    fn push(&self, key: Option<String>, req: ExportTraceServiceRequest) {
        self.0.lock().unwrap().push((key, req));
    }
    fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let key = request
            .metadata()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.push(key, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let svc = TraceServiceServer::new(received.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

async fn http_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let state = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let key = headers
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        state.push(key, req);
                        (
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(e) => panic!("bad OTLP body: {e}"),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("{key}: expected a string, got {other:?}"),
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        None => None,
        other => panic!("{key}: expected an int, got {other:?}"),
    }
}

/// One step of the funnel as read from the wire.
#[derive(Debug, PartialEq)]
struct FunnelRow {
    name: String,
    kind: String,
    candidates_in: Option<i64>,
    candidates_out: Option<i64>,
    rejected: u64,
}

fn funnel_row(name: &str, attrs: &[KeyValue]) -> FunnelRow {
    let rejected = match attr(attrs, "xray.step.rejections") {
        Some(any_value::Value::StringValue(s)) => {
            let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s).unwrap();
            m.values().map(|v| v.as_u64().unwrap()).sum()
        }
        _ => 0,
    };
    FunnelRow {
        name: name.to_owned(),
        kind: str_attr(attrs, "xray.step.type").to_owned(),
        candidates_in: int_attr(attrs, "xray.step.candidates.in"),
        candidates_out: int_attr(attrs, "xray.step.candidates.out"),
        rejected,
    }
}

/// The funnel the example produces (deterministic data).
fn check_funnel(rows: &[FunnelRow]) {
    let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "generate_keywords",
            "search_catalogue",
            "filter_candidates",
            "rank_candidates",
            "select_competitor"
        ]
    );
    let kinds: Vec<_> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["llm", "retrieval", "filter", "rank", "select"]);
    assert_eq!(rows[1].candidates_out, Some(5000));
    let filter = &rows[2];
    assert_eq!(filter.candidates_in, Some(5000));
    let kept = filter.candidates_out.unwrap();
    assert!(kept > 10 && kept < 5000, "kept {kept}");
    assert_eq!(filter.rejected as i64, 5000 - kept, "rejections add up");
    assert_eq!(rows[3].candidates_in, Some(kept));
    assert_eq!(rows[3].candidates_out, Some(10));
    assert_eq!(rows[4].candidates_in, Some(10));
    assert_eq!(rows[4].candidates_out, Some(1));
}

fn all_spans(requests: &[Delivery]) -> Vec<Span> {
    requests
        .iter()
        .flat_map(|(_, r)| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect()
}

fn check_snapshot_delivery(requests: Vec<Delivery>, exec_id: &str) {
    assert!(!requests.is_empty());
    for (key, _) in &requests {
        assert_eq!(key.as_deref(), Some("xr_test_key"));
    }
    let rs = &requests[0].1.resource_spans[0];
    let resource = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(str_attr(resource, "service.name"), "competitor-selector");
    assert_eq!(str_attr(resource, "deployment.environment.name"), "ci");
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "xray-sdk");

    let spans = all_spans(&requests);
    assert_eq!(spans.len(), 1, "snapshot mode: one span per execution");
    let exec = &spans[0];
    assert_eq!(hex_id(&exec.trace_id), exec_id);
    assert!(exec.parent_span_id.is_empty());
    assert_eq!(
        str_attr(&exec.attributes, "xray.pipeline"),
        "competitor-selection"
    );
    assert_eq!(str_attr(&exec.attributes, "xray.environment"), "ci");
    assert_eq!(
        str_attr(&exec.attributes, "xray.execution.status"),
        "completed"
    );
    let output: serde_json::Value =
        serde_json::from_str(str_attr(&exec.attributes, "xray.execution.output")).unwrap();
    let input: serde_json::Value =
        serde_json::from_str(str_attr(&exec.attributes, "xray.execution.input")).unwrap();
    assert_eq!(input["asin"], "B0OURS0032");
    assert!(output["asin"].as_str().unwrap().starts_with("B0"));

    let rows: Vec<_> = exec
        .events
        .iter()
        .map(|e| {
            let start = int_attr(&e.attributes, "xray.step.start_time_unix_nano").unwrap();
            assert!(start as u64 <= e.time_unix_nano);
            assert!(exec.start_time_unix_nano <= start as u64);
            assert!(e.time_unix_nano <= exec.end_time_unix_nano);
            funnel_row(&e.name, &e.attributes)
        })
        .collect();
    check_funnel(&rows);

    // The selected candidate is the execution's output.
    let select = &exec.events[4];
    let sampled: Vec<serde_json::Value> =
        serde_json::from_str(str_attr(&select.attributes, "xray.step.candidates")).unwrap();
    let selected: Vec<_> = sampled
        .iter()
        .filter(|c| c["decision"] == "selected")
        .collect();
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0]["id"], output["asin"]);
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn xray_for(endpoint: String, protocol: Protocol, mode: DeliveryMode) -> XRay {
    XRay::builder()
        .endpoint(endpoint)
        .protocol(protocol)
        .api_key("xr_test_key")
        .service("competitor-selector")
        .environment("ci")
        .mode(mode)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_flow_over_grpc_snapshot() {
    let (addr, received) = grpc_receiver().await;
    let xray = xray_for(
        format!("http://{addr}"),
        Protocol::Grpc,
        DeliveryMode::Snapshot,
    );
    let (id, result) = example::run_pipeline(&xray, &example::our_product());
    result.unwrap();
    xray.flush().await.unwrap();
    check_snapshot_delivery(received.take(), &id);
    let st = xray.stats();
    assert_eq!(
        (st.exported_spans, st.failed_spans, st.dropped_spans),
        (1, 0, 0)
    );
    tokio::task::spawn_blocking(move || xray.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_flow_over_http_protobuf_snapshot() {
    let (addr, received) = http_receiver().await;
    let xray = xray_for(
        format!("http://{addr}"),
        Protocol::HttpProtobuf,
        DeliveryMode::Snapshot,
    );
    let (id, result) = example::run_pipeline(&xray, &example::our_product());
    result.unwrap();
    xray.flush().await.unwrap();
    check_snapshot_delivery(received.take(), &id);
    tokio::task::spawn_blocking(move || xray.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_flow_over_grpc_live() {
    let (addr, received) = grpc_receiver().await;
    let xray = xray_for(format!("http://{addr}"), Protocol::Grpc, DeliveryMode::Live);
    let (id, result) = example::run_pipeline(&xray, &example::our_product());
    result.unwrap();
    xray.flush().await.unwrap();
    let spans = all_spans(&received.take());
    assert_eq!(spans.len(), 6, "five step spans and the execution span");
    let exec = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(hex_id(&exec.trace_id), id);
    assert!(exec.events.is_empty());
    let rows: Vec<_> = spans
        .iter()
        .filter(|s| !s.parent_span_id.is_empty())
        .map(|s| {
            assert_eq!(s.parent_span_id, exec.span_id);
            assert_eq!(s.trace_id, exec.trace_id);
            assert!(attr(&s.attributes, "xray.step.start_time_unix_nano").is_none());
            funnel_row(&s.name, &s.attributes)
        })
        .collect();
    check_funnel(&rows);
    tokio::task::spawn_blocking(move || xray.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn works_without_any_runtime_and_counts_failures_when_the_collector_is_down() {
    // Reserve a port, then close it: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let xray = XRay::builder()
        .endpoint(format!("http://{addr}"))
        .export_timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    xray.execution("p").start().complete(&1);
    let err = xray.flush_blocking().unwrap_err();
    assert!(
        matches!(
            err,
            xray_sdk::FlushError::Export(_) | xray_sdk::FlushError::Timeout(_)
        ),
        "{err}"
    );
    let _ = xray.shutdown();
    let st = xray.stats();
    assert_eq!(st.exported_spans, 0);
    assert_eq!(st.failed_spans + st.dropped_spans, 1, "{st:?}");
}
