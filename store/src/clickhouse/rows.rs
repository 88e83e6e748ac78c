//! Row types of the ClickHouse tables, as the `clickhouse` crate sends and
//! reads them (RowBinary, validated against the table schema), and their
//! conversions to and from the model.
//!
//! `DateTime64(9)` columns travel as `i64` nanoseconds; `Map` columns as
//! `BTreeMap`; sampled candidates as JSON text.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use xray_model::{ApiKey, App, Execution, Step};

use crate::StoreError;

/// A row of `executions`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct ExecutionRow {
    pub(super) app: String,
    pub(super) execution_id: String,
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) pipeline: String,
    pub(super) environment: String,
    pub(super) service: String,
    pub(super) status: String,
    pub(super) start_time: i64,
    pub(super) end_time: Option<i64>,
    pub(super) duration_ns: Option<i64>,
    pub(super) input: Option<String>,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) tags: Vec<String>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) step_count: u32,
    pub(super) ingest_time: i64,
    pub(super) version: u64,
    pub(super) written: i64,
}

/// The columns of [`ExecutionRow`], for SELECT lists.
pub(super) const EXECUTION_COLUMNS: &str = "app, execution_id, trace_id, span_id, pipeline, \
    environment, service, status, start_time, end_time, duration_ns, input, output, error, \
    tags, metadata, step_count, ingest_time, version, written";

impl ExecutionRow {
    pub(super) fn new(e: &Execution, written: i64) -> Self {
        Self {
            app: e.app.clone(),
            execution_id: e.execution_id.clone(),
            trace_id: e.trace_id.clone(),
            span_id: e.span_id.clone(),
            pipeline: e.pipeline.clone(),
            environment: e.environment.clone(),
            service: e.service.clone(),
            status: e.status.as_str().to_string(),
            start_time: e.start_time_ns,
            end_time: e.end_time_ns,
            duration_ns: e.duration_ns(),
            input: e.input.clone(),
            output: e.output.clone(),
            error: e.error.clone(),
            tags: e.tags.clone(),
            metadata: e.metadata.clone(),
            step_count: e.step_count,
            ingest_time: e.ingest_time_ns,
            version: e.version,
            written,
        }
    }

    pub(super) fn into_model(self) -> Result<Execution, StoreError> {
        Ok(Execution {
            status: self.status.parse().map_err(|e| bad("status", e))?,
            app: self.app,
            execution_id: self.execution_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            pipeline: self.pipeline,
            environment: self.environment,
            service: self.service,
            start_time_ns: self.start_time,
            end_time_ns: self.end_time,
            input: self.input,
            output: self.output,
            error: self.error,
            tags: self.tags,
            metadata: self.metadata,
            step_count: self.step_count,
            ingest_time_ns: self.ingest_time,
            version: self.version,
        })
    }
}

/// A row of `steps`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct StepRow {
    pub(super) app: String,
    pub(super) execution_id: String,
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) parent_span_id: String,
    pub(super) pipeline: String,
    pub(super) name: String,
    pub(super) step_type: String,
    pub(super) status: String,
    pub(super) service: String,
    pub(super) start_time: i64,
    pub(super) end_time: Option<i64>,
    pub(super) duration_ns: Option<i64>,
    pub(super) input: Option<String>,
    pub(super) output: Option<String>,
    pub(super) reasoning: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) candidates_in: Option<u64>,
    pub(super) candidates_out: Option<u64>,
    pub(super) rejections: BTreeMap<String, u64>,
    pub(super) candidates: String,
    pub(super) model: Option<String>,
    pub(super) provider: Option<String>,
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cost: Option<f64>,
    pub(super) confidence: Option<f64>,
    pub(super) error: Option<String>,
    pub(super) version: u64,
    pub(super) written: i64,
}

/// The columns of [`StepRow`], for SELECT lists.
pub(super) const STEP_COLUMNS: &str = "app, execution_id, trace_id, span_id, parent_span_id, \
    pipeline, name, step_type, status, service, start_time, end_time, duration_ns, input, \
    output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, \
    provider, input_tokens, output_tokens, cost, confidence, error, version, written";

/// [`STEP_COLUMNS`] without the large texts (input, output, reasoning,
/// metadata come back empty): for counting steps and for funnels.
pub(super) const LIGHT_STEP_COLUMNS: &str = "app, execution_id, trace_id, span_id, \
    parent_span_id, pipeline, name, step_type, status, service, start_time, end_time, \
    duration_ns, CAST(NULL, 'Nullable(String)') AS input, CAST(NULL, 'Nullable(String)') AS output, \
    CAST(NULL, 'Nullable(String)') AS reasoning, \
    CAST(map(), 'Map(LowCardinality(String), String)') AS metadata, candidates_in, \
    candidates_out, rejections, candidates, model, provider, input_tokens, output_tokens, cost, \
    confidence, error, version, written";

