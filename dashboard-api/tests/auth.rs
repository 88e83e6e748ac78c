//! Authentication of the dashboard API over a real socket, on every backend
//! `xray_store::testing::backends()` returns: per-app isolation of every
//! read, the admin API, `auth.required`, revocation across two replicas
//! (two routers, each with its own authenticator and cache, over one
//! store), and the per-key rate limit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use xray_config::{ApiConfig, AuthConfig, RateLimitConfig};
use xray_dashboard_api::{AppState, router};
use xray_model::{MappedBatch, StepType};
use xray_store::Store;
use xray_store::testing::{TestBackend, backends, execution, step};

/// A router over `t` with `auth`, served on a free port.
async fn serve(t: &TestBackend, auth: &AuthConfig) -> Api {
    let store: Arc<dyn Store> = t.backend.clone();
    let authenticator = xray_auth::Authenticator::new(auth, store.clone());
    let app = router(AppState::new(store, ApiConfig::default()).with_auth(authenticator));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        self.call("GET", path, key, None).await
    }

    /// GET that must answer 200.
    async fn ok(&self, path: &str, key: Option<&str>) -> Value {
        let a = self.get(path, key).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.body);
        a.body
    }
}

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["app"].as_str().unwrap(),
                i["execution_id"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    ids
}

