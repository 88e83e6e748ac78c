//! The HTTP handlers. Each one parses its parameters (a 400 naming the bad
//! one), asks the [`Store`](xray_store::Store) within the caller's
//! [`Scope`], and shapes the answer with the pure functions of
//! [`view`](crate::view), [`funnel`](crate::funnel) and [`diff`](crate::diff).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use xray_model::{DEFAULT_APP, Status};
use xray_store::{ExecutionDetail, ExecutionFilter, PageRequest, Scope, TimeWindow};

use crate::AppState;
use crate::diff::{ExecutionDiff, diff_executions};
use crate::error::{ApiError, ErrorBody};
use crate::funnel::{ExecutionFunnel, PipelineFunnel, PipelineFunnelStep, execution_funnel};
use crate::query::{
    ApiQuery, decode_cursor, encode_cursor, format_time, ns_to_ms, parse_limit, parse_time,
    parse_u64,
};
use crate::view::{ExecutionDetailView, ExecutionListItem, StepList, execution_detail, flat_steps};

/// Default page size of `GET /executions`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of `GET /executions`.
pub const MAX_LIMIT: u32 = 1000;
/// Default window of the pipeline endpoints: the last 24 hours.
pub const DEFAULT_WINDOW_NS: i64 = 24 * 3600 * 1_000_000_000;

/// The caller's read scope.
///
/// Taken from the request extensions, where an authentication layer puts a
/// [`Scope`] once auth lands; without one (auth off) it is
/// `Scope::App("default")`.
#[derive(Debug, Clone)]
pub struct RequestScope(pub Scope);

impl<S: Send + Sync> FromRequestParts<S> for RequestScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestScope(
            parts
                .extensions
                .get::<Scope>()
                .cloned()
                .unwrap_or_else(|| Scope::App(DEFAULT_APP.to_string())),
        ))
    }
}

/// Endpoints that take no query parameter still reject unknown ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Query parameters of `GET /executions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Exact pipeline name.
    pub pipeline: Option<String>,
    /// `running`, `completed` or `failed`.
    pub status: Option<String>,
    /// Exact environment.
    pub environment: Option<String>,
    /// Exact service name.
    pub service: Option<String>,
    /// Started at or after: RFC 3339 or unix milliseconds.
    pub from: Option<String>,
    /// Started before: RFC 3339 or unix milliseconds.
    pub to: Option<String>,
    /// Case-sensitive substring of the execution id, trace id or a tag.
    pub q: Option<String>,
    /// Lasted at least this many milliseconds (running executions never match).
    pub min_duration_ms: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query parameters of the pipeline endpoints.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// Window start (inclusive): RFC 3339 or unix milliseconds; default `to` minus 24 hours.
    pub from: Option<String>,
    /// Window end (exclusive): RFC 3339 or unix milliseconds; default now.
    pub to: Option<String>,
}

fn now_ns() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn non_empty(param: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.is_empty() => Err(ApiError::param(param, "must not be empty")),
        other => Ok(other),
    }
}

/// Turns list parameters into a store filter and page.
pub fn list_request(p: ListParams) -> Result<(ExecutionFilter, PageRequest), ApiError> {
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<Status>()
                .map_err(|e| ApiError::param("status", e.to_string()))?,
        ),
    };
    let from_ns = p
        .from
        .as_deref()
        .map(|v| parse_time("from", v))
        .transpose()?;
    let to_ns = p.to.as_deref().map(|v| parse_time("to", v)).transpose()?;
    if let (Some(f), Some(t)) = (from_ns, to_ns)
        && f >= t
    {
        return Err(ApiError::param("from", "must be earlier than to"));
    }
    let min_duration_ns = match p.min_duration_ms.as_deref() {
        None => None,
        Some(v) => Some(
            i64::try_from(parse_u64("min_duration_ms", v)?)
                .ok()
                .and_then(|ms| ms.checked_mul(1_000_000))
                .ok_or_else(|| ApiError::param("min_duration_ms", "too large"))?,
        ),
    };
    let filter = ExecutionFilter {
        pipeline: non_empty("pipeline", p.pipeline)?,
        status,
        environment: p.environment,
        service: p.service,
        from_ns,
        to_ns,
        q: non_empty("q", p.q)?,
        min_duration_ns,
    };
    let page = PageRequest {
        limit: parse_limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    Ok((filter, page))
}

