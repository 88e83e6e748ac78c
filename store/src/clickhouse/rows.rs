//! Row types of the ClickHouse tables, as the `clickhouse` crate sends and
//! reads them (RowBinary, validated against the table schema), and their
//! conversions to and from the model.
//!
//! `DateTime64(9)` columns travel as `i64` nanoseconds; `Map` columns as
//! `BTreeMap`; sampled candidates as JSON text.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use xray_model::{ApiKey, App, Execution, Step, merge_rejections};

use crate::StoreError;
use crate::aggregate::nearest_execution;

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
    /// What the writer knew about the step's execution (schema 4), one of
    /// the `ATTRIBUTION_*` values. Written, never read back: the SELECT
    /// lists below return constants for this and the next four fields, and
    /// `trace_rows` payloads leave them out (hence the defaults).
    #[serde(default)]
    pub(super) attribution: i8,
    #[serde(default)]
    pub(super) exec_id: String,
    #[serde(default)]
    pub(super) exec_start: i64,
    #[serde(default)]
    pub(super) exec_first: u8,
    #[serde(default)]
    pub(super) merged_rejections: BTreeMap<String, u64>,
}

/// A row of `trace_rows` (schema 5): an execution's or a step's whole row,
/// as the JSON array its materialized view wrote (columns in the order of
/// [`ExecutionRow`] or [`StepRow`], times as nanoseconds).
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub(super) struct TraceRow {
    /// `TRACE_ROW_EXECUTION` or `TRACE_ROW_STEP`.
    pub(super) kind: i8,
    pub(super) row: String,
}

/// `trace_rows.kind` of a row of `executions`.
pub(super) const TRACE_ROW_EXECUTION: i8 = 1;
/// `trace_rows.kind` of a row of `steps`.
pub(super) const TRACE_ROW_STEP: i8 = 2;

/// The executions and steps of `rows`, decoded from their JSON arrays (every
/// version: the caller keeps the newest). A payload that does not decode is
/// an error naming the row, not a silently shorter trace.
pub(super) fn decode_trace_rows(
    rows: Vec<TraceRow>,
) -> Result<(Vec<ExecutionRow>, Vec<StepRow>), StoreError> {
    let mut executions = Vec::new();
    let mut steps = Vec::new();
    for r in rows {
        match r.kind {
            TRACE_ROW_EXECUTION => executions
                .push(serde_json::from_str(&r.row).map_err(|e| bad("trace_rows execution", e))?),
            TRACE_ROW_STEP => {
                steps.push(serde_json::from_str(&r.row).map_err(|e| bad("trace_rows step", e))?)
            }
            other => return Err(bad("trace_rows.kind", other)),
        }
    }
    Ok((executions, steps))
}

/// `steps.attribution`: the writer did not know the step's execution (also
/// every row written before schema 4).
pub(super) const ATTRIBUTION_UNKNOWN: i8 = 0;
/// `steps.attribution`: a step of the execution in `exec_id`/`exec_start`.
pub(super) const ATTRIBUTION_STEP: i8 = 1;
/// `steps.attribution`: the row is an execution's own span, never a step.
pub(super) const ATTRIBUTION_EXECUTION: i8 = 2;

/// The write-only columns of [`StepRow`] as constants, for SELECT lists.
macro_rules! write_only_step_columns {
    () => {
        ", toInt8(0) AS attribution, '' AS exec_id, toInt64(0) AS exec_start, \
         toUInt8(0) AS exec_first, CAST(map(), 'Map(String, UInt64)') AS merged_rejections"
    };
}

/// The columns of [`StepRow`], for SELECT lists.
pub(super) const STEP_COLUMNS: &str = concat!(
    "app, execution_id, trace_id, span_id, parent_span_id, \
    pipeline, name, step_type, status, service, start_time, end_time, duration_ns, input, \
    output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, \
    provider, input_tokens, output_tokens, cost, confidence, error, version, written",
    write_only_step_columns!()
);

