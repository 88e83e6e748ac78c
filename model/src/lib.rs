//! Domain types of X-Ray: executions, steps, candidate decisions, apps and API
//! keys, plus [`semconv`], the attribute names of the wire contract.
//!
//! This crate does no I/O. Every other crate speaks in these types: the
//! collector maps OTLP spans into a [`MappedBatch`], sinks write it, stores
//! read [`Execution`]s and [`Step`]s back.

pub mod legacy_ids;
pub mod semconv;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The app every row belongs to when authentication is off.
pub const DEFAULT_APP: &str = "default";

/// A value that could not be parsed into one of the model's enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} \"{value}\" (expected {expected})")]
pub struct ParseEnumError {
    /// What was being parsed, e.g. `status`.
    pub kind: &'static str,
    /// The offending value.
    pub value: String,
    /// The accepted spellings, for the message.
    pub expected: &'static str,
}

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling (lowercase).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            /// Parses the wire spelling, ignoring ASCII case and surrounding space.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $( if t.eq_ignore_ascii_case($text) { return Ok($name::$variant); } )+
                Err(ParseEnumError { kind: $kind, value: s.to_string(), expected: $expected })
            }
        }
    };
}

string_enum! {
    /// Status of an execution or a step.
    ///
    /// Executions are `running`, `completed` or `failed`; steps are
    /// `completed`, `failed` or `skipped` (a step still open is `running`).
    Status, "status", "running, completed, failed or skipped" {
        /// Started and not finished yet.
        Running => "running",
        /// Finished normally.
        Completed => "completed",
        /// Finished with an error.
        Failed => "failed",
        /// Not run (steps only).
        Skipped => "skipped",
    }
}

string_enum! {
    /// What kind of work a step does.
    StepType, "step type", "llm, retrieval, filter, rank, select, tool, logic or custom" {
        /// A call to a language model (chat, completion, embeddings).
        Llm => "llm",
        /// Fetching candidates: search, vector lookup, database query.
        Retrieval => "retrieval",
        /// Dropping candidates by rules.
        Filter => "filter",
        /// Ordering candidates (ranker, reranker).
        Rank => "rank",
        /// Picking the final answer among candidates.
        Select => "select",
        /// A tool call.
        Tool => "tool",
        /// Control logic: chains, agents, routers.
        Logic => "logic",
        /// Anything else.
        Custom => "custom",
    }
}

string_enum! {
    /// The fate of one candidate at a step.
    Decision, "decision", "accepted, rejected or selected" {
        /// Kept and passed on.
        Accepted => "accepted",
        /// Dropped.
        Rejected => "rejected",
        /// Chosen as the answer.
        Selected => "selected",
    }
}

/// One sampled candidate decision recorded at a step
/// (`xray.step.candidates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateDecision {
    /// Candidate identifier, as the pipeline knows it.
    pub id: String,
    /// What the step did with it.
    pub decision: Decision,
    /// Why, e.g. `price_above_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Score the step gave it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Rejection histogram of a step: reason → number of candidates rejected for
/// it. Sorted by reason so serialization is deterministic.
pub type Rejections = BTreeMap<String, u64>;

/// Free-form metadata: key → value as string.
pub type Metadata = BTreeMap<String, String>;

/// One run of a named pipeline.
///
/// Identity: `(app, execution_id)`. `trace_id` joins the execution to its
/// steps, whichever arrives first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// App (tenant) the execution belongs to.
    pub app: String,
    /// Execution id (`xray.execution.id`, default the trace id in hex).
    pub execution_id: String,
    /// Trace id, 32 lowercase hex characters.
    pub trace_id: String,
    /// Span id of the execution span, 16 lowercase hex characters.
    pub span_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Deployment environment, e.g. `prod`; empty when unknown.
    pub environment: String,
    /// `service.name` of the resource that emitted the execution span.
    pub service: String,
    /// Execution status.
    pub status: Status,
    /// Start, unix nanoseconds.
    pub start_time_ns: i64,
    /// End, unix nanoseconds; `None` while running.
    pub end_time_ns: Option<i64>,
    /// Input as sent: JSON text, or plain text when it was not valid JSON.
    pub input: Option<String>,
    /// Output as sent: JSON text, or plain text.
    pub output: Option<String>,
    /// Error message when failed.
    pub error: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata entries (`xray.metadata.*`, plus mapping warnings).
    pub metadata: Metadata,
    /// Number of steps carried by the execution span itself (snapshot mode);
    /// stores count child-span steps at read time.
    pub step_count: u32,
    /// When the collector received it, unix nanoseconds.
    pub ingest_time_ns: i64,
    /// Row version: the newest version of the same execution wins.
    pub version: u64,
}

impl Execution {
    /// Duration in nanoseconds, when the execution has ended.
    pub fn duration_ns(&self) -> Option<i64> {
        self.end_time_ns.map(|e| (e - self.start_time_ns).max(0))
    }
}

/// One step of an execution.
///
/// Identity: `(app, trace_id, span_id)`. For steps sent as span events the
/// collector derives a stable span id from the execution span and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// App (tenant).
    pub app: String,
    /// Execution id when known at ingest (snapshot mode, or an explicit
    /// `xray.execution.id`); stores join steps to executions by `trace_id`.
    pub execution_id: String,
    /// Trace id, 32 lowercase hex characters: the join key.
    pub trace_id: String,
    /// Span id, 16 lowercase hex characters.
    pub span_id: String,
    /// Parent span id; empty for a root span.
    pub parent_span_id: String,
    /// Step name.
    pub name: String,
    /// Step type.
    pub step_type: StepType,
    /// Step status.
    pub status: Status,
    /// `service.name` of the emitting resource.
    pub service: String,
    /// Start, unix nanoseconds.
    pub start_time_ns: i64,
    /// End, unix nanoseconds.
    pub end_time_ns: Option<i64>,
    /// Input: JSON text, or plain text.
    pub input: Option<String>,
    /// Output: JSON text, or plain text.
    pub output: Option<String>,
    /// Why the step decided what it did.
    pub reasoning: Option<String>,
    /// Metadata entries.
    pub metadata: Metadata,
    /// Candidates entering the step.
    pub candidates_in: Option<u64>,
    /// Candidates leaving the step.
    pub candidates_out: Option<u64>,
    /// Rejection histogram.
    pub rejections: Rejections,
    /// Sampled candidate decisions.
    pub candidates: Vec<CandidateDecision>,
    /// Model used (LLM steps).
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
    /// Row version: the newest version of the same step wins.
    pub version: u64,
}