/// A's run `a-1` and `shared`; B's `b-1` (same pipeline as `a-1`), `b-2`
/// (a pipeline of its own), its own `shared`, and a step of B that claims
/// A's trace id.
async fn two_apps(t: &TestBackend, a: &str, b: &str) -> MappedBatch {
    let run = |app: &str, id: &str, pipeline: &str, offset: i64, reason: &str| {
        let e = execution(app, id, pipeline, T0 + offset * MS, 30 * MS);
        let mut s = step(&e, "filter", StepType::Filter, MS, 2 * MS);
        s.candidates_in = Some(100);
        s.candidates_out = Some(10);
        s.rejections.insert(reason.into(), 90);
        (e, s)
    };
    let (a1, a1s) = run(a, "a-1", "checkout", 0, "a_reason");
    let (a2, a2s) = run(a, "shared", "checkout", 1, "a_reason");
    let (b1, b1s) = run(b, "b-1", "checkout", 2, "b_reason");
    let (b2, b2s) = run(b, "b-2", "b-pipeline", 3, "b_reason");
    let (mut b3, b3s) = run(b, "shared", "b-pipeline", 4, "b_reason");
    b3.trace_id = xray_store::testing::trace_id_for("b-shared");
    let mut intruder = step(&a1, "intruder", StepType::Llm, 3 * MS, MS);
    intruder.app = b.into();
    let batch = MappedBatch {
        executions: vec![a1, a2, b1, b2, b3],
        steps: vec![a1s, a2s, b1s, b2s, b3s, intruder],
    };
    write(t, batch.clone()).await;
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_read_only_their_own_app_on_every_backend() {
    for t in backends().await {
        let n = t.name;
        let (a, key_a) = new_app(&t, "Shop A").await;
        let (b, key_b) = new_app(&t, "Shop B").await;
        let batch = two_apps(&t, &a, &b).await;
        let trace_b1 = batch.executions[2].trace_id.clone();
        let api = serve(&t, &auth_config(true)).await;
        let window = format!("from={}&to={}", T0_MS - 1000, T0_MS + 60_000);

        // lists
        let list = api.ok("/api/v1/executions", Some(&key_a)).await;
        assert_eq!(ids(&list), ["shop-a/a-1", "shop-a/shared"], "[{n}]");
        let list = api.ok("/api/v1/executions", Some(&key_b)).await;
        assert_eq!(
            ids(&list),
            ["shop-b/b-1", "shop-b/b-2", "shop-b/shared"],
            "[{n}]"
        );
        for q in ["q=b-1", "pipeline=b-pipeline", "q=b-"] {
            let list = api
                .ok(&format!("/api/v1/executions?{q}"), Some(&key_a))
                .await;
            assert_eq!(ids(&list), Vec::<String>::new(), "[{n}] ?{q} leaks");
        }
        let all = api.ok("/api/v1/executions", Some(ADMIN)).await;
        assert_eq!(
            all["items"].as_array().unwrap().len(),
            5,
            "[{n}] admin sees all"
        );

        // one execution, by id and by trace id: B's look unknown to A
        let own = api.ok("/api/v1/executions/a-1", Some(&key_a)).await;
        let names: Vec<&str> = own["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["filter"], "[{n}] B's step on A's trace stays B's");
        let shared = api.ok("/api/v1/executions/shared", Some(&key_a)).await;
        assert_eq!(shared["execution"]["app"], "shop-a", "[{n}]");
        assert_eq!(shared["execution"]["pipeline"], "checkout", "[{n}]");
        let shared = api.ok("/api/v1/executions/shared", Some(&key_b)).await;
        assert_eq!(shared["execution"]["pipeline"], "b-pipeline", "[{n}]");
        for (foreign, unknown) in [
            ("b-1", "b-9"),
            (trace_b1.as_str(), "0123456789abcdef0123456789abcdef"),
        ] {
            for suffix in ["", "/steps", "/funnel", "/diff/a-1"] {
                let got = api
                    .get(
                        &format!("/api/v1/executions/{foreign}{suffix}"),
                        Some(&key_a),
                    )
                    .await;
                let none = api
                    .get(
                        &format!("/api/v1/executions/{unknown}{suffix}"),
                        Some(&key_a),
                    )
                    .await;
                assert_eq!(got.status, StatusCode::NOT_FOUND, "[{n}] {foreign}{suffix}");
                assert_eq!(
                    none.status,
                    StatusCode::NOT_FOUND,
                    "[{n}] {unknown}{suffix}"
                );
                assert_eq!(
                    got.body.to_string(),
                    none.body.to_string().replace(unknown, foreign),
                    "[{n}] another app's id answers exactly like an unknown one"
                );
                assert_eq!(
                    got.headers.get("content-type"),
                    none.headers.get("content-type")
                );
            }
            // and as the second run of a diff
            let got = api
                .get(
                    &format!("/api/v1/executions/a-1/diff/{foreign}"),
                    Some(&key_a),
                )
                .await;
            assert_eq!(got.status, StatusCode::NOT_FOUND, "[{n}]");
            // B reads its own
            api.ok(
                &format!("/api/v1/executions/{foreign}/funnel"),
                Some(&key_b),
            )
            .await;
        }
        api.ok("/api/v1/executions/b-1", Some(ADMIN)).await;

        // pipelines and pipeline funnels
        let p = api
            .ok(&format!("/api/v1/pipelines?{window}"), Some(&key_a))
            .await;
        let pipes: Vec<(&str, u64)> = p["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pipeline"].as_str().unwrap(),
                    p["executions"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pipes,
            [("checkout", 2)],
            "[{n}] B's runs of checkout are not counted"
        );
        let f = api
            .ok(
                &format!("/api/v1/pipelines/checkout/funnel?{window}"),
                Some(&key_a),
            )
            .await;
        let steps = f["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1, "[{n}] {f}");
        assert_eq!(steps[0]["executions"], 2, "[{n}] {f}");
        assert!(!f.to_string().contains("b_reason"), "[{n}] {f}");
        assert!(!f.to_string().contains("intruder"), "[{n}] {f}");
        let f = api
            .ok(
                &format!("/api/v1/pipelines/b-pipeline/funnel?{window}"),
                Some(&key_a),
            )
            .await;
        assert_eq!(
            f["steps"],
            json!([]),
            "[{n}] another app's pipeline is empty"
        );
        let p = api
            .ok(&format!("/api/v1/pipelines?{window}"), Some(ADMIN))
            .await;
        assert_eq!(p["pipelines"].as_array().unwrap().len(), 2, "[{n}]");

        // app keys cannot use the admin API
        let a = api.get("/api/v1/apps", Some(&key_a)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "[{n}]");
        assert_eq!(a.body["code"], "forbidden");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_auth_refuses_missing_and_invalid_keys() {
    for t in backends().await {
        let n = t.name;
        let (_, key) = new_app(&t, "Shop").await;
        let required = serve(&t, &auth_config(true)).await;
        let optional = serve(&t, &auth_config(false)).await;

        let a = required.get("/api/v1/executions", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "[{n}]");
        assert_eq!(
            a.body,
            json!({"code": "unauthorized", "message": "Missing API key"})
        );
        let wrong = format!("xr_{}", "Q".repeat(32));
        for api in [&required, &optional] {
            for bad in [wrong.as_str(), "garbage", &ADMIN[1..]] {
                let a = api.get("/api/v1/executions", Some(bad)).await;
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "[{n}] {bad}");
                assert_eq!(
                    a.body,
                    json!({"code": "unauthorized", "message": "Invalid API key"})
                );
            }
            // x-api-key works as well as the bearer form
            let resp = api
                .client
                .get(format!("{}/api/v1/executions", api.base))
                .header("x-api-key", &key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "[{n}]");
        }
        // anonymous reads with auth optional see app "default"
        write(&t, shop_run("anon-1", T0)).await;
        let list = optional.ok("/api/v1/executions", None).await;
        assert_eq!(ids(&list), ["default/anon-1"], "[{n}]");
        let list = optional.ok("/api/v1/executions", Some(&key)).await;
        assert_eq!(ids(&list), Vec::<String>::new(), "[{n}]");

        // open routes stay open
        for path in ["/healthz", "/readyz", "/api/openapi.json", "/api/docs"] {
            let a = required.get(path, None).await;
            assert_eq!(a.status, StatusCode::OK, "[{n}] {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_manages_apps_and_keys_on_every_backend() {
    for t in backends().await {
        let n = t.name;
        let api = serve(&t, &auth_config(true)).await;

        // create: the key in clear, once
        let a = api
            .call(
                "POST",
                "/api/v1/apps",
                Some(ADMIN),
                Some(r#"{"name": "Checkout Ranking"}"#),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "[{n}] {}", a.body);
        let created = a.body;
        assert_eq!(created["id"], "checkout-ranking");
        assert_eq!(created["name"], "Checkout Ranking");
        let key = created["key"]["key"].as_str().unwrap().to_string();
        let key_id = created["key"]["id"].as_str().unwrap().to_string();
        assert!(xray_auth::is_well_formed_key(&key));
        assert_eq!(created["key"]["prefix"], &key[..9]);
        assert_eq!(created["key"]["app_id"], "checkout-ranking");
        // the key works at once
        api.ok("/api/v1/executions", Some(&key)).await;

        // a second key, then the list: ids and prefixes, no key, no hash
        let a = api
            .call(
                "POST",
                "/api/v1/apps/checkout-ranking/keys",
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "[{n}] {}", a.body);
        let key2 = a.body["key"].as_str().unwrap().to_string();
        let key2_id = a.body["id"].as_str().unwrap().to_string();
        let list = api.ok("/api/v1/apps", Some(ADMIN)).await;
        let text = list.to_string();
        for secret in [&key, &key2] {
            assert!(!text.contains(secret.as_str()), "[{n}] {text}");
            assert!(!text.contains(&xray_auth::hash_key(secret)), "[{n}] {text}");
        }
        let apps = list["apps"].as_array().unwrap();
        assert_eq!(apps.len(), 1, "[{n}] {list}");
        let keys: Vec<&str> = apps[0]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap())
            .collect();
        assert_eq!(keys, [key_id.as_str(), key2_id.as_str()], "[{n}]");
        assert!(apps[0]["keys"][0]["revoked_at"].is_null());

        // revoke: refused at once on this replica, the other key still works
        let a = api
            .call(
                "DELETE",
                &format!("/api/v1/keys/{key_id}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{n}] {}", a.body);
        assert_eq!(a.body, json!({"id": key_id, "revoked": true}));
        let a = api.get("/api/v1/executions", Some(&key)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "[{n}]");
        api.ok("/api/v1/executions", Some(&key2)).await;
        let list = api.ok("/api/v1/apps", Some(ADMIN)).await;
        assert!(
            list["apps"][0]["keys"][0]["revoked_at"].is_string(),
            "[{n}]"
        );
        // revoking again is fine
        let a = api
            .call(
                "DELETE",
                &format!("/api/v1/keys/{key_id}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{n}]");

        // errors
        let cases: [(&str, &str, Option<&str>, StatusCode, &str); 6] = [
            (
                "POST",
                "/api/v1/apps/nope/keys",
                None,
                StatusCode::NOT_FOUND,
                "no app with id \"nope\"",
            ),
            (
                "DELETE",
                "/api/v1/keys/key_nope",
                None,
                StatusCode::NOT_FOUND,
                "no API key with id \"key_nope\"",
            ),
            (
                "POST",
                "/api/v1/apps",
                Some("not json"),
                StatusCode::BAD_REQUEST,
                "invalid request body: ",
            ),
            (
                "POST",
                "/api/v1/apps",
                Some("{}"),
                StatusCode::BAD_REQUEST,
                "invalid request body: missing field `name`",
            ),
            (
                "POST",
                "/api/v1/apps",
                Some(r#"{"name":"x","owner":1}"#),
                StatusCode::BAD_REQUEST,
                "invalid request body: unknown field `owner`",
            ),
            (
                "POST",
                "/api/v1/apps",
                Some(r#"{"name":"  "}"#),
                StatusCode::BAD_REQUEST,
                "name: the name must not be empty",
            ),
        ];
        for (method, path, body, status, message) in cases {
            let a = api.call(method, path, Some(ADMIN), body).await;
            assert_eq!(a.status, status, "[{n}] {method} {path}: {}", a.body);
            assert!(
                a.body["message"].as_str().unwrap().starts_with(message),
                "[{n}] {method} {path}: {}",
                a.body
            );
        }

        // only the admin token manages apps
        for (method, path) in [
            ("GET", "/api/v1/apps"),
            ("POST", "/api/v1/apps"),
            ("POST", "/api/v1/apps/checkout-ranking/keys"),
            ("DELETE", &format!("/api/v1/keys/{key2_id}")),
        ] {
            let body = (method == "POST").then_some(r#"{"name":"x"}"#);
            let a = api.call(method, path, Some(&key2), body).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "[{n}] {method} {path}");
            assert!(
                a.body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("this endpoint needs the admin token"),
                "{}",
                a.body
            );
            let a = api.call(method, path, None, body).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "[{n}] {method} {path}");
        }
        api.ok("/api/v1/executions", Some(&key2)).await;

        // without an admin token configured, anonymous callers are told why
        let no_admin = serve(&t, &AuthConfig::default()).await;
        let a = no_admin.get("/api/v1/apps", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(
            a.body["message"]
                .as_str()
                .unwrap()
                .contains("set auth.admin_token"),
            "{}",
            a.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_replica_within_the_ttl() {
    for t in backends().await {
        let n = t.name;
        let (_, key) = new_app(&t, "Replicated").await;
        let cfg = AuthConfig {
            cache_ttl_ms: 300,
            ..auth_config(true)
        };
        // two replicas over one store, each with its own cache
        let one = serve(&t, &cfg).await;
        let two = serve(&t, &cfg).await;
        one.ok("/api/v1/executions", Some(&key)).await;
        two.ok("/api/v1/executions", Some(&key)).await; // now cached on two
        let list = one.ok("/api/v1/apps", Some(ADMIN)).await;
        let key_id = list["apps"][0]["keys"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let a = one
            .call(
                "DELETE",
                &format!("/api/v1/keys/{key_id}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{n}]");
        assert_eq!(
            one.get("/api/v1/executions", Some(&key)).await.status,
            StatusCode::UNAUTHORIZED,
            "[{n}] the revoking replica refuses at once"
        );
        // the other one refuses once its cache entry expires (polled, with
        // a deadline well above the TTL: no timing assertion)
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = two.get("/api/v1/executions", Some(&key)).await;
            if a.status == StatusCode::UNAUTHORIZED {
                assert_eq!(a.body["message"], "Invalid API key");
                break;
            }
            assert_eq!(a.status, StatusCode::OK, "[{n}]");
            assert!(
                Instant::now() < deadline,
                "[{n}] the second replica still accepts the revoked key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_per_key_with_retry_after() {
    let t = xray_store::testing::sqlite().await;
    let (_, key_a) = new_app(&t, "Busy").await;
    let (_, key_b) = new_app(&t, "Quiet").await;
    // 3 requests at once, then one every 20 s: the test never waits for a refill
    let cfg = AuthConfig {
        rate_limit: RateLimitConfig {
            requests_per_sec: 0.05,
            burst: 3,
        },
        ..auth_config(true)
    };
    let api = serve(&t, &cfg).await;
    for _ in 0..3 {
        api.ok("/api/v1/executions", Some(&key_a)).await;
    }
    let a = api.get("/api/v1/executions", Some(&key_a)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["code"], "rate_limited");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded for this API key; retry in "),
        "{}",
        a.body
    );
    // another key has its own bucket; the admin token is not limited
    for _ in 0..3 {
        api.ok("/api/v1/executions", Some(&key_b)).await;
    }
    for _ in 0..5 {
        api.ok("/api/v1/executions", Some(ADMIN)).await;
    }
}