/// [`STEP_COLUMNS`] without the large texts (input, output, reasoning,
/// metadata come back empty): for counting steps and for funnels.
pub(super) const LIGHT_STEP_COLUMNS: &str = concat!(
    "app, execution_id, trace_id, span_id, \
    parent_span_id, pipeline, name, step_type, status, service, start_time, end_time, \
    duration_ns, CAST(NULL, 'Nullable(String)') AS input, CAST(NULL, 'Nullable(String)') AS output, \
    CAST(NULL, 'Nullable(String)') AS reasoning, \
    CAST(map(), 'Map(LowCardinality(String), String)') AS metadata, candidates_in, \
    candidates_out, rejections, candidates, model, provider, input_tokens, output_tokens, cost, \
    confidence, error, version, written",
    write_only_step_columns!()
);

impl StepRow {
    pub(super) fn new(s: &Step, a: &Attribution<'_>, written: i64) -> Self {
        Self {
            app: s.app.clone(),
            execution_id: s.execution_id.clone(),
            trace_id: s.trace_id.clone(),
            span_id: s.span_id.clone(),
            parent_span_id: s.parent_span_id.clone(),
            pipeline: a.pipeline.to_string(),
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
            attribution: a.kind,
            exec_id: a.exec_id.to_string(),
            exec_start: a.exec_start,
            exec_first: u8::from(a.first),
            merged_rejections: merge_rejections(&s.rejections, &s.candidates),
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

/// What the writer of one batch knows about a step's execution: the
/// `pipeline`, `attribution`, `exec_id`, `exec_start` and `exec_first`
/// columns of its row (see `migrations/clickhouse/0004_funnel_attribution.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Attribution<'a> {
    /// The pipeline of the step's nearest execution ancestor, or `""` when
    /// the chain of parents leaves the batch first.
    pub(super) pipeline: &'a str,
    /// One of the `ATTRIBUTION_*` values.
    pub(super) kind: i8,
    /// The execution's id (`ATTRIBUTION_STEP` only, else `""`).
    pub(super) exec_id: &'a str,
    /// The execution's start (`ATTRIBUTION_STEP` and `ATTRIBUTION_EXECUTION`,
    /// else 0).
    pub(super) exec_start: i64,
    /// The earliest, by `(start_time, span_id)`, of the steps of its name
    /// that the batch attributes to the same execution.
    pub(super) first: bool,
}

/// Attributes each step of a batch, as far as the batch tells.
///
/// A step whose own span is an execution span of the batch is not a step
/// (`ATTRIBUTION_EXECUTION`). Otherwise its chain of parents is followed
/// through the batch's steps: the first execution span on it is the step's
/// execution (`ATTRIBUTION_STEP`), by [`nearest_execution`], the rule the
/// stores' reads apply to whole traces; when the chain leaves
/// the batch first, the step stays `ATTRIBUTION_UNKNOWN` and reads join it to
/// its execution by trace. Both answers are final: spans never change
/// parents, and a span the collector maps as a step is never an execution
/// span (only `xray.pipeline` spans and root spans are).
pub(super) fn attribute<'a>(executions: &[&'a Execution], steps: &[&Step]) -> Vec<Attribution<'a>> {
    type Key<'k> = (&'k str, &'k str, &'k str);
    let exec_spans: HashMap<Key<'_>, &'a Execution> = executions
        .iter()
        .map(|e| {
            (
                (e.app.as_str(), e.trace_id.as_str(), e.span_id.as_str()),
                *e,
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
    let nearest = |s: &Step| -> Option<&'a Execution> {
        let (app, trace) = (s.app.as_str(), s.trace_id.as_str());
        nearest_execution(
            &s.parent_span_id,
            parents.len(),
            |span| exec_spans.get(&(app, trace, span)).copied(),
            |span| parents.get(&(app, trace, span)).copied(),
        )
    };
    let mut out: Vec<Attribution<'a>> = steps
        .iter()
        .map(|s| {
            let ancestor = nearest(s);
            let pipeline = ancestor.map_or("", |e| e.pipeline.as_str());
            let own = (s.app.as_str(), s.trace_id.as_str(), s.span_id.as_str());
            match (exec_spans.get(&own), ancestor) {
                (Some(itself), _) => Attribution {
                    pipeline,
                    kind: ATTRIBUTION_EXECUTION,
                    exec_id: "",
                    exec_start: itself.start_time_ns,
                    first: false,
                },
                (None, Some(e)) => Attribution {
                    pipeline,
                    kind: ATTRIBUTION_STEP,
                    exec_id: e.execution_id.as_str(),
                    exec_start: e.start_time_ns,
                    first: false,
                },
                (None, None) => Attribution {
                    pipeline,
                    kind: ATTRIBUTION_UNKNOWN,
                    exec_id: "",
                    exec_start: 0,
                    first: false,
                },
            }
        })
        .collect();
    // The first step of each (execution, name), by (start_time, span_id).
    let mut first: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for (i, (s, a)) in steps.iter().zip(&out).enumerate() {
        if a.kind != ATTRIBUTION_STEP {
            continue;
        }
        first
            .entry((s.app.as_str(), a.exec_id, s.name.as_str()))
            .and_modify(|j| {
                let t = steps[*j];
                if (s.start_time_ns, s.span_id.as_str()) < (t.start_time_ns, t.span_id.as_str()) {
                    *j = i;
                }
            })
            .or_insert(i);
    }
    for i in first.into_values() {
        out[i].first = true;
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{execution, span_id_for, step};
    use xray_model::StepType;

    const MS: i64 = 1_000_000;

    /// Payloads as the engine's `formatRowNoNewline('JSONCompactEachRow', …)`
    /// writes them in the views of migration 0005.
    const EXECUTION_PAYLOAD: &str = r#"["default", "exec-00000007", "0000000000000000abc0000000000007", "0000000000000071", "ads", "prod", "ads-api", "completed", 1767139200604800000, 1767139200661800000, 57000000, "{\"query\":\"item 7\"}", null, null, ["user-7","bench"], {"region":"eu"}, 10, 1767139200604800000, 3, 1796617090412266479]"#;
    const STEP_PAYLOAD: &str = r#"["default", "exec-00000000", "0000000000000000abc0000000000000", "0000000000000002", "0000000000000001", "shop", "keywords", "llm", "completed", "shop-api", 1767139200001000000, 1767139200006000000, 5000000, "{\"step\":\"keywords\",\"n\":0}", "{\"kept\":0}", "keywords applied its rules", {}, 120, 10, {"price":100,"brand":10}, "[]", "model-a", null, 200, 20, 0.0125, null, null, 1, 1796617090412266479]"#;

    #[test]
    fn trace_row_payloads_decode_into_rows() {
        let rows = vec![
            TraceRow {
                kind: TRACE_ROW_STEP,
                row: STEP_PAYLOAD.into(),
            },
            TraceRow {
                kind: TRACE_ROW_EXECUTION,
                row: EXECUTION_PAYLOAD.into(),
            },
        ];
        let (executions, steps) = decode_trace_rows(rows).unwrap();
        let e = executions[0].clone().into_model().unwrap();
        assert_eq!(e.execution_id, "exec-00000007");
        assert_eq!(e.span_id, "0000000000000071");
        assert_eq!(e.start_time_ns, 1_767_139_200_604_800_000);
        assert_eq!(e.end_time_ns, Some(1_767_139_200_661_800_000));
        assert_eq!(e.input.as_deref(), Some(r#"{"query":"item 7"}"#));
        assert_eq!(e.output, None);
        assert_eq!(e.tags, ["user-7", "bench"]);
        assert_eq!(e.metadata["region"], "eu");
        assert_eq!(e.step_count, 10);
        assert_eq!(e.version, 3);
        let s = steps[0].clone().into_model().unwrap();
        assert_eq!(s.parent_span_id, "0000000000000001");
        assert_eq!(s.step_type, StepType::Llm);
        assert_eq!((s.candidates_in, s.candidates_out), (Some(120), Some(10)));
        assert_eq!(s.rejections["price"], 100);
        assert_eq!(s.model.as_deref(), Some("model-a"));
        assert_eq!(s.provider, None);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(200), Some(20)));
        assert_eq!(s.cost, Some(0.0125));
        assert_eq!(s.reasoning.as_deref(), Some("keywords applied its rules"));
        // The write-only columns are not in the payload.
        assert_eq!(steps[0].attribution, ATTRIBUTION_UNKNOWN);
        assert!(steps[0].merged_rejections.is_empty());
    }

    #[test]
    fn undecodable_trace_rows_are_errors() {
        let quoted = STEP_PAYLOAD.replace("1767139200001000000", "\"1767139200001000000\"");
        let e = decode_trace_rows(vec![TraceRow {
            kind: TRACE_ROW_STEP,
            row: quoted,
        }])
        .unwrap_err();
        assert!(e.to_string().contains("trace_rows step"), "{e}");
        let e = decode_trace_rows(vec![TraceRow {
            kind: 7,
            row: "[]".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("trace_rows.kind"), "{e}");
    }

    fn kinds<'a>(a: &'a [Attribution<'_>]) -> Vec<(i8, &'a str, bool)> {
        a.iter().map(|a| (a.kind, a.exec_id, a.first)).collect()
    }

    #[test]
    fn steps_follow_their_parents_to_the_nearest_execution() {
        let outer = execution("a", "outer", "p", 0, 100 * MS);
        let mut inner = execution("a", "inner", "q", 10 * MS, 20 * MS);
        inner.trace_id = outer.trace_id.clone();
        let top = step(&outer, "top", StepType::Logic, MS, MS);
        let mut deep = step(&outer, "deep", StepType::Llm, 2 * MS, MS);
        deep.parent_span_id = top.span_id.clone();
        // the inner execution's span, also sent as a step row
        let mut own = step(&outer, "inner-span", StepType::Logic, 10 * MS, 20 * MS);
        own.span_id = inner.span_id.clone();
        let mut under_inner = step(&inner, "x", StepType::Filter, 11 * MS, MS);
        under_inner.parent_span_id = inner.span_id.clone();
        // parent not in the batch
        let mut orphan = step(&outer, "orphan", StepType::Tool, 3 * MS, MS);
        orphan.parent_span_id = span_id_for("outer", "missing");
        let steps = [&top, &deep, &own, &under_inner, &orphan];
        let a = attribute(&[&outer, &inner], &steps);
        assert_eq!(
            kinds(&a),
            [
                (ATTRIBUTION_STEP, "outer", true),
                (ATTRIBUTION_STEP, "outer", true),
                (ATTRIBUTION_EXECUTION, "", false),
                (ATTRIBUTION_STEP, "inner", true),
                (ATTRIBUTION_UNKNOWN, "", false),
            ]
        );
        assert_eq!(
            a.iter().map(|a| a.pipeline).collect::<Vec<_>>(),
            ["p", "p", "p", "q", ""]
        );
        assert_eq!(
            a.iter().map(|a| a.exec_start).collect::<Vec<_>>(),
            [0, 0, 10 * MS, 10 * MS, 0],
            "a step's execution start; an execution span's own start"
        );
        // Without the execution in the batch nothing is known.
        let a = attribute(&[], &steps);
        assert!(
            a.iter()
                .all(|a| a.kind == ATTRIBUTION_UNKNOWN && a.pipeline.is_empty())
        );
    }

    #[test]
    fn one_first_run_per_execution_and_name() {
        let e = execution("a", "e", "p", 0, 100 * MS);
        let mut f1 = step(&e, "fetch", StepType::Retrieval, 5 * MS, MS);
        f1.span_id = "00000000000000b2".into();
        let mut f2 = step(&e, "fetch", StepType::Retrieval, 2 * MS, MS);
        f2.span_id = "00000000000000b1".into();
        // same start as f2: the smaller span id wins
        let mut f3 = step(&e, "fetch", StepType::Retrieval, 2 * MS, MS);
        f3.span_id = "00000000000000a9".into();
        let rank = step(&e, "rank", StepType::Rank, 9 * MS, MS);
        let a = attribute(&[&e], &[&f1, &f2, &f3, &rank]);
        assert_eq!(
            a.iter().map(|a| a.first).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }
}
