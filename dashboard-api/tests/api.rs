//! Handler tests: the real router (`oneshot`) over every backend
//! `xray_store::testing::backends()` returns, with data written through
//! `Sink::write`.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use xray_model::{MappedBatch, Status, StepType};
use xray_store::testing::{backends, execution, step, trace_id_for};

/// Six executions over two pipelines, varied in every filtered field.
async fn list_fixture(t: &xray_store::testing::TestBackend) {
    let mut rows = Vec::new();
    for i in 0..6i64 {
        let mut e = execution(
            "default",
            &format!("exec-{i}"),
            if i % 2 == 0 { "even" } else { "odd" },
            T0 + i * 1000 * MS,
            (i + 1) * 100 * MS,
        );
        e.environment = if i < 3 { "prod" } else { "staging" }.into();
        e.service = if i == 5 { "other" } else { "svc" }.into();
        if i == 4 {
            e.status = Status::Failed;
            e.error = Some("boom".into());
        }
        e.tags = vec![format!("tag-{i}")];
        rows.push(e);
    }
    let mut running = execution("default", "exec-running", "odd", T0 + 6000 * MS, 0);
    running.status = Status::Running;
    running.end_time_ns = None;
    rows.push(running);
    // Another app's row must never show up.
    rows.push(execution(
        "other-app",
        "exec-foreign",
        "odd",
        T0 + 500 * MS,
        MS,
    ));
    write(
        t,
        MappedBatch {
            executions: rows,
            steps: vec![],
        },
    )
    .await;
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["execution_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_filters_and_order() {
    for t in backends().await {
        list_fixture(&t).await;
        let app = app(&t);
        let list = |q: String| {
            let app = app.clone();
            async move { ids(&ok(&app, &format!("/api/v1/executions{q}")).await) }
        };
        let n = t.name;
        assert_eq!(
            list(String::new()).await,
            [
                "exec-running",
                "exec-5",
                "exec-4",
                "exec-3",
                "exec-2",
                "exec-1",
                "exec-0"
            ],
            "[{n}] newest first"
        );
        assert_eq!(
            list("?pipeline=odd".into()).await,
            ["exec-running", "exec-5", "exec-3", "exec-1"]
        );
        assert_eq!(list("?status=failed".into()).await, ["exec-4"]);
        assert_eq!(list("?status=running".into()).await, ["exec-running"]);
        assert_eq!(
            list("?environment=prod".into()).await,
            ["exec-2", "exec-1", "exec-0"]
        );
        assert_eq!(list("?service=other".into()).await, ["exec-5"]);
        // from inclusive, to exclusive; unix ms and RFC 3339 both accepted.
        assert_eq!(
            list(format!("?from={}&to={}", T0_MS + 2000, T0_MS + 4000)).await,
            ["exec-3", "exec-2"]
        );
        let from = xray_dashboard_api::query::format_time(T0 + 4000 * MS);
        assert_eq!(
            list(format!("?from={from}&pipeline=even")).await,
            ["exec-4"]
        );
        // q: substring of execution id, trace id or tag.
        assert_eq!(list("?q=exec-3".into()).await, ["exec-3"]);
        assert_eq!(list("?q=tag-1".into()).await, ["exec-1"]);
        let trace = trace_id_for("exec-2");
        assert_eq!(list(format!("?q={}", &trace[4..20])).await, ["exec-2"]);
        // min_duration_ms: running executions never match.
        assert_eq!(
            list("?min_duration_ms=500".into()).await,
            ["exec-5", "exec-4"]
        );
        assert_eq!(
            list("?min_duration_ms=500&environment=staging&status=completed".into()).await,
            ["exec-5"]
        );

        let v = ok(&app, "/api/v1/executions?status=failed").await;
        let row = &v["items"][0];
        assert_eq!(row["pipeline"], "even");
        assert_eq!(row["error"], "boom");
        assert_eq!(row["duration_ms"], 500.0);
        assert_eq!(row["tags"], json!(["tag-4"]));
        assert_eq!(row["start_time"], "2023-11-14T22:13:24.000000000Z");
        assert!(row.get("input").is_none(), "list rows leave input out");
        assert!(v["next_cursor"].is_null());

        // Another app's key sees only its own rows.
        let (other, key) = new_app(&t, "Other App").await;
        assert_eq!(other, "other-app");
        let authed = app_with_auth(&t, &auth_config(false));
        let (s, v) = get_with_key(&authed, "/api/v1/executions", Some(&key)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ids(&v), ["exec-foreign"]);
    }
}

#[tokio::test]
async fn cursor_pagination_is_stable_and_tamper_proof() {
    for t in backends().await {
        list_fixture(&t).await;
        let app = app(&t);
        let mut seen = Vec::new();
        let first = ok(&app, "/api/v1/executions?limit=3").await;
        seen.extend(ids(&first));
        let cursor = first["next_cursor"].as_str().unwrap().to_string();

        // New rows arrive (newer and older) between pages.
        write(
            &t,
            MappedBatch {
                executions: vec![
                    execution("default", "late-new", "odd", T0 + 9000 * MS, MS),
                    execution("default", "late-mid", "odd", T0 + 3500 * MS, MS),
                ],
                steps: vec![],
            },
        )
        .await;
        let mut next = Some(cursor);
        while let Some(c) = next {
            let v = ok(&app, &format!("/api/v1/executions?limit=3&cursor={c}")).await;
            seen.extend(ids(&v));
            next = v["next_cursor"].as_str().map(String::from);
        }
        assert_eq!(
            seen,
            [
                "exec-running",
                "exec-5",
                "exec-4",
                "late-mid",
                "exec-3",
                "exec-2",
                "exec-1",
                "exec-0"
            ],
            "[{}] no row twice, none skipped; rows older than the cursor appear",
            t.name
        );

        let first = ok(&app, "/api/v1/executions?limit=2").await;
        let c = first["next_cursor"].as_str().unwrap();
        let mut bad = c.to_string();
        bad.insert(5, 'x');
        let (s, v) = get(&app, &format!("/api/v1/executions?cursor={bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["param"], "cursor");
        assert_eq!(v["code"], "bad_parameter");
    }
}

#[tokio::test]
async fn list_rejects_bad_parameters_by_name() {
    for t in backends().await {
        let app = app(&t);
        let cases = [
            (
                "/api/v1/executions?from=yesterday",
                "from",
                "from: expected RFC 3339 or unix milliseconds, got \"yesterday\"",
            ),
            (
                "/api/v1/executions?to=2026-13-01",
                "to",
                "to: expected RFC 3339 or unix milliseconds, got \"2026-13-01\"",
            ),
            (
                "/api/v1/executions?limit=1001",
                "limit",
                "limit: must be between 1 and 1000, got 1001",
            ),
            (
                "/api/v1/executions?status=ok",
                "status",
                "status: unknown status \"ok\" (expected running, completed, failed or skipped)",
            ),
            (
                "/api/v1/executions?min_duration_ms=fast",
                "min_duration_ms",
                "min_duration_ms: expected a non-negative integer, got \"fast\"",
            ),
            (
                "/api/v1/executions?from=2000&to=1000",
                "from",
                "from: must be earlier than to",
            ),
            (
                "/api/v1/pipelines?from=last%20week",
                "from",
                "from: expected RFC 3339 or unix milliseconds, got \"last week\"",
            ),
        ];
        for (uri, param, message) in cases {
            let (s, v) = get(&app, uri).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(v["param"], param, "{uri}");
            assert_eq!(v["message"], message, "{uri}");
        }
        let (s, v) = get(&app, "/api/v1/executions?pipline=shop").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["param"], "pipline");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("pipline: unknown query parameter (accepted: pipeline, status,"),
            "{v}"
        );
        let (s, v) = get(&app, "/api/v1/executions/x?verbose=1").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            v["message"],
            "verbose: unknown query parameter (this endpoint takes none)"
        );
        let (s, v) = get(&app, "/api/v1/executions?limit=5&limit=6").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["message"], "limit: given more than once");
    }
}

