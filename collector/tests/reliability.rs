//! Reliability of the collector's pipeline over real sockets and real
//! stores: the spool survives store outages and restarts and replays
//! exactly once (on every backend), a torn last record is skipped,
//! permanent store errors go to the dead-letter file without blocking the
//! queue, and overload is answered with 429 / `RESOURCE_EXHAUSTED` instead
//! of unbounded memory, with recovery afterwards.
//!
//! Store faults come from [`Gate`], a sink in front of the real store that
//! can make writes fail the way an unreachable store (retryable) or a store
//! refusing the data (permanent) does.

mod common;

use common::kv;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic_types::StatusExt;
use xray_collector::Collector;
use xray_model::MappedBatch;
use xray_store::testing::TestBackend;
use xray_store::{ExecutionFilter, PageRequest, Scope, Sink, SinkError, TimeWindow};

const OPEN: u8 = 0;
const DOWN: u8 = 1;
const REJECT_POISON: u8 = 2;

/// The real store behind a switch: open, down (every write fails as
/// retryable, like a refused connection), or refusing batches holding a
/// `poison` execution (permanent, like a type mismatch).
struct Gate {
    inner: Arc<dyn Sink>,
    mode: Arc<AtomicU8>,
}

#[async_trait::async_trait]
impl Sink for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        match self.mode.load(Ordering::SeqCst) {
            DOWN => Err(SinkError::Retryable {
                sink: "gate".into(),
                message: "connection refused".into(),
            }),
            REJECT_POISON if batch.executions.iter().any(|e| e.pipeline == "poison") => {
                Err(SinkError::Permanent {
                    sink: "gate".into(),
                    message: "column pipeline: value \"poison\" not allowed".into(),
                })
            }
            _ => self.inner.write(batch).await,
        }
    }
}

async fn start(
    config: &xray_config::Config,
    store: &TestBackend,
    mode: &Arc<AtomicU8>,
) -> Collector {
    let gate: Arc<dyn Sink> = Arc::new(Gate {
        inner: store.backend.clone(),
        mode: mode.clone(),
    });
    Collector::start(config, gate, Vec::new(), common::auth(config, store))
        .await
        .expect("collector starts")
}

fn trace_id(n: u32) -> Vec<u8> {
    let mut t = vec![0xab; 16];
    t[..4].copy_from_slice(&n.to_be_bytes());
    t
}

fn trace_hex(n: u32) -> String {
    hex::encode(trace_id(n))
}

const T0: u64 = 1_700_000_000_000_000_000;

