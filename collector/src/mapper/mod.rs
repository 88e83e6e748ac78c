//! The mapper: OTLP spans → X-Ray executions and steps (ARCHITECTURE §4).
//!
//! Pure and deterministic: the same request and [`IngestContext`] always give
//! the same rows, in the same order, and every row depends only on the span it
//! comes from (plus its resource), never on which other spans travel in the
//! same request. That is what makes out-of-order and repeated delivery safe:
//! the store joins steps to executions by `(app, trace_id)` and deduplicates
//! rows by identity, keeping the highest `version`.
//!
//! Rules (the full list, with the reasons, is in
//! `docs/semantic-conventions.md`):
//! - a span with `xray.pipeline` is an *explicit* execution;
//! - a root span (no parent) without `xray.pipeline` is an *implicit*
//!   execution named after the span; it is also a step when it carries step
//!   attributes (`xray.step.*`, `gen_ai.operation.name`,
//!   `openinference.span.kind`);
//! - every other span is a step, keeping its parent span id;
//! - every span event with `xray.step.type` or `xray.step.name` is a step
//!   whose parent is the span carrying it and whose span id is derived from
//!   the span and the event;
//! - spans with a missing or malformed trace or span id are rejected and
//!   counted.

mod attrs;
mod view;
mod wire;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use xray_model::semconv as sc;
use xray_model::{CandidateDecision, Execution, MappedBatch, Metadata, Status, Step, StepType};

use attrs::{Attrs, Warnings};
use view::{Decoded, EventView, KeyValueView, SpanView, ValueView};

pub use wire::DecodeError;

/// Version bit set on executions that come from a span with `xray.pipeline`,
/// so that they always win over an implicit execution (a root span without
/// `xray.pipeline`) of the same identity, whatever the arrival order.
pub const EXPLICIT_EXECUTION_VERSION_BIT: u64 = 1 << 62;

/// Who sent a request and when it arrived: everything the mapper needs
/// besides the spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestContext {
    /// App the rows belong to ([`xray_model::DEFAULT_APP`] when
    /// authentication is off).
    pub app: String,
    /// API key sent with the request (`x-api-key` or
    /// `authorization: Bearer …`), if any. The mapper does not read it and
    /// the receivers leave it `None`: they resolve the key to `app` first.
    pub api_key: Option<String>,
    /// Arrival time, unix nanoseconds: becomes `ingest_time_ns` and the row
    /// `version` (newest delivery wins).
    pub ingest_time_ns: i64,
    /// Most step events mapped per span (`limits.max_events_per_span`);
    /// further events are ignored and counted. [`IngestContext::new`]
    /// sets no cap.
    pub max_events_per_span: usize,
}

impl IngestContext {
    /// A context for `app` at `ingest_time_ns`, without an API key.
    pub fn new(app: impl Into<String>, ingest_time_ns: i64) -> Self {
        Self {
            app: app.into(),
            api_key: None,
            ingest_time_ns,
            max_events_per_span: usize::MAX,
        }
    }
}

/// What [`map`] made of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapOutcome {
    /// The rows.
    pub batch: MappedBatch,
    /// Spans mapped to at least one row.
    pub accepted_spans: u64,
    /// Spans rejected (malformed ids).
    pub rejected_spans: u64,
    /// Why spans were rejected, one message per rejected span.
    pub rejections: Vec<String>,
}

