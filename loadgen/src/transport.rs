//! OTLP exporters: gRPC (`TraceService/Export`) and HTTP/protobuf
//! (`POST /v1/traces`), one connection each, and the classification of what
//! came back into "acknowledged", "retry" or "give up".

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::LoadgenError;

/// Wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

impl Protocol {
    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (`grpc-encoding: gzip` / `Content-Encoding: gzip`).
    Gzip,
}

/// A successful export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Spans the receiver said it rejected (OTLP `partial_success`).
    pub(crate) rejected_spans: u64,
}

/// A failed export attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// Error kind for the report, e.g. `grpc_resource_exhausted`, `http_429`.
    pub(crate) kind: String,
    /// Worth retrying (the receiver pushed back or the network hiccupped).
    pub(crate) retryable: bool,
    /// How long the receiver asked us to wait, when it said so.
    pub(crate) retry_after: Option<Duration>,
    /// Human-readable detail, logged at debug level.
    pub(crate) detail: String,
}

/// One connection to the endpoint.
pub(crate) enum Exporter {
    Grpc {
        client: TraceServiceClient<Channel>,
        api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        api_key: Option<String>,
        gzip: bool,
    },
}

/// What one request looks like on the wire, prepared once and reused by
/// retries.
pub(crate) enum Payload {
    Grpc(ExportTraceServiceRequest),
    Http(Bytes),
}

impl Exporter {
    /// Opens one connection (gRPC connects eagerly; HTTP keeps one pooled
    /// connection per exporter).
    pub(crate) async fn connect(
        protocol: Protocol,
        endpoint: &str,
        api_key: Option<&str>,
        compression: Compression,
        timeout: Duration,
    ) -> Result<Self, LoadgenError> {
        match protocol {
            Protocol::Grpc => {
                let ep = Endpoint::from_shared(endpoint.to_string())
                    .map_err(|e| LoadgenError::Endpoint(format!("{endpoint}: {e}")))?
                    .timeout(timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true);
                let channel = ep.connect().await.map_err(|e| {
                    LoadgenError::Unreachable(format!("{endpoint}: {}", error_chain(&e)))
                })?;
                let mut client = TraceServiceClient::new(channel)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(usize::MAX);
                if compression == Compression::Gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                let api_key = api_key
                    .map(|k| {
                        k.parse().map_err(|_| {
                            LoadgenError::Endpoint("api key is not valid ASCII".into())
                        })
                    })
                    .transpose()?;
                Ok(Exporter::Grpc { client, api_key })
            }
            Protocol::Http => {
                let url = http_url(endpoint)?;
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .pool_max_idle_per_host(1)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| LoadgenError::Endpoint(format!("http client: {e}")))?;
                // fail fast on a wrong address instead of retrying every batch
                probe(&url).await?;
                Ok(Exporter::Http {
                    client,
                    url,
                    api_key: api_key.map(str::to_string),
                    gzip: compression == Compression::Gzip,
                })
            }
        }
    }

    /// Prepares the wire form of `request`; returns it and its size in bytes
    /// (uncompressed protobuf).
    pub(crate) fn prepare(&self, request: ExportTraceServiceRequest) -> (Payload, usize) {
        let len = request.encoded_len();
        match self {
            Exporter::Grpc { .. } => (Payload::Grpc(request), len),
            Exporter::Http { gzip, .. } => {
                let raw = request.encode_to_vec();
                let body = if *gzip { gzip_bytes(&raw) } else { raw };
                (Payload::Http(Bytes::from(body)), len)
            }
        }
    }

    /// One export attempt.
    pub(crate) async fn export(&mut self, payload: &Payload) -> Result<Ack, Failure> {
        match (self, payload) {
            (Exporter::Grpc { client, api_key }, Payload::Grpc(req)) => {
                let mut request = tonic::Request::new(req.clone());
                if let Some(k) = api_key {
                    request.metadata_mut().insert("x-api-key", k.clone());
                }
                match client.export(request).await {
                    Ok(resp) => Ok(ack(resp.get_ref())),
                    Err(status) => Err(grpc_failure(&status)),
                }
            }
            (
                Exporter::Http {
                    client,
                    url,
                    api_key,
                    gzip,
                },
                Payload::Http(body),
            ) => {
                let mut rb = client
                    .post(url.as_str())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body.clone());
                if *gzip {
                    rb = rb.header(http::header::CONTENT_ENCODING, "gzip");
                }
                if let Some(k) = api_key {
                    rb = rb.header("x-api-key", k.as_str());
                }
                let resp = rb.send().await.map_err(|e| transport_failure(&e))?;
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let is_proto = resp
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/x-protobuf"));
                let body = resp.bytes().await.map_err(|e| transport_failure(&e))?;
                if status.is_success() {
                    let rejected = if is_proto {
                        ExportTraceServiceResponse::decode(body.as_ref())
                            .map(|r| ack(&r))
                            .unwrap_or(Ack { rejected_spans: 0 })
                    } else {
                        Ack { rejected_spans: 0 }
                    };
                    return Ok(rejected);
                }
                let code = status.as_u16();
                Err(Failure {
                    kind: format!("http_{code}"),
                    retryable: matches!(code, 429 | 502 | 503 | 504),
                    retry_after,
                    detail: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                })
            }
            // prepare() builds the payload for the exporter that sends it
            _ => Err(Failure {
                kind: "internal".into(),
                retryable: false,
                retry_after: None,
                detail: "payload prepared for another protocol".into(),
            }),
        }
    }
}

