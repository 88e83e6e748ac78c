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
    assert_eq!(versions, [1, 2, 3, 4, 5]);
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
            "trace_index_steps_mv",
            "trace_rows",
            "trace_rows_executions_mv",
            "trace_rows_steps_mv"
        ]
    );
    // Schema 5 replaced the steps' projection of schema 3 with one without
    // the large texts.
    let projections: Vec<(String, String)> = db
        .backend
        .client()
        .query_raw(
            "SELECT table, name FROM system.projections WHERE database = currentDatabase() \
             ORDER BY table, name",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        projections,
        [
            ("executions".to_string(), "executions_by_trace".to_string()),
            ("steps".to_string(), "steps_by_trace_light".to_string())
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
            // DDL runs on every node; the copies of migration 5 go through
            // the Distributed tables instead (INSERT has no ON CLUSTER).
            if stmt.starts_with("INSERT INTO `xray`.trace_rows ") {
                assert!(
                    formatted.contains("FROM xray.steps")
                        || formatted.contains("FROM xray.executions"),
                    "{formatted}"
                );
            } else {
                assert!(
                    formatted.contains("ON CLUSTER `prod-cluster`"),
                    "{formatted}"
                );
            }
            statements += 1;
        }
    }
    assert_eq!(statements, 32);
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

/// The list's step counts (computed without reading the steps) match the
/// details in a trace holding two executions (a nested pipeline), where the
/// inner execution's span is also written as a step of the outer one.
#[tokio::test]
async fn list_step_counts_in_a_shared_trace() {
    use xray_store::{ExecutionFilter, PageRequest, Scope, Store};
    let db = testing::require().await;
    let trace = "4af7651916cd43dd8448eb211c80319c";
    let outer = common::execution("a", "outer", trace, "outer-p", common::T0);
    let inner = common::execution("a", "inner", trace, "inner-p", common::T0 + 10);
    let a = common::step(&outer, "00000000000000a1", "a", 1);
    let inner_span = common::step(&outer, &inner.span_id, "inner-span", 10);
    let mut b = common::step(&outer, "00000000000000b1", "b", 11);
    b.parent_span_id = inner.span_id.clone();
    let mut c = common::step(&outer, "00000000000000c1", "c", 12);
    c.parent_span_id = b.span_id.clone();
    let mut c2 = c.clone();
    c2.version = 2;
    let batch = xray_model::MappedBatch {
        executions: vec![outer, inner],
        steps: vec![a, inner_span, b, c, c2],
    };
    db.backend.write(&batch).await.unwrap();
    let scope = Scope::App("a".into());
    let page = db
        .backend
        .list_executions(
            &scope,
            &ExecutionFilter::default(),
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    for item in &page.items {
        let detail = db
            .backend
            .get_execution(&scope, &item.execution.execution_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            item.step_count,
            detail.steps.len() as u64,
            "{}",
            item.execution.execution_id
        );
    }
    let counts: Vec<(&str, u64)> = page
        .items
        .iter()
        .map(|s| (s.execution.execution_id.as_str(), s.step_count))
        .collect();
    assert_eq!(counts, [("inner", 2), ("outer", 1)]);
}

/// The pipeline funnel counts each step once with its newest values when its
/// execution was written several times (the trace then takes the joined
/// path, where versions are deduplicated), next to steps with one row.
#[tokio::test]
async fn funnel_counts_each_step_once_whatever_its_rows() {
    use xray_store::{Scope, Store, TimeWindow};
    let db = testing::require().await;
    let e = common::execution(
        "a",
        "e1",
        "4af7651916cd43dd8448eb211c80319c",
        "p",
        common::T0,
    );
    let mut old = common::step(&e, "00000000000000a1", "rank", 1);
    old.candidates_out = Some(1);
    let mut new = old.clone();
    new.version = 5;
    new.candidates_out = Some(10);
    let single = common::step(&e, "00000000000000b1", "filter", 2);
    for batch in [
        vec![new.clone(), single.clone()],
        vec![old.clone()],
        vec![new.clone()],
    ] {
        db.backend
            .write(&xray_model::MappedBatch {
                executions: vec![e.clone()],
                steps: batch,
            })
            .await
            .unwrap();
    }
    let funnel = db
        .backend
        .pipeline_funnel(
            &Scope::App("a".into()),
            "p",
            TimeWindow {
                from_ns: common::T0 - 1,
                to_ns: common::T0 + 1,
            },
        )
        .await
        .unwrap();
    let rank = funnel.iter().find(|f| f.name == "rank").unwrap();
    assert_eq!((rank.runs, rank.executions, rank.total_out), (1, 1, 10));
    let filter = funnel.iter().find(|f| f.name == "filter").unwrap();
    assert_eq!(
        (filter.runs, filter.total_in, filter.total_out),
        (1, 100, 25)
    );
}

/// Executions of pipeline `p`, one per trace, each with a `fetch` step and a
/// `filter` under it whose rejection histogram and sampled decisions need
/// merging (a reason the histogram lacks, a decision without a reason).
fn funnel_fixture(n: usize, start: i64) -> (Vec<xray_model::Execution>, Vec<xray_model::Step>) {
    use xray_model::{CandidateDecision, Decision};
    let mut executions = Vec::new();
    let mut steps = Vec::new();
    for i in 0..n {
        let e = common::execution(
            "a",
            &format!("e{i:05}"),
            &format!("{:032x}", 0xfeed_0000u64 + i as u64),
            "p",
            start + i as i64 * 1_000,
        );
        let mut fetch = common::step(&e, &format!("{:016x}", 2 * i + 1), "fetch", 10);
        fetch.candidates_in = None;
        fetch.candidates_out = Some(100 + (i % 7) as u64);
        fetch.rejections.clear();
        fetch.candidates.clear();
        let mut filter = common::step(
            &e,
            &format!("{:016x}", 2 * i + 2),
            "filter",
            20 + (i % 5) as i64,
        );
        filter.parent_span_id = fetch.span_id.clone();
        filter.candidates = vec![
            CandidateDecision {
                id: "x".into(),
                decision: Decision::Rejected,
                reason: Some(if i % 2 == 0 { "price" } else { "brand" }.into()),
                score: None,
            },
            CandidateDecision {
                id: "y".into(),
                decision: Decision::Rejected,
                reason: None,
                score: None,
            },
        ];
        steps.extend([fetch, filter]);
        executions.push(e);
    }
    (executions, steps)
}

/// The same funnel, up to rounding in the means (sums in another order).
fn assert_same_funnel(
    got: &[xray_store::PipelineStepStats],
    want: &[xray_store::PipelineStepStats],
) {
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(xray_store::testing::same_step_stats(g, w), "{g:?}\n{w:?}");
    }
}

