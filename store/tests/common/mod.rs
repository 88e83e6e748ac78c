//! Backend checks shared by the Postgres and ClickHouse integration tests:
//! what the conformance suite does not cover (server-specific round trips,
//! late steps, idempotent retries, version ties).

#![allow(dead_code, unreachable_pub)]

use xray_model::{
    CandidateDecision, Decision, Execution, MappedBatch, Metadata, Rejections, Status, Step,
    StepType,
};
use xray_store::{Backend, ExecutionFilter, PageRequest, Scope, TimeWindow};

pub const T0: i64 = 1_763_000_000_000_000_000;

pub fn execution(app: &str, id: &str, trace: &str, pipeline: &str, start: i64) -> Execution {
    Execution {
        app: app.into(),
        execution_id: id.into(),
        trace_id: trace.into(),
        span_id: format!("{:0>16}", &id[..id.len().min(16)]),
        pipeline: pipeline.into(),
        environment: "prod".into(),
        service: "search-svc".into(),
        status: Status::Completed,
        start_time_ns: start,
        end_time_ns: Some(start + 1_000_000),
        input: Some(r#"{"query":"red shoes"}"#.into()),
        output: Some(r#"{"pick":"B0-1"}"#.into()),
        error: None,
        tags: vec!["beta".into(), "eu-west".into()],
        metadata: Metadata::from([("customer".to_string(), "acme".to_string())]),
        step_count: 0,
        ingest_time_ns: start + 5,
        version: 1,
    }
}

pub fn step(e: &Execution, span: &str, name: &str, offset: i64) -> Step {
    Step {
        app: e.app.clone(),
        execution_id: String::new(),
        trace_id: e.trace_id.clone(),
        span_id: span.into(),
        parent_span_id: e.span_id.clone(),
        name: name.into(),
        step_type: StepType::Filter,
        status: Status::Completed,
        service: e.service.clone(),
        start_time_ns: e.start_time_ns + offset,
        end_time_ns: Some(e.start_time_ns + offset + 100),
        input: Some("[1,2,3]".into()),
        output: Some("[1]".into()),
        reasoning: Some("price above limit".into()),
        metadata: Metadata::from([("k".to_string(), "v".to_string())]),
        candidates_in: Some(100),
        candidates_out: Some(25),
        rejections: Rejections::from([("price".to_string(), 75)]),
        candidates: vec![CandidateDecision {
            id: "B0-1".into(),
            decision: Decision::Rejected,
            reason: Some("rating".into()),
            score: Some(0.25),
        }],
        model: Some("gpt-x".into()),
        provider: Some("openai".into()),
        input_tokens: Some(10),
        output_tokens: Some(20),
        cost: Some(0.5),
        confidence: Some(0.9),
        error: None,
        version: 1,
    }
}

fn all() -> Scope {
    Scope::All
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

/// Every field survives a write and a read, including input that is not
/// JSON and unusual text.
pub async fn round_trip(b: &dyn Backend) {
    let mut e = execution(
        "app1",
        "exec-1",
        "0af7651916cd43dd8448eb211c80319c",
        "search",
        T0,
    );
    e.input = Some("not json: {\"half\": ".into());
    e.output = Some("  { \"spaced\" :  1 }  ".into());
    e.error = Some("boom 'quoted' \"double\" \\ back ? question".into());
    e.metadata.insert("emoji".into(), "✓ ünïcödé".into());
    let mut s = step(&e, "b7ad6b7169203331", "filter_price", 10);
    s.input = Some("plain text input".into());
    s.rejections.insert("out_of_stock".into(), 3);
    let s2 = Step {
        span_id: "c7ad6b7169203332".into(),
        parent_span_id: s.span_id.clone(),
        name: "rank".into(),
        step_type: StepType::Rank,
        candidates_in: None,
        candidates_out: None,
        rejections: Rejections::new(),
        candidates: vec![],
        model: None,
        provider: None,
        input: None,
        output: None,
        reasoning: None,
        cost: None,
        confidence: None,
        input_tokens: None,
        output_tokens: None,
        end_time_ns: None,
        status: Status::Running,
        metadata: Metadata::new(),
        ..step(&e, "x", "x", 20)
    };
    b.write(&MappedBatch {
        executions: vec![e.clone()],
        steps: vec![s.clone(), s2.clone()],
    })
    .await
    .unwrap();
    let d = b
        .get_execution(&all(), "exec-1")
        .await
        .unwrap()
        .expect("found by execution id");
    assert_eq!(d.execution, e);
    assert_eq!(d.steps, vec![s.clone(), s2.clone()]);
    let by_trace = b
        .get_execution(&Scope::App("app1".into()), &e.trace_id)
        .await
        .unwrap()
        .expect("found by trace id");
    assert_eq!(by_trace.execution.execution_id, "exec-1");
    assert!(
        b.get_execution(&Scope::App("other".into()), "exec-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(b.get_execution(&all(), "missing").await.unwrap().is_none());
}

/// Steps that arrive before their execution attach to it, in the detail and
/// in the pipeline funnel.
pub async fn late_execution(b: &dyn Backend) {
    let e = execution(
        "app1",
        "late",
        "1af7651916cd43dd8448eb211c80319c",
        "checkout",
        T0,
    );
    let s1 = step(&e, "a000000000000001", "fetch", 10);
    let s2 = Step {
        parent_span_id: s1.span_id.clone(),
        ..step(&e, "a000000000000002", "score", 20)
    };
    b.write(&MappedBatch {
        executions: vec![],
        steps: vec![s2.clone()],
    })
    .await
    .unwrap();
    b.write(&MappedBatch {
        executions: vec![],
        steps: vec![s1.clone()],
    })
    .await
    .unwrap();
    assert!(b.get_execution(&all(), "late").await.unwrap().is_none());
    b.write(&MappedBatch {
        executions: vec![e.clone()],
        steps: vec![],
    })
    .await
    .unwrap();
    let d = b.get_execution(&all(), "late").await.unwrap().unwrap();
    assert_eq!(
        d.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["fetch", "score"]
    );
    let list = b
        .list_executions(&all(), &ExecutionFilter::default(), &page(10))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].step_count, 2);
    let funnel = b
        .pipeline_funnel(
            &all(),
            "checkout",
            TimeWindow {
                from_ns: T0 - 1,
                to_ns: T0 + 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        funnel.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["fetch", "score"]
    );
    assert_eq!(funnel[0].executions, 1);
}

/// A retried batch never duplicates; the newest version wins whichever order
/// versions arrive in; on equal versions the later write wins.
pub async fn idempotent_versions(b: &dyn Backend) {
    let mut e = execution(
        "app1",
        "v",
        "2af7651916cd43dd8448eb211c80319c",
        "search",
        T0,
    );
    e.status = Status::Running;
    e.end_time_ns = None;
    e.version = 1;
    let mut done = e.clone();
    done.status = Status::Completed;
    done.end_time_ns = Some(T0 + 10);
    done.version = 2;
    let s = step(&e, "b000000000000001", "filter", 5);
    let batch = MappedBatch {
        executions: vec![done.clone()],
        steps: vec![s.clone()],
    };
    b.write(&batch).await.unwrap();
    b.write(&batch).await.unwrap();
    // An older version arriving late does not win.
    b.write(&MappedBatch {
        executions: vec![e.clone()],
        steps: vec![],
    })
    .await
    .unwrap();
    let list = b
        .list_executions(&all(), &ExecutionFilter::default(), &page(10))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].execution, done);
    assert_eq!(list.items[0].step_count, 1);
    let running = ExecutionFilter {
        status: Some(Status::Running),
        ..Default::default()
    };
    assert!(
        b.list_executions(&all(), &running, &page(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Equal version: the later write wins.
    let mut again = done.clone();
    again.error = Some("second write".into());
    b.write(&MappedBatch {
        executions: vec![again.clone()],
        steps: vec![],
    })
    .await
    .unwrap();
    let d = b.get_execution(&all(), "v").await.unwrap().unwrap();
    assert_eq!(d.execution, again);
    assert_eq!(d.steps.len(), 1);
    // Duplicates inside one batch: the last of the newest version wins.
    let mut s_new = s.clone();
    s_new.version = 3;
    s_new.name = "filter_v3".into();
    let mut s_tie = s_new.clone();
    s_tie.name = "filter_v3_later".into();
    b.write(&MappedBatch {
        executions: vec![],
        steps: vec![s_new, s.clone(), s_tie],
    })
    .await
    .unwrap();
    let d = b.get_execution(&all(), "v").await.unwrap().unwrap();
    assert_eq!(
        d.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["filter_v3_later"]
    );
}

/// Filters, cursor pagination and scoping of the execution list.
pub async fn list_and_paginate(b: &dyn Backend) {
    let mut batch = MappedBatch::default();
    for i in 0..7 {
        let app = if i % 2 == 0 { "a" } else { "b" };
        let mut e = execution(
            app,
            &format!("e{i}"),
            &format!("{i:032x}"),
            "p",
            T0 + (i / 2) * 1000,
        );
        if i == 3 {
            e.status = Status::Failed;
            e.tags = vec!["needle-tag".into()];
        }
        batch.executions.push(e);
    }
    b.write(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut req = page(3);
    loop {
        let p = b
            .list_executions(&all(), &ExecutionFilter::default(), &req)
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|i| i.execution.execution_id.clone()));
        match p.next {
            Some(c) => req.after = Some(c),
            None => break,
        }
    }
    // (start DESC, app DESC, id DESC): e6 alone at T0+3000, then e5(b) e4(a), ...
    assert_eq!(seen, ["e6", "e5", "e4", "e3", "e2", "e1", "e0"]);
    let only_a = b
        .list_executions(
            &Scope::App("a".into()),
            &ExecutionFilter::default(),
            &page(10),
        )
        .await
        .unwrap();
    assert_eq!(only_a.items.len(), 4);
    let q = ExecutionFilter {
        q: Some("needle".into()),
        ..Default::default()
    };
    let hits = b.list_executions(&all(), &q, &page(10)).await.unwrap();
    assert_eq!(hits.items.len(), 1);
    assert_eq!(hits.items[0].execution.execution_id, "e3");
    let failed = ExecutionFilter {
        status: Some(Status::Failed),
        from_ns: Some(T0),
        to_ns: Some(T0 + 1001),
        ..Default::default()
    };
    assert_eq!(
        b.list_executions(&all(), &failed, &page(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let summaries = b
        .pipelines(
            &all(),
            TimeWindow {
                from_ns: T0,
                to_ns: T0 + 10_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!((summaries[0].executions, summaries[0].failed), (7, 1));
    assert_eq!(summaries[0].p50_duration_ns, Some(1_000_000));
    assert_eq!(summaries[0].last_seen_ns, T0 + 3000);
}
