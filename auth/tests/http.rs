//! The axum side: the middleware and the JSON error answers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tower::ServiceExt;
use xray_auth::{Authenticator, Principal};
use xray_config::{AuthConfig, RateLimitConfig};
use xray_store::{Scope, Store};

const ADMIN: &str = "admin-token-for-tests-0123456789";

fn app(auth: Authenticator) -> Router {
    Router::new()
        .route(
            "/who",
            get(
                |Extension(p): Extension<Principal>, Extension(s): Extension<Scope>| async move {
                    format!("{p:?} {s:?}")
                },
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            auth,
            xray_auth::http::middleware,
        ))
}

async fn call(router: Router, headers: &[(&str, &str)]) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/who");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn middleware_sets_the_principal_or_answers_json_errors() {
    let t = xray_store::testing::sqlite().await;
    let store: Arc<dyn Store> = t.backend.clone();
    let (app_rec, key) = xray_auth::create_app(store.as_ref(), "shop").await.unwrap();
    let auth = Authenticator::new(
        &AuthConfig {
            required: true,
            admin_token: ADMIN.into(),
            rate_limit: RateLimitConfig {
                requests_per_sec: 0.001,
                burst: 2,
            },
            ..AuthConfig::default()
        },
        store,
    );
    let r = app(auth);

    let (s, _, body) = call(r.clone(), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"error":"Missing API key"}"#);

    let (s, _, body) = call(r.clone(), &[("x-api-key", "xr_nope")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"error":"Invalid API key"}"#);

    let (s, _, body) = call(r.clone(), &[("x-api-key", &key)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, format!("App(\"{0}\") App(\"{0}\")", app_rec.id));

    let bearer = format!("Bearer {key}");
    let (s, _, _) = call(r.clone(), &[("authorization", &bearer)]).await;
    assert_eq!(s, StatusCode::OK);

    // the burst of 2 is used up
    let (s, retry, body) = call(r.clone(), &[("x-api-key", &key)]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(retry > 900, "{retry}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded for this API key"),
        "{body}"
    );

    let admin = format!("Bearer {ADMIN}");
    let (s, _, body) = call(r, &[("authorization", &admin)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, "Admin All");
}
