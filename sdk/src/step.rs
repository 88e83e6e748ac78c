//! Steps: one decision-making stage of an execution.
//!
//! [`StepBuilder`] (from [`Execution::step`]) is a by-value builder ended with
//! [`StepBuilder::record`]; [`SpanStep`] (from [`Execution::span_step`]) is a
//! timed scope with the same setters by `&mut`, recorded on
//! [`SpanStep::end`] or when dropped. Both measure the step from their
//! creation to their recording.
//!
//! Recording does no I/O: in snapshot mode it appends the step to the
//! execution's buffer; in live mode it ends a child span, which the batch span
//! processor queues.

use std::borrow::Cow;
use std::fmt::Display;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};
use serde::Serialize;
use xray_model::{CandidateDecision, Decision, Status, StepType, semconv};

use crate::client::Limits;
use crate::execution::Execution;
use crate::export::Counters;
use crate::value::{self, Capped};

/// Everything recorded about one step, kept until the step is emitted.
#[derive(Debug, Clone)]
pub(crate) struct StepData {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: Option<StepType>,
    pub(crate) status: Status,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) input: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) reasoning: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) metadata: Vec<(Cow<'static, str>, String)>,
    pub(crate) candidates_in: Option<u64>,
    pub(crate) candidates_out: Option<u64>,
    pub(crate) rejections: Vec<(Cow<'static, str>, u64)>,
    pub(crate) candidates: Vec<CandidateDecision>,
    pub(crate) candidates_seen: u64,
    pub(crate) cost: Option<f64>,
    pub(crate) confidence: Option<f64>,
    pub(crate) model: Option<Cow<'static, str>>,
    pub(crate) provider: Option<Cow<'static, str>>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
}

impl StepData {
    pub(crate) fn new(name: Cow<'static, str>, start: SystemTime) -> Self {
        Self {
            name,
            kind: None,
            status: Status::Completed,
            start,
            end: start,
            input: None,
            output: None,
            reasoning: None,
            error: None,
            metadata: Vec::new(),
            candidates_in: None,
            candidates_out: None,
            rejections: Vec::new(),
            candidates: Vec::new(),
            candidates_seen: 0,
            cost: None,
            confidence: None,
            model: None,
            provider: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    fn add_rejection(&mut self, reason: Cow<'static, str>, count: u64) {
        match self.rejections.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n = n.saturating_add(count),
            None => self.rejections.push((reason, count)),
        }
    }

    /// Keeps at most `cap` sampled decisions: the first ones seen, except that
    /// a `selected` candidate displaces the most recent non-selected one, so
    /// the answer of a step is never sampled away.
    fn add_candidate(&mut self, c: CandidateDecision, cap: usize, counters: &Counters) {
        self.candidates_seen += 1;
        if self.candidates.len() < cap {
            self.candidates.push(c);
            return;
        }
        Counters::bump(&counters.candidates_sampled_out);
        if c.decision == Decision::Selected
            && let Some(slot) = self
                .candidates
                .iter_mut()
                .rev()
                .find(|x| x.decision != Decision::Selected)
        {
            *slot = c;
        }
    }
}

/// Unix nanoseconds of `t`, clamped into `i64`.
pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn count(n: u64) -> Value {
    Value::I64(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Metadata key under which the SDK reports how many candidate decisions a
/// step saw in total when it had to sample them (`xray.step.metadata.` +
/// this).
pub(crate) const CANDIDATES_SEEN_KEY: &str = "xray.sdk.candidates_seen";

/// Converts a finished step into the attributes of §4 of the architecture:
/// the attributes of a span event (snapshot mode, with
/// `xray.step.start_time_unix_nano`) or of a child span (live mode, where
/// the span's own start time carries it).
pub(crate) fn step_attributes(d: &mut StepData, snapshot: bool) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(8 + d.metadata.len());
    a.push(KeyValue::new(semconv::STEP_NAME, d.name.clone()));
    if let Some(kind) = d.kind {
        a.push(KeyValue::new(semconv::STEP_TYPE, kind.as_str()));
    }
    a.push(KeyValue::new(semconv::STEP_STATUS, d.status.as_str()));
    if snapshot {
        a.push(KeyValue::new(
            semconv::STEP_START_TIME_UNIX_NANO,
            unix_nanos(d.start),
        ));
    }
    if let Some(v) = d.input.take() {
        a.push(KeyValue::new(semconv::STEP_INPUT, v));
    }
    if let Some(v) = d.output.take() {
        a.push(KeyValue::new(semconv::STEP_OUTPUT, v));
    }
    if let Some(v) = d.reasoning.take() {
        a.push(KeyValue::new(semconv::STEP_REASONING, v));
    }
    if let Some(v) = d.error.clone() {
        a.push(KeyValue::new(semconv::STEP_ERROR, v));
    }
    if let Some(n) = d.candidates_in {
        a.push(KeyValue::new(semconv::STEP_CANDIDATES_IN, count(n)));
    }
    if let Some(n) = d.candidates_out {
        a.push(KeyValue::new(semconv::STEP_CANDIDATES_OUT, count(n)));
    }
    if !d.rejections.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = d
            .rejections
            .iter()
            .map(|(r, n)| (r.to_string(), serde_json::Value::from(*n)))
            .collect();
        // serde_json's default map is ordered, so the text is deterministic.
        a.push(KeyValue::new(
            semconv::STEP_REJECTIONS,
            serde_json::Value::Object(map).to_string(),
        ));
    }
    if !d.candidates.is_empty() {
        if let Ok(text) = serde_json::to_string(&d.candidates) {
            a.push(KeyValue::new(semconv::STEP_CANDIDATES, text));
        }
        if d.candidates_seen > d.candidates.len() as u64 {
            a.push(KeyValue::new(
                format!("{}{CANDIDATES_SEEN_KEY}", semconv::STEP_METADATA_PREFIX),
                d.candidates_seen.to_string(),
            ));
        }
    }
    if let Some(v) = d.cost {
        a.push(KeyValue::new(semconv::STEP_COST, v));
    }
    if let Some(v) = d.confidence {
        a.push(KeyValue::new(semconv::STEP_CONFIDENCE, v));
    }
    if let Some(v) = d.model.take() {
        a.push(KeyValue::new(semconv::GEN_AI_REQUEST_MODEL, v));
    }
    if let Some(v) = d.provider.take() {
        a.push(KeyValue::new(semconv::GEN_AI_PROVIDER_NAME, v));
    }
    if let Some(n) = d.input_tokens {
        a.push(KeyValue::new(semconv::GEN_AI_USAGE_INPUT_TOKENS, count(n)));
    }
    if let Some(n) = d.output_tokens {
        a.push(KeyValue::new(semconv::GEN_AI_USAGE_OUTPUT_TOKENS, count(n)));
    }
    for (k, v) in d.metadata.drain(..) {
        a.push(KeyValue::new(
            Key::new(format!("{}{k}", semconv::STEP_METADATA_PREFIX)),
            v,
        ));
    }
    a
}

/// A string array attribute value.
pub(crate) fn string_array(items: Vec<String>) -> Value {
    Value::Array(Array::String(
        items.into_iter().map(StringValue::from).collect(),
    ))
}

/// Capped serialization with the bookkeeping every setter shares.
fn capture_json<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
    counters: &Counters,
) -> Option<String> {
    match value::json(value, limits.max_field_bytes) {
        Ok(c) => Some(note(c, counters)),
        Err(e) => {
            Counters::bump(&counters.serialization_errors);
            tracing::debug!(error = %e, "x-ray value could not be serialized as JSON; field left out");
            None
        }
    }
}

pub(crate) fn capture_text(text: String, limits: &Limits, counters: &Counters) -> String {
    note(value::owned_text(text, limits.max_field_bytes), counters)
}

fn note(c: Capped, counters: &Counters) -> String {
    if c.truncated {
        Counters::bump(&counters.fields_truncated);
    }
    c.text
}

/// Generates the setters shared by [`StepBuilder`] (by value) and
/// [`SpanStep`] (by `&mut`). The receiver's `self` is spelled here so that
/// macro hygiene sees one `self`.
macro_rules! step_setters {
    (@gen [$($recv:tt)*] ) => {
        /// Sets what kind of work the step does (`xray.step.type`).
        pub fn kind($($recv)* self, kind: StepType) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.kind = Some(kind);
            }
            self
        }

        /// Records the step input, serialized as JSON and capped at
        /// [`XRayBuilder::max_field_bytes`](crate::XRayBuilder::max_field_bytes).
        /// Strings become JSON strings; use [`input_raw`](Self::input_raw)
        /// for text that already is JSON.
        pub fn input<T: Serialize + ?Sized>($($recv)* self, value: &T) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.input = capture_json(value, &self.exec.shared.limits, &self.exec.shared.counters);
            }
            self
        }

        /// Records the step input as given (already-serialized JSON or plain
        /// text), capped like [`input`](Self::input).
        pub fn input_raw($($recv)* self, text: impl Into<String>) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.input = Some(capture_text(text.into(), &self.exec.shared.limits, &self.exec.shared.counters));
            }
            self
        }

        /// Records the step output, serialized as JSON and capped like
        /// [`input`](Self::input).
        pub fn output<T: Serialize + ?Sized>($($recv)* self, value: &T) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.output = capture_json(value, &self.exec.shared.limits, &self.exec.shared.counters);
            }
            self
        }

        /// Records the step output as given (already-serialized JSON or plain
        /// text), capped.
        pub fn output_raw($($recv)* self, text: impl Into<String>) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.output = Some(capture_text(text.into(), &self.exec.shared.limits, &self.exec.shared.counters));
            }
            self
        }

        /// Records why the step decided what it did (free text, capped).
        pub fn reasoning($($recv)* self, text: impl Into<String>) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.reasoning = Some(capture_text(text.into(), &self.exec.shared.limits, &self.exec.shared.counters));
            }
            self
        }

        /// Adds a metadata entry (`xray.step.metadata.<key>`); the value is
        /// stored as its `Display` text, capped.
        pub fn metadata(
            $($recv)* self,
            key: impl Into<Cow<'static, str>>,
            value: impl Display,
        ) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                let v = capture_text(value.to_string(), &self.exec.shared.limits, &self.exec.shared.counters);
                d.metadata.push((key.into(), v));
            }
            self
        }

        /// Sets how many candidates entered the step.
        pub fn candidates_in($($recv)* self, n: u64) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.candidates_in = Some(n);
            }
            self
        }

        /// Sets how many candidates left the step.
        pub fn candidates_out($($recv)* self, n: u64) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.candidates_out = Some(n);
            }
            self
        }

        /// Adds `count` rejections for `reason` to the step's rejection
        /// histogram (`xray.step.rejections`); repeated reasons add up.
        pub fn reject(
            $($recv)* self,
            reason: impl Into<Cow<'static, str>>,
            count: u64,
        ) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.add_rejection(reason.into(), count);
            }
            self
        }

        /// Records what the step did with one candidate
        /// (`xray.step.candidates`). At most
        /// [`XRayBuilder::max_candidates_per_step`](crate::XRayBuilder::max_candidates_per_step)
        /// decisions are kept per step (the first ones; a `selected` one
        /// replaces the latest non-selected one); the total seen is then
        /// reported as step metadata `xray.sdk.candidates_seen`. This does not
        /// touch the rejection histogram: use [`reject`](Self::reject) for the
        /// counts.
        pub fn candidate<'r>(
            $($recv)* self,
            id: impl Display,
            decision: Decision,
            reason: impl Into<Option<&'r str>>,
            score: impl Into<Option<f64>>,
        ) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                let c = CandidateDecision {
                    id: id.to_string(),
                    decision,
                    reason: reason.into().map(str::to_owned),
                    score: score.into(),
                };
                d.add_candidate(c, self.exec.shared.limits.max_candidates_per_step, &self.exec.shared.counters);
            }
            self
        }

        /// Sets the model a language-model step used (`gen_ai.request.model`).
        pub fn model($($recv)* self, model: impl Into<Cow<'static, str>>) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.model = Some(model.into());
            }
            self
        }

        /// Sets the model provider, e.g. `openai` (`gen_ai.provider.name`).
        pub fn provider($($recv)* self, provider: impl Into<Cow<'static, str>>) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.provider = Some(provider.into());
            }
            self
        }

        /// Sets the tokens a language-model step used
        /// (`gen_ai.usage.input_tokens` / `gen_ai.usage.output_tokens`).
        pub fn tokens($($recv)* self, input: u64, output: u64) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.input_tokens = Some(input);
                d.output_tokens = Some(output);
            }
            self
        }

        /// Sets the cost of the step, e.g. in USD (`xray.step.cost`).
        pub fn cost($($recv)* self, cost: f64) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.cost = Some(cost);
            }
            self
        }

        /// Sets the confidence of the step's decision (`xray.step.confidence`).
        pub fn confidence($($recv)* self, confidence: f64) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.confidence = Some(confidence);
            }
            self
        }

        /// Marks the step failed with `error`'s message (`xray.step.status =
        /// failed`, `xray.step.error`).
        pub fn fail<E: Display + ?Sized>($($recv)* self, error: &E) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.status = Status::Failed;
                d.error = Some(capture_text(error.to_string(), &self.exec.shared.limits, &self.exec.shared.counters));
            }
            self
        }

        /// Marks the step skipped (`xray.step.status = skipped`).
        pub fn skipped($($recv)* self) -> step_setters!(@ret $($recv)*) {
            if let Some(d) = self.data.as_deref_mut() {
                d.status = Status::Skipped;
            }
            self
        }
    };
    (@ret mut) => { Self };
    (@ret & mut) => { &mut Self };
    ($($recv:tt)*) => { step_setters!(@gen [$($recv)*]); };
}

