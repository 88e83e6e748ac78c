//! The exact attributes the SDK produces in both delivery modes, captured
//! with OpenTelemetry's in-memory exporter behind the SDK's own batch
//! processing.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

use opentelemetry::trace::{SpanId, Status as SpanStatus};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanExporter};
use xray_sdk::{Decision, DeliveryMode, StepType, XRay, XRayBuilder};

fn builder(exporter: &InMemorySpanExporter) -> XRayBuilder {
    XRay::builder()
        .span_exporter(exporter.clone())
        .service("matcher")
        .environment("test")
}

fn spans(xray: &XRay, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    xray.flush_blocking().expect("flush");
    exporter.get_finished_spans().expect("finished spans")
}

/// Attributes as a sorted map of key → rendered value, for exact comparison.
fn attrs<'a>(
    kvs: impl IntoIterator<Item = &'a opentelemetry::KeyValue>,
) -> BTreeMap<String, Value> {
    kvs.into_iter()
        .map(|kv| (kv.key.to_string(), kv.value.clone()))
        .collect()
}

fn s(v: &str) -> Value {
    Value::from(v.to_owned())
}

fn expected(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// Records the same small pipeline in either mode.
fn record_pipeline(xray: &XRay) -> String {
    let exec = xray
        .execution("competitor-selection")
        .input(&serde_json::json!({"asin": "B0OURS", "title": "bottle"}))
        .tag("nightly")
        .metadata("region", "eu")
        .start();
    let id = exec.id().unwrap().to_owned();
    exec.step("generate_keywords")
        .kind(StepType::Llm)
        .input(&"Keywords for: bottle")
        .output(&["insulated bottle", "steel bottle"])
        .reasoning("two phrasings")
        .model("gpt-4o")
        .provider("openai")
        .tokens(152, 40)
        .cost(0.25)
        .record();
    let f = exec
        .step("filter_price")
        .kind(StepType::Filter)
        .candidates_in(5000);
    f.reject("price_above_limit", 4100)
        .reject("low_rating", 800)
        .reject("price_above_limit", 0)
        .candidate("B01", Decision::Rejected, "low_rating", 0.5)
        .candidate(7, Decision::Accepted, None, None)
        .candidates_out(100)
        .metadata("threshold", 30)
        .record();
    {
        let mut rank = exec.span_step("rank");
        rank.kind(StepType::Rank).confidence(0.75);
    }
    exec.step("select")
        .kind(StepType::Select)
        .fail("model timed out")
        .record();
    exec.tag("manual");
    exec.complete(&serde_json::json!({"asin": "B01"}));
    id
}

fn llm_step() -> Vec<(&'static str, Value)> {
    vec![
        ("xray.step.name", s("generate_keywords")),
        ("xray.step.type", s("llm")),
        ("xray.step.status", s("completed")),
        ("xray.step.input", s(r#""Keywords for: bottle""#)),
        (
            "xray.step.output",
            s(r#"["insulated bottle","steel bottle"]"#),
        ),
        ("xray.step.reasoning", s("two phrasings")),
        ("gen_ai.request.model", s("gpt-4o")),
        ("gen_ai.provider.name", s("openai")),
        ("gen_ai.usage.input_tokens", Value::I64(152)),
        ("gen_ai.usage.output_tokens", Value::I64(40)),
        ("xray.step.cost", Value::F64(0.25)),
    ]
}

fn filter_step() -> Vec<(&'static str, Value)> {
    vec![
        ("xray.step.name", s("filter_price")),
        ("xray.step.type", s("filter")),
        ("xray.step.status", s("completed")),
        ("xray.step.candidates.in", Value::I64(5000)),
        ("xray.step.candidates.out", Value::I64(100)),
        (
            "xray.step.rejections",
            s(r#"{"low_rating":800,"price_above_limit":4100}"#),
        ),
        (
            "xray.step.candidates",
            s(
                r#"[{"id":"B01","decision":"rejected","reason":"low_rating","score":0.5},{"id":"7","decision":"accepted"}]"#,
            ),
        ),
        ("xray.step.metadata.threshold", s("30")),
    ]
}

fn rank_step() -> Vec<(&'static str, Value)> {
    vec![
        ("xray.step.name", s("rank")),
        ("xray.step.type", s("rank")),
        ("xray.step.status", s("completed")),
        ("xray.step.confidence", Value::F64(0.75)),
    ]
}

fn select_step() -> Vec<(&'static str, Value)> {
    vec![
        ("xray.step.name", s("select")),
        ("xray.step.type", s("select")),
        ("xray.step.status", s("failed")),
        ("xray.step.error", s("model timed out")),
    ]
}

fn execution_attrs(id: &str) -> BTreeMap<String, Value> {
    let _ = id; // the id defaults to the trace id and is not sent as an attribute
    expected(&[
        ("xray.pipeline", s("competitor-selection")),
        ("xray.environment", s("test")),
        (
            "xray.execution.input",
            s(r#"{"asin":"B0OURS","title":"bottle"}"#),
        ),
        ("xray.execution.status", s("completed")),
        ("xray.execution.output", s(r#"{"asin":"B01"}"#)),
        (
            "xray.tags",
            Value::Array(Array::String(vec!["nightly".into(), "manual".into()])),
        ),
        ("xray.metadata.region", s("eu")),
    ])
}

#[test]
fn snapshot_mode_sends_one_span_with_a_step_event_per_step() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).build().unwrap();
    let id = record_pipeline(&xray);
    let spans = spans(&xray, &exporter);
    assert_eq!(spans.len(), 1, "one span per execution in snapshot mode");
    let span = &spans[0];

    assert_eq!(span.name, "competitor-selection");
    assert_eq!(span.parent_span_id, SpanId::INVALID, "executions are roots");
    assert_eq!(id, span.span_context.trace_id().to_string());
    assert_eq!(attrs(&span.attributes), execution_attrs(&id));
    assert_eq!(span.status, SpanStatus::Unset);
    assert_eq!(span.instrumentation_scope.name(), "xray-sdk");

    let events: Vec<_> = span.events.iter().collect();
    let names: Vec<_> = events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        names,
        ["generate_keywords", "filter_price", "rank", "select"]
    );
    let want = [llm_step(), filter_step(), rank_step(), select_step()];
    let mut previous_end = nanos(span.start_time);
    for (event, want) in events.iter().zip(want) {
        let mut got = attrs(&event.attributes);
        // The start time is a clock reading: check it is consistent (start ≤
        // end = event time, steps in order, inside the execution), then
        // compare the rest exactly.
        let Some(Value::I64(start)) = got.remove("xray.step.start_time_unix_nano") else {
            panic!("missing xray.step.start_time_unix_nano on {}", event.name);
        };
        let end = nanos(event.timestamp);
        assert!(previous_end <= start && start <= end, "{}", event.name);
        assert!(end <= nanos(span.end_time));
        previous_end = end;
        assert_eq!(got, expected(&want), "event {}", event.name);
    }
    let stats = xray.stats();
    assert_eq!(stats.executions_started, 1);
    assert_eq!(stats.executions_ended, 1);
    assert_eq!(stats.steps_recorded, 4);
    assert_eq!(stats.exported_spans, 1);
    assert_eq!(stats.dropped_spans, 0);
}

#[test]
fn live_mode_sends_each_step_as_a_child_span() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).mode(DeliveryMode::Live).build().unwrap();
    let id = record_pipeline(&xray);
    let spans = spans(&xray, &exporter);
    assert_eq!(spans.len(), 5, "four steps and the execution");

    // Children end first, so the execution span comes last.
    let exec = spans
        .iter()
        .find(|s| s.name == "competitor-selection")
        .unwrap();
    assert!(exec.events.is_empty(), "no step events in live mode");
    assert_eq!(attrs(&exec.attributes), execution_attrs(&id));

    let steps: Vec<_> = spans
        .iter()
        .filter(|s| s.name != "competitor-selection")
        .collect();
    let names: Vec<_> = steps.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        ["generate_keywords", "filter_price", "rank", "select"]
    );
    let want = [llm_step(), filter_step(), rank_step(), select_step()];
    for (span, want) in steps.iter().zip(want) {
        assert_eq!(
            span.parent_span_id,
            exec.span_context.span_id(),
            "{}",
            span.name
        );
        assert_eq!(span.span_context.trace_id(), exec.span_context.trace_id());
        assert!(span.start_time <= span.end_time);
        assert!(exec.start_time <= span.start_time && span.end_time <= exec.end_time);
        assert_eq!(
            attrs(&span.attributes),
            expected(&want),
            "span {}",
            span.name
        );
    }
    assert_eq!(steps[3].status, SpanStatus::error("model timed out"));
    assert_eq!(steps[0].status, SpanStatus::Unset);
    assert_eq!(xray.stats().exported_spans, 5);
}

#[test]
fn failed_and_abandoned_executions_are_marked_failed() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).build().unwrap();
    xray.execution("p").start().fail("upstream 503");
    drop(xray.execution("p").id("run-42").start());
    let spans = spans(&xray, &exporter);
    assert_eq!(spans.len(), 2);

    assert_eq!(
        attrs(&spans[0].attributes),
        expected(&[
            ("xray.pipeline", s("p")),
            ("xray.environment", s("test")),
            ("xray.execution.status", s("failed")),
            ("xray.execution.error", s("upstream 503")),
        ])
    );
    assert_eq!(spans[0].status, SpanStatus::error("upstream 503"));
    assert_eq!(
        attrs(&spans[1].attributes),
        expected(&[
            ("xray.pipeline", s("p")),
            ("xray.environment", s("test")),
            ("xray.execution.id", s("run-42")),
            ("xray.execution.status", s("failed")),
            (
                "xray.execution.error",
                s("execution dropped before complete() or fail()")
            ),
        ])
    );
}

