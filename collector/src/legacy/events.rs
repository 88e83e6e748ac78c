//! The event service's endpoints: `POST /v1/events` (one event) and
//! `POST /v1/events/batch` (`{"events": […]}`).
//!
//! An event:
//!
//! ```json
//! {"event_type": "llm_call", "trace_id": "t-1", "span_id": "s-1", "parent_span_id": null,
//!  "timestamp": "2024-05-01T12:00:00Z", "duration_ms": 420, "service": "ranker",
//!  "reasoning": {"summary": "…", "confidence": 0.8},
//!  "model": {"provider": "openai", "name": "gpt-4o", "temperature": 0.2},
//!  "input": {"raw_prompt": "…", "input_tokens": 812},
//!  "output": {"response_text": "…", "output_tokens": 64},
//!  "anything_else": "kept in metadata"}
//! ```
//!
//! Answers: `200 {"success": true, "span_id": "…"}` for one event,
//! `200 {"success": true, "count": N, "span_ids": […]}` for a batch;
//! `400 {"error": "…"}` for a body that is not such JSON (nothing of it is
//! stored); auth errors as `{"error": …}` (401, 429, 503).
//!
//! Mapping ([`map_events`]): each trace is an execution whose id is the
//! event's `trace_id` (pipeline `events`), each event a step of it whose
//! span id derives from `span_id` alone (kept as metadata
//! `event.span_id`), so `GET /v1/events/{span_id}` finds it without its
//! trace.
//! `event_type` `llm_call` → step type `llm`, `decision` → `logic`,
//! anything else → `custom` (the original is in `event.event_type`).
//! An event without `span_id` gets a new one, so re-sending it stores it
//! again; with `span_id` a re-sent event replaces itself.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value};
use xray_model::{Execution, MappedBatch, Metadata, Rejections, Status, Step, StepType};
use xray_store::ExecutionDetail;

use super::snapshot::version;
use super::values::{self, LegacyError, count, meta_text, number, payload, text};
use super::{ErrorStyle, ids};
use crate::mapper::IngestContext;
use crate::receiver::Ingest;

/// Tag hashed into the ids of event rows.
pub const SERVICE: &str = "events";

/// The pipeline name of event-service executions.
pub const PIPELINE: &str = "events";

/// Most events one batch request may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Fields of an event that map to step columns; every other field goes to
/// the step's metadata.
const KNOWN: [&str; 14] = [
    "name",
    "error",
    "cost",
    "event_type",
    "trace_id",
    "span_id",
    "parent_span_id",
    "timestamp",
    "duration_ms",
    "service",
    "reasoning",
    "model",
    "input",
    "output",
];

pub(crate) fn router() -> Router<Ingest> {
    Router::new()
        .route("/v1/events", post(post_one))
        .route("/v1/events/batch", post(post_batch))
}

/// What [`map_events`] made of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsOutcome {
    /// The rows: one execution per trace, one step per event.
    pub batch: MappedBatch,
    /// The `span_id` of each event as the service answers it (the given
    /// one, or the generated one), in request order.
    pub span_ids: Vec<String>,
    /// The legacy `trace_id` of each event, in request order.
    pub trace_ids: Vec<String>,
}

/// The events of a request body: one event object (`single`), or
/// `{"events": […]}`.
pub fn parse_events(body: &[u8], single: bool) -> Result<Vec<Value>, LegacyError> {
    let v: Value = values::parse_body(body)?;
    if single {
        if !v.is_object() {
            return Err(LegacyError::field(
                "body",
                format!("expected one event object, got {v}"),
            ));
        }
        return Ok(vec![v]);
    }
    values::events_envelope(v, MAX_BATCH_EVENTS, "batch")
}

/// The step type of an event type.
pub fn step_type(event_type: &str) -> StepType {
    match event_type {
        "llm_call" | "llm" => StepType::Llm,
        "decision" => StepType::Logic,
        other => other.parse().unwrap_or(StepType::Custom),
    }
}

fn generated_span_id(ctx: &IngestContext, index: usize, event: &Value) -> String {
    ids::span_id(&[
        &ctx.app,
        SERVICE,
        "generated",
        &ctx.ingest_time_ns.to_string(),
        &index.to_string(),
        &event.to_string(),
    ])
}

