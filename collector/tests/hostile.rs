//! Hostile input over real sockets: every case gets the exact status and
//! message a client can act on, leaves nothing half-written in the store,
//! and the collector keeps serving afterwards.

mod common;

use common::{RpcStatus, gzip, kv, request};

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;
use xray_collector::Collector;
use xray_store::Scope;
use xray_store::testing::TestBackend;

const LIMIT: &str =
    "request body exceeds the limit of 16777216 bytes (receivers.otlp.max_message_bytes)";

fn root(trace: u8, pipeline: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![1; 8],
        name: pipeline.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: vec![kv("xray.pipeline", pipeline)],
        ..Default::default()
    }
}

/// The execution span of `trace` and `n` child-span steps under it.
fn execution_with_steps(trace: u8, pipeline: &str, n: u32) -> Vec<Span> {
    let mut spans = vec![root(trace, pipeline)];
    for i in 0..n {
        let mut id = vec![0u8; 8];
        id[4..].copy_from_slice(&(i + 2).to_be_bytes());
        spans.push(Span {
            trace_id: vec![trace; 16],
            span_id: id,
            parent_span_id: vec![1; 8],
            name: "s".into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_100,
            ..Default::default()
        });
    }
    spans
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    /// The `google.rpc.Status` of a protobuf error answer.
    fn rpc(&self) -> (i32, String) {
        assert_eq!(self.content_type, "application/x-protobuf");
        let s = RpcStatus::decode(self.body.as_slice()).expect("google.rpc.Status body");
        (s.code, s.message)
    }

    /// `{"code", "message"}` of a JSON error answer.
    fn json(&self) -> (i64, String) {
        assert_eq!(self.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON body");
        (
            v["code"].as_i64().expect("code"),
            v["message"].as_str().expect("message").to_string(),
        )
    }
}

async fn send(c: &Collector, content_type: &str, gzipped: bool, body: Vec<u8>) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", c.http_addr()))
        .header("content-type", content_type)
        .timeout(Duration::from_secs(60));
    if gzipped {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().await.expect("answer");
    Answer {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

async fn protobuf(c: &Collector, body: Vec<u8>) -> Answer {
    send(c, "application/x-protobuf", false, body).await
}

async fn stored(store: &TestBackend, trace: u8) -> Option<xray_store::ExecutionDetail> {
    store
        .backend
        .get_execution(
            &Scope::App(xray_model::DEFAULT_APP.into()),
            &format!("{trace:02x}").repeat(16),
        )
        .await
        .unwrap()
}

/// After a refusal: nothing of the request is stored, and a valid request
/// right after is accepted and stored.
async fn still_serving(c: Collector, store: &TestBackend, refused_trace: u8) {
    let ok = protobuf(&c, request(vec![root(0xee, "after")]).encode_to_vec()).await;
    assert_eq!(ok.status, 200);
    c.shutdown().await.unwrap();
    assert!(
        stored(store, refused_trace).await.is_none(),
        "nothing of a refused request is stored"
    );
    assert!(stored(store, 0xee).await.is_some());
}

const DECODE: &str =
    "failed to decode the protobuf ExportTraceServiceRequest: failed to decode Protobuf message: ";

#[tokio::test]
async fn truncated_protobuf_is_400_over_http_and_invalid_argument_over_grpc() {
    let (c, store) = common::start(&common::config()).await;
    let good = request(vec![root(0x11, "truncated")]).encode_to_vec();
    let cut = good[..good.len() - 5].to_vec();
    let a = protobuf(&c, cut.clone()).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.rpc(),
        (
            3,
            format!("{DECODE}ExportTraceServiceRequest.resource_spans: buffer underflow")
        )
    );
    let mut grpc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        format!("http://{}", c.grpc_addr()),
    )
    .await
    .unwrap();
    // The typed client cannot send a truncated message; a message whose
    // last span is cut short inside a valid outer frame can be sent raw
    // only, which receivers.rs covers. Here: the gRPC answer for a valid
    // message still works after the HTTP refusal.
    grpc.export(request(vec![root(0x12, "grpc-after")]))
        .await
        .unwrap();
    still_serving(c, &store, 0x11).await;
}

#[tokio::test]
async fn wrong_wire_types_are_400() {
    let (c, store) = common::start(&common::config()).await;
    // Field 1 (resource_spans, a message) sent as a varint.
    let a = protobuf(&c, vec![0x08, 0x01]).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.rpc(),
        (
            3,
            format!(
                "{DECODE}ExportTraceServiceRequest.resource_spans: invalid wire type: Varint (expected LengthDelimited)"
            )
        )
    );
    // A span's trace_id (bytes) sent as a fixed64 inside a valid frame.
    let mut span = Vec::new();
    span.extend([0x09]); // field 1, wire type 1 (64-bit)
    span.extend([0u8; 8]);
    let mut scope = vec![0x12, span.len() as u8];
    scope.extend(&span);
    let mut rs = vec![0x12, scope.len() as u8];
    rs.extend(&scope);
    let mut req = vec![0x0a, rs.len() as u8];
    req.extend(&rs);
    let a = protobuf(&c, req).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.rpc(),
        (
            3,
            format!(
                "{DECODE}Span.trace_id: ScopeSpans.spans: ResourceSpans.scope_spans: ExportTraceServiceRequest.resource_spans: invalid wire type: SixtyFourBit (expected LengthDelimited)"
            )
        )
    );
    still_serving(c, &store, 0x13).await;
}

