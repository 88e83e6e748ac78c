//! The Rust `opentelemetry-otlp` exporter, over gRPC and over HTTP/protobuf,
//! sends a pipeline run to a real collector; the run is read back through
//! the SQLite store.

mod common;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Emits the test run with the SDK; returns the trace id in hex.
fn emit(provider: &SdkTracerProvider, pipeline: &'static str) -> String {
    let tracer = provider.tracer("xray-rust-test");
    let trace_id = tracer.in_span("pipeline-run", |cx| {
        let span = cx.span();
        span.set_attribute(KeyValue::new("xray.pipeline", pipeline));
        span.add_event(
            "keywords",
            vec![
                KeyValue::new("xray.step.type", "llm"),
                KeyValue::new("xray.step.output", r#"["trail","running"]"#),
            ],
        );
        tracer.in_span("chat gpt-4o", |cx| {
            let s = cx.span();
            s.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
            s.set_attribute(KeyValue::new("gen_ai.provider.name", "openai"));
            s.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
            s.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 812_i64));
            s.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 64_i64));
        });
        tracer.in_span("retrieve", |cx| {
            let s = cx.span();
            s.set_attribute(KeyValue::new("openinference.span.kind", "RETRIEVER"));
            s.set_attribute(KeyValue::new("input.value", "running shoes"));
            let mut f = tracer.start("filter-price");
            f.set_attribute(KeyValue::new("xray.step.type", "filter"));
            f.set_attribute(KeyValue::new("xray.step.candidates.in", 5000_i64));
            f.set_attribute(KeyValue::new("xray.step.candidates.out", 100_i64));
            f.set_attribute(KeyValue::new(
                "xray.step.rejections",
                r#"{"price_above_limit":4900}"#,
            ));
            f.end();
        });
        span.span_context().trace_id().to_string()
    });
    provider.force_flush().expect("flush");
    trace_id
}

fn provider(
    exporter: opentelemetry_otlp::SpanExporter,
    service: &'static str,
) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_exporter_over_grpc_with_gzip() {
    let (collector, store) = common::start(&common::config()).await;
    let endpoint = format!("http://{}", collector.grpc_addr());
    let trace_id = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .expect("grpc exporter");
        let p = provider(exporter, "rust-grpc");
        let id = emit(&p, "rust-grpc-pipeline");
        p.shutdown().expect("provider shutdown");
        id
    })
    .await
    .unwrap();
    collector.shutdown().await.expect("clean shutdown");
    let d = common::read(&store, &trace_id).await;
    common::assert_client_run(&d, "rust-grpc-pipeline", "rust-grpc", true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_exporter_over_http_protobuf() {
    let (collector, store) = common::start(&common::config()).await;
    let endpoint = format!("http://{}/v1/traces", collector.http_addr());
    let trace_id = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .expect("http exporter");
        let p = provider(exporter, "rust-http");
        let id = emit(&p, "rust-http-pipeline");
        p.shutdown().expect("provider shutdown");
        id
    })
    .await
    .unwrap();
    collector.shutdown().await.expect("clean shutdown");
    let d = common::read(&store, &trace_id).await;
    common::assert_client_run(&d, "rust-http-pipeline", "rust-http", true);
}
