//! The conformance suite every backend runs.
//!
//! Each check is a public async function taking a fresh
//! [`crate::testing::TestBackend`]; [`conformance_suite!`](crate::conformance_suite)
//! turns them into one `#[tokio::test]` each for a given backend constructor:
//!
//! ```ignore
//! xray_store::conformance_suite!(xray_store::testing::sqlite);
//! ```
//!
//! The checks panic with the backend's name on failure.

mod arrival;

pub use arrival::pipeline_funnel_whatever_the_arrival;
use xray_model::{ApiKey, App, CandidateDecision, Decision, MappedBatch, Status, StepType};

use crate::testing::{TestBackend, execution, step, trace_id_for};
use crate::{Cursor, ExecutionFilter, PageRequest, Scope, StoreError, TimeWindow};

/// Generates one `#[tokio::test]` per conformance check for the backend
/// returned by `$make().await` (a [`TestBackend`](crate::testing::TestBackend)).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@each $make;
            write_then_read_back, idempotent_reinsert, newest_version_wins, steps_before_execution,
            lookup_by_trace_id, list_filters, cursor_pagination_is_stable, scope_isolation,
            pipelines_summary, pipeline_funnel_figures, pipeline_funnel_corner_cases,
            pipeline_funnel_whatever_the_arrival, several_executions_in_one_trace, apps_and_keys, scope_isolation_in_every_read,
            steps_by_span_id);
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $make().await;
                $crate::conformance::$check(backend).await;
            }
        )*
    };
}

const APP: &str = "default";
const T0: i64 = 1_700_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn scope() -> Scope {
    Scope::App(APP.into())
}

/// The first ten executions of the default filter.
async fn first_page(t: &TestBackend) -> crate::ExecutionPage {
    t.backend
        .list_executions(&scope(), &ExecutionFilter::default(), &page(10))
        .await
        .unwrap()
}

/// The detail of execution `id`, which must exist.
async fn detail(t: &TestBackend, id: &str) -> crate::ExecutionDetail {
    t.backend
        .get_execution(&scope(), id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("[{}] execution {id} not found", t.name))
}

/// The pipelines summary of the millisecond either side of `T0`.
async fn pipelines_around_t0(t: &TestBackend) -> Vec<crate::PipelineSummary> {
    t.backend
        .pipelines(
            &scope(),
            TimeWindow {
                from_ns: T0 - MS,
                to_ns: T0 + MS,
            },
        )
        .await
        .unwrap()
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

async fn write(t: &TestBackend, batch: MappedBatch) {
    t.backend
        .write(&batch)
        .await
        .unwrap_or_else(|e| panic!("[{}] write failed: {e}", t.name));
}

/// A batch with one execution and three steps (one nested) is read back
/// exactly, steps ordered by start time.
pub async fn write_then_read_back(t: TestBackend) {
    let mut e = execution(APP, "exec-1", "competitor-selection", T0, 900 * MS);
    e.metadata.insert("customer".into(), "acme".into());
    e.tags = vec!["a".into(), "b".into()];
    let mut s1 = step(&e, "generate_keywords", StepType::Llm, 10 * MS, 100 * MS);
    s1.model = Some("gpt-4o".into());
    s1.provider = Some("openai".into());
    s1.input_tokens = Some(152);
    s1.output_tokens = Some(40);
    s1.input = Some(r#"{"prompt":"find rivals"}"#.into());
    s1.output = Some("not json at all".into());
    s1.reasoning = Some("because".into());
    s1.cost = Some(0.0125);
    let mut s2 = step(&e, "filter_price", StepType::Filter, 200 * MS, 50 * MS);
    s2.candidates_in = Some(5000);
    s2.candidates_out = Some(100);
    s2.rejections.insert("price_above_limit".into(), 4100);
    s2.rejections.insert("low_rating".into(), 800);
    s2.candidates = vec![CandidateDecision {
        id: "B01".into(),
        decision: Decision::Rejected,
        reason: Some("low_rating".into()),
        score: Some(0.2),
    }];
    s2.metadata.insert("limit".into(), "100".into());
    let mut s3 = step(&e, "price_lookup", StepType::Tool, 210 * MS, 5 * MS);
    s3.parent_span_id = s2.span_id.clone();
    s3.status = Status::Failed;
    s3.error = Some("timeout".into());
    write(
        &t,
        MappedBatch {
            executions: vec![e.clone()],
            steps: vec![s3.clone(), s1.clone(), s2.clone()],
        },
    )
    .await;

    let d = t
        .backend
        .get_execution(&scope(), "exec-1")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("[{}] not found", t.name));
    assert_eq!(d.execution, e, "[{}] execution round trip", t.name);
    assert_eq!(
        d.steps,
        vec![s1, s2, s3],
        "[{}] steps round trip, ordered by start",
        t.name
    );
    assert!(
        t.backend
            .get_execution(&scope(), "nope")
            .await
            .unwrap()
            .is_none()
    );
    let list = first_page(&t).await;
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].step_count, 3, "[{}] step count", t.name);
    assert!(list.next.is_none());
}

