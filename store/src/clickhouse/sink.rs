//! [`Sink`] for ClickHouse: one `INSERT` per table per batch
//! (`RowBinaryWithNamesAndTypes`, LZ4), executions first, then steps.
//!
//! Each step row also carries what the batch tells about its execution
//! (`attribution`, `exec_id`, `exec_start`, `exec_first`, see
//! [`super::rows::attribute`]) and its merged rejection histogram, which
//! the pipeline funnel reads instead of joining and parsing JSON.
//!
//! Idempotency comes from the schema: a retried batch inserts rows with the
//! same identity and version, which reads collapse (`LIMIT 1 BY`) and merges
//! remove (`ReplacingMergeTree(version)`). Each row carries a strictly
//! increasing `written` time so the later write wins between equal versions.
//! The two inserts are not one transaction: when the steps insert fails after
//! the executions insert succeeded, the batch is reported failed and its
//! retry rewrites both.
//!
//! Errors: network failures, timeouts and ClickHouse's transient error codes
//! (too many parts, memory limit, read-only replica, …) are
//! [`SinkError::Retryable`]; everything else (schema mismatch, bad data) is
//! [`SinkError::Permanent`].

use std::time::Duration;

use async_trait::async_trait;
use xray_model::MappedBatch;

use super::rows::{ExecutionRow, StepRow, attribute};
use super::{ClickhouseBackend, sink_error};
use crate::{Sink, SinkError};

/// Time allowed to send one insert's rows, and to get the server's answer
/// after the last row.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const END_TIMEOUT: Duration = Duration::from_secs(60);

impl ClickhouseBackend {
    async fn insert_all<T>(&self, table: &str, rows: Vec<T>) -> Result<(), clickhouse::error::Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .inner
            .client
            .insert::<T>(table)
            .await?
            .with_timeouts(Some(SEND_TIMEOUT), Some(END_TIMEOUT));
        for row in &rows {
            insert.write(row).await?;
        }
        insert.end().await
    }
}

#[async_trait]
impl Sink for ClickhouseBackend {
    fn name(&self) -> &str {
        "clickhouse"
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (executions, steps) = crate::batch::newest_rows(batch);
        let written = self.next_written();
        let attributions = attribute(&executions, &steps);
        let exec_rows: Vec<ExecutionRow> = executions
            .iter()
            .map(|e| ExecutionRow::new(e, written))
            .collect();
        let step_rows: Vec<StepRow> = steps
            .iter()
            .zip(&attributions)
            .map(|(s, a)| StepRow::new(s, a, written))
            .collect();
        self.insert_all("executions", exec_rows)
            .await
            .map_err(sink_error)?;
        self.insert_all("steps", step_rows)
            .await
            .map_err(sink_error)?;
        tracing::debug!(
            executions = batch.executions.len(),
            steps = batch.steps.len(),
            database = self.database(),
            "batch written"
        );
        Ok(())
    }
}