impl MapOutcome {
    /// The OTLP `partial_success.error_message`: empty when nothing was
    /// rejected, else a summary with the first few reasons.
    pub fn error_message(&self) -> String {
        if self.rejected_spans == 0 {
            return String::new();
        }
        const SHOWN: usize = 5;
        let mut m = format!(
            "{} span(s) rejected: {}",
            self.rejected_spans,
            self.rejections
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        if self.rejections.len() > SHOWN {
            m.push_str(&format!("; and {} more", self.rejections.len() - SHOWN));
        }
        m
    }
}

/// Maps one export request to executions and steps. Pure: no I/O, no clock.
pub fn map(request: ExportTraceServiceRequest, ctx: &IngestContext) -> MapOutcome {
    map_decoded(&Decoded::from_request(&request), ctx)
}

/// Decodes a protobuf `ExportTraceServiceRequest` and maps it, in one step
/// and without copying the request into owned messages: the OTLP/gRPC and
/// OTLP/HTTP protobuf path. Pure: no I/O, no clock.
///
/// The result is exactly `map(ExportTraceServiceRequest::decode(bytes)?,
/// ctx)`: the same rows for every valid request, and an error (with prost's
/// message) for every request prost refuses: truncated input, wrong wire
/// types, invalid UTF-8, bad varints, nesting past 100 levels. Unknown
/// fields are skipped.
pub fn map_protobuf(bytes: &[u8], ctx: &IngestContext) -> Result<MapOutcome, DecodeError> {
    match wire::decode(bytes)? {
        Some(decoded) => Ok(map_decoded(&decoded, ctx)),
        // Valid, but in a shape the views do not represent (see `wire`).
        None => Ok(map(ExportTraceServiceRequest::decode(bytes)?, ctx)),
    }
}

fn map_decoded(d: &Decoded<'_>, ctx: &IngestContext) -> MapOutcome {
    let mut out = MapOutcome::default();
    // Nearly every span becomes one row: size the row vectors once instead
    // of growing (and copying) them span by span.
    out.batch.steps.reserve(d.spans.len());
    let mut hex = HexCache::default();
    for rs in &d.resources {
        let resource = ResourceInfo::from_attributes(&d.resource_attributes[rs.attributes.clone()]);
        for span in &d.spans[rs.spans.clone()] {
            map_span(d, span, &resource, ctx, &mut hex, &mut out);
        }
    }
    out
}

/// The resource attributes X-Ray keeps.
#[derive(Debug, Default)]
struct ResourceInfo {
    service: String,
    environment: String,
}

impl ResourceInfo {
    fn from_attributes(list: &[KeyValueView<'_>]) -> Self {
        let mut service = None;
        let mut env_new = None;
        let mut env_old = None;
        for kv in list {
            let slot = match kv.key_str() {
                sc::SERVICE_NAME => &mut service,
                sc::DEPLOYMENT_ENVIRONMENT_NAME => &mut env_new,
                sc::DEPLOYMENT_ENVIRONMENT => &mut env_old,
                _ => continue,
            };
            if slot.is_none() {
                *slot = kv.value.map(attrs::scalar_string);
            }
        }
        Self {
            service: service.unwrap_or_default(),
            environment: env_new.or(env_old).unwrap_or_default(),
        }
    }
}

/// Validated identifiers of a span, in lowercase hex.
struct Ids {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A word-aligned scratch buffer for hex ids.
#[repr(align(8))]
struct HexBuf([u8; 32]);

/// Lowercase hex of `bytes` (ids are hot: one table lookup per nibble
/// instead of the generic char-by-char encoder).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = HexBuf([0; 32]);
    if bytes.len() > buf.0.len() / 2 {
        return hex::encode(bytes);
    }
    for (pair, b) in buf.0.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    // Only ASCII digits, word-aligned: the UTF-8 check takes its
    // word-at-a-time path, and never fails.
    std::str::from_utf8(&buf.0[..bytes.len() * 2])
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The hex of the last trace id and parent span id seen in a request:
/// consecutive spans mostly share both, and a copy is cheaper than a new
/// encoding.
#[derive(Default)]
struct HexCache<'a> {
    trace: Option<(&'a [u8], String)>,
    parent: Option<(&'a [u8], String)>,
}

impl<'a> HexCache<'a> {
    fn get(slot: &mut Option<(&'a [u8], String)>, bytes: &'a [u8]) -> String {
        match slot {
            Some((last, hex)) if *last == bytes => hex.clone(),
            _ => {
                let hex = lower_hex(bytes);
                *slot = Some((bytes, hex.clone()));
                hex
            }
        }
    }
}

fn check_id(what: &str, bytes: &[u8], len: usize) -> Result<(), String> {
    if bytes.is_empty() {
        Err(format!("{what} is empty"))
    } else if bytes.len() != len {
        Err(format!("{what} has {} bytes, expected {len}", bytes.len()))
    } else if bytes.iter().all(|b| *b == 0) {
        Err(format!("{what} is all zeros"))
    } else {
        Ok(())
    }
}

fn ids<'a>(span: &SpanView<'a>, cache: &mut HexCache<'a>) -> Result<Ids, String> {
    let describe = |e: String| {
        if span.name.is_empty() {
            format!("span without name: {e}")
        } else {
            format!("span \"{}\": {e}", span.name)
        }
    };
    check_id("trace_id", span.trace_id, 16).map_err(describe)?;
    check_id("span_id", span.span_id, 8).map_err(describe)?;
    let parent = span.parent_span_id;
    let parent_span_id = if parent.is_empty() || parent.iter().all(|b| *b == 0) {
        String::new()
    } else if parent.len() != 8 {
        return Err(describe(format!(
            "parent_span_id has {} bytes, expected 8 or none",
            parent.len()
        )));
    } else {
        HexCache::get(&mut cache.parent, parent)
    };
    Ok(Ids {
        trace_id: HexCache::get(&mut cache.trace, span.trace_id),
        span_id: lower_hex(span.span_id),
        parent_span_id,
    })
}

/// The OTel status of a span, reduced to what the mapper needs.
struct SpanOutcome {
    error: bool,
    /// Status message (when ERROR) or the message of an `exception` event.
    error_message: Option<String>,
}

fn span_outcome(d: &Decoded<'_>, span: &SpanView<'_>) -> SpanOutcome {
    let (error, status_message) = match &span.status {
        Some(s) => (
            s.code == StatusCode::Error as i32,
            Some(s.message).filter(|m| !m.trim().is_empty()),
        ),
        None => (false, None),
    };
    let exception = d
        .events(span)
        .iter()
        .filter(|e| e.name == "exception")
        .flat_map(|e| d.event_attributes(e).iter())
        .find(|kv| kv.key == attrs::EXCEPTION_MESSAGE.as_bytes())
        .and_then(|kv| kv.value)
        .map(attrs::text);
    let error_message = if error {
        status_message.map(str::to_string).or(exception)
    } else {
        None
    };
    SpanOutcome {
        error,
        error_message,
    }
}

fn nanos(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn map_span<'a>(
    d: &Decoded<'a>,
    span: &SpanView<'a>,
    res: &ResourceInfo,
    ctx: &IngestContext,
    hex: &mut HexCache<'a>,
    out: &mut MapOutcome,
) {
    let ids = match ids(span, hex) {
        Ok(ids) => ids,
        Err(reason) => {
            out.rejected_spans += 1;
            out.rejections.push(reason);
            return;
        }
    };
    out.accepted_spans += 1;
    let outcome = span_outcome(d, span);
    let events = d.events(span);
    let events = if events.len() > ctx.max_events_per_span {
        crate::processor::metrics::record_limited(
            "events",
            (events.len() - ctx.max_events_per_span) as u64,
        );
        &events[..ctx.max_events_per_span]
    } else {
        events
    };
    let mut a = Attrs::collect(d.span_attributes(span));
    let start = nanos(span.start_time_unix_nano);
    let end = (span.end_time_unix_nano != 0).then(|| nanos(span.end_time_unix_nano));

    let mut w = Warnings::default();
    let pipeline = a
        .pipeline
        .take()
        .map(attrs::scalar_string)
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    let explicit = pipeline.is_some();
    let is_root = ids.parent_span_id.is_empty();

    // Execution id known for steps carried by this span.
    let mut carried_execution_id = String::new();

    if explicit || is_root {
        let also_step = !explicit && is_root && a.has_step_attributes();
        let step_attrs = also_step.then(|| a.clone_step_part());
        let execution_id = a
            .execution_id
            .take()
            .and_then(|v| attrs::string(sc::EXECUTION_ID, v, &mut w))
            .unwrap_or_else(|| ids.trace_id.clone());
        carried_execution_id = execution_id.clone();
        let pipeline = pipeline.unwrap_or_else(|| {
            if span.name.trim().is_empty() {
                "unnamed".to_string()
            } else {
                span.name.to_owned()
            }
        });
        let step_events = events
            .iter()
            .filter(|e| attrs::marks_step(d.event_attributes(e)))
            .count();
        let exec = build_execution(
            &mut a,
            w,
            ExecutionBase {
                ctx,
                ids: &ids,
                execution_id,
                pipeline,
                explicit,
                start,
                end,
                outcome: &outcome,
                res,
                step_count: u32::try_from(step_events).unwrap_or(u32::MAX),
            },
        );
        out.batch.executions.push(exec);
        if let Some(mut sa) = step_attrs {
            let step = build_step(
                &mut sa,
                Warnings::default(),
                StepBase {
                    ctx,
                    trace_id: ids.trace_id.clone(),
                    span_id: ids.span_id.clone(),
                    parent_span_id: String::new(),
                    name: span.name.to_owned(),
                    execution_id: carried_execution_id.clone(),
                    start,
                    end,
                    outcome: &outcome,
                    service: &res.service,
                },
            );
            out.batch.steps.push(step);
        }
    } else {
        let mut w = w;
        if let Some(v) = a.execution_id.take() {
            carried_execution_id = attrs::string(sc::EXECUTION_ID, v, &mut w).unwrap_or_default();
        }
        let step = build_step(
            &mut a,
            w,
            StepBase {
                ctx,
                trace_id: ids.trace_id.clone(),
                span_id: ids.span_id.clone(),
                parent_span_id: ids.parent_span_id.clone(),
                name: span.name.to_owned(),
                execution_id: carried_execution_id.clone(),
                start,
                end,
                outcome: &outcome,
                service: &res.service,
            },
        );
        out.batch.steps.push(step);
    }

    let no_error = SpanOutcome {
        error: false,
        error_message: None,
    };
    for (index, event) in events.iter().enumerate() {
        let event_attributes = d.event_attributes(event);
        if !attrs::marks_step(event_attributes) {
            continue;
        }
        let step = event_step(
            event,
            event_attributes,
            index,
            &ids,
            &carried_execution_id,
            end,
            res,
            ctx,
            &no_error,
        );
        out.batch.steps.push(step);
    }
}

/// A step recorded as a span event (snapshot mode).
#[allow(clippy::too_many_arguments)]
fn event_step(
    event: &EventView<'_>,
    attributes: &[KeyValueView<'_>],
    index: usize,
    ids: &Ids,
    execution_id: &str,
    span_end: Option<i64>,
    res: &ResourceInfo,
    ctx: &IngestContext,
    no_error: &SpanOutcome,
) -> Step {
    let mut a = Attrs::collect(attributes);
    let mut w = Warnings::default();
    let end = if event.time_unix_nano != 0 {
        Some(nanos(event.time_unix_nano))
    } else {
        w.push("time_unix_nano", "event has no time; using the span's end");
        span_end
    };
    let start = a
        .step_start
        .take()
        .and_then(|v| attrs::unix_nanos(sc::STEP_START_TIME_UNIX_NANO, v, &mut w))
        .or(end)
        .unwrap_or(0);
    build_step(
        &mut a,
        w,
        StepBase {
            ctx,
            trace_id: ids.trace_id.clone(),
            span_id: event_span_id(&ids.trace_id, &ids.span_id, index, event.name),
            parent_span_id: ids.span_id.clone(),
            name: event.name.to_owned(),
            execution_id: execution_id.to_string(),
            start,
            end,
            outcome: no_error,
            service: &res.service,
        },
    )
}

/// Stable span id of a step sent as a span event: FNV-1a 64 over the trace
/// id, the carrying span id, the event index and the event name, in hex.
/// Never all zeros.
pub fn event_span_id(trace_id: &str, span_id: &str, index: usize, name: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    feed(trace_id.as_bytes());
    feed(b"/");
    feed(span_id.as_bytes());
    feed(b"/");
    feed(&(index as u64).to_le_bytes());
    feed(name.as_bytes());
    if h == 0 {
        h = 1;
    }
    format!("{h:016x}")
}

struct ExecutionBase<'a> {
    ctx: &'a IngestContext,
    ids: &'a Ids,
    execution_id: String,
    pipeline: String,
    explicit: bool,
    start: i64,
    end: Option<i64>,
    outcome: &'a SpanOutcome,
    res: &'a ResourceInfo,
    step_count: u32,
}

fn version(ctx: &IngestContext) -> u64 {
    u64::try_from(ctx.ingest_time_ns).unwrap_or(0) & (EXPLICIT_EXECUTION_VERSION_BIT - 1)
}

fn build_execution(a: &mut Attrs<'_>, mut w: Warnings, b: ExecutionBase<'_>) -> Execution {
    let environment = a
        .environment
        .take()
        .and_then(|v| attrs::string(sc::ENVIRONMENT, v, &mut w))
        .unwrap_or_else(|| b.res.environment.clone());
    let error = a
        .execution_error
        .take()
        .map(attrs::text)
        .or_else(|| b.outcome.error_message.clone());
    let status = parse_status(
        sc::EXECUTION_STATUS,
        a.execution_status.take(),
        &[Status::Running, Status::Completed, Status::Failed],
        &mut w,
    )
    .unwrap_or(if b.end.is_none() {
        Status::Running
    } else if b.outcome.error || a_has(&error) {
        Status::Failed
    } else {
        Status::Completed
    });
    let input = a
        .execution_input
        .take()
        .or_else(|| a.input_value.take())
        .or_else(|| a.gen_ai_input_messages.take())
        .map(attrs::text);
    let output = a
        .execution_output
        .take()
        .or_else(|| a.output_value.take())
        .or_else(|| a.gen_ai_output_messages.take())
        .map(attrs::text);
    let tags = a
        .tags
        .take()
        .map(|v| attrs::string_list(sc::TAGS, v, &mut w))
        .unwrap_or_default();
    let mut metadata = Metadata::new();
    for (k, v) in std::mem::take(&mut a.metadata) {
        metadata
            .entry(k.to_owned())
            .or_insert_with(|| attrs::scalar_string(v));
    }
    w.store(&mut metadata);
    let mut version = version(b.ctx);
    if b.explicit {
        version |= EXPLICIT_EXECUTION_VERSION_BIT;
    }
    Execution {
        app: b.ctx.app.clone(),
        execution_id: b.execution_id,
        trace_id: b.ids.trace_id.clone(),
        span_id: b.ids.span_id.clone(),
        pipeline: b.pipeline,
        environment,
        service: b.res.service.clone(),
        status,
        start_time_ns: b.start,
        end_time_ns: b.end,
        input,
        output,
        error,
        tags,
        metadata,
        step_count: b.step_count,
        ingest_time_ns: b.ctx.ingest_time_ns,
        version,
    }
}

fn a_has(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.trim().is_empty())
}

fn parse_status(
    key: &str,
    v: Option<ValueView<'_>>,
    allowed: &[Status],
    w: &mut Warnings,
) -> Option<Status> {
    let s = attrs::string(key, v?, w)?;
    match s.parse::<Status>() {
        Ok(st) if allowed.contains(&st) => Some(st),
        Ok(st) => {
            w.push(
                key,
                format!("\"{st}\" is not allowed here; using the span status"),
            );
            None
        }
        Err(e) => {
            w.push(key, format!("{e}; using the span status"));
            None
        }
    }
}

struct StepBase<'a> {
    ctx: &'a IngestContext,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    execution_id: String,
    start: i64,
    end: Option<i64>,
    outcome: &'a SpanOutcome,
    service: &'a str,
}

fn step_type(a: &mut Attrs<'_>, w: &mut Warnings) -> StepType {
    if let Some(v) = a.step_type.take()
        && let Some(s) = attrs::string(sc::STEP_TYPE, v, w)
    {
        match s.parse::<StepType>() {
            Ok(t) => return t,
            Err(e) => w.push(sc::STEP_TYPE, format!("{e}; type inferred instead")),
        }
    }
    if let Some(op) = a.gen_ai_operation.map(attrs::scalar_string) {
        return match op.trim() {
            "chat" | "text_completion" | "generate_content" | "embeddings" => StepType::Llm,
            "execute_tool" => StepType::Tool,
            "invoke_agent" | "create_agent" => StepType::Logic,
            _ => StepType::Custom,
        };
    }
    if let Some(kind) = a.oi_kind.map(attrs::scalar_string) {
        let k = kind.trim().to_ascii_uppercase();
        return match k.as_str() {
            "LLM" | "EMBEDDING" => StepType::Llm,
            "RETRIEVER" => StepType::Retrieval,
            "RERANKER" => StepType::Rank,
            "TOOL" => StepType::Tool,
            "GUARDRAIL" => StepType::Filter,
            "CHAIN" | "AGENT" => StepType::Logic,
            _ => StepType::Custom,
        };
    }
    StepType::Custom
}

fn build_step(a: &mut Attrs<'_>, mut w: Warnings, b: StepBase<'_>) -> Step {
    let step_type = step_type(a, &mut w);
    let name = a
        .step_name
        .take()
        .and_then(|v| attrs::string(sc::STEP_NAME, v, &mut w))
        .unwrap_or_else(|| {
            if b.name.trim().is_empty() {
                "unnamed".to_string()
            } else {
                b.name
            }
        });
    let error = a
        .step_error
        .take()
        .map(attrs::text)
        .or_else(|| b.outcome.error_message.clone());
    let status = parse_status(sc::STEP_STATUS, a.step_status.take(), Status::ALL, &mut w)
        .unwrap_or(if b.end.is_none() {
            Status::Running
        } else if b.outcome.error || a_has(&error) {
            Status::Failed
        } else {
            Status::Completed
        });
    let input = a
        .step_input
        .take()
        .or_else(|| a.gen_ai_input_messages.take())
        .or_else(|| a.input_value.take())
        .map(attrs::text);
    let output = a
        .step_output
        .take()
        .or_else(|| a.gen_ai_output_messages.take())
        .or_else(|| a.output_value.take())
        .map(attrs::text);
    let reasoning = a.step_reasoning.take().map(attrs::text);
    let candidates_in = a
        .candidates_in
        .take()
        .and_then(|v| attrs::count(sc::STEP_CANDIDATES_IN, v, &mut w));
    let candidates_out = a
        .candidates_out
        .take()
        .and_then(|v| attrs::count(sc::STEP_CANDIDATES_OUT, v, &mut w));
    let rejections = a
        .rejections
        .take()
        .map(|v| rejections(v, &mut w))
        .unwrap_or_default();
    let candidates = a
        .candidates
        .take()
        .map(|v| candidates(v, &mut w))
        .unwrap_or_default();
    let model = first_string(
        &mut w,
        [
            (sc::GEN_AI_RESPONSE_MODEL, a.gen_ai_response_model.take()),
            (sc::GEN_AI_REQUEST_MODEL, a.gen_ai_request_model.take()),
            (sc::LLM_MODEL_NAME, a.llm_model_name.take()),
        ],
    );
    let provider = first_string(
        &mut w,
        [
            (sc::GEN_AI_PROVIDER_NAME, a.gen_ai_provider.take()),
            (sc::GEN_AI_SYSTEM, a.gen_ai_system.take()),
            (sc::LLM_PROVIDER, a.llm_provider.take()),
        ],
    );
    let input_tokens = first_count(
        &mut w,
        [
            (sc::GEN_AI_USAGE_INPUT_TOKENS, a.gen_ai_input_tokens.take()),
            (
                sc::GEN_AI_USAGE_PROMPT_TOKENS,
                a.gen_ai_prompt_tokens.take(),
            ),
            (sc::LLM_TOKEN_COUNT_PROMPT, a.llm_prompt_tokens.take()),
        ],
    );
    let output_tokens = first_count(
        &mut w,
        [
            (
                sc::GEN_AI_USAGE_OUTPUT_TOKENS,
                a.gen_ai_output_tokens.take(),
            ),
            (
                sc::GEN_AI_USAGE_COMPLETION_TOKENS,
                a.gen_ai_completion_tokens.take(),
            ),
            (
                sc::LLM_TOKEN_COUNT_COMPLETION,
                a.llm_completion_tokens.take(),
            ),
        ],
    );
    let cost = a
        .cost
        .take()
        .and_then(|v| attrs::number(sc::STEP_COST, v, &mut w));
    let confidence = a
        .confidence
        .take()
        .and_then(|v| attrs::number(sc::STEP_CONFIDENCE, v, &mut w));
    let mut metadata = Metadata::new();
    for (k, v) in std::mem::take(&mut a.step_metadata) {
        metadata
            .entry(k.to_owned())
            .or_insert_with(|| attrs::scalar_string(v));
    }
    w.store(&mut metadata);
    Step {
        app: b.ctx.app.clone(),
        execution_id: b.execution_id,
        trace_id: b.trace_id,
        span_id: b.span_id,
        parent_span_id: b.parent_span_id,
        name,
        step_type,
        status,
        service: b.service.to_string(),
        start_time_ns: b.start,
        end_time_ns: b.end,
        input,
        output,
        reasoning,
        metadata,
        candidates_in,
        candidates_out,
        rejections,
        candidates,
        model,
        provider,
        input_tokens,
        output_tokens,
        cost,
        confidence,
        error,
        version: version(b.ctx),
    }
}

type OptValue<'a> = Option<ValueView<'a>>;

/// The first present, well-typed string among `candidates`, in order.
fn first_string<const N: usize>(
    w: &mut Warnings,
    candidates: [(&str, OptValue<'_>); N],
) -> Option<String> {
    candidates
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .find_map(|(k, v)| attrs::string(k, v, w))
}

/// The first present, valid count among `candidates`, in order.
fn first_count<const N: usize>(
    w: &mut Warnings,
    candidates: [(&str, OptValue<'_>); N],
) -> Option<u64> {
    candidates
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .find_map(|(k, v)| attrs::count(k, v, w))
}

fn rejections(v: ValueView<'_>, w: &mut Warnings) -> xray_model::Rejections {
    use ValueView as V;
    let key = sc::STEP_REJECTIONS;
    // The usual shape, a JSON object in a string attribute, is parsed straight
    // into counts (no intermediate `serde_json::Value` tree or map): this
    // runs for every filter step.
    let parsed: Result<attrs::Histogram, String> = match v {
        V::StringValue(s) => match serde_json::from_str(s) {
            Ok(h) => Ok(h),
            Err(_) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(other) => {
                    w.push(
                        key,
                        format!(
                            "expected a JSON object reason → count, got {}; ignored",
                            json_kind(&other)
                        ),
                    );
                    return xray_model::Rejections::new();
                }
                Err(e) => Err(format!("invalid JSON ({e})")),
            },
        },
        other => match attrs::to_json(&other) {
            serde_json::Value::Object(map) => {
                let mut h = attrs::Histogram::default();
                for (reason, n) in map {
                    h.add(reason, attrs::Count::from_json(&n));
                }
                Ok(h)
            }
            other => {
                w.push(
                    key,
                    format!(
                        "expected a JSON object reason → count, got {}; ignored",
                        json_kind(&other)
                    ),
                );
                return xray_model::Rejections::new();
            }
        },
    };
    match parsed {
        Ok(h) => {
            for (reason, text) in h.invalid {
                w.push(
                    key,
                    format!("count of \"{reason}\" is not a non-negative integer ({text}); entry ignored"),
                );
            }
            h.counts
        }
        Err(e) => {
            w.push(key, format!("{e}; ignored"));
            xray_model::Rejections::new()
        }
    }
}

fn candidates(v: ValueView<'_>, w: &mut Warnings) -> Vec<CandidateDecision> {
    let key = sc::STEP_CANDIDATES;
    // Fast path: a well-formed JSON array of decisions, parsed straight into
    // the model (no intermediate `serde_json::Value` per entry). Anything
    // else takes the entry-by-entry path below, which says what is wrong
    // with which entry and keeps the rest; both give the same decisions.
    if let ValueView::StringValue(text) = v
        && let Ok(all) = serde_json::from_str::<Vec<CandidateDecision>>(text)
    {
        return all;
    }
    match attrs::json(v) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(
                |(i, item)| match serde_json::from_value::<CandidateDecision>(item) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        w.push(key, format!("entry {i}: {e}; entry ignored"));
                        None
                    }
                },
            )
            .collect(),
        Ok(other) => {
            w.push(
                key,
                format!(
                    "expected a JSON array of decisions, got {}; ignored",
                    json_kind(&other)
                ),
            );
            Vec::new()
        }
        Err(e) => {
            w.push(key, format!("{e}; ignored"));
            Vec::new()
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl Attrs<'_> {
    /// True when the span carries anything that describes a step.
    fn has_step_attributes(&self) -> bool {
        self.step_type.is_some()
            || self.step_name.is_some()
            || self.gen_ai_operation.is_some()
            || self.oi_kind.is_some()
            || self.step_input.is_some()
            || self.step_output.is_some()
            || self.step_reasoning.is_some()
            || self.candidates_in.is_some()
            || self.candidates_out.is_some()
            || !self.step_metadata.is_empty()
    }

    /// A copy holding only what [`build_step`] reads, for a root span that
    /// is both an implicit execution and a step.
    fn clone_step_part(&self) -> Self {
        Attrs {
            step_name: self.step_name,
            step_type: self.step_type,
            step_status: self.step_status,
            step_input: self.step_input,
            step_output: self.step_output,
            step_reasoning: self.step_reasoning,
            candidates_in: self.candidates_in,
            candidates_out: self.candidates_out,
            rejections: self.rejections,
            candidates: self.candidates,
            cost: self.cost,
            confidence: self.confidence,
            step_error: self.step_error,
            gen_ai_operation: self.gen_ai_operation,
            gen_ai_request_model: self.gen_ai_request_model,
            gen_ai_response_model: self.gen_ai_response_model,
            gen_ai_provider: self.gen_ai_provider,
            gen_ai_system: self.gen_ai_system,
            gen_ai_input_tokens: self.gen_ai_input_tokens,
            gen_ai_output_tokens: self.gen_ai_output_tokens,
            gen_ai_prompt_tokens: self.gen_ai_prompt_tokens,
            gen_ai_completion_tokens: self.gen_ai_completion_tokens,
            gen_ai_input_messages: self.gen_ai_input_messages,
            gen_ai_output_messages: self.gen_ai_output_messages,
            oi_kind: self.oi_kind,
            input_value: self.input_value,
            output_value: self.output_value,
            llm_model_name: self.llm_model_name,
            llm_prompt_tokens: self.llm_prompt_tokens,
            llm_completion_tokens: self.llm_completion_tokens,
            llm_provider: self.llm_provider,
            step_metadata: self.step_metadata,
            ..Attrs::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_span_ids_are_stable_and_distinct() {
        let t = "0af7651916cd43dd8448eb211c80319c";
        let a = event_span_id(t, "b7ad6b7169203331", 0, "search");
        assert_eq!(a, event_span_id(t, "b7ad6b7169203331", 0, "search"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, event_span_id(t, "b7ad6b7169203331", 1, "search"));
        assert_ne!(a, event_span_id(t, "b7ad6b7169203332", 0, "search"));
    }

    #[test]
    fn error_message_summarizes_rejections() {
        let mut o = MapOutcome::default();
        assert_eq!(o.error_message(), "");
        for i in 0..7 {
            o.rejected_spans += 1;
            o.rejections.push(format!("r{i}"));
        }
        assert_eq!(
            o.error_message(),
            "7 span(s) rejected: r0; r1; r2; r3; r4; and 2 more"
        );
    }
}