/// Maps events into steps and one execution per trace. `prior` holds the
/// stored executions of the traces involved (by legacy trace id), whose
/// time span the new one extends. Pure.
pub fn map_events(
    events: &[Value],
    ctx: &IngestContext,
    prior: &HashMap<String, ExecutionDetail>,
) -> Result<EventsOutcome, LegacyError> {
    let app = ctx.app.as_str();
    let version = version(ctx);
    let mut steps = Vec::with_capacity(events.len());
    let mut span_ids = Vec::with_capacity(events.len());
    let mut trace_ids = Vec::with_capacity(events.len());
    // legacy trace id -> (start, end, services, failed)
    let mut traces: BTreeMap<String, (i64, i64, String)> = BTreeMap::new();
    for (i, ev) in events.iter().enumerate() {
        let f = |name: &str| format!("events[{i}].{name}");
        let o: &Map<String, Value> = ev.as_object().ok_or_else(|| {
            LegacyError::field(format!("events[{i}]"), "expected an event object")
        })?;
        let trace = text(o.get("trace_id"))
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| LegacyError::field(f("trace_id"), "required: a non-empty string"))?;
        let event_type = text(o.get("event_type")).unwrap_or_else(|| "custom".into());
        let legacy_span = text(o.get("span_id")).filter(|s| !s.is_empty());
        let span_id = match &legacy_span {
            Some(s) => ids::event_span_id(s),
            None => generated_span_id(ctx, i, ev),
        };
        let exec_span = ids::span_id(&[app, SERVICE, &trace, "execution"]);
        let parent_span_id = match text(o.get("parent_span_id")).filter(|s| !s.is_empty()) {
            Some(p) => ids::event_span_id(&p),
            None => exec_span,
        };
        let start = values::time_text_or_secs(o.get("timestamp"), &f("timestamp"))?
            .unwrap_or(ctx.ingest_time_ns);
        let duration_ns = match o.get("duration_ms") {
            None | Some(Value::Null) => 0,
            Some(d) => number(Some(d))
                .filter(|d| *d >= 0.0)
                .and_then(values::ms_to_ns)
                .ok_or_else(|| {
                    LegacyError::field(f("duration_ms"), "expected a non-negative number")
                })?,
        };
        let end = start.saturating_add(duration_ns);
        let service = text(o.get("service")).unwrap_or_default();

        let sub = |k: &str, field: &str| o.get(k).and_then(|v| v.get(field));
        let mut metadata = Metadata::new();
        metadata.insert("event.event_type".into(), event_type.clone());
        let shown_span = legacy_span.clone().unwrap_or_else(|| span_id.clone());
        metadata.insert("event.span_id".into(), shown_span.clone());
        if let Some(p) = text(o.get("parent_span_id")).filter(|s| !s.is_empty()) {
            metadata.insert("event.parent_span_id".into(), p);
        }
        if let Some(t) = sub("model", "temperature").filter(|v| !v.is_null()) {
            metadata.insert("model.temperature".into(), meta_text(t));
        }
        for (k, v) in o {
            if !KNOWN.contains(&k.as_str()) && !v.is_null() {
                metadata.insert(k.clone(), meta_text(v));
            }
        }
        // other members of the known objects are kept too
        for (obj, known) in [
            ("reasoning", &["summary", "confidence"][..]),
            ("model", &["provider", "name", "temperature"][..]),
            ("input", &["raw_prompt", "input_tokens"][..]),
            ("output", &["response_text", "output_tokens"][..]),
        ] {
            match o.get(obj) {
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        if !known.contains(&k.as_str()) && !v.is_null() {
                            metadata.insert(format!("{obj}.{k}"), meta_text(v));
                        }
                    }
                }
                None | Some(Value::Null) => {}
                Some(other) => {
                    metadata.insert(obj.to_string(), meta_text(other));
                }
            }
        }
        let failed = matches!(
            text(o.get("status")).as_deref().map(values::status_word),
            Some(Some(Status::Failed))
        ) || o.get("error").is_some_and(|e| !e.is_null());
        let entry = traces
            .entry(trace.clone())
            .or_insert((start, end, service.clone()));
        entry.0 = entry.0.min(start);
        entry.1 = entry.1.max(end);
        steps.push(Step {
            app: app.to_string(),
            execution_id: trace.clone(),
            trace_id: ids::trace_id_of(app, SERVICE, &trace),
            span_id,
            parent_span_id,
            name: text(o.get("name"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| event_type.clone()),
            step_type: step_type(&event_type),
            status: if failed {
                Status::Failed
            } else {
                Status::Completed
            },
            service,
            start_time_ns: start,
            end_time_ns: Some(end),
            input: payload(sub("input", "raw_prompt")),
            output: payload(sub("output", "response_text")),
            reasoning: payload(sub("reasoning", "summary")),
            metadata,
            candidates_in: None,
            candidates_out: None,
            rejections: Rejections::new(),
            candidates: Vec::new(),
            model: text(sub("model", "name")),
            provider: text(sub("model", "provider")),
            input_tokens: count(sub("input", "input_tokens")),
            output_tokens: count(sub("output", "output_tokens")),
            cost: number(o.get("cost")),
            confidence: number(sub("reasoning", "confidence")),
            error: o.get("error").filter(|e| !e.is_null()).map(meta_text),
            version,
        });
        span_ids.push(shown_span);
        trace_ids.push(trace);
    }
    let executions = traces
        .into_iter()
        .map(|(trace, (start, end, service))| {
            let (start, end, service) = match prior.get(&trace).map(|d| &d.execution) {
                Some(p) => (
                    start.min(p.start_time_ns),
                    end.max(p.end_time_ns.unwrap_or(end)),
                    if p.service.is_empty() {
                        service
                    } else {
                        p.service.clone()
                    },
                ),
                None => (start, end, service),
            };
            let mut metadata = Metadata::new();
            metadata.insert("legacy.source".into(), SERVICE.into());
            Execution {
                app: app.to_string(),
                execution_id: trace.clone(),
                trace_id: ids::trace_id_of(app, SERVICE, &trace),
                span_id: ids::span_id(&[app, SERVICE, &trace, "execution"]),
                pipeline: PIPELINE.into(),
                environment: String::new(),
                service,
                status: Status::Completed,
                start_time_ns: start,
                end_time_ns: Some(end),
                input: None,
                output: None,
                error: None,
                tags: Vec::new(),
                metadata,
                step_count: 0,
                ingest_time_ns: ctx.ingest_time_ns,
                version,
            }
        })
        .collect();
    Ok(EventsOutcome {
        batch: MappedBatch { executions, steps },
        span_ids,
        trace_ids,
    })
}