impl StepRow {
    pub(super) fn new(s: &Step, pipeline: &str, written: i64) -> Self {
        Self {
            app: s.app.clone(),
            execution_id: s.execution_id.clone(),
            trace_id: s.trace_id.clone(),
            span_id: s.span_id.clone(),
            parent_span_id: s.parent_span_id.clone(),
            pipeline: pipeline.to_string(),
            name: s.name.clone(),
            step_type: s.step_type.as_str().to_string(),
            status: s.status.as_str().to_string(),
            service: s.service.clone(),
            start_time: s.start_time_ns,
            end_time: s.end_time_ns,
            duration_ns: s.duration_ns(),
            input: s.input.clone(),
            output: s.output.clone(),
            reasoning: s.reasoning.clone(),
            metadata: s.metadata.clone(),
            candidates_in: s.candidates_in,
            candidates_out: s.candidates_out,
            rejections: s.rejections.clone(),
            candidates: serde_json::to_string(&s.candidates).unwrap_or_else(|_| "[]".into()),
            model: s.model.clone(),
            provider: s.provider.clone(),
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cost: s.cost,
            confidence: s.confidence,
            error: s.error.clone(),
            version: s.version,
            written,
        }
    }

    pub(super) fn into_model(self) -> Result<Step, StoreError> {
        Ok(Step {
            step_type: self.step_type.parse().map_err(|e| bad("step_type", e))?,
            status: self.status.parse().map_err(|e| bad("status", e))?,
            candidates: serde_json::from_str(&self.candidates).map_err(|e| bad("candidates", e))?,
            app: self.app,
            execution_id: self.execution_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            name: self.name,
            service: self.service,
            start_time_ns: self.start_time,
            end_time_ns: self.end_time,
            input: self.input,
            output: self.output,
            reasoning: self.reasoning,
            metadata: self.metadata,
            candidates_in: self.candidates_in,
            candidates_out: self.candidates_out,
            rejections: self.rejections,
            model: self.model,
            provider: self.provider,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
            confidence: self.confidence,
            error: self.error,
            version: self.version,
        })
    }
}

/// The pipeline each step of a batch is known to belong to: the pipeline of
/// its nearest ancestor execution span when that chain is complete inside
/// the batch, else `""` (the funnel then finds the step through its trace).
pub(super) fn step_pipelines<'a>(executions: &[&'a Execution], steps: &[&Step]) -> Vec<&'a str> {
    type Key<'k> = (&'k str, &'k str, &'k str);
    let exec_spans: HashMap<Key<'_>, &'a str> = executions
        .iter()
        .map(|e| {
            (
                (e.app.as_str(), e.trace_id.as_str(), e.span_id.as_str()),
                e.pipeline.as_str(),
            )
        })
        .collect();
    let parents: HashMap<Key<'_>, &str> = steps
        .iter()
        .map(|s| {
            (
                (s.app.as_str(), s.trace_id.as_str(), s.span_id.as_str()),
                s.parent_span_id.as_str(),
            )
        })
        .collect();
    steps
        .iter()
        .map(|s| {
            let mut cur = s.parent_span_id.as_str();
            for _ in 0..=parents.len() {
                if cur.is_empty() {
                    break;
                }
                let key = (s.app.as_str(), s.trace_id.as_str(), cur);
                if let Some(p) = exec_spans.get(&key) {
                    return *p;
                }
                match parents.get(&key) {
                    Some(parent) => cur = parent,
                    None => break,
                }
            }
            ""
        })
        .collect()
}

/// A row of `apps`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct AppRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) created_at_ns: i64,
    pub(super) version: u64,
}

impl From<AppRow> for App {
    fn from(r: AppRow) -> Self {
        App {
            id: r.id,
            name: r.name,
            created_at_ns: r.created_at_ns,
        }
    }
}

/// A row of `api_keys`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct ApiKeyRow {
    pub(super) id: String,
    pub(super) app_id: String,
    pub(super) prefix: String,
    pub(super) hash: String,
    pub(super) scopes: Vec<String>,
    pub(super) created_at_ns: i64,
    pub(super) revoked_at_ns: Option<i64>,
    pub(super) version: u64,
}

/// The columns of [`ApiKeyRow`].
pub(super) const API_KEY_COLUMNS: &str =
    "id, app_id, prefix, hash, scopes, created_at_ns, revoked_at_ns, version";

impl ApiKeyRow {
    pub(super) fn new(k: &ApiKey, version: u64) -> Self {
        Self {
            id: k.id.clone(),
            app_id: k.app_id.clone(),
            prefix: k.prefix.clone(),
            hash: k.hash.clone(),
            scopes: k.scopes.clone(),
            created_at_ns: k.created_at_ns,
            revoked_at_ns: k.revoked_at_ns,
            version,
        }
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: r.id,
            app_id: r.app_id,
            prefix: r.prefix,
            hash: r.hash,
            scopes: r.scopes,
            created_at_ns: r.created_at_ns,
            revoked_at_ns: r.revoked_at_ns,
        }
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unreadable {what} in clickhouse: {e}"))
}
