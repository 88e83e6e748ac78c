//! The OTLP receivers ([`grpc`], [`http`]) and what they share: turning an
//! API key and a decoded request into mapped rows on the pipeline's queue.
//!
//! Every ingest route authenticates first ([`Ingest::authenticate`]): the
//! key in `x-api-key` or `authorization: Bearer …` (HTTP headers or gRPC
//! metadata) becomes a [`Principal`] whose app the rows belong to, or an
//! [`AuthError`] the route answers in its own wire format (gRPC status,
//! OTLP/HTTP `google.rpc.Status`, or JSON `{"error": …}` via
//! `AuthError: IntoResponse` for the JSON endpoints).

pub(crate) mod grpc;
pub(crate) mod http;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use axum::http::HeaderMap;
use xray_auth::{AuthError, Authenticator, Principal};

use crate::mapper::{self, DecodeError, IngestContext, MapOutcome};
use crate::metrics::{self, Transport};
use crate::pipeline::{EnqueueError, Pipeline};
use crate::processor::Chain;

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

    /// The request as protobuf bytes, for the forwarders: the received
    /// bytes themselves, or the decoded request encoded once.
    fn protobuf_bytes(&self) -> Bytes {
        match self {
            Payload::Protobuf(bytes) => bytes.clone(),
            Payload::Decoded(request, _) => Bytes::from(prost::Message::encode_to_vec(request)),
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
    /// Decides which app a request's data belongs to (shared with the
    /// dashboard API in `xray serve`: one key cache, one set of buckets).
    pub(crate) auth: Authenticator,
    /// The processor chain every submitted batch goes through.
    pub(crate) processors: std::sync::Arc<Chain>,
    /// The mapper's caps (`limits.max_events_per_span`).
    pub(crate) max_events_per_span: usize,
}

/// Why an export request was not accepted.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// The queue or the spool is full: retry after this many seconds.
    Busy {
        /// Suggested wait before retrying (`Retry-After`, gRPC `RetryInfo`).
        retry_after_secs: u64,
    },
    /// The spool cannot be written: nothing was accepted; retry later.
    Unavailable(String),
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
            IngestError::Busy { retry_after_secs } => write!(
                f,
                "the collector is over its queue or spool budget; retry in {retry_after_secs} s"
            ),
            IngestError::Unavailable(m) => {
                write!(
                    f,
                    "the collector cannot store the request durably ({m}); retry later"
                )
            }
            IngestError::ShuttingDown => f.write_str("the collector is shutting down; retry later"),
            IngestError::Decode(e) => write!(
                f,
                "failed to decode the protobuf ExportTraceServiceRequest: {e}"
            ),
            IngestError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

/// Unix time now, in nanoseconds.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Ingest {
    /// Who sends a request carrying these `x-api-key` / `authorization`
    /// values (HTTP headers or gRPC metadata): see
    /// [`Authenticator::authenticate`]. A refusal is counted in the
    /// metrics (`xray_collector_requests_refused_total` and
    /// `xray_collector_auth_refused_total`); the caller answers it in its
    /// wire format.
    pub(crate) async fn authenticate(
        &self,
        x_api_key: Option<&str>,
        authorization: Option<&str>,
        transport: Transport,
        started: Instant,
    ) -> Result<Principal, AuthError> {
        let key = xray_auth::key_from_headers(x_api_key, authorization);
        match self.auth.authenticate(key.as_deref()).await {
            Ok(p) => Ok(p),
            Err(e) => {
                metrics::record_refused(transport, started.elapsed());
                metrics::record_auth_refused(&e);
                tracing::debug!(error = %e, transport = ?transport, "ingest request not authenticated");
                Err(e)
            }
        }
    }

    /// [`Ingest::authenticate`] for an HTTP request's headers: the step
    /// every ingest route of the HTTP listener runs before reading its
    /// body.
    pub(crate) async fn authenticate_headers(
        &self,
        headers: &HeaderMap,
        transport: Transport,
        started: Instant,
    ) -> Result<Principal, AuthError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        self.authenticate(get("x-api-key"), get("authorization"), transport, started)
            .await
    }

    /// Decodes and maps `payload` into the app of `principal` and queues
    /// the rows; returns the OTLP response to send.
    pub(crate) async fn ingest(
        &self,
        payload: Payload,
        principal: &Principal,
        transport: Transport,
        started: Instant,
    ) -> Result<ExportTraceServiceResponse, IngestError> {
        let mut ctx = IngestContext::new(principal.ingest_app(), now_ns());
        ctx.max_events_per_span = self.max_events_per_span;
        let forward = self.processors.forwards().then(|| payload.protobuf_bytes());
        // Large requests are mapped, and run through the processor chain,
        // on the blocking pool; small ones go through `submit` like every
        // other batch.
        let large = payload.is_large();
        let mapped = if large {
            let chain = self.processors.clone();
            tokio::task::spawn_blocking(move || {
                payload.map(&ctx).map(|mut outcome| {
                    chain.apply(&mut outcome.batch);
                    outcome
                })
            })
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
        if large {
            self.enqueue(outcome.batch, transport, started).await?;
        } else {
            self.submit(outcome.batch, transport, started).await?;
        }
        // Forward only what was accepted: a refused request is retried by
        // the client and must not reach the downstream twice.
        if let Some(bytes) = forward {
            self.processors.forward(&bytes);
        }
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
    /// Returns once the rows are durable (in the spool) or, without a
    /// spool, queued in memory: only then may the caller acknowledge. On
    /// error nothing of `batch` was accepted and the caller must tell the
    /// client to retry.
    pub(crate) async fn submit(
        &self,
        mut batch: xray_model::MappedBatch,
        transport: Transport,
        started: Instant,
    ) -> Result<(), IngestError> {
        self.processors.apply(&mut batch);
        self.enqueue(batch, transport, started).await
    }

    /// Queues rows the processor chain has already seen.
    async fn enqueue(
        &self,
        batch: xray_model::MappedBatch,
        transport: Transport,
        started: Instant,
    ) -> Result<(), IngestError> {
        match self.pipeline.enqueue(batch).await {
            Ok(()) => Ok(()),
            Err(e) => {
                metrics::record_refused(transport, started.elapsed());
                Err(match e {
                    EnqueueError::Full { retry_after_secs } => {
                        metrics::record_busy();
                        IngestError::Busy { retry_after_secs }
                    }
                    EnqueueError::Closed => IngestError::ShuttingDown,
                    EnqueueError::Spool(m) => {
                        tracing::error!(error = %m, "spool write failed; request refused");
                        IngestError::Unavailable(m)
                    }
                })
            }
        }
    }
}
