//! The OpenTelemetry Python SDK sends a pipeline run with its OTLP/gRPC and
//! OTLP/HTTP exporters, and an OTLP/JSON body shaped like the OTel
//! Collector's `otlphttp` exporter with `encoding: json`; each run is read
//! back through the SQLite store.
//!
//! The interpreter comes from `XRAY_TEST_PYTHON` (set by `dev/test.sh` to
//! `dev/.venv/bin/python`, with `collector/tests/python/requirements.txt`
//! installed).

mod common;

use std::path::Path;

async fn python(mode: &str, endpoint: &str, pipeline: &str) -> String {
    let python = std::env::var("XRAY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "XRAY_TEST_PYTHON is not set: run dev/test.sh, which installs \
             collector/tests/python/requirements.txt into dev/.venv and sets it"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_spans.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([mode, endpoint, pipeline])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{python} send_spans.py {mode} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn run(mode: &str) {
    let (collector, store) = common::start(&common::config()).await;
    let endpoint = match mode {
        "grpc" => collector.grpc_addr().to_string(),
        _ => format!("http://{}/v1/traces", collector.http_addr()),
    };
    let pipeline = format!("python-{mode}-pipeline");
    let trace_id = python(mode, &endpoint, &pipeline).await;
    collector.shutdown().await.expect("clean shutdown");
    let d = common::read(&store, &trace_id).await;
    common::assert_client_run(&d, &pipeline, &format!("python-{mode}"), true);
    assert_eq!(d.execution.environment, "test");
    assert_eq!(d.execution.tags, vec!["python", "test"]);
    assert_eq!(
        d.execution.input.as_deref(),
        Some(r#"{"query": "running shoes"}"#)
    );
}

#[tokio::test]
async fn python_sdk_over_grpc() {
    run("grpc").await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf() {
    run("http").await;
}

#[tokio::test]
async fn otlp_json_as_the_otel_collector_sends_it() {
    run("json").await;
}
