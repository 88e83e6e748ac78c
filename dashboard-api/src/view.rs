//! Response shapes and the pure functions that build them from store rows:
//! JSON value rendering, execution and step views, and the timeline tree.
//!
//! Conventions: snake_case fields named as in the data model; instants are
//! RFC 3339 UTC strings with nine fractional digits (`start_time`,
//! `end_time`); durations and offsets are fractional milliseconds
//! (`duration_ms`, `offset_ms`). Input, output and metadata values that hold
//! valid JSON text are returned as JSON, anything else as a string.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use xray_model::{CandidateDecision, Execution, Status, Step, StepType};
use xray_store::{ExecutionDetail, ExecutionSummary};

use crate::query::{format_time, ns_to_ms};

/// Renders stored text as JSON: valid JSON text becomes that JSON value,
/// anything else a JSON string. `None` stays `null`.
pub fn render_json(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(v) => v,
            Err(_) => Value::String(t.to_string()),
        },
    }
}

/// An execution, with its input and output rendered as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExecutionView {
    /// Execution id.
    pub execution_id: String,
    /// Trace id (32 hex).
    pub trace_id: String,
    /// Span id of the execution span (16 hex).
    pub span_id: String,
    /// App (tenant).
    pub app: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Deployment environment; empty when unknown.
    pub environment: String,
    /// `service.name` of the emitter.
    pub service: String,
    /// `running`, `completed` or `failed`.
    #[schema(value_type = String, example = "completed")]
    pub status: Status,
    /// Start, RFC 3339 with nanoseconds.
    pub start_time: String,
    /// End, RFC 3339 with nanoseconds; null while running.
    pub end_time: Option<String>,
    /// Duration in milliseconds; null while running.
    pub duration_ms: Option<f64>,
    /// Input: JSON when it was valid JSON, else a string.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Output: JSON when it was valid JSON, else a string.
    #[schema(value_type = Object)]
    pub output: Value,
    /// Error message when failed.
    pub error: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata entries.
    pub metadata: BTreeMap<String, String>,
    /// Steps stored for the execution.
    pub step_count: u64,
    /// When the collector received it, RFC 3339 with nanoseconds.
    pub ingest_time: String,
}

impl ExecutionView {
    /// Builds the view of `e`; `step_count` is the number of stored steps.
    pub fn new(e: &Execution, step_count: u64) -> Self {
        ExecutionView {
            execution_id: e.execution_id.clone(),
            trace_id: e.trace_id.clone(),
            span_id: e.span_id.clone(),
            app: e.app.clone(),
            pipeline: e.pipeline.clone(),
            environment: e.environment.clone(),
            service: e.service.clone(),
            status: e.status,
            start_time: format_time(e.start_time_ns),
            end_time: e.end_time_ns.map(format_time),
            duration_ms: e.duration_ns().map(ns_to_ms),
            input: render_json(e.input.as_deref()),
            output: render_json(e.output.as_deref()),
            error: e.error.clone(),
            tags: e.tags.clone(),
            metadata: e.metadata.clone(),
            step_count,
            ingest_time: format_time(e.ingest_time_ns),
        }
    }
}

/// One row of `GET /executions`: the execution without its (possibly
/// large) input and output.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExecutionListItem {
    /// Execution id.
    pub execution_id: String,
    /// Trace id (32 hex).
    pub trace_id: String,
    /// App (tenant).
    pub app: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Deployment environment.
    pub environment: String,
    /// `service.name` of the emitter.
    pub service: String,
    /// `running`, `completed` or `failed`.
    #[schema(value_type = String, example = "failed")]
    pub status: Status,
    /// Start, RFC 3339 with nanoseconds.
    pub start_time: String,
    /// End, RFC 3339 with nanoseconds; null while running.
    pub end_time: Option<String>,
    /// Duration in milliseconds; null while running.
    pub duration_ms: Option<f64>,
    /// Error message when failed.
    pub error: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata entries.
    pub metadata: BTreeMap<String, String>,
    /// Steps stored for the execution.
    pub step_count: u64,
}

