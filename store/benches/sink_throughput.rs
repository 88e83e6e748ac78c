//! Sink throughput: realistic step rows written in batches to SQLite (a
//! fresh file in a temporary directory, always), ClickHouse
//! (`XRAY_TEST_CLICKHOUSE_URL`) and Postgres (`XRAY_TEST_POSTGRES_URL`),
//! each into a fresh database. Prints rows/s and MB/s per backend.
//!
//! ```sh
//! XRAY_TEST_CLICKHOUSE_URL=$(dev/clickhouse-server/start.sh) \
//! XRAY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p xray-store --bench sink_throughput
//! ```
//!
//! Options through the environment: `BENCH_BATCHES` (default 20),
//! `BENCH_BATCH_ROWS` (default 20000, the batcher's default `batch_max_rows`),
//! `BENCH_LLM_BYTES` (default 0: extra prompt/output text on each LLM step's
//! input and output, to model the 0.5–4 KB prompts the load generator sends),
//! `BENCH_BACKENDS` (comma list of `sqlite,clickhouse,postgres`; default all
//! that are reachable).
//! Results are recorded in `docs/benchmarks.md`.

#![allow(clippy::print_stdout, missing_docs)]

use std::time::Instant;

use xray_model::{
    CandidateDecision, Decision, Execution, MappedBatch, Metadata, Rejections, Status, Step,
    StepType,
};
use xray_store::Sink;

const STEP_NAMES: [(&str, StepType); 6] = [
    ("generate_keywords", StepType::Llm),
    ("search_catalog", StepType::Retrieval),
    ("filter_price", StepType::Filter),
    ("filter_rating", StepType::Filter),
    ("rank_relevance", StepType::Rank),
    ("pick_best", StepType::Select),
];

