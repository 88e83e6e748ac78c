//! The endpoints compatible with the earlier X-Ray services, end to end
//! over real sockets: a real `Collector` (ingest on its OTLP/HTTP listener)
//! and the dashboard API (reads) share one real store and one
//! authenticator. Every backend available to the run (SQLite always,
//! ClickHouse and Postgres when `XRAY_TEST_CLICKHOUSE_URL` /
//! `XRAY_TEST_POSTGRES_URL` are set) gets the same checks: every endpoint,
//! every listed error body, a revoked key, cross-app isolation, unknown run
//! event types reported, aliases accepted, duplicates stored once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use xray_collector::Collector;
use xray_config::{ApiConfig, AuthConfig};
use xray_dashboard_api::{AppState, router};
use xray_store::testing::TestBackend;
use xray_store::{Scope, Sink, Store};

const ADMIN: &str = "legacy-admin-token-0123456789abcdef";

struct Env {
    t: TestBackend,
    collector: Collector,
    api: SocketAddr,
    auth: xray_auth::Authenticator,
    http: reqwest::Client,
    /// The collector's spool (kept until the test ends).
    _spool: tempfile::TempDir,
}

impl Env {
    async fn start(t: TestBackend, required: bool) -> Env {
        let mut config = xray_config::Config::default();
        config.receivers.otlp.grpc_addr = "127.0.0.1:0".into();
        config.receivers.otlp.http_addr = "127.0.0.1:0".into();
        config.pipeline.flush_interval_ms = 20;
        // Each collector its own spool, not `xray-data/spool` in the crate folder.
        let spool = tempfile::tempdir().unwrap();
        config.pipeline.spool_dir = spool.path().display().to_string();
        config.auth = AuthConfig {
            required,
            admin_token: ADMIN.into(),
            ..AuthConfig::default()
        };
        let store: Arc<dyn Store> = t.backend.clone();
        let auth = xray_auth::Authenticator::new(&config.auth, store.clone());
        let sink: Arc<dyn Sink> = t.backend.clone();
        let collector = Collector::start(&config, sink, Vec::new(), auth.clone())
            .await
            .expect("collector starts");
        let app = router(AppState::new(store, ApiConfig::default()).with_auth(auth.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Env {
            t,
            collector,
            api,
            auth,
            http: reqwest::Client::new(),
            _spool: spool,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, url);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("[{}] not JSON ({status}): {text}", self.t.name));
        (status, v)
    }

    /// POSTs `body` to the collector's `path`.
    async fn ingest(&self, path: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.ingest_raw(path, key, serde_json::to_vec(body).unwrap())
            .await
    }

    async fn ingest_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let url = format!("http://{}{path}", self.collector.http_addr());
        self.send(reqwest::Method::POST, url, key, Some(body)).await
    }

    /// GETs the API's `path`.
    async fn read(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let url = format!("http://{}{path}", self.api);
        self.send(reqwest::Method::GET, url, key, None).await
    }

    /// Waits until the API answers `path` with 200 and `done(body)`.
    async fn eventually(&self, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..250 {
            let (status, body) = self.read(path, Some(key)).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "[{}] {path} never got there; last answer {last}",
            self.t.name
        );
    }
}

fn snapshot(id: &str, pipeline: &str, steps: bool) -> Value {
    let mut body = json!({
        "executionId": id, "appId": "whatever", "pipeline": pipeline, "environment": "prod",
        "status": "completed",
        "timestamps": {"start": 1714564800000u64, "end": 1714564801000u64}
    });
    if steps {
        body["steps"] = json!([
            {"name": "keywords", "timestamp": 1714564800100u64, "input": {"title": "shoes"},
             "output": ["a", "b"], "status": "completed", "reasoning": "from the title",
             "metadata": {"model": "gpt-4o"}},
            {"name": "filter", "timestamp": 1714564800500u64, "input": ["B1", "B2", "B3"],
             "output": ["B2"], "status": "completed", "reasoning": "price"},
            {"name": "select", "timestamp": 1714564800900u64, "output": "B2"}
        ]);
    }
    body
}