impl From<&ExecutionSummary> for ExecutionListItem {
    fn from(s: &ExecutionSummary) -> Self {
        let e = &s.execution;
        ExecutionListItem {
            execution_id: e.execution_id.clone(),
            trace_id: e.trace_id.clone(),
            app: e.app.clone(),
            pipeline: e.pipeline.clone(),
            environment: e.environment.clone(),
            service: e.service.clone(),
            status: e.status,
            start_time: format_time(e.start_time_ns),
            end_time: e.end_time_ns.map(format_time),
            duration_ms: e.duration_ns().map(ns_to_ms),
            error: e.error.clone(),
            tags: e.tags.clone(),
            metadata: e.metadata.clone(),
            step_count: s.step_count,
        }
    }
}

/// A sampled candidate decision, as returned.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CandidateView {
    /// Candidate id.
    pub id: String,
    /// `accepted`, `rejected` or `selected`.
    pub decision: String,
    /// Why.
    pub reason: Option<String>,
    /// Score.
    pub score: Option<f64>,
}

impl From<&CandidateDecision> for CandidateView {
    fn from(c: &CandidateDecision) -> Self {
        CandidateView {
            id: c.id.clone(),
            decision: c.decision.as_str().to_string(),
            reason: c.reason.clone(),
            score: c.score,
        }
    }
}

/// One step, flat (see [`TimelineStep`] for the nested form).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepView {
    /// Span id (16 hex).
    pub id: String,
    /// Parent step's span id; null for a top-level step.
    pub parent_id: Option<String>,
    /// Nesting depth in the timeline: 0 for top-level steps.
    pub depth: u32,
    /// Step name.
    pub name: String,
    /// `llm`, `retrieval`, `filter`, `rank`, `select`, `tool`, `logic` or `custom`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "filter")]
    pub step_type: StepType,
    /// `completed`, `failed`, `skipped` or `running`.
    #[schema(value_type = String, example = "completed")]
    pub status: Status,
    /// Start, RFC 3339 with nanoseconds.
    pub start_time: String,
    /// End, RFC 3339 with nanoseconds; null while running.
    pub end_time: Option<String>,
    /// Start relative to the execution's start, milliseconds (negative when
    /// the step's clock is ahead).
    pub offset_ms: f64,
    /// Duration in milliseconds; null while running.
    pub duration_ms: Option<f64>,
    /// Input: JSON when it was valid JSON, else a string.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Output: JSON when it was valid JSON, else a string.
    #[schema(value_type = Object)]
    pub output: Value,
    /// Why the step decided what it did.
    pub reasoning: Option<String>,
    /// Metadata entries.
    pub metadata: BTreeMap<String, String>,
    /// Candidates entering the step.
    pub candidates_in: Option<u64>,
    /// Candidates leaving the step.
    pub candidates_out: Option<u64>,
    /// Rejection histogram as reported by the step: reason → count.
    pub rejections: BTreeMap<String, u64>,
    /// Sampled candidate decisions.
    pub candidates: Vec<CandidateView>,
    /// Model (LLM steps).
    pub model: Option<String>,
    /// Model provider.
    pub provider: Option<String>,
    /// Input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Cost.
    pub cost: Option<f64>,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Error message when failed.
    pub error: Option<String>,
}