impl Step {
    /// Duration in nanoseconds, when the step has ended.
    pub fn duration_ns(&self) -> Option<i64> {
        self.end_time_ns.map(|e| (e - self.start_time_ns).max(0))
    }
}

/// What the mapper produces from one export request and what sinks write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MappedBatch {
    /// Executions found in the request.
    pub executions: Vec<Execution>,
    /// Steps found in the request.
    pub steps: Vec<Step>,
}

impl MappedBatch {
    /// True when the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.executions.is_empty() && self.steps.is_empty()
    }

    /// Number of rows (executions plus steps).
    pub fn len(&self) -> usize {
        self.executions.len() + self.steps.len()
    }

    /// Appends the rows of `other`.
    pub fn extend(&mut self, other: MappedBatch) {
        self.executions.extend(other.executions);
        self.steps.extend(other.steps);
    }
}

/// A tenant: every execution belongs to exactly one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// App id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, unix nanoseconds.
    pub created_at_ns: i64,
}

/// An API key of an app. The key itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Key id (public, used to revoke).
    pub id: String,
    /// App the key belongs to.
    pub app_id: String,
    /// First characters of the key, for display (`xr_AbC1…`).
    pub prefix: String,
    /// Hash of the full key (hex).
    pub hash: String,
    /// Scopes granted, e.g. `ingest`, `read`.
    pub scopes: Vec<String>,
    /// Creation time, unix nanoseconds.
    pub created_at_ns: i64,
    /// Revocation time, unix nanoseconds.
    pub revoked_at_ns: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text_and_serde() {
        for s in StepType::ALL {
            assert_eq!(s.as_str().parse::<StepType>().unwrap(), *s);
            let j = serde_json::to_string(s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<StepType>(&j).unwrap(), *s);
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), *s);
        }
        assert_eq!(" LLM ".parse::<StepType>().unwrap(), StepType::Llm);
        let err = "clickhuose".parse::<Decision>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown decision \"clickhuose\" (expected accepted, rejected or selected)"
        );
    }

    #[test]
    fn durations_never_negative() {
        let mut e = Execution {
            app: DEFAULT_APP.into(),
            execution_id: "e".into(),
            trace_id: "t".into(),
            span_id: "s".into(),
            pipeline: "p".into(),
            environment: String::new(),
            service: String::new(),
            status: Status::Running,
            start_time_ns: 100,
            end_time_ns: None,
            input: None,
            output: None,
            error: None,
            tags: vec![],
            metadata: Metadata::new(),
            step_count: 0,
            ingest_time_ns: 0,
            version: 1,
        };
        assert_eq!(e.duration_ns(), None);
        e.end_time_ns = Some(50);
        assert_eq!(e.duration_ns(), Some(0));
        e.end_time_ns = Some(350);
        assert_eq!(e.duration_ns(), Some(250));
    }

    #[test]
    fn candidate_decision_serde_shape() {
        let c: CandidateDecision = serde_json::from_str(
            r#"{"id":"B0-1","decision":"rejected","reason":"price","score":0.3}"#,
        )
        .unwrap();
        assert_eq!(c.decision, Decision::Rejected);
        assert_eq!(c.reason.as_deref(), Some("price"));
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["decision"], "rejected");
    }
}

/// The rejection histogram of a step as shown everywhere: the step's own
/// `rejections` (reason → count), plus one per sampled *rejected* candidate
/// whose reason does not appear in that histogram. Sampled candidates are a
/// sample of what the histogram already counts, so a reason present in both is
/// counted once, from the histogram. A rejected candidate without a reason
/// counts under `"unspecified"`.
pub fn merge_rejections(rejections: &Rejections, candidates: &[CandidateDecision]) -> Rejections {
    let mut merged = rejections.clone();
    for c in candidates
        .iter()
        .filter(|c| c.decision == Decision::Rejected)
    {
        let reason = c.reason.as_deref().unwrap_or("unspecified");
        if !rejections.contains_key(reason) {
            *merged.entry(reason.to_string()).or_insert(0) += 1;
        }
    }
    merged
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn cand(reason: Option<&str>, decision: Decision) -> CandidateDecision {
        CandidateDecision {
            id: "c".into(),
            decision,
            reason: reason.map(String::from),
            score: None,
        }
    }

    #[test]
    fn histogram_wins_and_samples_fill_gaps() {
        let mut h = Rejections::new();
        h.insert("price".into(), 40);
        let c = vec![
            cand(Some("price"), Decision::Rejected),
            cand(Some("rating"), Decision::Rejected),
            cand(Some("rating"), Decision::Rejected),
            cand(None, Decision::Rejected),
            cand(Some("ok"), Decision::Accepted),
        ];
        let m = merge_rejections(&h, &c);
        assert_eq!(m.get("price"), Some(&40));
        assert_eq!(m.get("rating"), Some(&2));
        assert_eq!(m.get("unspecified"), Some(&1));
        assert_eq!(m.len(), 3);
    }
}
