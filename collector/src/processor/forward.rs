//! The `forward` processor: re-exports every accepted OTLP request to
//! another OTLP endpoint (gRPC or HTTP/protobuf), so X-Ray can sit between
//! an app and an existing backend.
//!
//! - What is sent: the request's protobuf bytes as received (OTLP/JSON
//!   requests are encoded to protobuf once), or, with `redact = true`, the
//!   request decoded, redacted by the `redact` processors listed before
//!   this one (attribute by attribute, the attribute name as the key), and
//!   encoded again. Sampling and limits do not apply: the downstream gets
//!   every span X-Ray accepted.
//! - When: after the rows were accepted into X-Ray's queue (a request the
//!   client must retry is not forwarded, so retries do not duplicate).
//! - How: a bounded queue per forwarder (`queue_size` requests) and one
//!   sending task; a full queue drops the request and counts it
//!   (`xray_processor_forward_requests_total{outcome="dropped"}`), so a slow
//!   or dead downstream never slows ingest or storage. Failed attempts are
//!   retried with exponential backoff (`initial_backoff_ms` doubling up to
//!   `max_backoff_ms`, at most `max_retries` times) when the error is
//!   transient (gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//!   `DEADLINE_EXCEEDED`, `ABORTED`; HTTP 429, 502, 503, 504; connection
//!   errors and timeouts).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use xray_config::{ForwardConfig, ForwardProtocol};

use super::metrics;
use super::redact::{Change, Redactor};

/// The gRPC path of OTLP trace export.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Why a forwarder cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The endpoint is not a usable URL.
    #[error("endpoint \"{endpoint}\": {message}")]
    Endpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// A header name or value is not valid in HTTP.
    #[error("header \"{0}\" is not a valid HTTP header name or value")]
    Header(String),
}

/// One running forwarder: the sending side of its queue.
#[derive(Debug)]
pub struct Forwarder {
    queue: mpsc::Sender<Bytes>,
}

impl Forwarder {
    /// Starts the sending task (inside a Tokio runtime). `redactors` are
    /// applied to each forwarded copy (empty: forward as received).
    pub fn start(
        config: &ForwardConfig,
        redactors: Vec<Arc<Redactor>>,
    ) -> Result<(Forwarder, JoinHandle<()>), ForwardError> {
        let client = Client::new(config)?;
        let (tx, rx) = mpsc::channel(usize::try_from(config.queue_size.max(1)).unwrap_or(1000));
        let worker = Worker {
            client,
            redactors,
            max_retries: config.max_retries,
            initial: Duration::from_millis(config.initial_backoff_ms.max(1)),
            max: Duration::from_millis(config.max_backoff_ms.max(1)),
            endpoint: config.endpoint.clone(),
        };
        let handle = tokio::spawn(worker.run(rx));
        Ok((Forwarder { queue: tx }, handle))
    }

    /// Queues one request's protobuf bytes; never waits. A full queue drops
    /// the request (counted).
    pub fn offer(&self, request: Bytes) {
        match self.queue.try_send(request) {
            Ok(()) => metrics::forward_queued(1),
            Err(_) => metrics::record_forward("dropped"),
        }
    }
}

enum Client {
    Grpc {
        grpc: tonic::client::Grpc<tonic::transport::Channel>,
        headers: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
    },
}

impl Client {
    fn new(config: &ForwardConfig) -> Result<Client, ForwardError> {
        let endpoint = config.endpoint.trim().to_string();
        let bad = |message: String| ForwardError::Endpoint {
            endpoint: endpoint.clone(),
            message,
        };
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        match config.protocol {
            ForwardProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .connect_lazy();
                let mut headers = tonic::metadata::MetadataMap::new();
                for (k, v) in &config.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|_| ForwardError::Header(k.clone()))?;
                    let value = v.parse().map_err(|_| ForwardError::Header(k.clone()))?;
                    headers.insert(key, value);
                }
                Ok(Client::Grpc {
                    grpc: tonic::client::Grpc::new(channel),
                    headers,
                })
            }
            ForwardProtocol::Http => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &config.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ForwardError::Header(k.clone()))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| ForwardError::Header(k.clone()))?;
                    headers.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                Ok(Client::Http {
                    client,
                    url: endpoint,
                    headers,
                })
            }
        }
    }

    /// One attempt. `Err(true)` when a retry may succeed.
    async fn send(&mut self, body: Bytes) -> Result<(), (bool, String)> {
        match self {
            Client::Grpc { grpc, headers } => {
                grpc.ready()
                    .await
                    .map_err(|e| (true, format!("connect: {e}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = headers.clone();
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
                match grpc.unary(request, path, ForwardCodec).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err((retryable_code(&status), status.to_string())),
                }
            }
            Client::Http {
                client,
                url,
                headers,
            } => {
                let resp = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| (true, e.to_string()))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    Err((retry, format!("HTTP {status}")))
                }
            }
        }
    }
}

fn retryable_code(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
    )
}

