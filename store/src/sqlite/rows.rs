//! Row ↔ model conversions for SQLite.

use rusqlite::Row;
use xray_model::{ApiKey, App, Execution, Metadata, Rejections, Status, Step, StepType};

use crate::StoreError;

pub(super) const EXECUTION_COLUMNS: &str = "e.app, e.execution_id, e.trace_id, e.span_id, e.pipeline, e.environment, \
     e.service, e.status, e.start_time_ns, e.end_time_ns, e.input, e.output, e.error, e.tags, e.metadata, \
     e.step_count, e.ingest_time_ns, e.version";

pub(super) const STEP_COLUMNS: &str = "app, execution_id, trace_id, span_id, parent_span_id, name, step_type, status, \
     service, start_time_ns, end_time_ns, input, output, reasoning, metadata, candidates_in, candidates_out, \
     rejections, candidates, model, provider, input_tokens, output_tokens, cost, confidence, error, version";

fn json<T: serde::de::DeserializeOwned + Default>(text: Option<String>) -> T {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn parse_enum<T: std::str::FromStr>(idx: usize, text: String) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(|v| v.max(0) as u64))
}

pub(super) fn execution(row: &Row<'_>) -> rusqlite::Result<Execution> {
    Ok(Execution {
        app: row.get(0)?,
        execution_id: row.get(1)?,
        trace_id: row.get(2)?,
        span_id: row.get(3)?,
        pipeline: row.get(4)?,
        environment: row.get(5)?,
        service: row.get(6)?,
        status: parse_enum::<Status>(7, row.get(7)?)?,
        start_time_ns: row.get(8)?,
        end_time_ns: row.get(9)?,
        input: row.get(10)?,
        output: row.get(11)?,
        error: row.get(12)?,
        tags: json::<Vec<String>>(row.get(13)?),
        metadata: json::<Metadata>(row.get(14)?),
        step_count: row.get::<_, i64>(15)?.clamp(0, u32::MAX as i64) as u32,
        ingest_time_ns: row.get(16)?,
        version: row.get::<_, i64>(17)? as u64,
    })
}

pub(super) fn step(row: &Row<'_>) -> rusqlite::Result<Step> {
    Ok(Step {
        app: row.get(0)?,
        execution_id: row.get(1)?,
        trace_id: row.get(2)?,
        span_id: row.get(3)?,
        parent_span_id: row.get(4)?,
        name: row.get(5)?,
        step_type: parse_enum::<StepType>(6, row.get(6)?)?,
        status: parse_enum::<Status>(7, row.get(7)?)?,
        service: row.get(8)?,
        start_time_ns: row.get(9)?,
        end_time_ns: row.get(10)?,
        input: row.get(11)?,
        output: row.get(12)?,
        reasoning: row.get(13)?,
        metadata: json::<Metadata>(row.get(14)?),
        candidates_in: u64_col(row, 15)?,
        candidates_out: u64_col(row, 16)?,
        rejections: json::<Rejections>(row.get(17)?),
        candidates: json(row.get(18)?),
        model: row.get(19)?,
        provider: row.get(20)?,
        input_tokens: u64_col(row, 21)?,
        output_tokens: u64_col(row, 22)?,
        cost: row.get(23)?,
        confidence: row.get(24)?,
        error: row.get(25)?,
        version: row.get::<_, i64>(26)? as u64,
    })
}

pub(super) fn app(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at_ns: row.get(2)?,
    })
}

pub(super) const API_KEY_COLUMNS: &str =
    "id, app_id, prefix, hash, scopes, created_at_ns, revoked_at_ns";

pub(super) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        app_id: row.get(1)?,
        prefix: row.get(2)?,
        hash: row.get(3)?,
        scopes: json(row.get(4)?),
        created_at_ns: row.get(5)?,
        revoked_at_ns: row.get(6)?,
    })
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Clamps an unsigned count into SQLite's signed 64-bit integer.
pub(super) fn i64_of(v: Option<u64>) -> Option<i64> {
    v.map(|x| x.min(i64::MAX as u64) as i64)
}
