//! The run service's endpoint: `POST /ingest` `{"events": [{"type",
//! "data"}]}` → `200 {"status": "ok", "processed": N}`.
//!
//! Event types (aliases in brackets): `run_start` (`run_started`),
//! `step_start` (`step_started`), `step_complete` (`step_completed`,
//! `step_end`), `run_complete` (`run_completed`, `run_end`), `run_failed`.
//! `data` is a run `{id, name, status, total_cost, tags, started_at,
//! completed_at, error}` or a step `{id, run_id, name, type, inputs,
//! outputs, metadata, reasoning, cost, started_at, completed_at, error}`.
//! An unknown type is not fatal: it is skipped, and the answer counts it:
//! `{"status": "ok", "processed": 2, "skipped": 1, "unknown_event_types":
//! {"heartbeat": 1}}`. A known event that cannot be used (no `id`, a step
//! without `run_id`, a bad time) refuses the whole request with
//! `422 {"detail": "events[3].data.run_id: …"}`, so nothing is half-written;
//! auth errors are `{"detail": …}` too (401, 429, 503).
//!
//! Mapping ([`map_run_events`]): a run is an execution (id = the run's
//! `id`, pipeline = its `name`), a step a step of it (span id derived from
//! the run and step ids). Events *patch*: the fields an event carries
//! replace the stored ones, absent fields keep what earlier events (in the
//! same request, or already stored) said, so `run_start`, the steps and
//! `run_complete` sent in separate requests end up as one execution.
//! A finished run or step (completed or failed) carries a higher row
//! version than a running one, so a late `run_start` never reopens it.
//! Step `inputs` / `outputs` that are arrays (or objects with one array)
//! count as candidates in / out; a rejection histogram comes from
//! `outputs.rejections` or `metadata.rejections` (`{reason: count}`) or from
//! `outputs.rejected` (`[{"reason": …}]`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value};
use xray_model::{Execution, MappedBatch, Metadata, Rejections, Status, Step, StepType};
use xray_store::ExecutionDetail;

use super::snapshot::{candidate_counts, version};
use super::values::{
    self, LegacyError, count, flatten_metadata, meta_text, number, payload, status_word, text,
    time_text_or_secs,
};
use super::{ErrorStyle, ids};
use crate::mapper::IngestContext;
use crate::receiver::Ingest;

/// Tag hashed into the ids of run rows.
pub const SERVICE: &str = "runs";

/// Set on the version of finished rows (completed or failed) so that they
/// win over running ones whatever the arrival order. Below the explicit
/// execution bit; arrival times stay below it until 2043.
pub const FINISHED_VERSION_BIT: u64 = 1 << 61;

/// Most events one request may carry.
pub const MAX_EVENTS: usize = 10_000;

/// What is known of a run before a request: its execution (unless only
/// steps arrived so far) and its steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    /// The run, when a run event was seen.
    pub execution: Option<Execution>,
    /// Its steps.
    pub steps: Vec<Step>,
}

impl From<ExecutionDetail> for RunState {
    fn from(d: ExecutionDetail) -> Self {
        RunState {
            execution: Some(d.execution),
            steps: d.steps,
        }
    }
}

/// The newest state of recently ingested runs, per collector: a run's
/// `step_complete` or `run_complete` usually arrives before the rows of its
/// start are written (batching), so the store alone would not know them
/// yet. Bounded: the oldest runs are forgotten first (the store knows them
/// by then). Several replicas each keep their own; across replicas the
/// store lookup and the row versions apply.
#[derive(Debug, Default)]
pub struct RecentRuns {
    inner: std::sync::Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    map: HashMap<(String, String), Remembered>,
    order: std::collections::VecDeque<(String, String)>,
}

#[derive(Debug, Default)]
struct Remembered {
    execution: Option<Execution>,
    /// Steps by span id.
    steps: HashMap<String, Step>,
}

