//! The SDK's `api_key` against a real collector that requires keys: the
//! example run lands in the key's app over gRPC and over HTTP; without a
//! key the collector refuses the spans and the SDK reports it.

use std::sync::Arc;

use xray_collector::Collector;
use xray_config::Config;
use xray_sdk::{DeliveryMode, Protocol, XRay};
use xray_store::{Scope, Sink};

#[allow(dead_code, unreachable_pub, clippy::print_stdout)]
#[path = "../examples/competitor_selection.rs"]
mod example;

async fn send(protocol: Protocol) {
    let store = xray_store::testing::sqlite().await;
    let (app, key) = xray_auth::create_app(store.backend.as_ref(), "SDK Shop")
        .await
        .unwrap();
    let mut config = Config::default();
    config.receivers.otlp.grpc_addr = "127.0.0.1:0".into();
    config.receivers.otlp.http_addr = "127.0.0.1:0".into();
    config.pipeline.flush_interval_ms = 50;
    // The collector's own spool, not `xray-data/spool` in the crate folder.
    let spool = tempfile::tempdir().unwrap();
    config.pipeline.spool_dir = spool.path().display().to_string();
    config.auth.required = true;
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
    let client = |key: Option<&str>| {
        let mut b = XRay::builder()
            .endpoint(endpoint.clone())
            .protocol(protocol)
            .service("sdk-auth")
            .mode(DeliveryMode::Snapshot);
        if let Some(k) = key {
            b = b.api_key(k);
        }
        b.build().unwrap()
    };

    let with_key = client(Some(&key));
    let (id, result) = example::run_pipeline(&with_key, &example::our_product());
    result.unwrap();
    with_key
        .flush()
        .await
        .expect("the collector accepted the spans");
    with_key.shutdown().unwrap();

    let without = client(None);
    let (refused_id, _) = example::run_pipeline(&without, &example::our_product());
    let flushed = without.flush().await;
    let st = without.stats();
    assert!(
        flushed.is_err() || st.failed_spans > 0,
        "the SDK reports the refusal: {flushed:?} {st:?}"
    );
    let _ = without.shutdown();
    collector.shutdown().await.expect("collector shutdown");

    let in_app = store
        .backend
        .get_execution(&Scope::App(app.id.clone()), &id)
        .await
        .unwrap()
        .expect("the run is in the key's app");
    assert_eq!(in_app.execution.pipeline, "competitor-selection");
    assert_eq!(in_app.steps.len(), 5);
    let anywhere = store
        .backend
        .get_execution(&Scope::All, &refused_id)
        .await
        .unwrap();
    assert!(anywhere.is_none(), "the keyless run was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_api_key_over_grpc() {
    send(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_api_key_over_http() {
    send(Protocol::HttpProtobuf).await;
}
