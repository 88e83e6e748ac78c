//! The aggregate reads of the SQLite backend: pipeline summaries and the
//! pipeline funnel, computed by SQLite itself.
//!
//! Both are one SQL statement over the window's rows: counts and sums with
//! `GROUP BY`, rejection histograms opened with `json_each` and merged with
//! the rejected sampled candidates (the rule of
//! [`xray_model::merge_rejections`]), and the durations as one
//! `group_concat` text per group, which Rust parses and sorts for the
//! nearest-rank percentiles ([`aggregate::percentile`]): a sort of the
//! window's rows inside SQLite (`row_number()`) measured four times slower.
//! Rust only receives a few rows per step name and finishes them with
//! [`aggregate::finish_funnel`], the same code every backend uses.
//!
//! The funnel attaches steps to executions as
//! [`aggregate::steps_of_execution`] does. A trace holding one execution
//! (the normal case) is a plain join. The rare trace that holds several is
//! read whole, split in Rust, and its step-to-execution assignment travels
//! into the statement as one JSON parameter
//! (`[[app, trace_id, span_id, execution rowid, execution start ns], …]`).

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};
use xray_model::{Execution, StepType};

use super::rows::{self, EXECUTION_COLUMNS, STEP_COLUMNS};
use super::store::{Where, be, text};
use crate::aggregate::{self, StepTotals};
use crate::{PipelineStepStats, PipelineSummary, Scope, StoreError, TimeWindow};

