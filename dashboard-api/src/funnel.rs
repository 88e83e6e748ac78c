//! The candidate funnel of one execution (pure, from
//! [`ExecutionDetail`]), and the response shapes of both funnels.
//!
//! Per step: `candidates_in`, `candidates_out`, `dropped = in - out` and
//! `drop_rate = (in - out) / in`, both present only when the step reported
//! both counts (`drop_rate` also needs `in > 0`). They are signed: a step that
//! adds candidates (query expansion) has a negative drop.
//!
//! Rejection reasons come from two sources, merged without double counting:
//! the step's histogram (`xray.step.rejections`) is authoritative, as it
//! counts every rejected candidate; the sampled decisions
//! (`xray.step.candidates`) are only a sample. So a reason present in the
//! histogram keeps the histogram's count, and sampled rejected candidates
//! count only for reasons absent from the histogram (a sampled rejection
//! without a reason counts as `unspecified`). Reasons are sorted by count,
//! most first, ties by reason.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use xray_model::{Decision, Status, Step, StepType};
use xray_store::{ExecutionDetail, PipelineStepStats};

use crate::query::ns_to_ms;
use crate::view::Timeline;

/// Reason used for sampled rejections that carry none.
pub const UNSPECIFIED_REASON: &str = "unspecified";

/// One entry of a rejection histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReasonCount {
    /// Rejection reason.
    pub reason: String,
    /// Candidates rejected for it.
    pub count: u64,
    /// Where the count comes from: `histogram` (the step's
    /// `xray.step.rejections`) or `sampled` (sampled candidate decisions, a
    /// lower bound).
    pub source: String,
}

/// Merges a step's histogram with its sampled rejected candidates (see the
/// module docs) and sorts by count descending, then reason.
pub fn merged_rejections(step: &Step) -> Vec<ReasonCount> {
    let mut out: Vec<ReasonCount> = step
        .rejections
        .iter()
        .map(|(r, c)| ReasonCount {
            reason: r.clone(),
            count: *c,
            source: "histogram".into(),
        })
        .collect();
    let mut sampled: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &step.candidates {
        if c.decision != Decision::Rejected {
            continue;
        }
        let reason = c.reason.as_deref().unwrap_or(UNSPECIFIED_REASON);
        if !step.rejections.contains_key(reason) {
            *sampled.entry(reason).or_default() += 1;
        }
    }
    out.extend(sampled.into_iter().map(|(r, c)| ReasonCount {
        reason: r.to_string(),
        count: c,
        source: "sampled".into(),
    }));
    sort_reasons(&mut out);
    out
}

fn sort_reasons(v: &mut [ReasonCount]) {
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
}

/// `in - out` when both are known.
pub fn dropped(cin: Option<u64>, cout: Option<u64>) -> Option<i64> {
    match (cin, cout) {
        (Some(i), Some(o)) => Some(i as i64 - o as i64),
        _ => None,
    }
}

/// `(in - out) / in` when both are known and `in > 0`.
pub fn drop_rate(cin: Option<u64>, cout: Option<u64>) -> Option<f64> {
    match (cin, cout) {
        (Some(i), Some(o)) if i > 0 => Some((i as f64 - o as f64) / i as f64),
        _ => None,
    }
}

/// One step of an execution funnel.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FunnelStep {
    /// Span id.
    pub id: String,
    /// Parent step's span id; null for top-level.
    pub parent_id: Option<String>,
    /// Nesting depth (0 = top-level).
    pub depth: u32,
    /// Step name.
    pub name: String,
    /// Step type.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "filter")]
    pub step_type: StepType,
    /// Step status.
    #[schema(value_type = String, example = "completed")]
    pub status: Status,
    /// Candidates entering the step.
    pub candidates_in: Option<u64>,
    /// Candidates leaving the step.
    pub candidates_out: Option<u64>,
    /// `in - out` (negative when the step added candidates); null unless
    /// both counts are known.
    pub dropped: Option<i64>,
    /// `(in - out) / in`; null unless both counts are known and `in > 0`.
    pub drop_rate: Option<f64>,
    /// Rejection reasons, most frequent first.
    pub rejections: Vec<ReasonCount>,
}

