//! The batching pipeline: retries, extra sinks that fail, draining on
//! shutdown, and the one-writer-per-sink contract. Faulty sinks are test
//! doubles (the faults cannot be produced with a real store on demand); the
//! primary store is real SQLite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use prost::Message;
use xray_model::MappedBatch;
use xray_store::{Sink, SinkError};

/// Wraps a sink: fails the first `fail_first` writes (retryable), or every
/// write when `always_fail`; panics if ever called concurrently.
struct Faulty {
    inner: Option<Arc<dyn Sink>>,
    fail_first: u32,
    calls: AtomicU32,
    in_flight: AtomicBool,
}

#[async_trait]
impl Sink for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }

    async fn write(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        assert!(
            !self.in_flight.swap(true, Ordering::SeqCst),
            "Sink::write called concurrently"
        );
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        let result = match &self.inner {
            Some(inner) if n >= self.fail_first => inner.write(batch).await,
            _ => Err(SinkError::Retryable {
                sink: "faulty".into(),
                message: format!("simulated outage (call {n})"),
            }),
        };
        self.in_flight.store(false, Ordering::SeqCst);
        result
    }
}

fn body(trace: u8, pipeline: &str) -> Vec<u8> {
    serde_json::from_value::<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>(
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": format!("{trace:02x}").repeat(16), "spanId": "0102030405060708", "name": "run",
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
             "attributes": [{"key": "xray.pipeline", "value": {"stringValue": pipeline}}]}]}]}]}),
    )
    .unwrap()
    .encode_to_vec()
}

async fn send(addr: std::net::SocketAddr, trace: u8, pipeline: &str) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body(trace, pipeline))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn retries_the_primary_and_a_dead_extra_sink_does_not_block_it() {
    let store = xray_store::testing::sqlite().await;
    let primary = Arc::new(Faulty {
        inner: Some(store.backend.clone()),
        fail_first: 2,
        calls: AtomicU32::new(0),
        in_flight: AtomicBool::new(false),
    });
    let extra = Arc::new(Faulty {
        inner: None,
        fail_first: u32::MAX,
        calls: AtomicU32::new(0),
        in_flight: AtomicBool::new(false),
    });
    let mut config = common::config();
    config.pipeline.shutdown_timeout_ms = 30_000;
    let collector = xray_collector::Collector::start(
        &config,
        primary.clone(),
        vec![extra.clone() as Arc<dyn Sink>],
        common::auth(&config, &store),
    )
    .await
    .unwrap();
    for t in 1..=5 {
        send(collector.http_addr(), t, "retried").await;
    }
    collector.shutdown().await.unwrap();
    assert!(primary.calls.load(Ordering::SeqCst) >= 3);
    assert!(
        extra.calls.load(Ordering::SeqCst) >= 1,
        "extra sink was tried"
    );
    for t in 1..=5u8 {
        let d = common::read(&store, &format!("{t:02x}").repeat(16)).await;
        assert_eq!(d.execution.pipeline, "retried");
    }
}

#[tokio::test]
async fn shutdown_drains_what_is_queued() {
    let mut config = common::config();
    // Nothing would be flushed for a minute: only shutdown writes the rows.
    config.pipeline.flush_interval_ms = 60_000;
    config.pipeline.batch_max_rows = 1_000_000;
    let (collector, store) = common::start(&config).await;
    send(collector.http_addr(), 9, "drained").await;
    collector.shutdown().await.unwrap();
    let d = common::read(&store, &"09".repeat(16)).await;
    assert_eq!(d.execution.pipeline, "drained");
}
