//! The OTLP receivers ([`grpc`], [`http`]) and what they share: turning an
//! API key and a decoded request into mapped rows on the pipeline's queue.

pub(crate) mod grpc;
pub(crate) mod http;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::mapper::{self, DecodeError, IngestContext, MapOutcome};
use crate::metrics::{self, Transport};
use crate::pipeline::{EnqueueError, Pipeline};

/// Requests with at least this many spans are mapped on the blocking pool so
/// that large requests do not stall the async workers.
const BLOCKING_MAP_SPANS: usize = 512;

/// The same for protobuf bodies, whose spans are only counted while they
/// are decoded: at least this many bytes (about 50–100 µs of decode + map).
const BLOCKING_MAP_BYTES: usize = 64 * 1024;

/// An export request as a receiver hands it over.
#[derive(Debug)]
pub(crate) enum Payload {
    /// A protobuf `ExportTraceServiceRequest`, decoded and mapped in one
    /// step by [`mapper::map_protobuf`].
    Protobuf(Bytes),
    /// A request decoded already (OTLP/JSON), with the reasons of spans
    /// the decoder took out.
    Decoded(ExportTraceServiceRequest, Vec<String>),
}

impl Payload {
    /// Whether mapping this payload is worth moving off the async workers.
    fn is_large(&self) -> bool {
        match self {
            Payload::Protobuf(bytes) => bytes.len() >= BLOCKING_MAP_BYTES,
            Payload::Decoded(request, _) => {
                let spans: usize = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| r.scope_spans.iter())
                    .map(|s| s.spans.len())
                    .sum();
                spans >= BLOCKING_MAP_SPANS
            }
        }
    }

    /// Decodes (if still needed) and maps. Pure.
    fn map(self, ctx: &IngestContext) -> Result<MapOutcome, DecodeError> {
        match self {
            Payload::Protobuf(bytes) => mapper::map_protobuf(&bytes, ctx),
            Payload::Decoded(request, pre_rejected) => {
                let mut outcome = mapper::map(request, ctx);
                if !pre_rejected.is_empty() {
                    outcome.rejected_spans += pre_rejected.len() as u64;
                    let mut reasons = pre_rejected;
                    reasons.append(&mut outcome.rejections);
                    outcome.rejections = reasons;
                }
                Ok(outcome)
            }
        }
    }
}

/// Shared state of both receivers.
#[derive(Clone)]
pub(crate) struct Ingest {
    pub(crate) pipeline: Pipeline,
    pub(crate) max_message_bytes: usize,
}

/// Why an export request was not accepted.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// The queue is full: retry later.
    Busy,
    /// The collector is shutting down: retry later (elsewhere).
    ShuttingDown,
    /// The protobuf body is malformed: the client must fix the request.
    Decode(DecodeError),
    /// Mapping panicked or the blocking pool is gone.
    Internal(String),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Busy => f.write_str("the collector's queue is full; retry later"),
            IngestError::ShuttingDown => f.write_str("the collector is shutting down; retry later"),
            IngestError::Decode(e) => write!(
                f,
                "failed to decode the protobuf ExportTraceServiceRequest: {e}"
            ),
            IngestError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

/// The API key of a request: `x-api-key: KEY` or `authorization: Bearer KEY`.
pub(crate) fn api_key(x_api_key: Option<&str>, authorization: Option<&str>) -> Option<String> {
    if let Some(k) = x_api_key.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(k.to_string());
    }
    let auth = authorization?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_string()).filter(|k| !k.is_empty())
    } else {
        None
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Ingest {
    /// Decodes and maps `payload` and queues the rows; returns the OTLP
    /// response to send.
    pub(crate) async fn ingest(
        &self,
        payload: Payload,
        api_key: Option<String>,
        transport: Transport,
        started: Instant,
    ) -> Result<ExportTraceServiceResponse, IngestError> {
        // Authentication lands with the API-key work; until then every
        // request goes to the default app (auth.required = false).
        let ctx = IngestContext {
            app: xray_model::DEFAULT_APP.to_string(),
            api_key,
            ingest_time_ns: now_ns(),
        };
        let mapped = if payload.is_large() {
            tokio::task::spawn_blocking(move || payload.map(&ctx))
                .await
                .map_err(|e| IngestError::Internal(e.to_string()))?
        } else {
            payload.map(&ctx)
        };
        let outcome = match mapped {
            Ok(outcome) => outcome,
            Err(e) => {
                metrics::record_refused(transport, started.elapsed());
                return Err(IngestError::Decode(e));
            }
        };
        let accepted = outcome.accepted_spans;
        let rejected = outcome.rejected_spans;
        let message = outcome.error_message();
        self.submit(outcome.batch, transport, started).await?;
        metrics::record_request(transport, accepted, rejected, started.elapsed());
        if rejected > 0 {
            tracing::debug!(accepted, rejected, reason = %message, "spans rejected");
        }
        Ok(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        })
    }
}

impl Ingest {
    /// Hands mapped rows to the pipeline. Every receiver (OTLP and the
    /// legacy JSON endpoints) submits through here, so what applies to one
    /// ingest path (processors, backpressure, durability) applies to all.
    /// On error nothing of `batch` was accepted and the caller must tell
    /// the client to retry.
    pub(crate) async fn submit(
        &self,
        batch: xray_model::MappedBatch,
        transport: Transport,
        started: Instant,
    ) -> Result<(), IngestError> {
        match self.pipeline.try_enqueue(batch) {
            Ok(()) => Ok(()),
            Err(e) => {
                metrics::record_refused(transport, started.elapsed());
                Err(match e {
                    EnqueueError::Full => IngestError::Busy,
                    EnqueueError::Closed => IngestError::ShuttingDown,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::api_key;

    #[test]
    fn api_key_from_either_header() {
        assert_eq!(api_key(Some("xr_a"), None).as_deref(), Some("xr_a"));
        assert_eq!(api_key(None, Some("Bearer xr_b")).as_deref(), Some("xr_b"));
        assert_eq!(
            api_key(None, Some("bearer  xr_c ")).as_deref(),
            Some("xr_c")
        );
        assert_eq!(
            api_key(Some("xr_a"), Some("Bearer xr_b")).as_deref(),
            Some("xr_a")
        );
        assert_eq!(api_key(None, Some("Basic abc")), None);
        assert_eq!(api_key(Some(" "), None), None);
        assert_eq!(api_key(None, None), None);
    }
}