/// `GET /executions/{id}/funnel`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExecutionFunnel {
    /// Execution id.
    pub execution_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Candidates entering the execution: the first step (timeline order)
    /// reporting a count gives its `candidates_in`, or its `candidates_out`
    /// when it reported only that (a retrieval step); null when no step
    /// reported counts.
    pub candidates_in: Option<u64>,
    /// Candidates leaving the execution: `candidates_out` of the last step
    /// (timeline order) that reported one.
    pub candidates_out: Option<u64>,
    /// Overall `in - out`.
    pub dropped: Option<i64>,
    /// Overall `(in - out) / in`.
    pub drop_rate: Option<f64>,
    /// Every step in timeline order (depth first, siblings by start time).
    pub steps: Vec<FunnelStep>,
}

/// Computes the funnel of one execution.
pub fn execution_funnel(detail: &ExecutionDetail) -> ExecutionFunnel {
    let tl = Timeline::build(&detail.execution.span_id, &detail.steps);
    let mut steps = Vec::with_capacity(detail.steps.len());
    let mut overall_in = None;
    let mut overall_out = None;
    for &(i, depth) in &tl.order {
        let s = &detail.steps[i];
        if overall_in.is_none() {
            overall_in = s.candidates_in.or(s.candidates_out);
        }
        if s.candidates_out.is_some() {
            overall_out = s.candidates_out;
        }
        steps.push(FunnelStep {
            id: s.span_id.clone(),
            parent_id: tl.parent[i].map(|p| detail.steps[p].span_id.clone()),
            depth,
            name: s.name.clone(),
            step_type: s.step_type,
            status: s.status,
            candidates_in: s.candidates_in,
            candidates_out: s.candidates_out,
            dropped: dropped(s.candidates_in, s.candidates_out),
            drop_rate: drop_rate(s.candidates_in, s.candidates_out),
            rejections: merged_rejections(s),
        });
    }
    ExecutionFunnel {
        execution_id: detail.execution.execution_id.clone(),
        pipeline: detail.execution.pipeline.clone(),
        candidates_in: overall_in,
        candidates_out: overall_out,
        dropped: dropped(overall_in, overall_out),
        drop_rate: drop_rate(overall_in, overall_out),
        steps,
    }
}

/// A rejection reason of a pipeline funnel step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReasonTotal {
    /// Rejection reason.
    pub reason: String,
    /// Candidates rejected for it over the window.
    pub count: u64,
}

/// One step name of `GET /pipelines/{name}/funnel`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PipelineFunnelStep {
    /// Step name.
    pub name: String,
    /// Most frequent step type.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "filter")]
    pub step_type: StepType,
    /// Executions that ran a step of this name.
    pub executions: u64,
    /// Step runs (a step may run several times per execution).
    pub runs: u64,
    /// Runs that failed.
    pub failed: u64,
    /// `failed / runs`.
    pub failure_rate: f64,
    /// Runs that reported candidate counts.
    pub runs_with_counts: u64,
    /// Sum of `candidates_in` over the runs with counts.
    pub total_candidates_in: u64,
    /// Sum of `candidates_out` over the runs with counts.
    pub total_candidates_out: u64,
    /// `total_candidates_in / runs_with_counts`; null without counts.
    pub mean_candidates_in: Option<f64>,
    /// `total_candidates_out / runs_with_counts`; null without counts.
    pub mean_candidates_out: Option<f64>,
    /// Mean over runs with both counts and `in > 0` of `(in - out) / in`.
    pub mean_drop_rate: Option<f64>,
    /// Median duration, milliseconds.
    pub p50_duration_ms: Option<f64>,
    /// 95th percentile duration, milliseconds.
    pub p95_duration_ms: Option<f64>,
    /// Mean start offset from the execution's start, milliseconds (the
    /// funnel's order).
    pub mean_offset_ms: f64,
    /// Up to 20 rejection reasons, most frequent first.
    pub top_rejections: Vec<ReasonTotal>,
}

