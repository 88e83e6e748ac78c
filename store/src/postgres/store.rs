//! [`Store`] for Postgres. Every value a caller passes is a bind parameter;
//! the only SQL assembled at run time is the choice of fixed filter clauses.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};
use xray_model::{ApiKey, App, Execution, Step};

use super::rows::{self, API_KEY_COLUMNS, EXECUTION_COLUMNS, STEP_COLUMNS};
use super::{PostgresBackend, store_error};
use crate::aggregate::{self, percentile};
use crate::joins::{Traces, as_trace_id, pick_execution};
use crate::{
    Cursor, ExecutionDetail, ExecutionFilter, ExecutionPage, ExecutionSummary, PageRequest,
    PipelineStepStats, PipelineSummary, Scope, Store, StoreError, TimeWindow,
};

/// Appends `AND app = $n` when the scope is one app.
fn push_scope(qb: &mut QueryBuilder<Postgres>, scope: &Scope, column: &str) {
    if let Some(app) = scope.app() {
        qb.push(format_args!(" AND {column} = "));
        qb.push_bind(app.to_string());
    }
}

impl PostgresBackend {
    /// Executions and steps of the given `(app, trace_id)` pairs.
    async fn traces(
        &self,
        keys: &[(String, String)],
        step_columns: &str,
    ) -> Result<Traces, StoreError> {
        if keys.is_empty() {
            return Ok(Traces::default());
        }
        let apps: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let traces: Vec<String> = keys.iter().map(|k| k.1.clone()).collect();
        let execs = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE (app, trace_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        )))
        .bind(&apps)
        .bind(&traces)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(rows::execution)
        .collect::<Result<Vec<Execution>, _>>()?;
        let steps = sqlx::query(AssertSqlSafe(format!(
            "SELECT {step_columns} FROM steps
             WHERE (app, trace_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        )))
        .bind(&apps)
        .bind(&traces)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(rows::step)
        .collect::<Result<Vec<Step>, _>>()?;
        Ok(Traces::new(execs, steps))
    }
}

/// Step columns without the large texts, for counting and funnels.
const LIGHT_STEP_COLUMNS: &str = "app, execution_id, trace_id, span_id, parent_span_id, \
    name, step_type, status, service, start_time_ns, end_time_ns, NULL::text AS input, \
    NULL::text AS output, NULL::text AS reasoning, '{}'::text AS metadata, candidates_in, \
    candidates_out, rejections::text AS rejections, candidates::text AS candidates, model, \
    provider, input_tokens, output_tokens, cost, confidence, error, version";