async fn check_backend(t: TestBackend) {
    let name = t.name;
    let env = Env::start(t, true).await;
    let store = env.t.backend.as_ref();
    let (a, key_a) = xray_auth::create_app(store, "Legacy Shop").await.unwrap();
    let (b, key_b) = xray_auth::create_app(store, "Legacy Other").await.unwrap();

    // --- A. snapshot service ---
    let body = snapshot("exec-1", "ranking", true);
    let (s, v) = env.ingest("/executions", None, &body).await;
    assert_eq!(
        (s, &v),
        (
            StatusCode::UNAUTHORIZED,
            &json!({"error": "Missing API key"})
        ),
        "[{name}]"
    );
    let wrong = format!("xr_{}", "A".repeat(32));
    let (s, v) = env.ingest("/executions", Some(&wrong), &body).await;
    assert_eq!(
        (s, &v),
        (
            StatusCode::UNAUTHORIZED,
            &json!({"error": "Invalid API key"})
        ),
        "[{name}]"
    );
    let (s, v) = env
        .ingest_raw("/executions", Some(&key_a), b"{not json".to_vec())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "[{name}] {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{v}"
    );
    let (s, v) = env
        .ingest("/executions", Some(&key_a), &json!({"pipeline": "x"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v,
        json!({"error": "executionId: required: a non-empty string"})
    );
    for _ in 0..2 {
        let (s, v) = env.ingest("/executions", Some(&key_a), &body).await;
        assert_eq!(
            (s, v),
            (StatusCode::OK, json!({"success": true})),
            "[{name}]"
        );
    }
    let (s, _) = env
        .ingest(
            "/executions",
            Some(&key_a),
            &snapshot("exec-empty", "nightly", false),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // the same legacy id in another app is another execution
    let (s, _) = env
        .ingest(
            "/executions",
            Some(&key_b),
            &snapshot("exec-1", "other-pipeline", false),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let detail = env
        .eventually("/api/v1/executions/exec-1", &key_a, |v| {
            v["steps"].as_array().is_some_and(|s| !s.is_empty())
        })
        .await;
    assert_eq!(
        detail["execution"]["pipeline"], "ranking",
        "[{name}] {detail}"
    );
    assert_eq!(detail["execution"]["app"], a.id.as_str());
    let empty = env
        .eventually("/api/v1/executions/exec-empty", &key_a, |_| true)
        .await;
    assert_eq!(empty["steps"], json!([]), "[{name}] no steps");
    let other = env
        .eventually("/api/v1/executions/exec-1", &key_b, |_| true)
        .await;
    assert_eq!(other["execution"]["pipeline"], "other-pipeline", "[{name}]");
    assert_eq!(other["execution"]["app"], b.id.as_str());
    // stored once although sent twice
    let list = env
        .eventually("/api/v1/executions?limit=100", &key_a, |v| {
            v["items"].as_array().is_some_and(|i| i.len() >= 2)
        })
        .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "[{name}] {list}"
    );
    let stored = store
        .get_execution(&Scope::App(a.id.clone()), "exec-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.steps.len(), 3, "[{name}] duplicates stored once");
    let filter = stored.steps.iter().find(|s| s.name == "filter").unwrap();
    assert_eq!(
        (filter.candidates_in, filter.candidates_out),
        (Some(3), Some(1))
    );

    // POST /apps with the admin token
    let req = json!({"userId": "user-42", "name": "Migrated App"});
    let (s, v) = env.ingest("/apps", None, &req).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Missing API key"})
        )
    );
    let (s, v) = env.ingest("/apps", Some(&key_a), &req).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = env
        .ingest("/apps", Some(ADMIN), &json!({"userId": "u"}))
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "name: required: a non-empty string"})
        )
    );
    let (s, created) = env.ingest("/apps", Some(ADMIN), &req).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["user_id"], "user-42");
    assert_eq!(created["name"], "Migrated App");
    assert_eq!(created["id"], "migrated-app");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let new_key = created["api_key"].as_str().unwrap().to_string();
    assert!(xray_auth::is_well_formed_key(&new_key));
    let (s, _) = env
        .ingest(
            "/executions",
            Some(&new_key),
            &snapshot("exec-new", "p", false),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "[{name}] the new app's key ingests");

    // --- B. event service ---
    let ev = json!({"event_type": "llm_call", "trace_id": "trace-1", "span_id": "span-1",
        "timestamp": "2024-05-01T12:00:00Z", "duration_ms": 420, "service": "ranker",
        "reasoning": {"summary": "cheapest", "confidence": 0.8},
        "model": {"provider": "openai", "name": "gpt-4o", "temperature": 0.2},
        "input": {"raw_prompt": "rank", "input_tokens": 812},
        "output": {"response_text": "B2", "output_tokens": 64}, "customer": "acme"});
    let (s, v) = env.ingest("/v1/events", Some(&key_a), &ev).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["span_id"], "span-1");
    let (s, v) = env.ingest("/v1/events", None, &ev).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Missing API key"})
        )
    );
    let (s, v) = env
        .ingest("/v1/events/batch", Some(&key_a), &json!({"events": 3}))
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "events: expected an array, got 3"})
        )
    );
    let batch = json!({"events": [
        {"event_type": "decision", "trace_id": "trace-1", "span_id": "span-2", "parent_span_id": "span-1",
         "timestamp": "2024-05-01T12:00:01Z", "duration_ms": 5, "service": "decider",
         "reasoning": {"summary": "accept"}},
        {"event_type": "custom", "trace_id": "trace-1", "timestamp": "2024-05-01T12:00:02Z",
         "service": "ranker"}
    ]});
    let (s, v) = env.ingest("/v1/events/batch", Some(&key_a), &batch).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2);
    let generated = v["span_ids"][1].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 16, "a missing span_id is generated");
    // a re-sent event with a span_id replaces itself
    let (s, _) = env.ingest("/v1/events", Some(&key_a), &ev).await;
    assert_eq!(s, StatusCode::OK);

    let events = env
        .eventually("/v1/events?trace_id=trace-1", &key_a, |v| {
            v["events"].as_array().is_some_and(|e| e.len() >= 3)
        })
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "[{name}] {events:?}");
    assert_eq!(events[0]["event_type"], "llm_call");
    assert_eq!(events[0]["span_id"], "span-1");
    assert_eq!(events[0]["model"]["temperature"], 0.2);
    assert_eq!(events[0]["input"]["input_tokens"], 812);
    assert_eq!(events[0]["customer"], "acme", "extra fields come back");
    assert_eq!(events[1]["parent_span_id"], "span-1");
    assert_eq!(events[2]["span_id"], generated.as_str());
    let (s, one) = env.read("/v1/events/span-2", Some(&key_a)).await;
    assert_eq!(s, StatusCode::OK, "[{name}] {one}");
    assert_eq!(one["trace_id"], "trace-1");
    assert_eq!(one["reasoning"]["summary"], "accept");
    assert_eq!(one["service"], "decider");
    let (s, v) = env.read("/v1/events/span-2", Some(&key_b)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "[{name}] isolation: {v}");
    assert!(v["error"].is_string());
    let (s, _) = env.read("/v1/events?trace_id=trace-1", Some(&key_b)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "[{name}] isolation");
    let (s, v) = env.read("/v1/events", Some(&key_a)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("trace_id"), "{v}");
    let (s, v) = env.read("/v1/traces", None).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Missing API key"})
        )
    );
    let traces = env.read("/v1/traces?limit=100", Some(&key_a)).await.1;
    let t1 = traces["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace_id"] == "trace-1")
        .unwrap_or_else(|| panic!("[{name}] trace-1 missing in {traces}"));
    assert_eq!(t1["event_count"], 3);
    assert_eq!(t1["services"], json!(["decider", "ranker"]));
    assert_eq!(t1["first_timestamp"], "2024-05-01T12:00:00.000000000Z");
    assert_eq!(t1["last_timestamp"], "2024-05-01T12:00:02.000000000Z");
    let traces_b = env.read("/v1/traces", Some(&key_b)).await.1;
    assert!(
        traces_b["traces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["trace_id"] != "trace-1"),
        "[{name}] isolation: {traces_b}"
    );

    // --- C. run service ---
    let start = json!({"events": [
        {"type": "run_started", "data": {"id": "run-1", "name": "lead-scoring", "status": "RUNNING",
          "tags": ["nightly"], "started_at": "2024-05-01T12:00:00"}},
        {"type": "step_start", "data": {"id": "s1", "run_id": "run-1", "name": "score-filter",
          "type": "filter", "inputs": [1, 2, 3, 4], "started_at": "2024-05-01T12:00:01"}}
    ]});
    let (s, v) = env.ingest("/ingest", Some(&key_a), &start).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"status": "ok", "processed": 2})),
        "[{name}]"
    );
    let steps = json!({"events": [
        {"type": "step_end", "data": {"id": "s1", "run_id": "run-1",
          "outputs": {"kept": [2], "rejected": [{"reason": "low_score"}, {"reason": "low_score"}, {"reason": "dup"}]},
          "cost": 0.004, "completed_at": "2024-05-01T12:00:02"}},
        {"type": "heartbeat", "data": {}},
        {"type": "heartbeat"}
    ]});
    let (s, v) = env.ingest("/ingest", Some(&key_a), &steps).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::OK,
            json!({"status": "ok", "processed": 1, "skipped": 2,
            "unknown_event_types": {"heartbeat": 2}})
        ),
        "[{name}]"
    );
    // sent at once, before the earlier rows are written: the collector
    // remembers the runs it saw, so the completion keeps the name
    let done = json!({"events": [{"type": "run_completed", "data": {"id": "run-1", "completed_at": "2024-05-01T12:00:03"}}]});
    let (s, _) = env.ingest("/ingest", Some(&key_a), &done).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env.ingest("/ingest", None, &done).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Missing API key"})
        )
    );
    let (s, v) = env
        .ingest(
            "/ingest",
            Some(&key_a),
            &json!({"events": [{"type": "step_start", "data": {"id": "x"}}]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "events[0].data.run_id: required: a non-empty string"})
        )
    );

    // The completion and the step's end came in separate requests, which
    // may reach the store in separate batches: wait for both.
    let run = env
        .eventually("/runs/run-1", &key_a, |v| {
            v["status"] == "COMPLETED" && v["total_cost"] == 0.004
        })
        .await;
    assert_eq!(
        run["name"], "lead-scoring",
        "[{name}] the completion kept the name: {run}"
    );
    assert_eq!(run["tags"], json!(["nightly"]));
    assert_eq!(run["started_at"], "2024-05-01T12:00:00.000000000Z");
    assert_eq!(run["completed_at"], "2024-05-01T12:00:03.000000000Z");
    assert_eq!(run["total_cost"], 0.004);
    let runs = env.read("/runs?limit=500", Some(&key_a)).await.1;
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.iter().filter(|i| **i == "run-1").count(),
        1,
        "[{name}] one run: {ids:?}"
    );
    let (s, v) = env.read("/runs?limit=0", Some(&key_a)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().starts_with("limit"), "{v}");
    let steps = env.read("/runs/run-1/steps", Some(&key_a)).await.1;
    assert_eq!(steps[0]["id"], "s1");
    assert_eq!(steps[0]["type"], "filter");
    assert_eq!(steps[0]["inputs"], json!([1, 2, 3, 4]));
    let analysis = env.read("/analyze/run-1", Some(&key_a)).await.1;
    assert_eq!(analysis["steps"][0]["input_count"], 4, "{analysis}");
    assert_eq!(analysis["steps"][0]["output_count"], 1);
    assert_eq!(analysis["steps"][0]["drop_rate"], 0.75);
    assert_eq!(
        analysis["rejection_histogram"],
        json!({"dup": 1, "low_score": 2})
    );
    assert_eq!(analysis["final_output"]["kept"], json!([2]));
    for path in ["/runs/run-1", "/runs/run-1/steps", "/analyze/run-1"] {
        let (s, v) = env.read(path, Some(&key_b)).await;
        assert_eq!(
            (s, v),
            (StatusCode::NOT_FOUND, json!({"detail": "Run not found"})),
            "[{name}] {path}"
        );
    }
    assert!(
        env.read("/runs", Some(&key_b))
            .await
            .1
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "run-1"),
        "[{name}] isolation of /runs"
    );
    // the run shows in /api/v1 too
    let v1 = env.read("/api/v1/executions/run-1", Some(&key_a)).await.1;
    assert_eq!(v1["execution"]["status"], "completed");

    // --- a revoked key stops working on every endpoint ---
    let (record, second) = xray_auth::create_key(store, &a.id).await.unwrap();
    let (s, _) = env.ingest("/ingest", Some(&second), &done).await;
    assert_eq!(s, StatusCode::OK);
    assert!(env.auth.revoke_key(&record.id).await.unwrap());
    let invalid = |style: &str| json!({ style: "Invalid API key" });
    let (s, v) = env.ingest("/ingest", Some(&second), &done).await;
    assert_eq!(
        (s, v),
        (StatusCode::UNAUTHORIZED, invalid("detail")),
        "[{name}] revoked"
    );
    let (s, v) = env.ingest("/executions", Some(&second), &body).await;
    assert_eq!(
        (s, v),
        (StatusCode::UNAUTHORIZED, invalid("error")),
        "[{name}] revoked"
    );
    let (s, v) = env.ingest("/v1/events", Some(&second), &ev).await;
    assert_eq!(
        (s, v),
        (StatusCode::UNAUTHORIZED, invalid("error")),
        "[{name}] revoked"
    );
    let (s, v) = env.read("/runs", Some(&second)).await;
    assert_eq!(
        (s, v),
        (StatusCode::UNAUTHORIZED, invalid("detail")),
        "[{name}] revoked"
    );
    let (s, v) = env.read("/v1/traces", Some(&second)).await;
    assert_eq!(
        (s, v),
        (StatusCode::UNAUTHORIZED, invalid("error")),
        "[{name}] revoked"
    );
    env.collector.shutdown().await.unwrap();
}

