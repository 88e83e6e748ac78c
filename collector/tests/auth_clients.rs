//! Real OTel clients sending with an API key: the Rust `opentelemetry-otlp`
//! exporter (gRPC metadata, HTTP headers) and the Python SDK's exporters
//! (`OTEL_EXPORTER_OTLP_HEADERS=x-api-key=…`). Their runs land in the key's
//! app; without a key, under `auth.required = true`, they are refused and
//! nothing is stored.
//!
//! The Python interpreter comes from `XRAY_TEST_PYTHON` (see
//! `python_clients.rs`).

mod common;

use std::collections::HashMap;
use std::path::Path;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use xray_store::Scope;
use xray_store::testing::TestBackend;

fn required() -> xray_config::Config {
    let mut c = common::config();
    c.auth.required = true;
    c
}

async fn app_with_key(store: &TestBackend, name: &str) -> (String, String) {
    let (app, key) = xray_auth::create_app(store.backend.as_ref(), name)
        .await
        .unwrap();
    (app.id, key)
}

async fn stored(store: &TestBackend, app: &str, trace_id: &str) -> bool {
    store
        .backend
        .get_execution(&Scope::App(app.into()), trace_id)
        .await
        .unwrap()
        .is_some()
}

fn refused_missing() -> u64 {
    let text = xray_collector::render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix("xray_collector_auth_refused_total{reason=\"missing_key\"}"))
        .expect("auth metric")
        .trim()
        .parse()
        .unwrap()
}

/// One pipeline span with a child step, through `exporter`; the trace id.
fn emit(exporter: opentelemetry_otlp::SpanExporter, pipeline: &'static str) -> String {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("rust-auth").build())
        .build();
    let tracer = provider.tracer("xray-auth-test");
    let trace_id = tracer.in_span("run", |cx| {
        cx.span()
            .set_attribute(KeyValue::new("xray.pipeline", pipeline));
        let mut s = tracer.start("filter");
        s.set_attribute(KeyValue::new("xray.step.type", "filter"));
        s.end();
        cx.span().span_context().trace_id().to_string()
    });
    // a refused export is the exporter's error, logged by the SDK
    let _ = provider.force_flush();
    let _ = provider.shutdown();
    trace_id
}

fn grpc_exporter(endpoint: String, key: Option<&str>) -> opentelemetry_otlp::SpanExporter {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(k) = key {
        metadata.insert("x-api-key", k.parse().unwrap());
    }
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(metadata)
        .build()
        .expect("grpc exporter")
}

fn http_exporter(endpoint: String, key: Option<&str>) -> opentelemetry_otlp::SpanExporter {
    let headers: HashMap<String, String> = key
        .map(|k| [("authorization".to_string(), format!("Bearer {k}"))].into())
        .unwrap_or_default();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_headers(headers)
        .build()
        .expect("http exporter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_exporter_with_a_key_lands_in_its_app_and_without_one_is_refused() {
    let config = required();
    let store = xray_store::testing::sqlite().await;
    let (app, key) = app_with_key(&store, "Rust Client").await;
    let collector = common::start_on(&config, &store).await;
    let grpc = format!("http://{}", collector.grpc_addr());
    let http = format!("http://{}/v1/traces", collector.http_addr());
    let before = refused_missing();
    let (k, g, h) = (key.clone(), grpc.clone(), http.clone());
    let [with_grpc, with_http, without_grpc, without_http] =
        tokio::task::spawn_blocking(move || {
            [
                emit(grpc_exporter(g.clone(), Some(&k)), "rust-grpc-key"),
                emit(http_exporter(h.clone(), Some(&k)), "rust-http-key"),
                emit(grpc_exporter(g, None), "rust-grpc-nokey"),
                emit(http_exporter(h, None), "rust-http-nokey"),
            ]
        })
        .await
        .unwrap();
    assert!(
        refused_missing() >= before + 2,
        "both keyless exports refused"
    );
    collector.shutdown().await.unwrap();
    for trace in [&with_grpc, &with_http] {
        assert!(stored(&store, &app, trace).await, "run {trace} in {app}");
        assert!(!stored(&store, "default", trace).await);
    }
    for trace in [&without_grpc, &without_http] {
        assert!(!stored(&store, &app, trace).await);
        assert!(
            !stored(&store, "default", trace).await,
            "run {trace} refused"
        );
    }
}

/// Runs `send_spans.py MODE ENDPOINT PIPELINE` with `headers` in
/// `OTEL_EXPORTER_OTLP_HEADERS`; returns (trace id, stderr).
async fn python(
    mode: &str,
    endpoint: &str,
    pipeline: &str,
    headers: Option<&str>,
) -> (String, String) {
    let python = std::env::var("XRAY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "XRAY_TEST_PYTHON is not set: run dev/test.sh, which installs \
             collector/tests/python/requirements.txt into dev/.venv and sets it"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_spans.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .args([mode, endpoint, pipeline])
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS");
    if let Some(h) = headers {
        cmd.env("OTEL_EXPORTER_OTLP_HEADERS", h);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "send_spans.py {mode} failed:\n{stderr}"
    );
    (
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        stderr,
    )
}

async fn python_run(mode: &str) {
    let config = required();
    let store = xray_store::testing::sqlite().await;
    let (app, key) = app_with_key(&store, &format!("Python {mode}")).await;
    let collector = common::start_on(&config, &store).await;
    let endpoint = match mode {
        "grpc" => collector.grpc_addr().to_string(),
        _ => format!("http://{}/v1/traces", collector.http_addr()),
    };
    let header = format!("x-api-key={key}");
    let (with_key, _) = python(mode, &endpoint, "py-key", Some(&header)).await;
    let (without_key, stderr) = python(mode, &endpoint, "py-nokey", None).await;
    collector.shutdown().await.unwrap();
    let d = store
        .backend
        .get_execution(&Scope::App(app.clone()), &with_key)
        .await
        .unwrap()
        .expect("the keyed run is in the key's app");
    common::assert_client_run(&d, "py-key", &format!("python-{mode}"), true);
    assert!(!stored(&store, "default", &with_key).await);
    assert!(!stored(&store, &app, &without_key).await);
    assert!(!stored(&store, "default", &without_key).await);
    // the SDK reports the refusal (and does not retry it)
    let said = match mode {
        "grpc" => "UNAUTHENTICATED",
        _ => "401",
    };
    assert!(stderr.contains(said), "python stderr:\n{stderr}");
}

#[tokio::test]
async fn python_sdk_over_grpc_with_a_key() {
    python_run("grpc").await;
}

#[tokio::test]
async fn python_sdk_over_http_with_a_key() {
    python_run("http").await;
}
