//! Authentication over HTTP (axum).
//!
//! - [`request_key`] reads the key from a request's headers.
//! - `AuthError` answers as JSON `{"error": "<message>"}`: `401` for
//!   [`AuthError::Missing`] and [`AuthError::Invalid`], `429` with
//!   `Retry-After` for [`AuthError::RateLimited`], `503` with `Retry-After`
//!   for [`AuthError::Unavailable`] (whose detail is logged, not shown).
//! - [`middleware`] authenticates every request of the router it wraps and
//!   puts the [`Principal`] and its [`Scope`](xray_store::Scope) into the request extensions:
//!
//! ```no_run
//! # fn demo(auth: xray_auth::Authenticator) {
//! use axum::{Router, middleware::from_fn_with_state, routing::get};
//! let app: Router = Router::new()
//!     .route("/runs", get(|| async { "…" }))
//!     .layer(from_fn_with_state(auth, xray_auth::http::middleware));
//! # }
//! ```

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AuthError, Authenticator, Principal};

/// The API key of a request: `x-api-key`, else `authorization: Bearer …`.
pub fn request_key(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::key_from_headers(get("x-api-key"), get(header::AUTHORIZATION.as_str()))
}

impl AuthError {
    /// The HTTP status answering this error: 401, 429 or 503.
    pub fn http_status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Headers that go with the status: `Retry-After` for 429 and 503.
    pub fn http_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        headers
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.http_status(), self.http_headers(), Json(body)).into_response()
    }
}

/// Authenticates the request with `auth` and stores the [`Principal`] and
/// its [`Scope`](xray_store::Scope) in the request extensions; refuses it
/// with an [`AuthError`] response otherwise.
pub async fn middleware(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = request_key(request.headers());
    match auth.authenticate(key.as_deref()).await {
        Ok(principal) => {
            insert_principal(request.extensions_mut(), principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Puts `principal` and its scope into `extensions`.
pub fn insert_principal(extensions: &mut axum::http::Extensions, principal: Principal) {
    extensions.insert(principal.scope());
    extensions.insert(principal);
}
