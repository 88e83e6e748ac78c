//! Executions: one run of a named pipeline, carried by one OpenTelemetry
//! span with `xray.pipeline` set.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, Key, KeyValue};
use serde::Serialize;
use xray_model::{Status, semconv};

use crate::client::{DeliveryMode, Shared};
use crate::export::Counters;
use crate::step::{self, SpanStep, StepBuilder, StepData, capture_text, string_array};
use crate::value;

/// Execution metadata key under which the SDK reports how many steps it
/// dropped because the execution reached
/// [`XRayBuilder::max_steps_per_execution`](crate::XRayBuilder::max_steps_per_execution).
pub const DROPPED_STEPS_METADATA_KEY: &str = "xray.sdk.dropped_steps";

/// Builder for an execution, returned by [`XRay::execution`](crate::XRay::execution);
/// [`start`](Self::start) begins it.
#[derive(Debug)]
#[must_use = "an execution only begins with .start()"]
pub struct ExecutionBuilder {
    shared: Arc<Shared>,
    pipeline: Cow<'static, str>,
    id: Option<String>,
    input: Option<String>,
    tags: Vec<String>,
    metadata: Vec<(Cow<'static, str>, String)>,
}

impl ExecutionBuilder {
    pub(crate) fn new(shared: Arc<Shared>, pipeline: Cow<'static, str>) -> Self {
        Self {
            shared,
            pipeline,
            id: None,
            input: None,
            tags: Vec::new(),
            metadata: Vec::new(),
        }
    }

    fn recording(&self) -> bool {
        self.shared.tracer.is_some()
    }

    /// Sets the execution id (`xray.execution.id`). By default the collector
    /// uses the trace id in hex, which [`Execution::id`] also returns.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Records the execution input, serialized as JSON and capped.
    pub fn input<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        if self.recording() {
            match value::json(value, self.shared.limits.max_field_bytes) {
                Ok(c) => {
                    if c.truncated {
                        Counters::bump(&self.shared.counters.fields_truncated);
                    }
                    self.input = Some(c.text);
                }
                Err(e) => {
                    Counters::bump(&self.shared.counters.serialization_errors);
                    tracing::debug!(error = %e, "x-ray execution input could not be serialized as JSON; left out");
                }
            }
        }
        self
    }

    /// Records the execution input as given (JSON or plain text), capped.
    pub fn input_raw(mut self, text: impl Into<String>) -> Self {
        if self.recording() {
            self.input = Some(capture_text(
                text.into(),
                &self.shared.limits,
                &self.shared.counters,
            ));
        }
        self
    }

    /// Adds a tag (`xray.tags`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata entry (`xray.metadata.<key>`), stored as its
    /// `Display` text.
    pub fn metadata(mut self, key: impl Into<Cow<'static, str>>, value: impl Display) -> Self {
        if self.recording() {
            let v = capture_text(
                value.to_string(),
                &self.shared.limits,
                &self.shared.counters,
            );
            self.metadata.push((key.into(), v));
        }
        self
    }

    /// Starts the execution now: opens its span (a new trace).
    pub fn start(self) -> Execution {
        Counters::bump(&self.shared.counters.executions_started);
        let tracer = match self.shared.tracer.as_ref() {
            Some(_) if self.shared.is_shut_down() => {
                // Nothing can deliver it any more: count it as dropped.
                Counters::bump(&self.shared.counters.dropped_spans);
                None
            }
            t => t,
        };
        let Some(tracer) = tracer else {
            return Execution {
                shared: self.shared.clone(),
                cx: None,
                id: self.id,
                state: Mutex::new(ExecState::default()),
                finished: false,
            };
        };
        let mut attrs = Vec::with_capacity(4);
        attrs.push(KeyValue::new(semconv::PIPELINE, self.pipeline.clone()));
        if let Some(env) = &self.shared.environment {
            attrs.push(KeyValue::new(semconv::ENVIRONMENT, env.clone()));
        }
        if let Some(id) = &self.id {
            attrs.push(KeyValue::new(semconv::EXECUTION_ID, id.clone()));
        }
        if let Some(input) = self.input {
            attrs.push(KeyValue::new(semconv::EXECUTION_INPUT, input));
        }
        let span = tracer
            .span_builder(self.pipeline)
            .with_kind(SpanKind::Internal)
            .with_attributes(attrs)
            .start_with_context(tracer, &Context::new());
        let cx = Context::new().with_span(span);
        let sampled = cx.span().span_context().is_sampled() && cx.span().is_recording();
        let id = self
            .id
            .or_else(|| Some(cx.span().span_context().trace_id().to_string()));
        Execution {
            shared: self.shared,
            cx: sampled.then_some(cx),
            id,
            state: Mutex::new(ExecState {
                tags: self.tags,
                metadata: self.metadata,
                ..ExecState::default()
            }),
            finished: false,
        }
    }
}