impl StepView {
    /// Builds the view of `s` inside an execution that started at
    /// `exec_start_ns`.
    pub fn new(s: &Step, exec_start_ns: i64, parent_id: Option<String>, depth: u32) -> Self {
        StepView {
            id: s.span_id.clone(),
            parent_id,
            depth,
            name: s.name.clone(),
            step_type: s.step_type,
            status: s.status,
            start_time: format_time(s.start_time_ns),
            end_time: s.end_time_ns.map(format_time),
            offset_ms: ns_to_ms(s.start_time_ns.saturating_sub(exec_start_ns)),
            duration_ms: s.duration_ns().map(ns_to_ms),
            input: render_json(s.input.as_deref()),
            output: render_json(s.output.as_deref()),
            reasoning: s.reasoning.clone(),
            metadata: s.metadata.clone(),
            candidates_in: s.candidates_in,
            candidates_out: s.candidates_out,
            rejections: s.rejections.clone(),
            candidates: s.candidates.iter().map(CandidateView::from).collect(),
            model: s.model.clone(),
            provider: s.provider.clone(),
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cost: s.cost,
            confidence: s.confidence,
            error: s.error.clone(),
        }
    }
}

/// A step in the timeline tree: the step's fields plus its children.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TimelineStep {
    /// The step.
    #[serde(flatten)]
    pub step: StepView,
    /// Child steps, ordered by start time.
    #[schema(no_recursion)]
    pub children: Vec<TimelineStep>,
}

/// `GET /executions/{id}`: the execution and its steps as a tree.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExecutionDetailView {
    /// The execution.
    pub execution: ExecutionView,
    /// Top-level steps, each with its children, ordered by start time.
    pub steps: Vec<TimelineStep>,
}

/// `GET /executions/{id}/steps`: the execution's steps, flat.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepList {
    /// Execution id.
    pub execution_id: String,
    /// Steps in timeline order (depth first, siblings by start time).
    pub steps: Vec<StepView>,
}

/// The shape of an execution's steps: which step is whose child.
///
/// A step is top-level when its parent span id is empty, is the execution
/// span itself, is the step's own id, or names no step of the execution.
/// Siblings are ordered by `(start_time_ns, span_id)`. Parent links that
/// form a cycle (malformed data) are broken at the earliest step of the
/// cycle, which becomes top-level, so every step appears exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Indices (into the input slice) of the top-level steps, in order.
    pub roots: Vec<usize>,
    /// Children indices of each step, in order.
    pub children: Vec<Vec<usize>>,
    /// Parent index of each step in the tree, `None` for top-level.
    pub parent: Vec<Option<usize>>,
    /// Every index in depth-first (pre-)order, with its depth.
    pub order: Vec<(usize, u32)>,
}

