//! The pipeline funnel on ClickHouse, aggregated by the server.
//!
//! Four steps, each a parameterized query:
//!
//! 1. **Bounds**: the window's executions of the pipeline (sort-key range
//!    `(app, pipeline, start_time)`, newest version per identity with
//!    `LIMIT 1 BY`) give the time range their steps are read in:
//!    `[first start − SLACK, last end (or now when one is running) + SLACK]`.
//! 2. **Shared traces**: the traces of those executions that hold another
//!    execution too (a nested pipeline). They are rare, and the rule that
//!    splits their steps between executions (nearest execution ancestor,
//!    [`aggregate::steps_of_execution`]) needs the whole trace.
//!    Sent at the same time: the hashes of the step identities that have
//!    several rows in the range (versions, retried writes), usually none.
//! 3. Those traces are read whole and split in Rust; their step runs travel
//!    into step 4 as one JSON parameter, already reduced to what the
//!    aggregation needs.
//! 4. **Aggregation**, one query: the steps of the pipeline in the range
//!    (sort-key range `(app, pipeline, name, start_time)`, newest version
//!    per identity with `LIMIT 1 BY` for the identities of step 2's hashes
//!    only, see [`steps_sql`]), joined to the executions of traces
//!    holding one execution, plus the rows of step 3, grouped by step name:
//!    counts, sums, distinct executions, sorted durations for nearest-rank
//!    percentiles, step types and merged rejections with `sumMap` (the
//!    sampled candidates' JSON is opened with `JSONExtract` only on rows
//!    that have some). Rust finishes the figures with
//!    [`aggregate::finish_funnel`], the code every backend shares.
//!
//! A step that starts more than [`SLACK_NS`] before its execution or after
//! its execution's end is outside the range and not counted.

use serde::Deserialize;
use xray_model::{Execution, StepType, merge_rejections};

use super::ClickhouseBackend;
use super::rows::LIGHT_STEP_COLUMNS;
use super::store::{Param, Sql, app_condition, latest_executions};
use crate::aggregate::{self, StepTotals};
use crate::joins::Traces;
use crate::{PipelineStepStats, Scope, StoreError, TimeWindow};

/// How far outside its execution's span a step may start and still be read
/// (clock skew between services, work finishing after the execution span).
pub(super) const SLACK_NS: i64 = 5 * 60 * 1_000_000_000;

#[derive(clickhouse::Row, Deserialize)]
struct BoundsRow {
    n: u64,
    lo: i64,
    hi: i64,
}