/// One batch: executions of 6 steps each (the steps share the batch with
/// their execution, as the SDK sends them), `rows` rows in all.
fn batch(seq: usize, rows: usize, llm_bytes: usize) -> MappedBatch {
    let pad = "lorem ipsum ".repeat(llm_bytes / 12 + 1)[..llm_bytes].to_string();
    let t0 = 1_763_000_000_000_000_000i64 + (seq as i64) * 1_000_000_000;
    let mut b = MappedBatch::default();
    let per_exec = STEP_NAMES.len() + 1;
    for x in 0..rows / per_exec {
        let n = seq * rows + x;
        let trace = format!("{n:032x}");
        let span = format!("{n:016x}");
        let start = t0 + (x as i64) * 1_000;
        b.executions.push(Execution {
            app: "bench".into(),
            execution_id: trace.clone(),
            trace_id: trace.clone(),
            span_id: span.clone(),
            pipeline: "product_search".into(),
            environment: "prod".into(),
            service: "search-api".into(),
            status: Status::Completed,
            start_time_ns: start,
            end_time_ns: Some(start + 850_000_000),
            input: Some(format!(
                r#"{{"query":"waterproof hiking boots size {x}","user":"u-{n}","locale":"en-GB"}}"#
            )),
            output: Some(
                r#"{"product_id":"B07XJ8C8F5","title":"Trail Runner GTX","price":129.99}"#.into(),
            ),
            error: None,
            tags: vec!["beta".into(), "eu-west-1".into()],
            metadata: Metadata::from([
                ("customer".to_string(), "acme".to_string()),
                ("experiment".to_string(), "ranker-v7".to_string()),
            ]),
            step_count: STEP_NAMES.len() as u32,
            ingest_time_ns: start + 900_000_000,
            version: 1,
        });
        for (i, (name, step_type)) in STEP_NAMES.iter().enumerate() {
            let s_start = start + (i as i64) * 100_000_000;
            let cin = 5000u64 >> i;
            b.steps.push(Step {
                app: "bench".into(),
                execution_id: trace.clone(),
                trace_id: trace.clone(),
                span_id: format!("{:016x}", n * 8 + i + 1),
                parent_span_id: span.clone(),
                name: (*name).into(),
                step_type: *step_type,
                status: Status::Completed,
                service: "search-api".into(),
                start_time_ns: s_start,
                end_time_ns: Some(s_start + 90_000_000),
                input: Some(if *step_type == StepType::Llm && llm_bytes > 0 {
                    format!(r#"{{"prompt":"{pad}"}}"#)
                } else {
                    format!(r#"{{"candidates":{cin},"filters":{{"max_price":150,"min_rating":4.2}},"keywords":["waterproof","hiking","boots"]}}"#)
                }),
                output: Some(if *step_type == StepType::Llm && llm_bytes > 0 {
                    format!(r#"{{"completion":"{pad}"}}"#)
                } else {
                    format!(r#"{{"kept":{},"top":["B07XJ8C8F5","B08L5WRWNW","B09G9FPHY6"]}}"#, cin / 2)
                }),
                reasoning: Some("Dropped items above the price cap and below the rating floor; kept the rest in catalog order.".into()),
                metadata: Metadata::from([
                    ("index".to_string(), "catalog-2026-11".to_string()),
                    ("shard".to_string(), format!("{}", n % 16)),
                    ("latency_bucket".to_string(), "p50".to_string()),
                ]),
                candidates_in: Some(cin),
                candidates_out: Some(cin / 2),
                rejections: Rejections::from([
                    ("price_above_limit".to_string(), cin / 4),
                    ("rating_below_floor".to_string(), cin / 8),
                    ("out_of_stock".to_string(), cin / 8),
                ]),
                candidates: (0..5)
                    .map(|k| CandidateDecision {
                        id: format!("B0{k}XJ8C8F5"),
                        decision: if k == 0 { Decision::Selected } else { Decision::Rejected },
                        reason: (k > 0).then(|| "price_above_limit".to_string()),
                        score: Some(0.9 - k as f64 * 0.1),
                    })
                    .collect(),
                model: (*step_type == StepType::Llm).then(|| "gpt-4o-mini".to_string()),
                provider: (*step_type == StepType::Llm).then(|| "openai".to_string()),
                input_tokens: (*step_type == StepType::Llm).then_some(412),
                output_tokens: (*step_type == StepType::Llm).then_some(37),
                cost: Some(0.00021),
                confidence: Some(0.82),
                error: None,
                version: 1,
            });
        }
    }
    b
}

async fn run(name: &str, sink: &dyn Sink, batches: usize, rows: usize, llm_bytes: usize) {
    let data: Vec<MappedBatch> = (0..batches).map(|i| batch(i, rows, llm_bytes)).collect();
    // One warm-up batch (connections, schema fetch), not counted.
    sink.write(&batch(batches + 1, rows, llm_bytes))
        .await
        .expect("warm-up write");
    let total: usize = data.iter().map(MappedBatch::len).sum();
    let bytes: usize = data.iter().map(text_bytes).sum();
    let started = Instant::now();
    for b in &data {
        sink.write(b).await.expect("write");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<11} {batches} batches x {rows} rows: {total} rows in {secs:.2} s = {:.0} rows/s, {:.1} MB/s of text",
        total as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// Bytes of input, output and reasoning text in a batch.
fn text_bytes(b: &MappedBatch) -> usize {
    let len = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    b.executions
        .iter()
        .map(|e| len(&e.input) + len(&e.output))
        .sum::<usize>()
        + b.steps
            .iter()
            .map(|s| len(&s.input) + len(&s.output) + len(&s.reasoning))
            .sum::<usize>()
}

fn wanted(backend: &str) -> bool {
    std::env::var("BENCH_BACKENDS").map_or(true, |v| v.split(',').any(|b| b.trim() == backend))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs this with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let batches = env_usize("BENCH_BATCHES", 20);
    let rows = env_usize("BENCH_BATCH_ROWS", 20_000);
    let llm_bytes = env_usize("BENCH_LLM_BYTES", 0);
    if wanted("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = xray_store::sqlite::SqliteBackend::open(dir.path().join("bench.db"))
            .await
            .expect("open sqlite");
        run("sqlite", &db, batches, rows, llm_bytes).await;
    }
    if wanted("clickhouse")
        && let Some(db) = xray_store::clickhouse::testing::isolated().await
    {
        run("clickhouse", &db.backend, batches, rows, llm_bytes).await;
    }
    if wanted("postgres")
        && let Some(db) = xray_store::postgres::testing::isolated().await
    {
        run("postgres", &db.backend, batches, rows, llm_bytes).await;
    }
}
