//! The load generator against real in-process OTLP receivers (a tonic
//! `TraceService` and an axum `/v1/traces` handler) that count what they
//! accept, with pushback and rejections injected: what the receiver saw must
//! equal what the report calls acknowledged.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use xray_loadgen::{Compression, HumanDuration, LoadgenArgs, LoadgenError, Mode, Protocol};
use xray_model::semconv;

/// What a receiver does with every `nth` request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Push back (RESOURCE_EXHAUSTED / 429) on every nth request.
    Pushback(u64),
    /// Reject every request for good (INVALID_ARGUMENT / 400).
    RejectAll,
    /// Accept every request but report one rejected span.
    PartialOne,
}

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    accepted_requests: AtomicU64,
    spans: AtomicU64,
    executions: AtomicU64,
    steps: AtomicU64,
    api_keys: AtomicU64,
}

impl Seen {
    fn count(&self, req: &ExportTraceServiceRequest, rejected: u64) {
        let spans = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        let (mut n, mut exec, mut steps) = (0, 0, 0);
        for s in spans {
            n += 1;
            if s.attributes.iter().any(|a| a.key == semconv::PIPELINE) {
                exec += 1;
            } else {
                steps += 1;
            }
            steps += s
                .events
                .iter()
                .filter(|e| e.attributes.iter().any(|a| a.key == semconv::STEP_TYPE))
                .count() as u64;
        }
        self.accepted_requests.fetch_add(1, Ordering::SeqCst);
        self.spans.fetch_add(n - rejected, Ordering::SeqCst);
        if rejected == 0 {
            self.executions.fetch_add(exec, Ordering::SeqCst);
            self.steps.fetch_add(steps, Ordering::SeqCst);
        }
    }

    /// Decides the fate of the next request: `Err(())` to refuse it,
    /// `Ok(rejected_spans)` to accept it.
    fn admit(&self, fault: Fault) -> Result<u64, bool> {
        let k = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        match fault {
            Fault::None => Ok(0),
            Fault::Pushback(n) if k.is_multiple_of(n) => Err(true),
            Fault::Pushback(_) => Ok(0),
            Fault::RejectAll => Err(false),
            Fault::PartialOne => Ok(1),
        }
    }
}

struct Grpc {
    seen: Arc<Seen>,
    fault: Fault,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if request
            .metadata()
            .get("x-api-key")
            .is_some_and(|v| v == "xr_test")
        {
            self.seen.api_keys.fetch_add(1, Ordering::SeqCst);
        }
        match self.seen.admit(self.fault) {
            Err(true) => Err(tonic::Status::resource_exhausted("queue full")),
            Err(false) => Err(tonic::Status::invalid_argument("no thanks")),
            Ok(rejected) => {
                self.seen.count(request.get_ref(), rejected);
                Ok(tonic::Response::new(ExportTraceServiceResponse {
                    partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                        rejected_spans: rejected as i64,
                        error_message: "one span was bad".into(),
                    }),
                }))
            }
        }
    }
}

async fn grpc_receiver(fault: Fault) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(Grpc {
        seen: seen.clone(),
        fault,
    })
    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    .max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream_from(listener)),
    );
    (format!("http://{addr}"), seen)
}

/// A `TcpListener` as the stream of connections tonic serves.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

async fn http_receiver(fault: Fault) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = s.clone();
            async move {
                if headers.get("x-api-key").is_some_and(|v| v == "xr_test") {
                    seen.api_keys.fetch_add(1, Ordering::SeqCst);
                }
                assert_eq!(
                    headers.get("content-type").unwrap(),
                    "application/x-protobuf"
                );
                let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(body.as_ref())
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    body.to_vec()
                };
                let proto = [("content-type", "application/x-protobuf")];
                match seen.admit(fault) {
                    Err(true) => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("content-type", "text/plain")],
                        b"slow down".to_vec(),
                    ),
                    Err(false) => (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"bad".to_vec(),
                    ),
                    Ok(rejected) => {
                        let req = ExportTraceServiceRequest::decode(raw.as_slice()).unwrap();
                        seen.count(&req, rejected);
                        let resp = ExportTraceServiceResponse {
                            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                                rejected_spans: rejected as i64,
                                error_message: "one span was bad".into(),
                            }),
                        };
                        (StatusCode::OK, proto, resp.encode_to_vec())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn args(protocol: Protocol, endpoint: String) -> LoadgenArgs {
    LoadgenArgs {
        endpoint: Some(endpoint),
        protocol,
        concurrency: 3,
        batch: 16,
        json: true,
        payload_min: 200,
        payload_max: 800,
        ..LoadgenArgs::default()
    }
}