/// Builder for one step, returned by [`Execution::step`]. The step's start
/// time is the moment it was created; [`record`](Self::record) ends it.
///
/// Setters take and return the builder by value, so they chain; to add to a
/// builder in a loop, reassign it (`f = f.reject("low_rating", 1)`). When the
/// SDK is disabled or the execution is not sampled, every setter is a no-op
/// and nothing is serialized.
///
/// A builder dropped without [`record`](Self::record) records nothing.
#[derive(Debug)]
#[must_use = "a step is only recorded by calling .record()"]
pub struct StepBuilder<'a> {
    pub(crate) exec: &'a Execution,
    pub(crate) data: Option<Box<StepData>>,
}

impl StepBuilder<'_> {
    step_setters!(mut);

    /// Ends the step now and records it on its execution.
    pub fn record(mut self) {
        if let Some(d) = self.data.take() {
            self.exec.record_step(d, SystemTime::now());
        }
    }
}

/// A timed step, returned by [`Execution::span_step`]: started when created,
/// recorded when [`end`](Self::end) is called or when it is dropped
/// (including on early return or `?`).
///
/// Its setters are the same as [`StepBuilder`]'s, by `&mut`.
#[derive(Debug)]
#[must_use = "bind the scope to a variable (`let _s = ...`) so it lasts until the step is done"]
pub struct SpanStep<'a> {
    pub(crate) exec: &'a Execution,
    pub(crate) data: Option<Box<StepData>>,
}