/// Writing the same rows twice yields one execution and one copy of each step.
pub async fn idempotent_reinsert(t: TestBackend) {
    let e = execution(APP, "exec-dup", "p", T0, 10 * MS);
    let s = step(&e, "only", StepType::Logic, 0, MS);
    let batch = MappedBatch {
        executions: vec![e.clone()],
        steps: vec![s.clone()],
    };
    write(&t, batch.clone()).await;
    write(&t, batch.clone()).await;
    write(
        &t,
        MappedBatch {
            executions: vec![e.clone(), e.clone()],
            steps: vec![s.clone(), s],
        },
    )
    .await;
    let list = first_page(&t).await;
    assert_eq!(list.items.len(), 1, "[{}] duplicate executions", t.name);
    let d = detail(&t, "exec-dup").await;
    assert_eq!(d.steps.len(), 1, "[{}] duplicate steps", t.name);
    let pipes = pipelines_around_t0(&t).await;
    assert_eq!(
        pipes[0].executions, 1,
        "[{}] duplicates counted in pipelines",
        t.name
    );
}

/// The highest version wins, whatever the order of the writes.
pub async fn newest_version_wins(t: TestBackend) {
    let mut running = execution(APP, "exec-v", "p", T0, 0);
    running.status = Status::Running;
    running.end_time_ns = None;
    running.version = 1;
    let mut done = execution(APP, "exec-v", "p", T0, 30 * MS);
    done.version = 2;
    let mut s_old = step(&done, "s", StepType::Rank, 0, MS);
    s_old.version = 1;
    s_old.candidates_out = Some(1);
    let mut s_new = s_old.clone();
    s_new.version = 5;
    s_new.candidates_out = Some(10);
    write(
        &t,
        MappedBatch {
            executions: vec![done.clone()],
            steps: vec![s_new.clone()],
        },
    )
    .await;
    write(
        &t,
        MappedBatch {
            executions: vec![running],
            steps: vec![s_old],
        },
    )
    .await;
    let d = detail(&t, "exec-v").await;
    assert_eq!(
        d.execution.status,
        Status::Completed,
        "[{}] older version overwrote newer",
        t.name
    );
    assert_eq!(d.execution.version, 2);
    assert_eq!(
        d.steps[0].candidates_out,
        Some(10),
        "[{}] older step overwrote newer",
        t.name
    );
    let pipes = pipelines_around_t0(&t).await;
    assert_eq!(
        (pipes[0].executions, pipes[0].p50_duration_ns),
        (1, Some(30 * MS)),
        "[{}] pipelines summary of the newest version",
        t.name
    );
    // Versions of one step count once; a step row carrying the
    // execution's own span id is not one of its steps.
    let mut own_span = step(&d.execution, "own", StepType::Logic, 0, MS);
    own_span.span_id = d.execution.span_id.clone();
    write(
        &t,
        MappedBatch {
            executions: vec![],
            steps: vec![own_span],
        },
    )
    .await;
    let list = first_page(&t).await;
    assert_eq!(list.items.len(), 1, "[{}] one execution", t.name);
    assert_eq!(
        list.items[0].step_count, 1,
        "[{}] step count with versions and the execution's own span",
        t.name
    );
    let d = detail(&t, "exec-v").await;
    assert_eq!(d.steps.len(), 1, "[{}] detail steps", t.name);
}

/// Steps written before their execution attach to it once it arrives.
pub async fn steps_before_execution(t: TestBackend) {
    let e = execution(APP, "exec-late", "p", T0, 10 * MS);
    let mut s = step(&e, "early", StepType::Retrieval, MS, MS);
    s.execution_id = e.trace_id.clone(); // the collector did not know the id yet
    write(
        &t,
        MappedBatch {
            executions: vec![],
            steps: vec![s.clone()],
        },
    )
    .await;
    assert!(
        t.backend
            .get_execution(&scope(), "exec-late")
            .await
            .unwrap()
            .is_none()
    );
    write(
        &t,
        MappedBatch {
            executions: vec![e],
            steps: vec![],
        },
    )
    .await;
    let d = detail(&t, "exec-late").await;
    assert_eq!(d.steps, vec![s], "[{}] early step not attached", t.name);
}

/// An execution is found by its 32-hex trace id too, in any case.
pub async fn lookup_by_trace_id(t: TestBackend) {
    let e = execution(APP, "custom-id-42", "p", T0, MS);
    write(
        &t,
        MappedBatch {
            executions: vec![e.clone()],
            steps: vec![],
        },
    )
    .await;
    let by_trace = t
        .backend
        .get_execution(&scope(), &e.trace_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_trace.execution.execution_id, "custom-id-42");
    let upper = t
        .backend
        .get_execution(&scope(), &e.trace_id.to_ascii_uppercase())
        .await
        .unwrap();
    assert!(upper.is_some(), "[{}] upper-case trace id", t.name);
}

