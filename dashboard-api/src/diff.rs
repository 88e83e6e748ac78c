//! Side-by-side comparison of two executions of the same pipeline (pure).
//!
//! Steps are matched by name and occurrence: the second step named
//! `rerank` in timeline order of run A is compared with the second step
//! named `rerank` of run B. The result lists A's steps in A's timeline order,
//! each with its match (or `removed`), then the steps only B has (`added`),
//! in B's order.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use xray_model::{Status, Step, StepType};
use xray_store::ExecutionDetail;

use crate::error::ApiError;
use crate::query::ns_to_ms;
use crate::view::{ExecutionView, Timeline, render_json};

/// One side of a step comparison.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepSide {
    /// Span id.
    pub id: String,
    /// Step type.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "rank")]
    pub step_type: StepType,
    /// Step status.
    #[schema(value_type = String, example = "completed")]
    pub status: Status,
    /// Candidates in.
    pub candidates_in: Option<u64>,
    /// Candidates out.
    pub candidates_out: Option<u64>,
    /// Rejection histogram.
    pub rejections: std::collections::BTreeMap<String, u64>,
    /// Output (JSON when valid JSON).
    #[schema(value_type = Object)]
    pub output: Value,
    /// Reasoning.
    pub reasoning: Option<String>,
    /// Duration, ms.
    pub duration_ms: Option<f64>,
}

impl StepSide {
    fn new(s: &Step) -> Self {
        StepSide {
            id: s.span_id.clone(),
            step_type: s.step_type,
            status: s.status,
            candidates_in: s.candidates_in,
            candidates_out: s.candidates_out,
            rejections: s.rejections.clone(),
            output: render_json(s.output.as_deref()),
            reasoning: s.reasoning.clone(),
            duration_ms: s.duration_ns().map(ns_to_ms),
        }
    }
}

/// One matched (or unmatched) step.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepDiff {
    /// Step name.
    pub name: String,
    /// Which occurrence of the name this is, from 0, in timeline order.
    pub occurrence: u32,
    /// `unchanged`, `changed`, `added` (only in b) or `removed` (only in a).
    pub change: String,
    /// Fields that differ, among `type`, `status`, `candidates_in`,
    /// `candidates_out`, `rejections`, `output`, `reasoning` (durations
    /// always differ a little, so they are reported as a delta instead).
    pub changed_fields: Vec<String>,
    /// `b.duration_ms - a.duration_ms` when both are known.
    pub duration_delta_ms: Option<f64>,
    /// The step in run a.
    pub a: Option<StepSide>,
    /// The step in run b.
    pub b: Option<StepSide>,
}

/// `GET /executions/{a}/diff/{b}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExecutionDiff {
    /// Run a.
    pub a: ExecutionView,
    /// Run b.
    pub b: ExecutionView,
    /// Execution fields that differ, among `status`, `output`, `error`,
    /// `step_count`.
    pub changed_fields: Vec<String>,
    /// `b.duration_ms - a.duration_ms` when both are known.
    pub duration_delta_ms: Option<f64>,
    /// Step comparisons.
    pub steps: Vec<StepDiff>,
}