#[tokio::test]
async fn invalid_utf8_in_strings_is_400() {
    let (c, store) = common::start(&common::config()).await;
    let mut span = root(0x14, "utf8");
    span.name = "zzzz".into();
    let mut body = request(vec![span]).encode_to_vec();
    let at = body.windows(4).position(|w| w == b"zzzz").unwrap();
    body[at + 1] = 0xc3; // a lead byte followed by 'z': not UTF-8
    let a = protobuf(&c, body).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.rpc(),
        (
            3,
            format!(
                "{DECODE}Span.name: ScopeSpans.spans: ResourceSpans.scope_spans: ExportTraceServiceRequest.resource_spans: invalid string value: data is not UTF-8 encoded"
            )
        )
    );
    // In OTLP/JSON a lone surrogate escape is invalid too.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"15151515151515151515151515151515","spanId":"0101010101010101","name":"\udc00"}]}]}]}"#;
    let a = send(&c, "application/json", false, json.as_bytes().to_vec()).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json(),
        (
            3,
            "invalid OTLP/JSON ExportTraceServiceRequest: lone leading surrogate in hex escape at line 1 column 131"
                .to_string()
        )
    );
    still_serving(c, &store, 0x15).await;
}

/// A gzip stream of `members` copies of one member holding `chunk`: cheap
/// to build, huge to inflate.
fn repeated_gzip(prefix: &[u8], chunk: &[u8], members: usize) -> Vec<u8> {
    let mut out = gzip(prefix);
    let one = gzip(chunk);
    for _ in 0..members {
        out.extend_from_slice(&one);
    }
    out
}

