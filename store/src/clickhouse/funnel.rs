//! The pipeline funnel on ClickHouse, aggregated by the server.
//!
//! Steps come to the aggregation by one of three paths, chosen per trace so
//! that no execution's steps are split between them:
//!
//! - **Attributed** (the usual case): steps the collector wrote together
//!   with their execution carry it (`attribution = 'step'`, `exec_id`,
//!   `exec_start`, `exec_first`; see [`super::rows::attribute`] and
//!   migration 0004). They are read straight from the sort-key range of the
//!   pipeline, found by the minmax index on `exec_start`: no join, no version
//!   deduplication (a trace whose execution was written once holds each
//!   attributed step once, since one write holds each step once), and the
//!   executions of a step name are counted by `exec_first` instead of a hash
//!   set.
//! - **Joined**: the traces of the window that need more care: those holding
//!   steps written without their execution (`attribution = 'unknown'`:
//!   spans exported before their parent, and every row written before schema
//!   4) and those whose execution has several rows (re-deliveries, retried
//!   writes). Their steps in the time range of the window's executions are
//!   joined to the window's executions by trace id, as every backend's reads
//!   do; only the identities found to have several rows go through the
//!   version sort ([`Versions`]).
//! - **Split in Rust**: of those, the traces holding more than one execution
//!   (nested pipelines), read whole and split by the nearest-ancestor rule
//!   ([`aggregate::steps_of_execution`]); their runs travel into the
//!   aggregation as one JSON parameter.
//!
//! Queries: (1) the window's executions: count, time range, and the hashes
//! of the execution identities with several rows; (2) the traces of
//! unattributed steps in the range (and those of the rewritten executions,
//! when there are any). When both are empty, the common case, (3) aggregates
//! the attributed steps alone. Otherwise the traces holding several
//! executions and the step identities with several rows are found (two
//! queries at once), the split traces read, and the aggregation adds the
//! joined and split paths. Up to [`MAX_LISTED_TRACES`] joined traces travel
//! as a parameter; beyond that every trace of the window takes the joined
//! path, which then reads as the funnel did before schema 4.
//!
//! Rust finishes the figures with [`aggregate::finish_funnel`], the code
//! every backend shares.
//!
//! A joined step that starts more than [`SLACK_NS`] before the first
//! execution of the window or after the end of the last is outside the range
//! read and not counted; attributed steps are counted wherever they start.

use serde::Deserialize;
use xray_model::{Execution, StepType, merge_rejections};

use super::ClickhouseBackend;
use super::store::{Param, Sql, app_condition};
use super::versions::{IDENTITY_HASH, MAX_LISTED_HASHES, Versions, duplicates_sql};
use crate::aggregate::{self, StepTotals};
use crate::joins::Traces;
use crate::{PipelineStepStats, Scope, StoreError, TimeWindow};

/// How far outside the window's executions a joined step may start and
/// still be read (clock skew between services, work finishing after the
/// execution span).
pub(super) const SLACK_NS: i64 = 5 * 60 * 1_000_000_000;

/// Up to this many traces (or version hashes, [`MAX_LISTED_HASHES`]) travel
/// as a query parameter; with more traces every trace of the window takes
/// the joined path, with more hashes every row is deduplicated.
const MAX_LISTED_TRACES: usize = MAX_LISTED_HASHES;

#[derive(clickhouse::Row, Deserialize)]
struct WindowRow {
    n: u64,
    lo: i64,
    hi: i64,
    rewritten: Vec<u64>,
}

/// An `(app, trace_id)` row (not `rows::TraceRow`, the whole rows of `trace_rows`).
#[derive(clickhouse::Row, Deserialize)]
struct TraceKey {
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
    type_counts: Vec<u64>,
    reasons: Vec<String>,
    reason_counts: Vec<u64>,
}

/// The aggregation's JSON rows (split traces), in the column order of the
/// tuples.
const RUN_TUPLE: &str = "Array(Tuple(name String, ty String, failed UInt8, app String, \
     eid String, d Nullable(Int64), off Int64, cin Nullable(UInt64), cout Nullable(UInt64), \
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