/// The integers of a `group_concat` of durations (comma-separated; NULLs
/// are left out by SQLite), sorted.
fn sorted_durations(list: Option<&str>) -> Vec<i64> {
    let mut v: Vec<i64> = list
        .unwrap_or("")
        .split(',')
        .filter_map(|d| d.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Executions of the window that share their trace with another execution.
const SHARED_TRACE: &str = "EXISTS (SELECT 1 FROM executions o INDEXED BY executions_by_trace \
     WHERE o.trace_id = e.trace_id AND o.app = e.app AND o.execution_id <> e.execution_id)";

/// Executions of the window alone in their trace.
const OWN_TRACE: &str = "NOT EXISTS (SELECT 1 FROM executions o INDEXED BY executions_by_trace \
     WHERE o.trace_id = e.trace_id AND o.app = e.app AND o.execution_id <> e.execution_id)";

/// Per-pipeline summaries over `window`, by pipeline name.
pub(super) fn pipelines(
    conn: &Connection,
    scope: &Scope,
    window: TimeWindow,
) -> Result<Vec<PipelineSummary>, StoreError> {
    let mut w = Where::default();
    w.scope(scope);
    w.push(
        "e.start_time_ns >= ? AND e.start_time_ns < ?",
        [Value::Integer(window.from_ns), Value::Integer(window.to_ns)],
    );
    let sql = format!(
        "SELECT e.pipeline, count(*), sum(e.status = 'failed'), max(e.start_time_ns), \
                group_concat(e.duration_ns) \
         FROM executions e {} GROUP BY e.pipeline ORDER BY e.pipeline",
        w.sql()
    );
    let mut stmt = conn.prepare(&sql).map_err(be)?;
    let rows = stmt
        .query_map(params_from_iter(w.values), |r| {
            let durations = sorted_durations(r.get::<_, Option<String>>(4)?.as_deref());
            Ok(PipelineSummary {
                pipeline: r.get(0)?,
                executions: r.get::<_, i64>(1)? as u64,
                failed: r.get::<_, i64>(2)? as u64,
                last_seen_ns: r.get(3)?,
                p50_duration_ns: aggregate::percentile(&durations, 0.50),
                p95_duration_ns: aggregate::percentile(&durations, 0.95),
                p99_duration_ns: aggregate::percentile(&durations, 0.99),
            })
        })
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)?;
    Ok(rows)
}

/// The executions of `pipeline` in `window`, in the scope (a WHERE clause
/// over `executions e`).
fn window_filter(scope: &Scope, pipeline: &str, window: TimeWindow) -> Where {
    let mut w = Where::default();
    w.scope(scope);
    w.push("e.pipeline = ?", [text(pipeline)]);
    w.push(
        "e.start_time_ns >= ? AND e.start_time_ns < ?",
        [Value::Integer(window.from_ns), Value::Integer(window.to_ns)],
    );
    w
}

/// For the window's executions that share their trace with other
/// executions: which steps belong to which of them, as the JSON parameter
/// of the funnel statement (`[]` when there are none).
fn shared_trace_assignment(
    conn: &Connection,
    scope: &Scope,
    pipeline: &str,
    window: TimeWindow,
) -> Result<String, StoreError> {
    let mut w = window_filter(scope, pipeline, window);
    w.push(SHARED_TRACE, []);
    let sql = format!(
        "SELECT DISTINCT e.app, e.trace_id FROM executions e {}",
        w.sql()
    );
    let traces = conn
        .prepare(&sql)
        .map_err(be)?
        .query_map(params_from_iter(w.values), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)?;
    let mut owned: Vec<serde_json::Value> = Vec::new();
    for (app, trace) in traces {
        let trace_executions: Vec<Execution> = conn
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions e INDEXED BY executions_by_trace \
                 WHERE e.app = ?1 AND e.trace_id = ?2"
            ))
            .map_err(be)?
            .query_map(params![app, trace], rows::execution)
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)?;
        let steps = conn
            .prepare_cached(&format!(
                "SELECT {STEP_COLUMNS} FROM steps WHERE app = ?1 AND trace_id = ?2"
            ))
            .map_err(be)?
            .query_map(params![app, trace], rows::step)
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)?;
        for e in &trace_executions {
            let in_window = e.pipeline == pipeline
                && e.start_time_ns >= window.from_ns
                && e.start_time_ns < window.to_ns;
            if !in_window {
                continue;
            }
            let rowid: i64 = conn
                .prepare_cached("SELECT rowid FROM executions WHERE app = ?1 AND execution_id = ?2")
                .map_err(be)?
                .query_row(params![e.app, e.execution_id], |r| r.get(0))
                .map_err(be)?;
            for s in aggregate::steps_of_execution(e, &trace_executions, steps.clone()) {
                owned.push(serde_json::json!([
                    s.app,
                    s.trace_id,
                    s.span_id,
                    rowid,
                    e.start_time_ns
                ]));
            }
        }
    }
    Ok(serde_json::Value::Array(owned).to_string())
}