/// Every filter of the execution list.
pub async fn list_filters(t: TestBackend) {
    let mut rows = Vec::new();
    for i in 0..6i64 {
        let mut e = execution(
            APP,
            &format!("exec-{i}"),
            if i % 2 == 0 { "even" } else { "odd" },
            T0 + i * 1000 * MS,
            (i + 1) * 100 * MS,
        );
        e.environment = if i < 3 {
            "prod".into()
        } else {
            "staging".into()
        };
        e.service = if i == 5 { "other".into() } else { "svc".into() };
        if i == 4 {
            e.status = Status::Failed;
        }
        e.tags = vec![format!("tag-{i}")];
        rows.push(e);
    }
    write(
        &t,
        MappedBatch {
            executions: rows,
            steps: vec![],
        },
    )
    .await;
    let ids = |f: ExecutionFilter| {
        let b = &t.backend;
        async move {
            b.list_executions(&scope(), &f, &page(100))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.execution.execution_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(ExecutionFilter::default()).await,
        ["exec-5", "exec-4", "exec-3", "exec-2", "exec-1", "exec-0"],
        "[{}] newest first",
        t.name
    );
    assert_eq!(
        ids(ExecutionFilter {
            pipeline: Some("odd".into()),
            ..Default::default()
        })
        .await,
        ["exec-5", "exec-3", "exec-1"]
    );
    assert_eq!(
        ids(ExecutionFilter {
            status: Some(Status::Failed),
            ..Default::default()
        })
        .await,
        ["exec-4"]
    );
    assert_eq!(
        ids(ExecutionFilter {
            environment: Some("prod".into()),
            ..Default::default()
        })
        .await,
        ["exec-2", "exec-1", "exec-0"]
    );
    assert_eq!(
        ids(ExecutionFilter {
            service: Some("other".into()),
            ..Default::default()
        })
        .await,
        ["exec-5"]
    );
    assert_eq!(
        ids(ExecutionFilter {
            from_ns: Some(T0 + 1000 * MS),
            to_ns: Some(T0 + 3000 * MS),
            ..Default::default()
        })
        .await,
        ["exec-2", "exec-1"],
        "[{}] from inclusive, to exclusive",
        t.name
    );
    assert_eq!(
        ids(ExecutionFilter {
            q: Some("tag-3".into()),
            ..Default::default()
        })
        .await,
        ["exec-3"],
        "[{}] q on tags",
        t.name
    );
    assert_eq!(
        ids(ExecutionFilter {
            q: Some("exec-2".into()),
            ..Default::default()
        })
        .await,
        ["exec-2"],
        "[{}] q on id",
        t.name
    );
    let trace_part = trace_id_for("exec-1")[4..20].to_string();
    assert_eq!(
        ids(ExecutionFilter {
            q: Some(trace_part),
            ..Default::default()
        })
        .await,
        ["exec-1"],
        "[{}] q on trace id",
        t.name
    );
    assert_eq!(
        ids(ExecutionFilter {
            min_duration_ns: Some(500 * MS),
            ..Default::default()
        })
        .await,
        ["exec-5", "exec-4"]
    );
    assert_eq!(
        ids(ExecutionFilter {
            pipeline: Some("even".into()),
            environment: Some("prod".into()),
            ..Default::default()
        })
        .await,
        ["exec-2", "exec-0"]
    );
}

/// Cursor pages cover every row once, in order, even when newer rows arrive
/// between pages; rows with equal start times are ordered by id.
pub async fn cursor_pagination_is_stable(t: TestBackend) {
    let mut rows = Vec::new();
    for i in 0..25i64 {
        // pairs share a start time to exercise the tie-break
        rows.push(execution(
            APP,
            &format!("e{i:02}"),
            "p",
            T0 + (i / 2) * MS,
            MS,
        ));
    }
    write(
        &t,
        MappedBatch {
            executions: rows,
            steps: vec![],
        },
    )
    .await;
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let p = t
            .backend
            .list_executions(
                &scope(),
                &ExecutionFilter::default(),
                &PageRequest {
                    limit: 7,
                    after: after.clone(),
                },
            )
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|s| s.execution.execution_id.clone()));
        pages += 1;
        if pages == 2 {
            // a newer execution arrives mid-way: it must not shift the pages
            write(
                &t,
                MappedBatch {
                    executions: vec![execution(APP, "late", "p", T0 + 100 * MS, MS)],
                    steps: vec![],
                },
            )
            .await;
        }
        match p.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..25).map(|i| format!("e{i:02}")).collect();
    expected.sort_by(|a, b| {
        let ka = a[1..].parse::<i64>().unwrap() / 2;
        let kb = b[1..].parse::<i64>().unwrap() / 2;
        kb.cmp(&ka).then(b.cmp(a))
    });
    assert_eq!(seen, expected, "[{}] pages", t.name);
    assert_eq!(pages, 4);
    let err = t
        .backend
        .list_executions(&scope(), &ExecutionFilter::default(), &page(0))
        .await;
    assert!(
        matches!(err, Err(StoreError::InvalidArgument(_))),
        "[{}] limit 0 must be rejected",
        t.name
    );
}