impl SpanStep<'_> {
    step_setters!(&mut);

    /// Ends the step now and records it.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(d) = self.data.take() {
            self.exec.record_step(d, SystemTime::now());
        }
    }
}

impl Drop for SpanStep<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> StepData {
        StepData::new(
            Cow::Borrowed("filter_price"),
            UNIX_EPOCH + std::time::Duration::from_nanos(1_000),
        )
    }

    fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn rejections_add_up_per_reason_and_serialize_sorted() {
        let mut d = data();
        d.add_rejection("price".into(), 3);
        d.add_rejection("rating".into(), 1);
        d.add_rejection("price".into(), 2);
        let a = step_attributes(&mut d, true);
        assert_eq!(
            get(&a, semconv::STEP_REJECTIONS).unwrap().as_str(),
            r#"{"price":5,"rating":1}"#
        );
        assert_eq!(
            get(&a, semconv::STEP_START_TIME_UNIX_NANO),
            Some(&Value::I64(1_000))
        );
    }

    #[test]
    fn live_attributes_carry_no_start_time() {
        let a = step_attributes(&mut data(), false);
        assert!(get(&a, semconv::STEP_START_TIME_UNIX_NANO).is_none());
        assert_eq!(get(&a, semconv::STEP_STATUS).unwrap().as_str(), "completed");
    }

    #[test]
    fn candidate_cap_keeps_the_first_and_never_loses_a_selected_one() {
        let counters = Counters::default();
        let mut d = data();
        for i in 0..5 {
            d.add_candidate(
                CandidateDecision {
                    id: i.to_string(),
                    decision: Decision::Rejected,
                    reason: None,
                    score: None,
                },
                3,
                &counters,
            );
        }
        d.add_candidate(
            CandidateDecision {
                id: "winner".into(),
                decision: Decision::Selected,
                reason: None,
                score: Some(0.9),
            },
            3,
            &counters,
        );
        let ids: Vec<_> = d.candidates.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "winner"]);
        assert_eq!(d.candidates_seen, 6);
        assert_eq!(
            counters
                .candidates_sampled_out
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        let a = step_attributes(&mut d, true);
        assert_eq!(
            get(&a, "xray.step.metadata.xray.sdk.candidates_seen")
                .unwrap()
                .as_str(),
            "6"
        );
    }
}