#[test]
fn long_values_are_truncated_and_marked() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).max_field_bytes(8).build().unwrap();
    let exec = xray.execution("p").input_raw("0123456789abcdef").start();
    exec.step("s")
        .output(&"x".repeat(100))
        .reasoning("short")
        .record();
    exec.complete_raw("ok");
    let spans = spans(&xray, &exporter);
    let a = attrs(&spans[0].attributes);
    assert_eq!(a["xray.execution.input"], s("01234567…[truncated 8 bytes]"));
    assert_eq!(a["xray.execution.output"], s("ok"));
    let e = attrs(&spans[0].events[0].attributes);
    // JSON string of 100 x: 102 bytes, 8 kept.
    assert_eq!(e["xray.step.output"], s(r#""xxxxxxx…[truncated 94 bytes]"#));
    assert_eq!(e["xray.step.reasoning"], s("short"));
    assert_eq!(xray.stats().fields_truncated, 2);
}

#[test]
fn steps_beyond_the_cap_are_dropped_and_reported() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter)
        .max_steps_per_execution(2)
        .build()
        .unwrap();
    let exec = xray.execution("p").start();
    for i in 0..5 {
        exec.step(format!("s{i}")).record();
    }
    exec.complete_empty();
    let spans = spans(&xray, &exporter);
    assert_eq!(spans[0].events.len(), 2);
    assert_eq!(
        attrs(&spans[0].attributes)["xray.metadata.xray.sdk.dropped_steps"],
        s("3")
    );
    let st = xray.stats();
    assert_eq!((st.steps_recorded, st.steps_dropped), (2, 3));
}

