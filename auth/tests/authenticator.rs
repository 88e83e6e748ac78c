//! The authenticator and key management over real stores: every backend
//! available to the run (SQLite always; ClickHouse and Postgres when
//! `XRAY_TEST_CLICKHOUSE_URL` / `XRAY_TEST_POSTGRES_URL` are set).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use xray_auth::{AuthError, Authenticator, ManageError, Principal};
use xray_config::{AuthConfig, RateLimitConfig};
use xray_model::{ApiKey, App};
use xray_store::testing::{self, TestBackend};
use xray_store::{
    ExecutionDetail, ExecutionFilter, ExecutionPage, PageRequest, PipelineStepStats,
    PipelineSummary, Scope, Store, StoreError, TimeWindow,
};

const ADMIN: &str = "admin-token-for-tests-0123456789";

fn config(required: bool) -> AuthConfig {
    AuthConfig {
        required,
        admin_token: ADMIN.into(),
        ..AuthConfig::default()
    }
}

fn store_of(t: &TestBackend) -> Arc<dyn Store> {
    t.backend.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_authenticate_on_every_backend() {
    for t in testing::backends().await {
        let store = store_of(&t);
        let (app, key) = xray_auth::create_app(store.as_ref(), "Checkout Ranking")
            .await
            .unwrap();
        assert_eq!(app.id, "checkout-ranking", "[{}]", t.name);
        assert!(xray_auth::is_well_formed_key(&key), "[{}] {key}", t.name);

        let required = Authenticator::new(&config(true), store.clone());
        assert_eq!(
            required.authenticate(Some(&key)).await,
            Ok(Principal::App(app.id.clone())),
            "[{}]",
            t.name
        );
        assert_eq!(required.authenticate(None).await, Err(AuthError::Missing));
        assert_eq!(
            required.authenticate(Some(ADMIN)).await,
            Ok(Principal::Admin)
        );
        let unknown = format!("xr_{}", "Z".repeat(32));
        assert_eq!(
            required.authenticate(Some(&unknown)).await,
            Err(AuthError::Invalid),
            "[{}]",
            t.name
        );
        assert_eq!(
            required.authenticate(Some("not-a-key")).await,
            Err(AuthError::Invalid)
        );
        // a key one character off the admin token is just an invalid key
        assert_eq!(
            required.authenticate(Some(&ADMIN[1..])).await,
            Err(AuthError::Invalid)
        );

        let open = Authenticator::new(&config(false), store.clone());
        assert_eq!(open.authenticate(None).await, Ok(Principal::Anonymous));
        assert_eq!(
            open.authenticate(Some(&key)).await,
            Ok(Principal::App(app.id.clone()))
        );
        // a wrong key is refused even when keys are optional
        assert_eq!(
            open.authenticate(Some(&unknown)).await,
            Err(AuthError::Invalid)
        );

        // a second key of the same app works alongside the first
        let (record, key2) = xray_auth::create_key(store.as_ref(), &app.id)
            .await
            .unwrap();
        assert_eq!(record.app_id, app.id);
        assert_eq!(record.hash, xray_auth::hash_key(&key2));
        assert!(key2.starts_with(&record.prefix));
        assert_eq!(record.prefix.len(), 9);
        assert_eq!(
            required.authenticate(Some(&key2)).await,
            Ok(Principal::App(app.id.clone()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_stops_working_on_every_replica_within_the_ttl() {
    for t in testing::backends().await {
        let store = store_of(&t);
        let (app, key) = xray_auth::create_app(store.as_ref(), "shop").await.unwrap();
        let cfg = AuthConfig {
            cache_ttl_ms: 1000,
            ..config(true)
        };
        // two replicas over the same store, both with the key cached
        let a = Authenticator::new(&cfg, store.clone());
        let b = Authenticator::new(&cfg, store.clone());
        for r in [&a, &b] {
            assert_eq!(
                r.authenticate(Some(&key)).await,
                Ok(Principal::App(app.id.clone()))
            );
        }
        let key_id = xray_auth::list_apps(store.as_ref()).await.unwrap()[0].keys[0]
            .id
            .clone();
        assert!(a.revoke_key(&key_id).await.unwrap(), "[{}]", t.name);
        // the replica that revoked it refuses it at once
        assert_eq!(a.authenticate(Some(&key)).await, Err(AuthError::Invalid));
        // the other one within its cache TTL (bounded poll, no timing assertion)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match b.authenticate(Some(&key)).await {
                Err(AuthError::Invalid) => break,
                Ok(Principal::App(_)) => {}
                other => panic!("[{}] unexpected {other:?}", t.name),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "[{}] revoked key still accepted by the second replica",
                t.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // unknown key ids are reported, revoking twice is fine
        assert!(!a.revoke_key("key_nope").await.unwrap());
        assert!(a.revoke_key(&key_id).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_listed_with_their_keys() {
    for t in testing::backends().await {
        let store = store_of(&t);
        let (a1, _) = xray_auth::create_app(store.as_ref(), "Shop").await.unwrap();
        // the same name again gets a distinct id
        let (a2, _) = xray_auth::create_app(store.as_ref(), "Shop").await.unwrap();
        assert_ne!(a1.id, a2.id);
        assert!(a2.id.starts_with("shop-"), "{}", a2.id);
        assert_eq!(a2.name, "Shop");
        // `default` is the app of anonymous data: never handed out
        let (d, _) = xray_auth::create_app(store.as_ref(), "Default")
            .await
            .unwrap();
        assert_ne!(d.id, "default");
        xray_auth::create_key(store.as_ref(), &a1.id).await.unwrap();
        let apps = xray_auth::list_apps(store.as_ref()).await.unwrap();
        let ids: Vec<_> = apps.iter().map(|a| a.app.id.as_str()).collect();
        assert_eq!(
            ids,
            [a1.id.as_str(), a2.id.as_str(), d.id.as_str()],
            "[{}]",
            t.name
        );
        assert_eq!(apps[0].keys.len(), 2);
        assert_eq!(apps[1].keys.len(), 1);
        assert!(matches!(
            xray_auth::create_key(store.as_ref(), "no-such-app").await,
            Err(ManageError::AppNotFound(_))
        ));
        assert!(matches!(
            xray_auth::create_app(store.as_ref(), "  ").await,
            Err(ManageError::InvalidName(_))
        ));
    }
}

/// A real SQLite store that counts key lookups and can be switched off.
struct Counting {
    inner: Arc<dyn Store>,
    lookups: AtomicU64,
    down: AtomicBool,
}

#[async_trait]
impl Store for Counting {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn list_executions(
        &self,
        scope: &Scope,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> Result<ExecutionPage, StoreError> {
        self.inner.list_executions(scope, filter, page).await
    }
    async fn get_execution(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError> {
        self.inner.get_execution(scope, id).await
    }
    async fn pipelines(
        &self,
        scope: &Scope,
        window: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError> {
        self.inner.pipelines(scope, window).await
    }
    async fn pipeline_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        self.inner.pipeline_funnel(scope, pipeline, window).await
    }
    async fn steps_by_span_id(
        &self,
        scope: &Scope,
        span_id: &str,
        limit: u32,
    ) -> Result<Vec<xray_model::Step>, StoreError> {
        self.inner.steps_by_span_id(scope, span_id, limit).await
    }
    async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        self.inner.create_app(app).await
    }
    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.inner.list_apps().await
    }
    async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError> {
        self.inner.get_app(id).await
    }
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.create_api_key(key).await
    }
    async fn list_api_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list_api_keys(app_id).await
    }
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        self.inner.api_key_by_hash(hash).await
    }
    async fn revoke_api_key(&self, id: &str, at_ns: i64) -> Result<bool, StoreError> {
        self.inner.revoke_api_key(id, at_ns).await
    }
}

async fn counting() -> (TestBackend, Arc<Counting>) {
    let t = testing::sqlite().await;
    let c = Arc::new(Counting {
        inner: t.backend.clone(),
        lookups: AtomicU64::new(0),
        down: AtomicBool::new(false),
    });
    (t, c)
}

#[tokio::test]
async fn lookups_are_cached_including_unknown_keys() {
    let (_t, store) = counting().await;
    let (app, key) = xray_auth::create_app(store.as_ref(), "shop").await.unwrap();
    let auth = Authenticator::new(
        &AuthConfig {
            cache_ttl_ms: 5000,
            ..config(true)
        },
        store.clone(),
    );
    for _ in 0..100 {
        assert_eq!(
            auth.authenticate(Some(&key)).await,
            Ok(Principal::App(app.id.clone()))
        );
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
    // a clone shares the cache
    let clone = auth.clone();
    clone.authenticate(Some(&key)).await.unwrap();
    assert_eq!(store.lookups.load(Ordering::SeqCst), 1);

    let unknown = format!("xr_{}", "q".repeat(32));
    for _ in 0..100 {
        assert_eq!(
            auth.authenticate(Some(&unknown)).await,
            Err(AuthError::Invalid)
        );
    }
    // one lookup for the good key, one for the unknown one (a few more only
    // if the loop outlived the 1 s negative TTL): far fewer than requests
    let after_unknown = store.lookups.load(Ordering::SeqCst);
    assert!((2..50).contains(&after_unknown), "{after_unknown}");
    // malformed keys and the admin token never reach the store
    for k in ["xr_short", "Bearer", ADMIN] {
        let _ = auth.authenticate(Some(k)).await;
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst), after_unknown);
}

#[tokio::test]
async fn zero_ttl_asks_the_store_every_time() {
    let (_t, store) = counting().await;
    let (_, key) = xray_auth::create_app(store.as_ref(), "shop").await.unwrap();
    let auth = Authenticator::new(
        &AuthConfig {
            cache_ttl_ms: 0,
            ..config(true)
        },
        store.clone(),
    );
    for _ in 0..5 {
        auth.authenticate(Some(&key)).await.unwrap();
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn store_down_is_unavailable_not_invalid() {
    let (_t, store) = counting().await;
    let (app, key) = xray_auth::create_app(store.as_ref(), "shop").await.unwrap();
    let auth = Authenticator::new(&config(true), store.clone());
    store.down.store(true, Ordering::SeqCst);
    let err = auth.authenticate(Some(&key)).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Authentication is temporarily unavailable; retry later"
    );
    // failures are not cached: the key works as soon as the store is back
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(
        auth.authenticate(Some(&key)).await,
        Ok(Principal::App(app.id))
    );
    // the admin token does not need the store
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(auth.authenticate(Some(ADMIN)).await, Ok(Principal::Admin));
}

#[tokio::test]
async fn rate_limit_per_key() {
    let t = testing::sqlite().await;
    let store = store_of(&t);
    let (_, k1) = xray_auth::create_app(store.as_ref(), "one").await.unwrap();
    let (_, k2) = xray_auth::create_app(store.as_ref(), "two").await.unwrap();
    let auth = Authenticator::new(
        &AuthConfig {
            // one request per 1000 s after a burst of 3: the 4th is refused
            rate_limit: RateLimitConfig {
                requests_per_sec: 0.001,
                burst: 3,
            },
            ..config(true)
        },
        store,
    );
    for _ in 0..3 {
        auth.authenticate(Some(&k1)).await.unwrap();
    }
    match auth.authenticate(Some(&k1)).await {
        Err(e @ AuthError::RateLimited { retry_after }) => {
            assert!(retry_after > Duration::from_secs(900), "{retry_after:?}");
            assert!(e.retry_after_secs().unwrap() > 900);
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // other keys, the admin token and anonymous callers are unaffected
    auth.authenticate(Some(&k2)).await.unwrap();
    for _ in 0..10 {
        auth.authenticate(Some(ADMIN)).await.unwrap();
    }
    // invalid keys are refused as invalid, not as rate-limited
    assert_eq!(
        auth.authenticate(Some("xr_bad")).await,
        Err(AuthError::Invalid)
    );
}