fn keyed(detail: &ExecutionDetail) -> Vec<(&Step, u32)> {
    let tl = Timeline::build(&detail.execution.span_id, &detail.steps);
    let mut seen: HashMap<&str, u32> = HashMap::new();
    tl.order
        .iter()
        .map(|&(i, _)| {
            let s = &detail.steps[i];
            let n = seen.entry(s.name.as_str()).or_default();
            let occ = *n;
            *n += 1;
            (s, occ)
        })
        .collect()
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

fn step_changes(a: &StepSide, b: &StepSide) -> Vec<String> {
    let mut c = Vec::new();
    if a.step_type != b.step_type {
        c.push("type");
    }
    if a.status != b.status {
        c.push("status");
    }
    if a.candidates_in != b.candidates_in {
        c.push("candidates_in");
    }
    if a.candidates_out != b.candidates_out {
        c.push("candidates_out");
    }
    if a.rejections != b.rejections {
        c.push("rejections");
    }
    if a.output != b.output {
        c.push("output");
    }
    if a.reasoning != b.reasoning {
        c.push("reasoning");
    }
    c.into_iter().map(String::from).collect()
}

/// Compares two executions; a 400 when they belong to different pipelines.
pub fn diff_executions(
    a: &ExecutionDetail,
    b: &ExecutionDetail,
) -> Result<ExecutionDiff, ApiError> {
    if a.execution.pipeline != b.execution.pipeline {
        return Err(ApiError::BadRequest(format!(
            "cannot diff executions of different pipelines: {} is \"{}\", {} is \"{}\"",
            a.execution.execution_id,
            a.execution.pipeline,
            b.execution.execution_id,
            b.execution.pipeline
        )));
    }
    let ka = keyed(a);
    let kb = keyed(b);
    let mut b_index: HashMap<(&str, u32), usize> = HashMap::with_capacity(kb.len());
    for (i, (s, occ)) in kb.iter().enumerate() {
        b_index.insert((s.name.as_str(), *occ), i);
    }
    let mut matched_b = vec![false; kb.len()];
    let mut steps = Vec::with_capacity(ka.len().max(kb.len()));
    for (sa, occ) in &ka {
        let side_a = StepSide::new(sa);
        match b_index.get(&(sa.name.as_str(), *occ)) {
            Some(&j) => {
                matched_b[j] = true;
                let side_b = StepSide::new(kb[j].0);
                let changed = step_changes(&side_a, &side_b);
                steps.push(StepDiff {
                    name: sa.name.clone(),
                    occurrence: *occ,
                    change: if changed.is_empty() {
                        "unchanged"
                    } else {
                        "changed"
                    }
                    .into(),
                    changed_fields: changed,
                    duration_delta_ms: delta(side_a.duration_ms, side_b.duration_ms),
                    a: Some(side_a),
                    b: Some(side_b),
                });
            }
            None => steps.push(StepDiff {
                name: sa.name.clone(),
                occurrence: *occ,
                change: "removed".into(),
                changed_fields: vec![],
                duration_delta_ms: None,
                a: Some(side_a),
                b: None,
            }),
        }
    }
    for (j, (sb, occ)) in kb.iter().enumerate() {
        if !matched_b[j] {
            steps.push(StepDiff {
                name: sb.name.clone(),
                occurrence: *occ,
                change: "added".into(),
                changed_fields: vec![],
                duration_delta_ms: None,
                a: None,
                b: Some(StepSide::new(sb)),
            });
        }
    }
    let va = ExecutionView::new(&a.execution, a.steps.len() as u64);
    let vb = ExecutionView::new(&b.execution, b.steps.len() as u64);
    let mut changed = Vec::new();
    if va.status != vb.status {
        changed.push("status".to_string());
    }
    if va.output != vb.output {
        changed.push("output".to_string());
    }
    if va.error != vb.error {
        changed.push("error".to_string());
    }
    if va.step_count != vb.step_count {
        changed.push("step_count".to_string());
    }
    Ok(ExecutionDiff {
        duration_delta_ms: delta(va.duration_ms, vb.duration_ms),
        a: va,
        b: vb,
        changed_fields: changed,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{exec, step};

    #[test]
    fn matches_by_name_and_occurrence() {
        let mut ea = exec("a", 0, Some(10_000_000));
        ea.output = Some(r#"{"pick":"x"}"#.into());
        let mut eb = exec("b", 0, Some(12_000_000));
        eb.output = Some(r#"{"pick":"y"}"#.into());
        eb.status = Status::Failed;

        let mut a1 = step("a1", "", "search", 1);
        a1.candidates_out = Some(100);
        let mut a2 = step("a2", "", "rerank", 2);
        a2.reasoning = Some("by price".into());
        let a3 = step("a3", "", "rerank", 3);
        let a4 = step("a4", "", "only_in_a", 4);

        let mut b1 = step("b1", "", "search", 1);
        b1.candidates_out = Some(100);
        b1.end_time_ns = Some(1 + 3_000_000);
        let mut b2 = step("b2", "", "rerank", 2);
        b2.reasoning = Some("by rating".into());
        b2.status = Status::Failed;
        let b3 = step("b3", "", "rerank", 3);
        let b4 = step("b4", "", "only_in_b", 4);

        let d = diff_executions(
            &ExecutionDetail {
                execution: ea,
                steps: vec![a1, a2, a3, a4],
            },
            &ExecutionDetail {
                execution: eb,
                steps: vec![b4, b3, b2, b1],
            },
        )
        .unwrap();
        assert_eq!(d.changed_fields, ["status", "output"]);
        assert_eq!(d.duration_delta_ms, Some(2.0));
        let rows: Vec<(&str, u32, &str)> = d
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.occurrence, s.change.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("search", 0, "unchanged"),
                ("rerank", 0, "changed"),
                ("rerank", 1, "unchanged"),
                ("only_in_a", 0, "removed"),
                ("only_in_b", 0, "added"),
            ]
        );
        assert_eq!(d.steps[0].duration_delta_ms, Some(2.0));
        assert_eq!(d.steps[1].changed_fields, ["status", "reasoning"]);
        assert_eq!(d.steps[1].b.as_ref().unwrap().id, "b2");
        assert!(d.steps[3].b.is_none());
        assert!(d.steps[4].a.is_none());
    }

    #[test]
    fn different_pipelines_are_refused() {
        let a = ExecutionDetail {
            execution: exec("a", 0, None),
            steps: vec![],
        };
        let mut eb = exec("b", 0, None);
        eb.pipeline = "other".into();
        let b = ExecutionDetail {
            execution: eb,
            steps: vec![],
        };
        let e = diff_executions(&a, &b).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("different pipelines"));
    }
}
