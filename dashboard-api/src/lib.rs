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
//! | `POST /api/v1/apps`, `GET /api/v1/apps` | create and list apps (admin token) |
//! | `POST /api/v1/apps/{id}/keys` | a new API key for an app (admin token) |
//! | `DELETE /api/v1/keys/{id}` | revoke an API key (admin token) |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (store ping) |
//! | `GET /api/openapi.json` | the OpenAPI 3.1 document, generated from the handlers |
//! | `GET /api/docs` | an interactive reference that works offline |
//! | `GET /v1/events`, `/v1/events/{span_id}`, `/v1/traces` | the event service's reads ([`legacy`]) |
//! | `GET /runs`, `/runs/{id}`, `/runs/{id}/steps`, `/analyze/{run_id}` | the run service's reads ([`legacy`]) |
//!
//! Handlers are thin: parsing lives in [`query`], response shapes and the
//! timeline tree in [`view`], funnels in [`funnel`], diffs in [`diff`] — all
//! pure functions over what [`Store::get_execution`] and friends return, so
//! every backend gives the same answers. Errors are one type, [`ApiError`].
//!
//! Authentication: every `/api/v1` route runs [`auth::authenticate`], which
//! turns the request's API key into a [`Principal`] and its [`Scope`] in the
//! request extensions; handlers read them with [`handlers::RequestScope`]
//! and [`auth::Caller`]. The probes, the OpenAPI document and `/api/docs`
//! stay open. The admin routes ([`apps`]) need the admin token.

pub mod apps;
pub mod auth;
pub mod diff;
mod docs;
pub mod error;
pub mod funnel;
pub mod handlers;
pub mod legacy;
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
use xray_config::{ApiConfig, AuthConfig};
use xray_store::Store;

use docs::Security;
pub use error::ApiError;
pub use xray_auth::{Authenticator, Principal};
pub use xray_store::Scope;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store to read from (a [`xray_store::SharedBackend`] upcasts:
    /// `let store: Arc<dyn Store> = backend;`).
    pub store: Arc<dyn Store>,
    /// The `[api]` section (CORS origins).
    pub api: ApiConfig,
    /// Authenticates `/api/v1` requests and manages apps and keys.
    pub auth: Authenticator,
}

impl AppState {
    /// Bundles a store and the API config, with authentication as the
    /// `[auth]` defaults have it: keys optional, anonymous reads see app
    /// `default`, no admin token. Use [`AppState::with_auth`] for the
    /// configured one.
    pub fn new(store: Arc<dyn Store>, api: ApiConfig) -> Self {
        let auth = Authenticator::new(&AuthConfig::default(), store.clone());
        AppState { store, api, auth }
    }

    /// The same state authenticating with `auth` (build it once per
    /// process from `[auth]`, and share it with the collector in
    /// `xray serve`).
    pub fn with_auth(mut self, auth: Authenticator) -> Self {
        self.auth = auth;
        self
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
        (name = "admin", description = "Apps and API keys (admin token only)"),
        (name = "compat", description = "Reads compatible with the earlier event and run services \
            (errors as {\"error\": …} or {\"detail\": …}); see docs/migrating.md"),
    ),
    modifiers(&Security)
)]
struct ApiDoc;

/// The `/api/v1` routes: every one of them is authenticated.
fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list_executions))
        .routes(routes!(handlers::get_execution))
        .routes(routes!(handlers::get_steps))
        .routes(routes!(handlers::get_execution_funnel))
        .routes(routes!(handlers::diff))
        .routes(routes!(handlers::list_pipelines))
        .routes(routes!(handlers::pipeline_funnel))
        .routes(routes!(apps::create_app, apps::list_apps))
        .routes(routes!(apps::create_key))
        .routes(routes!(apps::revoke_key))
}

/// Routes open to anyone: the probes.
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
}

fn api_router(
    v1: OpenApiRouter<AppState>,
    compat: OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .merge(compat)
        .merge(open_routes())
}

/// The OpenAPI 3.1 document of every route [`router`] serves (the two
/// documentation routes themselves excepted).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router(v1_routes(), legacy::routes()).into_openapi();
    docs::document_auth(&mut doc);
    doc
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
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::HeaderName::from_static("x-api-key"),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// The dashboard API: every route listed in the crate docs, the `/api/v1`
/// ones authenticated by `state.auth`, CORS from `state.api.cors_origins`
/// (none when empty, any origin for `["*"]`), JSON 404 for unknown routes,
/// and request tracing.
pub fn router(state: AppState) -> Router {
    let origins = state.api.cors_origins.clone();
    let v1 = v1_routes().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let (api, _) = api_router(v1, legacy::authenticated(state.clone())).split_for_parts();
    let spec: Arc<str> = openapi().to_json().unwrap_or_else(|_| "{}".into()).into();
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