impl From<&PipelineStepStats> for PipelineFunnelStep {
    fn from(s: &PipelineStepStats) -> Self {
        let mean =
            |total: u64| (s.runs_with_counts > 0).then(|| total as f64 / s.runs_with_counts as f64);
        PipelineFunnelStep {
            name: s.name.clone(),
            step_type: s.step_type,
            executions: s.executions,
            runs: s.runs,
            failed: s.failed,
            failure_rate: if s.runs > 0 {
                s.failed as f64 / s.runs as f64
            } else {
                0.0
            },
            runs_with_counts: s.runs_with_counts,
            total_candidates_in: s.total_in,
            total_candidates_out: s.total_out,
            mean_candidates_in: mean(s.total_in),
            mean_candidates_out: mean(s.total_out),
            mean_drop_rate: s.mean_drop_rate,
            p50_duration_ms: s.p50_duration_ns.map(ns_to_ms),
            p95_duration_ms: s.p95_duration_ns.map(ns_to_ms),
            mean_offset_ms: s.mean_offset_ns / 1_000_000.0,
            top_rejections: s
                .top_rejections
                .iter()
                .map(|(r, c)| ReasonTotal {
                    reason: r.clone(),
                    count: *c,
                })
                .collect(),
        }
    }
}

/// `GET /pipelines/{name}/funnel`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PipelineFunnel {
    /// Pipeline name.
    pub pipeline: String,
    /// Window start (inclusive), RFC 3339.
    pub from: String,
    /// Window end (exclusive), RFC 3339.
    pub to: String,
    /// Steps ordered by mean start offset.
    pub steps: Vec<PipelineFunnelStep>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{exec, step};
    use xray_model::CandidateDecision;

    fn cand(id: &str, d: Decision, reason: Option<&str>) -> CandidateDecision {
        CandidateDecision {
            id: id.into(),
            decision: d,
            reason: reason.map(Into::into),
            score: None,
        }
    }

    #[test]
    fn histogram_wins_and_samples_fill_gaps() {
        let mut s = step("f", "", "filter", 0);
        s.rejections.insert("price".into(), 40);
        s.rejections.insert("brand".into(), 7);
        s.candidates = vec![
            cand("a", Decision::Rejected, Some("price")), // already in histogram
            cand("b", Decision::Rejected, Some("stock")),
            cand("c", Decision::Rejected, Some("stock")),
            cand("d", Decision::Rejected, None),
            cand("e", Decision::Accepted, Some("stock")), // not a rejection
            cand("f", Decision::Selected, None),
        ];
        let r = merged_rejections(&s);
        let got: Vec<(&str, u64, &str)> = r
            .iter()
            .map(|x| (x.reason.as_str(), x.count, x.source.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("price", 40, "histogram"),
                ("brand", 7, "histogram"),
                ("stock", 2, "sampled"),
                ("unspecified", 1, "sampled"),
            ]
        );
    }

    #[test]
    fn ties_sort_by_reason() {
        let mut s = step("f", "", "filter", 0);
        s.rejections.insert("b".into(), 2);
        s.rejections.insert("a".into(), 2);
        s.candidates = vec![cand("x", Decision::Rejected, Some("c"))];
        let r: Vec<String> = merged_rejections(&s)
            .into_iter()
            .map(|x| x.reason)
            .collect();
        assert_eq!(r, ["a", "b", "c"]);
    }

    /// Hand-computed fixture: retrieval (out only) → logic parent with two
    /// nested filters → rank with in = 0 → an LLM step without counts.
    #[test]
    fn execution_funnel_is_exact() {
        let e = exec("x", 0, Some(100));
        let mut retrieve = step("s1", "e000000000000000", "search", 10);
        retrieve.step_type = StepType::Retrieval;
        retrieve.candidates_out = Some(5000);
        let mut filters = step("s2", "e000000000000000", "filters", 20);
        filters.step_type = StepType::Logic;
        filters.candidates_in = Some(5000);
        filters.candidates_out = Some(100);
        let mut f1 = step("s3", "s2", "price_filter", 21);
        f1.step_type = StepType::Filter;
        f1.candidates_in = Some(5000);
        f1.candidates_out = Some(1000);
        f1.rejections.insert("price_above_limit".into(), 4000);
        let mut f2 = step("s4", "s2", "brand_filter", 22);
        f2.step_type = StepType::Filter;
        f2.candidates_in = Some(1000);
        f2.candidates_out = Some(100);
        f2.rejections.insert("brand_blocked".into(), 850);
        f2.candidates = vec![
            cand("c1", Decision::Rejected, Some("brand_blocked")),
            cand("c2", Decision::Rejected, Some("out_of_stock")),
        ];
        let mut rank = step("s5", "e000000000000000", "rank", 30);
        rank.step_type = StepType::Rank;
        rank.candidates_in = Some(0);
        rank.candidates_out = Some(0);
        let mut pick = step("s6", "e000000000000000", "pick", 40);
        pick.step_type = StepType::Llm;
        pick.status = Status::Failed;
        let mut expand = step("s7", "e000000000000000", "expand", 50);
        expand.candidates_in = Some(10);
        expand.candidates_out = Some(15);

        // Shuffled on purpose: the funnel orders them.
        let d = ExecutionDetail {
            execution: e,
            steps: vec![pick, f2, rank, retrieve, expand, f1, filters],
        };
        let f = execution_funnel(&d);
        let names: Vec<&str> = f.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "search",
                "filters",
                "price_filter",
                "brand_filter",
                "rank",
                "pick",
                "expand"
            ]
        );
        let by = |n: &str| f.steps.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by("search").dropped, None);
        assert_eq!(by("search").drop_rate, None);
        assert_eq!(by("filters").dropped, Some(4900));
        assert_eq!(by("filters").drop_rate, Some(0.98));
        assert_eq!(by("price_filter").depth, 1);
        assert_eq!(by("price_filter").parent_id.as_deref(), Some("s2"));
        assert_eq!(by("price_filter").drop_rate, Some(0.8));
        assert_eq!(by("brand_filter").dropped, Some(900));
        assert_eq!(by("brand_filter").drop_rate, Some(0.9));
        assert_eq!(
            by("brand_filter").rejections,
            vec![
                ReasonCount {
                    reason: "brand_blocked".into(),
                    count: 850,
                    source: "histogram".into()
                },
                ReasonCount {
                    reason: "out_of_stock".into(),
                    count: 1,
                    source: "sampled".into()
                },
            ]
        );
        assert_eq!(by("rank").dropped, Some(0));
        assert_eq!(by("rank").drop_rate, None, "in = 0 has no rate");
        assert_eq!(by("pick").candidates_in, None);
        assert_eq!(by("pick").dropped, None);
        assert_eq!(by("pick").status, Status::Failed);
        assert_eq!(by("expand").dropped, Some(-5));
        assert_eq!(by("expand").drop_rate, Some(-0.5));

        // Overall: first count is the retrieval's out (5000), last out is
        // expand's 15.
        assert_eq!(f.candidates_in, Some(5000));
        assert_eq!(f.candidates_out, Some(15));
        assert_eq!(f.dropped, Some(4985));
        assert_eq!(f.drop_rate, Some(4985.0 / 5000.0));
    }

    #[test]
    fn funnel_without_counts_is_all_null() {
        let d = ExecutionDetail {
            execution: exec("x", 0, None),
            steps: vec![step("a", "", "a", 1), step("b", "", "b", 2)],
        };
        let f = execution_funnel(&d);
        assert_eq!(f.candidates_in, None);
        assert_eq!(f.candidates_out, None);
        assert_eq!(f.drop_rate, None);
        assert!(
            f.steps
                .iter()
                .all(|s| s.dropped.is_none() && s.rejections.is_empty())
        );
        let empty = ExecutionDetail {
            execution: exec("y", 0, None),
            steps: vec![],
        };
        assert!(execution_funnel(&empty).steps.is_empty());
    }

    #[test]
    fn pipeline_step_stats_convert() {
        let s = PipelineStepStats {
            name: "filter".into(),
            step_type: StepType::Filter,
            executions: 3,
            runs: 4,
            failed: 1,
            runs_with_counts: 2,
            total_in: 300,
            total_out: 30,
            mean_drop_rate: Some(0.9),
            p50_duration_ns: Some(1_500_000),
            p95_duration_ns: None,
            mean_offset_ns: 2_000_000.0,
            top_rejections: vec![("price".into(), 200)],
        };
        let v = PipelineFunnelStep::from(&s);
        assert_eq!(v.failure_rate, 0.25);
        assert_eq!(v.mean_candidates_in, Some(150.0));
        assert_eq!(v.mean_candidates_out, Some(15.0));
        assert_eq!(v.p50_duration_ms, Some(1.5));
        assert_eq!(v.mean_offset_ms, 2.0);
        assert_eq!(v.top_rejections[0].count, 200);
    }
}