/// The traces with steps in the range that were written without their
/// execution (parameters as [`range_steps_filter`]).
fn unattributed_sql(scope: &Scope) -> String {
    format!(
        "SELECT DISTINCT app, trace_id FROM steps WHERE {} AND attribution = 'unknown'",
        range_steps_filter(scope)
    )
}

fn bind_window(sql: &mut Sql, scope: &Scope, pipeline: &str, window: TimeWindow) {
    sql.bind("pipeline", Param::Str(pipeline.to_string()))
        .bind("from", Param::I64(window.from_ns))
        .bind("to", Param::I64(window.to_ns))
        .bind_scope(scope);
}

/// A set of traces in SQL: a parameter, or every trace (too many to list).
enum TraceSet {
    /// `{name:Array(Tuple(String, String))}`, bound to these traces.
    Listed(&'static str, Vec<(String, String)>),
    /// Every trace.
    All,
}

impl TraceSet {
    /// `(app, trace_id) IN <set>`.
    fn contains(&self) -> String {
        match self {
            TraceSet::Listed(name, _) => {
                format!("(app, trace_id) IN {{{name}:Array(Tuple(String, String))}}")
            }
            TraceSet::All => "1".to_string(),
        }
    }

    fn bind(&self, sql: &mut Sql) {
        if let TraceSet::Listed(name, traces) = self {
            sql.bind(name, Param::Pairs(traces.clone()));
        }
    }
}

/// The step types in the order of the aggregation's `type_counts`.
fn type_counts_sql() -> String {
    let counts: Vec<String> = StepType::ALL
        .iter()
        .map(|t| format!("countIf(ty = '{}')", t.as_str()))
        .collect();
    format!("[{}]", counts.join(", "))
}

/// A step's identity `(app, trace_id, span_id)` hashed.
const STEP_HASH: &str = "cityHash64(app, trace_id, span_id)";

/// The joined path of the aggregation (see [`aggregation_sql`]).
struct Joined<'a> {
    /// The traces it reads.
    slow: &'a TraceSet,
    /// Those of them split in Rust instead (parameter `runs`).
    split: Option<&'a TraceSet>,
    /// Versions of the window's executions (parameter `exec_dups`).
    executions: Versions,
    /// Versions of the slow traces' steps (parameter `step_dups`).
    steps: Versions,
}

