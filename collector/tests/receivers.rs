//! OTLP/HTTP and OTLP/gRPC receivers over real sockets: encodings, limits,
//! error answers, partial success, metrics, shutdown flushing.

mod common;

use common::{RpcStatus, gzip, kv, request};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use xray_store::Scope;

fn span(trace: u8, id: u8, parent: Option<u8>, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span-{id}"),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn hex(b: u8, n: usize) -> String {
    format!("{b:02x}").repeat(n)
}

#[tokio::test]
async fn garbage_protobuf_gets_400_with_a_message_and_the_collector_keeps_serving() {
    let (collector, store) = common::start(&common::config()).await;
    let url = format!("http://{}/v1/traces", collector.http_addr());
    let client = reqwest::Client::new();
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .starts_with("failed to decode the protobuf ExportTraceServiceRequest: "),
        "{}",
        status.message
    );
    // Still serving: a valid request right after is accepted and stored.
    let body = request(vec![span(
        1,
        1,
        None,
        vec![kv("xray.pipeline", "after-garbage")],
    )]);
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(body.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);
    collector.shutdown().await.unwrap();
    let d = common::read(&store, &hex(1, 16)).await;
    assert_eq!(d.execution.pipeline, "after-garbage");
}

#[tokio::test]
async fn malformed_json_gets_400_in_json() {
    let (collector, _store) = common::start(&common::config()).await;
    let url = format!("http://{}/v1/traces", collector.http_addr());
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"resourceSpans": [{"scopeSpans": 12}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 3);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("invalid OTLP/JSON ExportTraceServiceRequest: "),
        "{m}"
    );
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_with_bad_spans_gets_partial_success_and_keeps_the_good_ones() {
    let (collector, store) = common::start(&common::config()).await;
    let url = format!("http://{}/v1/traces", collector.http_addr());
    let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": hex(2, 16), "spanId": hex(2, 8), "name": "run",
         "startTimeUnixNano": 1_700_000_000_000_000_000_u64, "endTimeUnixNano": "1700000001000000000",
         "kind": 1, "status": {"code": 2, "message": "boom"},
         "attributes": [{"key": "xray.pipeline", "value": {"stringValue": "json-pipeline"}}]},
        {"traceId": hex(2, 16), "spanId": "zz", "name": "bad-hex"},
        {"traceId": hex(2, 16), "spanId": hex(3, 4), "name": "short-id"},
    ]}]}]});
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
    let m = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        m.contains("\"bad-hex\": spanId \"zz\" is not a hex string"),
        "{m}"
    );
    assert!(
        m.contains("\"short-id\": span_id has 4 bytes, expected 8"),
        "{m}"
    );
    collector.shutdown().await.unwrap();
    let d = common::read(&store, &hex(2, 16)).await;
    assert_eq!(d.execution.pipeline, "json-pipeline");
    assert_eq!(d.execution.status, xray_model::Status::Failed);
    assert_eq!(d.execution.error.as_deref(), Some("boom"));
}

#[tokio::test]
async fn wrong_content_type_encoding_and_signals_are_refused_clearly() {
    let (collector, _store) = common::start(&common::config()).await;
    let base = format!("http://{}", collector.http_addr());
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("application/x-protobuf") && text.contains("application/json"),
        "{text}"
    );
    let resp = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("gzip"));
    for signal in ["logs", "metrics"] {
        let resp = client
            .post(format!("{base}/v1/{signal}"))
            .header("content-type", "application/x-protobuf")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert!(resp.text().await.unwrap().contains("X-Ray receives traces"));
    }
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_before_and_after_decompression() {
    let mut config = common::config();
    config.receivers.otlp.max_message_bytes = 256 * 1024;
    let (collector, _store) = common::start(&config).await;
    let url = format!("http://{}/v1/traces", collector.http_addr());
    let client = reqwest::Client::new();
    // Plain body over the limit.
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0u8; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A gzip bomb: ~100 KB compressed (under the limit), 100 MB decompressed.
    let bomb = gzip(&vec![0u8; 100 * 1024 * 1024]);
    assert!(bomb.len() < 256 * 1024);
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("after gzip decompression"),
        "{}",
        status.message
    );
    // The same limit applies to gRPC messages after decompression.
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let big = request(vec![span(
        4,
        4,
        None,
        vec![kv("xray.pipeline", &"x".repeat(600 * 1024))],
    )]);
    let err = grpc.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_reports_rejected_spans_and_takes_the_api_key() {
    let (collector, store) = common::start(&common::config()).await;
    let (app, key) = xray_auth::create_app(store.backend.as_ref(), "Grpc Shop")
        .await
        .unwrap();
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap();
    let mut bad = span(5, 9, None, vec![]);
    bad.trace_id.clear();
    // Child first, execution later: the store joins them by trace id.
    let mut req = tonic::Request::new(request(vec![
        span(5, 2, Some(1), vec![kv("xray.step.type", "rank")]),
        bad,
    ]));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let resp = grpc.export(req).await.unwrap().into_inner();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id is empty"),
        "{}",
        partial.error_message
    );
    let mut req = tonic::Request::new(request(vec![span(
        5,
        1,
        None,
        vec![kv("xray.pipeline", "grpc-run")],
    )]));
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let resp = grpc.export(req).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    collector.shutdown().await.unwrap();
    // the key decided the app: nothing in "default"
    assert!(
        store
            .backend
            .get_execution(&Scope::App(xray_model::DEFAULT_APP.into()), &hex(5, 16))
            .await
            .unwrap()
            .is_none()
    );
    let d = store
        .backend
        .get_execution(&Scope::App(app.id.clone()), &hex(5, 16))
        .await
        .unwrap()
        .expect("stored in the key's app");
    assert_eq!(d.execution.app, app.id);
    assert_eq!(d.execution.pipeline, "grpc-run");
    assert_eq!(d.steps.len(), 1);
    assert_eq!(d.steps[0].step_type, xray_model::StepType::Rank);
    assert_eq!(d.steps[0].parent_span_id, hex(1, 8));
}