/// Resolves a window: defaults to the 24 hours before `to` (default now).
pub fn window(p: &WindowParams, now_ns: i64) -> Result<TimeWindow, ApiError> {
    let to_ns =
        p.to.as_deref()
            .map(|v| parse_time("to", v))
            .transpose()?
            .unwrap_or(now_ns);
    let from_ns = match p.from.as_deref() {
        Some(v) => parse_time("from", v)?,
        None => to_ns.saturating_sub(DEFAULT_WINDOW_NS),
    };
    if from_ns >= to_ns {
        return Err(ApiError::param("from", "must be earlier than to"));
    }
    Ok(TimeWindow { from_ns, to_ns })
}

/// A page of executions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionPageView {
    /// Executions, newest first.
    pub items: Vec<ExecutionListItem>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One pipeline of `GET /pipelines`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineView {
    /// Pipeline name.
    pub pipeline: String,
    /// Executions started in the window.
    pub executions: u64,
    /// Of those, how many failed.
    pub failed: u64,
    /// `failed / executions`.
    pub failure_rate: f64,
    /// Median duration of finished executions, ms.
    pub p50_duration_ms: Option<f64>,
    /// 95th percentile duration, ms.
    pub p95_duration_ms: Option<f64>,
    /// 99th percentile duration, ms.
    pub p99_duration_ms: Option<f64>,
    /// Start time of the newest execution, RFC 3339.
    pub last_seen: String,
}

/// `GET /pipelines`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineList {
    /// Window start (inclusive), RFC 3339.
    pub from: String,
    /// Window end (exclusive), RFC 3339.
    pub to: String,
    /// Pipelines with executions in the window, by name.
    pub pipelines: Vec<PipelineView>,
}

async fn load(state: &AppState, scope: &Scope, id: &str) -> Result<ExecutionDetail, ApiError> {
    state
        .store
        .get_execution(scope, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("execution \"{id}\" not found")))
}

/// List executions, newest first, with filters and cursor pagination.
#[utoipa::path(
    get,
    path = "/api/v1/executions",
    tag = "executions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionPageView),
        (status = 400, description = "A parameter is invalid or unknown", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list_executions(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ExecutionPageView>, ApiError> {
    let (filter, page) = list_request(params)?;
    let result = state.store.list_executions(&scope, &filter, &page).await?;
    Ok(Json(ExecutionPageView {
        items: result.items.iter().map(ExecutionListItem::from).collect(),
        next_cursor: result.next.as_ref().map(encode_cursor),
    }))
}

/// One execution with its steps as a timeline tree.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id, or the 32-hex trace id")),
    responses(
        (status = 200, description = "The execution and its step tree", body = ExecutionDetailView),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    )
)]
pub async fn get_execution(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(id): Path<String>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<ExecutionDetailView>, ApiError> {
    let detail = load(&state, &scope, &id).await?;
    Ok(Json(execution_detail(&detail)))
}

/// The steps of one execution, flat, in timeline order.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/steps",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id, or the 32-hex trace id")),
    responses(
        (status = 200, description = "The steps", body = StepList),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    )
)]
pub async fn get_steps(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(id): Path<String>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<StepList>, ApiError> {
    let detail = load(&state, &scope, &id).await?;
    Ok(Json(StepList {
        execution_id: detail.execution.execution_id.clone(),
        steps: flat_steps(&detail),
    }))
}

/// The candidate funnel of one execution.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/funnel",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id, or the 32-hex trace id")),
    responses(
        (status = 200, description = "Per step counts, drops and rejection reasons", body = ExecutionFunnel),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    )
)]
pub async fn get_execution_funnel(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(id): Path<String>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<ExecutionFunnel>, ApiError> {
    let detail = load(&state, &scope, &id).await?;
    Ok(Json(execution_funnel(&detail)))
}

/// Two runs of the same pipeline, side by side.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{a}/diff/{b}",
    tag = "executions",
    params(
        ("a" = String, Path, description = "Execution id or trace id of run a"),
        ("b" = String, Path, description = "Execution id or trace id of run b"),
    ),
    responses(
        (status = 200, description = "What changed between the runs", body = ExecutionDiff),
        (status = 400, description = "The runs belong to different pipelines", body = ErrorBody),
        (status = 404, description = "Either run does not exist", body = ErrorBody),
    )
)]
pub async fn diff(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path((a, b)): Path<(String, String)>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<ExecutionDiff>, ApiError> {
    let da = load(&state, &scope, &a).await?;
    let db = load(&state, &scope, &b).await?;
    Ok(Json(diff_executions(&da, &db)?))
}

/// Per-pipeline figures over a window.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines",
    tag = "pipelines",
    params(WindowParams),
    responses(
        (status = 200, description = "Pipelines with executions in the window", body = PipelineList),
        (status = 400, description = "A parameter is invalid or unknown", body = ErrorBody),
    )
)]
pub async fn list_pipelines(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    ApiQuery(params): ApiQuery<WindowParams>,
) -> Result<Json<PipelineList>, ApiError> {
    let w = window(&params, now_ns())?;
    let rows = state.store.pipelines(&scope, w).await?;
    Ok(Json(PipelineList {
        from: format_time(w.from_ns),
        to: format_time(w.to_ns),
        pipelines: rows
            .into_iter()
            .map(|p| PipelineView {
                failure_rate: if p.executions > 0 {
                    p.failed as f64 / p.executions as f64
                } else {
                    0.0
                },
                pipeline: p.pipeline,
                executions: p.executions,
                failed: p.failed,
                p50_duration_ms: p.p50_duration_ns.map(ns_to_ms),
                p95_duration_ms: p.p95_duration_ns.map(ns_to_ms),
                p99_duration_ms: p.p99_duration_ns.map(ns_to_ms),
                last_seen: format_time(p.last_seen_ns),
            })
            .collect(),
    }))
}