struct Worker {
    client: Client,
    redactors: Vec<Arc<Redactor>>,
    max_retries: u32,
    initial: Duration,
    max: Duration,
    endpoint: String,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) {
        while let Some(raw) = rx.recv().await {
            metrics::forward_queued(-1);
            let body = if self.redactors.is_empty() {
                raw
            } else {
                match redact_request(&raw, &self.redactors) {
                    Some(b) => b,
                    None => {
                        // The bytes were mapped already, so this does not
                        // happen; never forward unredacted by mistake.
                        metrics::record_forward("failed");
                        continue;
                    }
                }
            };
            let mut delay = self.initial;
            let mut attempt = 0;
            loop {
                match self.client.send(body.clone()).await {
                    Ok(()) => {
                        metrics::record_forward("sent");
                        break;
                    }
                    Err((retry, message)) if retry && attempt < self.max_retries => {
                        attempt += 1;
                        metrics::record_forward("retried");
                        tracing::debug!(endpoint = %self.endpoint, %message, attempt, "forward failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.max);
                    }
                    Err((_, message)) => {
                        metrics::record_forward("failed");
                        tracing::warn!(endpoint = %self.endpoint, %message, attempts = attempt + 1, "forwarding a request failed; dropped it");
                        break;
                    }
                }
            }
        }
    }
}

/// Decodes `raw`, redacts every string attribute (resource, scope, span,
/// event and link attributes; arrays and nested key-value lists too) with
/// `redactors` in order, and encodes it again. `None` when `raw` does not
/// decode.
pub(crate) fn redact_request(raw: &[u8], redactors: &[Arc<Redactor>]) -> Option<Bytes> {
    let mut req = ExportTraceServiceRequest::decode(raw).ok()?;
    for rs in &mut req.resource_spans {
        if let Some(r) = rs.resource.as_mut() {
            redact_attrs(&mut r.attributes, redactors);
        }
        for ss in &mut rs.scope_spans {
            if let Some(scope) = ss.scope.as_mut() {
                redact_attrs(&mut scope.attributes, redactors);
            }
            for span in &mut ss.spans {
                redact_attrs(&mut span.attributes, redactors);
                for e in &mut span.events {
                    redact_attrs(&mut e.attributes, redactors);
                }
                for l in &mut span.links {
                    redact_attrs(&mut l.attributes, redactors);
                }
            }
        }
    }
    Some(Bytes::from(req.encode_to_vec()))
}

fn redact_attrs(attrs: &mut Vec<KeyValue>, redactors: &[Arc<Redactor>]) {
    attrs.retain_mut(|kv| {
        let Some(v) = kv.value.as_mut() else {
            return true;
        };
        redact_value(&kv.key, v, redactors)
    });
}

/// Returns false when the value is to be dropped.
fn redact_value(key: &str, v: &mut AnyValue, redactors: &[Arc<Redactor>]) -> bool {
    match v.value.as_mut() {
        Some(Value::StringValue(s)) => {
            for r in redactors {
                match r.attribute(key, s) {
                    Change::Keep => {}
                    Change::Replace(new) => *s = new,
                    Change::Drop => return false,
                }
            }
            true
        }
        Some(Value::ArrayValue(a)) => {
            a.values
                .retain_mut(|item| redact_value(key, item, redactors));
            true
        }
        Some(Value::KvlistValue(list)) => {
            list.values.retain_mut(|kv| {
                let child = format!("{key}.{}", kv.key);
                match kv.value.as_mut() {
                    Some(v) => redact_value(&child, v, redactors),
                    None => true,
                }
            });
            true
        }
        _ => true,
    }
}

/// Requests as raw protobuf bytes, responses as prost messages.
#[derive(Debug, Clone, Copy, Default)]
struct ForwardCodec;

impl Codec for ForwardCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = ForwardCodec;
    type Decoder = ForwardCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for ForwardCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ForwardCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let resp = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(format!("bad response from the downstream: {e}")))?;
        Ok(Some(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use xray_config::RedactConfig;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_dead_downstream_never_blocks_and_overflow_is_counted() {
        // A port nobody listens on: every attempt fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (fw, task) = Forwarder::start(
            &ForwardConfig {
                endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
                protocol: ForwardProtocol::Http,
                queue_size: 2,
                max_retries: 50,
                initial_backoff_ms: 1000,
                max_backoff_ms: 1000,
                ..Default::default()
            },
            Vec::new(),
        )
        .unwrap();
        let dropped = |m: &str| {
            m.lines()
                .find(|l| {
                    l.starts_with("xray_processor_forward_requests_total{outcome=\"dropped\"}")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        let mut out = String::new();
        metrics::render(&mut out);
        let before = dropped(&out);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            fw.offer(Bytes::from_static(b"\x0a\x00"));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "offer waited");
        let mut out = String::new();
        metrics::render(&mut out);
        // One request in flight, two queued, the rest dropped.
        assert!(dropped(&out) - before >= 97, "{out}");
        drop(fw);
        task.abort();
    }

    #[test]
    fn forwarded_copy_is_redacted_attribute_by_attribute() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "s".into(),
                        attributes: vec![
                            kv("xray.step.input", r#"{"to":"jane@example.com"}"#),
                            kv("xray.pipeline", "p"),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let r = Arc::new(Redactor::new(&RedactConfig::default()).unwrap());
        let out = redact_request(&req.encode_to_vec(), &[r]).unwrap();
        let back = ExportTraceServiceRequest::decode(out).unwrap();
        let attrs = &back.resource_spans[0].scope_spans[0].spans[0].attributes;
        let Some(Value::StringValue(s)) = attrs[0].value.as_ref().unwrap().value.as_ref() else {
            panic!()
        };
        assert_eq!(s, r#"{"to":"[REDACTED:email]"}"#);
        assert_eq!(attrs[1], kv("xray.pipeline", "p"));
    }
}