#[test]
fn candidate_sampling_keeps_the_cap_and_the_selected_one() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter)
        .max_candidates_per_step(2)
        .build()
        .unwrap();
    let exec = xray.execution("p").start();
    let mut step = exec.step("select").kind(StepType::Select);
    for i in 0..10 {
        step = step.candidate(i, Decision::Rejected, "weak", None);
    }
    step.candidate("best", Decision::Selected, None, 0.9)
        .record();
    exec.complete_empty();
    let spans = spans(&xray, &exporter);
    let e = attrs(&spans[0].events[0].attributes);
    assert_eq!(
        e["xray.step.candidates"],
        s(
            r#"[{"id":"0","decision":"rejected","reason":"weak"},{"id":"best","decision":"selected","score":0.9}]"#
        )
    );
    assert_eq!(e["xray.step.metadata.xray.sdk.candidates_seen"], s("11"));
    assert_eq!(xray.stats().candidates_sampled_out, 9);
}

#[test]
fn values_that_are_not_json_are_left_out_and_counted() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).build().unwrap();
    let exec = xray.execution("p").start();
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), "tuple keys are not JSON");
    exec.step("s").input(&bad).output(&1).record();
    exec.complete_empty();
    let spans = spans(&xray, &exporter);
    let e = attrs(&spans[0].events[0].attributes);
    assert!(!e.contains_key("xray.step.input"));
    assert_eq!(e["xray.step.output"], s("1"));
    assert_eq!(xray.stats().serialization_errors, 1);
}