/// Runs [`RecentRuns`] remembers.
pub const RECENT_RUNS: usize = 4096;

/// Steps per run [`RecentRuns`] remembers (later ones are looked up in the
/// store).
pub const RECENT_STEPS_PER_RUN: usize = 1024;

impl RecentRuns {
    /// The remembered state of `run_id` in `app`, with only the steps of
    /// `span_ids` (a request needs the steps it touches, not all of them).
    pub fn get(&self, app: &str, run_id: &str, span_ids: &[String]) -> Option<RunState> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let r = g.map.get(&(app.to_string(), run_id.to_string()))?;
        Some(RunState {
            execution: r.execution.clone(),
            steps: span_ids
                .iter()
                .filter_map(|s| r.steps.get(s).cloned())
                .collect(),
        })
    }

    /// Remembers the rows of `batch` (the newest state of what a request
    /// touched) for `app`.
    pub fn put(&self, app: &str, batch: &MappedBatch) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let touch = |g: &mut Recent, id: &str| -> (String, String) {
            let key = (app.to_string(), id.to_string());
            if !g.map.contains_key(&key) {
                g.map.insert(key.clone(), Remembered::default());
                g.order.push_back(key.clone());
            }
            key
        };
        for e in &batch.executions {
            let key = touch(&mut g, &e.execution_id);
            if let Some(r) = g.map.get_mut(&key) {
                r.execution = Some(e.clone());
            }
        }
        for st in &batch.steps {
            let key = touch(&mut g, &st.execution_id);
            if let Some(r) = g.map.get_mut(&key)
                && (r.steps.len() < RECENT_STEPS_PER_RUN || r.steps.contains_key(&st.span_id))
            {
                r.steps.insert(st.span_id.clone(), st.clone());
            }
        }
        while g.map.len() > RECENT_RUNS {
            match g.order.pop_front() {
                Some(k) => drop(g.map.remove(&k)),
                None => break,
            }
        }
    }
}

/// Fills the gaps of `known` (remembered) with `stored` (from the store):
/// the execution when none is remembered, steps not remembered.
pub fn merge_state(known: &mut RunState, stored: RunState) {
    if known.execution.is_none() {
        known.execution = stored.execution;
    }
    for s in stored.steps {
        if !known.steps.iter().any(|k| k.span_id == s.span_id) {
            known.steps.push(s);
        }
    }
}

/// The span id of step `step_id` of run `run_id` in `app`.
pub fn step_span_id(app: &str, run_id: &str, step_id: &str) -> String {
    ids::span_id(&[app, SERVICE, run_id, step_id])
}

/// The `(run_id, step_id)` pairs a request's step events refer to.
pub fn referenced_steps(events: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in events {
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .and_then(RunEvent::parse);
        if !matches!(kind, Some(RunEvent::StepStart | RunEvent::StepComplete)) {
            continue;
        }
        let d = e.get("data");
        if let (Some(r), Some(s)) = (
            text(d.and_then(|d| d.get("run_id"))),
            text(d.and_then(|d| d.get("id"))),
        ) && !out.contains(&(r.clone(), s.clone()))
        {
            out.push((r, s));
        }
    }
    out
}

/// The event types of the run service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    /// A run started.
    RunStart,
    /// A step started.
    StepStart,
    /// A step finished (completed, or failed when it carries an error).
    StepComplete,
    /// A run finished.
    RunComplete,
    /// A run failed.
    RunFailed,
}

impl RunEvent {
    /// The event of a `type`, aliases included; `None` when unknown.
    pub fn parse(t: &str) -> Option<RunEvent> {
        Some(match t.trim().to_ascii_lowercase().as_str() {
            "run_start" | "run_started" => RunEvent::RunStart,
            "step_start" | "step_started" => RunEvent::StepStart,
            "step_complete" | "step_completed" | "step_end" => RunEvent::StepComplete,
            "run_complete" | "run_completed" | "run_end" => RunEvent::RunComplete,
            "run_failed" => RunEvent::RunFailed,
            _ => return None,
        })
    }
}