/// With `auth.required = false`, anonymous legacy data goes to app
/// `default` and anonymous reads see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_data_goes_to_the_default_app() {
    let env = Env::start(xray_store::testing::sqlite().await, false).await;
    let (s, _) = env
        .ingest("/executions", None, &snapshot("anon-1", "p", true))
        .await;
    assert_eq!(s, StatusCode::OK);
    let body = json!({"events": [{"type": "run_start", "data": {"id": "anon-run", "name": "n"}}]});
    let (s, _) = env.ingest("/ingest", None, &body).await;
    assert_eq!(s, StatusCode::OK);
    let url = format!("http://{}/runs/anon-run", env.api);
    let mut found = false;
    for _ in 0..250 {
        let (s, v) = env
            .send(reqwest::Method::GET, url.clone(), None, None)
            .await;
        if s == StatusCode::OK {
            assert_eq!(v["status"], "RUNNING");
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(found, "anonymous run not readable");
    let d = env
        .t
        .backend
        .get_execution(&Scope::App(xray_model::DEFAULT_APP.into()), "anon-1")
        .await
        .unwrap()
        .expect("stored in app default");
    assert_eq!(d.steps.len(), 3);
    env.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_on_every_backend() {
    for t in xray_store::testing::backends().await {
        check_backend(t).await;
    }
}
