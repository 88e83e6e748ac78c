//! Upgrading an SQLite file written by schema version 1 (WITHOUT ROWID
//! tables) to version 2 (rowid tables) and 3 (steps by span id) keeps every
//! row and the upserts' identity rules.

use xray_model::{MappedBatch, StepType};
use xray_store::sqlite::SqliteBackend;
use xray_store::testing::{execution, step};
use xray_store::{Scope, Sink, Store};

const V1: &str = include_str!("../../migrations/sqlite/0001_init.sql");

#[tokio::test]
async fn version_1_files_are_upgraded_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let exec = execution(
        "default",
        "run-1",
        "pick",
        1_700_000_000_000_000_000,
        5_000_000,
    );
    let s = step(&exec, "filter", StepType::Filter, 1_000, 2_000);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(V1).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ns INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, '0001_init.sql', 0);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO executions (app, execution_id, trace_id, span_id, pipeline, environment, service, status, \
             start_time_ns, end_time_ns, duration_ns, input, output, error, tags, metadata, step_count, ingest_time_ns, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'test', 'svc', 'completed', ?6, ?7, 5000000, '{}', NULL, NULL, '[]', '{}', 1, ?6, 1)",
            rusqlite::params![exec.app, exec.execution_id, exec.trace_id, exec.span_id, exec.pipeline,
                exec.start_time_ns, exec.end_time_ns],
        )
        .unwrap();
        c.execute(
            "INSERT INTO steps (app, trace_id, span_id, execution_id, parent_span_id, name, step_type, status, service, \
             start_time_ns, end_time_ns, duration_ns, metadata, rejections, candidates, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'filter', 'filter', 'completed', 'svc', ?6, ?7, 2000, '{}', '{}', '[]', 1)",
            rusqlite::params![s.app, s.trace_id, s.span_id, s.execution_id, s.parent_span_id,
                s.start_time_ns, s.end_time_ns],
        )
        .unwrap();
    }

    let store = SqliteBackend::open(&path).await.unwrap();
    let scope = Scope::App("default".into());
    let detail = store
        .get_execution(&scope, "run-1")
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(detail.execution.trace_id, exec.trace_id);
    assert_eq!(detail.steps.len(), 1);
    assert_eq!(detail.steps[0].span_id, s.span_id);

    // The identity is still unique: writing both rows again, newer, updates
    // them in place.
    let mut newer = exec.clone();
    newer.version = 2;
    newer.output = Some(r#"{"pick":"B002"}"#.into());
    let mut newer_step = s.clone();
    newer_step.version = 2;
    let batch = MappedBatch {
        executions: vec![newer],
        steps: vec![newer_step],
    };
    store.write(&batch).await.unwrap();
    store.write(&batch).await.unwrap();
    let detail = store.get_execution(&scope, "run-1").await.unwrap().unwrap();
    assert_eq!(
        detail.execution.output.as_deref(),
        Some(r#"{"pick":"B002"}"#)
    );
    assert_eq!(detail.steps.len(), 1);
    let page = store
        .list_executions(
            &scope,
            &Default::default(),
            &xray_store::PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // Version 3 indexes steps by span id: the migrated step is found by it.
    let by_span = store.steps_by_span_id(&scope, &s.span_id, 5).await.unwrap();
    assert_eq!(by_span.len(), 1);
    assert_eq!(by_span[0].name, "filter");
    // Applying migrations again is a no-op.
    assert!(store.migrate().await.unwrap().is_empty());
}