/// What [`map_run_events`] made of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsOutcome {
    /// The rows: the newest state of every run and step the request touched.
    pub batch: MappedBatch,
    /// Events of a known type.
    pub processed: u64,
    /// Events of an unknown type, by type.
    pub unknown: BTreeMap<String, u64>,
}

impl RunsOutcome {
    /// The answer of `POST /ingest`.
    pub fn response(&self) -> Value {
        let mut body = serde_json::json!({ "status": "ok", "processed": self.processed });
        if !self.unknown.is_empty() {
            body["skipped"] = self.unknown.values().sum::<u64>().into();
            body["unknown_event_types"] = serde_json::to_value(&self.unknown).unwrap_or_default();
        }
        body
    }
}

/// The events of a `POST /ingest` body.
pub fn parse_ingest(body: &[u8]) -> Result<Vec<Value>, LegacyError> {
    let v: Value = values::parse_body(body)?;
    values::events_envelope(v, MAX_EVENTS, "request")
}

/// The run ids a request's events refer to (runs' `id`, steps' `run_id`),
/// to look their stored state up before mapping.
pub fn referenced_runs(events: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        let Some(kind) = e
            .get("type")
            .and_then(Value::as_str)
            .and_then(RunEvent::parse)
        else {
            continue;
        };
        let data = e.get("data");
        let id = match kind {
            RunEvent::StepStart | RunEvent::StepComplete => data.and_then(|d| d.get("run_id")),
            _ => data.and_then(|d| d.get("id")),
        };
        if let Some(id) = text(id)
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

fn is_finished(s: Status) -> bool {
    matches!(s, Status::Completed | Status::Failed)
}

struct Mapper<'a> {
    ctx: &'a IngestContext,
    prior: &'a HashMap<String, RunState>,
    runs: BTreeMap<String, Execution>,
    steps: BTreeMap<(String, String), Step>,
}

