//! Ingest endpoints compatible with the earlier X-Ray services, served on
//! the OTLP/HTTP listener next to `POST /v1/traces`:
//!
//! | service | routes | module |
//! |---|---|---|
//! | snapshot service | `POST /executions`, `POST /apps` (admin token) | [`snapshot`] |
//! | event service | `POST /v1/events`, `POST /v1/events/batch` | [`events`] |
//! | run service | `POST /ingest` | [`runs`] |
//!
//! Each body is JSON, mapped by a pure function (legacy JSON →
//! [`MappedBatch`](xray_model::MappedBatch)) into the same executions and
//! steps the OTLP mapper produces, then queued through the same
//! authenticated ingest path as OTLP (`Ingest::authenticate_headers` and
//! `Ingest::submit`): the API key (`x-api-key` or `authorization: Bearer
//! …`) decides the app, processors and backpressure apply alike, and the
//! rows show up in every `/api/v1` view.
//!
//! Identity: every row gets a deterministic id derived from the app and the
//! legacy id (see [`xray_model::legacy_ids`]), so a re-sent request is stored once. The legacy
//! ids stay visible: the execution id *is* the snapshot's `executionId`,
//! the event's `trace_id` or the run's `id`.
//!
//! Bodies are capped at `receivers.otlp.max_message_bytes` (413 above).

pub mod events;
pub mod runs;
pub mod snapshot;
mod values;

use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::Transport;
use crate::receiver::{Ingest, IngestError};

pub use values::LegacyError;
pub use xray_model::legacy_ids as ids;

/// The routes of the three legacy services, for the OTLP/HTTP router.
pub(crate) fn router() -> Router<Ingest> {
    Router::new()
        .merge(snapshot::router())
        .merge(events::router())
        .merge(runs::router())
}

/// How a legacy service words an error body: `{"error": …}` (the Node
/// services) or `{"detail": …}` (the FastAPI service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorStyle {
    /// `{"error": "…"}`.
    Error,
    /// `{"detail": "…"}`.
    Detail,
}

/// A JSON error answer in `style`.
pub(crate) fn json_error(style: ErrorStyle, status: StatusCode, message: &str) -> Response {
    let body = match style {
        ErrorStyle::Error => serde_json::json!({ "error": message }),
        ErrorStyle::Detail => serde_json::json!({ "detail": message }),
    };
    (status, axum::Json(body)).into_response()
}

/// An authentication failure in `style`, with `Retry-After` when retrying
/// can succeed.
pub(crate) fn auth_error(style: ErrorStyle, e: &xray_auth::AuthError) -> Response {
    let mut r = json_error(style, e.http_status(), &e.to_string());
    r.headers_mut().extend(e.http_headers());
    r
}

/// Authenticates an ingest request (its `x-api-key` or bearer key), then
/// reads its body: the principal and the bytes, or the error response in
/// the service's style.
pub(crate) async fn authenticated_body(
    ingest: &Ingest,
    style: ErrorStyle,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<(xray_auth::Principal, Bytes), Response> {
    let principal = ingest
        .authenticate_headers(headers, Transport::LegacyJson, started)
        .await
        .map_err(|e| auth_error(style, &e))?;
    let bytes = read_body(ingest, style, headers, body, started).await?;
    Ok((principal, bytes))
}

/// Reads a request body up to the receiver's limit: 413 above it, 400 when
/// the connection fails.
pub(crate) async fn read_body(
    ingest: &Ingest,
    style: ErrorStyle,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Bytes, Response> {
    let limit = ingest.max_message_bytes;
    let too_large = || {
        crate::metrics::record_refused(Transport::LegacyJson, started.elapsed());
        json_error(
            style,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "request body exceeds the limit of {limit} bytes (receivers.otlp.max_message_bytes)"
            ),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) if is_length_limit(&e) => Err(too_large()),
        Err(e) => {
            crate::metrics::record_refused(Transport::LegacyJson, started.elapsed());
            Err(json_error(
                style,
                StatusCode::BAD_REQUEST,
                &format!("failed to read the request body: {e}"),
            ))
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

/// Queues `batch` like an OTLP export, with the same pushback: 429 with
/// `Retry-After` when the queue or spool is full, 503 with `Retry-After`
/// when the spool cannot be written or the collector stops.
pub(crate) async fn submit(
    ingest: &Ingest,
    style: ErrorStyle,
    batch: xray_model::MappedBatch,
    started: Instant,
) -> Result<(), Response> {
    let rows = batch.len() as u64;
    match ingest.submit(batch, Transport::LegacyJson, started).await {
        Ok(()) => {
            crate::metrics::record_request(Transport::LegacyJson, rows, 0, started.elapsed());
            Ok(())
        }
        Err(e @ IngestError::Busy { retry_after_secs }) => {
            let mut r = json_error(style, StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            Err(r)
        }
        Err(e @ (IngestError::ShuttingDown | IngestError::Unavailable(_))) => {
            let mut r = json_error(style, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(1));
            Err(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "legacy ingest failed");
            Err(json_error(
                style,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
    }
}

/// A 400/422 for a body the mapper refused.
pub(crate) fn refuse(
    style: ErrorStyle,
    status: StatusCode,
    e: &LegacyError,
    started: Instant,
) -> Response {
    crate::metrics::record_refused(Transport::LegacyJson, started.elapsed());
    json_error(style, status, &e.to_string())
}

/// Most stored executions one request looks up to merge with (distinct
/// ids beyond this are mapped without their stored state).
const MAX_PRIOR_LOOKUPS: usize = 64;

/// The stored executions (with steps) of `ids` in `app`, for the mappers
/// that patch what earlier requests stored. A failed lookup is logged and
/// treated as "nothing stored yet": the rows are still written, and the
/// row versions keep finished states ahead of running ones.
pub(crate) async fn prior_executions(
    ingest: &Ingest,
    app: &str,
    ids: Vec<String>,
) -> std::collections::HashMap<String, xray_store::ExecutionDetail> {
    let scope = xray_store::Scope::App(app.to_string());
    let store = ingest.auth.store();
    let mut out = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if seen.len() >= MAX_PRIOR_LOOKUPS {
            break;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        match store.get_execution(&scope, &id).await {
            // only an execution whose id is the legacy id (not one found by
            // a trace id that happens to look the same)
            Ok(Some(d)) if d.execution.execution_id == id => {
                out.insert(id, d);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, execution = %id, "stored state of a legacy execution could not be read");
            }
        }
    }
    out
}
