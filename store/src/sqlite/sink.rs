//! Batched, transactional, idempotent writes.

use async_trait::async_trait;
use rusqlite::params;
use xray_model::MappedBatch;

use super::SqliteBackend;
use super::rows::{i64_of, to_json};
use crate::{Sink, SinkError, StoreError};

const UPSERT_EXECUTION: &str = "INSERT INTO executions (app, execution_id, trace_id, span_id, pipeline, environment, \
    service, status, start_time_ns, end_time_ns, duration_ns, input, output, error, tags, metadata, step_count, \
    ingest_time_ns, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
    ON CONFLICT (app, execution_id) DO UPDATE SET trace_id = excluded.trace_id, span_id = excluded.span_id, \
    pipeline = excluded.pipeline, environment = excluded.environment, service = excluded.service, \
    status = excluded.status, start_time_ns = excluded.start_time_ns, end_time_ns = excluded.end_time_ns, \
    duration_ns = excluded.duration_ns, input = excluded.input, output = excluded.output, error = excluded.error, \
    tags = excluded.tags, metadata = excluded.metadata, step_count = excluded.step_count, \
    ingest_time_ns = excluded.ingest_time_ns, version = excluded.version \
    WHERE excluded.version >= executions.version";

const UPSERT_STEP: &str = "INSERT INTO steps (app, trace_id, span_id, execution_id, parent_span_id, name, step_type, \
    status, service, start_time_ns, end_time_ns, duration_ns, input, output, reasoning, metadata, candidates_in, \
    candidates_out, rejections, candidates, model, provider, input_tokens, output_tokens, cost, confidence, error, \
    version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
    ?22, ?23, ?24, ?25, ?26, ?27, ?28) \
    ON CONFLICT (app, trace_id, span_id) DO UPDATE SET execution_id = excluded.execution_id, \
    parent_span_id = excluded.parent_span_id, name = excluded.name, step_type = excluded.step_type, \
    status = excluded.status, service = excluded.service, start_time_ns = excluded.start_time_ns, \
    end_time_ns = excluded.end_time_ns, duration_ns = excluded.duration_ns, input = excluded.input, \
    output = excluded.output, reasoning = excluded.reasoning, metadata = excluded.metadata, \
    candidates_in = excluded.candidates_in, candidates_out = excluded.candidates_out, \
    rejections = excluded.rejections, candidates = excluded.candidates, model = excluded.model, \
    provider = excluded.provider, input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, \
    cost = excluded.cost, confidence = excluded.confidence, error = excluded.error, version = excluded.version \
    WHERE excluded.version >= steps.version";

fn write_batch(conn: &mut rusqlite::Connection, batch: &MappedBatch) -> Result<(), StoreError> {
    let busy = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(
            rusqlite::ErrorCode::DatabaseBusy
            | rusqlite::ErrorCode::DatabaseLocked
            | rusqlite::ErrorCode::DiskFull
            | rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::CannotOpen,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(busy)?;
    {
        let mut stmt = tx.prepare_cached(UPSERT_EXECUTION).map_err(busy)?;
        for e in &batch.executions {
            stmt.execute(params![
                e.app,
                e.execution_id,
                e.trace_id,
                e.span_id,
                e.pipeline,
                e.environment,
                e.service,
                e.status.as_str(),
                e.start_time_ns,
                e.end_time_ns,
                e.duration_ns(),
                e.input,
                e.output,
                e.error,
                to_json(&e.tags)?,
                to_json(&e.metadata)?,
                e.step_count,
                e.ingest_time_ns,
                e.version.min(i64::MAX as u64) as i64,
            ])
            .map_err(busy)?;
        }
        let mut stmt = tx.prepare_cached(UPSERT_STEP).map_err(busy)?;
        for s in &batch.steps {
            stmt.execute(params![
                s.app,
                s.trace_id,
                s.span_id,
                s.execution_id,
                s.parent_span_id,
                s.name,
                s.step_type.as_str(),
                s.status.as_str(),
                s.service,
                s.start_time_ns,
                s.end_time_ns,
                s.duration_ns(),
                s.input,
                s.output,
                s.reasoning,
                to_json(&s.metadata)?,
                i64_of(s.candidates_in),
                i64_of(s.candidates_out),
                to_json(&s.rejections)?,
                to_json(&s.candidates)?,
                s.model,
                s.provider,
                i64_of(s.input_tokens),
                i64_of(s.output_tokens),
                s.cost,
                s.confidence,
                s.error,
                s.version.min(i64::MAX as u64) as i64,
            ])
            .map_err(busy)?;
        }
    }
    tx.commit().map_err(busy)
}

#[async_trait]
impl Sink for SqliteBackend {
    fn name(&self) -> &str {
        "sqlite"
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        // On a multi-threaded runtime (the collector's) the borrowed batch is
        // written in place, blocking this worker thread; elsewhere it is
        // cloned once to move it to the blocking pool, as the contract gives
        // us `&MappedBatch`.
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let written = if let Ok(tokio::runtime::RuntimeFlavor::MultiThread) = flavor {
            tokio::task::block_in_place(|| self.inner.write(|conn| write_batch(conn, batch)))
        } else {
            let owned = batch.clone();
            self.with_writer(move |conn| write_batch(conn, &owned))
                .await
        };
        written.map_err(|e| match e {
            StoreError::Unavailable(message) => SinkError::Retryable {
                sink: "sqlite".into(),
                message,
            },
            other => SinkError::Permanent {
                sink: "sqlite".into(),
                message: other.to_string(),
            },
        })
    }
}
