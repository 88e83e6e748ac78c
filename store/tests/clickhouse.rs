//! ClickHouse backend tests against the server of `XRAY_TEST_CLICKHOUSE_URL`
//! (the dev server or a real ClickHouse), each in a database of its own.

mod common;

use xray_store::clickhouse::schema::{MIGRATIONS, SchemaOptions};
use xray_store::clickhouse::{ClickhouseBackend, testing};
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
    let Some(config) = testing::config_from_env() else {
        panic!(
            "{} is not set: run the tests through dev/test.sh",
            testing::ENV
        );
    };
    // A fresh database migrated by four backends at once, then again.
    let mut handles = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        handles.push(tokio::spawn(async move {
            ClickhouseBackend::open(&config).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let db = testing::isolated_with(config).await;
    assert!(db.backend.migrate().await.unwrap().is_empty());
    let versions: Vec<u32> = db
        .backend
        .client()
        .query_raw("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(versions, [1, 2]);
    let tables: Vec<String> = db
        .backend
        .client()
        .query_raw(
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            "api_keys",
            "apps",
            "executions",
            "schema_migrations",
            "steps",
            "trace_index",
            "trace_index_executions_mv",
            "trace_index_steps_mv"
        ]
    );
}

#[tokio::test]
async fn ttl_is_applied_and_optional() {
    let mut config =
        testing::config_from_env().expect("XRAY_TEST_CLICKHOUSE_URL is not set: run dev/test.sh");
    config.ttl_days = 30;
    let db = testing::isolated_with(config).await;
    let ddl: String = db
        .backend
        .client()
        .query_raw("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'steps'")
        .fetch_one()
        .await
        .unwrap();
    assert!(
        ddl.contains("TTL toDateTime(start_time) + toIntervalDay(30)"),
        "{ddl}"
    );
    assert!(ddl.contains("ttl_only_drop_parts = 1"), "{ddl}");
    assert!(ddl.contains("ReplacingMergeTree(version)"), "{ddl}");
    assert!(ddl.contains("PARTITION BY toDate(start_time)"), "{ddl}");

    let mut forever = testing::config_from_env().unwrap();
    forever.ttl_days = 0;
    let db = testing::isolated_with(forever).await;
    let ddl: String = db
        .backend
        .client()
        .query_raw("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'executions'")
        .fetch_one()
        .await
        .unwrap();
    assert!(!ddl.contains("TTL"), "{ddl}");
}

#[tokio::test]
async fn clustered_ddl_parses_on_the_engine() {
    let db = testing::require().await;
    let options = SchemaOptions::new("xray", "prod-cluster", 14).unwrap();
    let mut statements = 0;
    for (_, _, template) in MIGRATIONS {
        for stmt in options.render(template).unwrap() {
            // formatQuery parses the statement with the engine's own parser
            // and prints it back normalized; a syntax error fails the query.
            let formatted: String = db
                .backend
                .client()
                .query_raw("SELECT formatQuerySingleLine({q:String})")
                .param("q", &stmt)
                .fetch_one()
                .await
                .unwrap_or_else(|e| panic!("{e}\n{stmt}"));
            assert!(
                formatted.contains("ON CLUSTER `prod-cluster`"),
                "{formatted}"
            );
            statements += 1;
        }
    }
    assert_eq!(statements, 13);
}

#[tokio::test]
async fn write_errors_are_classified() {
    let db = testing::require().await;
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
    db.backend
        .client()
        .query_raw("DROP TABLE executions")
        .execute()
        .await
        .unwrap();
    let err = db.backend.write(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Permanent { .. }), "{err}");
    // Nothing listens on port 9 (discard): retryable.
    let mut config = db.config.clone();
    config.url = "http://127.0.0.1:9".into();
    let down = ClickhouseBackend::new(&config).unwrap();
    let err = down.write(&batch).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
