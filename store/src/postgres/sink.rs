//! [`Sink`] for Postgres: one transaction per batch, one `UNNEST` insert per
//! table, `ON CONFLICT … WHERE excluded.version >= version` for idempotency.

use async_trait::async_trait;
use xray_model::MappedBatch;

use super::rows::{ExecutionColumns, StepColumns};
use super::{PostgresBackend, sink_error};
use crate::{Sink, SinkError};

#[async_trait]
impl Sink for PostgresBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (executions, steps) = crate::batch::newest_rows(batch);
        let mut ex = ExecutionColumns::default();
        executions.into_iter().for_each(|e| ex.push(e));
        let mut st = StepColumns::default();
        steps.into_iter().for_each(|s| st.push(s));

        let err = |e| sink_error(&self.name, e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        if !ex.is_empty() {
            ex.query().execute(&mut *tx).await.map_err(err)?;
        }
        if !st.is_empty() {
            st.query().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        tracing::debug!(
            sink = %self.name,
            executions = batch.executions.len(),
            steps = batch.steps.len(),
            "batch written"
        );
        Ok(())
    }
}