/// The aggregation query: attributed steps, plus, when some traces take the
/// joined path, the joined steps of those traces outside `split` and the
/// JSON runs of `split`.
fn aggregation_sql(scope: &Scope, joined: Option<&Joined<'_>>) -> String {
    let app = app_condition(scope);
    // Attributed steps of the window's executions: sort-key prefix (app,
    // pipeline), then the exec_start minmax index.
    let attributed = format!(
        "SELECT toString(name) AS name, toString(step_type) AS ty, \
                toUInt8(status = 'failed') AS failed, toUInt8(1) AS fast, exec_first AS first, \
                toUInt64(0) AS key, duration_ns AS d, \
                toUnixTimestamp64Nano(start_time) - toUnixTimestamp64Nano(exec_start) AS off, \
                candidates_in AS cin, candidates_out AS cout, \
                CAST(merged_rejections, 'Map(String, UInt64)') AS rm \
         FROM steps WHERE pipeline = {{pipeline:String}}{app} AND attribution = 'step' \
           AND exec_start >= fromUnixTimestamp64Nano({{from:Int64}}) \
           AND exec_start < fromUnixTimestamp64Nano({{to:Int64}})"
    );
    let Some(j) = joined else {
        return totals_sql(&attributed);
    };
    let slow = j.slow.contains();
    // With every trace joined there are no attributed steps to add.
    let attributed = match j.slow {
        TraceSet::Listed(..) => format!("{attributed} AND NOT {slow} UNION ALL "),
        TraceSet::All => String::new(),
    };
    let not_split = j
        .split
        .map(|s| format!(" AND NOT {}", s.contains()))
        .unwrap_or_default();
    // Joined steps: the newest version of each step of the slow traces in
    // the range, joined to the newest version of the window's executions
    // (within one app the trace id alone is the key). A step carrying an
    // execution's own span id is not a step. `key` numbers executions for
    // counting them.
    let on = if scope.app().is_some() {
        "s.trace_id = e.trace_id"
    } else {
        "s.app = e.app AND s.trace_id = e.trace_id"
    };
    let executions = j.executions.newest(
        &format!(
            "SELECT app, execution_id, trace_id, span_id, start_time FROM executions \
             WHERE {} AND {slow}",
            window_filter(scope)
        ),
        IDENTITY_HASH,
        "app, execution_id",
        "exec_dups",
    );
    let steps = j.steps.newest(
        &format!(
            "SELECT app, trace_id, span_id, name, step_type, status, start_time, duration_ns, \
                    candidates_in, candidates_out, merged_rejections \
             FROM steps WHERE {} AND {slow}{not_split}",
            range_steps_filter(scope)
        ),
        STEP_HASH,
        "app, trace_id, span_id",
        "step_dups",
    );
    let joined = format!(
        "SELECT toString(s.name) AS name, toString(s.step_type) AS ty, \
                toUInt8(s.status = 'failed') AS failed, toUInt8(0) AS fast, toUInt8(0) AS first, \
                e.key AS key, s.duration_ns AS d, \
                toUnixTimestamp64Nano(s.start_time) - toUnixTimestamp64Nano(e.start_time) AS off, \
                s.candidates_in AS cin, s.candidates_out AS cout, \
                CAST(s.merged_rejections, 'Map(String, UInt64)') AS rm \
         FROM ({steps}) AS s \
         INNER JOIN (SELECT app, trace_id, span_id, start_time, \
                            cityHash64(app, execution_id) AS key FROM ({executions})) AS e \
           ON {on} \
         WHERE s.span_id != e.span_id"
    );
    let split_runs = format!(
        "SELECT x.name, x.ty, x.failed, toUInt8(0), toUInt8(0), cityHash64(x.app, x.eid), \
                x.d, x.off, x.cin, x.cout, \
                CAST(mapFromArrays(x.rk, x.rv), 'Map(String, UInt64)') \
         FROM (SELECT arrayJoin(JSONExtract({{runs:String}}, '{RUN_TUPLE}')) AS x)"
    );
    totals_sql(&format!("{attributed}{joined} UNION ALL {split_runs}"))
}