#[tokio::test]
async fn a_100_mb_attribute_value_is_refused_by_the_size_limit() {
    let (c, store) = common::start(&common::config()).await;
    // The protobuf framing of one span whose pipeline attribute is 100 MB,
    // gzipped (so the request on the wire is small).
    let value_len: usize = 100 * 1024 * 1024;
    let mut prefix = Vec::new();
    // An attribute KeyValue{key: "xray.pipeline", value: AnyValue{string}}:
    // the outer lengths as varints.
    fn varint(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut any = vec![0x0a];
    varint(value_len, &mut any);
    let any_len = any.len() + value_len;
    let mut keyvalue = vec![0x0a, 13];
    keyvalue.extend(b"xray.pipeline");
    keyvalue.push(0x12);
    varint(any_len, &mut keyvalue);
    keyvalue.extend(&any);
    let kv_len = keyvalue.len() + value_len;
    let mut span = vec![0x0a, 16];
    span.extend([0x16; 16]);
    span.extend([0x12, 8]);
    span.extend([1; 8]);
    span.push(0x4a); // attributes, field 9
    varint(kv_len, &mut span);
    span.extend(&keyvalue);
    let span_len = span.len() + value_len;
    let mut scope = vec![0x12];
    varint(span_len, &mut scope);
    scope.extend(&span);
    let scope_len = scope.len() + value_len;
    let mut rs = vec![0x12];
    varint(scope_len, &mut rs);
    rs.extend(&scope);
    let rs_len = rs.len() + value_len;
    prefix.push(0x0a);
    varint(rs_len, &mut prefix);
    prefix.extend(&rs);
    let chunk = vec![b'a'; 4 * 1024 * 1024];
    let body = repeated_gzip(&prefix, &chunk, value_len / chunk.len());
    assert!(body.len() < 1024 * 1024, "{}", body.len());
    let a = send(&c, "application/x-protobuf", true, body).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.rpc(), (8, format!("{LIMIT} after gzip decompression")));
    // A 10 MB value inside the request limit is accepted, and stored cut to
    // `limits.max_attribute_bytes` (256 KiB by default), marked truncated.
    let mut span = root(0x17, "big-value");
    span.attributes
        .push(kv("xray.execution.input", &"b".repeat(10 * 1024 * 1024)));
    let a = protobuf(&c, request(vec![span]).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x17).await.expect("stored");
    let input = d.execution.input.expect("input kept");
    assert!(input.len() <= 262_144, "{}", input.len());
    let kept = input.find('…').expect("truncation marker");
    assert!(input[..kept].bytes().all(|b| b == b'b'));
    assert_eq!(
        &input[kept..],
        format!("…[truncated {} bytes]", 10 * 1024 * 1024 - kept)
    );
    assert_eq!(
        d.execution
            .metadata
            .get("xray.limits.truncated_values")
            .map(String::as_str),
        Some("1")
    );
    assert!(stored(&store, 0x16).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_attribute_value_under_a_raised_request_limit_is_capped() {
    // With the request limit raised above 100 MB, the value gets in and is
    // cut to `limits.max_attribute_bytes`.
    let mut config = common::config();
    config.receivers.otlp.max_message_bytes = 128 * 1024 * 1024;
    config.limits.max_attribute_bytes = 4096;
    let (c, store) = common::start(&config).await;
    let mut span = root(0x20, "hundred-mb");
    span.attributes
        .push(kv("xray.execution.output", &"c".repeat(100 * 1024 * 1024)));
    let a = protobuf(&c, request(vec![span]).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x20).await.expect("stored");
    let output = d.execution.output.expect("output kept");
    assert!(output.len() <= 4096, "{}", output.len());
    let kept = output.find('…').expect("truncation marker");
    assert_eq!(
        &output[kept..],
        format!("…[truncated {} bytes]", 100 * 1024 * 1024 - kept)
    );
}

#[tokio::test]
async fn gzip_bombs_stop_at_the_limit() {
    let (c, store) = common::start(&common::config()).await;
    // 1 GiB of zeros in about 1 MB.
    let body = repeated_gzip(b"", &vec![0u8; 16 * 1024 * 1024], 64);
    assert!(body.len() < 8 * 1024 * 1024, "{}", body.len());
    let a = send(&c, "application/x-protobuf", true, body.clone()).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.rpc(), (8, format!("{LIMIT} after gzip decompression")));
    let a = send(&c, "application/json", true, body).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.json(), (8, format!("{LIMIT} after gzip decompression")));
    // Not gzip at all.
    let a = send(&c, "application/x-protobuf", true, b"not gzip".to_vec()).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.rpc(),
        (3, "invalid gzip body: unexpected end of file".to_string())
    );
    still_serving(c, &store, 0x18).await;
}

#[tokio::test]
async fn ten_thousand_attributes_on_a_span_are_accepted_and_capped() {
    let (c, store) = common::start(&common::config()).await;
    let mut span = root(0x19, "many-attrs");
    for i in 0..10_000 {
        span.attributes
            .push(kv(&format!("xray.metadata.k{i:05}"), &format!("v{i}")));
    }
    let a = protobuf(&c, request(vec![span]).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x19).await.expect("stored");
    // `limits.max_attributes_per_span` (128) entries are kept, and the row
    // says how many were dropped.
    let m = &d.execution.metadata;
    assert_eq!(
        m.get("xray.limits.dropped_metadata").map(String::as_str),
        Some("9872")
    );
    assert_eq!(m.len(), 129, "128 entries and the dropped count");
}