#[derive(Debug, Default)]
struct ExecState {
    // Boxed: a step arrives boxed from its builder and is moved in as is.
    #[allow(clippy::vec_box)]
    steps: Vec<Box<StepData>>,
    dropped_steps: u64,
    tags: Vec<String>,
    metadata: Vec<(Cow<'static, str>, String)>,
}

/// One running execution of a pipeline. Record steps with
/// [`step`](Self::step) or [`span_step`](Self::span_step), then end it with
/// [`complete`](Self::complete) or [`fail`](Self::fail).
///
/// All recording methods take `&self` and the execution is `Send + Sync`, so
/// steps can be recorded from several threads (for example with
/// `std::thread::scope`). An execution dropped without `complete` or `fail`
/// is ended as failed, with the error
/// `"execution dropped before complete() or fail()"`.
#[derive(Debug)]
pub struct Execution {
    pub(crate) shared: Arc<Shared>,
    /// The context holding the execution span; `None` when nothing records
    /// (SDK disabled or trace not sampled).
    cx: Option<Context>,
    id: Option<String>,
    state: Mutex<ExecState>,
    finished: bool,
}

impl Execution {
    fn state(&self) -> MutexGuard<'_, ExecState> {
        // A poisoned lock only means another thread panicked mid-push; the
        // buffer is still a valid Vec.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The execution id: the one given to [`ExecutionBuilder::id`], else the
    /// trace id in lowercase hex (what the collector uses). `None` only when
    /// the SDK is disabled and no id was given.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Whether this execution is recorded (SDK enabled and trace sampled).
    /// When `false`, every recording method returns at once without
    /// serializing anything.
    pub fn is_recording(&self) -> bool {
        self.cx.is_some()
    }

    /// An OpenTelemetry context whose active span is the execution span.
    /// Spans your other instrumentation starts under it (for example with
    /// `Tracer::start_with_context` or `cx.attach()`) join the execution's
    /// trace, and the collector maps them to steps too. Empty when not
    /// recording.
    pub fn context(&self) -> Context {
        self.cx.clone().unwrap_or_default()
    }

