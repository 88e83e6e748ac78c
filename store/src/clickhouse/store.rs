//! [`Store`] for ClickHouse.
//!
//! Every value a caller passes travels as a server-side query parameter
//! (`{name:Type}`); the SQL text is assembled only from fixed fragments.
//! Reads never use `FINAL`: the newest version of each identity is picked
//! with `ORDER BY version DESC, written DESC LIMIT 1 BY <identity>` inside a
//! subquery that is already narrowed by the sort key (app, pipeline, time),
//! or, for the few rows of whole traces (read through the tables'
//! projections sorted by (app, trace_id), or for the detail from
//! `trace_rows`), by the same order in Rust. The `trace_index` lookup table
//! turns an execution id into its trace.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use clickhouse::query::Query;
use xray_model::{ApiKey, App, Execution, Step};

use super::rows::{
    API_KEY_COLUMNS, ApiKeyRow, AppRow, EXECUTION_COLUMNS, ExecutionRow, LIGHT_STEP_COLUMNS,
    STEP_COLUMNS, StepRow, TraceRow, decode_trace_rows,
};
use super::versions::{IDENTITY_HASH, Versions, duplicates_sql, keep_newest};
use super::{ClickhouseBackend, store_error};
use crate::batch::newest_by;
use crate::joins::{Traces, as_trace_id, pick_execution};
use crate::{
    Cursor, ExecutionDetail, ExecutionFilter, ExecutionPage, ExecutionSummary, PageRequest,
    PipelineStepStats, PipelineSummary, Scope, Store, StoreError, TimeWindow,
};

/// A query under construction: SQL fragments plus the parameters they use.
#[derive(Clone)]
pub(super) struct Sql {
    pub(super) text: String,
    params: Vec<(&'static str, Param)>,
}

#[derive(Clone)]
pub(super) enum Param {
    Str(String),
    I64(i64),
    U32(u32),
    U64s(Vec<u64>),
    Strs(Vec<String>),
    /// `Array(Tuple(String, String))`, e.g. `(app, trace_id)` pairs.
    Pairs(Vec<(String, String)>),
}

impl Sql {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, fragment: &str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    pub(super) fn bind(&mut self, name: &'static str, value: Param) -> &mut Self {
        self.params.push((name, value));
        self
    }

    /// `AND app = {app:String}` when the scope is one app.
    fn scope(&mut self, scope: &Scope) -> &mut Self {
        self.push(app_condition(scope)).bind_scope(scope)
    }

    /// Binds `app` when the scope is one app (for [`app_condition`]).
    pub(super) fn bind_scope(&mut self, scope: &Scope) -> &mut Self {
        if let Some(app) = scope.app() {
            self.bind("app", Param::Str(app.to_string()));
        }
        self
    }

    pub(super) fn query(&self, client: &clickhouse::Client) -> Query {
        let mut q = client.query_raw(&self.text);
        for (name, value) in &self.params {
            q = match value {
                Param::Str(v) => q.param(name, v),
                Param::I64(v) => q.param(name, v),
                Param::U32(v) => q.param(name, v),
                Param::U64s(v) => q.param(name, v),
                Param::Strs(v) => q.param(name, v),
                Param::Pairs(v) => q.param(name, v),
            };
        }
        q
    }
}

/// Length of the first time range a newest-first list reads (ns); see
/// `ClickhouseBackend::newest_first`.
const LIST_FIRST_SPAN_NS: i64 = 60 * 1_000_000_000;

/// The newest version of each execution among those matching `filter` (SQL
/// over `executions`, with its parameters already bound in `sql`).
/// ` AND app = {app:String}` when the scope is one app, else nothing; the
/// parameter is bound by [`Sql::bind_scope`].
pub(super) fn app_condition(scope: &Scope) -> &'static str {
    if scope.app().is_some() {
        " AND app = {app:String}"
    } else {
        ""
    }
}