fn trace_keys(executions: &[Execution]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = executions
        .iter()
        .map(|e| (e.app.clone(), e.trace_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[async_trait]
impl Store for PostgresBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
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
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE TRUE"
        ));
        push_scope(&mut qb, scope, "app");
        if let Some(p) = &filter.pipeline {
            qb.push(" AND pipeline = ").push_bind(p.clone());
        }
        if let Some(s) = filter.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(e) = &filter.environment {
            qb.push(" AND environment = ").push_bind(e.clone());
        }
        if let Some(s) = &filter.service {
            qb.push(" AND service = ").push_bind(s.clone());
        }
        if let Some(t) = filter.from_ns {
            qb.push(" AND start_time_ns >= ").push_bind(t);
        }
        if let Some(t) = filter.to_ns {
            qb.push(" AND start_time_ns < ").push_bind(t);
        }
        if let Some(q) = &filter.q {
            qb.push(" AND (strpos(execution_id, ")
                .push_bind(q.clone())
                .push(") > 0 OR strpos(trace_id, ")
                .push_bind(q.clone())
                .push(") > 0 OR EXISTS (SELECT 1 FROM unnest(tags) AS t(tag) WHERE strpos(t.tag, ")
                .push_bind(q.clone())
                .push(") > 0))");
        }
        if let Some(d) = filter.min_duration_ns {
            qb.push(" AND duration_ns >= ").push_bind(d);
        }
        if let Some(c) = &page.after {
            qb.push(" AND (start_time_ns, app, execution_id) < (")
                .push_bind(c.start_time_ns)
                .push(", ")
                .push_bind(c.app.clone())
                .push(", ")
                .push_bind(c.execution_id.clone())
                .push(")");
        }
        qb.push(" ORDER BY start_time_ns DESC, app DESC, execution_id DESC LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let mut executions = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(rows::execution)
            .collect::<Result<Vec<_>, _>>()?;
        let more = executions.len() > page.limit as usize;
        executions.truncate(page.limit as usize);
        let traces = self
            .traces(&trace_keys(&executions), LIGHT_STEP_COLUMNS)
            .await?;
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
            .map(|e| ExecutionSummary {
                step_count: traces.steps_of(&e).len() as u64,
                execution: e,
            })
            .collect();
        Ok(ExecutionPage { items, next })
    }

    async fn get_execution(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<ExecutionDetail>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE (execution_id = "
        ));
        qb.push_bind(id.to_string())
            .push(" OR trace_id = ")
            .push_bind(as_trace_id(id).unwrap_or_default())
            .push(")");
        push_scope(&mut qb, scope, "app");
        let candidates = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(rows::execution)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(execution) = pick_execution(id, candidates) else {
            return Ok(None);
        };
        let traces = self
            .traces(
                &[(execution.app.clone(), execution.trace_id.clone())],
                STEP_COLUMNS,
            )
            .await?;
        let steps = traces.steps_of(&execution);
        Ok(Some(ExecutionDetail { execution, steps }))
    }

    async fn pipelines(
        &self,
        scope: &Scope,
        window: TimeWindow,
    ) -> Result<Vec<PipelineSummary>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT pipeline, count(*) AS executions,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                max(start_time_ns) AS last_seen,
                array_remove(array_agg(duration_ns ORDER BY duration_ns), NULL) AS durations
             FROM executions WHERE start_time_ns >= ",
        );
        qb.push_bind(window.from_ns)
            .push(" AND start_time_ns < ")
            .push_bind(window.to_ns);
        push_scope(&mut qb, scope, "app");
        qb.push(" GROUP BY pipeline ORDER BY pipeline");
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                let durations: Vec<i64> = r.try_get("durations").map_err(store_error)?;
                Ok(PipelineSummary {
                    pipeline: r.try_get("pipeline").map_err(store_error)?,
                    executions: r.try_get::<i64, _>("executions").map_err(store_error)? as u64,
                    failed: r.try_get::<i64, _>("failed").map_err(store_error)? as u64,
                    p50_duration_ns: percentile(&durations, 0.50),
                    p95_duration_ns: percentile(&durations, 0.95),
                    p99_duration_ns: percentile(&durations, 0.99),
                    last_seen_ns: r.try_get("last_seen").map_err(store_error)?,
                })
            })
            .collect()
    }

    async fn pipeline_funnel(
        &self,
        scope: &Scope,
        pipeline: &str,
        window: TimeWindow,
    ) -> Result<Vec<PipelineStepStats>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE pipeline = "
        ));
        qb.push_bind(pipeline.to_string())
            .push(" AND start_time_ns >= ")
            .push_bind(window.from_ns)
            .push(" AND start_time_ns < ")
            .push_bind(window.to_ns);
        push_scope(&mut qb, scope, "app");
        let executions = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(rows::execution)
            .collect::<Result<Vec<_>, _>>()?;
        let traces = self
            .traces(&trace_keys(&executions), LIGHT_STEP_COLUMNS)
            .await?;
        Ok(aggregate::pipeline_funnel(traces.funnel_rows(&executions)))
    }

    async fn steps_by_span_id(
        &self,
        scope: &Scope,
        span_id: &str,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {STEP_COLUMNS} FROM steps WHERE span_id = "
        ));
        qb.push_bind(span_id.to_ascii_lowercase());
        push_scope(&mut qb, scope, "app");
        qb.push(" ORDER BY start_time_ns, app, trace_id LIMIT ")
            .push_bind(i64::from(limit.max(1)));
        qb.build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(rows::step)
            .collect()
    }

    async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO apps (id, name, created_at_ns) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(rows::text(&app.id))
        .bind(rows::text(&app.name))
        .bind(app.created_at_ns)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "app {} already exists",
                app.id
            )));
        }
        Ok(())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        sqlx::query("SELECT id, name, created_at_ns FROM apps ORDER BY created_at_ns, id")
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(rows::app)
            .collect()
    }

    async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError> {
        sqlx::query("SELECT id, name, created_at_ns FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(rows::app)
            .transpose()
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO api_keys (id, app_id, prefix, hash, scopes, created_at_ns, revoked_at_ns)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(rows::text(&key.id))
        .bind(rows::text(&key.app_id))
        .bind(rows::text(&key.prefix))
        .bind(rows::text(&key.hash))
        .bind(key.scopes.iter().map(|s| rows::text(s)).collect::<Vec<_>>())
        .bind(key.created_at_ns)
        .bind(key.revoked_at_ns)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => Err(
                StoreError::Conflict(format!("api key {} already exists", key.id)),
            ),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn list_api_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE app_id = $1 ORDER BY created_at_ns, id"
        )))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(rows::api_key)
        .collect()
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(rows::api_key)
        .transpose()
    }

    async fn revoke_api_key(&self, id: &str, at_ns: i64) -> Result<bool, StoreError> {
        // A key revoked earlier keeps its first revocation time.
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ns = COALESCE(revoked_at_ns, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(at_ns)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }
}
