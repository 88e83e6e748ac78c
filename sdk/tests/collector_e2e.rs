//! End to end through the real collector into the real SQLite store: the
//! competitor-selection example sends to `xray-collector` (OTLP/gRPC and
//! OTLP/HTTP), the collector maps and writes the execution, and the test
//! reads it back from the store with its steps and its funnel, in both
//! delivery modes.

use std::sync::Arc;

use xray_collector::Collector;
use xray_config::Config;
use xray_model::{Status, StepType};
use xray_sdk::{DeliveryMode, Protocol, XRay};
use xray_store::{Scope, Sink, TimeWindow};

#[allow(dead_code, unreachable_pub, clippy::print_stdout)]
#[path = "../examples/competitor_selection.rs"]
mod example;

async fn run_through_collector(protocol: Protocol, mode: DeliveryMode) {
    let store = xray_store::testing::sqlite().await;
    let mut config = Config::default();
    config.receivers.otlp.grpc_addr = "127.0.0.1:0".into();
    config.receivers.otlp.http_addr = "127.0.0.1:0".into();
    config.pipeline.flush_interval_ms = 50;
    // The collector's own spool, not `xray-data/spool` in the crate folder.
    let spool = tempfile::tempdir().unwrap();
    config.pipeline.spool_dir = spool.path().display().to_string();
    let primary: Arc<dyn Sink> = store.backend.clone();
    let keys: Arc<dyn xray_store::Store> = store.backend.clone();
    let auth = xray_auth::Authenticator::new(&config.auth, keys);
    let collector = Collector::start(&config, primary, Vec::new(), auth)
        .await
        .expect("start collector");
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://{}", collector.grpc_addr()),
        _ => format!("http://{}", collector.http_addr()),
    };

    let xray = XRay::builder()
        .endpoint(endpoint)
        .protocol(protocol)
        .service("competitor-selector")
        .environment("ci")
        .mode(mode)
        .build()
        .unwrap();
    let (id, result) = example::run_pipeline(&xray, &example::our_product());
    let best = result.unwrap();
    xray.flush().await.expect("collector accepted the spans");
    let st = xray.stats();
    assert_eq!((st.failed_spans, st.dropped_spans), (0, 0), "{st:?}");
    // Shutting the collector down drains its pipeline into the store.
    collector.shutdown().await.expect("collector shutdown");

    let scope = Scope::All;
    let detail = store
        .backend
        .get_execution(&scope, &id)
        .await
        .unwrap()
        .expect("execution stored");
    let exec = &detail.execution;
    assert_eq!(exec.pipeline, "competitor-selection");
    assert_eq!(exec.status, Status::Completed);
    assert_eq!(exec.environment, "ci");
    assert_eq!(exec.service, "competitor-selector");
    assert_eq!(exec.tags, ["example"]);
    let output: serde_json::Value = serde_json::from_str(exec.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["asin"], best.asin.as_str());

    let steps = &detail.steps;
    let names: Vec<_> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "generate_keywords",
            "search_catalogue",
            "filter_candidates",
            "rank_candidates",
            "select_competitor"
        ]
    );
    let kinds: Vec<_> = steps.iter().map(|s| s.step_type).collect();
    assert_eq!(
        kinds,
        [
            StepType::Llm,
            StepType::Retrieval,
            StepType::Filter,
            StepType::Rank,
            StepType::Select
        ]
    );
    assert_eq!(steps[0].model.as_deref(), Some("gpt-4o"));
    assert_eq!(steps[0].input_tokens, Some(152));
    // The funnel: 5000 found → filtered → top 10 → 1 selected.
    assert_eq!(steps[1].candidates_out, Some(5000));
    assert_eq!(steps[2].candidates_in, Some(5000));
    let kept = steps[2].candidates_out.unwrap();
    let rejected: u64 = steps[2].rejections.values().sum();
    assert_eq!(rejected, 5000 - kept);
    assert_eq!(steps[3].candidates_in, Some(kept));
    assert_eq!(steps[3].candidates_out, Some(10));
    assert_eq!(
        (steps[4].candidates_in, steps[4].candidates_out),
        (Some(10), Some(1))
    );

    // The pipeline funnel aggregates the same steps.
    let window = TimeWindow {
        from_ns: exec.start_time_ns - 1,
        to_ns: exec.start_time_ns + 3_600_000_000_000,
    };
    let funnel = store
        .backend
        .pipeline_funnel(&scope, "competitor-selection", window)
        .await
        .unwrap();
    let rows: Vec<_> = funnel
        .iter()
        .map(|r| (r.name.as_str(), r.total_in, r.total_out))
        .collect();
    assert_eq!(
        rows,
        [
            ("generate_keywords", 0, 0),
            ("search_catalogue", 0, 0),
            ("filter_candidates", 5000, kept),
            ("rank_candidates", kept, 10),
            ("select_competitor", 10, 1),
        ]
    );
    xray.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_through_the_collector_over_grpc_snapshot() {
    run_through_collector(Protocol::Grpc, DeliveryMode::Snapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_through_the_collector_over_http_live() {
    run_through_collector(Protocol::HttpProtobuf, DeliveryMode::Live).await;
}