fn ack(resp: &ExportTraceServiceResponse) -> Ack {
    Ack {
        rejected_spans: resp
            .partial_success
            .as_ref()
            .map(|p| p.rejected_spans.max(0) as u64)
            .unwrap_or(0),
    }
}

/// gRPC status → failure. Retryable as the OTLP specification says for
/// exporters: pushback (`RESOURCE_EXHAUSTED`), `UNAVAILABLE`, plus transient
/// codes (`DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `DATA_LOSS`).
pub(crate) fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let code = status.code();
    let kind = match code {
        Code::ResourceExhausted => "grpc_resource_exhausted".to_string(),
        Code::Unavailable => "grpc_unavailable".to_string(),
        Code::DeadlineExceeded => "grpc_deadline_exceeded".to_string(),
        other => format!("grpc_{}", snake(&format!("{other:?}"))),
    };
    Failure {
        kind,
        retryable: matches!(
            code,
            Code::ResourceExhausted
                | Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Cancelled
                | Code::DataLoss
        ),
        retry_after: None,
        detail: status.message().to_string(),
    }
}

fn transport_failure(e: &reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Failure {
        kind: kind.to_string(),
        retryable: true,
        retry_after: None,
        detail: error_chain(e),
    }
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `http://host:port` → `http://host:port/v1/traces`; a URL with a path is
/// used as given.
pub(crate) fn http_url(endpoint: &str) -> Result<String, LoadgenError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| LoadgenError::Endpoint(format!("{endpoint}: {e}")))?;
    if url.scheme() != "http" {
        return Err(LoadgenError::Endpoint(format!(
            "{endpoint}: only http:// endpoints are supported"
        )));
    }
    if url.path() == "/" || url.path().is_empty() {
        Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    } else {
        Ok(endpoint.to_string())
    }
}

async fn probe(url: &str) -> Result<(), LoadgenError> {
    let u = reqwest::Url::parse(url).map_err(|e| LoadgenError::Endpoint(e.to_string()))?;
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(LoadgenError::Unreachable(format!("{host}:{port}: {e}"))),
        Err(_) => Err(LoadgenError::Unreachable(format!(
            "{host}:{port}: no answer within 5s"
        ))),
    }
}

fn gzip_bytes(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        flate2::Compression::fast(),
    );
    // writing into a Vec cannot fail
    let _ = enc.write_all(raw);
    enc.finish().unwrap_or_default()
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_grpc_codes() {
        let f = grpc_failure(&tonic::Status::resource_exhausted("queue full"));
        assert_eq!(f.kind, "grpc_resource_exhausted");
        assert!(f.retryable);
        let f = grpc_failure(&tonic::Status::unavailable("down"));
        assert_eq!(f.kind, "grpc_unavailable");
        assert!(f.retryable);
        let f = grpc_failure(&tonic::Status::invalid_argument("bad"));
        assert_eq!(f.kind, "grpc_invalid_argument");
        assert!(!f.retryable);
        let f = grpc_failure(&tonic::Status::unauthenticated("key"));
        assert_eq!(f.kind, "grpc_unauthenticated");
        assert!(!f.retryable);
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            http_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_url("http://h:6006/v1/traces").unwrap(),
            "http://h:6006/v1/traces"
        );
        assert!(http_url("https://h").is_err());
        assert!(http_url("not a url").is_err());
    }
}