/// Steps written before schema 4 have no attribution and no merged
/// histogram: the funnel reads them through the join, the histogram from the
/// column's DEFAULT expression over `rejections` and `candidates`, and its
/// figures do not change.
#[tokio::test]
async fn funnel_over_steps_written_before_schema_4() {
    use xray_store::{Scope, Store, TimeWindow};
    let db = testing::require().await;
    let reference = xray_store::testing::sqlite().await;
    let (executions, steps) = funnel_fixture(20, common::T0);
    let batch = xray_model::MappedBatch { executions, steps };
    db.backend.write(&batch).await.unwrap();
    reference.backend.write(&batch).await.unwrap();
    let scope = Scope::App("a".into());
    let window = TimeWindow {
        from_ns: common::T0,
        to_ns: common::T0 + 1_000_000,
    };
    let want = reference
        .backend
        .pipeline_funnel(&scope, "p", window)
        .await
        .unwrap();
    let written = db
        .backend
        .pipeline_funnel(&scope, "p", window)
        .await
        .unwrap();
    assert_same_funnel(&written, &want);
    let filter = want.iter().find(|s| s.name == "filter").unwrap();
    assert_eq!(
        filter.top_rejections,
        [
            ("price".to_string(), 1500),
            ("unspecified".to_string(), 20),
            ("brand".to_string(), 10)
        ]
    );
    // Every step again, newer, as a collector before schema 4 wrote it:
    // without the columns that migration added.
    db.backend
        .client()
        .query_raw(
            "INSERT INTO steps (app, execution_id, trace_id, span_id, parent_span_id, pipeline, \
             name, step_type, status, service, start_time, end_time, duration_ns, input, output, \
             reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, \
             provider, input_tokens, output_tokens, cost, confidence, error, version, written) \
             SELECT app, execution_id, trace_id, span_id, parent_span_id, pipeline, name, \
             step_type, status, service, start_time, end_time, duration_ns, input, output, \
             reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, \
             provider, input_tokens, output_tokens, cost, confidence, error, version + 1, written \
             FROM steps",
        )
        .execute()
        .await
        .unwrap();
    let legacy: u64 = db
        .backend
        .client()
        .query_raw(
            "SELECT count() FROM steps WHERE attribution = 'unknown' AND version = 2 \
             AND merged_rejections = rejections",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(legacy, 20, "the fetch rows: nothing to merge");
    let rewritten = db
        .backend
        .pipeline_funnel(&scope, "p", window)
        .await
        .unwrap();
    assert_same_funnel(&rewritten, &want);
}

/// More traces need the join (here: steps written before their executions,
/// and every row written twice) than travel as a query parameter (10,000):
/// the funnel selects them again as subqueries, nested pipelines among them
/// included, and counts exactly what SQLite counts; so does the pipelines
/// summary.
#[tokio::test]
async fn funnel_with_more_joined_traces_than_listed() {
    use xray_store::{Scope, Store, TimeWindow};
    let db = testing::require().await;
    let reference = xray_store::testing::sqlite().await;
    let (mut executions, steps) = funnel_fixture(10_050, common::T0);
    // Every 1,000th trace also holds a nested execution under its fetch.
    let nested: Vec<xray_model::Execution> = executions
        .iter()
        .step_by(1_000)
        .map(|e| {
            let mut inner = common::execution(
                "a",
                &format!("{}-inner", e.execution_id),
                &e.trace_id,
                "p",
                e.start_time_ns + 15,
            );
            inner.span_id = steps
                .iter()
                .find(|s| s.trace_id == e.trace_id && s.name == "filter")
                .unwrap()
                .parent_span_id
                .clone();
            inner
        })
        .collect();
    executions.extend(nested);
    let steps_first = xray_model::MappedBatch {
        executions: vec![],
        steps,
    };
    let then_executions = xray_model::MappedBatch {
        executions,
        steps: vec![],
    };
    for b in [
        &steps_first,
        &steps_first,
        &then_executions,
        &then_executions,
    ] {
        db.backend.write(b).await.unwrap();
        reference.backend.write(b).await.unwrap();
    }
    let scope = Scope::App("a".into());
    for window in [
        TimeWindow {
            from_ns: common::T0,
            to_ns: common::T0 + 20_000_000,
        },
        TimeWindow {
            from_ns: common::T0 + 1_000_000,
            to_ns: common::T0 + 2_000_000,
        },
    ] {
        let want = reference
            .backend
            .pipeline_funnel(&scope, "p", window)
            .await
            .unwrap();
        assert!(!want.is_empty());
        let got = db
            .backend
            .pipeline_funnel(&scope, "p", window)
            .await
            .unwrap();
        assert_same_funnel(&got, &want);
        // Every execution is written twice: more identities with several
        // rows than the pipelines summary lists, so it sorts them all.
        assert_eq!(
            db.backend.pipelines(&scope, window).await.unwrap(),
            reference.backend.pipelines(&scope, window).await.unwrap()
        );
    }
}

/// A trace with every field the detail returns set, nested steps, texts
/// that need escaping and a second version of one step.
fn detail_fixture() -> xray_model::MappedBatch {
    let mut e = common::execution(
        "a",
        "exec-detail",
        "0af7651916cd43dd8448eb211c80319c",
        "p",
        common::T0,
    );
    e.status = xray_model::Status::Failed;
    e.error = Some("ranker timed out: \"deadline\" \u{1F680}\n".into());
    e.output = None;
    e.metadata
        .insert("quote\"key".into(), "tab\tvalue ü".into());
    let mut llm = common::step(&e, "00000000000000a1", "keywords", 10);
    llm.step_type = xray_model::StepType::Llm;
    llm.model = Some("model-a".into());
    llm.provider = Some("provider-b".into());
    llm.input_tokens = Some(1_234);
    llm.output_tokens = Some(56);
    llm.cost = Some(0.012_345_678_9);
    llm.confidence = Some(0.875);
    llm.candidates_in = None;
    llm.candidates_out = None;
    llm.rejections.clear();
    llm.candidates.clear();
    let mut filter = common::step(&e, "00000000000000a2", "filter", 20);
    filter.parent_span_id = llm.span_id.clone();
    filter.candidates_in = Some(u64::MAX / 3);
    filter.status = xray_model::Status::Failed;
    filter.error = Some("too strict".into());
    let mut child = common::step(&e, "00000000000000a3", "brand", 25);
    child.parent_span_id = filter.span_id.clone();
    child.end_time_ns = None;
    child.input = Some("not json: {".into());
    let mut newer = filter.clone();
    newer.version = 2;
    newer.reasoning = Some("second thoughts".into());
    xray_model::MappedBatch {
        executions: vec![e],
        steps: vec![llm, filter, child, newer],
    }
}

/// The detail is read from `trace_rows`: the same on ClickHouse as on
/// SQLite, even when the writer's session asks for quoted 64-bit integers
/// (the views pin their own output settings); and rows written before
/// schema 5 are copied there by the migration.
#[tokio::test]
async fn detail_from_trace_rows_and_their_backfill() {
    use xray_store::{Scope, Store};
    let db = testing::require().await;
    let reference = xray_store::testing::sqlite().await;
    let batch = detail_fixture();
    db.backend.write(&batch).await.unwrap();
    reference.backend.write(&batch).await.unwrap();
    let scope = Scope::App("a".into());
    let detail = |id: &'static str| db.backend.get_execution(&scope, id);
    let want = reference
        .backend
        .get_execution(&scope, "exec-detail")
        .await
        .unwrap()
        .expect("the reference has it");
    assert_eq!(want.steps.len(), 3, "{want:?}");
    assert_eq!(want.steps[1].reasoning.as_deref(), Some("second thoughts"));
    let got = detail("exec-detail").await.unwrap().expect("written");
    assert_eq!(got, want);
    let by_trace = detail("0af7651916cd43dd8448eb211c80319c").await.unwrap();
    assert_eq!(by_trace.as_ref(), Some(&want));

    // The same rows again through a session that quotes 64-bit integers in
    // JSON: the payloads must not change.
    db.backend
        .client()
        .query_raw(
            "INSERT INTO steps SELECT * FROM steps \
             SETTINGS output_format_json_quote_64bit_integers = 1",
        )
        .execute()
        .await
        .unwrap();
    let (unquoted, quoted): (u64, u64) = db
        .backend
        .client()
        .query_raw(
            "SELECT countIf(row LIKE '%, 1234, %'), countIf(row LIKE '%\"1234\"%') \
             FROM trace_rows",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((unquoted, quoted), (2, 0), "token counts stay unquoted");
    let again = detail("exec-detail").await.unwrap();
    assert_eq!(again.as_ref(), Some(&want));

    // As if the rows predated schema 5: no trace_rows, migration 5 pending.
    let client = db.backend.client();
    client
        .query_raw("TRUNCATE TABLE trace_rows")
        .execute()
        .await
        .unwrap();
    assert_eq!(
        detail("exec-detail").await.unwrap(),
        None,
        "the detail reads trace_rows only"
    );
    client
        .query_raw("ALTER TABLE schema_migrations DELETE WHERE version = 5")
        .with_setting("mutations_sync", "1")
        .execute()
        .await
        .unwrap();
    assert_eq!(db.backend.migrate().await.unwrap(), [5]);
    let backfilled = detail("exec-detail").await.unwrap();
    assert_eq!(backfilled.as_ref(), Some(&want));
}