impl Timeline {
    /// Builds the timeline of `steps` of the execution whose span id is
    /// `execution_span_id`.
    pub fn build(execution_span_id: &str, steps: &[Step]) -> Timeline {
        let n = steps.len();
        let mut sorted: Vec<usize> = (0..n).collect();
        sorted.sort_by(|&a, &b| {
            (steps[a].start_time_ns, &steps[a].span_id)
                .cmp(&(steps[b].start_time_ns, &steps[b].span_id))
        });
        let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(n);
        for &i in &sorted {
            by_id.entry(steps[i].span_id.as_str()).or_insert(i);
        }
        let mut parent: Vec<Option<usize>> = vec![None; n];
        for i in 0..n {
            let p = steps[i].parent_span_id.as_str();
            if p.is_empty() || p == execution_span_id || p == steps[i].span_id {
                continue;
            }
            if let Some(&pi) = by_id.get(p)
                && pi != i
            {
                parent[i] = Some(pi);
            }
        }
        // Break cycles: walk up from each step; a walk that comes back to a
        // step already on the current path found a cycle.
        let mut state = vec![0u8; n]; // 0 unknown, 1 on path, 2 resolved
        for &start in &sorted {
            let mut path = Vec::new();
            let mut cur = start;
            loop {
                match state[cur] {
                    2 => break,
                    1 => {
                        // Cycle: cut it at its earliest member (by sorted order).
                        let pos = path.iter().position(|&x| x == cur).unwrap_or(0);
                        let cycle = &path[pos..];
                        let rank = |x: usize| sorted.iter().position(|&y| y == x).unwrap_or(0);
                        if let Some(&first) = cycle.iter().min_by_key(|&&x| rank(x)) {
                            parent[first] = None;
                        }
                        break;
                    }
                    _ => {
                        state[cur] = 1;
                        path.push(cur);
                        match parent[cur] {
                            Some(p) => cur = p,
                            None => break,
                        }
                    }
                }
            }
            for x in path {
                state[x] = 2;
            }
        }
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut roots = Vec::new();
        for &i in &sorted {
            match parent[i] {
                Some(p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut stack: Vec<(usize, u32)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((i, d)) = stack.pop() {
            order.push((i, d));
            for &c in children[i].iter().rev() {
                stack.push((c, d + 1));
            }
        }
        Timeline {
            roots,
            children,
            parent,
            order,
        }
    }
}

/// Flat step views in timeline order.
pub fn flat_steps(detail: &ExecutionDetail) -> Vec<StepView> {
    let tl = Timeline::build(&detail.execution.span_id, &detail.steps);
    let start = detail.execution.start_time_ns;
    tl.order
        .iter()
        .map(|&(i, depth)| {
            let parent_id = tl.parent[i].map(|p| detail.steps[p].span_id.clone());
            StepView::new(&detail.steps[i], start, parent_id, depth)
        })
        .collect()
}

/// The execution detail response: execution plus timeline tree.
pub fn execution_detail(detail: &ExecutionDetail) -> ExecutionDetailView {
    let tl = Timeline::build(&detail.execution.span_id, &detail.steps);
    let start = detail.execution.start_time_ns;
    // Build bottom-up in reverse pre-order so each node's children are ready.
    let mut built: Vec<Option<TimelineStep>> = vec![None; detail.steps.len()];
    for &(i, depth) in tl.order.iter().rev() {
        let children = tl.children[i]
            .iter()
            .filter_map(|&c| built[c].take())
            .collect();
        let parent_id = tl.parent[i].map(|p| detail.steps[p].span_id.clone());
        built[i] = Some(TimelineStep {
            step: StepView::new(&detail.steps[i], start, parent_id, depth),
            children,
        });
    }
    ExecutionDetailView {
        execution: ExecutionView::new(&detail.execution, detail.steps.len() as u64),
        steps: tl.roots.iter().filter_map(|&r| built[r].take()).collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use xray_model::{Metadata, Rejections};

    pub(crate) fn exec(id: &str, start: i64, end: Option<i64>) -> Execution {
        Execution {
            app: "default".into(),
            execution_id: id.into(),
            trace_id: format!("{:0>32}", id),
            span_id: "e000000000000000".into(),
            pipeline: "p".into(),
            environment: "prod".into(),
            service: "svc".into(),
            status: Status::Completed,
            start_time_ns: start,
            end_time_ns: end,
            input: None,
            output: None,
            error: None,
            tags: vec![],
            metadata: Metadata::new(),
            step_count: 0,
            ingest_time_ns: start,
            version: 1,
        }
    }

    pub(crate) fn step(id: &str, parent: &str, name: &str, start: i64) -> Step {
        Step {
            app: "default".into(),
            execution_id: String::new(),
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: name.into(),
            step_type: StepType::Custom,
            status: Status::Completed,
            service: "svc".into(),
            start_time_ns: start,
            end_time_ns: Some(start + 1_000_000),
            input: None,
            output: None,
            reasoning: None,
            metadata: Metadata::new(),
            candidates_in: None,
            candidates_out: None,
            rejections: Rejections::new(),
            candidates: vec![],
            model: None,
            provider: None,
            input_tokens: None,
            output_tokens: None,
            cost: None,
            confidence: None,
            error: None,
            version: 1,
        }
    }

    #[test]
    fn json_text_is_rendered_as_json() {
        assert_eq!(render_json(None), Value::Null);
        assert_eq!(
            render_json(Some(r#"{"q":"shoes","n":3}"#)),
            serde_json::json!({"q": "shoes", "n": 3})
        );
        assert_eq!(render_json(Some("[1,2]")), serde_json::json!([1, 2]));
        assert_eq!(
            render_json(Some("plain words")),
            Value::String("plain words".into())
        );
        assert_eq!(
            render_json(Some("{broken")),
            Value::String("{broken".into())
        );
        assert_eq!(
            render_json(Some("\"quoted\"")),
            Value::String("quoted".into())
        );
    }

    #[test]
    fn timeline_nests_children_and_orders_by_start() {
        let e = exec("x", 1_000, Some(10_000_000));
        let steps = vec![
            step("c2", "p1", "child-b", 5_000),
            step("p1", "e000000000000000", "parent", 2_000),
            step("c1", "p1", "child-a", 3_000),
            step("g1", "c1", "grandchild", 4_000),
            step("o1", "ffffffffffffffff", "orphan", 1_500),
            step("r0", "", "root", 9_000),
        ];
        let d = ExecutionDetail {
            execution: e,
            steps,
        };
        let v = execution_detail(&d);
        let names: Vec<&str> = v.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["orphan", "parent", "root"]);
        let parent = &v.steps[1];
        assert_eq!(parent.step.parent_id, None);
        let kids: Vec<&str> = parent
            .children
            .iter()
            .map(|s| s.step.name.as_str())
            .collect();
        assert_eq!(kids, ["child-a", "child-b"]);
        assert_eq!(parent.children[0].children[0].step.name, "grandchild");
        assert_eq!(parent.children[0].children[0].step.depth, 2);
        assert_eq!(
            parent.children[0].children[0].step.parent_id.as_deref(),
            Some("c1")
        );
        assert_eq!(parent.step.offset_ms, 0.001);
        assert_eq!(parent.step.duration_ms, Some(1.0));

        let flat: Vec<String> = flat_steps(&d).into_iter().map(|s| s.name).collect();
        assert_eq!(
            flat,
            [
                "orphan",
                "parent",
                "child-a",
                "grandchild",
                "child-b",
                "root"
            ]
        );
    }

    #[test]
    fn timeline_survives_cycles_and_self_parents() {
        let e = exec("x", 0, None);
        let steps = vec![
            step("a", "b", "a", 10),
            step("b", "a", "b", 20),
            step("s", "s", "self", 30),
            step("k", "b", "kid", 40),
        ];
        let tl = Timeline::build(&e.span_id, &steps);
        assert_eq!(tl.order.len(), 4, "every step appears once");
        // `a` is the earliest member of the cycle: it becomes top-level.
        assert_eq!(tl.roots, vec![0, 2]);
        assert_eq!(tl.parent[1], Some(0));
        assert_eq!(tl.parent[3], Some(1));
        let d = ExecutionDetail {
            execution: e,
            steps,
        };
        let v = execution_detail(&d);
        assert_eq!(v.steps.len(), 2);
        assert_eq!(v.steps[0].children[0].children[0].step.name, "kid");
    }

    #[test]
    fn step_json_shape() {
        let mut s = step("a1", "", "filter", 2_000_000);
        s.output = Some(r#"{"kept":["x"]}"#.into());
        s.input = Some("not json".into());
        s.rejections.insert("price".into(), 3);
        s.candidates.push(CandidateDecision {
            id: "x".into(),
            decision: xray_model::Decision::Accepted,
            reason: None,
            score: Some(0.5),
        });
        let v = serde_json::to_value(StepView::new(&s, 1_000_000, None, 0)).unwrap();
        assert_eq!(v["id"], "a1");
        assert_eq!(v["type"], "custom");
        assert_eq!(v["output"]["kept"][0], "x");
        assert_eq!(v["input"], "not json");
        assert_eq!(v["rejections"]["price"], 3);
        assert_eq!(v["candidates"][0]["decision"], "accepted");
        assert_eq!(v["offset_ms"], 1.0);
        assert_eq!(v["start_time"], "1970-01-01T00:00:00.002000000Z");
        assert!(v["parent_id"].is_null());
    }
}
