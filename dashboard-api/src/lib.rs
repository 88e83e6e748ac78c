//! The X-Ray dashboard API: HTTP JSON over the [`Store`] read side.
//!
//! [`router`] builds the whole service:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/executions` | list, filters, cursor pagination |
//! | `GET /api/v1/executions/{id}` | one execution with its step tree |
//! | `GET /api/v1/executions/{id}/steps` | its steps, flat |
//! | `GET /api/v1/executions/{id}/funnel` | its candidate funnel |
//! | `GET /api/v1/executions/{a}/diff/{b}` | two runs side by side |
//! | `GET /api/v1/pipelines` | per-pipeline figures over a window |
//! | `GET /api/v1/pipelines/{name}/funnel` | per-step aggregates over a window |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (store ping) |
//! | `GET /api/openapi.json` | the OpenAPI 3.1 document, generated from the handlers |
//! | `GET /api/docs` | an interactive reference that works offline |
//!
//! Handlers are thin: parsing lives in [`query`], response shapes and the
//! timeline tree in [`view`], funnels in [`funnel`], diffs in [`diff`] — all
//! pure functions over what [`Store::get_execution`] and friends return, so
//! every backend gives the same answers. Errors are one type, [`ApiError`].
//!
//! Authentication seam: handlers read the caller's [`Scope`] from the request
//! extensions (see [`handlers::RequestScope`]); an auth layer in front of the
//! router only has to insert one. Without it every read is scoped to app
//! `default`.

pub mod diff;
pub mod error;
pub mod funnel;
pub mod handlers;
pub mod query;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xray_config::ApiConfig;
use xray_store::Store;

pub use error::ApiError;
pub use xray_store::Scope;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store to read from (a [`xray_store::SharedBackend`] upcasts:
    /// `let store: Arc<dyn Store> = backend;`).
    pub store: Arc<dyn Store>,
    /// The `[api]` section (CORS origins).
    pub api: ApiConfig,
}

impl AppState {
    /// Bundles a store and the API config.
    pub fn new(store: Arc<dyn Store>, api: ApiConfig) -> Self {
        AppState { store, api }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "X-Ray dashboard API",
        description = "Read executions, their step timelines, candidate funnels and diffs. \
            Times are RFC 3339 UTC strings with nanoseconds; durations are milliseconds.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "executions", description = "Executions, their steps, funnels and diffs"),
        (name = "pipelines", description = "Aggregates per pipeline over a time window"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::list_executions))
        .routes(routes!(handlers::get_execution))
        .routes(routes!(handlers::get_steps))
        .routes(routes!(handlers::get_execution_funnel))
        .routes(routes!(handlers::diff))
        .routes(routes!(handlers::list_pipelines))
        .routes(routes!(handlers::pipeline_funnel))
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
}

/// The OpenAPI 3.1 document of every route [`router`] serves (the two
/// documentation routes themselves excepted).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The interactive API reference served at `/api/docs`: one self-contained
/// page (no external assets) that renders `/api/openapi.json`.
pub const DOCS_HTML: &str = include_str!("docs.html");

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "ignoring invalid CORS origin");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// The dashboard API: every route listed in the crate docs, CORS from
/// `state.api.cors_origins` (none when empty, any origin for `["*"]`), JSON
/// 404 for unknown routes, and request tracing.
pub fn router(state: AppState) -> Router {
    let origins = state.api.cors_origins.clone();
    let (api, doc) = api_router().split_for_parts();
    let spec: Arc<str> = doc.to_json().unwrap_or_else(|_| "{}".into()).into();
    let router = api
        .route(
            "/api/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        spec.to_string(),
                    )
                }
            }),
        )
        .route(
            "/api/docs",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    DOCS_HTML,
                )
            }),
        )
        .fallback(not_found)
        .with_state(state)
        .layer(TraceLayer::new_for_http());
    match cors(&origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}
