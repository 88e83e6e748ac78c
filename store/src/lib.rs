//! Storage for X-Ray: the write side ([`Sink`]) and the read side ([`Store`])
//! with their contracts, and the backends that implement them.
//!
//! - [`sqlite`]: the embedded default, one file, no server.
//! - [`clickhouse`]: the production store.
//! - [`postgres`]: a primary store or an extra sink.
//!
//! Every backend passes the same conformance suite ([`conformance`]), so the
//! dashboard API behaves identically whichever store is configured.

mod batch;
pub mod clickhouse;
mod joins;
pub mod postgres;
mod testing_support;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use xray_model::{ApiKey, App, Execution, MappedBatch, Status, Step};

pub mod aggregate;
pub mod conformance;
pub mod sqlite;
pub mod testing;

mod factory;
pub use factory::{describe, migrate, open, open_extra_sinks};
/// Error returned by [`Sink::write`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A transient failure (connection refused, timeout, server overloaded):
    /// writing the same batch again later may succeed.
    #[error("{sink}: temporarily unavailable: {message}")]
    Retryable {
        /// Sink name.
        sink: String,
        /// What went wrong.
        message: String,
    },
    /// The batch can never be written as it is (type mismatch, constraint
    /// violation). Retrying is pointless; the batch belongs in a dead letter.
    #[error("{sink}: rejected the batch: {message}")]
    Permanent {
        /// Sink name.
        sink: String,
        /// What went wrong.
        message: String,
    },
}

impl SinkError {
    /// True when the same write may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable { .. })
    }
}

/// Error returned by [`Store`] reads and admin writes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request is invalid for this store (bad cursor, impossible window).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A record that must be unique already exists.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The backend cannot be reached right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other backend failure; the message is for logs, not for users.
    #[error("store error: {0}")]
    Backend(String),
}

/// Which rows a read may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Only the rows of this app.
    App(String),
    /// Every app (the admin token).
    All,
}

impl Scope {
    /// The app id when scoped to one app.
    pub fn app(&self) -> Option<&str> {
        match self {
            Scope::App(a) => Some(a),
            Scope::All => None,
        }
    }
}

/// Filters of [`Store::list_executions`]. `None` means "no filter".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    /// Exact pipeline name.
    pub pipeline: Option<String>,
    /// Exact status.
    pub status: Option<Status>,
    /// Exact environment.
    pub environment: Option<String>,
    /// Exact service name.
    pub service: Option<String>,
    /// Executions that started at or after this time (unix ns).
    pub from_ns: Option<i64>,
    /// Executions that started strictly before this time (unix ns).
    pub to_ns: Option<i64>,
    /// Case-sensitive substring of the execution id, the trace id or a tag.
    pub q: Option<String>,
    /// Executions that lasted at least this long (ns); running executions never match.
    pub min_duration_ns: Option<i64>,
}

/// Position in the newest-first execution order: the last row of a page.
///
/// The order is `(start_time_ns DESC, app DESC, execution_id DESC)`, a total
/// order, so pages are stable when new rows arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Start time of the last row returned.
    pub start_time_ns: i64,
    /// App of the last row returned.
    pub app: String,
    /// Execution id of the last row returned.
    pub execution_id: String,
}

/// A page request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Rows wanted, at least 1.
    pub limit: u32,
    /// Continue after this row; `None` for the first page.
    pub after: Option<Cursor>,
}

/// One row of an execution list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The execution.
    pub execution: Execution,
    /// Steps stored for it (span events and child spans).
    pub step_count: u64,
}

/// A page of executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPage {
    /// Rows, newest first.
    pub items: Vec<ExecutionSummary>,
    /// Where the next page starts; `None` when this is the last page.
    pub next: Option<Cursor>,
}

/// An execution with all its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDetail {
    /// The execution.
    pub execution: Execution,
    /// Its steps, flat, ordered by `(start_time_ns, span_id)`. Parent links
    /// are in `parent_span_id`.
    pub steps: Vec<Step>,
}

/// A time window `[from_ns, to_ns)` over execution start times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Inclusive start, unix ns.
    pub from_ns: i64,
    /// Exclusive end, unix ns.
    pub to_ns: i64,
}

/// Per-pipeline figures over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Executions started in the window.
    pub executions: u64,
    /// Of those, how many failed.
    pub failed: u64,
    /// Median duration of the finished ones, ns.
    pub p50_duration_ns: Option<i64>,
    /// 95th percentile duration, ns.
    pub p95_duration_ns: Option<i64>,
    /// 99th percentile duration, ns.
    pub p99_duration_ns: Option<i64>,
    /// Start time of the newest execution, unix ns.
    pub last_seen_ns: i64,
}

