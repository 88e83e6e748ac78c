//! Authentication of the `/api/v1` routes.
//!
//! [`authenticate`] runs in front of every `/api/v1` route (the probes,
//! `/metrics`, the OpenAPI document, `/api/docs` and the web UI's assets
//! stay open). It reads the key from `x-api-key: KEY` or
//! `authorization: Bearer KEY`, asks the [`Authenticator`] of the
//! [`AppState`], and puts the caller's [`Principal`] and its
//! [`Scope`](xray_store::Scope) into the request extensions, where
//! [`RequestScope`](crate::handlers::RequestScope) and [`Caller`] find them:
//!
//! | request | answer |
//! |---|---|
//! | an app's key | reads scoped to that app; admin routes 403 |
//! | the admin token | reads every app; admin routes allowed |
//! | no key, `auth.required = false` | reads scoped to app `default`; admin routes 401 |
//! | no key, `auth.required = true` | 401 `Missing API key` |
//! | a key that is not valid (unknown, revoked, malformed) | 401 `Invalid API key`, whatever `auth.required` says |
//! | a key over its rate limit | 429 with `Retry-After` |
//! | the key store cannot be asked | 503 |
//!
//! Errors use the API's usual body ([`ErrorBody`](crate::error::ErrorBody)),
//! codes `unauthorized`, `forbidden`, `rate_limited` and `unavailable`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use xray_auth::{AuthError, Authenticator, Principal};

use crate::AppState;
use crate::error::ApiError;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthorized(e.to_string()),
            AuthError::RateLimited { .. } => ApiError::TooManyRequests {
                message: e.to_string(),
                retry_after_secs: e.retry_after_secs().unwrap_or(1),
            },
            AuthError::Unavailable(detail) => {
                ApiError::Unavailable(format!("API key lookup failed: {detail}"))
            }
        }
    }
}

/// The middleware in front of the `/api/v1` routes: authenticates the
/// request with `state.auth` (see the module docs for the answers).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = xray_auth::http::request_key(request.headers());
    match state.auth.authenticate(key.as_deref()).await {
        Ok(principal) => {
            xray_auth::http::insert_principal(request.extensions_mut(), principal);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The caller of a request, as [`authenticate`] found it;
/// [`Principal::Anonymous`] when the router runs without it.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(
            parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or(Principal::Anonymous),
        ))
    }
}

/// Lets only the admin token through: app keys get 403, callers without a
/// key 401, each with a message saying what to send.
pub fn require_admin(caller: &Principal, auth: &Authenticator) -> Result<(), ApiError> {
    match caller {
        Principal::Admin => Ok(()),
        Principal::App(app) => Err(ApiError::Forbidden(format!(
            "this endpoint needs the admin token (auth.admin_token); the API key of app \"{app}\" cannot manage apps and keys"
        ))),
        Principal::Anonymous if auth.admin_enabled() => Err(ApiError::Unauthorized(
            "this endpoint needs the admin token: send authorization: Bearer <auth.admin_token>"
                .into(),
        )),
        Principal::Anonymous => Err(ApiError::Unauthorized(
            "this endpoint needs the admin token, and this server has none: set auth.admin_token (or use `xray apps` on the server)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use std::time::Duration;

    #[test]
    fn auth_errors_become_api_errors() {
        let e = ApiError::from(AuthError::Missing);
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.code(), "unauthorized");
        assert_eq!(e.to_string(), "Missing API key");
        let e = ApiError::from(AuthError::Invalid);
        assert_eq!(e.to_string(), "Invalid API key");
        let e = ApiError::from(AuthError::RateLimited {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code(), "rate_limited");
        let resp = e.into_response();
        assert_eq!(resp.headers()["retry-after"], "2");
        let e = ApiError::from(AuthError::Unavailable("connection refused".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        // the detail is logged, not shown
        assert_eq!(e.to_string(), "store unavailable");
    }
}
