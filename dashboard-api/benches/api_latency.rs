//! Latency of the dashboard API over a large store (SQLite or ClickHouse).
//!
//! Loads `XRAY_BENCH_EXECUTIONS` executions (default 100,000) with 10 steps
//! each through `Sink::write` (batches of `XRAY_BENCH_BATCH` executions,
//! default 2,000), then sends requests to the real router in process
//! (`oneshot`, so JSON rendering is included, the network is not) and prints
//! p50/p99 per endpoint as a Markdown table. An existing store with the right
//! row count is reused, so the load is paid once.
//!
//! - `XRAY_BENCH_BACKEND=sqlite` (default): a SQLite file (`XRAY_BENCH_DB`,
//!   default `target/xray-bench/api-<N>.db`).
//! - `XRAY_BENCH_BACKEND=clickhouse`: database `xray_bench_<N>` (or
//!   `XRAY_BENCH_CLICKHOUSE_DATABASE`) on the server of
//!   `XRAY_BENCH_CLICKHOUSE_URL` (default `XRAY_TEST_CLICKHOUSE_URL`), kept
//!   forever (TTL off). The table then also gives the round trip of a
//!   trivial query (`SELECT 1`), the per-query floor of the server: the
//!   dev server of `dev/clickhouse-server` answers each query from Python.
//!
//! ```text
//! XRAY_BENCH_EXECUTIONS=100000 cargo bench -p xray-dashboard-api --bench api_latency
//! XRAY_BENCH_BACKEND=clickhouse XRAY_BENCH_CLICKHOUSE_URL=http://127.0.0.1:8123 \
//!   XRAY_BENCH_EXECUTIONS=1000000 cargo bench -p xray-dashboard-api --bench api_latency
//! ```
//!
//! `XRAY_BENCH_STEPS_FIRST=1` writes each batch's steps before its
//! executions, in a write of their own, as when spans are exported before
//! their parent: on ClickHouse no step is then attributed at write time and
//! the pipeline funnel joins every step (the database name gets `_steps_first`).
//!
//! Data: 5 pipelines; executions spread evenly over the 24 hours before a
//! fixed instant; each with a retrieval step, a logic step with three nested
//! filters (rejection histograms and 3 sampled decisions each), a ranker, an
//! LLM step with tokens, and two more steps. Results go in
//! `docs/benchmarks.md`.

#![allow(clippy::print_stdout, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use xray_config::{ApiConfig, BackendKind, ClickhouseConfig, StorageConfig};
use xray_dashboard_api::{AppState, router};
use xray_model::{
    CandidateDecision, Decision, Execution, MappedBatch, Metadata, Rejections, Status, Step,
    StepType,
};
use xray_store::{ExecutionFilter, PageRequest, Scope, SharedBackend, Store};

const MS: i64 = 1_000_000;
/// End of the data's 24-hour span (2026-01-01T00:00:00Z).
const END_NS: i64 = 1_767_225_600_000_000_000;
const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;
const PIPELINES: [&str; 5] = ["shop", "support", "search", "ads", "recs"];
const STEPS_PER_EXECUTION: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn hex(n: u64, width: usize) -> String {
    format!("{n:0width$x}")
}