/// Figures for one step name of a pipeline, aggregated over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStepStats {
    /// Step name.
    pub name: String,
    /// Most frequent step type.
    pub step_type: xray_model::StepType,
    /// Distinct executions that ran a step of this name.
    pub executions: u64,
    /// Step rows (a step may run several times per execution).
    pub runs: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs that reported `candidates_in`.
    pub runs_with_counts: u64,
    /// Sum of `candidates_in` over the runs that reported both counts.
    pub total_in: u64,
    /// Sum of `candidates_out` over the runs that reported both counts.
    pub total_out: u64,
    /// Mean over runs with both counts and `in > 0` of `(in - out) / in`.
    pub mean_drop_rate: Option<f64>,
    /// Median step duration, ns.
    pub p50_duration_ns: Option<i64>,
    /// 95th percentile step duration, ns.
    pub p95_duration_ns: Option<i64>,
    /// Mean offset of the step's start from its execution's start, ns: the
    /// funnel is ordered by it.
    pub mean_offset_ns: f64,
    /// Up to 20 rejection reasons, most frequent first (ties by reason), with
    /// counts merged from `rejections` and rejected sampled candidates.
    pub top_rejections: Vec<(String, u64)>,
}

/// The write side.
///
/// Contract:
/// - `write` is never called concurrently on one instance (the batcher owns
///   it); implementations may rely on that.
/// - It is bounded in time: a backend that cannot answer returns
///   [`SinkError::Retryable`] instead of hanging.
/// - It is idempotent: writing rows with the same identity again (execution:
///   `(app, execution_id)`; step: `(app, trace_id, span_id)`) never creates
///   duplicates in any read; the row with the highest `version` wins, and
///   on equal versions the later write wins.
/// - All rows of a batch are written or none is visible as half-written.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Short name for logs and metrics, e.g. `sqlite`.
    fn name(&self) -> &str;

    /// Writes every row of `batch`.
    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError>;
}

/// The read side the dashboard API uses, plus app and key management.
///
/// Contract: every read is restricted to `scope`; a row of another app is
/// indistinguishable from a row that does not exist. Reads see each identity
/// once, in its newest version.
#[async_trait]
pub trait Store: Send + Sync {
    /// Checks that the backend answers (used by `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Executions matching `filter`, newest first, one page.
    async fn list_executions(
        &self,
        scope: &Scope,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> Result<ExecutionPage, StoreError>;

    /// One execution by execution id or by trace id (32 hex), with its steps.
    async fn get_execution(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError>;

    /// Per-pipeline summaries over `window`, by pipeline name.
    async fn pipelines(
        &self,
        scope: &Scope,
        window: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError>;

    /// Per-step aggregates of one pipeline over `window`, ordered by
    /// `mean_offset_ns`.
    async fn pipeline_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError>;

    /// The steps whose span id is `span_id` (16 lowercase hex), in
    /// `scope`: span ids are unique within a trace only, so this is one
    /// step per `(app, trace_id)` holding such a span, each in its newest
    /// version, ordered by `(start_time_ns, app, trace_id)`, at most
    /// `limit` (at least 1) of them; empty when there is none. Used by the
    /// event service's `GET /v1/events/{span_id}`, which knows no trace.
    async fn steps_by_span_id(
        &self,
        scope: &Scope,
        span_id: &str,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError>;

    /// Creates an app; [`StoreError::Conflict`] when the id exists.
    async fn create_app(&self, app: &App) -> Result<(), StoreError>;

    /// Every app, by creation time.
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;

    /// One app by id.
    async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError>;

    /// Stores a new API key (hash only); [`StoreError::Conflict`] when the id exists.
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// Keys of one app, revoked ones included, by creation time.
    async fn list_api_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, StoreError>;

    /// The key with this hash, revoked or not.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Marks a key revoked at `at_ns`; false when no such key exists.
    async fn revoke_api_key(&self, id: &str, at_ns: i64) -> Result<bool, StoreError>;
}

/// A backend is both a sink and a store.
pub trait Backend: Sink + Store {}
impl<T: Sink + Store> Backend for T {}

/// A shared handle on a backend.
pub type SharedBackend = Arc<dyn Backend>;
