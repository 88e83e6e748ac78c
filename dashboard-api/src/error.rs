//! [`ApiError`]: the one error type of every handler, and how it becomes an
//! HTTP response.
//!
//! 4xx errors tell the caller what they did wrong; 5xx errors hide the
//! internals from the caller (they get a generic message) and log them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use xray_store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter is invalid.
    #[error("{param}: {reason}")]
    BadParameter {
        /// The parameter's name, e.g. `from`.
        param: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The request is invalid as a whole (e.g. a diff across pipelines).
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist (or is outside the caller's scope).
    #[error("{0}")]
    NotFound(String),
    /// The caller is not authenticated.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not see this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's API key sent more requests than `[auth.rate_limit]`
    /// allows; answered with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// What happened and when to retry.
        message: String,
        /// Seconds until a request will be accepted again (at least 1).
        retry_after_secs: u64,
    },
    /// The store cannot be reached right now.
    #[error("store unavailable")]
    Unavailable(String),
    /// Anything else; the message is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A bad parameter: `param` names it, `reason` says why.
    pub fn param(param: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadParameter {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadParameter { .. } => "bad_parameter",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // Stores only return InvalidArgument for inputs the API passed
            // through (cursor, window): the caller can act on it.
            StoreError::InvalidArgument(m) => ApiError::BadRequest(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `bad_parameter`, `bad_request`, `not_found`,
    /// `unauthorized`, `forbidden`, `rate_limited`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// Human-readable message; for `bad_parameter` it starts with the
    /// parameter's name.
    pub message: String,
    /// The offending parameter, for `bad_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed with an internal error");
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "request failed: store unavailable");
            }
            _ => {}
        }
        let body = ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
            param: match &self {
                ApiError::BadParameter { param, .. } => Some(param.clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = &self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_details() {
        let e = ApiError::from(StoreError::Backend("disk I/O error at /secret/path".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "internal error");
        let e = ApiError::from(StoreError::Unavailable(
            "connection refused 10.0.0.1".into(),
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.to_string(), "store unavailable");
    }

    #[test]
    fn bad_parameter_names_it() {
        let e = ApiError::param("from", "expected RFC 3339 or unix milliseconds, got \"x\"");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            "from: expected RFC 3339 or unix milliseconds, got \"x\""
        );
        assert_eq!(e.code(), "bad_parameter");
    }
}