/// Execution `n` of `pipeline` with two steps; `input` pads its size.
fn execution(n: u32, pipeline: &str, input: &str) -> ExportTraceServiceRequest {
    let root = vec![1u8; 8];
    let mut spans = vec![Span {
        trace_id: trace_id(n),
        span_id: root.clone(),
        name: pipeline.into(),
        start_time_unix_nano: T0 + u64::from(n) * 1000,
        end_time_unix_nano: T0 + u64::from(n) * 1000 + 900,
        attributes: vec![
            kv("xray.pipeline", pipeline),
            kv("xray.execution.input", input),
        ],
        ..Default::default()
    }];
    for s in 2..4u8 {
        spans.push(Span {
            trace_id: trace_id(n),
            span_id: vec![s; 8],
            parent_span_id: root.clone(),
            name: format!("step-{s}"),
            start_time_unix_nano: T0 + u64::from(n) * 1000 + u64::from(s),
            end_time_unix_nano: T0 + u64::from(n) * 1000 + 100,
            attributes: vec![kv("xray.step.type", "filter")],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(
    client: &reqwest::Client,
    c: &Collector,
    req: &ExportTraceServiceRequest,
) -> reqwest::Response {
    client
        .post(format!("http://{}/v1/traces", c.http_addr()))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("request sent")
}

/// What every view shows of `pipeline`: executions listed, steps of those
/// executions, executions in the pipeline summary.
async fn views(store: &TestBackend, pipeline: &str) -> (usize, usize, u64) {
    let scope = Scope::App(xray_model::DEFAULT_APP.into());
    let page = store
        .backend
        .list_executions(
            &scope,
            &ExecutionFilter {
                pipeline: Some(pipeline.into()),
                ..Default::default()
            },
            &PageRequest {
                limit: 1000,
                after: None,
            },
        )
        .await
        .expect("list executions");
    let mut steps = 0;
    for item in &page.items {
        let d = store
            .backend
            .get_execution(&scope, &item.execution.trace_id)
            .await
            .expect("get execution")
            .expect("listed execution exists");
        steps += d.steps.len();
    }
    let summaries = store
        .backend
        .pipelines(
            &scope,
            TimeWindow {
                from_ns: 0,
                to_ns: i64::MAX,
            },
        )
        .await
        .expect("pipelines");
    let summary = summaries
        .iter()
        .find(|s| s.pipeline == pipeline)
        .map_or(0, |s| s.executions);
    (page.items.len(), steps, summary)
}

async fn wait_for_views(store: &TestBackend, pipeline: &str, want: (usize, usize, u64)) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = views(store, pipeline).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {pipeline}: views show {got:?}, want {want:?}",
            store.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-"))
        })
        .collect();
    v.sort();
    v
}

fn quick_retries(c: &mut xray_config::Config) {
    c.pipeline.retry_initial_backoff_ms = 10;
    c.pipeline.retry_max_backoff_ms = 100;
    c.pipeline.shutdown_timeout_ms = 1500;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_batches_survive_an_outage_and_a_restart_exactly_once_on_every_backend() {
    let client = reqwest::Client::new();
    for store in xray_store::testing::backends().await {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::config_with_spool(dir.path());
        quick_retries(&mut config);
        let mode = Arc::new(AtomicU8::new(DOWN));
        let pipeline = format!("outage-{}", store.name);

        // The store is down: every request is still acknowledged, because
        // it is in the spool.
        let collector = start(&config, &store, &mode).await;
        for n in 0..20 {
            let resp = post(&client, &collector, &execution(n, &pipeline, "{}")).await;
            assert_eq!(resp.status(), 200, "{}", store.name);
        }
        // Shutdown cannot reach the store; the batches stay in the spool
        // and shutdown still succeeds.
        collector
            .shutdown()
            .await
            .expect("durable shutdown succeeds");
        assert_eq!(views(&store, &pipeline).await, (0, 0, 0));
        assert!(!segments(dir.path()).is_empty(), "spool kept the batches");

        // Restart with the store back: the spool is replayed; a client
        // re-sending some requests (after a timeout) changes nothing.
        mode.store(OPEN, Ordering::SeqCst);
        let collector = start(&config, &store, &mode).await;
        for n in 0..5 {
            let resp = post(&client, &collector, &execution(n, &pipeline, "{}")).await;
            assert_eq!(resp.status(), 200);
        }
        wait_for_views(&store, &pipeline, (20, 40, 20)).await;
        collector.shutdown().await.unwrap();
        assert!(
            segments(dir.path()).is_empty(),
            "a clean shutdown with everything stored empties the spool: {:?}",
            segments(dir.path())
        );
        // Replaying again (a third start) has nothing to add.
        let collector = start(&config, &store, &mode).await;
        collector.shutdown().await.unwrap();
        assert_eq!(
            views(&store, &pipeline).await,
            (20, 40, 20),
            "{}",
            store.name
        );
        eprintln!(
            "{}: 20 executions / 40 steps replayed and resent, each once",
            store.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_skipped_and_the_records_before_it_are_replayed() {
    let client = reqwest::Client::new();
    let store = xray_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_with_spool(dir.path());
    quick_retries(&mut config);
    let mode = Arc::new(AtomicU8::new(DOWN));
    let collector = start(&config, &store, &mode).await;
    for n in 100..103 {
        assert_eq!(
            post(&client, &collector, &execution(n, "torn", "{}"))
                .await
                .status(),
            200
        );
    }
    collector.shutdown().await.unwrap();
    // A crash in the middle of the last write: cut its last bytes off.
    let seg = segments(dir.path())
        .into_iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .expect("a segment with records");
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    mode.store(OPEN, Ordering::SeqCst);
    let collector = start(&config, &store, &mode).await;
    wait_for_views(&store, "torn", (2, 4, 2)).await;
    collector.shutdown().await.unwrap();
    let scope = Scope::App(xray_model::DEFAULT_APP.into());
    for n in [100, 101] {
        assert!(
            store
                .backend
                .get_execution(&scope, &trace_hex(n))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(
        store
            .backend
            .get_execution(&scope, &trace_hex(102))
            .await
            .unwrap()
            .is_none(),
        "the torn record is not replayed as garbage"
    );
    let metrics = xray_collector::render_metrics();
    assert!(
        metric(&metrics, "xray_collector_spool_torn_records_total") >= 1,
        "{metrics}"
    );
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_go_to_the_dead_letter_file_without_blocking_the_queue() {
    let client = reqwest::Client::new();
    let store = xray_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_with_spool(dir.path());
    quick_retries(&mut config);
    // Batches merge in the batcher: the good rows next to the poison must
    // still be written.
    config.pipeline.flush_interval_ms = 300;
    let mode = Arc::new(AtomicU8::new(REJECT_POISON));
    let collector = start(&config, &store, &mode).await;
    for (n, p) in [(200, "fine"), (201, "poison"), (202, "fine")] {
        assert_eq!(
            post(&client, &collector, &execution(n, p, "{}"))
                .await
                .status(),
            200
        );
    }
    wait_for_views(&store, "fine", (2, 4, 2)).await;
    // And the queue keeps moving after the poison.
    assert_eq!(
        post(&client, &collector, &execution(203, "fine", "{}"))
            .await
            .status(),
        200
    );
    wait_for_views(&store, "fine", (3, 6, 3)).await;
    collector.shutdown().await.unwrap();
    assert_eq!(views(&store, "poison").await, (0, 0, 0));
    let text = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(line["sink"], "gate");
    assert_eq!(
        line["reason"],
        "gate: rejected the batch: column pipeline: value \"poison\" not allowed"
    );
    assert_eq!(line["rows"], 3);
    assert_eq!(line["batch"]["executions"][0]["pipeline"], "poison");
    assert_eq!(line["batch"]["steps"].as_array().unwrap().len(), 2);
    assert!(line["time_unix_ns"].as_i64().unwrap() > 0);
    let metrics = xray_collector::render_metrics();
    assert!(metric(&metrics, "xray_collector_dead_letter_rows_total") >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_answered_with_429_and_resource_exhausted_then_recovers() {
    let client = reqwest::Client::new();
    let store = xray_store::testing::sqlite().await;
    let mut config = common::config();
    quick_retries(&mut config);
    config.pipeline.max_queue_bytes = 1024 * 1024;
    let mode = Arc::new(AtomicU8::new(DOWN));
    let collector = start(&config, &store, &mode).await;
    let input = "x".repeat(100 * 1024);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 300..400 {
        let resp = post(&client, &collector, &execution(n, "overload", &input)).await;
        match resp.status().as_u16() {
            200 => accepted.push(n),
            429 => {
                refused = Some(resp);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let resp = refused.expect("the queue fills up: 429");
    assert!(
        (5..=10).contains(&accepted.len()),
        "about 1 MiB of ~100 KiB batches accepted: {}",
        accepted.len()
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let status = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 8);
    assert_eq!(
        status.message,
        "the collector is over its queue or spool budget; retry in 1 s"
    );
    // The same over gRPC, with the RetryInfo OTel exporters honour.
    let mut grpc = TraceServiceClient::connect(format!("http://{}", collector.grpc_addr()))
        .await
        .unwrap();
    let err = grpc
        .export(execution(999, "overload", &input))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(
        err.message(),
        "the collector is over its queue or spool budget; retry in 1 s"
    );
    let retry = err.get_details_retry_info().expect("RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    // Memory stays within the budget.
    let metrics = xray_collector::render_metrics();
    assert!(metric(&metrics, "xray_collector_queued_bytes") <= 1024 * 1024 + 200 * 1024);
    assert!(metric(&metrics, "xray_collector_requests_refused_busy_total") >= 2);

    // The store comes back: the queue drains and requests are accepted
    // again; every acknowledged execution is stored once.
    mode.store(OPEN, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = post(&client, &collector, &execution(400, "overload", "{}")).await;
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 429);
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = accepted.len() + 1;
    wait_for_views(&store, "overload", (n, 2 * n, n as u64)).await;
    collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_absorbs_more_than_memory_and_a_full_spool_is_answered_with_429() {
    let client = reqwest::Client::new();
    let store = xray_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_with_spool(dir.path());
    quick_retries(&mut config);
    config.pipeline.spool_max_bytes = 16 * 1024 * 1024;
    config.pipeline.spool_fsync = xray_config::SpoolFsync::Never;
    // Most batches do not fit in memory: they are spilled to the spool
    // only and read back from disk when the store returns.
    config.pipeline.max_queue_bytes = 1024 * 1024;
    let mode = Arc::new(AtomicU8::new(DOWN));
    let collector = start(&config, &store, &mode).await;
    let input = "y".repeat(512 * 1024);
    let mut accepted = 0;
    let mut refused = None;
    for n in 500..600 {
        let resp = post(&client, &collector, &execution(n, "spool-full", &input)).await;
        match resp.status().as_u16() {
            200 => accepted += 1,
            429 => {
                refused = Some(resp);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // More than the memory queue's share: the spool absorbs the outage.
    assert!(accepted >= 20, "{accepted}");
    let resp = refused.expect("the spool fills up: 429");
    assert_eq!(resp.headers()["retry-after"], "5");
    mode.store(OPEN, Ordering::SeqCst);
    wait_for_views(
        &store,
        "spool-full",
        (accepted, 2 * accepted, accepted as u64),
    )
    .await;
    collector.shutdown().await.unwrap();
}
