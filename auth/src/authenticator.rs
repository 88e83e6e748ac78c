//! [`Authenticator`]: API key → [`Principal`], with the cache and the rate
//! limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use xray_config::AuthConfig;
use xray_store::Store;

use crate::cache::{KeyCache, Lookup};
use crate::key::{hash_key, hashes_equal, is_well_formed_key, secrets_equal};
use crate::manage::{self, ManageError};
use crate::rate::RateLimiter;
use crate::{AuthError, Principal};

/// Store lookups running at once per process; more wait. A flood of
/// distinct well-formed but unknown keys therefore cannot overload the
/// store.
const MAX_CONCURRENT_LOOKUPS: usize = 16;

/// Authenticates requests: shared by every listener of a process (clones
/// share the cache and the rate-limit buckets).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    required: bool,
    admin_token: Option<String>,
    store: Arc<dyn Store>,
    cache: KeyCache,
    limiter: Option<RateLimiter>,
    lookups: Semaphore,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.inner.required)
            .field("admin", &self.inner.admin_token.is_some())
            .field("rate_limited", &self.inner.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `[auth]` over `store` (where apps and keys
    /// live). An empty `admin_token` disables admin access.
    pub fn new(cfg: &AuthConfig, store: Arc<dyn Store>) -> Self {
        Authenticator {
            inner: Arc::new(Inner {
                required: cfg.required,
                admin_token: Some(cfg.admin_token.clone()).filter(|t| !t.is_empty()),
                store,
                cache: KeyCache::new(Duration::from_millis(cfg.cache_ttl_ms)),
                limiter: RateLimiter::new(&cfg.rate_limit),
                lookups: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            }),
        }
    }

    /// The store keys are looked up in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// True when `auth.required` is set: requests without a key are refused.
    pub fn required(&self) -> bool {
        self.inner.required
    }

    /// True when an admin token is configured.
    pub fn admin_enabled(&self) -> bool {
        self.inner.admin_token.is_some()
    }

    /// Who sends a request carrying `key` (see [`crate::key_from_headers`]).
    ///
    /// - the admin token → [`Principal::Admin`];
    /// - a valid, unrevoked app key → [`Principal::App`], after the rate
    ///   limit;
    /// - no key → [`Principal::Anonymous`], or [`AuthError::Missing`] when
    ///   `auth.required`;
    /// - any other key (unknown, revoked, malformed) →
    ///   [`AuthError::Invalid`], whether or not auth is required: a client
    ///   that sends a key wants to know it is wrong.
    pub async fn authenticate(&self, key: Option<&str>) -> Result<Principal, AuthError> {
        let Some(key) = key else {
            return if self.inner.required {
                Err(AuthError::Missing)
            } else {
                Ok(Principal::Anonymous)
            };
        };
        if let Some(admin) = &self.inner.admin_token
            && secrets_equal(key, admin)
        {
            return Ok(Principal::Admin);
        }
        if !is_well_formed_key(key) {
            return Err(AuthError::Invalid);
        }
        let hash = hash_key(key);
        let found = match self.lookup(&hash).await? {
            Lookup::Found(k) => k,
            Lookup::Unknown => return Err(AuthError::Invalid),
        };
        if !hashes_equal(&found.hash, &hash) || found.revoked_at_ns.is_some() {
            return Err(AuthError::Invalid);
        }
        if let Some(limiter) = &self.inner.limiter {
            limiter
                .check(&found.id, Instant::now())
                .map_err(|retry_after| AuthError::RateLimited { retry_after })?;
        }
        Ok(Principal::App(found.app_id))
    }

    /// The cached lookup of `hash`, or the store's answer (then cached).
    async fn lookup(&self, hash: &str) -> Result<Lookup, AuthError> {
        if let Some(hit) = self.inner.cache.get(hash, Instant::now()) {
            return Ok(hit);
        }
        let _permit = self
            .inner
            .lookups
            .acquire()
            .await
            .map_err(|_| AuthError::Unavailable("key lookups are shut down".into()))?;
        // Another request may have looked the same key up while we waited.
        if let Some(hit) = self.inner.cache.get(hash, Instant::now()) {
            return Ok(hit);
        }
        let answer = match self.inner.store.api_key_by_hash(hash).await {
            Ok(Some(k)) => Lookup::Found(k),
            Ok(None) => Lookup::Unknown,
            Err(e) => {
                tracing::warn!(error = %e, "API key lookup failed");
                return Err(AuthError::Unavailable(e.to_string()));
            }
        };
        self.inner.cache.put(hash, answer.clone(), Instant::now());
        Ok(answer)
    }

    /// Revokes the key with id `id` in the store and drops it from this
    /// process's cache at once (other processes notice within
    /// `auth.cache_ttl_ms`). False when no such key exists.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, ManageError> {
        let revoked = manage::revoke_key(self.inner.store.as_ref(), id).await?;
        self.inner.cache.forget_key_id(id);
        Ok(revoked)
    }
}
