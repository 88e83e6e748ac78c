//! Conformance: the pipeline funnel does not depend on how rows arrive.
//!
//! A generated set of pipeline runs (repeated step names, nested steps,
//! failed and running steps, missing and zero counts, rejection histograms
//! with sampled decisions, nested pipelines in one trace, a step row
//! carrying its execution's own span) reaches the store in the ways real
//! traffic does: all in one write; steps before their execution; a trace
//! split across writes; delivered again with newer versions and a changed
//! set of steps; a retried identical write; an execution rewritten after its
//! steps. The funnel of every backend must equal the one computed from the
//! final state of the rows by [`aggregate::pipeline_funnel`] and
//! [`aggregate::steps_of_execution`], the rules every store follows.

use std::collections::HashMap;

use xray_model::{
    CandidateDecision, Decision, Execution, MappedBatch, Rejections, Status, Step, StepType,
};

use super::{APP, MS, T0, scope, write};
use crate::aggregate;
use crate::joins::Traces;
use crate::testing::{TestBackend, execution, same_step_stats, span_id_for, step};
use crate::{PipelineStepStats, TimeWindow};

/// Executions of pipeline `arr`; every fifth also holds a nested `arr-inner`.
const RUNS: usize = 36;
const NAMES: [(&str, StepType); 5] = [
    ("fetch", StepType::Retrieval),
    ("filter", StepType::Filter),
    ("rank", StepType::Rank),
    ("judge", StepType::Llm),
    ("pick", StepType::Select),
];
const REASONS: [&str; 4] = ["price", "stock", "brand", "a.b \"q\""];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The rows of one trace: its executions and their steps.
#[derive(Clone, Default)]
struct Trace {
    executions: Vec<Execution>,
    steps: Vec<Step>,
}

/// `n` steps of `e` named `tag0`, `tag1`, ..., children of `e`'s span or of
/// an earlier one of them.
fn steps_of(rng: &mut Rng, e: &Execution, tag: &str, n: usize) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for k in 0..n {
        let (name, mut ty) = NAMES[rng.below(NAMES.len() as u64) as usize];
        if rng.one_in(10) {
            ty = StepType::Custom;
        }
        let offset = k as i64 * MS + rng.below(MS as u64 / 2) as i64;
        let mut s = step(e, name, ty, offset, MS / 2 + rng.below(MS as u64) as i64);
        s.span_id = span_id_for(&e.execution_id, &format!("{tag}{k}"));
        if k > 0 && rng.one_in(4) {
            s.parent_span_id = out[rng.below(k as u64) as usize].span_id.clone();
        }
        match rng.below(12) {
            0 | 1 => s.status = Status::Failed,
            2 => {
                s.status = Status::Running;
                s.end_time_ns = None;
            }
            _ => {}
        }
        match rng.below(4) {
            0 => {}
            1 => (s.candidates_in, s.candidates_out) = (Some(0), Some(0)),
            2 => {
                let cin = 10 + rng.below(1000);
                let cout = rng.below(cin + 1);
                (s.candidates_in, s.candidates_out) = (Some(cin), Some(cout));
                let mut left = cin - cout;
                let mut rejections = Rejections::new();
                for r in REASONS.iter().take(1 + rng.below(2) as usize) {
                    let n = if left > 0 { 1 + rng.below(left) } else { 0 };
                    left -= n;
                    rejections.insert((*r).to_string(), n);
                }
                s.rejections = rejections;
            }
            _ => s.candidates_out = Some(rng.below(50)),
        }
        s.candidates = (0..rng.below(5))
            .map(|c| CandidateDecision {
                id: format!("c{c}"),
                decision: if rng.one_in(3) {
                    Decision::Accepted
                } else {
                    Decision::Rejected
                },
                reason: (!rng.one_in(4))
                    .then(|| REASONS[rng.below(REASONS.len() as u64) as usize].to_string()),
                score: None,
            })
            .collect();
        out.push(s);
    }
    out
}

fn traces() -> Vec<Trace> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..RUNS)
        .map(|i| {
            let e = execution(
                APP,
                &format!("arr-{i:02}"),
                "arr",
                T0 + i as i64 * 20 * MS,
                15 * MS,
            );
            let n = 3 + rng.below(4) as usize;
            let mut t = Trace {
                steps: steps_of(&mut rng, &e, "s", n),
                executions: vec![e.clone()],
            };
            if i % 5 == 2 {
                // A nested pipeline under one of the outer steps.
                let mut inner = execution(
                    APP,
                    &format!("arr-{i:02}-inner"),
                    "arr-inner",
                    e.start_time_ns + 6 * MS,
                    5 * MS,
                );
                inner.trace_id = e.trace_id.clone();
                let n = 2 + rng.below(2) as usize;
                let inner_steps = steps_of(&mut rng, &inner, "i", n);
                if i % 10 == 2 {
                    // The inner execution's span as a step row of the outer
                    // one: never a step.
                    let mut own = step(&e, "inner-span", StepType::Logic, 6 * MS, 5 * MS);
                    own.span_id = inner.span_id.clone();
                    t.steps.push(own);
                }
                t.steps.extend(inner_steps);
                t.executions.push(inner);
            }
            t
        })
        .collect()
}

