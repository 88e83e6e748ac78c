//! Store faults that a real backend cannot be made to produce on demand: a
//! store that is down (readiness 503, API 503) and one that fails with an
//! internal error (500 whose body hides the details).

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use xray_config::ApiConfig;
use xray_dashboard_api::{AppState, router};
use xray_model::{ApiKey, App};
use xray_store::{
    ExecutionDetail, ExecutionFilter, ExecutionPage, PageRequest, PipelineStepStats,
    PipelineSummary, Scope, Store, StoreError, TimeWindow,
};

/// Fails every call with the error `make` builds.
struct Broken(fn() -> StoreError);

#[async_trait]
impl Store for Broken {
    async fn ping(&self) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn list_executions(
        &self,
        _: &Scope,
        _: &ExecutionFilter,
        _: &PageRequest,
    ) -> Result<ExecutionPage, StoreError> {
        Err((self.0)())
    }
    async fn get_execution(
        &self,
        _: &Scope,
        _: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError> {
        Err((self.0)())
    }
    async fn pipelines(
        &self,
        _: &Scope,
        _: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError> {
        Err((self.0)())
    }
    async fn pipeline_funnel(
        &self,
        _: &Scope,
        _: &str,
        _: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        Err((self.0)())
    }
    async fn steps_by_span_id(
        &self,
        _: &Scope,
        _: &str,
        _: u32,
    ) -> Result<Vec<xray_model::Step>, StoreError> {
        Err((self.0)())
    }
    async fn create_app(&self, _: &App) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        Err((self.0)())
    }
    async fn get_app(&self, _: &str) -> Result<Option<App>, StoreError> {
        Err((self.0)())
    }
    async fn create_api_key(&self, _: &ApiKey) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn list_api_keys(&self, _: &str) -> Result<Vec<ApiKey>, StoreError> {
        Err((self.0)())
    }
    async fn api_key_by_hash(&self, _: &str) -> Result<Option<ApiKey>, StoreError> {
        Err((self.0)())
    }
    async fn revoke_api_key(&self, _: &str, _: i64) -> Result<bool, StoreError> {
        Err((self.0)())
    }
}

async fn call(store: Broken, uri: &str) -> (StatusCode, String) {
    let app = router(AppState::new(Arc::new(store), ApiConfig::default()));
    let resp = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn readiness_reports_an_unreachable_store() {
    let down = || StoreError::Unavailable("connection refused".into());
    let (s, body) = call(Broken(down), "/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: store unavailable: connection refused");
    let (s, _) = call(Broken(down), "/healthz").await;
    assert_eq!(s, StatusCode::OK, "liveness does not depend on the store");
    let (s, body) = call(Broken(down), "/api/v1/executions").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        r#"{"code":"unavailable","message":"store unavailable"}"#
    );
}

#[tokio::test]
async fn internal_errors_are_hidden() {
    let broken = || StoreError::Backend("no such table: executions_v2 at /var/lib/secret".into());
    for uri in [
        "/api/v1/executions",
        "/api/v1/executions/x",
        "/api/v1/executions/x/steps",
        "/api/v1/executions/x/funnel",
        "/api/v1/executions/x/diff/y",
        "/api/v1/pipelines",
        "/api/v1/pipelines/p/funnel",
    ] {
        let (s, body) = call(Broken(broken), uri).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(
            body, r#"{"code":"internal","message":"internal error"}"#,
            "{uri}"
        );
    }
    // Parameter errors are reported before the store is asked.
    let (s, body) = call(Broken(broken), "/api/v1/executions?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("limit: must be between 1 and 1000, got 0"));
}