#[tokio::test]
async fn metrics_count_spans_by_transport() {
    let (collector, _store) = common::start(&common::config()).await;
    let base = format!("http://{}", collector.http_addr());
    let client = reqwest::Client::new();
    let body = request(vec![span(6, 1, None, vec![kv("xray.pipeline", "m")])]);
    let resp = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let value = |line: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line} missing in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("xray_collector_spans_received_total{transport=\"http_protobuf\"}") >= 1);
    assert!(value("xray_collector_spans_accepted_total{transport=\"http_protobuf\"}") >= 1);
    value("xray_collector_spans_rejected_total{transport=\"grpc\"}");
    assert!(
        value("xray_collector_request_duration_seconds_count{transport=\"http_protobuf\"}") >= 1
    );
    assert_eq!(
        xray_collector::render_metrics().lines().next().unwrap(),
        "# HELP xray_collector_requests_total Export requests received."
    );
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn bind_errors_name_the_key() {
    let (running, _store) = common::start(&common::config()).await;
    let mut config = common::config();
    config.receivers.otlp.http_addr = running.http_addr().to_string();
    let store = xray_store::testing::sqlite().await;
    let err = xray_collector::Collector::start(
        &config,
        store.backend.clone(),
        Vec::new(),
        common::auth(&config, &store),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("receivers.otlp.http_addr"),
        "{err}"
    );
    running.shutdown().await.unwrap();
}

/// A gRPC codec that sends raw bytes (so a test can send what no protobuf
/// encoder would) and decodes the OTLP response.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

async fn raw_grpc(
    addr: std::net::SocketAddr,
    path: &'static str,
    body: Vec<u8>,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_over_grpc_and_400_over_http() {
    let (collector, store) = common::start(&common::config()).await;
    // A pipeline name that is not UTF-8: prost refuses such a message, and
    // so does the collector, whichever transport carries it.
    let good = request(vec![span(8, 1, None, vec![kv("xray.pipeline", "qqq")])]).encode_to_vec();
    let at = good.windows(3).position(|w| w == b"qqq").unwrap();
    let mut bad = good.clone();
    bad[at + 1] = 0xff;
    let expected = "failed to decode the protobuf ExportTraceServiceRequest: failed to decode Protobuf message: AnyValue.value: KeyValue.value: Span.attributes: ScopeSpans.spans: ResourceSpans.scope_spans: ExportTraceServiceRequest.resource_spans: invalid string value: data is not UTF-8 encoded";

    let err = raw_grpc(collector.grpc_addr(), EXPORT, bad.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(err.message(), expected);
    // Truncated and garbage bodies too.
    for body in [good[..good.len() - 3].to_vec(), b"garbage".to_vec()] {
        let err = raw_grpc(collector.grpc_addr(), EXPORT, body)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(
            err.message()
                .starts_with("failed to decode the protobuf ExportTraceServiceRequest: "),
            "{err}"
        );
    }
    // Other methods of the service are not implemented.
    let err = raw_grpc(
        collector.grpc_addr(),
        "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
        good.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");

    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", collector.http_addr()))
        .header("content-type", "application/x-protobuf")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3);
    assert_eq!(status.message, expected);

    // The raw path accepts the valid bytes, and the rows arrive.
    let resp = raw_grpc(collector.grpc_addr(), EXPORT, good).await.unwrap();
    assert_eq!(resp.partial_success, None);
    collector.shutdown().await.unwrap();
    let d = common::read(&store, &hex(8, 16)).await;
    assert_eq!(d.execution.pipeline, "qqq");
}