/// The writes, in order: trace `i` arrives the way `i % 6` says; the
/// first-phase rows of two traces share a write.
fn writes(traces: &[Trace]) -> Vec<MappedBatch> {
    let mut first: Vec<MappedBatch> = Vec::new();
    let mut second: Vec<MappedBatch> = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        let (a, b): (Trace, Option<Trace>) = match i % 6 {
            // all at once
            0 => (t.clone(), None),
            // steps first, executions later
            1 => (
                Trace {
                    steps: t.steps.clone(),
                    ..Trace::default()
                },
                Some(Trace {
                    executions: t.executions.clone(),
                    ..Trace::default()
                }),
            ),
            // the executions with half of the steps, the rest alone
            2 => {
                let half = t.steps.len() / 2;
                (
                    Trace {
                        executions: t.executions.clone(),
                        steps: t.steps[..half].to_vec(),
                    },
                    Some(Trace {
                        steps: t.steps[half..].to_vec(),
                        ..Trace::default()
                    }),
                )
            }
            // delivered again: newer versions, changed counts, the last
            // step missing and a new one
            3 => {
                let mut again = t.clone();
                for e in &mut again.executions {
                    e.version += 10;
                }
                for s in &mut again.steps {
                    s.version += 10;
                    s.candidates_out = s.candidates_out.map(|o| o / 2);
                }
                again.steps.pop();
                let mut late = step(&t.executions[0], "rank", StepType::Rank, 9 * MS, MS);
                late.span_id = span_id_for(&t.executions[0].execution_id, "late");
                late.version = 11;
                late.candidates_in = Some(7);
                late.candidates_out = Some(3);
                again.steps.push(late);
                (t.clone(), Some(again))
            }
            // a retried identical write
            4 => (t.clone(), Some(t.clone())),
            // the steps with a running version of the execution, completed
            // later
            _ => {
                let mut running = t.clone();
                for e in &mut running.executions {
                    e.status = Status::Running;
                    e.end_time_ns = None;
                }
                let mut done = t.clone();
                done.steps.clear();
                for e in &mut done.executions {
                    e.version += 1;
                }
                (running, Some(done))
            }
        };
        if i % 2 == 0 {
            first.push(MappedBatch::default());
        }
        let batch = first.last_mut().expect("a first-phase batch");
        batch.executions.extend(a.executions);
        batch.steps.extend(a.steps);
        if let Some(b) = b {
            second.push(MappedBatch {
                executions: b.executions,
                steps: b.steps,
            });
        }
    }
    first.into_iter().chain(second).collect()
}

/// The funnel of `pipeline` over `window` from the final state of `writes`:
/// the highest version of every execution and step (the later write on a
/// tie), steps given to executions by [`aggregate::steps_of_execution`]
/// (through [`Traces`]).
fn expected(writes: &[MappedBatch], pipeline: &str, window: TimeWindow) -> Vec<PipelineStepStats> {
    let mut executions: HashMap<(String, String), Execution> = HashMap::new();
    let mut steps: HashMap<(String, String, String), Step> = HashMap::new();
    for w in writes {
        for e in &w.executions {
            let key = (e.app.clone(), e.execution_id.clone());
            if executions
                .get(&key)
                .is_none_or(|old| old.version <= e.version)
            {
                executions.insert(key, e.clone());
            }
        }
        for s in &w.steps {
            let key = (s.app.clone(), s.trace_id.clone(), s.span_id.clone());
            if steps.get(&key).is_none_or(|old| old.version <= s.version) {
                steps.insert(key, s.clone());
            }
        }
    }
    let window_executions: Vec<Execution> = executions
        .values()
        .filter(|e| {
            e.pipeline == pipeline
                && e.start_time_ns >= window.from_ns
                && e.start_time_ns < window.to_ns
        })
        .cloned()
        .collect();
    let traces = Traces::new(
        executions.into_values().collect(),
        steps.into_values().collect(),
    );
    let rows = traces.funnel_rows(&window_executions);
    aggregate::pipeline_funnel(rows)
}

/// See the module documentation.
pub async fn pipeline_funnel_whatever_the_arrival(t: TestBackend) {
    let traces = traces();
    let writes = writes(&traces);
    for w in &writes {
        write(&t, w.clone()).await;
    }
    let windows = [
        TimeWindow {
            from_ns: T0,
            to_ns: T0 + RUNS as i64 * 20 * MS,
        },
        TimeWindow {
            from_ns: T0 + 100 * MS,
            to_ns: T0 + 400 * MS,
        },
    ];
    for pipeline in ["arr", "arr-inner"] {
        for window in windows {
            let want = expected(&writes, pipeline, window);
            assert!(!want.is_empty(), "the scenario covers {pipeline}");
            let got = t
                .backend
                .pipeline_funnel(&scope(), pipeline, window)
                .await
                .unwrap();
            let names =
                |f: &[PipelineStepStats]| f.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
            assert_eq!(
                names(&got),
                names(&want),
                "[{}] {pipeline} {window:?}: step order",
                t.name
            );
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    same_step_stats(g, w),
                    "[{}] {pipeline} {window:?}:\n got {g:?}\nwant {w:?}",
                    t.name
                );
            }
        }
    }
}
