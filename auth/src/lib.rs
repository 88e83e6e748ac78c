//! Authentication for X-Ray: apps, API keys, and who a request comes from.
//!
//! - [`key_from_headers`] reads the key of a request (`x-api-key: KEY` or
//!   `authorization: Bearer KEY`, on HTTP headers and gRPC metadata alike).
//! - [`Authenticator::authenticate`] turns that key into a [`Principal`]: the
//!   admin token (compared in constant time), an app's key (hashed, looked
//!   up in a short-TTL cache, then in the [`xray_store::Store`]), or nobody. It also
//!   applies the per-key rate limit.
//! - [`create_app`] (or [`create_app_with_key`]), [`create_key`],
//!   [`list_apps`], [`revoke_key`] manage apps and keys on a store (what
//!   `xray apps` and the admin API run).
//! - [`http`] turns an [`AuthError`] into an HTTP answer and offers an axum
//!   middleware that puts the caller's [`Principal`] and [`Scope`] into the
//!   request extensions.
//!
//! Keys are `xr_` followed by 32 random base62 characters (from the
//! operating system's CSPRNG, about 190 bits). Only their SHA-256 hash and a
//! short prefix for display are stored; the key itself is shown once when it
//! is created.
//!
//! Revocation: each process caches a lookup for `auth.cache_ttl_ms` (at most
//! 5 s), so a key revoked on one replica stops working on every replica
//! within that time, while the store sees at most one lookup per key and TTL.
//! Unknown keys are cached too, so a client retrying a wrong key does not
//! load the store.

mod authenticator;
mod cache;
pub mod http;
mod key;
mod manage;
mod rate;

use std::time::Duration;

use xray_store::Scope;

pub use authenticator::Authenticator;
pub use key::{KEY_LEN, KEY_PREFIX, hash_key, is_well_formed_key};
pub use manage::{
    AppWithKeys, MAX_APP_NAME_CHARS, ManageError, create_app, create_app_with_key, create_key,
    list_apps, revoke_key,
};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A valid, unrevoked key of this app (the app id).
    App(String),
    /// The admin token: reads every app, manages apps and keys.
    Admin,
    /// No key, with `auth.required = false`: the `default` app.
    Anonymous,
}

impl Principal {
    /// The rows this principal may read: its own app, or every app for the
    /// admin ([`xray_model::DEFAULT_APP`] for anonymous callers).
    pub fn scope(&self) -> Scope {
        match self {
            Principal::App(app) => Scope::App(app.clone()),
            Principal::Admin => Scope::All,
            Principal::Anonymous => Scope::App(xray_model::DEFAULT_APP.to_string()),
        }
    }

    /// The app that data ingested by this principal belongs to (the admin
    /// token and anonymous callers write to [`xray_model::DEFAULT_APP`]).
    pub fn ingest_app(&self) -> &str {
        match self {
            Principal::App(app) => app,
            Principal::Admin | Principal::Anonymous => xray_model::DEFAULT_APP,
        }
    }

    /// True for the admin token.
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// Why a request was not authenticated. The `Display` text is what clients
/// see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `auth.required = true` and the request carries no key.
    #[error("Missing API key")]
    Missing,
    /// The key is not the admin token and no app has it, or it was revoked.
    #[error("Invalid API key")]
    Invalid,
    /// The key sent more requests than `[auth.rate_limit]` allows.
    #[error("Rate limit exceeded for this API key; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        /// When the next request will be accepted.
        retry_after: Duration,
    },
    /// The store could not be asked about the key (the message is for logs).
    #[error("Authentication is temporarily unavailable; retry later")]
    Unavailable(String),
}

impl AuthError {
    /// The `Retry-After` value in whole seconds (at least 1) for
    /// [`AuthError::RateLimited`] and [`AuthError::Unavailable`].
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AuthError::RateLimited { retry_after } => Some(retry_after_secs(*retry_after)),
            AuthError::Unavailable(_) => Some(1),
            AuthError::Missing | AuthError::Invalid => None,
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The API key of a request: `x-api-key: KEY`, else `authorization: Bearer
/// KEY` (scheme case-insensitive). Blank values count as absent; any other
/// `authorization` scheme is ignored.
pub fn key_from_headers(x_api_key: Option<&str>, authorization: Option<&str>) -> Option<String> {
    if let Some(k) = x_api_key.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(k.to_string());
    }
    let auth = authorization?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_string()).filter(|k| !k.is_empty())
    } else {
        None
    }
}

/// Unix time now, in nanoseconds.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_from_either_header() {
        assert_eq!(
            key_from_headers(Some("xr_a"), None).as_deref(),
            Some("xr_a")
        );
        assert_eq!(
            key_from_headers(None, Some("Bearer xr_b")).as_deref(),
            Some("xr_b")
        );
        assert_eq!(
            key_from_headers(None, Some("bearer  xr_c ")).as_deref(),
            Some("xr_c")
        );
        assert_eq!(
            key_from_headers(Some("xr_a"), Some("Bearer xr_b")).as_deref(),
            Some("xr_a")
        );
        assert_eq!(key_from_headers(None, Some("Basic abc")), None);
        assert_eq!(key_from_headers(Some(" "), None), None);
        assert_eq!(key_from_headers(None, None), None);
    }

    #[test]
    fn principals_scope_and_ingest_app() {
        assert_eq!(
            Principal::App("shop".into()).scope(),
            Scope::App("shop".into())
        );
        assert_eq!(Principal::Admin.scope(), Scope::All);
        assert_eq!(
            Principal::Anonymous.scope(),
            Scope::App(xray_model::DEFAULT_APP.into())
        );
        assert_eq!(Principal::App("shop".into()).ingest_app(), "shop");
        assert_eq!(Principal::Admin.ingest_app(), xray_model::DEFAULT_APP);
        assert_eq!(Principal::Anonymous.ingest_app(), xray_model::DEFAULT_APP);
    }

    #[test]
    fn error_texts_and_retry_after() {
        assert_eq!(AuthError::Missing.to_string(), "Missing API key");
        assert_eq!(AuthError::Invalid.to_string(), "Invalid API key");
        let e = AuthError::RateLimited {
            retry_after: Duration::from_millis(1200),
        };
        assert_eq!(e.retry_after_secs(), Some(2));
        let e = AuthError::RateLimited {
            retry_after: Duration::from_millis(10),
        };
        assert_eq!(e.retry_after_secs(), Some(1));
        assert_eq!(AuthError::Invalid.retry_after_secs(), None);
    }
}