    /// Begins a step named `name`, starting now. Set its fields and call
    /// [`StepBuilder::record`].
    pub fn step(&self, name: impl Into<Cow<'static, str>>) -> StepBuilder<'_> {
        StepBuilder {
            exec: self,
            data: self.new_step(name),
        }
    }

    /// Begins a timed step named `name`: it starts now and is recorded when
    /// the returned scope is ended with [`SpanStep::end`] or dropped.
    pub fn span_step(&self, name: impl Into<Cow<'static, str>>) -> SpanStep<'_> {
        SpanStep {
            exec: self,
            data: self.new_step(name),
        }
    }

    fn new_step(&self, name: impl Into<Cow<'static, str>>) -> Option<Box<StepData>> {
        self.cx
            .as_ref()
            .map(|_| Box::new(StepData::new(name.into(), SystemTime::now())))
    }

    /// Adds a tag (`xray.tags`).
    pub fn tag(&self, tag: impl Into<String>) {
        if self.is_recording() {
            self.state().tags.push(tag.into());
        }
    }

    /// Adds a metadata entry (`xray.metadata.<key>`), stored as its
    /// `Display` text (capped).
    pub fn metadata(&self, key: impl Into<Cow<'static, str>>, value: impl Display) {
        if self.is_recording() {
            let v = capture_text(
                value.to_string(),
                &self.shared.limits,
                &self.shared.counters,
            );
            self.state().metadata.push((key.into(), v));
        }
    }

    pub(crate) fn record_step(&self, mut data: Box<StepData>, end: SystemTime) {
        let Some(cx) = self.cx.as_ref() else { return };
        data.end = end;
        let counters = &self.shared.counters;
        match self.shared.mode {
            DeliveryMode::Snapshot => {
                let mut st = self.state();
                if st.steps.len() >= self.shared.limits.max_steps_per_execution {
                    st.dropped_steps += 1;
                    drop(st);
                    Counters::bump(&counters.steps_dropped);
                    return;
                }
                st.steps.push(data);
                drop(st);
                Counters::bump(&counters.steps_recorded);
            }
            DeliveryMode::Live => {
                let Some(tracer) = self.shared.tracer.as_ref() else {
                    return;
                };
                let attrs = step::step_attributes(&mut data, false);
                let status = span_status(data.status, data.error.as_deref());
                let end = data.end;
                let mut span = tracer
                    .span_builder(data.name)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(data.start)
                    .with_attributes(attrs)
                    .start_with_context(tracer, cx);
                span.set_status(status);
                span.end_with_timestamp(end);
                Counters::bump(&counters.steps_recorded);
            }
        }
    }

    /// Ends the execution as completed with `output` (serialized as JSON,
    /// capped).
    pub fn complete<T: Serialize + ?Sized>(mut self, output: &T) {
        let out = if self.is_recording() {
            match value::json(output, self.shared.limits.max_field_bytes) {
                Ok(c) => {
                    if c.truncated {
                        Counters::bump(&self.shared.counters.fields_truncated);
                    }
                    Some(c.text)
                }
                Err(e) => {
                    Counters::bump(&self.shared.counters.serialization_errors);
                    tracing::debug!(error = %e, "x-ray execution output could not be serialized as JSON; left out");
                    None
                }
            }
        } else {
            None
        };
        self.finish(Status::Completed, out, None);
    }

    /// Ends the execution as completed with `output` as given (JSON or
    /// plain text, capped).
    pub fn complete_raw(mut self, output: impl Into<String>) {
        let out = self
            .is_recording()
            .then(|| capture_text(output.into(), &self.shared.limits, &self.shared.counters));
        self.finish(Status::Completed, out, None);
    }

    /// Ends the execution as completed without an output.
    pub fn complete_empty(mut self) {
        self.finish(Status::Completed, None, None);
    }

    /// Ends the execution as failed with `error`'s message
    /// (`xray.execution.error`; the span status is ERROR).
    pub fn fail<E: Display + ?Sized>(mut self, error: &E) {
        let msg = self.is_recording().then(|| {
            capture_text(
                error.to_string(),
                &self.shared.limits,
                &self.shared.counters,
            )
        });
        self.finish(Status::Failed, None, msg);
    }

    fn finish(&mut self, status: Status, output: Option<String>, error: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        Counters::bump(&self.shared.counters.executions_ended);
        let Some(cx) = self.cx.take() else { return };
        let end = SystemTime::now();
        let st = std::mem::take(&mut *self.state());
        let span = cx.span();
        if self.shared.mode == DeliveryMode::Snapshot {
            for mut d in st.steps {
                let attrs = step::step_attributes(&mut d, true);
                span.add_event_with_timestamp(d.name, d.end, attrs);
            }
        }
        let mut attrs = Vec::with_capacity(4 + st.metadata.len());
        attrs.push(KeyValue::new(semconv::EXECUTION_STATUS, status.as_str()));
        if let Some(out) = output {
            attrs.push(KeyValue::new(semconv::EXECUTION_OUTPUT, out));
        }
        if let Some(err) = &error {
            attrs.push(KeyValue::new(semconv::EXECUTION_ERROR, err.clone()));
        }
        if !st.tags.is_empty() {
            attrs.push(KeyValue::new(semconv::TAGS, string_array(st.tags)));
        }
        for (k, v) in st.metadata {
            attrs.push(KeyValue::new(
                Key::new(format!("{}{k}", semconv::METADATA_PREFIX)),
                v,
            ));
        }
        if st.dropped_steps > 0 {
            attrs.push(KeyValue::new(
                format!("{}{DROPPED_STEPS_METADATA_KEY}", semconv::METADATA_PREFIX),
                st.dropped_steps.to_string(),
            ));
        }
        span.set_attributes(attrs);
        span.set_status(span_status(status, error.as_deref()));
        span.end_with_timestamp(end);
    }
}

fn span_status(status: Status, error: Option<&str>) -> opentelemetry::trace::Status {
    match status {
        Status::Failed => opentelemetry::trace::Status::error(error.unwrap_or("failed").to_owned()),
        _ => opentelemetry::trace::Status::Unset,
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if !self.finished {
            let msg = self
                .is_recording()
                .then(|| "execution dropped before complete() or fail()".to_owned());
            self.finish(Status::Failed, None, msg);
        }
    }
}
