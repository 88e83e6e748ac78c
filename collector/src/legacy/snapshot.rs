//! The snapshot service's endpoints: `POST /executions` (one whole
//! execution with its steps) and `POST /apps` (create an app, admin token).
//!
//! `POST /executions`, key in `x-api-key` (or `authorization: Bearer …`):
//!
//! ```json
//! {"executionId": "e-1", "appId": "shop", "pipeline": "ranking", "environment": "prod",
//!  "status": "completed",
//!  "steps": [{"name": "filter", "timestamp": 1714564800000, "input": …, "output": …,
//!             "status": "completed", "reasoning": "…", "metadata": {…}}],
//!  "timestamps": {"start": 1714564800000, "end": 1714564801000}}
//! ```
//!
//! → `200 {"success": true}`. Missing key → `401 {"error":"Missing API
//! key"}`, unknown or revoked key → `401 {"error":"Invalid API key"}`, a body
//! that is not such JSON → `400 {"error": "…"}`. Without `steps` the
//! execution has no steps.
//!
//! Mapping ([`map_snapshot`]): the execution id is `executionId`; the trace
//! and span ids derive from the app and that id, each step's span id from
//! its position, so sending the same snapshot again replaces it (stored
//! once). A step's `timestamp` (unix ms) is its start and its end. Step
//! inputs and outputs that are JSON arrays count as candidates in and out.
//! The app is the key's; a differing `appId` is kept in metadata as
//! `legacy.app_id`.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value};
use xray_model::{Execution, MappedBatch, Metadata, Rejections, Status, Step, StepType};

use super::values::{
    self, LegacyError, count, flatten_metadata, payload, status_word, text, time_ms_or_text,
};
use super::{ErrorStyle, ids};
use crate::mapper::{EXPLICIT_EXECUTION_VERSION_BIT, IngestContext};
use crate::metrics::Transport;
use crate::receiver::Ingest;

/// Tag hashed into the ids of snapshot rows.
const SERVICE: &str = "snapshot";

pub(crate) fn router() -> Router<Ingest> {
    Router::new()
        .route("/executions", post(post_execution))
        .route("/apps", post(post_app))
}

