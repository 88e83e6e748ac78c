//! The run service's reads.
//!
//! - `GET /runs?limit=N` (default 50, at most 500) → `[run, …]`, newest
//!   first.
//! - `GET /runs/{id}` → one run; `GET /runs/{id}/steps` → `[step, …]` by
//!   start time; `GET /analyze/{run_id}` → its funnel. 404 `{"detail": "Run
//!   not found"}` for an id that does not exist or belongs to another app.
//!
//! A run is an execution: `{"id", "name" (the pipeline), "status"
//! (`RUNNING`, `COMPLETED`, `FAILED`), "total_cost", "tags", "started_at",
//! "completed_at", "error", "metadata"}`; a step `{"id", "run_id", "name",
//! "type", "status", "inputs", "outputs", "metadata", "reasoning", "cost",
//! "started_at", "completed_at", "error"}`. Times are RFC 3339 UTC.
//! `total_cost` is what `run_complete` reported, else the sum of the step
//! costs (null when nothing reported a cost).
//!
//! The analysis ([`analyze`]): per step in timeline order its input and
//! output counts (`candidates_in` / `candidates_out`), `dropped` and
//! `drop_rate`, its rejection reasons; over the run the rejection
//! histogram (reason → count, summed over the steps), the overall counts
//! and drop rate, and the final output (the run's output, else the outputs
//! of the last step that has some).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xray_model::{Execution, Status, Step};
use xray_store::ExecutionDetail;

use super::{ErrorStyle, LegacyError, RunErrorBody};
use crate::ApiError;
use crate::AppState;
use crate::funnel::execution_funnel;
use crate::handlers::RequestScope;
use crate::query::format_time;
use crate::view::render_json;

const STYLE: ErrorStyle = ErrorStyle::Detail;

/// Most runs `GET /runs` answers.
pub const MAX_RUNS: u32 = 500;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(get_steps))
        .routes(routes!(analyze_run))
}

fn err(e: impl Into<ApiError>) -> LegacyError {
    LegacyError::new(STYLE, e)
}

/// The run service's spelling of a status.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Running => "RUNNING",
        Status::Completed => "COMPLETED",
        Status::Failed => "FAILED",
        Status::Skipped => "SKIPPED",
    }
}

fn metadata_view(m: &BTreeMap<String, String>, skip: &[&str]) -> Value {
    let out: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()) && !k.starts_with("legacy."))
        .map(|(k, v)| (k.clone(), render_json(Some(v))))
        .collect();
    Value::Object(out)
}

/// A run from an execution; `steps` (when known) give the total cost when
/// the run did not report one.
pub fn run_view(e: &Execution, steps: Option<&[Step]>) -> Value {
    let reported = e
        .metadata
        .get("run.total_cost")
        .and_then(|c| c.parse::<f64>().ok());
    let summed = steps.and_then(|s| {
        let costs: Vec<f64> = s.iter().filter_map(|s| s.cost).collect();
        (!costs.is_empty()).then(|| costs.iter().sum::<f64>())
    });
    json!({
        "id": e.execution_id,
        "name": e.pipeline,
        "status": status_word(e.status),
        "total_cost": reported.or(summed),
        "tags": e.tags,
        "started_at": format_time(e.start_time_ns),
        "completed_at": e.end_time_ns.map(format_time),
        "error": e.error,
        "input": render_json(e.input.as_deref()),
        "output": render_json(e.output.as_deref()),
        "metadata": metadata_view(&e.metadata, &["run.total_cost"]),
    })
}

/// A step of run `run_id`.
pub fn step_view(s: &Step, run_id: &str) -> Value {
    let id = s.metadata.get("run.step_id").unwrap_or(&s.span_id);
    let step_type = s
        .metadata
        .get("run.step_type")
        .map(String::as_str)
        .unwrap_or(s.step_type.as_str());
    json!({
        "id": id,
        "run_id": run_id,
        "name": s.name,
        "type": step_type,
        "status": status_word(s.status),
        "inputs": render_json(s.input.as_deref()),
        "outputs": render_json(s.output.as_deref()),
        "metadata": metadata_view(&s.metadata, &["run.step_id", "run.step_type"]),
        "reasoning": s.reasoning,
        "cost": s.cost,
        "started_at": format_time(s.start_time_ns),
        "completed_at": s.end_time_ns.map(format_time),
        "error": s.error,
    })
}

