//! Shared helpers of the collector's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use xray_collector::Collector;
use xray_store::testing::TestBackend;
use xray_store::{ExecutionDetail, Scope, Sink};

/// A config with both listeners on free ports and quick flushes.
pub fn config() -> xray_config::Config {
    let mut c = xray_config::Config::default();
    c.receivers.otlp.grpc_addr = "127.0.0.1:0".into();
    c.receivers.otlp.http_addr = "127.0.0.1:0".into();
    c.pipeline.flush_interval_ms = 20;
    // Tests that want the spool give it a directory of their own.
    c.pipeline.spool_enabled = false;
    c
}

/// [`config`] with a spool in `dir`.
pub fn config_with_spool(dir: &std::path::Path) -> xray_config::Config {
    let mut c = config();
    c.pipeline.spool_enabled = true;
    c.pipeline.spool_dir = dir.display().to_string();
    c
}

/// The authenticator of `config.auth` over the apps and keys of `store`.
pub fn auth(config: &xray_config::Config, store: &TestBackend) -> xray_auth::Authenticator {
    let keys: Arc<dyn xray_store::Store> = store.backend.clone();
    xray_auth::Authenticator::new(&config.auth, keys)
}

/// A real collector writing to a fresh SQLite store (which also holds the
/// apps and keys it authenticates with).
pub async fn start(config: &xray_config::Config) -> (Collector, TestBackend) {
    let store = xray_store::testing::sqlite().await;
    let collector = start_on(config, &store).await;
    (collector, store)
}

/// A real collector writing to `store` and authenticating with its keys.
pub async fn start_on(config: &xray_config::Config, store: &TestBackend) -> Collector {
    let sink: Arc<dyn Sink> = store.backend.clone();
    Collector::start(config, sink, Vec::new(), auth(config, store))
        .await
        .expect("collector starts")
}

/// Reads one execution back, by trace id, as the dashboard would.
pub async fn read(store: &TestBackend, trace_id: &str) -> ExecutionDetail {
    store
        .backend
        .get_execution(&Scope::App(xray_model::DEFAULT_APP.into()), trace_id)
        .await
        .expect("store read")
        .unwrap_or_else(|| panic!("execution for trace {trace_id} not stored"))
}

/// Checks the run that the Rust and Python clients send: a pipeline span
/// with a gen_ai child, an OpenInference child and a grandchild step, plus a
/// snapshot-mode event step when `with_event` is set.
pub fn assert_client_run(d: &ExecutionDetail, pipeline: &str, service: &str, with_event: bool) {
    use xray_model::{Status, StepType};
    let e = &d.execution;
    assert_eq!(e.pipeline, pipeline);
    assert_eq!(e.service, service);
    assert_eq!(e.status, Status::Completed);
    assert_eq!(e.execution_id, e.trace_id);
    let step = |name: &str| {
        d.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("step {name} missing in {:#?}", d.steps))
    };
    let llm = step("chat gpt-4o");
    assert_eq!(llm.step_type, StepType::Llm);
    assert_eq!(llm.model.as_deref(), Some("gpt-4o"));
    assert_eq!(llm.provider.as_deref(), Some("openai"));
    assert_eq!(llm.input_tokens, Some(812));
    assert_eq!(llm.output_tokens, Some(64));
    assert_eq!(llm.parent_span_id, e.span_id);
    let ret = step("retrieve");
    assert_eq!(ret.step_type, StepType::Retrieval);
    assert_eq!(ret.parent_span_id, e.span_id);
    assert_eq!(ret.input.as_deref(), Some("running shoes"));
    let flt = step("filter-price");
    assert_eq!(flt.step_type, StepType::Filter);
    assert_eq!(flt.parent_span_id, ret.span_id);
    assert_eq!(flt.candidates_in, Some(5000));
    assert_eq!(flt.candidates_out, Some(100));
    assert_eq!(flt.rejections.get("price_above_limit"), Some(&4900));
    for s in &d.steps {
        assert_eq!(s.service, service, "service of step {}", s.name);
        assert_eq!(s.trace_id, e.trace_id);
    }
    if with_event {
        let ev = step("keywords");
        assert_eq!(ev.step_type, StepType::Llm);
        assert_eq!(ev.parent_span_id, e.span_id);
        assert_eq!(ev.execution_id, e.execution_id);
        assert_eq!(d.steps.len(), 4);
    } else {
        assert_eq!(d.steps.len(), 3);
    }
}

/// `google.rpc.Status`, as the HTTP receiver answers errors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A string attribute.
pub fn kv(k: &str, v: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// An export request of `spans` under one resource and scope.
pub fn request(
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `data` gzipped.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