/// The row version of a request at `ctx`: its arrival time, marked explicit
/// (a legacy execution always wins over an implicit one of the same id).
pub(crate) fn version(ctx: &IngestContext) -> u64 {
    (u64::try_from(ctx.ingest_time_ns).unwrap_or(0) & (EXPLICIT_EXECUTION_VERSION_BIT - 1))
        | EXPLICIT_EXECUTION_VERSION_BIT
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, LegacyError> {
    v.as_object()
        .ok_or_else(|| LegacyError::field(field, format!("expected a JSON object, got {v}")))
}

/// Maps a `POST /executions` body into one execution and its steps. Pure:
/// the same body and context give the same rows.
pub fn map_snapshot(body: &[u8], ctx: &IngestContext) -> Result<MappedBatch, LegacyError> {
    let v: Value = values::parse_body(body)?;
    let root = object(&v, "body")?;
    let id = text(root.get("executionId"))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| LegacyError::field("executionId", "required: a non-empty string"))?;
    let app = ctx.app.as_str();
    let trace_id = ids::trace_id(&[app, SERVICE, &id]);
    let span_id = ids::span_id(&[app, SERVICE, &id, "execution"]);
    let version = version(ctx);

    let steps_v: &[Value] = match root.get("steps") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(LegacyError::field(
                "steps",
                format!("expected an array, got {other}"),
            ));
        }
    };
    let ts = match root.get("timestamps") {
        None | Some(Value::Null) => None,
        Some(t) => Some(object(t, "timestamps")?),
    };
    let start = time_ms_or_text(ts.and_then(|t| t.get("start")), "timestamps.start")?;
    let end = time_ms_or_text(ts.and_then(|t| t.get("end")), "timestamps.end")?;

    let mut steps = Vec::with_capacity(steps_v.len());
    for (i, s) in steps_v.iter().enumerate() {
        let field = format!("steps[{i}]");
        let o = object(s, &field)?;
        let at = time_ms_or_text(o.get("timestamp"), &format!("{field}.timestamp"))?;
        steps.push((o, at));
    }
    let first_step = steps.iter().filter_map(|(_, t)| *t).min();
    let last_step = steps.iter().filter_map(|(_, t)| *t).max();

    let mut metadata = Metadata::new();
    metadata.insert("legacy.source".into(), SERVICE.into());
    flatten_metadata(root.get("metadata"), "", &mut metadata);
    if let Some(a) = text(root.get("appId"))
        && a != app
    {
        metadata.insert("legacy.app_id".into(), a);
    }
    let raw_status = text(root.get("status"));
    let status = match raw_status.as_deref().map(status_word) {
        Some(Some(s)) => s,
        Some(None) => {
            metadata.insert(
                "legacy.status".into(),
                raw_status.clone().unwrap_or_default(),
            );
            Status::Completed
        }
        None if end.is_some() => Status::Completed,
        None => Status::Running,
    };
    let start_ns = start.or(first_step).unwrap_or(ctx.ingest_time_ns);
    let end_ns = match (end, status) {
        (Some(e), _) => Some(e.max(start_ns)),
        (None, Status::Running) => None,
        (None, _) => Some(last_step.unwrap_or(start_ns).max(start_ns)),
    };
    let environment = text(root.get("environment")).unwrap_or_default();
    let service = text(root.get("service")).unwrap_or_default();

    let execution = Execution {
        app: app.to_string(),
        execution_id: id.clone(),
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        pipeline: text(root.get("pipeline"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "unnamed".into()),
        environment,
        service: service.clone(),
        status,
        start_time_ns: start_ns,
        end_time_ns: end_ns,
        input: payload(root.get("input")),
        output: payload(root.get("output")),
        error: text(root.get("error")),
        tags: tags(root.get("tags")),
        metadata,
        step_count: u32::try_from(steps.len()).unwrap_or(u32::MAX),
        ingest_time_ns: ctx.ingest_time_ns,
        version,
    };

    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, (o, at))| {
            let at = at.unwrap_or(start_ns);
            let mut metadata = Metadata::new();
            flatten_metadata(o.get("metadata"), "", &mut metadata);
            let step_type = text(o.get("type"))
                .or_else(|| text(o.get("metadata").and_then(|m| m.get("type"))))
                .and_then(|t| t.parse::<StepType>().ok())
                .unwrap_or(StepType::Custom);
            let raw = text(o.get("status"));
            let status = match raw.as_deref().map(status_word) {
                Some(Some(s)) => s,
                Some(None) => {
                    metadata.insert("legacy.status".into(), raw.clone().unwrap_or_default());
                    Status::Completed
                }
                None => Status::Completed,
            };
            let (candidates_in, candidates_out) = candidate_counts(o.get("input"), o.get("output"));
            Step {
                app: app.to_string(),
                execution_id: id.clone(),
                trace_id: trace_id.clone(),
                span_id: ids::span_id(&[app, SERVICE, &id, &i.to_string()]),
                parent_span_id: span_id.clone(),
                name: text(o.get("name"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("step-{}", i + 1)),
                step_type,
                status,
                service: service.clone(),
                start_time_ns: at,
                end_time_ns: Some(at),
                input: payload(o.get("input")),
                output: payload(o.get("output")),
                reasoning: payload(o.get("reasoning")),
                metadata,
                candidates_in,
                candidates_out,
                rejections: Rejections::new(),
                candidates: Vec::new(),
                model: None,
                provider: None,
                input_tokens: None,
                output_tokens: None,
                cost: values::number(o.get("cost")),
                confidence: values::number(o.get("confidence")),
                error: text(o.get("error")),
                version,
            }
        })
        .collect();
    Ok(MappedBatch {
        executions: vec![execution],
        steps,
    })
}

/// Tags from an array of strings (other entries are skipped).
pub(crate) fn tags(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|t| text(Some(t))).collect(),
        _ => Vec::new(),
    }
}

/// Keys of an object payload that hold the candidate list, in order of
/// preference.
const LIST_KEYS: [&str; 7] = [
    "candidates",
    "kept",
    "accepted",
    "selected",
    "passed",
    "results",
    "items",
];