#[derive(clickhouse::Row, Deserialize)]
struct TraceRow {
    app: String,
    trace_id: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct TotalsRow {
    name: String,
    runs: u64,
    failed: u64,
    with_counts: u64,
    total_in: u64,
    total_out: u64,
    executions: u64,
    drop_n: u64,
    drop_sum: f64,
    off_sum: i64,
    p50: Option<i64>,
    p95: Option<i64>,
    type_names: Vec<String>,
    type_counts: Vec<u64>,
    reasons: Vec<String>,
    reason_counts: Vec<u64>,
}

/// The aggregation's input rows, in the column order of the JSON tuples.
const RUN_TUPLE: &str = "Array(Tuple(name String, ty String, failed UInt8, en UInt64, \
     d Nullable(Int64), off Int64, cin Nullable(UInt64), cout Nullable(UInt64), \
     rk Array(String), rv Array(UInt64)))";

/// The window's executions of the pipeline, every version (parameters:
/// `pipeline`, `from`, `to`, optional `app`).
fn window_filter(scope: &Scope) -> String {
    format!(
        "pipeline = {{pipeline:String}} \
         AND start_time >= fromUnixTimestamp64Nano({{from:Int64}}) \
         AND start_time < fromUnixTimestamp64Nano({{to:Int64}}){}",
        app_condition(scope)
    )
}

/// The newest version of the window's executions of the pipeline (same
/// parameters as [`window_filter`]).
fn window_executions(columns: &str, scope: &Scope) -> String {
    latest_executions(columns, &window_filter(scope))
}

/// The steps of the pipeline, or of no pipeline known at write time, that
/// start in the range (parameters `pipeline`, `lo`, `hi`, optional `app`).
fn range_steps_filter(scope: &Scope) -> String {
    format!(
        "pipeline IN ({{pipeline:String}}, '') \
         AND start_time >= fromUnixTimestamp64Nano({{lo:Int64}}) \
         AND start_time <= fromUnixTimestamp64Nano({{hi:Int64}}){}",
        app_condition(scope)
    )
}

fn bind_window(sql: &mut Sql, scope: &Scope, pipeline: &str, window: TimeWindow) {
    sql.bind("pipeline", Param::Str(pipeline.to_string()))
        .bind("from", Param::I64(window.from_ns))
        .bind("to", Param::I64(window.to_ns))
        .bind_scope(scope);
}

/// The steps of the pipeline in the range (parameters `pipeline`, `lo`,
/// `hi`, optional `app`), newest version per identity. `dups` says how:
///
/// - `Dups::Few`: only the identities whose hash is in `{dups:Array(UInt64)}`
///   can have several rows (step 3b found them), so only those rows are
///   deduplicated (`LIMIT 1 BY`, a sort); every other row is the only one of
///   its identity and is read as it is. Exact whatever the hash: two rows of
///   one identity always have the same hash.
/// - `Dups::Many`: every row goes through `LIMIT 1 BY`.
fn steps_sql(scope: &Scope, dups: Dups) -> String {
    let read = format!(
        "SELECT app, trace_id, span_id, name, step_type, status, start_time, duration_ns, \
                candidates_in, candidates_out, rejections, candidates \
         FROM steps WHERE {}",
        range_steps_filter(scope)
    );
    let dedupe = "ORDER BY version DESC, written DESC LIMIT 1 BY app, trace_id, span_id";
    match dups {
        Dups::None => read,
        Dups::Few => format!(
            "{read} AND {IDENTITY_HASH} NOT IN {{dups:Array(UInt64)}} \
             UNION ALL SELECT * FROM ({read} AND {IDENTITY_HASH} IN {{dups:Array(UInt64)}} {dedupe})"
        ),
        Dups::Many => format!("{read} {dedupe}"),
    }
}

/// A step's identity `(app, trace_id, span_id)` hashed, for finding the
/// identities that have several rows (versions, retried writes).
const IDENTITY_HASH: &str = "cityHash64(app, trace_id, span_id)";

/// Up to this many duplicated identities are passed to the aggregation as a
/// parameter; more, and every row is deduplicated.
const MAX_DUP_HASHES: usize = 10_000;

/// How the aggregation deduplicates step versions, see [`steps_sql`].
#[derive(Clone, Copy)]
enum Dups {
    /// No identity has two rows in the range.
    None,
    /// A few identities (their hashes are the `dups` parameter) may.
    Few,
    /// Too many to list.
    Many,
}

/// The aggregation query (step 4).
fn aggregation_sql(scope: &Scope, dups: Dups) -> String {
    let steps = steps_sql(scope, dups);
    let ex = window_executions("app, execution_id, trace_id, span_id, start_time", scope);
    // Within one app the trace id alone is the join key. `en` numbers the
    // window's executions (distinct per execution: counting them is a hash
    // set of integers, not of strings).
    let on = if scope.app().is_some() {
        "s.trace_id = e.trace_id"
    } else {
        "s.app = e.app AND s.trace_id = e.trace_id"
    };
    // Sampled candidates rejected for a reason the histogram does not have.
    let sampled = "if(s.candidates = '[]', CAST([], 'Array(String)'), \
         arrayFilter(r -> NOT mapContains(s.rejections, r), \
           arrayMap(c -> ifNull(c.2, 'unspecified'), \
             arrayFilter(c -> c.1 = 'rejected', \
               JSONExtract(s.candidates, 'Array(Tuple(decision String, reason Nullable(String)))')))))";
    format!(
        "SELECT name, runs, failed, with_counts, total_in, total_out, executions, drop_n, \
                drop_sum, off_sum, \
                if(empty(ds), NULL, ds[toUInt64(greatest(1, ceil(0.5 * length(ds))))]) AS p50, \
                if(empty(ds), NULL, ds[toUInt64(greatest(1, ceil(0.95 * length(ds))))]) AS p95, \
                type_names, type_counts, reasons, reason_counts \
         FROM ( \
           SELECT name, count() AS runs, sum(failed) AS failed, \
             countIf(cin IS NOT NULL AND cout IS NOT NULL) AS with_counts, \
             sumIf(assumeNotNull(cin), cin IS NOT NULL AND cout IS NOT NULL) AS total_in, \
             sumIf(assumeNotNull(cout), cin IS NOT NULL AND cout IS NOT NULL) AS total_out, \
             uniqExact(en) AS executions, \
             countIf(cin > 0 AND cout IS NOT NULL) AS drop_n, \
             sumIf(if(assumeNotNull(cin) > assumeNotNull(cout), \
                      assumeNotNull(cin) - assumeNotNull(cout), 0) / assumeNotNull(cin), \
                   cin > 0 AND cout IS NOT NULL) AS drop_sum, \
             sum(off) AS off_sum, \
             arraySort(groupArrayIf(assumeNotNull(d), d IS NOT NULL)) AS ds, \
             sumMap([ty], [toUInt64(1)]) AS tm, tm.1 AS type_names, tm.2 AS type_counts, \
             sumMap(rk, rv) AS rm, rm.1 AS reasons, rm.2 AS reason_counts \
           FROM ( \
             SELECT toString(s.name) AS name, toString(s.step_type) AS ty, \
                    toUInt8(s.status = 'failed') AS failed, \
                    e.en AS en, s.duration_ns AS d, \
                    toUnixTimestamp64Nano(s.start_time) - toUnixTimestamp64Nano(e.start_time) AS off, \
                    s.candidates_in AS cin, s.candidates_out AS cout, \
                    {sampled} AS sampled_reasons, \
                    arrayConcat(arrayMap(k -> toString(k), mapKeys(s.rejections)), sampled_reasons) AS rk, \
                    arrayConcat(mapValues(s.rejections), arrayMap(r -> toUInt64(1), sampled_reasons)) AS rv \
             FROM ({steps}) AS s \
             INNER JOIN ( \
               SELECT app, trace_id, span_id, start_time, rowNumberInAllBlocks() AS en \
               FROM ({ex}) WHERE concat(trace_id, ':', app) NOT IN {{shared:Array(String)}} \
             ) AS e ON {on} \
             WHERE s.span_id != e.span_id \
             UNION ALL \
             SELECT x.name, x.ty, x.failed, x.en, x.d, x.off, x.cin, x.cout, \
                    CAST([], 'Array(String)'), x.rk, x.rv \
             FROM (SELECT arrayJoin(JSONExtract({{runs:String}}, '{RUN_TUPLE}')) AS x) \
           ) \
           GROUP BY name \
         )"
    )
}

impl ClickhouseBackend {
    /// See the module documentation.
    pub(super) async fn funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        // 1. bounds
        let mut bounds = Sql::new(format!(
            "SELECT count() AS n, toUnixTimestamp64Nano(min(start_time)) AS lo, \
             greatest(toUnixTimestamp64Nano(max(ifNull(end_time, start_time))), \
                      if(countIf(end_time IS NULL) > 0, toUnixTimestamp64Nano(now64(9)), 0)) AS hi \
             FROM ({})",
            window_executions("app, execution_id, start_time, end_time", scope)
        ));
        bind_window(&mut bounds, scope, pipeline, window);
        let b: BoundsRow = bounds
            .query(&self.inner.client)
            .fetch_one()
            .await
            .map_err(super::store_error)?;
        if b.n == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = (b.lo.saturating_sub(SLACK_NS), b.hi.saturating_add(SLACK_NS));
        // 2. traces that hold another execution besides the window's one
        // The set of the window's traces is read without deduplicating
        // versions: a trace whose older version alone is in the window is
        // split in Rust too, where only newest versions count (harmless).
        // More than one distinct execution id is `min != max`, cheaper than
        // counting them.
        let mut shared = Sql::new(format!(
            "SELECT app, trace_id FROM executions \
             WHERE start_time >= fromUnixTimestamp64Nano({{lo:Int64}}) \
             AND start_time <= fromUnixTimestamp64Nano({{hi:Int64}}){} \
             AND (app, trace_id) IN (SELECT app, trace_id FROM executions WHERE {}) \
             GROUP BY app, trace_id HAVING min(execution_id) != max(execution_id)",
            app_condition(scope),
            window_filter(scope)
        ));
        bind_window(&mut shared, scope, pipeline, window);
        shared.bind("lo", Param::I64(lo)).bind("hi", Param::I64(hi));
        // 3b. (sent with 2) the step identities with several rows in the
        // range, by hash: usually none, and then the aggregation skips the
        // sort that deduplicating versions costs.
        let mut dups = Sql::new(format!(
            "SELECT {IDENTITY_HASH} AS h FROM steps WHERE {} \
             GROUP BY h HAVING count() > 1 LIMIT {}",
            range_steps_filter(scope),
            MAX_DUP_HASHES + 1
        ));
        bind_window(&mut dups, scope, pipeline, window);
        dups.bind("lo", Param::I64(lo)).bind("hi", Param::I64(hi));
        let client = &self.inner.client;
        let (shared, dups) = tokio::try_join!(
            async {
                shared
                    .query(client)
                    .fetch_all::<TraceRow>()
                    .await
                    .map_err(super::store_error)
            },
            async {
                dups.query(client)
                    .fetch_all::<u64>()
                    .await
                    .map_err(super::store_error)
            }
        )?;
        let dedupe = match dups.len() {
            0 => Dups::None,
            n if n <= MAX_DUP_HASHES => Dups::Few,
            _ => Dups::Many,
        };
        // 3. their steps, split in Rust
        let keys: Vec<(String, String)> = shared
            .iter()
            .map(|t| (t.app.clone(), t.trace_id.clone()))
            .collect();
        let traces = self.traces(&keys, LIGHT_STEP_COLUMNS).await?;
        let runs = shared_runs(&traces, scope, pipeline, window)?;
        // 4. the aggregation
        let mut agg = Sql::new(aggregation_sql(scope, dedupe));
        bind_window(&mut agg, scope, pipeline, window);
        if let Dups::Few = dedupe {
            agg.bind("dups", Param::U64s(dups));
        }
        agg.bind("lo", Param::I64(lo))
            .bind("hi", Param::I64(hi))
            .bind(
                "shared",
                Param::Strs(
                    shared
                        .iter()
                        .map(|t| format!("{}:{}", t.trace_id, t.app))
                        .collect(),
                ),
            )
            .bind("runs", Param::Str(runs));
        let rows: Vec<TotalsRow> = agg
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(super::store_error)?;
        Ok(aggregate::finish_funnel(rows.into_iter().map(|r| {
            StepTotals {
                name: r.name,
                types: r
                    .type_names
                    .iter()
                    .zip(r.type_counts)
                    .map(|(t, n)| (t.parse().unwrap_or(StepType::Custom), n))
                    .collect(),
                executions: r.executions,
                runs: r.runs,
                failed: r.failed,
                runs_with_counts: r.with_counts,
                total_in: r.total_in,
                total_out: r.total_out,
                drop_sum: r.drop_sum,
                drop_n: r.drop_n,
                offset_sum: r.off_sum as f64,
                p50_duration_ns: r.p50,
                p95_duration_ns: r.p95,
                rejections: r.reasons.into_iter().zip(r.reason_counts).collect(),
            }
        })))
    }
}