impl Mapper<'_> {
    fn run(&mut self, id: &str) -> &mut Execution {
        let app = self.ctx.app.as_str();
        let ctx = self.ctx;
        let prior = self.prior;
        self.runs.entry(id.to_string()).or_insert_with(|| {
            if let Some(e) = prior.get(id).and_then(|p| p.execution.clone()) {
                return e;
            }
            let mut metadata = Metadata::new();
            metadata.insert("legacy.source".into(), SERVICE.into());
            Execution {
                app: app.to_string(),
                execution_id: id.to_string(),
                trace_id: ids::trace_id_of(app, SERVICE, id),
                span_id: ids::span_id(&[app, SERVICE, id, "execution"]),
                pipeline: "unnamed".into(),
                environment: String::new(),
                service: String::new(),
                status: Status::Running,
                start_time_ns: ctx.ingest_time_ns,
                end_time_ns: None,
                input: None,
                output: None,
                error: None,
                tags: Vec::new(),
                metadata,
                step_count: 0,
                ingest_time_ns: ctx.ingest_time_ns,
                version: 0,
            }
        })
    }

    fn step(&mut self, run_id: &str, id: &str) -> &mut Step {
        let app = self.ctx.app.as_str();
        let ctx = self.ctx;
        let span_id = step_span_id(app, run_id, id);
        let from_prior = self
            .prior
            .get(run_id)
            .and_then(|d| d.steps.iter().find(|s| s.span_id == span_id).cloned());
        self.steps
            .entry((run_id.to_string(), id.to_string()))
            .or_insert_with(|| {
                if let Some(s) = from_prior {
                    return s;
                }
                let mut metadata = Metadata::new();
                metadata.insert("run.step_id".into(), id.to_string());
                Step {
                    app: app.to_string(),
                    execution_id: run_id.to_string(),
                    trace_id: ids::trace_id_of(app, SERVICE, run_id),
                    span_id: span_id.clone(),
                    parent_span_id: ids::span_id(&[app, SERVICE, run_id, "execution"]),
                    name: id.to_string(),
                    step_type: StepType::Custom,
                    status: Status::Running,
                    service: String::new(),
                    start_time_ns: ctx.ingest_time_ns,
                    end_time_ns: None,
                    input: None,
                    output: None,
                    reasoning: None,
                    metadata,
                    candidates_in: None,
                    candidates_out: None,
                    rejections: Rejections::new(),
                    candidates: Vec::new(),
                    model: None,
                    provider: None,
                    input_tokens: None,
                    output_tokens: None,
                    cost: None,
                    confidence: None,
                    error: None,
                    version: 0,
                }
            })
    }

    fn apply_run(
        &mut self,
        kind: RunEvent,
        d: &Map<String, Value>,
        at: &str,
    ) -> Result<(), LegacyError> {
        let id = required_id(d.get("id"), &format!("{at}.id"))?;
        let started = time_text_or_secs(d.get("started_at"), &format!("{at}.started_at"))?;
        let completed = time_text_or_secs(d.get("completed_at"), &format!("{at}.completed_at"))?;
        let now = self.ctx.ingest_time_ns;
        let given = text(d.get("status")).and_then(|s| status_word(&s));
        let r = self.run(&id);
        if let Some(n) = text(d.get("name")).filter(|n| !n.is_empty()) {
            r.pipeline = n;
        }
        if let Some(s) = started {
            r.start_time_ns = s;
        }
        if let Some(c) = completed {
            r.end_time_ns = Some(c);
        }
        let status = match kind {
            RunEvent::RunFailed => Status::Failed,
            RunEvent::RunComplete => match given {
                Some(Status::Failed) => Status::Failed,
                _ => Status::Completed,
            },
            _ => given.unwrap_or(Status::Running),
        };
        // a start event never reopens a finished run
        if !is_finished(r.status) || is_finished(status) {
            r.status = status;
        }
        if is_finished(r.status) && r.end_time_ns.is_none() {
            r.end_time_ns = Some(now.max(r.start_time_ns));
        }
        if let Some(e) = d.get("error").filter(|e| !e.is_null()) {
            r.error = Some(meta_text(e));
        }
        if let Some(c) = d.get("total_cost").filter(|c| !c.is_null()) {
            r.metadata.insert("run.total_cost".into(), meta_text(c));
        }
        match d.get("tags") {
            Some(Value::Array(_)) => r.tags = super::snapshot::tags(d.get("tags")),
            Some(obj @ Value::Object(_)) => flatten_metadata(Some(obj), "tags.", &mut r.metadata),
            _ => {}
        }
        flatten_metadata(d.get("metadata"), "", &mut r.metadata);
        for (k, slot) in [("input", 0), ("inputs", 0), ("output", 1), ("outputs", 1)] {
            if let Some(v) = payload(d.get(k)) {
                if slot == 0 {
                    r.input = Some(v);
                } else {
                    r.output = Some(v);
                }
            }
        }
        if let Some(env) = text(d.get("environment")) {
            r.environment = env;
        }
        Ok(())
    }

    fn apply_step(
        &mut self,
        kind: RunEvent,
        d: &Map<String, Value>,
        at: &str,
    ) -> Result<(), LegacyError> {
        let id = required_id(d.get("id"), &format!("{at}.id"))?;
        let run_id = required_id(d.get("run_id"), &format!("{at}.run_id"))?;
        let started = time_text_or_secs(d.get("started_at"), &format!("{at}.started_at"))?;
        let completed = time_text_or_secs(d.get("completed_at"), &format!("{at}.completed_at"))?;
        let now = self.ctx.ingest_time_ns;
        let s = self.step(&run_id, &id);
        if let Some(n) = text(d.get("name")).filter(|n| !n.is_empty()) {
            s.name = n;
        }
        if let Some(t) = text(d.get("type")) {
            match t.parse::<StepType>() {
                Ok(t) => {
                    s.step_type = t;
                    s.metadata.remove("run.step_type");
                }
                Err(_) => {
                    s.step_type = StepType::Custom;
                    s.metadata.insert("run.step_type".into(), t);
                }
            }
        }
        if let Some(v) = started {
            s.start_time_ns = v;
        }
        if let Some(v) = completed {
            s.end_time_ns = Some(v);
        }
        if let Some(e) = d.get("error").filter(|e| !e.is_null()) {
            s.error = Some(meta_text(e));
        }
        let given = text(d.get("status")).and_then(|v| status_word(&v));
        let status = match kind {
            RunEvent::StepComplete => match given {
                Some(Status::Failed) => Status::Failed,
                Some(Status::Skipped) => Status::Skipped,
                _ if s.error.is_some() => Status::Failed,
                _ => Status::Completed,
            },
            _ => given.unwrap_or(Status::Running),
        };
        if !is_finished(s.status) || is_finished(status) {
            s.status = status;
        }
        if s.status != Status::Running && s.end_time_ns.is_none() {
            s.end_time_ns = Some(now.max(s.start_time_ns));
        }
        if let Some(v) = payload(d.get("inputs").or_else(|| d.get("input"))) {
            s.input = Some(v);
        }
        if let Some(v) = payload(d.get("outputs").or_else(|| d.get("output"))) {
            s.output = Some(v);
        }
        if let Some(v) = payload(d.get("reasoning")) {
            s.reasoning = Some(v);
        }
        if let Some(c) = number(d.get("cost")) {
            s.cost = Some(c);
        }
        let inputs = d.get("inputs").or_else(|| d.get("input"));
        let outputs = d.get("outputs").or_else(|| d.get("output"));
        let meta = d.get("metadata");
        let (cin, cout) = candidate_counts(inputs, outputs);
        let explicit = |k: &str| count(meta.and_then(|m| m.get(k)));
        if let Some(c) = explicit("candidates_in").or(cin) {
            s.candidates_in = Some(c);
        }
        if let Some(c) = explicit("candidates_out").or(cout) {
            s.candidates_out = Some(c);
        }
        let rej = rejections(outputs, meta);
        if !rej.is_empty() {
            s.rejections = rej;
        }
        if let Some(Value::Object(m)) = meta {
            for (k, v) in m {
                if !v.is_null() && k != "rejections" {
                    s.metadata.insert(k.clone(), meta_text(v));
                }
            }
        }
        for (k, field) in [("model", 0), ("provider", 1)] {
            if let Some(v) = text(d.get(k).or_else(|| meta.and_then(|m| m.get(k)))) {
                if field == 0 {
                    s.model = Some(v);
                } else {
                    s.provider = Some(v);
                }
            }
        }
        if let Some(c) = number(d.get("confidence")) {
            s.confidence = Some(c);
        }
        Ok(())
    }
}