/// A scope sees only its app's rows; another app's id looks unknown.
pub async fn scope_isolation(t: TestBackend) {
    let a = execution("app-a", "shared-id", "p", T0, MS);
    let b = execution("app-b", "b-only", "p", T0 + MS, MS);
    let mut b_same_id = execution("app-b", "shared-id", "q", T0 + 2 * MS, MS);
    b_same_id.trace_id = trace_id_for("b-shared");
    let sa = step(&a, "sa", StepType::Llm, 0, MS);
    let sb = step(&b, "sb", StepType::Llm, 0, MS);
    write(
        &t,
        MappedBatch {
            executions: vec![a.clone(), b.clone(), b_same_id],
            steps: vec![sa, sb],
        },
    )
    .await;
    let sa_scope = Scope::App("app-a".into());
    let list = t
        .backend
        .list_executions(&sa_scope, &ExecutionFilter::default(), &page(10))
        .await
        .unwrap();
    assert_eq!(
        list.items
            .iter()
            .map(|s| s.execution.app.as_str())
            .collect::<Vec<_>>(),
        ["app-a"],
        "[{}] list leaks",
        t.name
    );
    assert!(
        t.backend
            .get_execution(&sa_scope, "b-only")
            .await
            .unwrap()
            .is_none(),
        "[{}] get leaks",
        t.name
    );
    assert!(
        t.backend
            .get_execution(&sa_scope, &b.trace_id)
            .await
            .unwrap()
            .is_none(),
        "[{}] trace lookup leaks",
        t.name
    );
    let d = t
        .backend
        .get_execution(&sa_scope, "shared-id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.execution.pipeline, "p");
    assert_eq!(d.steps.len(), 1);
    let w = TimeWindow {
        from_ns: T0 - MS,
        to_ns: T0 + 10 * MS,
    };
    let pipes = t.backend.pipelines(&sa_scope, w).await.unwrap();
    assert_eq!(pipes.len(), 1, "[{}] pipelines leak", t.name);
    assert_eq!(pipes[0].executions, 1);
    let f = t.backend.pipeline_funnel(&sa_scope, "p", w).await.unwrap();
    assert_eq!(
        f.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["sa"],
        "[{}] funnel leaks",
        t.name
    );
    let all = t
        .backend
        .list_executions(&Scope::All, &ExecutionFilter::default(), &page(10))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3, "[{}] admin scope sees all", t.name);
}