fn latest_executions(columns: &str, filter: &str) -> String {
    format!(
        "SELECT {columns} FROM executions WHERE {filter} {}",
        keep_newest("app, execution_id")
    )
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct BoundsRow {
    lo: i64,
    hi: i64,
    n: u64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct CountRow {
    /// `e`: distinct executions of the trace, `s`: distinct step span ids,
    /// `x`: `span_id` is an execution's span and also a step's.
    kind: String,
    app: String,
    trace_id: String,
    span_id: String,
    n: u64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct PipelineRow {
    pipeline: String,
    executions: u64,
    failed: u64,
    last_seen: i64,
    p50: Option<i64>,
    p95: Option<i64>,
    p99: Option<i64>,
}

fn trace_keys(executions: &[Execution]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = executions
        .iter()
        .map(|e| (e.app.clone(), e.trace_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn unzip_keys(keys: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let mut apps: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
    apps.sort();
    apps.dedup();
    (apps, keys.iter().map(|k| k.1.clone()).collect())
}

fn executions_of(rows: Vec<ExecutionRow>) -> Result<Vec<Execution>, StoreError> {
    rows.into_iter().map(ExecutionRow::into_model).collect()
}

/// `executions` and `steps` as [`Traces`], the newest version of each
/// identity kept (by version, then write time).
fn traces_of_rows(
    executions: Vec<ExecutionRow>,
    steps: Vec<StepRow>,
) -> Result<Traces, StoreError> {
    let executions = newest_by(
        executions,
        |r| (r.app.clone(), r.execution_id.clone()),
        |r| (r.version, r.written),
    );
    let steps = newest_by(
        steps,
        |r| (r.app.clone(), r.trace_id.clone(), r.span_id.clone()),
        |r| (r.version, r.written),
    );
    Ok(Traces::new(
        executions_of(executions)?,
        steps
            .into_iter()
            .map(StepRow::into_model)
            .collect::<Result<_, _>>()?,
    ))
}

impl ClickhouseBackend {
    async fn fetch_executions(&self, sql: &Sql) -> Result<Vec<Execution>, StoreError> {
        let rows: Vec<ExecutionRow> = sql
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(store_error)?;
        executions_of(rows)
    }

    /// Executions and steps of the given `(app, trace_id)` pairs, the two
    /// reads sent at once, the steps without their large texts
    /// ([`LIGHT_STEP_COLUMNS`]). Both tables have a projection sorted by
    /// `(app, trace_id)` (`steps_by_trace_light`, which holds no large text,
    /// and `executions_by_trace`), which ClickHouse picks by itself here: one
    /// granule per part, no time bounds needed.
    pub(super) async fn traces(&self, keys: &[(String, String)]) -> Result<Traces, StoreError> {
        if keys.is_empty() {
            return Ok(Traces::default());
        }
        let (apps, traces) = unzip_keys(keys);
        let mut params = Sql::new("");
        params
            .bind("apps", Param::Strs(apps))
            .bind("traces", Param::Strs(traces));
        self.read_traces(
            "app IN {apps:Array(String)} AND trace_id IN {traces:Array(String)}",
            &params,
        )
        .await
    }

    /// Executions and steps whose rows match `filter` (an `(app, trace_id)`
    /// condition, its parameters bound in `params`), newest version of each,
    /// the two reads sent at once.
    ///
    /// These are point reads of a granule or so: each runs on one thread, and
    /// the few rows are deduplicated here rather than sorted by the server
    /// (`LIMIT 1 BY`); both measured faster on the detail when it read
    /// these tables (schema 4, docs/benchmarks.md).
    async fn read_traces(&self, filter: &str, params: &Sql) -> Result<Traces, StoreError> {
        let mut ex = params.clone();
        ex.text = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE {filter}");
        let mut st = params.clone();
        st.text = format!("SELECT {LIGHT_STEP_COLUMNS} FROM steps WHERE {filter}");
        let (executions, steps) = tokio::try_join!(
            self.point_read::<ExecutionRow>(&ex),
            self.point_read::<StepRow>(&st)
        )?;
        traces_of_rows(executions, steps)
    }

    /// The rows of a read of a few granules, on one thread.
    async fn point_read<T>(&self, sql: &Sql) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        sql.query(&self.inner.client)
            .with_setting("max_threads", "1")
            .fetch_all::<T>()
            .await
            .map_err(store_error)
    }

    /// The number of steps of each of `executions`, as
    /// [`Traces::steps_of`] counts them, without reading the steps: per
    /// trace, the distinct executions, the distinct step span ids and which
    /// of the executions' own span ids also appear as steps, in one query
    /// (three aggregations inside the traces' time bounds). A trace holding
    /// one execution gives its count directly; the rare trace holding
    /// several (nested pipelines) is read whole and split as everywhere else.
    async fn step_counts(&self, executions: &[Execution]) -> Result<Vec<u64>, StoreError> {
        let keys = trace_keys(executions);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (apps, traces) = unzip_keys(&keys);
        let mut spans: Vec<String> = executions.iter().map(|e| e.span_id.clone()).collect();
        spans.sort();
        spans.dedup();
        // Both tables' projections by (app, trace_id) find the traces.
        let filter = "app IN {apps:Array(String)} AND trace_id IN {traces:Array(String)}";
        let mut sql = Sql::new(format!(
            "SELECT 'e' AS kind, toString(app) AS app, trace_id, '' AS span_id, \
               uniqExact(execution_id) AS n FROM executions WHERE {filter} GROUP BY app, trace_id \
             UNION ALL SELECT 's', toString(app), trace_id, '', uniqExact(span_id) \
               FROM steps WHERE {filter} GROUP BY app, trace_id \
             UNION ALL SELECT 'x', toString(app), trace_id, span_id, toUInt64(1) \
               FROM steps WHERE {filter} AND span_id IN {{spans:Array(String)}} \
               GROUP BY app, trace_id, span_id"
        ));
        sql.bind("apps", Param::Strs(apps))
            .bind("traces", Param::Strs(traces))
            .bind("spans", Param::Strs(spans));
        let rows: Vec<CountRow> = sql
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(store_error)?;
        let mut execs: HashMap<(String, String), u64> = HashMap::new();
        let mut steps: HashMap<(String, String), u64> = HashMap::new();
        let mut exec_spans: HashSet<(String, String, String)> = HashSet::new();
        for r in rows {
            match r.kind.as_str() {
                "e" => {
                    execs.insert((r.app, r.trace_id), r.n);
                }
                "s" => {
                    steps.insert((r.app, r.trace_id), r.n);
                }
                _ => {
                    exec_spans.insert((r.app, r.trace_id, r.span_id));
                }
            }
        }
        let is_shared = |k: &(String, String)| execs.get(k).copied().unwrap_or(0) > 1;
        let shared: Vec<(String, String)> = keys.iter().filter(|k| is_shared(k)).cloned().collect();
        let whole = self.traces(&shared).await?;
        Ok(executions
            .iter()
            .map(|e| {
                let k = (e.app.clone(), e.trace_id.clone());
                if is_shared(&k) {
                    return whole.steps_of(e).len() as u64;
                }
                let own =
                    exec_spans.contains(&(e.app.clone(), e.trace_id.clone(), e.span_id.clone()));
                steps.get(&k).copied().unwrap_or(0) - u64::from(own)
            })
            .collect())
    }

    /// The first `limit + 1` executions, newest first, that match `inner`
    /// (filters on columns that never change between versions, applied
    /// before deduplication) and `outer` (filters on the newest version),
    /// with every parameter of both bound in `sql` plus `limit` (= `limit + 1`).
    /// `within` is the `[lo, hi]` (ns) that `inner`'s time conditions allow.
    /// `None` when no execution starts there.
    ///
    /// Instead of deduplicating every execution of the app, it reads a time
    /// range ending at the newest start, [`LIST_FIRST_SPAN_NS`] long, and
    /// widens it 16-fold until the page is full or the range covers every
    /// matching row: each read is a sort-key range (day partitions, then
    /// `(app, pipeline, start_time)`). Rows outside a range are all older
    /// than every row inside, so a full page from a range is the page. The
    /// newest and oldest starts are those of the whole table, which
    /// ClickHouse answers from the parts' min/max index without reading rows
    /// (reading `start_time` of the matching rows cost more than the page).
    async fn newest_first(
        &self,
        sql: &Sql,
        inner: &str,
        outer: &str,
        limit: u32,
        within: (i64, i64),
    ) -> Result<Option<Vec<Execution>>, StoreError> {
        let table: BoundsRow = self
            .inner
            .client
            .query_raw(
                "SELECT toUnixTimestamp64Nano(min(start_time)) AS lo, \
                 toUnixTimestamp64Nano(max(start_time)) AS hi, count() AS n FROM executions",
            )
            .fetch_one()
            .await
            .map_err(store_error)?;
        let b = BoundsRow {
            lo: table.lo.max(within.0),
            hi: table.hi.min(within.1),
            n: table.n,
        };
        if b.n == 0 || b.lo > b.hi {
            return Ok(None);
        }
        let mut span = LIST_FIRST_SPAN_NS;
        loop {
            let from = b.hi.saturating_sub(span);
            let whole = from <= b.lo;
            let mut q = sql.clone();
            let range = if whole {
                inner.to_string()
            } else {
                q.bind("range_from", Param::I64(from));
                format!("{inner} AND start_time >= fromUnixTimestamp64Nano({{range_from:Int64}})")
            };
            q.text = format!(
                "SELECT {EXECUTION_COLUMNS} FROM ({}) WHERE {outer} \
                 ORDER BY start_time DESC, app DESC, execution_id DESC LIMIT {{limit:UInt32}}",
                latest_executions(EXECUTION_COLUMNS, &range)
            );
            let executions = self.fetch_executions(&q).await?;
            if whole || executions.len() > limit as usize {
                return Ok(Some(executions));
            }
            span = span.saturating_mul(16);
        }
    }

    async fn fetch_steps(&self, sql: &Sql) -> Result<Vec<Step>, StoreError> {
        let rows: Vec<StepRow> = sql
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(store_error)?;
        rows.into_iter().map(StepRow::into_model).collect()
    }

    async fn latest_api_key(
        &self,
        filter: &str,
        sql: Sql,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        let mut q = Sql::new(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {filter} \
             ORDER BY version DESC LIMIT 1 BY id LIMIT 1"
        ));
        q.params = sql.params;
        q.query(&self.inner.client)
            .fetch_optional()
            .await
            .map_err(store_error)
    }
}

#[async_trait]
impl Store for ClickhouseBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .client
            .query_raw("SELECT 1")
            .execute()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn list_executions(
        &self,
        scope: &Scope,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> Result<ExecutionPage, StoreError> {
        if page.limit == 0 {
            return Err(StoreError::InvalidArgument(
                "limit must be at least 1".into(),
            ));
        }
        // Inner filter: columns that never change between versions of one
        // execution, so it may run before deduplication and use the sort key.
        let mut sql = Sql::new("");
        let mut inner = String::from("1");
        if let Some(app) = scope.app() {
            inner.push_str(" AND app = {app:String}");
            sql.bind("app", Param::Str(app.to_string()));
        }
        if let Some(p) = &filter.pipeline {
            inner.push_str(" AND pipeline = {pipeline:String}");
            sql.bind("pipeline", Param::Str(p.clone()));
        }
        if let Some(t) = filter.from_ns {
            inner.push_str(" AND start_time >= fromUnixTimestamp64Nano({from:Int64})");
            sql.bind("from", Param::I64(t));
        }
        if let Some(t) = filter.to_ns {
            inner.push_str(" AND start_time < fromUnixTimestamp64Nano({to:Int64})");
            sql.bind("to", Param::I64(t));
        }
        if let Some(c) = &page.after {
            inner.push_str(" AND start_time <= fromUnixTimestamp64Nano({c_start:Int64})");
            sql.bind("c_start", Param::I64(c.start_time_ns))
                .bind("c_app", Param::Str(c.app.clone()))
                .bind("c_id", Param::Str(c.execution_id.clone()));
        }
        // Outer filter: on the newest version.
        let mut outer = String::from("1");
        if let Some(s) = filter.status {
            outer.push_str(" AND status = {status:String}");
            sql.bind("status", Param::Str(s.as_str().to_string()));
        }
        if let Some(e) = &filter.environment {
            outer.push_str(" AND environment = {environment:String}");
            sql.bind("environment", Param::Str(e.clone()));
        }
        if let Some(s) = &filter.service {
            outer.push_str(" AND service = {service:String}");
            sql.bind("service", Param::Str(s.clone()));
        }
        if let Some(q) = &filter.q {
            outer.push_str(
                " AND (position(execution_id, {q:String}) > 0 OR position(trace_id, {q:String}) > 0 \
                 OR arrayExists(t -> position(t, {q:String}) > 0, tags))",
            );
            sql.bind("q", Param::Str(q.clone()));
        }
        if let Some(d) = filter.min_duration_ns {
            outer.push_str(" AND duration_ns >= {min_duration:Int64}");
            sql.bind("min_duration", Param::I64(d));
        }
        if page.after.is_some() {
            outer.push_str(
                " AND (start_time, app, execution_id) < \
                 (fromUnixTimestamp64Nano({c_start:Int64}), {c_app:String}, {c_id:String})",
            );
        }
        sql.bind("limit", Param::U32(page.limit.saturating_add(1)));
        let mut within = (i64::MIN, i64::MAX);
        if let Some(t) = filter.from_ns {
            within.0 = t;
        }
        if let Some(t) = filter.to_ns {
            within.1 = t.saturating_sub(1);
        }
        if let Some(c) = &page.after {
            within.1 = within.1.min(c.start_time_ns);
        }
        let Some(mut executions) = self
            .newest_first(&sql, &inner, &outer, page.limit, within)
            .await?
        else {
            return Ok(ExecutionPage {
                items: Vec::new(),
                next: None,
            });
        };
        let more = executions.len() > page.limit as usize;
        executions.truncate(page.limit as usize);
        let counts = self.step_counts(&executions).await?;
        let next = if more {
            executions.last().map(|e| Cursor {
                start_time_ns: e.start_time_ns,
                app: e.app.clone(),
                execution_id: e.execution_id.clone(),
            })
        } else {
            None
        };
        let items = executions
            .into_iter()
            .zip(counts)
            .map(|(execution, step_count)| ExecutionSummary {
                step_count,
                execution,
            })
            .collect();
        Ok(ExecutionPage { items, next })
    }

    async fn get_execution(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError> {
        // The traces `id` names (as an execution id or a trace id), from the
        // lookup table sorted by id, as a subquery; then their rows, whole,
        // from `trace_rows` sorted by (app, trace_id): one query, two
        // columns. `GLOBAL` runs the lookup once, on the initiator, as a
        // Distributed `trace_index` (sharded by id, not by trace) needs.
        let app = app_condition(scope);
        let mut sql = Sql::new(format!(
            "SELECT kind, row FROM trace_rows WHERE (app, trace_id) GLOBAL IN \
             (SELECT app, trace_id FROM trace_index \
              WHERE id IN ({{id:String}}, {{trace:String}}){app}){app}"
        ));
        sql.bind("id", Param::Str(id.to_string()))
            .bind(
                "trace",
                Param::Str(as_trace_id(id).unwrap_or_else(|| id.to_string())),
            )
            .bind_scope(scope);
        let (executions, steps) = decode_trace_rows(self.point_read::<TraceRow>(&sql).await?)?;
        let traces = traces_of_rows(executions, steps)?;
        let candidates: Vec<Execution> = traces
            .executions()
            .filter(|e| scope.app().is_none_or(|a| a == e.app))
            .cloned()
            .collect();
        Ok(
            pick_execution(id, candidates).map(|execution| ExecutionDetail {
                steps: traces.steps_of(&execution),
                execution,
            }),
        )
    }

    async fn pipelines(
        &self,
        scope: &Scope,
        window: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError> {
        let mut sql = Sql::new("");
        let mut inner = String::from(
            "start_time >= fromUnixTimestamp64Nano({from:Int64}) \
             AND start_time < fromUnixTimestamp64Nano({to:Int64})",
        );
        sql.bind("from", Param::I64(window.from_ns))
            .bind("to", Param::I64(window.to_ns));
        if let Some(app) = scope.app() {
            inner.push_str(" AND app = {app:String}");
            sql.bind("app", Param::Str(app.to_string()));
        }
        // The newest version of each execution: only the identities with
        // several rows in the window (usually none) are sorted.
        let mut dups = sql.clone();
        dups.text = duplicates_sql(IDENTITY_HASH, "executions", &inner);
        let hashes: Vec<u64> = dups
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(store_error)?;
        let versions = Versions::from_hashes(hashes);
        versions.bind(&mut sql, "exec_dups");
        let latest = versions.newest(
            &format!(
                "SELECT app, execution_id, pipeline, status, start_time, duration_ns, version, \
                 written FROM executions WHERE {inner}"
            ),
            IDENTITY_HASH,
            "app, execution_id",
            "exec_dups",
        );
        // Nearest-rank percentiles, as `aggregate::percentile` computes them.
        let pct = |p: &str| {
            format!(
                "if(empty(d), NULL, arrayElement(d, toUInt64(greatest(1, ceil({p} * length(d))))))"
            )
        };
        sql.text = format!(
            "SELECT pipeline, executions, failed, last_seen, {} AS p50, {} AS p95, {} AS p99 \
             FROM (SELECT pipeline, count() AS executions, \
                countIf(status = 'failed') AS failed, \
                toUnixTimestamp64Nano(max(start_time)) AS last_seen, \
                arraySort(groupArray(duration_ns)) AS d \
             FROM ({}) GROUP BY pipeline) ORDER BY pipeline",
            pct("0.5"),
            pct("0.95"),
            pct("0.99"),
            latest
        );
        let rows: Vec<PipelineRow> = sql
            .query(&self.inner.client)
            .fetch_all()
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| PipelineSummary {
                pipeline: r.pipeline,
                executions: r.executions,
                failed: r.failed,
                p50_duration_ns: r.p50,
                p95_duration_ns: r.p95,
                p99_duration_ns: r.p99,
                last_seen_ns: r.last_seen,
            })
            .collect())
    }

    async fn pipeline_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        self.funnel(scope, pipeline, window).await
    }

    async fn steps_by_span_id(
        &self,
        scope: &Scope,
        span_id: &str,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT * FROM (SELECT {STEP_COLUMNS} FROM steps WHERE span_id = {{span:String}}"
        ));
        sql.bind("span", Param::Str(span_id.to_ascii_lowercase()))
            .scope(scope)
            .push(&format!(
                " {}) ORDER BY start_time, app, trace_id LIMIT {{limit:UInt32}}",
                keep_newest("app, trace_id, span_id")
            ))
            .bind("limit", Param::U32(limit.max(1)));
        self.fetch_steps(&sql).await
    }

    async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        if self.get_app(&app.id).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "app {} already exists",
                app.id
            )));
        }
        let mut insert = self
            .inner
            .client
            .insert::<AppRow>("apps")
            .await
            .map_err(store_error)?;
        let row = AppRow {
            id: app.id.clone(),
            name: app.name.clone(),
            created_at_ns: app.created_at_ns,
            version: 1,
        };
        insert.write(&row).await.map_err(store_error)?;
        insert.end().await.map_err(store_error)
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let rows: Vec<AppRow> = self
            .inner
            .client
            .query_raw(
                "SELECT id, name, created_at_ns, version FROM apps \
                 ORDER BY version DESC LIMIT 1 BY id",
            )
            .fetch_all()
            .await
            .map_err(store_error)?;
        let mut apps: Vec<App> = rows.into_iter().map(App::from).collect();
        apps.sort_by(|a, b| (a.created_at_ns, &a.id).cmp(&(b.created_at_ns, &b.id)));
        Ok(apps)
    }

    async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError> {
        let row: Option<AppRow> = self
            .inner
            .client
            .query_raw(
                "SELECT id, name, created_at_ns, version FROM apps WHERE id = {id:String} \
                 ORDER BY version DESC LIMIT 1",
            )
            .param("id", id)
            .fetch_optional()
            .await
            .map_err(store_error)?;
        Ok(row.map(App::from))
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut sql = Sql::new("");
        sql.bind("id", Param::Str(key.id.clone()))
            .bind("hash", Param::Str(key.hash.clone()));
        if self
            .latest_api_key("id = {id:String} OR hash = {hash:String}", sql)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "api key {} (or its hash) already exists",
                key.id
            )));
        }
        let mut insert = self
            .inner
            .client
            .insert::<ApiKeyRow>("api_keys")
            .await
            .map_err(store_error)?;
        insert
            .write(&ApiKeyRow::new(key, 1))
            .await
            .map_err(store_error)?;
        insert.end().await.map_err(store_error)
    }

    async fn list_api_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = self
            .inner
            .client
            .query_raw(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE app_id = {{app_id:String}} \
                 ORDER BY version DESC LIMIT 1 BY id"
            ))
            .param("app_id", app_id)
            .fetch_all()
            .await
            .map_err(store_error)?;
        let mut keys: Vec<ApiKey> = rows.into_iter().map(ApiKey::from).collect();
        keys.sort_by(|a, b| (a.created_at_ns, &a.id).cmp(&(b.created_at_ns, &b.id)));
        Ok(keys)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let mut sql = Sql::new("");
        sql.bind("hash", Param::Str(hash.to_string()));
        // The newest version of the key whose hash matches.
        let row = self.latest_api_key("hash = {hash:String}", sql).await?;
        Ok(row.map(ApiKey::from))
    }

    async fn revoke_api_key(&self, id: &str, at_ns: i64) -> Result<bool, StoreError> {
        let mut sql = Sql::new("");
        sql.bind("id", Param::Str(id.to_string()));
        let Some(row) = self.latest_api_key("id = {id:String}", sql).await? else {
            return Ok(false);
        };
        if row.revoked_at_ns.is_some() {
            // A key revoked earlier keeps its first revocation time.
            return Ok(true);
        }
        let mut key = ApiKey::from(row.clone());
        key.revoked_at_ns = Some(at_ns);
        let mut insert = self
            .inner
            .client
            .insert::<ApiKeyRow>("api_keys")
            .await
            .map_err(store_error)?;
        insert
            .write(&ApiKeyRow::new(&key, row.version + 1))
            .await
            .map_err(store_error)?;
        insert.end().await.map_err(store_error)?;
        Ok(true)
    }
}