#[tokio::test]
async fn detail_is_a_timeline_tree() {
    for t in backends().await {
        write(&t, shop_run("shop-1", T0)).await;
        let app = app(&t);
        let by_id = ok(&app, "/api/v1/executions/shop-1").await;
        let by_trace = ok(
            &app,
            &format!("/api/v1/executions/{}", trace_id_for("shop-1")),
        )
        .await;
        assert_eq!(
            by_id, by_trace,
            "[{}] id and trace id give the same",
            t.name
        );

        let e = &by_id["execution"];
        assert_eq!(e["execution_id"], "shop-1");
        assert_eq!(e["pipeline"], "shop");
        assert_eq!(
            e["input"],
            json!({"query": "running shoes"}),
            "JSON input is JSON"
        );
        assert_eq!(
            e["output"], "plain text answer",
            "plain text stays a string"
        );
        assert_eq!(e["duration_ms"], 30.0);
        assert_eq!(e["step_count"], 6);
        assert_eq!(e["start_time"], "2023-11-14T22:13:20.000000000Z");

        let steps = by_id["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["search", "filters", "rank", "pick"], "[{}]", t.name);
        let filters = &steps[1];
        let kids: Vec<&str> = filters["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["price", "brand"]);
        let brand = &filters["children"][1];
        assert_eq!(brand["parent_id"], sid("shop-1", "filters"));
        assert_eq!(brand["id"], sid("shop-1", "brand"));
        assert_eq!(brand["type"], "filter");
        assert_eq!(brand["offset_ms"], 5.0);
        assert_eq!(brand["duration_ms"], 2.0);
        assert_eq!(brand["rejections"], json!({"brand_blocked": 850}));
        assert_eq!(brand["candidates"].as_array().unwrap().len(), 3);
        assert_eq!(brand["candidates"][1]["reason"], "out_of_stock");
        assert_eq!(brand["reasoning"], "blocked brands removed");
        assert_eq!(brand["children"], json!([]));
        assert_eq!(steps[0]["input"], json!({"keywords": ["running", "shoes"]}));
        assert!(steps[0]["parent_id"].is_null());

        let pick = &steps[3];
        for (k, v) in [
            ("status", json!("failed")),
            ("error", json!("model timeout")),
            ("model", json!("gpt-x")),
            ("provider", json!("openai")),
            ("input_tokens", json!(120)),
            ("output_tokens", json!(30)),
            ("cost", json!(0.002)),
            ("confidence", json!(0.7)),
            ("output", json!({"pick": "B001"})),
            ("end_time", json!("2023-11-14T22:13:20.028000000Z")),
        ] {
            assert_eq!(pick[k], v, "[{}] pick.{k}", t.name);
        }
        for field in [
            "id",
            "parent_id",
            "name",
            "type",
            "status",
            "start_time",
            "end_time",
            "offset_ms",
            "duration_ms",
            "input",
            "output",
            "reasoning",
            "metadata",
            "candidates_in",
            "candidates_out",
            "rejections",
            "candidates",
            "model",
            "provider",
            "input_tokens",
            "output_tokens",
            "cost",
            "confidence",
            "error",
            "children",
        ] {
            assert!(pick.get(field).is_some(), "step field {field} is present");
        }

        let (s, v) = get(&app, "/api/v1/executions/nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["message"], "execution \"nope\" not found");

        // Out of scope looks exactly like absent; the admin token sees all.
        let (_, key) = new_app(&t, "Someone Else").await;
        let authed = app_with_auth(&t, &auth_config(false));
        let (s, v) = get_with_key(&authed, "/api/v1/executions/shop-1", Some(&key)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["message"], "execution \"shop-1\" not found");
        let (s, _) = get_with_key(&authed, "/api/v1/executions/shop-1", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test]
async fn steps_are_flat_in_timeline_order() {
    for t in backends().await {
        write(&t, shop_run("shop-1", T0)).await;
        let app = app(&t);
        let v = ok(&app, "/api/v1/executions/shop-1/steps").await;
        assert_eq!(v["execution_id"], "shop-1");
        let rows: Vec<(String, u64)> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert!(s.get("children").is_none());
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["depth"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = [
            ("search", 0),
            ("filters", 0),
            ("price", 1),
            ("brand", 1),
            ("rank", 0),
            ("pick", 0),
        ]
        .iter()
        .map(|(n, d)| (n.to_string(), *d))
        .collect();
        assert_eq!(rows, want, "[{}]", t.name);
        let (s, _) = get(&app, "/api/v1/executions/nope/steps").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn execution_funnel_numbers_are_exact() {
    for t in backends().await {
        write(&t, shop_run("shop-1", T0)).await;
        let app = app(&t);
        let f = ok(&app, "/api/v1/executions/shop-1/funnel").await;
        let n = t.name;
        assert_eq!(f["execution_id"], "shop-1");
        assert_eq!(f["pipeline"], "shop");
        assert_eq!(f["candidates_in"], 5000, "[{n}] the retrieval's out");
        assert_eq!(f["candidates_out"], 0, "[{n}] rank's out is the last out");
        assert_eq!(f["dropped"], 5000);
        assert_eq!(f["drop_rate"], 1.0);
        let steps = f["steps"].as_array().unwrap();
        let row = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap().clone();
        assert_eq!(
            steps
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["search", "filters", "price", "brand", "rank", "pick"]
        );
        let search = row("search");
        assert_eq!(search["candidates_in"], Value::Null);
        assert_eq!(search["candidates_out"], 5000);
        assert_eq!(search["dropped"], Value::Null);
        assert_eq!(search["drop_rate"], Value::Null);
        let filters = row("filters");
        assert_eq!(
            (filters["dropped"].clone(), filters["drop_rate"].clone()),
            (json!(4900), json!(0.98))
        );
        let price = row("price");
        assert_eq!(price["depth"], 1);
        assert_eq!(price["parent_id"], sid("shop-1", "filters"));
        assert_eq!(price["dropped"], 4000);
        assert_eq!(price["drop_rate"], 0.8);
        assert_eq!(
            price["rejections"],
            json!([{"reason": "price_above_limit", "count": 4000, "source": "histogram"}])
        );
        let brand = row("brand");
        assert_eq!(brand["dropped"], 900);
        assert_eq!(brand["drop_rate"], 0.9);
        assert_eq!(
            brand["rejections"],
            json!([
                {"reason": "brand_blocked", "count": 850, "source": "histogram"},
                {"reason": "out_of_stock", "count": 1, "source": "sampled"}
            ]),
            "[{n}] sampled rejections count only for reasons the histogram lacks"
        );
        let rank = row("rank");
        assert_eq!(rank["dropped"], 0);
        assert_eq!(rank["drop_rate"], Value::Null, "[{n}] in = 0 has no rate");
        let pick = row("pick");
        assert_eq!(pick["status"], "failed");
        assert_eq!(pick["candidates_in"], Value::Null);
        assert_eq!(pick["dropped"], Value::Null);
        assert_eq!(pick["rejections"], json!([]));

        let (s, _) = get(&app, "/api/v1/executions/nope/funnel").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn pipelines_summary_over_a_window() {
    for t in backends().await {
        let mut rows = Vec::new();
        for i in 1..=20i64 {
            let mut e = execution(
                "default",
                &format!("a{i}"),
                "alpha",
                T0 + i * MS,
                i * 10 * MS,
            );
            if i % 5 == 0 {
                e.status = Status::Failed;
            }
            rows.push(e);
        }
        rows.push(execution("default", "b1", "beta", T0 + 2 * MS, 7 * MS));
        rows.push(execution(
            "default",
            "b-late",
            "beta",
            T0 + 5000 * MS,
            7 * MS,
        ));
        write(
            &t,
            MappedBatch {
                executions: rows,
                steps: vec![],
            },
        )
        .await;
        let app = app(&t);
        let v = ok(
            &app,
            &format!("/api/v1/pipelines?from={}&to={}", T0_MS, T0_MS + 1000),
        )
        .await;
        assert_eq!(v["from"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(v["to"], "2023-11-14T22:13:21.000000000Z");
        let p = v["pipelines"].as_array().unwrap();
        assert_eq!(p.len(), 2, "[{}]", t.name);
        assert_eq!(p[0]["pipeline"], "alpha");
        assert_eq!(p[0]["executions"], 20);
        assert_eq!(p[0]["failed"], 4);
        assert_eq!(p[0]["failure_rate"], 0.2);
        assert_eq!(p[0]["p50_duration_ms"], 100.0);
        assert_eq!(p[0]["p95_duration_ms"], 190.0);
        assert_eq!(p[0]["p99_duration_ms"], 200.0);
        assert_eq!(p[0]["last_seen"], "2023-11-14T22:13:20.020000000Z");
        assert_eq!(p[1]["pipeline"], "beta");
        assert_eq!(p[1]["executions"], 1, "the late run is outside the window");

        // Default window is the last 24 hours: these 2023 rows are outside.
        let v = ok(&app, "/api/v1/pipelines").await;
        assert_eq!(v["pipelines"], json!([]));
    }
}

#[tokio::test]
async fn pipeline_funnel_aggregates_per_step() {
    for t in backends().await {
        // Three runs of `shop`: shop_run twice, plus a run with a failed
        // filter and a second `rank` run.
        let mut batch = shop_run("s1", T0);
        batch.extend(shop_run("s2", T0 + 100 * MS));
        let mut e = execution("default", "s3", "shop", T0 + 200 * MS, 40 * MS);
        e.status = Status::Failed;
        let mut search = step(&e, "search", StepType::Retrieval, MS, 3 * MS);
        search.candidates_out = Some(200);
        let mut price = step(&e, "price", StepType::Filter, 5 * MS, 4 * MS);
        price.candidates_in = Some(200);
        price.candidates_out = Some(150);
        price.status = Status::Failed;
        price.rejections.insert("price_above_limit".into(), 40);
        price.rejections.insert("stale".into(), 10);
        let mut rank = step(&e, "rank", StepType::Rank, 10 * MS, 5 * MS);
        rank.candidates_in = Some(150);
        rank.candidates_out = Some(15);
        let mut rank2 = step(&e, "rank", StepType::Rank, 20 * MS, 5 * MS);
        rank2.span_id = "00000000000000aa".into();
        rank2.candidates_in = Some(15);
        rank2.candidates_out = Some(3);
        batch.extend(MappedBatch {
            executions: vec![e],
            steps: vec![search, price, rank, rank2],
        });
        // Another pipeline and another app must not leak in.
        let mut other = shop_run("x1", T0);
        other.executions[0].pipeline = "other".into();
        batch.extend(other);
        write(&t, batch).await;

        let app = app(&t);
        let v = ok(
            &app,
            &format!(
                "/api/v1/pipelines/shop/funnel?from={}&to={}",
                T0_MS,
                T0_MS + 1000
            ),
        )
        .await;
        assert_eq!(v["pipeline"], "shop");
        let steps = v["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        // Ordered by mean offset: search 1, filters 2, price (3,3,5)=3.67,
        // brand 5, rank (10,10,10,20)=12.5, pick 20.
        assert_eq!(
            names,
            ["search", "filters", "price", "brand", "rank", "pick"],
            "[{}]",
            t.name
        );
        let row = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap().clone();
        let price = row("price");
        assert_eq!(price["type"], "filter");
        assert_eq!(price["executions"], 3);
        assert_eq!(price["runs"], 3);
        assert_eq!(price["failed"], 1);
        assert_eq!(price["failure_rate"], 1.0 / 3.0);
        assert_eq!(price["runs_with_counts"], 3);
        assert_eq!(price["total_candidates_in"], 10200);
        assert_eq!(price["total_candidates_out"], 2150);
        assert_eq!(price["mean_candidates_in"], 3400.0);
        assert_eq!(price["mean_drop_rate"], (0.8 + 0.8 + 0.25) / 3.0);
        assert_eq!(price["p50_duration_ms"], 2.0);
        assert_eq!(price["p95_duration_ms"], 4.0);
        assert_eq!(
            price["top_rejections"],
            json!([
                {"reason": "price_above_limit", "count": 8040},
                {"reason": "stale", "count": 10}
            ])
        );
        let brand = row("brand");
        assert_eq!(
            brand["top_rejections"],
            json!([
                {"reason": "brand_blocked", "count": 1700},
                {"reason": "out_of_stock", "count": 2}
            ])
        );
        let rank = row("rank");
        assert_eq!(rank["executions"], 3);
        assert_eq!(rank["runs"], 4);
        assert_eq!(rank["total_candidates_in"], 165);
        assert_eq!(rank["total_candidates_out"], 18);
        // in = 0 runs are left out of the mean drop rate: (0.9 + 0.8) / 2.
        assert_eq!(rank["mean_drop_rate"], (0.9 + 0.8) / 2.0);
        let pick = row("pick");
        assert_eq!(pick["runs_with_counts"], 0);
        assert_eq!(pick["mean_candidates_in"], Value::Null);
        assert_eq!(pick["mean_drop_rate"], Value::Null);
        assert_eq!(pick["failure_rate"], 1.0);

        let v = ok(
            &app,
            &format!(
                "/api/v1/pipelines/nothing/funnel?from={}&to={}",
                T0_MS,
                T0_MS + 1000
            ),
        )
        .await;
        assert_eq!(v["steps"], json!([]));
        let (s, v) = get(&app, "/api/v1/pipelines/shop/funnel?window=1h").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["param"], "window");
    }
}

#[tokio::test]
async fn diff_compares_runs_of_one_pipeline() {
    for t in backends().await {
        let mut a = shop_run("run-a", T0);
        let mut b = shop_run("run-b", T0 + 100 * MS);
        // In b the price filter keeps more, the LLM step succeeds and an
        // extra step runs.
        let price = b.steps.iter_mut().find(|s| s.name == "price").unwrap();
        price.candidates_out = Some(1500);
        price.rejections.insert("price_above_limit".into(), 3500);
        let pick = b.steps.iter_mut().find(|s| s.name == "pick").unwrap();
        pick.status = Status::Completed;
        pick.error = None;
        b.executions[0].status = Status::Failed;
        let extra = step(&b.executions[0], "explain", StepType::Llm, 29 * MS, MS);
        b.steps.push(extra);
        a.extend(b);
        let mut other = shop_run("other-pipe", T0);
        other.executions[0].pipeline = "search".into();
        a.extend(other);
        write(&t, a).await;

        let app = app(&t);
        let d = ok(&app, "/api/v1/executions/run-a/diff/run-b").await;
        assert_eq!(d["a"]["execution_id"], "run-a");
        assert_eq!(d["b"]["execution_id"], "run-b");
        assert_eq!(d["changed_fields"], json!(["status", "step_count"]));
        let rows: Vec<(String, String)> = d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["change"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("search", "unchanged"),
            ("filters", "unchanged"),
            ("price", "changed"),
            ("brand", "unchanged"),
            ("rank", "unchanged"),
            ("pick", "changed"),
            ("explain", "added"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(rows, want, "[{}]", t.name);
        let price = &d["steps"][2];
        assert_eq!(
            price["changed_fields"],
            json!(["candidates_out", "rejections"])
        );
        assert_eq!(price["a"]["candidates_out"], 1000);
        assert_eq!(price["b"]["candidates_out"], 1500);
        assert_eq!(price["duration_delta_ms"], 0.0);
        assert_eq!(d["steps"][5]["changed_fields"], json!(["status"]));

        // By trace id too.
        let d2 = ok(
            &app,
            &format!("/api/v1/executions/{}/diff/run-b", trace_id_for("run-a")),
        )
        .await;
        assert_eq!(d2["steps"], d["steps"]);

        let (s, v) = get(&app, "/api/v1/executions/run-a/diff/other-pipe").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            v["message"],
            "cannot diff executions of different pipelines: run-a is \"shop\", other-pipe is \"search\""
        );
        let (s, v) = get(&app, "/api/v1/executions/run-a/diff/nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["message"], "execution \"nope\" not found");
    }
}

#[tokio::test]
async fn health_and_unknown_routes() {
    for t in backends().await {
        let app = app(&t);
        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, json!("ok")));
        assert_eq!(get(&app, "/readyz").await, (StatusCode::OK, json!("ready")));
        let (s, v) = get(&app, "/api/v1/nothing-here").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["message"], "no route for GET /api/v1/nothing-here");
    }
}