fn required_id(v: Option<&Value>, field: &str) -> Result<String, LegacyError> {
    text(v)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| LegacyError::field(field, "required: a non-empty string"))
}

/// The rejection histogram of a step: `outputs.rejections` or
/// `metadata.rejections` (`{reason: count}`), else the reasons of
/// `outputs.rejected` (`[{"reason": …}]`, one count each).
pub fn rejections(outputs: Option<&Value>, metadata: Option<&Value>) -> Rejections {
    let mut out = Rejections::new();
    let hist = outputs
        .and_then(|o| o.get("rejections"))
        .or_else(|| metadata.and_then(|m| m.get("rejections")));
    if let Some(Value::Object(h)) = hist {
        for (reason, n) in h {
            if let Some(n) = count(Some(n)) {
                out.insert(reason.clone(), n);
            }
        }
        return out;
    }
    if let Some(Value::Array(rejected)) = outputs.and_then(|o| o.get("rejected")) {
        for r in rejected {
            let reason = text(r.get("reason")).unwrap_or_else(|| "unspecified".into());
            *out.entry(reason).or_insert(0) += 1;
        }
    }
    out
}

/// Maps run-service events, in order, onto the stored state of the runs
/// they touch (`prior`, by run id) and returns the newest state of every
/// run and step touched. Pure.
pub fn map_run_events(
    events: &[Value],
    ctx: &IngestContext,
    prior: &HashMap<String, RunState>,
) -> Result<RunsOutcome, LegacyError> {
    let mut m = Mapper {
        ctx,
        prior,
        runs: BTreeMap::new(),
        steps: BTreeMap::new(),
    };
    let mut outcome = RunsOutcome::default();
    for (i, e) in events.iter().enumerate() {
        let at = format!("events[{i}]");
        let o = e
            .as_object()
            .ok_or_else(|| LegacyError::field(&at, "expected an event object"))?;
        let t = text(o.get("type"))
            .ok_or_else(|| LegacyError::field(format!("{at}.type"), "required: a string"))?;
        let Some(kind) = RunEvent::parse(&t) else {
            *outcome.unknown.entry(t).or_insert(0) += 1;
            continue;
        };
        let data_at = format!("{at}.data");
        let d = match o.get("data") {
            Some(Value::Object(d)) => d,
            _ => return Err(LegacyError::field(data_at, "required: an object")),
        };
        match kind {
            RunEvent::RunStart | RunEvent::RunComplete | RunEvent::RunFailed => {
                m.apply_run(kind, d, &data_at)?
            }
            RunEvent::StepStart | RunEvent::StepComplete => m.apply_step(kind, d, &data_at)?,
        }
        outcome.processed += 1;
    }
    let base = version(ctx);
    let bump = |s: Status| {
        if is_finished(s) || s == Status::Skipped {
            base | FINISHED_VERSION_BIT
        } else {
            base
        }
    };
    for mut r in m.runs.into_values() {
        r.version = bump(r.status);
        r.ingest_time_ns = ctx.ingest_time_ns;
        outcome.batch.executions.push(r);
    }
    for mut s in m.steps.into_values() {
        s.version = bump(s.status);
        outcome.batch.steps.push(s);
    }
    Ok(outcome)
}

