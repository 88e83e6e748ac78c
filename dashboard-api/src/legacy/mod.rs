//! Read endpoints compatible with the earlier X-Ray services, on the API
//! listener next to `/api/v1` (the ingest side lives in the collector's
//! `legacy` module, on the OTLP/HTTP listener):
//!
//! | service | routes | module |
//! |---|---|---|
//! | event service | `GET /v1/events?trace_id=`, `GET /v1/events/{span_id}`, `GET /v1/traces` | [`events`] |
//! | run service | `GET /runs?limit=`, `GET /runs/{id}`, `GET /runs/{id}/steps`, `GET /analyze/{run_id}` | [`runs`] |
//!
//! They read the same executions and steps as `/api/v1` (whatever sent
//! them: a legacy client, the SDK, any OTel exporter) and render them in
//! the earlier services' shapes with pure functions. Authentication is the
//! same as for `/api/v1` (a key sees only its app, the admin token every
//! app, no key the app `default` unless `auth.required`), but errors use
//! each service's own body: `{"error": "…"}` for the event service,
//! `{"detail": "…"}` for the run service.

pub mod events;
pub mod runs;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::{ApiError, AppState, Scope};

/// How a legacy service words an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": "…"}` (the event service).
    Error,
    /// `{"detail": "…"}` (the run service).
    Detail,
}

/// An [`ApiError`] answered in a legacy service's error body: the same
/// status (and `Retry-After`), 5xx details logged and hidden.
#[derive(Debug)]
pub struct LegacyError {
    /// The body's wording.
    pub style: ErrorStyle,
    /// What went wrong.
    pub error: ApiError,
}

impl LegacyError {
    /// Wraps `error` for `style`.
    pub fn new(style: ErrorStyle, error: impl Into<ApiError>) -> Self {
        LegacyError {
            style,
            error: error.into(),
        }
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let message = match &self.error {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "legacy read failed with an internal error");
                "internal error".to_string()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "legacy read failed: store unavailable");
                "store unavailable; retry later".to_string()
            }
            other => other.to_string(),
        };
        let body = match self.style {
            ErrorStyle::Error => serde_json::json!({ "error": message }),
            ErrorStyle::Detail => serde_json::json!({ "detail": message }),
        };
        let mut r = (status, axum::Json(body)).into_response();
        let retry = match &self.error {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

async fn authenticate(
    state: &AppState,
    style: ErrorStyle,
    mut request: Request,
    next: Next,
) -> Response {
    let key = xray_auth::http::request_key(request.headers());
    match state.auth.authenticate(key.as_deref()).await {
        Ok(principal) => {
            xray_auth::http::insert_principal(request.extensions_mut(), principal);
            next.run(request).await
        }
        Err(e) => LegacyError::new(style, ApiError::from(e)).into_response(),
    }
}

async fn authenticate_events(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(&state, ErrorStyle::Error, request, next).await
}

async fn authenticate_runs(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(&state, ErrorStyle::Detail, request, next).await
}

/// The legacy read routes, unauthenticated (for the OpenAPI document).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(events::routes())
        .merge(runs::routes())
}

/// The legacy read routes, each authenticated with its service's error
/// body, for [`crate::router`].
pub(crate) fn authenticated(state: AppState) -> OpenApiRouter<AppState> {
    let events =
        events::routes().route_layer(from_fn_with_state(state.clone(), authenticate_events));
    let runs = runs::routes().route_layer(from_fn_with_state(state, authenticate_runs));
    events.merge(runs)
}

/// The error body of the event service (for the OpenAPI document).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EventErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The error body of the run service (for the OpenAPI document).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunErrorBody {
    /// What went wrong.
    pub detail: String,
}

/// `limit` of a legacy list: `default` when absent, else 1 to `max`.
pub(crate) fn limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match raw {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::param(
                "limit",
                format!("must be an integer between 1 and {max}, got \"{v}\""),
            )),
        },
    }
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    limit: Option<String>,
}

/// The newest executions of `scope` for a legacy list endpoint: `?limit=`
/// is `default` when absent, else 1 to `max`; any other query key is an
/// error.
pub(crate) async fn newest_executions(
    state: &AppState,
    scope: &Scope,
    raw_query: Option<&str>,
    default: u32,
    max: u32,
) -> Result<Vec<xray_store::ExecutionSummary>, ApiError> {
    let q: ListQuery = crate::query::parse_query(raw_query.unwrap_or(""))?;
    let limit = limit(q.limit.as_deref(), default, max)?;
    let page = state
        .store
        .list_executions(
            scope,
            &xray_store::ExecutionFilter::default(),
            &xray_store::PageRequest { limit, after: None },
        )
        .await?;
    Ok(page.items)
}