/// The funnel of a run (see the module docs).
pub fn analyze(detail: &ExecutionDetail) -> Value {
    let f = execution_funnel(detail);
    let by_span: BTreeMap<&str, &Step> = detail
        .steps
        .iter()
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let mut histogram: BTreeMap<String, u64> = BTreeMap::new();
    let mut steps = Vec::with_capacity(f.steps.len());
    for fs in &f.steps {
        let step = by_span.get(fs.id.as_str());
        let rejections: Map<String, Value> = fs
            .rejections
            .iter()
            .map(|r| {
                *histogram.entry(r.reason.clone()).or_insert(0) += r.count;
                (r.reason.clone(), json!(r.count))
            })
            .collect();
        steps.push(json!({
            "step_id": step.and_then(|s| s.metadata.get("run.step_id")).unwrap_or(&fs.id),
            "name": fs.name,
            "type": step
                .and_then(|s| s.metadata.get("run.step_type"))
                .map(String::as_str)
                .unwrap_or(fs.step_type.as_str()),
            "status": status_word(fs.status),
            "input_count": fs.candidates_in,
            "output_count": fs.candidates_out,
            "dropped": fs.dropped,
            "drop_rate": fs.drop_rate,
            "rejections": rejections,
        }));
    }
    let final_output = match detail.execution.output.as_deref() {
        Some(o) => render_json(Some(o)),
        None => detail
            .steps
            .iter()
            .rev()
            .find_map(|s| s.output.as_deref())
            .map(|o| render_json(Some(o)))
            .unwrap_or(Value::Null),
    };
    json!({
        "run_id": detail.execution.execution_id,
        "name": detail.execution.pipeline,
        "status": status_word(detail.execution.status),
        "total_input": f.candidates_in,
        "total_output": f.candidates_out,
        "dropped": f.dropped,
        "drop_rate": f.drop_rate,
        "steps": steps,
        "rejection_histogram": histogram,
        "final_output": final_output,
    })
}

#[utoipa::path(
    get,
    path = "/runs",
    tag = "compat",
    params(("limit" = Option<u32>, Query, description = "1 to 500, default 50")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "[run, …] newest first", body = Object),
        (status = 400, description = "limit out of range", body = RunErrorBody),
        (status = 401, description = "Missing or invalid API key", body = RunErrorBody),
        (status = 429, description = "The key is over its rate limit", body = RunErrorBody),
        (status = 503, description = "The store is unavailable", body = RunErrorBody),
    )
)]
async fn list_runs(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LegacyError> {
    let items = super::newest_executions(&state, &scope, raw.as_deref(), 50, MAX_RUNS)
        .await
        .map_err(err)?;
    Ok(Json(Value::Array(
        items.iter().map(|i| run_view(&i.execution, None)).collect(),
    )))
}

async fn load(
    state: &AppState,
    scope: &xray_store::Scope,
    id: &str,
) -> Result<ExecutionDetail, LegacyError> {
    state
        .store
        .get_execution(scope, id)
        .await
        .map_err(err)?
        .ok_or_else(|| err(ApiError::NotFound("Run not found".into())))
}

#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "compat",
    params(("id" = String, Path, description = "Run id (the execution id)")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "The run", body = Object),
        (status = 404, description = "Run not found", body = RunErrorBody),
        (status = 401, description = "Missing or invalid API key", body = RunErrorBody),
        (status = 429, description = "The key is over its rate limit", body = RunErrorBody),
        (status = 503, description = "The store is unavailable", body = RunErrorBody),
    )
)]
async fn get_run(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, LegacyError> {
    let d = load(&state, &scope, &id).await?;
    Ok(Json(run_view(&d.execution, Some(&d.steps))))
}

#[utoipa::path(
    get,
    path = "/runs/{id}/steps",
    tag = "compat",
    params(("id" = String, Path, description = "Run id (the execution id)")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "[step, …] by start time", body = Object),
        (status = 404, description = "Run not found", body = RunErrorBody),
        (status = 401, description = "Missing or invalid API key", body = RunErrorBody),
        (status = 429, description = "The key is over its rate limit", body = RunErrorBody),
        (status = 503, description = "The store is unavailable", body = RunErrorBody),
    )
)]
async fn get_steps(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, LegacyError> {
    let d = load(&state, &scope, &id).await?;
    Ok(Json(Value::Array(
        d.steps
            .iter()
            .map(|s| step_view(s, &d.execution.execution_id))
            .collect(),
    )))
}

#[utoipa::path(
    get,
    path = "/analyze/{run_id}",
    tag = "compat",
    params(("run_id" = String, Path, description = "Run id (the execution id)")),
    security(("bearer" = []), ("api_key" = []), ()),
    responses(
        (status = 200, description = "The run's funnel", body = Object),
        (status = 404, description = "Run not found", body = RunErrorBody),
        (status = 401, description = "Missing or invalid API key", body = RunErrorBody),
        (status = 429, description = "The key is over its rate limit", body = RunErrorBody),
        (status = 503, description = "The store is unavailable", body = RunErrorBody),
    )
)]
async fn analyze_run(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, LegacyError> {
    let d = load(&state, &scope, &run_id).await?;
    Ok(Json(analyze(&d)))
}