pub(crate) fn router() -> Router<Ingest> {
    Router::new()
        .route("/ingest", post(post_ingest))
        .layer(axum::Extension(std::sync::Arc::new(RecentRuns::default())))
}

async fn post_ingest(
    State(ingest): State<Ingest>,
    axum::Extension(recent): axum::Extension<std::sync::Arc<RecentRuns>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let style = ErrorStyle::Detail;
    let (principal, bytes) =
        match super::authenticated_body(&ingest, style, &headers, body, started).await {
            Ok(pb) => pb,
            Err(r) => return r,
        };
    let events = match parse_ingest(&bytes) {
        Ok(e) => e,
        Err(e) => return super::refuse(style, StatusCode::UNPROCESSABLE_ENTITY, &e, started),
    };
    let app = principal.ingest_app().to_string();
    // What this collector remembers first (newest, possibly not written
    // yet), completed from the store where the memory has gaps.
    let mut prior: HashMap<String, RunState> = HashMap::new();
    let mut ask_store = Vec::new();
    let steps = referenced_steps(&events);
    for id in referenced_runs(&events) {
        let spans: Vec<String> = steps
            .iter()
            .filter(|(r, _)| *r == id)
            .map(|(r, s)| step_span_id(&app, r, s))
            .collect();
        match recent.get(&app, &id, &spans) {
            Some(st) => {
                if st.execution.is_none() || st.steps.len() < spans.len() {
                    ask_store.push(id.clone());
                }
                prior.insert(id, st);
            }
            None => ask_store.push(id),
        }
    }
    for (id, d) in super::prior_executions(&ingest, &app, ask_store).await {
        let stored = RunState::from(d);
        match prior.get_mut(&id) {
            Some(known) => merge_state(known, stored),
            None => drop(prior.insert(id, stored)),
        }
    }
    let ctx = IngestContext::new(app, crate::receiver::now_ns());
    let outcome = match map_run_events(&events, &ctx, &prior) {
        Ok(o) => o,
        Err(e) => return super::refuse(style, StatusCode::UNPROCESSABLE_ENTITY, &e, started),
    };
    let body = outcome.response();
    if !outcome.unknown.is_empty() {
        tracing::debug!(unknown = ?outcome.unknown, "run events of unknown types skipped");
    }
    let remember = outcome.batch.clone();
    if let Err(r) = super::submit(&ingest, style, outcome.batch, started).await {
        return r;
    }
    recent.put(ctx.app.as_str(), &remember);
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(events: Value, at: i64, prior: &HashMap<String, RunState>) -> RunsOutcome {
        let ctx = IngestContext::new("app", at);
        map_run_events(events["events"].as_array().unwrap(), &ctx, prior).unwrap()
    }

    #[test]
    fn remembered_runs_patch_later_requests_and_stay_bounded() {
        let recent = RecentRuns::default();
        let first = map(
            json!({"events": [
                {"type": "run_start", "data": {"id": "r", "name": "scoring"}},
                {"type": "step_start", "data": {"id": "s", "run_id": "r", "type": "filter"}}
            ]}),
            1_000,
            &HashMap::new(),
        );
        recent.put("app", &first.batch);
        let span = step_span_id("app", "r", "s");
        let st = recent.get("app", "r", std::slice::from_ref(&span)).unwrap();
        assert_eq!(st.steps.len(), 1);
        assert!(recent.get("other", "r", &[]).is_none());
        let prior = HashMap::from([("r".to_string(), st)]);
        let later = map(
            json!({"events": [
                {"type": "step_end", "data": {"id": "s", "run_id": "r"}},
                {"type": "run_end", "data": {"id": "r"}}
            ]}),
            2_000,
            &prior,
        );
        let run = &later.batch.executions[0];
        assert_eq!(
            (run.pipeline.as_str(), run.status),
            ("scoring", Status::Completed)
        );
        assert!(run.version & FINISHED_VERSION_BIT != 0);
        let step = &later.batch.steps[0];
        assert_eq!(
            (step.step_type, step.status),
            (StepType::Filter, Status::Completed)
        );

        for i in 0..RECENT_RUNS + 10 {
            let mut b = first.batch.clone();
            b.executions[0].execution_id = format!("run-{i}");
            b.steps.clear();
            recent.put("app", &b);
        }
        assert!(
            recent.get("app", "r", &[]).is_none(),
            "the oldest run is forgotten"
        );
        assert!(
            recent
                .get("app", &format!("run-{}", RECENT_RUNS + 9), &[])
                .is_some()
        );
    }

    #[test]
    fn gaps_are_filled_from_the_store() {
        let a = map(
            json!({"events": [{"type": "step_start", "data": {"id": "s", "run_id": "r", "name": "n"}}]}),
            1,
            &HashMap::new(),
        );
        let b = map(
            json!({"events": [{"type": "run_start", "data": {"id": "r", "name": "p"}},
                              {"type": "step_start", "data": {"id": "t", "run_id": "r"}}]}),
            2,
            &HashMap::new(),
        );
        let mut known = RunState {
            execution: None,
            steps: a.batch.steps.clone(),
        };
        let stored = RunState {
            execution: b.batch.executions.first().cloned(),
            steps: [b.batch.steps.clone(), a.batch.steps.clone()].concat(),
        };
        merge_state(&mut known, stored);
        assert_eq!(known.execution.unwrap().pipeline, "p");
        assert_eq!(known.steps.len(), 2);
        assert_eq!(known.steps[0], a.batch.steps[0], "the remembered step wins");
    }
}