/// Per-step aggregates of one pipeline over `window`, ordered by mean offset.
pub(super) fn pipeline_funnel(
    conn: &Connection,
    scope: &Scope,
    pipeline: &str,
    window: TimeWindow,
) -> Result<Vec<PipelineStepStats>, StoreError> {
    let owned = shared_trace_assignment(conn, scope, pipeline, window)?;
    let mut w = window_filter(scope, pipeline, window);
    w.push(OWN_TRACE, []);
    // Step columns as the funnel reads them; `max(x, 0)` clamps negative
    // counts like the row mapping does (and keeps NULL).
    let step_fields = "s.name AS name, s.step_type AS ty, s.status = 'failed' AS failed, \
         s.duration_ns AS d, max(s.candidates_in, 0) AS cin, max(s.candidates_out, 0) AS cout, \
         nullif(s.rejections, '{}') AS rej, nullif(s.candidates, '[]') AS cands";
    let reason = "coalesce(c.value ->> '$.reason', 'unspecified')";
    let sql = format!(
        "WITH ex AS MATERIALIZED ( \
            SELECT e.rowid AS eid, e.app AS app, e.trace_id AS trace_id, e.span_id AS span_id, \
                   e.start_time_ns AS start \
            FROM executions e {where_} \
         ), \
         r AS MATERIALIZED ( \
            SELECT {step_fields}, ex.eid AS eid, s.start_time_ns - ex.start AS off \
            FROM ex JOIN steps s ON s.app = ex.app AND s.trace_id = ex.trace_id AND s.span_id <> ex.span_id \
            UNION ALL \
            SELECT {step_fields}, o.value ->> 3 AS eid, s.start_time_ns - (o.value ->> 4) AS off \
            FROM json_each(?) o JOIN steps s \
              ON s.app = o.value ->> 0 AND s.trace_id = o.value ->> 1 AND s.span_id = o.value ->> 2 \
         ), \
         rejected AS ( \
            SELECT r.name AS name, h.key AS reason, h.value AS n FROM r, json_each(r.rej) h \
            WHERE r.rej IS NOT NULL \
            UNION ALL \
            SELECT r.name, {reason}, 1 FROM r, json_each(r.cands) c \
            WHERE r.cands IS NOT NULL AND c.value ->> '$.decision' = 'rejected' \
              AND (r.rej IS NULL \
                   OR NOT EXISTS (SELECT 1 FROM json_each(r.rej) k WHERE k.key = {reason})) \
         ) \
         SELECT 0, name, NULL, count(*), sum(failed), \
                sum(cin IS NOT NULL AND cout IS NOT NULL), \
                sum(CASE WHEN cout IS NOT NULL THEN cin END), \
                sum(CASE WHEN cin IS NOT NULL THEN cout END), \
                count(DISTINCT eid), sum(cin > 0 AND cout IS NOT NULL), total(off), \
                total(CASE WHEN cin > 0 AND cout IS NOT NULL THEN max(cin - cout, 0) * 1.0 / cin END), \
                group_concat(d) \
         FROM r GROUP BY name \
         UNION ALL \
         SELECT 1, name, ty, count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM r GROUP BY name, ty \
         UNION ALL \
         SELECT 2, name, reason, sum(n), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM rejected GROUP BY name, reason",
        where_ = w.sql(),
    );
    let mut values = w.values;
    values.push(Value::Text(owned));
    let mut stmt = conn.prepare(&sql).map_err(be)?;
    let mut rows = stmt.query(params_from_iter(values)).map_err(be)?;
    let mut by_name: BTreeMap<String, StepTotals> = BTreeMap::new();
    let u = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    while let Some(r) = rows.next().map_err(be)? {
        let kind: i64 = r.get(0).map_err(be)?;
        let name: String = r.get(1).map_err(be)?;
        let t = by_name.entry(name.clone()).or_insert_with(|| StepTotals {
            name,
            ..StepTotals::default()
        });
        match kind {
            0 => {
                t.runs = u(r.get(3).map_err(be)?);
                t.failed = u(r.get(4).map_err(be)?);
                t.runs_with_counts = u(r.get(5).map_err(be)?);
                t.total_in = u(r.get(6).map_err(be)?);
                t.total_out = u(r.get(7).map_err(be)?);
                t.executions = u(r.get(8).map_err(be)?);
                t.drop_n = u(r.get(9).map_err(be)?);
                t.offset_sum = r.get(10).map_err(be)?;
                t.drop_sum = r.get(11).map_err(be)?;
                let durations =
                    sorted_durations(r.get::<_, Option<String>>(12).map_err(be)?.as_deref());
                t.p50_duration_ns = aggregate::percentile(&durations, 0.50);
                t.p95_duration_ns = aggregate::percentile(&durations, 0.95);
            }
            1 => {
                let ty: String = r.get(2).map_err(be)?;
                let n = u(r.get(3).map_err(be)?);
                t.types.push((ty.parse().unwrap_or(StepType::Custom), n));
            }
            _ => {
                let reason: String = r.get(2).map_err(be)?;
                t.rejections.push((reason, u(r.get(3).map_err(be)?)));
            }
        }
    }
    Ok(aggregate::finish_funnel(by_name.into_values()))
}
