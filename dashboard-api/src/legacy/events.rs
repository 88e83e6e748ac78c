//! The event service's reads.
//!
//! - `GET /v1/events?trace_id=T` → `{"events": [event, …]}`, the trace's
//!   events by time; 400 without `trace_id`, 404 for a trace that does not
//!   exist (or belongs to another app).
//! - `GET /v1/events/{span_id}` → one event; 404 when none. Span ids are
//!   unique per trace only: when several traces hold the span id, the
//!   earliest is answered.
//! - `GET /v1/traces?limit=N` (default 50, at most 200) → `{"traces":
//!   [{"trace_id", "event_count", "first_timestamp", "last_timestamp",
//!   "services"}]}`, newest first.
//!
//! An event is rendered from a step by [`event_view`]: the fields the event
//! service took (`event_type`, `span_id`, `parent_span_id` as sent, model,
//! tokens, reasoning…) come back in the event shape, any extra field sent
//! comes back at the top level. Steps from other sources (SDK, OTel) render
//! too: `llm` steps as `llm_call`, `logic` as `decision`, others `custom`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xray_model::{Step, StepType};
use xray_store::ExecutionDetail;

use super::{ErrorStyle, EventErrorBody, LegacyError};
use crate::AppState;
use crate::handlers::RequestScope;
use crate::query::{format_time, ns_to_ms, parse_query};
use crate::view::render_json;
use crate::{ApiError, Scope};

const STYLE: ErrorStyle = ErrorStyle::Error;

/// Most traces `GET /v1/traces` answers.
pub const MAX_TRACES: u32 = 200;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_traces))
}

fn err(e: impl Into<ApiError>) -> LegacyError {
    LegacyError::new(STYLE, e)
}

/// The event-service name of a step type.
pub fn event_type(t: StepType) -> &'static str {
    match t {
        StepType::Llm => "llm_call",
        StepType::Logic => "decision",
        _ => "custom",
    }
}

/// The metadata keys the collector sets itself (not extra event fields).
fn is_internal(key: &str) -> bool {
    key.starts_with("event.") || key == "model.temperature" || key.starts_with("legacy.")
}

/// Renders one step of the execution `exec_span_id` / `trace` as an event.
pub fn event_view(step: &Step, trace: &str, exec_span_id: &str) -> Value {
    let m = &step.metadata;
    let meta = |k: &str| m.get(k).map(String::as_str);
    let parent = match meta("event.parent_span_id") {
        Some(p) => json!(p),
        None if step.parent_span_id.is_empty() || step.parent_span_id == exec_span_id => {
            Value::Null
        }
        None => json!(step.parent_span_id),
    };
    let mut reasoning = Map::new();
    reasoning.insert("summary".into(), json!(step.reasoning));
    reasoning.insert("confidence".into(), json!(step.confidence));
    let mut model = Map::new();
    model.insert("provider".into(), json!(step.provider));
    model.insert("name".into(), json!(step.model));
    model.insert("temperature".into(), render_json(meta("model.temperature")));
    let mut input = Map::new();
    input.insert("raw_prompt".into(), json!(step.input));
    input.insert("input_tokens".into(), json!(step.input_tokens));
    let mut output = Map::new();
    output.insert("response_text".into(), json!(step.output));
    output.insert("output_tokens".into(), json!(step.output_tokens));
    let mut event = Map::new();
    let mut extras = Map::new();
    for (k, v) in m {
        if is_internal(k) {
            continue;
        }
        let value = render_json(Some(v));
        match k.split_once('.') {
            Some(("reasoning", rest)) => drop(reasoning.insert(rest.into(), value)),
            Some(("model", rest)) => drop(model.insert(rest.into(), value)),
            Some(("input", rest)) => drop(input.insert(rest.into(), value)),
            Some(("output", rest)) => drop(output.insert(rest.into(), value)),
            _ => drop(extras.insert(k.clone(), value)),
        }
    }
    event.insert(
        "event_type".into(),
        json!(meta("event.event_type").unwrap_or(event_type(step.step_type))),
    );
    event.insert("trace_id".into(), json!(trace));
    event.insert(
        "span_id".into(),
        json!(meta("event.span_id").unwrap_or(&step.span_id)),
    );
    event.insert("parent_span_id".into(), parent);
    event.insert("timestamp".into(), json!(format_time(step.start_time_ns)));
    event.insert(
        "duration_ms".into(),
        json!(step.duration_ns().map(ns_to_ms)),
    );
    event.insert("service".into(), json!(step.service));
    event.insert("name".into(), json!(step.name));
    event.insert("reasoning".into(), Value::Object(reasoning));
    event.insert("model".into(), Value::Object(model));
    event.insert("input".into(), Value::Object(input));
    event.insert("output".into(), Value::Object(output));
    if let Some(e) = &step.error {
        event.insert("error".into(), json!(e));
    }
    for (k, v) in extras {
        event.entry(k).or_insert(v);
    }
    Value::Object(event)
}

