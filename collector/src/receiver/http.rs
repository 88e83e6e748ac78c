//! OTLP/HTTP receiver: `POST /v1/traces`.
//!
//! Wire format: an `ExportTraceServiceRequest` as binary protobuf
//! (`Content-Type: application/x-protobuf`) or OTLP/JSON
//! (`application/json`: hex trace and span ids, lowerCamelCase field names,
//! 64-bit integers as strings or numbers, enums as integers), optionally
//! `Content-Encoding: gzip`. The answer is an `ExportTraceServiceResponse`
//! in the request's encoding, with `partial_success` filled when spans were
//! rejected; errors carry a `google.rpc.Status` in the request's encoding.
//!
//! Authentication comes first, before the body is read: the key in
//! `x-api-key` or `authorization: Bearer …` decides the app. A missing key
//! (with `auth.required`) or a wrong one gets 401, a key over its rate
//! limit 429 with `Retry-After`, a key store that cannot be asked 503 with
//! `Retry-After`, each with a `google.rpc.Status` body in the request's
//! encoding.
//!
//! Limits: bodies larger than `receivers.otlp.max_message_bytes` — before
//! *or after* decompression — get 413; decompression stops at the limit, so
//! a gzip bomb never allocates more than that. Unknown content types and
//! encodings get 415, undecodable bodies 400 with the decoder's message, a
//! full queue or spool 429 with `Retry-After` (seconds) and a
//! `google.rpc.Status` body, a spool that cannot be written or a collector
//! shutting down 503 with `Retry-After`.
//!
//! The same listener answers `GET /metrics` (Prometheus text) and tells
//! clients sending logs or metrics that X-Ray only receives traces.

use std::future::Future;
use std::io::Read;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

use xray_auth::AuthError;

use super::{Ingest, IngestError, Payload};
use crate::metrics::{self, Transport};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the error body OTLP/HTTP prescribes.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn transport(self) -> Transport {
        match self {
            Encoding::Protobuf => Transport::HttpProtobuf,
            Encoding::Json => Transport::HttpJson,
        }
    }
}

/// The router of the OTLP/HTTP listener.
pub(crate) fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", any(not_traces))
        .route("/v1/metrics", any(not_traces))
        .route("/metrics", get(metrics::metrics_handler))
        .merge(crate::legacy::router())
        .fallback(fallback)
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
}

/// Serves OTLP/HTTP on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    ingest: Ingest,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ingest))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_traces() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "X-Ray receives traces only: send spans to /v1/traces (logs and metrics are not accepted)",
    )
}

async fn fallback() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found: X-Ray's OTLP/HTTP receiver serves POST /v1/traces and GET /metrics, plus the \
         compatibility endpoints POST /executions, /apps, /v1/events, /v1/events/batch and /ingest",
    )
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// An error answered in the request's encoding.
fn error(encoding: Encoding, status: StatusCode, message: String) -> Response {
    // gRPC codes matching the HTTP statuses, as OTLP/HTTP suggests.
    let code = match status {
        StatusCode::BAD_REQUEST => 3,          // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
        StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
        StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 13,                               // INTERNAL
    };
    let mut headers = HeaderMap::new();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, "1".parse().expect("valid header"));
    }
    match encoding {
        Encoding::Protobuf => {
            headers.insert(
                header::CONTENT_TYPE,
                PROTOBUF.parse().expect("valid header"),
            );
            let body = RpcStatus { code, message }.encode_to_vec();
            (status, headers, body).into_response()
        }
        Encoding::Json => {
            headers.insert(header::CONTENT_TYPE, JSON.parse().expect("valid header"));
            let body = serde_json::json!({ "code": code, "message": message }).to_string();
            (status, headers, body).into_response()
        }
    }
}