/// Candidate counts of a step whose input / output are JSON arrays, or
/// objects holding the list under one of `candidates`, `kept`, `accepted`,
/// `selected`, `passed`, `results`, `items` (else their only array);
/// explicit `candidates_in` / `candidates_out` numbers win.
pub(crate) fn candidate_counts(
    input: Option<&Value>,
    output: Option<&Value>,
) -> (Option<u64>, Option<u64>) {
    fn len(v: Option<&Value>) -> Option<u64> {
        match v? {
            Value::Array(a) => Some(a.len() as u64),
            Value::Object(o) => {
                if let Some(a) = LIST_KEYS
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_array))
                {
                    return Some(a.len() as u64);
                }
                let mut arrays = o.values().filter_map(|v| v.as_array());
                match (arrays.next(), arrays.next()) {
                    (Some(a), None) => Some(a.len() as u64),
                    _ => None,
                }
            }
            _ => None,
        }
    }
    let explicit = |v: Option<&Value>, k: &str| count(v.and_then(|v| v.get(k)));
    (
        explicit(input, "candidates_in").or_else(|| len(input)),
        explicit(output, "candidates_out").or_else(|| len(output)),
    )
}

async fn post_execution(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let style = ErrorStyle::Error;
    let (principal, bytes) =
        match super::authenticated_body(&ingest, style, &headers, body, started).await {
            Ok(pb) => pb,
            Err(r) => return r,
        };
    let ctx = IngestContext::new(principal.ingest_app(), crate::receiver::now_ns());
    let batch = match map_snapshot(&bytes, &ctx) {
        Ok(b) => b,
        Err(e) => return super::refuse(style, StatusCode::BAD_REQUEST, &e, started),
    };
    match super::submit(&ingest, style, batch, started).await {
        Ok(()) => axum::Json(serde_json::json!({ "success": true })).into_response(),
        Err(r) => r,
    }
}

/// `POST /apps` `{"userId", "name"}` with the admin token → the new app
/// and its first key, shown once.
async fn post_app(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let style = ErrorStyle::Error;
    let principal = match ingest
        .authenticate_headers(&headers, Transport::LegacyJson, started)
        .await
    {
        Ok(p) => p,
        Err(e) => return super::auth_error(style, &e),
    };
    if !principal.is_admin() {
        let (status, message) = if matches!(principal, xray_auth::Principal::Anonymous) {
            (StatusCode::UNAUTHORIZED, "Missing API key")
        } else {
            (
                StatusCode::FORBIDDEN,
                "creating apps needs the admin token (auth.admin_token)",
            )
        };
        return super::json_error(style, status, message);
    }
    let bytes = match super::read_body(&ingest, style, &headers, body, started).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (user_id, name) = match parse_app_request(&bytes) {
        Ok(r) => r,
        Err(e) => return super::json_error(style, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match xray_auth::create_app_with_key(ingest.auth.store().as_ref(), &name).await {
        Ok((app, _, key)) => (
            StatusCode::CREATED,
            axum::Json(app_response(&app, user_id.as_deref(), &key)),
        )
            .into_response(),
        Err(xray_auth::ManageError::InvalidName(m)) => {
            super::json_error(style, StatusCode::BAD_REQUEST, &format!("name: {m}"))
        }
        Err(e) => {
            tracing::error!(error = %e, "legacy app creation failed");
            super::json_error(
                style,
                StatusCode::SERVICE_UNAVAILABLE,
                "the app could not be created; retry later",
            )
        }
    }
}

/// Parses `{"userId", "name"}`: `name` is required, `userId` optional.
pub fn parse_app_request(body: &[u8]) -> Result<(Option<String>, String), LegacyError> {
    let v: Value = values::parse_body(body)?;
    let o = object(&v, "body")?;
    let name = text(o.get("name"))
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| LegacyError::field("name", "required: a non-empty string"))?;
    Ok((text(o.get("userId")), name))
}

/// `{"id", "user_id", "name", "api_key", "created_at"}` (RFC 3339, UTC).
pub fn app_response(app: &xray_model::App, user_id: Option<&str>, key: &str) -> Value {
    let created = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(app.created_at_ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    serde_json::json!({
        "id": app.id,
        "user_id": user_id,
        "name": app.name,
        "api_key": key,
        "created_at": created,
    })
}