/// Per step name over `rows` (the columns of [`aggregation_sql`]'s
/// branches): counts, sums, executions (first runs of attributed steps plus
/// distinct keys of the others), sorted durations for nearest-rank
/// percentiles, runs per step type and merged rejections.
fn totals_sql(rows: &str) -> String {
    format!(
        "SELECT name, runs, failed, with_counts, total_in, total_out, executions, drop_n, \
                drop_sum, off_sum, \
                if(empty(ds), NULL, ds[toUInt64(greatest(1, ceil(0.5 * length(ds))))]) AS p50, \
                if(empty(ds), NULL, ds[toUInt64(greatest(1, ceil(0.95 * length(ds))))]) AS p95, \
                type_counts, mapKeys(rm) AS reasons, mapValues(rm) AS reason_counts \
         FROM ( \
           SELECT name, count() AS runs, sum(failed) AS failed, \
             countIf(cin IS NOT NULL AND cout IS NOT NULL) AS with_counts, \
             sumIf(assumeNotNull(cin), cin IS NOT NULL AND cout IS NOT NULL) AS total_in, \
             sumIf(assumeNotNull(cout), cin IS NOT NULL AND cout IS NOT NULL) AS total_out, \
             countIf(fast = 1 AND first = 1) + uniqExactIf(key, fast = 0) AS executions, \
             countIf(cin > 0 AND cout IS NOT NULL) AS drop_n, \
             sumIf(if(assumeNotNull(cin) > assumeNotNull(cout), \
                      assumeNotNull(cin) - assumeNotNull(cout), 0) / assumeNotNull(cin), \
                   cin > 0 AND cout IS NOT NULL) AS drop_sum, \
             sum(off) AS off_sum, \
             arraySort(groupArrayIf(assumeNotNull(d), d IS NOT NULL)) AS ds, \
             {types} AS type_counts, \
             sumMap(rm) AS rm \
           FROM ({rows}) \
           GROUP BY name \
         )",
        types = type_counts_sql(),
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
        let client = &self.inner.client;
        // 1. The window's executions: whether there are any, the range their
        // steps are read in when joined (every version: start times never
        // change, the last end is now while any version runs), and the
        // hashes of the execution identities with several rows: usually
        // none. Two identities sharing a hash only send one more trace to
        // the joined path.
        let filter = window_filter(scope);
        let mut first = Sql::new(format!(
            "SELECT count() AS n, toUnixTimestamp64Nano(min(start_time)) AS lo, \
                    greatest(toUnixTimestamp64Nano(max(ifNull(end_time, start_time))), \
                             if(countIf(end_time IS NULL) > 0, toUnixTimestamp64Nano(now64(9)), 0)) AS hi, \
                    (SELECT groupArray(h) FROM ({dups})) AS rewritten \
             FROM executions WHERE {filter}",
            dups = duplicates_sql(IDENTITY_HASH, "executions", &filter),
        ));
        bind_window(&mut first, scope, pipeline, window);
        let w: WindowRow = first
            .query(client)
            .fetch_one()
            .await
            .map_err(super::store_error)?;
        if w.n == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = (w.lo.saturating_sub(SLACK_NS), w.hi.saturating_add(SLACK_NS));
        // 2. The traces with steps written without their execution.
        let mut unattributed = Sql::new(format!(
            "{} LIMIT {}",
            unattributed_sql(scope),
            MAX_LISTED_TRACES + 1
        ));
        bind_window(&mut unattributed, scope, pipeline, window);
        unattributed
            .bind("lo", Param::I64(lo))
            .bind("hi", Param::I64(hi));
        let unattributed: Vec<TraceKey> = unattributed
            .query(client)
            .fetch_all()
            .await
            .map_err(super::store_error)?;
        let mut slow: Vec<(String, String)> = unattributed
            .into_iter()
            .map(|t| (t.app, t.trace_id))
            .collect();
        let rewritten = Versions::from_hashes(w.rewritten);
        if let Versions::Few(hashes) = &rewritten
            && !hashes.is_empty()
        {
            let mut traces = Sql::new(format!(
                "SELECT DISTINCT app, trace_id FROM executions \
                 WHERE {filter} AND {IDENTITY_HASH} IN {{hashes:Array(UInt64)}}"
            ));
            bind_window(&mut traces, scope, pipeline, window);
            traces.bind("hashes", Param::U64s(hashes.clone()));
            slow.extend(
                traces
                    .query(client)
                    .fetch_all::<TraceKey>()
                    .await
                    .map_err(super::store_error)?
                    .into_iter()
                    .map(|t| (t.app, t.trace_id)),
            );
        }
        slow.sort();
        slow.dedup();
        let many_rewritten = matches!(rewritten, Versions::Many);
        let rows = if slow.is_empty() && !many_rewritten {
            // 3. The common case: attributed steps only.
            let mut agg = Sql::new(aggregation_sql(scope, None));
            bind_window(&mut agg, scope, pipeline, window);
            agg.query(client)
                .fetch_all::<TotalsRow>()
                .await
                .map_err(super::store_error)?
        } else {
            // Too many traces to list: every trace takes the joined path,
            // which then reads like the funnel before schema 4 did.
            let many = many_rewritten || slow.len() > MAX_LISTED_TRACES;
            let slow = if many {
                TraceSet::All
            } else {
                TraceSet::Listed("slow", slow)
            };
            self.joined_funnel(scope, pipeline, window, (lo, hi), &slow, rewritten)
                .await?
        };
        Ok(aggregate::finish_funnel(rows.into_iter().map(|r| {
            StepTotals {
                name: r.name,
                types: StepType::ALL.iter().copied().zip(r.type_counts).collect(),
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

    /// The aggregation when some traces (`slow`) take the joined path: finds
    /// those of them that hold several executions and the identities of
    /// their steps that have several rows (both at once), splits the former
    /// in Rust, and aggregates the three paths in one query. `executions`
    /// says which of the window's executions have several rows.
    async fn joined_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
        (lo, hi): (i64, i64),
        slow: &TraceSet,
        executions: Versions,
    ) -> Result<Vec<TotalsRow>, StoreError> {
        let client = &self.inner.client;
        let bind = |sql: &mut Sql| {
            bind_window(sql, scope, pipeline, window);
            sql.bind("lo", Param::I64(lo)).bind("hi", Param::I64(hi));
            slow.bind(sql);
        };
        // Traces holding more than one distinct execution id; every version
        // is read (a superset only sends a trace to the Rust split, where
        // only newest versions count).
        let mut shared = Sql::new(match slow {
            TraceSet::Listed(..) => format!(
                "SELECT app, trace_id FROM executions WHERE {}{} \
                 GROUP BY app, trace_id HAVING min(execution_id) != max(execution_id)",
                slow.contains(),
                app_condition(scope),
            ),
            // Every trace: those of the window's executions, with the
            // executions starting in the range (an execution nested in
            // another starts inside it).
            TraceSet::All => format!(
                "SELECT app, trace_id FROM executions \
                 WHERE start_time >= fromUnixTimestamp64Nano({{lo:Int64}}) \
                 AND start_time <= fromUnixTimestamp64Nano({{hi:Int64}}){} \
                 AND (app, trace_id) IN (SELECT app, trace_id FROM executions WHERE {}) \
                 GROUP BY app, trace_id HAVING min(execution_id) != max(execution_id)",
                app_condition(scope),
                window_filter(scope),
            ),
        });
        bind(&mut shared);
        // The step identities of those traces with several rows in the
        // range: usually none, and then no step goes through a sort.
        let mut dups = Sql::new(duplicates_sql(
            STEP_HASH,
            "steps",
            &format!("{} AND {}", range_steps_filter(scope), slow.contains()),
        ));
        bind(&mut dups);
        let (shared, dups) = tokio::try_join!(
            async {
                shared
                    .query(client)
                    .fetch_all::<TraceKey>()
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
        let shared: Vec<(String, String)> =
            shared.into_iter().map(|t| (t.app, t.trace_id)).collect();
        let traces = self.traces(&shared).await?;
        let runs = split_runs(&traces, scope, pipeline, window)?;
        let split = (!shared.is_empty()).then_some(TraceSet::Listed("split", shared));
        let joined = Joined {
            slow,
            split: split.as_ref(),
            executions,
            steps: Versions::from_hashes(dups),
        };
        let mut agg = Sql::new(aggregation_sql(scope, Some(&joined)));
        bind(&mut agg);
        agg.bind("runs", Param::Str(runs));
        joined.executions.bind(&mut agg, "exec_dups");
        joined.steps.bind(&mut agg, "step_dups");
        if let Some(split) = &split {
            split.bind(&mut agg);
        }
        agg.query(client)
            .fetch_all::<TotalsRow>()
            .await
            .map_err(super::store_error)
    }
}

/// The step runs of the window's executions of `pipeline` that live in
/// traces holding several executions, as the JSON array the aggregation
/// reads.
fn split_runs(
    traces: &Traces,
    scope: &Scope,
    pipeline: &str,
    window: TimeWindow,
) -> Result<String, StoreError> {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for e in traces.executions().filter(|e| {
        e.pipeline == pipeline
            && e.start_time_ns >= window.from_ns
            && e.start_time_ns < window.to_ns
            && scope.app().is_none_or(|a| a == e.app)
    }) {
        rows.extend(traces.steps_of(e).iter().map(|s| run_json(e, s)));
    }
    serde_json::to_string(&rows).map_err(|e| StoreError::Backend(e.to_string()))
}

/// One split run, positionally as [`RUN_TUPLE`] (JSONExtract reads tuples
/// from arrays by position).
fn run_json(e: &Execution, s: &xray_model::Step) -> serde_json::Value {
    let (rk, rv): (Vec<String>, Vec<u64>) = merge_rejections(&s.rejections, &s.candidates)
        .into_iter()
        .unzip();
    serde_json::json!([
        s.name,
        s.step_type.as_str(),
        u8::from(s.status == xray_model::Status::Failed),
        e.app,
        e.execution_id,
        s.duration_ns(),
        s.start_time_ns - e.start_time_ns,
        s.candidates_in,
        s.candidates_out,
        rk,
        rv
    ])
}
