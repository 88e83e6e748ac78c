//! The processor chain end to end: real collectors on real SQLite stores,
//! the dashboard API over HTTP, spans sent by the Rust OTel exporter and
//! as raw OTLP/HTTP protobuf.
//!
//! - redaction: an email, a card number and an API key in prompts come out
//!   redacted in the store and in every API view, while a `forward`
//!   processor passes the request on intact to a second collector (gRPC)
//!   and redacted to a third (HTTP);
//! - sampling: over 10,000 executions the configured rates hold within
//!   ±2%, every failed and every slow execution is kept, and no step is
//!   stored without its execution.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PbKeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use xray_collector::Collector;
use xray_collector::processor::sample::score;
use xray_config::{
    ForwardConfig, ForwardProtocol, ProcessorConfig, RedactAction, RedactConfig, RedactRule,
    SampleConfig,
};
use xray_model::{MappedBatch, Status as XStatus};
use xray_store::testing::TestBackend;
use xray_store::{ExecutionFilter, PageRequest, Scope, Sink, SinkError, Store};

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const CARD_DIGITS: &str = "4111111111111111";
const API_KEY: &str = "sk-proj-AbCdEfGhIjKlMnOpQrSt1234";
const PASSWORD: &str = "hunter2-very-secret";

/// Emits one support-bot run with secrets in its prompts; returns the
/// trace id.
fn emit(provider: &SdkTracerProvider) -> String {
    let tracer = provider.tracer("xray-processors-test");
    let trace_id = tracer.in_span("support-run", |cx| {
        let span = cx.span();
        span.set_attribute(KeyValue::new("xray.pipeline", "support-bot"));
        span.set_attribute(KeyValue::new(
            "xray.execution.input",
            format!(r#"{{"user":"{EMAIL}","question":"my card {CARD} was charged twice"}}"#),
        ));
        span.set_attribute(KeyValue::new("xray.metadata.contact", EMAIL));
        span.add_event(
            "classify",
            vec![
                KeyValue::new("xray.step.type", "llm"),
                KeyValue::new("xray.step.output", format!("billing; reply to {EMAIL}")),
            ],
        );
        tracer.in_span("chat gpt-4o", |cx| {
            let s = cx.span();
            s.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
            s.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
            s.set_attribute(KeyValue::new(
                "gen_ai.input.messages",
                format!(
                    r#"[{{"role":"user","content":"use key {API_KEY} and write to {EMAIL}"}}]"#
                ),
            ));
        });
        tracer.in_span("lookup-card", |cx| {
            let s = cx.span();
            s.set_attribute(KeyValue::new("xray.step.type", "tool"));
            s.set_attribute(KeyValue::new(
                "xray.step.input",
                format!(r#"{{"card":"{CARD_DIGITS}","password":"{PASSWORD}","n":3}}"#),
            ));
            s.set_attribute(KeyValue::new(
                "xray.step.reasoning",
                format!("authorized with {API_KEY}"),
            ));
        });
        span.span_context().trace_id().to_string()
    });
    provider.force_flush().expect("flush");
    trace_id
}

fn assert_redacted(what: &str, text: &str) {
    for secret in [EMAIL, CARD, CARD_DIGITS, API_KEY, PASSWORD] {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

async fn detail_json(store: &TestBackend, trace_id: &str) -> String {
    serde_json::to_string(&common::read(store, trace_id).await).unwrap()
}

/// Serves the dashboard API over `store` on a free port.
async fn serve_api(store: &TestBackend) -> String {
    let s: Arc<dyn Store> = store.backend.clone();
    let app = xray_dashboard_api::router(xray_dashboard_api::AppState::new(
        s,
        xray_config::ApiConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_in_store_and_api_while_forwarded_copies_reach_other_collectors() {
    // Two downstream collectors, each on its own store, no processors.
    let (intact, intact_store) = common::start(&common::config()).await;
    let (redacted, redacted_store) = common::start(&common::config()).await;

    let mut config = common::config();
    config.processors = vec![
        ProcessorConfig::Redact(RedactConfig {
            rules: vec![RedactRule {
                name: "passwords".into(),
                keys: vec!["*.password".into()],
                action: RedactAction::Drop,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ProcessorConfig::Forward(ForwardConfig {
            endpoint: format!("http://{}", intact.grpc_addr()),
            protocol: ForwardProtocol::Grpc,
            ..Default::default()
        }),
        ProcessorConfig::Forward(ForwardConfig {
            endpoint: format!("http://{}/v1/traces", redacted.http_addr()),
            protocol: ForwardProtocol::Http,
            redact: true,
            ..Default::default()
        }),
    ];
    config.validate().expect("valid config");
    let (front, store) = common::start(&config).await;

    let endpoint = format!("http://{}", front.grpc_addr());
    let trace_id = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .expect("grpc exporter");
        let p = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("support").build())
            .build();
        let id = emit(&p);
        p.shutdown().expect("provider shutdown");
        id
    })
    .await
    .unwrap();

    let metrics = reqwest::get(format!("http://{}/metrics", front.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("xray_processor_redacted_rows_total"),
        "{metrics}"
    );
    // Shutting the front collector down drains its queue and its
    // forwarders; then the downstream ones flush theirs.
    front.shutdown().await.expect("front shutdown");
    intact.shutdown().await.expect("intact shutdown");
    redacted.shutdown().await.expect("redacted shutdown");

    // The store of the front collector: redacted, rule names recorded.
    let d = common::read(&store, &trace_id).await;
    assert_eq!(d.execution.pipeline, "support-bot");
    assert_eq!(d.steps.len(), 3, "{:#?}", d.steps);
    assert_eq!(
        d.execution
            .metadata
            .get("xray.redaction.rules")
            .map(String::as_str),
        Some("email,payment_card")
    );
    assert_eq!(d.execution.metadata["contact"], "[REDACTED:email]");
    let input: serde_json::Value =
        serde_json::from_str(d.execution.input.as_deref().unwrap()).expect("input still JSON");
    assert_eq!(input["user"], "[REDACTED:email]");
    assert_eq!(
        input["question"],
        "my card [REDACTED:payment_card] was charged twice"
    );
    let lookup = d.steps.iter().find(|s| s.name == "lookup-card").unwrap();
    let li: serde_json::Value = serde_json::from_str(lookup.input.as_deref().unwrap()).unwrap();
    assert_eq!(
        li,
        serde_json::json!({"card": "[REDACTED:payment_card]", "n": 3})
    );
    assert_eq!(
        lookup.reasoning.as_deref(),
        Some("authorized with [REDACTED:api_key]")
    );
    assert_eq!(
        lookup.metadata["xray.redaction.rules"],
        "api_key,passwords,payment_card"
    );
    let chat = d.steps.iter().find(|s| s.name == "chat gpt-4o").unwrap();
    assert!(
        chat.input
            .as_deref()
            .unwrap()
            .contains("[REDACTED:api_key]")
    );
    assert_redacted("store", &detail_json(&store, &trace_id).await);

    // Every API view.
    let api = serve_api(&store).await;
    let client = reqwest::Client::new();
    let id = &d.execution.execution_id;
    for path in [
        "/executions".to_string(),
        format!("/executions?q={trace_id}"),
        format!("/executions/{id}"),
        format!("/executions/{trace_id}"),
        format!("/executions/{id}/steps"),
        format!("/executions/{id}/funnel"),
        "/pipelines".to_string(),
        "/pipelines/support-bot/funnel".to_string(),
    ] {
        let resp = client.get(format!("{api}{path}")).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let body = resp.text().await.unwrap();
        assert_redacted(&path, &body);
        if path.starts_with("/executions/") && !path.ends_with("funnel") {
            assert!(body.contains("[REDACTED:email]"), "{path}: {body}");
        }
    }

    // The intact copy: every secret as sent.
    let intact_json = detail_json(&intact_store, &trace_id).await;
    for secret in [EMAIL, CARD, CARD_DIGITS, API_KEY, PASSWORD] {
        assert!(intact_json.contains(secret), "intact copy lost {secret}");
    }
    assert!(!intact_json.contains("REDACTED"));
    // The redacted copy: redacted by the same rules before it left.
    let redacted_json = detail_json(&redacted_store, &trace_id).await;
    assert_redacted("redacted copy", &redacted_json);
    assert!(redacted_json.contains("[REDACTED:api_key]"));
    let copy = common::read(&redacted_store, &trace_id).await;
    assert_eq!(copy.steps.len(), 3);

    let m = xray_collector::render_metrics();
    let sent = m
        .lines()
        .find(|l| l.starts_with("xray_processor_forward_requests_total{outcome=\"sent\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(sent >= 2, "{m}");
}

/// Writes to the real store and remembers every row it was given, so the
/// test sees steps that no read API would show (orphans).
struct Recording {
    inner: Arc<dyn Sink>,
    steps: Mutex<Vec<String>>,
}

#[async_trait]
impl Sink for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        self.inner.write(batch).await?;
        self.steps
            .lock()
            .unwrap()
            .extend(batch.steps.iter().map(|s| s.trace_id.clone()));
        Ok(())
    }
}

fn pb_kv(k: &str, v: &str) -> PbKeyValue {
    PbKeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn trace_bytes(i: u64) -> [u8; 16] {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 27)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&mix(i).to_be_bytes());
    b[8..].copy_from_slice(&mix(i ^ 0xdead_beef).to_be_bytes());
    b
}

const N: u64 = 10_000;
const T0: u64 = 1_750_000_000_000_000_000;

struct Run {
    trace: [u8; 16],
    pipeline: &'static str,
    failed: bool,
    slow: bool,
    /// Child spans exported in a request of their own, before the root.
    split: bool,
}

fn run(i: u64) -> Run {
    Run {
        trace: trace_bytes(i),
        pipeline: if i.is_multiple_of(2) {
            "checkout"
        } else {
            "search"
        },
        failed: i % 5 == 3,
        slow: i % 50 == 7,
        split: i % 4 < 2,
    }
}

fn root(r: &Run, i: u64) -> Span {
    let start = T0 + i * 1_000_000;
    let dur = if r.slow { 2_000_000_000 } else { 10_000_000 };
    Span {
        trace_id: r.trace.to_vec(),
        span_id: (i * 4 + 1).to_be_bytes().to_vec(),
        name: "run".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur,
        attributes: vec![pb_kv("xray.pipeline", r.pipeline)],
        status: Some(Status {
            code: if r.failed {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Ok as i32
            },
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn children(r: &Run, i: u64) -> Vec<Span> {
    (0..2u64)
        .map(|c| {
            let start = T0 + i * 1_000_000 + c;
            Span {
                trace_id: r.trace.to_vec(),
                span_id: (i * 4 + 2 + c).to_be_bytes().to_vec(),
                parent_span_id: (i * 4 + 1).to_be_bytes().to_vec(),
                name: format!("step-{c}"),
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1000,
                attributes: vec![pb_kv("xray.step.type", "filter")],
                ..Default::default()
            }
        })
        .collect()
}

fn request(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_10000_executions_holds_rates_keeps_failures_and_never_orphans_steps() {
    let (default_rate, checkout_rate) = (0.2, 0.5);
    let mut config = common::config();
    config.processors = vec![ProcessorConfig::Sample(SampleConfig {
        rate: default_rate,
        pipelines: [("checkout".to_string(), checkout_rate)].into(),
        keep_slower_than_ms: 1000,
    })];
    config.validate().expect("valid config");
    let store = xray_store::testing::sqlite().await;
    let recording = Arc::new(Recording {
        inner: store.backend.clone(),
        steps: Mutex::new(Vec::new()),
    });
    let sink: Arc<dyn Sink> = recording.clone();
    let collector = Collector::start(&config, sink, Vec::new(), common::auth(&config, &store))
        .await
        .expect("collector starts");
    let url = format!("http://{}/v1/traces", collector.http_addr());
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let req = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body);
        async move {
            let resp = req.send().await.expect("post");
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    };
    for chunk in (0..N).collect::<Vec<_>>().chunks(250) {
        // Split runs: their child spans first, alone, as OTel batch
        // processors export them (children end first).
        let early: Vec<Span> = chunk
            .iter()
            .filter(|i| run(**i).split)
            .flat_map(|i| children(&run(*i), *i))
            .collect();
        post(request(early)).await;
        let mut rest = Vec::new();
        for i in chunk {
            let r = run(*i);
            rest.push(root(&r, *i));
            if !r.split {
                rest.extend(children(&r, *i));
            }
        }
        post(request(rest)).await;
    }
    collector.shutdown().await.expect("clean shutdown");

    // Every stored execution, through the store's list API.
    let mut stored: HashMap<String, (String, String, u64)> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .backend
            .list_executions(
                &Scope::App(xray_model::DEFAULT_APP.into()),
                &ExecutionFilter::default(),
                &PageRequest { limit: 1000, after },
            )
            .await
            .expect("list");
        for s in &page.items {
            let e = &s.execution;
            stored.insert(
                e.trace_id.clone(),
                (
                    e.metadata["xray.sampling.reason"].clone(),
                    e.metadata["xray.sampling.rate"].clone(),
                    s.step_count,
                ),
            );
            if e.status == XStatus::Failed {
                assert_eq!(e.metadata["xray.sampling.reason"], "failed");
            }
        }
        after = page.next;
        if after.is_none() {
            break;
        }
    }

    let min_rate = f64::min(default_rate, checkout_rate);
    let mut plain = HashMap::<&str, (u64, u64)>::new();
    for i in 0..N {
        let r = run(i);
        let trace = hex::encode(r.trace);
        let kept = stored.get(&trace);
        if r.failed || r.slow {
            let (reason, _, _) = kept.unwrap_or_else(|| panic!("failed/slow run {i} dropped"));
            assert_eq!(reason, if r.failed { "failed" } else { "slow" });
        } else {
            let e = plain.entry(r.pipeline).or_default();
            e.0 += 1;
            e.1 += u64::from(kept.is_some());
        }
        if let Some((_, rate, steps)) = kept {
            let expected_rate = if r.pipeline == "checkout" {
                "0.5"
            } else {
                "0.2"
            };
            assert_eq!(rate, expected_rate);
            // Steps that came with the execution follow it; steps that
            // came alone are kept by the minimum rate only.
            let expect = if !r.split || score(&trace) < min_rate {
                2
            } else {
                0
            };
            assert_eq!(*steps, expect, "steps of run {i} (split {})", r.split);
        }
    }
    for (pipeline, rate) in [("checkout", checkout_rate), ("search", default_rate)] {
        let (n, k) = plain[pipeline];
        let observed = k as f64 / n as f64;
        eprintln!("{pipeline}: kept {k} of {n} = {observed:.4} (rate {rate})");
        assert!(
            (observed - rate).abs() <= 0.02,
            "{pipeline}: kept {k} of {n} = {observed:.4}, configured {rate}"
        );
    }
    // No step stored without its execution: every step row the store was
    // given belongs to a stored execution.
    let steps = recording.steps.lock().unwrap();
    eprintln!(
        "{} executions stored, {} step rows written",
        stored.len(),
        steps.len()
    );
    assert!(!steps.is_empty());
    let orphans: HashSet<&String> = steps.iter().filter(|t| !stored.contains_key(*t)).collect();
    assert!(orphans.is_empty(), "{} orphan traces", orphans.len());
}