#[tokio::test]
async fn json_nested_ten_thousand_levels_is_400() {
    let (c, store) = common::start(&common::config()).await;
    let depth = 10_000;
    let mut value = String::new();
    for _ in 0..depth {
        value.push_str(r#"{"arrayValue":{"values":["#);
    }
    for _ in 0..depth {
        value.push_str("]}}");
    }
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a","spanId":"0101010101010101","name":"deep","attributes":[{{"key":"xray.pipeline","value":{value}}}]}}]}}]}}]}}"#
    );
    let a = send(&c, "application/json", false, json.into_bytes()).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json(),
        (
            3,
            "invalid OTLP/JSON ExportTraceServiceRequest: recursion limit exceeded at line 1 column 1166"
                .to_string()
        )
    );
    still_serving(c, &store, 0x1a).await;
}

#[tokio::test]
async fn negative_and_absurd_timestamps() {
    let (c, store) = common::start(&common::config()).await;
    // OTLP/JSON timestamps are unsigned: a negative one is refused.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b","spanId":"0101010101010101","name":"neg","startTimeUnixNano":"-5","attributes":[{"key":"xray.pipeline","value":{"stringValue":"neg"}}]}]}]}]}"#;
    let a = send(&c, "application/json", false, json.as_bytes().to_vec()).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json(),
        (
            3,
            "invalid OTLP/JSON ExportTraceServiceRequest: invalid digit found in string at line 1 column 154"
                .to_string()
        )
    );
    // Past i64 nanoseconds, and an end before the start: accepted, kept
    // as the largest representable time, with a zero duration.
    let mut span = root(0x1c, "absurd");
    span.start_time_unix_nano = u64::MAX;
    span.end_time_unix_nano = 1;
    let a = protobuf(&c, request(vec![span]).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x1c).await.expect("stored");
    assert_eq!(d.execution.start_time_ns, i64::MAX);
    assert_eq!(d.execution.duration_ns(), Some(0));
    assert!(stored(&store, 0x1b).await.is_none());
}

#[tokio::test]
async fn unknown_enum_values_are_accepted() {
    let (c, store) = common::start(&common::config()).await;
    let mut span = root(0x1d, "enums");
    span.kind = 99;
    span.status = Some(Status {
        code: 42,
        message: "what".into(),
    });
    let a = protobuf(&c, request(vec![span]).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e","spanId":"0101010101010101","name":"enums-json","kind":77,"status":{"code":9},"attributes":[{"key":"xray.pipeline","value":{"stringValue":"enums-json"}}]}]}]}]}"#;
    let a = send(&c, "application/json", false, json.as_bytes().to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    // An unknown status code counts as unset: the execution completed.
    let d = stored(&store, 0x1d).await.expect("stored");
    assert_eq!(d.execution.status.as_str(), "completed");
    // Unknown status code and no end time: still running.
    let d = stored(&store, 0x1e).await.expect("stored");
    assert_eq!(d.execution.status.as_str(), "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_of_spans_in_one_request() {
    let (c, store) = common::start(&common::config()).await;
    let body = request(execution_with_steps(0x1f, "huge", 50_000)).encode_to_vec();
    assert!(body.len() < 16 * 1024 * 1024);
    let a = protobuf(&c, body).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x1f).await.expect("stored");
    // `limits.max_steps_per_execution` (10,000) per execution and request.
    assert_eq!(d.steps.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_of_spans_in_one_request_are_all_stored_without_a_step_cap() {
    let mut config = common::config();
    config.limits.max_steps_per_execution = 0;
    let (c, store) = common::start(&config).await;
    let spans = execution_with_steps(0x21, "huge-uncapped", 50_000);
    let a = protobuf(&c, request(spans).encode_to_vec()).await;
    assert_eq!(a.status, 200);
    c.shutdown().await.unwrap();
    let d = stored(&store, 0x21).await.expect("stored");
    assert_eq!(d.steps.len(), 50_000);
}
