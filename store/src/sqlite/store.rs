//! Reads for the dashboard API, apps and keys.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use xray_model::{ApiKey, App, Execution, Step};

use super::rows::{self, API_KEY_COLUMNS, EXECUTION_COLUMNS, STEP_COLUMNS, to_json};
use super::{SqliteBackend, analytics};
use crate::aggregate;
use crate::{
    Cursor, ExecutionDetail, ExecutionFilter, ExecutionPage, ExecutionSummary, PageRequest,
    PipelineStepStats, PipelineSummary, Scope, Store, StoreError, TimeWindow,
};

pub(super) fn be(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A WHERE clause built from fixed SQL fragments and bound values only.
#[derive(Default)]
pub(super) struct Where {
    clauses: Vec<&'static str>,
    pub(super) values: Vec<Value>,
}

impl Where {
    pub(super) fn push(&mut self, clause: &'static str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause);
        self.values.extend(values);
    }

    pub(super) fn scope(&mut self, scope: &Scope) {
        if let Some(app) = scope.app() {
            self.push("e.app = ?", [Value::Text(app.to_string())]);
        }
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn list(
    conn: &Connection,
    scope: &Scope,
    f: &ExecutionFilter,
    page: &PageRequest,
) -> Result<ExecutionPage, StoreError> {
    if page.limit == 0 {
        return Err(StoreError::InvalidArgument(
            "limit must be at least 1".into(),
        ));
    }
    let mut w = Where::default();
    w.scope(scope);
    if let Some(p) = &f.pipeline {
        w.push("e.pipeline = ?", [text(p)]);
    }
    if let Some(s) = f.status {
        w.push("e.status = ?", [text(s.as_str())]);
    }
    if let Some(v) = &f.environment {
        w.push("e.environment = ?", [text(v)]);
    }
    if let Some(v) = &f.service {
        w.push("e.service = ?", [text(v)]);
    }
    if let Some(v) = f.from_ns {
        w.push("e.start_time_ns >= ?", [Value::Integer(v)]);
    }
    if let Some(v) = f.to_ns {
        w.push("e.start_time_ns < ?", [Value::Integer(v)]);
    }
    if let Some(q) = f.q.as_deref().filter(|q| !q.is_empty()) {
        w.push(
            "(instr(e.execution_id, ?) > 0 OR instr(e.trace_id, ?) > 0 \
             OR EXISTS (SELECT 1 FROM json_each(e.tags) t WHERE instr(t.value, ?) > 0))",
            [text(q), text(q), text(q)],
        );
    }
    if let Some(d) = f.min_duration_ns {
        w.push("e.duration_ns >= ?", [Value::Integer(d)]);
    }
    if let Some(c) = &page.after {
        w.push(
            "(e.start_time_ns, e.app, e.execution_id) < (?, ?, ?)",
            [
                Value::Integer(c.start_time_ns),
                text(&c.app),
                text(&c.execution_id),
            ],
        );
    }
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS}, \
           (SELECT COUNT(*) FROM steps s WHERE s.app = e.app AND s.trace_id = e.trace_id AND s.span_id <> e.span_id), \
           (SELECT COUNT(*) FROM executions x INDEXED BY executions_by_trace WHERE x.trace_id = e.trace_id AND x.app = e.app) \
         FROM executions e {} ORDER BY e.start_time_ns DESC, e.app DESC, e.execution_id DESC LIMIT ?",
        w.sql()
    );
    let mut values = w.values;
    values.push(Value::Integer(i64::from(page.limit) + 1));
    let mut stmt = conn.prepare_cached(&sql).map_err(be)?;
    let listed = stmt
        .query_map(params_from_iter(values), |r| {
            Ok((
                ExecutionSummary {
                    execution: rows::execution(r)?,
                    step_count: r.get::<_, i64>(18)? as u64,
                },
                r.get::<_, i64>(19)?,
            ))
        })
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)?;
    // A trace holding several executions (nested pipelines): count only
    // each execution's own steps, as its detail shows them; such a trace is
    // read once however many of its executions the page lists.
    let mut shared: HashMap<(String, String), (Vec<Execution>, Vec<Step>)> = HashMap::new();
    let mut items = Vec::with_capacity(listed.len());
    for (mut summary, executions_in_trace) in listed {
        if executions_in_trace > 1 {
            let e = &summary.execution;
            let key = (e.app.clone(), e.trace_id.clone());
            if !shared.contains_key(&key) {
                let whole = trace(conn, &e.app, &e.trace_id)?;
                shared.insert(key.clone(), whole);
            }
            let (trace_executions, steps) = &shared[&key];
            summary.step_count =
                aggregate::steps_of_execution(e, trace_executions, steps.clone()).len() as u64;
        }
        items.push(summary);
    }
    let next = if items.len() > page.limit as usize {
        items.truncate(page.limit as usize);
        items.last().map(|s| Cursor {
            start_time_ns: s.execution.start_time_ns,
            app: s.execution.app.clone(),
            execution_id: s.execution.execution_id.clone(),
        })
    } else {
        None
    };
    Ok(ExecutionPage { items, next })
}

fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn get(conn: &Connection, scope: &Scope, id: &str) -> Result<Option<ExecutionDetail>, StoreError> {
    let mut w = Where::default();
    w.scope(scope);
    w.push("e.execution_id = ?", [text(id)]);
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions e {} ORDER BY e.start_time_ns, e.execution_id LIMIT 1",
        w.sql()
    );
    let mut found = conn
        .query_row(&sql, params_from_iter(w.values), rows::execution)
        .optional()
        .map_err(be)?;
    if found.is_none() && is_trace_id(id) {
        let mut w = Where::default();
        w.scope(scope);
        w.push("e.trace_id = ?", [text(&id.to_ascii_lowercase())]);
        // Without table statistics SQLite prefers the primary key's `app`
        // prefix (a scan of the whole app) over the trace index: name it.
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e INDEXED BY executions_by_trace {} ORDER BY e.start_time_ns, e.execution_id LIMIT 1",
            w.sql()
        );
        found = conn
            .query_row(&sql, params_from_iter(w.values), rows::execution)
            .optional()
            .map_err(be)?;
    }
    let Some(execution) = found else {
        return Ok(None);
    };
    let (trace_executions, steps) = trace(conn, &execution.app, &execution.trace_id)?;
    let steps = aggregate::steps_of_execution(&execution, &trace_executions, steps);
    Ok(Some(ExecutionDetail { execution, steps }))
}

/// Every execution and step of one trace.
fn trace(
    conn: &Connection,
    app: &str,
    trace_id: &str,
) -> Result<(Vec<Execution>, Vec<Step>), StoreError> {
    let executions = conn
        .prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e INDEXED BY executions_by_trace WHERE e.app = ?1 AND e.trace_id = ?2"
        ))
        .map_err(be)?
        .query_map(params![app, trace_id], rows::execution)
        .map_err(be)?
        .collect::<Result<Vec<Execution>, _>>()
        .map_err(be)?;
    let steps = conn
        .prepare_cached(&format!(
            "SELECT {STEP_COLUMNS} FROM steps WHERE app = ?1 AND trace_id = ?2"
        ))
        .map_err(be)?
        .query_map(params![app, trace_id], rows::step)
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)?;
    Ok((executions, steps))
}

fn steps_by_span(
    conn: &Connection,
    scope: &Scope,
    span_id: &str,
    limit: u32,
) -> Result<Vec<xray_model::Step>, StoreError> {
    let mut w = Where::default();
    w.scope(scope);
    w.push("e.span_id = ?", [text(span_id)]);
    let sql = format!(
        "SELECT {STEP_COLUMNS} FROM steps e {} ORDER BY e.start_time_ns, e.app, e.trace_id LIMIT {}",
        w.sql(),
        limit.max(1)
    );
    conn.prepare(&sql)
        .map_err(be)?
        .query_map(params_from_iter(w.values), rows::step)
        .map_err(be)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(be)
}

fn conflict_or(e: rusqlite::Error, what: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(what.to_string()),
        _ => be(e),
    }
}

#[async_trait]
impl Store for SqliteBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        })
        .await
    }

    async fn list_executions(
        &self,
        scope: &Scope,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> Result<ExecutionPage, StoreError> {
        let (scope, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.with_reader(move |c| list(c, &scope, &filter, &page))
            .await
    }

    async fn get_execution(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError> {
        let (scope, id) = (scope.clone(), id.to_string());
        self.with_reader(move |c| get(c, &scope, &id)).await
    }

    async fn pipelines(
        &self,
        scope: &Scope,
        window: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError> {
        let scope = scope.clone();
        self.with_reader(move |c| analytics::pipelines(c, &scope, window))
            .await
    }

    async fn pipeline_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        let (scope, pipeline) = (scope.clone(), pipeline.to_string());
        self.with_reader(move |c| analytics::pipeline_funnel(c, &scope, &pipeline, window))
            .await
    }

    async fn steps_by_span_id(
        &self,
        scope: &Scope,
        span_id: &str,
        limit: u32,
    ) -> Result<Vec<xray_model::Step>, StoreError> {
        let (scope, span_id) = (scope.clone(), span_id.to_ascii_lowercase());
        self.with_reader(move |c| steps_by_span(c, &scope, &span_id, limit))
            .await
    }

    async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        let app = app.clone();
        self.with_writer(move |c| {
            c.execute(
                "INSERT INTO apps (id, name, created_at_ns) VALUES (?1, ?2, ?3)",
                params![app.id, app.name, app.created_at_ns],
            )
            .map_err(|e| conflict_or(e, &format!("app {}", app.id)))?;
            Ok(())
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT id, name, created_at_ns FROM apps ORDER BY created_at_ns, id")
                .map_err(be)?
                .query_map([], rows::app)
                .map_err(be)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(be)
        })
        .await
    }

    async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError> {
        let id = id.to_string();
        self.with_reader(move |c| {
            c.query_row(
                "SELECT id, name, created_at_ns FROM apps WHERE id = ?1",
                [id],
                rows::app,
            )
            .optional()
            .map_err(be)
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.with_writer(move |c| {
            c.execute(
                "INSERT INTO api_keys (id, app_id, prefix, hash, scopes, created_at_ns, revoked_at_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.id, key.app_id, key.prefix, key.hash, to_json(&key.scopes)?, key.created_at_ns, key.revoked_at_ns],
            )
            .map_err(|e| conflict_or(e, &format!("api key {}", key.id)))?;
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let app_id = app_id.to_string();
        self.with_reader(move |c| {
            c.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE app_id = ?1 ORDER BY created_at_ns, id"
            ))
            .map_err(be)?
            .query_map([app_id], rows::api_key)
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_string();
        self.with_reader(move |c| {
            c.query_row(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ?1"),
                [hash],
                rows::api_key,
            )
            .optional()
            .map_err(be)
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str, at_ns: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_writer(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at_ns = COALESCE(revoked_at_ns, ?2) WHERE id = ?1",
                    params![id, at_ns],
                )
                .map_err(be)?;
            Ok(n > 0)
        })
        .await
    }
}