/// The step runs of the window's executions of `pipeline` that live in
/// shared traces, as the JSON array the aggregation reads.
fn shared_runs(
    traces: &Traces,
    scope: &Scope,
    pipeline: &str,
    window: TimeWindow,
) -> Result<String, StoreError> {
    let mine: Vec<&Execution> = traces
        .executions()
        .filter(|e| {
            e.pipeline == pipeline
                && e.start_time_ns >= window.from_ns
                && e.start_time_ns < window.to_ns
                && scope.app().is_none_or(|a| a == e.app)
        })
        .collect();
    let mut rows: Vec<serde_json::Value> = Vec::new();
    // Numbered above those of the aggregation's own join (row numbers of
    // at most a few million window executions), so each execution keeps a
    // number of its own.
    for (i, e) in mine.into_iter().enumerate() {
        let en = (1u64 << 40) + i as u64;
        for s in traces.steps_of(e) {
            let (rk, rv): (Vec<String>, Vec<u64>) = merge_rejections(&s.rejections, &s.candidates)
                .into_iter()
                .unzip();
            // JSONExtract reads tuples from arrays positionally.
            rows.push(serde_json::json!([
                s.name,
                s.step_type.as_str(),
                u8::from(s.status == xray_model::Status::Failed),
                en,
                s.duration_ns(),
                s.start_time_ns - e.start_time_ns,
                s.candidates_in,
                s.candidates_out,
                rk,
                rv
            ]));
        }
    }
    serde_json::to_string(&rows).map_err(|e| StoreError::Backend(e.to_string()))
}
