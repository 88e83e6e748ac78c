//! Postgres backend tests against the server of `XRAY_TEST_POSTGRES_URL`,
//! each in a database of its own.

mod common;

use xray_store::postgres::{PostgresBackend, testing};
use xray_store::{Sink, SinkError};

#[tokio::test]
async fn round_trip() {
    let db = testing::require().await;
    common::round_trip(&db.backend).await;
}

#[tokio::test]
async fn late_execution() {
    let db = testing::require().await;
    common::late_execution(&db.backend).await;
}

#[tokio::test]
async fn idempotent_versions() {
    let db = testing::require().await;
    common::idempotent_versions(&db.backend).await;
}

#[tokio::test]
async fn list_and_paginate() {
    let db = testing::require().await;
    common::list_and_paginate(&db.backend).await;
}

#[tokio::test]
async fn migrations_twice_and_concurrently() {
    let db = testing::require().await;
    // `require` migrated once; again, and from several pools at once.
    assert!(db.backend.migrate().await.unwrap().is_empty());
    let config = xray_config::PostgresConfig {
        url: db.url.clone(),
        ..Default::default()
    };
    let mut handles = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        handles.push(tokio::spawn(async move {
            let b = PostgresBackend::open(&config).await.unwrap();
            b.migrate().await.unwrap()
        }));
    }
    for h in handles {
        assert!(h.await.unwrap().is_empty());
    }
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations")
        .fetch_all(db.backend.pool())
        .await
        .unwrap();
    assert_eq!(rows, [(1,), (2,)]);
}

#[tokio::test]
async fn fresh_database_migrated_concurrently() {
    let db = testing::require().await;
    // A second fresh database, migrated by several processes at once.
    let other = testing::isolated_at(&db.url).await;
    sqlx::raw_sql("DROP TABLE schema_migrations, executions, steps, apps, api_keys")
        .execute(other.backend.pool())
        .await
        .unwrap();
    let config = xray_config::PostgresConfig {
        url: other.url.clone(),
        ..Default::default()
    };
    let mut handles = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        handles.push(tokio::spawn(async move {
            PostgresBackend::open(&config).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM schema_migrations")
        .fetch_one(other.backend.pool())
        .await
        .unwrap();
    assert_eq!(n.0, 2);
}

#[tokio::test]
async fn json_columns_hold_valid_json_only() {
    let db = testing::require().await;
    let mut e = common::execution(
        "a",
        "j",
        "3af7651916cd43dd8448eb211c80319c",
        "p",
        common::T0,
    );
    e.input = Some("not json".into());
    e.output = Some(r#"{"b": 1, "a": [true, null]}"#.into());
    db.backend
        .write(&xray_model::MappedBatch {
            executions: vec![e],
            steps: vec![],
        })
        .await
        .unwrap();
    let (input_json, output_json): (Option<serde_json::Value>, Option<serde_json::Value>) =
        sqlx::query_as("SELECT input_json, output_json FROM executions")
            .fetch_one(db.backend.pool())
            .await
            .unwrap();
    assert_eq!(input_json, None);
    assert_eq!(
        output_json,
        Some(serde_json::json!({"a": [true, null], "b": 1}))
    );
}

#[tokio::test]
async fn write_errors_are_classified() {
    let db = testing::require().await;
    // The schema is gone: no retry can help.
    sqlx::raw_sql("DROP TABLE executions")
        .execute(db.backend.pool())
        .await
        .unwrap();
    let e = common::execution(
        "a",
        "x",
        "4af7651916cd43dd8448eb211c80319c",
        "p",
        common::T0,
    );
    let batch = xray_model::MappedBatch {
        executions: vec![e],
        steps: vec![],
    };
    let err = db.backend.write(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Permanent { .. }), "{err}");
    // The server cannot be reached: retryable.
    db.backend.close().await;
    let err = db.backend.write(&batch).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