/// An authentication failure answered in the request's encoding, with
/// `Retry-After` when retrying later can succeed.
fn auth_error(encoding: Encoding, e: &AuthError) -> Response {
    let mut response = error(encoding, e.http_status(), e.to_string());
    response.headers_mut().extend(e.http_headers());
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn traces(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let content_type = header_str(&headers, &header::CONTENT_TYPE).unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "unsupported content type \"{content_type}\": send application/x-protobuf or application/json"
                ),
            );
        }
    };
    let transport = encoding.transport();
    let principal = match ingest
        .authenticate_headers(&headers, transport, started)
        .await
    {
        Ok(p) => p,
        Err(e) => return auth_error(encoding, &e),
    };
    let refuse = |status: StatusCode, message: String| {
        metrics::record_refused(transport, started.elapsed());
        error(encoding, status, message)
    };
    let gzip = match header_str(&headers, &header::CONTENT_ENCODING)
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            metrics::record_refused(transport, started.elapsed());
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported content encoding \"{other}\": send gzip or no encoding"),
            );
        }
    };
    let limit = ingest.max_message_bytes;
    let too_large = || {
        format!(
            "request body exceeds the limit of {limit} bytes (receivers.otlp.max_message_bytes)"
        )
    };
    if let Some(len) =
        header_str(&headers, &header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok())
        && len > limit as u64
    {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_large());
    }
    let raw = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_large()),
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {e}"),
            );
        }
    };
    let bytes = if gzip {
        match gunzip_limited(&raw, limit) {
            Ok(b) => Bytes::from(b),
            Err(GunzipError::TooLarge) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{} after gzip decompression", too_large()),
                );
            }
            Err(GunzipError::Invalid(e)) => {
                return refuse(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"));
            }
        }
    } else {
        raw
    };
    // Protobuf is decoded and mapped in one step inside `ingest` (a
    // malformed body comes back as `IngestError::Decode`); OTLP/JSON is
    // decoded here.
    let payload = match encoding {
        Encoding::Protobuf => Payload::Protobuf(bytes),
        Encoding::Json => match decode_json(&bytes) {
            Ok((request, pre_rejected)) => Payload::Decoded(request, pre_rejected),
            Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
        },
    };
    match ingest.ingest(payload, &principal, transport, started).await {
        Ok(resp) => ok(encoding, &resp),
        // Already counted as refused by `ingest`.
        Err(e @ IngestError::Decode(_)) => error(encoding, StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ IngestError::Busy { retry_after_secs }) => {
            let mut r = error(encoding, StatusCode::TOO_MANY_REQUESTS, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            r
        }
        Err(e @ (IngestError::ShuttingDown | IngestError::Unavailable(_))) => {
            error(encoding, StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e @ IngestError::Internal(_)) => {
            tracing::error!(error = %e, "http export failed");
            error(
                encoding,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while mapping spans".to_string(),
            )
        }
    }
}

fn ok(encoding: Encoding, resp: &ExportTraceServiceResponse) -> Response {
    match encoding {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROTOBUF)],
            resp.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => {
            let body = match &resp.partial_success {
                Some(p) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": p.rejected_spans.to_string(),
                        "errorMessage": p.error_message,
                    }
                }),
                None => serde_json::json!({}),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, JSON)],
                body.to_string(),
            )
                .into_response()
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[derive(Debug)]
enum GunzipError {
    TooLarge,
    Invalid(std::io::Error),
}

/// Decompresses a gzip body (one or more members) without ever holding more
/// than `limit` decompressed bytes.
fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out: Vec<u8> = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GunzipError::Invalid(e)),
        };
        if out.len() + n > limit {
            return Err(GunzipError::TooLarge);
        }
        if out.capacity() < out.len() + n {
            // Grow geometrically, but never past the limit.
            let target = (out.capacity() * 2).max(out.len() + n).min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes OTLP/JSON. Spans whose trace, span or parent span id is not
/// valid hex are taken out and reported (so one bad span does not fail the
/// whole request); anything else malformed fails the request.
fn decode_json(body: &[u8]) -> Result<(ExportTraceServiceRequest, Vec<String>), String> {
    let first = match serde_json::from_slice::<ExportTraceServiceRequest>(body) {
        Ok(r) => return Ok((r, Vec::new())),
        Err(e) => e,
    };
    let message = || format!("invalid OTLP/JSON ExportTraceServiceRequest: {first}");
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(message());
    };
    let rejected = take_spans_with_bad_ids(&mut value);
    if rejected.is_empty() {
        return Err(message());
    }
    serde_json::from_value(value)
        .map(|r| (r, rejected))
        .map_err(|_| message())
}

fn take_spans_with_bad_ids(value: &mut serde_json::Value) -> Vec<String> {
    let mut rejected = Vec::new();
    let Some(resource_spans) = value
        .get_mut("resourceSpans")
        .and_then(|v| v.as_array_mut())
    else {
        return rejected;
    };
    for rs in resource_spans {
        let Some(scope_spans) = rs.get_mut("scopeSpans").and_then(|v| v.as_array_mut()) else {
            continue;
        };
        for ss in scope_spans {
            let Some(spans) = ss.get_mut("spans").and_then(|v| v.as_array_mut()) else {
                continue;
            };
            spans.retain(|span| match bad_id(span) {
                Some(reason) => {
                    rejected.push(reason);
                    false
                }
                None => true,
            });
        }
    }
    rejected
}

fn bad_id(span: &serde_json::Value) -> Option<String> {
    let name = span.get("name").and_then(|n| n.as_str()).unwrap_or("");
    for field in ["traceId", "spanId", "parentSpanId"] {
        let Some(v) = span.get(field) else { continue };
        let ok = v
            .as_str()
            .is_some_and(|s| s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Some(format!("span \"{name}\": {field} {v} is not a hex string"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            gunzip_limited(&bomb, 1024 * 1024),
            Err(GunzipError::TooLarge)
        ));
        assert_eq!(
            gunzip_limited(&bomb, 10 * 1024 * 1024).unwrap().len(),
            10 * 1024 * 1024
        );
        assert!(matches!(
            gunzip_limited(b"not gzip", 1024),
            Err(GunzipError::Invalid(_))
        ));
    }

    #[test]
    fn json_spans_with_bad_hex_ids_are_taken_out() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"good"},
            {"traceId":"not-hex","spanId":"eee19b7ec3c1b175","name":"bad"}]}]}]}"#;
        let (req, rejected) = decode_json(body).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1);
        assert_eq!(
            rejected,
            vec!["span \"bad\": traceId \"not-hex\" is not a hex string"]
        );
        let err = decode_json(b"{\"resourceSpans\": 3}").unwrap_err();
        assert!(
            err.starts_with("invalid OTLP/JSON ExportTraceServiceRequest: "),
            "{err}"
        );
    }
}