/// Pipeline summaries: counts, failures, nearest-rank percentiles, last seen,
/// window bounds.
pub async fn pipelines_summary(t: TestBackend) {
    let mut rows = Vec::new();
    for i in 1..=20i64 {
        let mut e = execution(APP, &format!("a{i}"), "alpha", T0 + i * MS, i * 10 * MS);
        if i % 5 == 0 {
            e.status = Status::Failed;
        }
        rows.push(e);
    }
    let mut running = execution(APP, "a-running", "alpha", T0 + 30 * MS, 0);
    running.status = Status::Running;
    running.end_time_ns = None;
    rows.push(running);
    rows.push(execution(APP, "b1", "beta", T0 + 2 * MS, 7 * MS));
    rows.push(execution(APP, "outside", "beta", T0 + 1000 * MS, MS));
    write(
        &t,
        MappedBatch {
            executions: rows,
            steps: vec![],
        },
    )
    .await;
    let p = t
        .backend
        .pipelines(
            &scope(),
            TimeWindow {
                from_ns: T0,
                to_ns: T0 + 1000 * MS,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.len(), 2, "[{}]", t.name);
    let alpha = &p[0];
    assert_eq!(alpha.pipeline, "alpha");
    assert_eq!(
        (alpha.executions, alpha.failed),
        (21, 4),
        "[{}] counts",
        t.name
    );
    assert_eq!(alpha.p50_duration_ns, Some(100 * MS), "[{}] p50", t.name);
    assert_eq!(alpha.p95_duration_ns, Some(190 * MS), "[{}] p95", t.name);
    assert_eq!(alpha.p99_duration_ns, Some(200 * MS), "[{}] p99", t.name);
    assert_eq!(alpha.last_seen_ns, T0 + 30 * MS);
    assert_eq!(
        (
            p[1].pipeline.as_str(),
            p[1].executions,
            p[1].p50_duration_ns
        ),
        ("beta", 1, Some(7 * MS))
    );
}

/// The pipeline funnel figures, on a hand-computed fixture.
pub async fn pipeline_funnel_figures(t: TestBackend) {
    let mut execs = Vec::new();
    let mut steps = Vec::new();
    // e0: search out 1000; filter 1000 -> 100 (price 900); rank 100 -> 10
    // e1: search out 500; filter 500 -> 0 (price 400, stock 100), failed; rank without counts
    // e2: search only, with in = 0
    for (i, spec) in [
        vec![
            (
                "search",
                StepType::Retrieval,
                None,
                Some(1000),
                vec![],
                Status::Completed,
            ),
            (
                "filter",
                StepType::Filter,
                Some(1000),
                Some(100),
                vec![("price", 900)],
                Status::Completed,
            ),
            (
                "rank",
                StepType::Rank,
                Some(100),
                Some(10),
                vec![],
                Status::Completed,
            ),
        ],
        vec![
            (
                "search",
                StepType::Retrieval,
                None,
                Some(500),
                vec![],
                Status::Completed,
            ),
            (
                "filter",
                StepType::Filter,
                Some(500),
                Some(0),
                vec![("price", 400), ("stock", 100)],
                Status::Failed,
            ),
            (
                "rank",
                StepType::Rank,
                None,
                None,
                vec![],
                Status::Completed,
            ),
        ],
        vec![(
            "search",
            StepType::Retrieval,
            Some(0),
            Some(0),
            vec![],
            Status::Completed,
        )],
    ]
    .into_iter()
    .enumerate()
    {
        let e = execution(
            APP,
            &format!("f{i}"),
            "funnel",
            T0 + i as i64 * MS,
            100 * MS,
        );
        for (k, (name, ty, cin, cout, rej, status)) in spec.into_iter().enumerate() {
            let mut s = step(&e, name, ty, k as i64 * 10 * MS, (k as i64 + 1) * MS);
            s.candidates_in = cin;
            s.candidates_out = cout;
            s.status = status;
            s.rejections = rej.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
            if name == "filter" && i == 0 {
                s.candidates = vec![
                    CandidateDecision {
                        id: "x".into(),
                        decision: Decision::Rejected,
                        reason: Some("price".into()),
                        score: None,
                    },
                    CandidateDecision {
                        id: "y".into(),
                        decision: Decision::Rejected,
                        reason: Some("brand".into()),
                        score: None,
                    },
                ];
            }
            steps.push(s);
        }
        execs.push(e);
    }
    write(
        &t,
        MappedBatch {
            executions: execs,
            steps,
        },
    )
    .await;
    let f = t
        .backend
        .pipeline_funnel(
            &scope(),
            "funnel",
            TimeWindow {
                from_ns: T0,
                to_ns: T0 + 10 * MS,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["search", "filter", "rank"],
        "[{}] order",
        t.name
    );
    let (search, filter, rank) = (&f[0], &f[1], &f[2]);
    assert_eq!(
        (search.executions, search.runs, search.runs_with_counts),
        (3, 3, 1),
        "[{}] search",
        t.name
    );
    assert_eq!(
        search.mean_drop_rate, None,
        "[{}] in = 0 has no drop rate",
        t.name
    );
    assert_eq!(search.step_type, StepType::Retrieval);
    assert_eq!(
        (filter.total_in, filter.total_out, filter.failed),
        (1500, 100, 1),
        "[{}] filter",
        t.name
    );
    assert_eq!(
        filter.mean_drop_rate,
        Some((0.9 + 1.0) / 2.0),
        "[{}] filter drop",
        t.name
    );
    assert_eq!(
        filter.top_rejections,
        vec![
            ("price".to_string(), 1300),
            ("stock".to_string(), 100),
            ("brand".to_string(), 1)
        ],
        "[{}] rejections merged",
        t.name
    );
    assert_eq!(filter.p50_duration_ns, Some(2 * MS));
    assert_eq!(
        (
            rank.runs,
            rank.runs_with_counts,
            rank.total_in,
            rank.total_out
        ),
        (2, 1, 100, 10),
        "[{}] rank",
        t.name
    );
    assert_eq!(rank.mean_drop_rate, Some(0.9));
    assert_eq!(rank.mean_offset_ns, (20 * MS) as f64);
    let none = t
        .backend
        .pipeline_funnel(
            &scope(),
            "unknown",
            TimeWindow {
                from_ns: T0,
                to_ns: T0 + 10 * MS,
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Pipeline funnel corner cases: a step name run twice in one execution,
/// nested steps, a running step, `in = 0`, rejection reasons that need
/// quoting, sampled decisions merged with the histogram (reasons already in
/// it skipped, a missing reason counted as `unspecified`), and a trace that
/// holds two executions of different pipelines.
pub async fn pipeline_funnel_corner_cases(t: TestBackend) {
    let cand = |reason: Option<&str>, decision: Decision| CandidateDecision {
        id: "c".into(),
        decision,
        reason: reason.map(String::from),
        score: None,
    };
    let c0 = execution(APP, "c0", "corner", T0, 100 * MS);
    let c1 = execution(APP, "c1", "corner", T0 + MS, 100 * MS);
    let c2 = execution(APP, "c2", "corner", T0 + 2 * MS, 100 * MS);
    let mut inner = execution(APP, "c2-inner", "other", T0 + 12 * MS, 20 * MS);
    inner.trace_id = c2.trace_id.clone();
    let mut steps = Vec::new();
    // c0: "fetch" twice (the second failed), a "group" with a nested
    // "judge", and a "wait" still running.
    let mut f1 = step(&c0, "fetch", StepType::Retrieval, MS, 2 * MS);
    f1.candidates_out = Some(50);
    let mut f2 = step(&c0, "fetch", StepType::Retrieval, 5 * MS, 4 * MS);
    f2.span_id = crate::testing::span_id_for("c0", "fetch-retry");
    f2.candidates_out = Some(40);
    f2.status = Status::Failed;
    let mut group = step(&c0, "group", StepType::Logic, 10 * MS, 20 * MS);
    group.candidates_in = Some(40);
    group.candidates_out = Some(4);
    let mut judge = step(&c0, "judge", StepType::Filter, 11 * MS, 3 * MS);
    judge.parent_span_id = group.span_id.clone();
    judge.candidates_in = Some(40);
    judge.candidates_out = Some(4);
    judge.rejections = [("a.b \"q\"".to_string(), 30), ("price".to_string(), 5)]
        .into_iter()
        .collect();
    judge.candidates = vec![
        cand(Some("price"), Decision::Rejected),
        cand(None, Decision::Rejected),
        cand(Some("x"), Decision::Rejected),
        cand(Some("x"), Decision::Rejected),
        cand(Some("y"), Decision::Accepted),
    ];
    let mut wait = step(&c0, "wait", StepType::Tool, 50 * MS, 0);
    wait.end_time_ns = None;
    wait.status = Status::Running;
    wait.candidates_in = Some(10);
    steps.extend([f1, f2, group, judge, wait]);
    // c1: "judge" with in = 0.
    let mut judge = step(&c1, "judge", StepType::Filter, 11 * MS, 5 * MS);
    judge.candidates_in = Some(0);
    judge.candidates_out = Some(0);
    steps.push(judge);
    // c2 and its nested execution c2-inner in one trace.
    let mut f = step(&c2, "fetch", StepType::Retrieval, MS, 6 * MS);
    f.candidates_out = Some(30);
    let mut inner_span = step(&c2, "inner-span", StepType::Logic, 10 * MS, 20 * MS);
    inner_span.span_id = inner.span_id.clone();
    let mut ij = step(&c2, "judge", StepType::Filter, 11 * MS, MS);
    ij.span_id = crate::testing::span_id_for("c2-inner", "judge");
    ij.parent_span_id = inner.span_id.clone();
    ij.candidates_in = Some(100);
    ij.candidates_out = Some(50);
    let mut deep = step(&c2, "deep", StepType::Llm, 12 * MS, MS);
    deep.parent_span_id = ij.span_id.clone();
    steps.extend([f, inner_span, ij, deep]);
    write(
        &t,
        MappedBatch {
            executions: vec![c0, c1, c2, inner],
            steps,
        },
    )
    .await;
    let window = TimeWindow {
        from_ns: T0,
        to_ns: T0 + 100 * MS,
    };
    let f = t
        .backend
        .pipeline_funnel(&scope(), "corner", window)
        .await
        .unwrap();
    assert_eq!(
        f.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["fetch", "group", "judge", "wait"],
        "[{}] corner steps",
        t.name
    );
    let (fetch, group, judge, wait) = (&f[0], &f[1], &f[2], &f[3]);
    assert_eq!(
        (
            fetch.executions,
            fetch.runs,
            fetch.failed,
            fetch.runs_with_counts
        ),
        (2, 3, 1, 0),
        "[{}] fetch counts",
        t.name
    );
    assert_eq!((fetch.total_in, fetch.total_out), (0, 0), "[{}]", t.name);
    assert_eq!(fetch.mean_drop_rate, None, "[{}] fetch drop", t.name);
    assert_eq!(
        (fetch.p50_duration_ns, fetch.p95_duration_ns),
        (Some(4 * MS), Some(6 * MS)),
        "[{}] fetch durations",
        t.name
    );
    assert!(
        (fetch.mean_offset_ns - (7 * MS) as f64 / 3.0).abs() < 1.0,
        "[{}] fetch offset {}",
        t.name,
        fetch.mean_offset_ns
    );
    assert_eq!(fetch.step_type, StepType::Retrieval);
    assert_eq!(
        (
            group.runs,
            group.total_in,
            group.total_out,
            group.mean_drop_rate
        ),
        (1, 40, 4, Some(0.9)),
        "[{}] group",
        t.name
    );
    assert_eq!(group.step_type, StepType::Logic, "[{}]", t.name);
    assert_eq!(
        (judge.executions, judge.runs, judge.runs_with_counts),
        (2, 2, 2),
        "[{}] judge counts",
        t.name
    );
    assert_eq!(
        (judge.total_in, judge.total_out, judge.mean_drop_rate),
        (40, 4, Some(0.9)),
        "[{}] judge: in = 0 counts as a run with counts, not in the drop rate",
        t.name
    );
    assert_eq!(
        judge.top_rejections,
        vec![
            ("a.b \"q\"".to_string(), 30),
            ("price".to_string(), 5),
            ("x".to_string(), 2),
            ("unspecified".to_string(), 1),
        ],
        "[{}] judge rejections",
        t.name
    );
    assert_eq!(
        (judge.p50_duration_ns, judge.p95_duration_ns),
        (Some(3 * MS), Some(5 * MS)),
        "[{}] judge durations",
        t.name
    );
    assert_eq!(judge.mean_offset_ns, (11 * MS) as f64, "[{}]", t.name);
    assert_eq!(
        (wait.runs, wait.runs_with_counts, wait.p50_duration_ns),
        (1, 0, None),
        "[{}] running step",
        t.name
    );
    assert_eq!(wait.mean_offset_ns, (50 * MS) as f64, "[{}]", t.name);
    let other = t
        .backend
        .pipeline_funnel(&scope(), "other", window)
        .await
        .unwrap();
    assert_eq!(
        other
            .iter()
            .map(|s| (s.name.as_str(), s.runs, s.mean_offset_ns))
            .collect::<Vec<_>>(),
        [("judge", 1, MS as f64), ("deep", 1, (2 * MS) as f64)],
        "[{}] the nested execution's steps, offsets from its own start",
        t.name
    );
    assert_eq!(other[0].mean_drop_rate, Some(0.5), "[{}]", t.name);
}

/// Two executions in one trace: each step belongs to its nearest execution
/// ancestor, and execution spans are never steps.
pub async fn several_executions_in_one_trace(t: TestBackend) {
    let outer = execution(APP, "outer", "outer-p", T0, 100 * MS);
    let mut inner = execution(APP, "inner", "inner-p", T0 + 10 * MS, 20 * MS);
    inner.trace_id = outer.trace_id.clone();
    let a = step(&outer, "a", StepType::Logic, MS, MS);
    let mut inner_as_span = step(&outer, "inner-span", StepType::Logic, 10 * MS, 20 * MS);
    inner_as_span.span_id = inner.span_id.clone();
    let mut b = step(&outer, "b", StepType::Llm, 11 * MS, MS);
    b.parent_span_id = inner.span_id.clone();
    let mut c = step(&outer, "c", StepType::Llm, 12 * MS, MS);
    c.parent_span_id = b.span_id.clone();
    write(
        &t,
        MappedBatch {
            executions: vec![outer, inner],
            steps: vec![a, inner_as_span, b, c],
        },
    )
    .await;
    let names = |d: crate::ExecutionDetail| d.steps.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(
        names(detail(&t, "outer").await),
        ["a"],
        "[{}] outer",
        t.name
    );
    assert_eq!(
        names(detail(&t, "inner").await),
        ["b", "c"],
        "[{}] inner",
        t.name
    );
    // The list counts each execution's own steps, as its detail shows them.
    let listed = first_page(&t).await;
    let counts: Vec<(&str, u64)> = listed
        .items
        .iter()
        .map(|s| (s.execution.execution_id.as_str(), s.step_count))
        .collect();
    assert_eq!(
        counts,
        [("inner", 2), ("outer", 1)],
        "[{}] list step counts",
        t.name
    );
}

/// Apps and API keys: create, list, look up by hash, revoke, conflicts.
pub async fn apps_and_keys(t: TestBackend) {
    let app = App {
        id: "app-1".into(),
        name: "Matcher".into(),
        created_at_ns: T0,
    };
    t.backend.create_app(&app).await.unwrap();
    assert!(
        matches!(
            t.backend.create_app(&app).await,
            Err(StoreError::Conflict(_))
        ),
        "[{}] duplicate app",
        t.name
    );
    t.backend
        .create_app(&App {
            id: "app-2".into(),
            name: "Other".into(),
            created_at_ns: T0 + 1,
        })
        .await
        .unwrap();
    assert_eq!(
        t.backend
            .list_apps()
            .await
            .unwrap()
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["app-1", "app-2"]
    );
    assert_eq!(t.backend.get_app("app-1").await.unwrap(), Some(app));
    assert_eq!(t.backend.get_app("missing").await.unwrap(), None);
    let key = ApiKey {
        id: "key-1".into(),
        app_id: "app-1".into(),
        prefix: "xr_AbCd".into(),
        hash: "f".repeat(64),
        scopes: vec!["ingest".into(), "read".into()],
        created_at_ns: T0,
        revoked_at_ns: None,
    };
    t.backend.create_api_key(&key).await.unwrap();
    assert!(
        matches!(
            t.backend.create_api_key(&key).await,
            Err(StoreError::Conflict(_))
        ),
        "[{}] duplicate key",
        t.name
    );
    assert_eq!(
        t.backend.api_key_by_hash(&key.hash).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(t.backend.api_key_by_hash("0").await.unwrap(), None);
    assert_eq!(
        t.backend.list_api_keys("app-1").await.unwrap(),
        vec![key.clone()]
    );
    assert!(t.backend.revoke_api_key("key-1", T0 + 5).await.unwrap());
    assert!(!t.backend.revoke_api_key("nope", T0 + 5).await.unwrap());
    let revoked = t.backend.api_key_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ns, Some(T0 + 5), "[{}] revoke", t.name);
    assert!(t.backend.revoke_api_key("key-1", T0 + 9).await.unwrap());
    assert_eq!(
        t.backend
            .api_key_by_hash(&key.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ns,
        Some(T0 + 5),
        "[{}] first revocation time is kept",
        t.name
    );
}

/// Scoping holds in every read, not only in the plain lookups: a step of
/// another app on the same trace id, filters that would match another
/// app's rows, cursor pages over interleaved apps, and pipeline figures
/// (counts, rejections, sampled candidates) of a pipeline name both apps
/// use.
pub async fn scope_isolation_in_every_read(t: TestBackend) {
    let n = t.name;
    let mut executions = Vec::new();
    let mut steps = Vec::new();
    for i in 0..3i64 {
        for app in ["app-a", "app-b"] {
            // same start times in both apps: pages interleave them
            let mut e = execution(app, &format!("{app}-{i}"), "shared", T0 + i * MS, MS);
            e.tags = vec![format!("{app}-tag")];
            e.environment = format!("{app}-env");
            e.service = format!("{app}-svc");
            let mut s = step(&e, "filter", StepType::Filter, 0, MS / 2);
            s.candidates_in = Some(10);
            s.candidates_out = Some(if app == "app-a" { 5 } else { 1 });
            s.rejections.insert(format!("{app}-reason"), 5);
            s.candidates = vec![CandidateDecision {
                id: format!("{app}-cand"),
                decision: Decision::Rejected,
                reason: Some(format!("{app}-sampled")),
                score: None,
            }];
            executions.push(e);
            steps.push(s);
        }
    }
    // app-b claims a step on app-a's first trace
    let mut intruder = step(&executions[0], "intruder", StepType::Llm, 0, MS);
    intruder.app = "app-b".into();
    steps.push(intruder);
    write(&t, MappedBatch { executions, steps }).await;
    let a = Scope::App("app-a".into());

    let d = t
        .backend
        .get_execution(&a, "app-a-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["filter"],
        "[{n}] another app's step on the same trace leaks into the detail"
    );
    let by_trace = t
        .backend
        .get_execution(&a, &d.execution.trace_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_trace.steps.len(), 1, "[{n}] trace lookup leaks steps");

    let list = |filter: ExecutionFilter| {
        let backend = t.backend.clone();
        let a = a.clone();
        async move {
            backend
                .list_executions(&a, &filter, &page(100))
                .await
                .unwrap()
                .items
        }
    };
    let all_a = list(ExecutionFilter::default()).await;
    assert_eq!(all_a.len(), 3, "[{n}]");
    assert!(
        all_a
            .iter()
            .all(|s| s.execution.app == "app-a" && s.step_count == 1),
        "[{n}] list rows or their step counts leak: {all_a:?}"
    );
    for (what, f) in [
        (
            "q on an id",
            ExecutionFilter {
                q: Some("app-b-1".into()),
                ..Default::default()
            },
        ),
        (
            "q on a tag",
            ExecutionFilter {
                q: Some("app-b-tag".into()),
                ..Default::default()
            },
        ),
        (
            "environment",
            ExecutionFilter {
                environment: Some("app-b-env".into()),
                ..Default::default()
            },
        ),
        (
            "service",
            ExecutionFilter {
                service: Some("app-b-svc".into()),
                ..Default::default()
            },
        ),
    ] {
        assert!(list(f).await.is_empty(), "[{n}] filter by {what} leaks");
    }

    // cursor pages of one row over interleaved apps
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = t
            .backend
            .list_executions(
                &a,
                &ExecutionFilter::default(),
                &PageRequest { limit: 1, after },
            )
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|s| s.execution.execution_id.clone()));
        match p.next {
            Some(c) => after = Some(c),
            None => break,
        }
        assert!(
            seen.len() <= 3,
            "[{n}] pages run past app-a's rows: {seen:?}"
        );
    }
    assert_eq!(seen, ["app-a-2", "app-a-1", "app-a-0"], "[{n}] pages");

    let w = TimeWindow {
        from_ns: T0 - MS,
        to_ns: T0 + 10 * MS,
    };
    let pipes = t.backend.pipelines(&a, w).await.unwrap();
    assert_eq!(pipes.len(), 1, "[{n}]");
    assert_eq!(pipes[0].executions, 3, "[{n}] pipeline counts leak");
    let f = t.backend.pipeline_funnel(&a, "shared", w).await.unwrap();
    assert_eq!(
        f.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["filter"],
        "[{n}] funnel steps leak"
    );
    assert_eq!(f[0].executions, 3, "[{n}]");
    assert_eq!(f[0].runs, 3, "[{n}]");
    assert_eq!(
        (f[0].total_in, f[0].total_out),
        (30, 15),
        "[{n}] counts leak"
    );
    let reasons: Vec<&str> = f[0]
        .top_rejections
        .iter()
        .map(|(r, _)| r.as_str())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("app-a-")),
        "[{n}] rejections leak: {reasons:?}"
    );
    assert!(reasons.contains(&"app-a-reason"), "[{n}] {reasons:?}");
}

/// `steps_by_span_id` finds a span id in every trace holding it, newest
/// version only, ordered by start time, limited, and only in scope.
pub async fn steps_by_span_id(t: TestBackend) {
    let e1 = execution(APP, "span-a", "p", T0, 100 * MS);
    let e2 = execution(APP, "span-b", "p", T0 + 1_000 * MS, 100 * MS);
    let other = execution("other-app", "span-c", "p", T0 + 2_000 * MS, 100 * MS);
    let shared = "00000000000000aa".to_string();
    let mut s1 = step(&e1, "llm_call", StepType::Llm, 10 * MS, 5 * MS);
    s1.span_id = shared.clone();
    let mut s2 = step(&e2, "decision", StepType::Logic, 10 * MS, 5 * MS);
    s2.span_id = shared.clone();
    let mut s3 = step(&other, "hidden", StepType::Custom, 10 * MS, 5 * MS);
    s3.span_id = shared.clone();
    let unrelated = step(&e1, "unrelated", StepType::Custom, 20 * MS, 5 * MS);
    write(
        &t,
        MappedBatch {
            executions: vec![e1.clone(), e2.clone(), other.clone()],
            steps: vec![s1.clone(), s2.clone(), s3.clone(), unrelated],
        },
    )
    .await;
    // a newer version of s1 replaces it
    let mut s1b = s1.clone();
    s1b.reasoning = Some("second delivery".into());
    s1b.version = 2;
    write(
        &t,
        MappedBatch {
            executions: vec![],
            steps: vec![s1b.clone()],
        },
    )
    .await;
    let name = t.name;
    let got = t
        .backend
        .steps_by_span_id(&scope(), &shared, 10)
        .await
        .unwrap_or_else(|e| panic!("[{name}] steps_by_span_id: {e}"));
    assert_eq!(got, vec![s1b.clone(), s2.clone()], "[{name}] in scope");
    let upper = t
        .backend
        .steps_by_span_id(&scope(), &shared.to_ascii_uppercase(), 1)
        .await
        .unwrap();
    assert_eq!(upper, vec![s1b.clone()], "[{name}] uppercase id, limit 1");
    let all = t
        .backend
        .steps_by_span_id(&Scope::All, &shared, 10)
        .await
        .unwrap();
    assert_eq!(all, vec![s1b, s2, s3], "[{name}] admin scope");
    let none = t
        .backend
        .steps_by_span_id(&Scope::App("nobody".into()), &shared, 10)
        .await
        .unwrap();
    assert!(none.is_empty(), "[{name}] other app sees nothing");
    assert!(
        t.backend
            .steps_by_span_id(&scope(), "00000000000000bb", 10)
            .await
            .unwrap()
            .is_empty(),
        "[{name}] unknown span"
    );
}