#[test]
fn steps_can_be_recorded_from_several_threads() {
    let exporter = InMemorySpanExporter::default();
    let xray = builder(&exporter).build().unwrap();
    let exec = xray.execution("p").start();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let exec = &exec;
            scope.spawn(move || {
                for i in 0..25 {
                    exec.step(format!("t{t}-{i}")).kind(StepType::Tool).record();
                }
            });
        }
    });
    exec.complete_empty();
    let spans = spans(&xray, &exporter);
    assert_eq!(spans[0].events.len(), 100);
}

#[test]
fn disabled_sdk_records_nothing_and_never_fails() {
    let xray = XRay::disabled();
    assert!(!xray.is_enabled());
    let exec = xray.execution("p").input(&"x").start();
    assert!(!exec.is_recording());
    assert_eq!(exec.id(), None);
    exec.step("s").kind(StepType::Llm).output(&"y").record();
    {
        let _s = exec.span_step("t");
    }
    exec.complete(&"z");
    xray.flush_blocking().unwrap();
    let st = xray.stats();
    assert_eq!(st.executions_started, 1);
    assert_eq!(st.steps_recorded, 0);
}

#[test]
fn attaches_to_an_existing_tracer_provider() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let xray = XRay::builder()
        .tracer_provider(provider.clone())
        .environment("prod")
        .build()
        .unwrap();
    let exec = xray.execution("router").start();
    exec.step("route").kind(StepType::Logic).record();
    exec.complete(&"ok");
    // shutdown only flushes a provider the SDK does not own
    xray.shutdown().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(attrs(&spans[0].attributes)["xray.environment"], s("prod"));
    assert_eq!(spans[0].events[0].name, "route");
    // the provider still works for its owner
    use opentelemetry::trace::{Tracer, TracerProvider};
    provider.tracer("app").in_span("after", |_| {});
    assert_eq!(exporter.get_finished_spans().unwrap().len(), 2);
}

/// An exporter that blocks every export until opened: stands in for a
/// collector that stops answering, which a test cannot otherwise hold still.
#[derive(Debug, Clone)]
struct GatedExporter {
    inner: InMemorySpanExporter,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl GatedExporter {
    fn open(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl SpanExporter for GatedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        {
            let (lock, cv) = &*self.gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
        self.inner.export(batch).await
    }
}

#[test]
fn a_full_export_queue_drops_and_counts_instead_of_growing() {
    let inner = InMemorySpanExporter::default();
    let gated = GatedExporter {
        inner: inner.clone(),
        gate: Arc::new((Mutex::new(false), Condvar::new())),
    };
    let xray = XRay::builder()
        .span_exporter(gated.clone())
        .max_queue_size(4)
        .max_export_batch_size(4)
        .build()
        .unwrap();
    for i in 0..100 {
        xray.execution("p").start().complete(&i);
    }
    // At most 4 spans wait in the queue and at most 4 are stuck in the one
    // export in progress, so at least 92 were turned away.
    let dropped = xray.stats().dropped_spans;
    assert!(dropped >= 92, "dropped {dropped}");
    gated.open();
    xray.shutdown().unwrap();
    let st = xray.stats();
    let delivered = inner.get_finished_spans().unwrap().len() as u64;
    assert_eq!(st.exported_spans, delivered);
    assert_eq!(st.exported_spans + st.dropped_spans, 100, "{st:?}");
    assert_eq!(st.failed_spans, 0);

    // After shutdown, new executions are dropped and counted too.
    xray.execution("p").start().complete_empty();
    assert_eq!(xray.stats().dropped_spans, st.dropped_spans + 1);
    assert!(matches!(
        xray.shutdown(),
        Err(xray_sdk::FlushError::AlreadyShutdown)
    ));
}