fn run(i: usize, n: usize) -> (Execution, Vec<Step>) {
    let start = END_NS - DAY_NS + (i as i64) * (DAY_NS / n as i64);
    let id = format!("exec-{i:08}");
    let trace = hex(0xabc0_0000_0000_0000 ^ i as u64, 32);
    let exec_span = hex(1 + (i as u64) * 16, 16);
    let pipeline = PIPELINES[i % PIPELINES.len()];
    let failed = i.is_multiple_of(23);
    let exec = Execution {
        app: "default".into(),
        execution_id: id.clone(),
        trace_id: trace.clone(),
        span_id: exec_span.clone(),
        pipeline: pipeline.into(),
        environment: if i.is_multiple_of(3) {
            "staging"
        } else {
            "prod"
        }
        .into(),
        service: format!("{pipeline}-api"),
        status: if failed {
            Status::Failed
        } else {
            Status::Completed
        },
        start_time_ns: start,
        end_time_ns: Some(start + (50 + (i % 400) as i64) * MS),
        input: Some(format!(r#"{{"query":"item {i}","user":"u{}"}}"#, i % 1000)),
        output: Some(format!(r#"{{"pick":"SKU-{}"}}"#, i % 5000)),
        error: failed.then(|| "ranker timed out".to_string()),
        tags: vec![format!("user-{}", i % 1000), "bench".into()],
        metadata: Metadata::new(),
        step_count: 0,
        ingest_time_ns: start,
        version: 1,
    };
    let mk = |k: usize, name: &str, t: StepType, parent: &str, off: i64, dur: i64| Step {
        app: "default".into(),
        execution_id: id.clone(),
        trace_id: trace.clone(),
        span_id: hex(1 + (i as u64) * 16 + 1 + k as u64, 16),
        parent_span_id: parent.into(),
        name: name.into(),
        step_type: t,
        status: Status::Completed,
        service: exec.service.clone(),
        start_time_ns: start + off * MS,
        end_time_ns: Some(start + (off + dur) * MS),
        input: Some(format!(r#"{{"step":"{name}","n":{k}}}"#)),
        output: Some(format!(r#"{{"kept":{}}}"#, 10 * k)),
        reasoning: Some(format!("{name} applied its rules")),
        metadata: Metadata::new(),
        candidates_in: None,
        candidates_out: None,
        rejections: Rejections::new(),
        candidates: vec![],
        model: None,
        provider: None,
        input_tokens: None,
        output_tokens: None,
        cost: None,
        confidence: None,
        error: None,
        version: 1,
    };
    let pool = 1000 + (i % 4000) as u64;
    let mut steps = Vec::with_capacity(STEPS_PER_EXECUTION);
    let mut s = mk(0, "keywords", StepType::Llm, &exec_span, 1, 5);
    s.model = Some("model-a".into());
    s.input_tokens = Some(200);
    s.output_tokens = Some(20);
    steps.push(s);
    let mut s = mk(1, "search", StepType::Retrieval, &exec_span, 6, 8);
    s.candidates_out = Some(pool);
    steps.push(s);
    let mut filters = mk(2, "filters", StepType::Logic, &exec_span, 14, 12);
    filters.candidates_in = Some(pool);
    filters.candidates_out = Some(pool / 20);
    let filters_id = filters.span_id.clone();
    steps.push(filters);
    let mut cin = pool;
    for (k, (name, reason, keep)) in [
        ("price", "price_above_limit", 2u64),
        ("stock", "out_of_stock", 2),
        ("brand", "brand_blocked", 5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = mk(
            3 + k,
            name,
            StepType::Filter,
            &filters_id,
            15 + 3 * k as i64,
            3,
        );
        let out = cin / keep;
        s.candidates_in = Some(cin);
        s.candidates_out = Some(out);
        s.rejections.insert(reason.into(), cin - out);
        s.candidates = (0..3)
            .map(|c| CandidateDecision {
                id: format!("SKU-{c}"),
                decision: if c == 0 {
                    Decision::Accepted
                } else {
                    Decision::Rejected
                },
                reason: (c > 0).then(|| reason.to_string()),
                score: Some(0.1 * c as f64),
            })
            .collect();
        cin = out;
        steps.push(s);
    }
    let mut s = mk(6, "rank", StepType::Rank, &exec_span, 27, 10);
    s.candidates_in = Some(cin);
    s.candidates_out = Some(10.min(cin));
    s.status = if failed {
        Status::Failed
    } else {
        Status::Completed
    };
    steps.push(s);
    let mut s = mk(7, "pick", StepType::Select, &exec_span, 38, 6);
    s.model = Some("model-b".into());
    s.input_tokens = Some(900);
    s.output_tokens = Some(40);
    s.cost = Some(0.004);
    s.confidence = Some(0.8);
    steps.push(s);
    steps.push(mk(8, "explain", StepType::Llm, &exec_span, 44, 4));
    steps.push(mk(9, "log", StepType::Tool, &exec_span, 48, 1));
    (exec, steps)
}

async fn load(backend: &SharedBackend, n: usize, steps_first: bool) {
    let batch_execs = env_usize("XRAY_BENCH_BATCH", 2_000);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut batch = MappedBatch::default();
        for j in i..(i + batch_execs).min(n) {
            let (e, s) = run(j, n);
            batch.executions.push(e);
            batch.steps.extend(s);
        }
        if steps_first {
            let steps = MappedBatch {
                executions: Vec::new(),
                steps: std::mem::take(&mut batch.steps),
            };
            backend.write(&steps).await.expect("write steps");
        }
        backend.write(&batch).await.expect("write batch");
        i += batch_execs;
        if (i / batch_execs).is_multiple_of(25) {
            let rate = i as f64 / started.elapsed().as_secs_f64();
            eprintln!("loaded {i}/{n} executions ({rate:.0}/s)");
        }
    }
    eprintln!(
        "loaded {n} executions, {} steps in {:.1?}",
        n * STEPS_PER_EXECUTION,
        started.elapsed()
    );
}

async fn count(backend: &SharedBackend) -> usize {
    // Walk the newest page to see if anything is there, then count by
    // pipelines over the whole span.
    let p = backend
        .pipelines(
            &Scope::App("default".into()),
            xray_store::TimeWindow {
                from_ns: END_NS - 2 * DAY_NS,
                to_ns: END_NS + DAY_NS,
            },
        )
        .await
        .expect("count");
    p.iter().map(|p| p.executions as usize).sum()
}

async fn time(app: &Router, uri: &str) -> Duration {
    let t = Instant::now();
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let d = t.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    d
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn measure(app: &Router, label: &str, uris: Vec<String>) {
    // One warm-up pass over a few requests.
    for u in uris.iter().take(3) {
        time(app, u).await;
    }
    let mut d = Vec::with_capacity(uris.len());
    for u in &uris {
        d.push(time(app, u).await);
    }
    d.sort();
    println!(
        "| {label} | {} | {} | {} |",
        uris.len(),
        ms(pct(&d, 0.50)),
        ms(pct(&d, 0.99))
    );
}

fn main() {
    let n = env_usize("XRAY_BENCH_EXECUTIONS", 100_000);
    let reqs = env_usize("XRAY_BENCH_REQUESTS", 200);
    let clickhouse = std::env::var("XRAY_BENCH_BACKEND").as_deref() == Ok("clickhouse");
    let steps_first = std::env::var("XRAY_BENCH_STEPS_FIRST").as_deref() == Ok("1");
    let shape = if steps_first { "_steps_first" } else { "" };
    let mut storage = StorageConfig::default();
    let path = std::env::var("XRAY_BENCH_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../target".into());
            PathBuf::from(dir)
                .join("xray-bench")
                .join(format!("api-{n}{shape}.db"))
        });
    if clickhouse {
        let url = std::env::var("XRAY_BENCH_CLICKHOUSE_URL")
            .or_else(|_| std::env::var("XRAY_TEST_CLICKHOUSE_URL"))
            .expect("XRAY_BENCH_BACKEND=clickhouse needs XRAY_BENCH_CLICKHOUSE_URL");
        storage.backend = BackendKind::Clickhouse;
        storage.clickhouse = ClickhouseConfig {
            url,
            database: std::env::var("XRAY_BENCH_CLICKHOUSE_DATABASE")
                .unwrap_or_else(|_| format!("xray_bench_{n}{shape}")),
            ttl_days: 0,
            ..ClickhouseConfig::default()
        };
    } else {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        storage.sqlite.path = path.display().to_string();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let backend = xray_store::open(&storage).await.expect("open the store");
        let have = count(&backend).await;
        let what = xray_store::describe(&storage);
        if have != n {
            assert_eq!(
                have, 0,
                "{what} holds {have} executions, not {n}: remove it"
            );
            load(&backend, n, steps_first).await;
        } else {
            eprintln!("reusing {what} ({n} executions)");
        }
        let size = if clickhouse {
            String::new()
        } else {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            format!(
                ", SQLite file {:.1} GiB",
                bytes as f64 / (1u64 << 30) as f64
            )
        };
        let store: Arc<dyn Store> = backend.clone();
        let app = router(AppState::new(store, ApiConfig::default()));
        let ids: Vec<String> = (0..reqs)
            .map(|k| format!("exec-{:08}", (k * 7919 + 13) % n))
            .collect();

        // A cursor deep in the list, for a "page 100" figure.
        let mut deep = PageRequest {
            limit: 50,
            after: None,
        };
        let pages = 100.min(n / 50 - 1);
        for _ in 0..pages {
            let p = backend
                .list_executions(
                    &Scope::App("default".into()),
                    &ExecutionFilter::default(),
                    &deep,
                )
                .await
                .unwrap();
            deep.after = p.next;
        }
        let deep = xray_dashboard_api::query::encode_cursor(&deep.after.unwrap());

        let from_ms = (END_NS - DAY_NS) / MS;
        let to_ms = END_NS / MS;
        println!(
            "\n{what}: {n} executions, {} steps{size}, {reqs} requests per row\n",
            n * STEPS_PER_EXECUTION,
        );
        println!("| request | n | p50 ms | p99 ms |\n|---|---|---|---|");
        if clickhouse {
            let mut d = Vec::with_capacity(reqs);
            for _ in 0..reqs {
                let t = Instant::now();
                backend.ping().await.expect("ping");
                d.push(t.elapsed());
            }
            d.sort();
            println!(
                "| `SELECT 1` round trip (server floor per query) | {reqs} | {} | {} |",
                ms(pct(&d, 0.50)),
                ms(pct(&d, 0.99))
            );
        }
        measure(
            &app,
            "list, first page (50)",
            vec!["/api/v1/executions".into(); reqs],
        )
        .await;
        measure(
            &app,
            "list, pipeline + status filter",
            PIPELINES
                .iter()
                .cycle()
                .take(reqs)
                .map(|p| format!("/api/v1/executions?pipeline={p}&status=completed"))
                .collect(),
        )
        .await;
        measure(
            &app,
            &format!("list, page {} via cursor", pages + 1),
            vec![format!("/api/v1/executions?cursor={deep}"); reqs],
        )
        .await;
        measure(
            &app,
            "list, q = tag substring",
            (0..reqs.min(50))
                .map(|k| format!("/api/v1/executions?q=user-{k}&limit=20"))
                .collect(),
        )
        .await;
        measure(
            &app,
            "detail (timeline tree)",
            ids.iter()
                .map(|i| format!("/api/v1/executions/{i}"))
                .collect(),
        )
        .await;
        measure(
            &app,
            "detail by trace id",
            (0..reqs)
                .map(|k| {
                    format!(
                        "/api/v1/executions/{}",
                        hex(0xabc0_0000_0000_0000 ^ ((k * 7919 + 13) % n) as u64, 32)
                    )
                })
                .collect(),
        )
        .await;
        measure(
            &app,
            "execution funnel",
            ids.iter()
                .map(|i| format!("/api/v1/executions/{i}/funnel"))
                .collect(),
        )
        .await;
        let funnel_reqs = env_usize("XRAY_BENCH_FUNNEL_REQUESTS", 10);
        measure(
            &app,
            "pipeline funnel, 1 h window",
            (0..funnel_reqs)
                .map(|k| {
                    let p = PIPELINES[k % PIPELINES.len()];
                    format!(
                        "/api/v1/pipelines/{p}/funnel?from={}&to={}",
                        to_ms - 3_600_000,
                        to_ms
                    )
                })
                .collect(),
        )
        .await;
        measure(
            &app,
            "pipeline funnel, 24 h window",
            (0..funnel_reqs)
                .map(|k| {
                    let p = PIPELINES[k % PIPELINES.len()];
                    format!("/api/v1/pipelines/{p}/funnel?from={from_ms}&to={to_ms}")
                })
                .collect(),
        )
        .await;
        measure(
            &app,
            "pipelines, 24 h window",
            vec![format!("/api/v1/pipelines?from={from_ms}&to={to_ms}"); funnel_reqs],
        )
        .await;
    });
}