/// The events of one execution, by time.
pub fn trace_events(detail: &ExecutionDetail) -> Vec<Value> {
    detail
        .steps
        .iter()
        .map(|s| event_view(s, &detail.execution.execution_id, &detail.execution.span_id))
        .collect()
}

/// One row of `GET /v1/traces`.
pub fn trace_summary(detail: &ExecutionDetail) -> Value {
    let e = &detail.execution;
    let services: BTreeSet<&str> = detail
        .steps
        .iter()
        .map(|s| s.service.as_str())
        .chain(std::iter::once(e.service.as_str()))
        .filter(|s| !s.is_empty())
        .collect();
    let first = detail
        .steps
        .iter()
        .map(|s| s.start_time_ns)
        .min()
        .unwrap_or(e.start_time_ns);
    let last = detail
        .steps
        .iter()
        .map(|s| s.end_time_ns.unwrap_or(s.start_time_ns))
        .max()
        .or(e.end_time_ns)
        .unwrap_or(e.start_time_ns);
    json!({
        "trace_id": e.execution_id,
        "event_count": detail.steps.len(),
        "first_timestamp": format_time(first),
        "last_timestamp": format_time(last),
        "services": services,
    })
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    trace_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "compat",
    params(("trace_id" = String, Query, description = "The trace (its legacy trace_id, the execution id)")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "{\"events\": [event, …]} by time", body = Object),
        (status = 400, description = "trace_id missing", body = EventErrorBody),
        (status = 404, description = "No such trace", body = EventErrorBody),
        (status = 401, description = "Missing or invalid API key", body = EventErrorBody),
        (status = 429, description = "The key is over its rate limit", body = EventErrorBody),
        (status = 503, description = "The store is unavailable", body = EventErrorBody),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LegacyError> {
    let q: EventsQuery = parse_query(raw.as_deref().unwrap_or("")).map_err(err)?;
    let trace = q
        .trace_id
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| err(ApiError::param("trace_id", "required: the trace to list")))?;
    let detail = state
        .store
        .get_execution(&scope, &trace)
        .await
        .map_err(err)?
        .ok_or_else(|| err(ApiError::NotFound(format!("trace \"{trace}\" not found"))))?;
    Ok(Json(json!({ "events": trace_events(&detail) })))
}

#[utoipa::path(
    get,
    path = "/v1/events/{span_id}",
    tag = "compat",
    params(("span_id" = String, Path, description = "The event's span_id as sent")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "One event", body = Object),
        (status = 404, description = "No such event", body = EventErrorBody),
        (status = 401, description = "Missing or invalid API key", body = EventErrorBody),
        (status = 429, description = "The key is over its rate limit", body = EventErrorBody),
        (status = 503, description = "The store is unavailable", body = EventErrorBody),
    )
)]
async fn get_event(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(span_id): Path<String>,
) -> Result<Json<Value>, LegacyError> {
    let not_found = || err(ApiError::NotFound(format!("event \"{span_id}\" not found")));
    let derived = xray_model::legacy_ids::event_span_id(&span_id);
    let steps = state
        .store
        .steps_by_span_id(&scope, &derived, 1)
        .await
        .map_err(err)?;
    let step = steps.into_iter().next().ok_or_else(not_found)?;
    // the execution gives the legacy trace id and the execution span
    let scope = Scope::App(step.app.clone());
    let detail = state
        .store
        .get_execution(&scope, &step.trace_id)
        .await
        .map_err(err)?;
    let (trace, exec_span) = match &detail {
        Some(d) => (
            d.execution.execution_id.clone(),
            d.execution.span_id.clone(),
        ),
        None if !step.execution_id.is_empty() => (step.execution_id.clone(), String::new()),
        None => (step.trace_id.clone(), String::new()),
    };
    Ok(Json(event_view(&step, &trace, &exec_span)))
}

#[utoipa::path(
    get,
    path = "/v1/traces",
    tag = "compat",
    params(("limit" = Option<u32>, Query, description = "1 to 200, default 50")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "{\"traces\": [{trace_id, event_count, first_timestamp, last_timestamp, services}]}", body = Object),
        (status = 400, description = "limit out of range", body = EventErrorBody),
        (status = 401, description = "Missing or invalid API key", body = EventErrorBody),
        (status = 429, description = "The key is over its rate limit", body = EventErrorBody),
        (status = 503, description = "The store is unavailable", body = EventErrorBody),
    )
)]
async fn list_traces(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LegacyError> {
    let items = super::newest_executions(&state, &scope, raw.as_deref(), 50, MAX_TRACES)
        .await
        .map_err(err)?;
    let mut traces = Vec::with_capacity(items.len());
    for item in items {
        let e = &item.execution;
        let scope = Scope::App(e.app.clone());
        if let Some(d) = state
            .store
            .get_execution(&scope, &e.execution_id)
            .await
            .map_err(err)?
        {
            traces.push(trace_summary(&d));
        }
    }
    Ok(Json(json!({ "traces": traces })))
}