fn assert_matches(report: &xray_loadgen::Report, seen: &Seen) {
    assert_eq!(
        report.acknowledged_executions,
        seen.executions.load(Ordering::SeqCst),
        "executions"
    );
    assert_eq!(
        report.acknowledged_spans,
        seen.spans.load(Ordering::SeqCst),
        "spans"
    );
    assert_eq!(
        report.acknowledged_steps,
        seen.steps.load(Ordering::SeqCst),
        "steps"
    );
    assert_eq!(
        report.requests,
        seen.accepted_requests.load(Ordering::SeqCst),
        "requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_count_with_pushback_acknowledges_everything_once() {
    let (endpoint, seen) = grpc_receiver(Fault::Pushback(4)).await;
    let report = xray_loadgen::run(LoadgenArgs {
        count: Some(500),
        api_key: Some("xr_test".into()),
        ..args(Protocol::Grpc, endpoint)
    })
    .await
    .unwrap();
    assert_matches(&report, &seen);
    assert_eq!(report.executions, 500);
    assert_eq!(report.acknowledged_executions, 500);
    assert_eq!(report.dropped_executions, 0);
    assert!(report.spans >= 500 * 6 && report.spans <= 500 * 9);
    assert_eq!(report.spans, report.acknowledged_spans);
    // 32 requests sent once each plus one refusal per 4 answers
    assert_eq!(report.requests, 32);
    let pushbacks = report.errors["grpc_resource_exhausted"];
    assert!(pushbacks >= 8, "{report:?}");
    assert_eq!(report.retries, pushbacks);
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        report.requests + pushbacks
    );
    assert_eq!(
        seen.api_keys.load(Ordering::SeqCst),
        report.requests + pushbacks
    );
    assert!(report.p50_ms > 0.0 && report.p99_ms >= report.p50_ms);
    assert!(report.bytes > 500 * 1000);
    // the JSON report carries the documented fields
    let json = serde_json::to_value(&report).unwrap();
    for k in [
        "executions",
        "spans",
        "executions_per_sec",
        "spans_per_sec",
        "p50_ms",
        "p99_ms",
        "errors",
        "acknowledged_executions",
        "acknowledged_spans",
    ] {
        assert!(json.get(k).is_some(), "{k} missing from {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_snapshot_gzip_with_429_acknowledges_everything_once() {
    let (endpoint, seen) = http_receiver(Fault::Pushback(3)).await;
    let report = xray_loadgen::run(LoadgenArgs {
        count: Some(301),
        mode: Mode::Snapshot,
        compression: Compression::Gzip,
        api_key: Some("xr_test".into()),
        ..args(Protocol::Http, endpoint)
    })
    .await
    .unwrap();
    assert_matches(&report, &seen);
    assert_eq!(report.acknowledged_executions, 301);
    // snapshot mode: one span per execution, steps as events
    assert_eq!(report.acknowledged_spans, 301);
    assert!(report.acknowledged_steps >= 301 * 5);
    assert_eq!(report.requests, 19); // 18 full batches of 16 and one of 13
    assert!(report.errors["http_429"] >= 6, "{report:?}");
    assert_eq!(report.dropped_executions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_and_rate_over_http_and_grpc() {
    for protocol in [Protocol::Http, Protocol::Grpc] {
        let (endpoint, seen) = match protocol {
            Protocol::Http => http_receiver(Fault::None).await,
            Protocol::Grpc => grpc_receiver(Fault::None).await,
        };
        let report = xray_loadgen::run(LoadgenArgs {
            duration: Some(HumanDuration(Duration::from_millis(1500))),
            rate: Some(320.0),
            batch: 8,
            ..args(protocol, endpoint)
        })
        .await
        .unwrap();
        assert_matches(&report, &seen);
        // paced: batches are due every 25 ms for 1.5 s, the last one before
        // the deadline; no timing assertion beyond that schedule bound
        assert!(report.acknowledged_executions > 0);
        assert!(report.executions <= 60 * 8, "{report:?}");
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.target_rate, Some(320.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_are_dropped_not_retried() {
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let (endpoint, seen) = match protocol {
            Protocol::Http => http_receiver(Fault::RejectAll).await,
            Protocol::Grpc => grpc_receiver(Fault::RejectAll).await,
        };
        let report = xray_loadgen::run(LoadgenArgs {
            count: Some(40),
            ..args(protocol, endpoint)
        })
        .await
        .unwrap();
        assert_matches(&report, &seen);
        assert_eq!(report.acknowledged_executions, 0);
        assert_eq!(report.dropped_executions, 40);
        assert_eq!(report.dropped_spans, report.spans);
        assert_eq!(report.retries, 0);
        let kind = match protocol {
            Protocol::Grpc => "grpc_invalid_argument",
            Protocol::Http => "http_400",
        };
        assert_eq!(report.errors[kind], 3, "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_counts_rejected_spans() {
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let (endpoint, seen) = match protocol {
            Protocol::Http => http_receiver(Fault::PartialOne).await,
            Protocol::Grpc => grpc_receiver(Fault::PartialOne).await,
        };
        let report = xray_loadgen::run(LoadgenArgs {
            count: Some(48),
            ..args(protocol, endpoint)
        })
        .await
        .unwrap();
        assert_matches(&report, &seen);
        assert_eq!(report.requests, 3);
        assert_eq!(report.rejected_spans, 3);
        assert_eq!(report.acknowledged_spans, report.spans - 3);
        assert_eq!(report.acknowledged_executions, 0);
        assert_eq!(report.errors["partial_success"], 3);
    }
}

#[tokio::test]
async fn unreachable_endpoint_fails_fast() {
    // a port nobody listens on: bind, read the port, close
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let err = xray_loadgen::run(LoadgenArgs {
            count: Some(1),
            ..args(protocol, format!("http://127.0.0.1:{port}"))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, LoadgenError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }
    let err = xray_loadgen::run(LoadgenArgs {
        count: Some(1),
        min_steps: 2,
        ..LoadgenArgs::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("steps must lie within"), "{err}");
}