async fn post_one(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    handle(ingest, headers, body, true).await
}

async fn post_batch(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    handle(ingest, headers, body, false).await
}

async fn handle(ingest: Ingest, headers: HeaderMap, body: Body, single: bool) -> Response {
    let started = Instant::now();
    let style = ErrorStyle::Error;
    let (principal, bytes) =
        match super::authenticated_body(&ingest, style, &headers, body, started).await {
            Ok(pb) => pb,
            Err(r) => return r,
        };
    let events = match parse_events(&bytes, single) {
        Ok(e) => e,
        Err(e) => return super::refuse(style, StatusCode::BAD_REQUEST, &e, started),
    };
    let app = principal.ingest_app().to_string();
    let legacy_traces: Vec<String> = events
        .iter()
        .filter_map(|e| text(e.get("trace_id")))
        .collect();
    let prior = super::prior_executions(&ingest, &app, legacy_traces).await;
    let ctx = IngestContext::new(app, crate::receiver::now_ns());
    let outcome = match map_events(&events, &ctx, &prior) {
        Ok(o) => o,
        Err(e) => return super::refuse(style, StatusCode::BAD_REQUEST, &e, started),
    };
    if let Err(r) = super::submit(&ingest, style, outcome.batch, started).await {
        return r;
    }
    let body = if single {
        serde_json::json!({
            "success": true,
            "span_id": outcome.span_ids.first(),
            "trace_id": outcome.trace_ids.first(),
        })
    } else {
        serde_json::json!({
            "success": true,
            "count": outcome.span_ids.len(),
            "span_ids": outcome.span_ids,
        })
    };
    axum::Json(body).into_response()
}
