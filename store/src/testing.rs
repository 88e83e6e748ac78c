//! Helpers for tests in this and other crates: fresh, isolated backends and
//! fixture builders.
//!
//! [`backends`] returns one fresh backend per store available to the test
//! run: SQLite always; the server-backed stores when their URL is in the
//! environment (`XRAY_TEST_CLICKHOUSE_URL`, `XRAY_TEST_POSTGRES_URL`, both set
//! by `dev/test.sh`). Each backend is isolated (its own file or database), so
//! tests run in parallel.

use std::any::Any;
use std::sync::Arc;

use xray_model::{Execution, Metadata, Rejections, Status, Step, StepType};

use crate::sqlite::SqliteBackend;
use crate::{PipelineStepStats, SharedBackend};

/// A backend for one test, with whatever keeps it alive (a temp dir, a
/// database to drop).
pub struct TestBackend {
    /// Backend name, for assertion messages.
    pub name: &'static str,
    /// The backend.
    pub backend: SharedBackend,
    _guard: Box<dyn Any + Send + Sync>,
}

impl TestBackend {
    /// Wraps a backend and the guard that must live as long as it.
    pub fn new(
        name: &'static str,
        backend: SharedBackend,
        guard: Box<dyn Any + Send + Sync>,
    ) -> Self {
        Self {
            name,
            backend,
            _guard: guard,
        }
    }
}

/// A fresh SQLite backend in a temporary directory.
pub async fn sqlite() -> TestBackend {
    let dir = tempfile::tempdir().expect("create temp dir");
    let backend = SqliteBackend::open(dir.path().join("xray.db"))
        .await
        .expect("open sqlite");
    TestBackend::new("sqlite", Arc::new(backend), Box::new(dir))
}

/// A fresh ClickHouse backend in a database of its own on the server of
/// `XRAY_TEST_CLICKHOUSE_URL` (dropped afterwards). Panics when the variable
/// is unset, telling to run `dev/test.sh`.
pub async fn clickhouse() -> TestBackend {
    let db = crate::clickhouse::testing::require().await;
    TestBackend::new("clickhouse", Arc::new(db.backend.clone()), Box::new(db))
}

/// A fresh Postgres backend in a database of its own on the server of
/// `XRAY_TEST_POSTGRES_URL` (dropped afterwards). Panics when the variable is
/// unset, telling to run `dev/test.sh`.
pub async fn postgres() -> TestBackend {
    let db = crate::postgres::testing::require().await;
    TestBackend::new("postgres", Arc::new(db.backend.clone()), Box::new(db))
}

/// One fresh backend per store available to this test run: SQLite always,
/// ClickHouse when `XRAY_TEST_CLICKHOUSE_URL` is set, Postgres when
/// `XRAY_TEST_POSTGRES_URL` is set.
pub async fn backends() -> Vec<TestBackend> {
    let mut all = vec![sqlite().await];
    if let Some(db) = crate::clickhouse::testing::isolated().await {
        all.push(TestBackend::new(
            "clickhouse",
            Arc::new(db.backend.clone()),
            Box::new(db),
        ));
    }
    if let Some(db) = crate::postgres::testing::isolated().await {
        all.push(TestBackend::new(
            "postgres",
            Arc::new(db.backend.clone()),
            Box::new(db),
        ));
    }
    all
}

/// An execution fixture: completed, started at `start_ns`, lasting
/// `duration_ns`, with trace id derived from the id.
pub fn execution(
    app: &str,
    id: &str,
    pipeline: &str,
    start_ns: i64,
    duration_ns: i64,
) -> Execution {
    Execution {
        app: app.into(),
        execution_id: id.into(),
        trace_id: trace_id_for(id),
        span_id: span_id_for(id, "exec"),
        pipeline: pipeline.into(),
        environment: "test".into(),
        service: "svc".into(),
        status: Status::Completed,
        start_time_ns: start_ns,
        end_time_ns: Some(start_ns + duration_ns),
        input: Some(r#"{"q":"shoes"}"#.into()),
        output: Some(r#"{"pick":"B001"}"#.into()),
        error: None,
        tags: vec!["fixture".into()],
        metadata: Metadata::new(),
        step_count: 0,
        ingest_time_ns: start_ns,
        version: 1,
    }
}

/// A step fixture of `exec`, child of the execution span, starting
/// `offset_ns` after it and lasting `duration_ns`.
pub fn step(
    exec: &Execution,
    name: &str,
    step_type: StepType,
    offset_ns: i64,
    duration_ns: i64,
) -> Step {
    Step {
        app: exec.app.clone(),
        execution_id: exec.execution_id.clone(),
        trace_id: exec.trace_id.clone(),
        span_id: span_id_for(&exec.execution_id, name),
        parent_span_id: exec.span_id.clone(),
        name: name.into(),
        step_type,
        status: Status::Completed,
        service: exec.service.clone(),
        start_time_ns: exec.start_time_ns + offset_ns,
        end_time_ns: Some(exec.start_time_ns + offset_ns + duration_ns),
        input: None,
        output: None,
        reasoning: None,
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
    }
}

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic 32-hex trace id for a fixture id.
pub fn trace_id_for(id: &str) -> String {
    format!(
        "{:016x}{:016x}",
        fnv(id.as_bytes(), 1),
        fnv(id.as_bytes(), 2)
    )
}

/// A deterministic 16-hex span id for a fixture id and name.
pub fn span_id_for(id: &str, name: &str) -> String {
    format!("{:016x}", fnv(format!("{id}/{name}").as_bytes(), 3))
}

/// Two funnel rows are the same, their floating-point means up to rounding
/// (backends sum them in different orders).
pub fn same_step_stats(a: &PipelineStepStats, b: &PipelineStepStats) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    let mean_drop = match (a.mean_drop_rate, b.mean_drop_rate) {
        (Some(x), Some(y)) => close(x, y),
        (x, y) => x == y,
    };
    let exact = |s: &PipelineStepStats| PipelineStepStats {
        mean_drop_rate: None,
        mean_offset_ns: 0.0,
        ..s.clone()
    };
    mean_drop && close(a.mean_offset_ns, b.mean_offset_ns) && exact(a) == exact(b)
}