/// The funnel of one pipeline, aggregated per step name over a window.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines/{name}/funnel",
    tag = "pipelines",
    params(("name" = String, Path, description = "Pipeline name"), WindowParams),
    responses(
        (status = 200, description = "Per step aggregates, ordered by mean start offset; empty when the pipeline has no executions in the window", body = PipelineFunnel),
        (status = 400, description = "A parameter is invalid or unknown", body = ErrorBody),
    )
)]
pub async fn pipeline_funnel(
    State(state): State<AppState>,
    RequestScope(scope): RequestScope,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<WindowParams>,
) -> Result<Json<PipelineFunnel>, ApiError> {
    let w = window(&params, now_ns())?;
    let rows = state.store.pipeline_funnel(&scope, &name, w).await?;
    Ok(Json(PipelineFunnel {
        pipeline: name,
        from: format_time(w.from_ns),
        to: format_time(w.to_ns),
        steps: rows.iter().map(PipelineFunnelStep::from).collect(),
    }))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers a ping.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = String, content_type = "text/plain"),
        (status = 503, description = "The store does not answer; the body says why", body = String, content_type = "text/plain"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;

    #[test]
    fn list_parameters_are_validated() {
        let p: ListParams = parse_query(
            "pipeline=shop&status=FAILED&from=1000&to=2026-01-01T00:00:00Z&min_duration_ms=5&limit=10",
        )
        .unwrap();
        let (f, page) = list_request(p).unwrap();
        assert_eq!(f.pipeline.as_deref(), Some("shop"));
        assert_eq!(f.status, Some(Status::Failed));
        assert_eq!(f.from_ns, Some(1_000_000_000));
        assert_eq!(f.min_duration_ns, Some(5_000_000));
        assert_eq!(page.limit, 10);
        assert!(page.after.is_none());

        let err = |q: &str| {
            list_request(parse_query(q).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("status=done"),
            "status: unknown status \"done\" (expected running, completed, failed or skipped)"
        );
        assert_eq!(err("from=2000&to=1000"), "from: must be earlier than to");
        assert_eq!(
            err("min_duration_ms=-1"),
            "min_duration_ms: expected a non-negative integer, got \"-1\""
        );
        assert_eq!(err("pipeline="), "pipeline: must not be empty");
        assert!(err("cursor=abc").starts_with("cursor: "));
        let e = parse_query::<ListParams>("pipline=x")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pipline: unknown query parameter (accepted: pipeline, status"),
            "{e}"
        );
    }

    #[test]
    fn window_defaults_to_last_day() {
        let now = 100 * DEFAULT_WINDOW_NS;
        let w = window(&WindowParams::default(), now).unwrap();
        assert_eq!((w.from_ns, w.to_ns), (now - DEFAULT_WINDOW_NS, now));
        let w = window(
            &WindowParams {
                from: None,
                to: Some("86400000".into()),
            },
            now,
        )
        .unwrap();
        assert_eq!((w.from_ns, w.to_ns), (0, DEFAULT_WINDOW_NS));
        let e = window(
            &WindowParams {
                from: Some("yesterday".into()),
                to: None,
            },
            now,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "from: expected RFC 3339 or unix milliseconds, got \"yesterday\""
        );
        assert!(
            window(
                &WindowParams {
                    from: Some("5".into()),
                    to: Some("5".into()),
                },
                now
            )
            .is_err()
        );
    }
}
