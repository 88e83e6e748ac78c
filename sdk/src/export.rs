//! Bounded, counted delivery in front of the OpenTelemetry batch span
//! processor.
//!
//! `opentelemetry_sdk` 0.33's `BatchSpanProcessor` queues ended spans in a
//! bounded channel and, when the channel is full, drops the span and bumps a
//! private counter that it only reports in a log line at shutdown. To make the
//! drop count readable at any time ([`crate::Stats::dropped_spans`]) the SDK
//! puts [`AdmissionProcessor`] in front of it: it admits a span only while
//! fewer than `max_queue_size` spans are waiting (handed to the batch processor
//! and not yet passed to the exporter), and counts the ones it turns away.
//! Because the batch processor's own queue has the same capacity and always
//! holds a subset of those waiting spans, it never overflows: every drop is
//! counted here, exactly once. [`CountingExporter`] closes the loop by
//! releasing admission slots as batches reach the exporter, and counts export
//! successes and failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Counters shared by the whole SDK instance. All relaxed atomics: they are
/// statistics, not synchronization.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) executions_started: AtomicU64,
    pub(crate) executions_ended: AtomicU64,
    pub(crate) steps_recorded: AtomicU64,
    pub(crate) steps_dropped: AtomicU64,
    pub(crate) candidates_sampled_out: AtomicU64,
    pub(crate) fields_truncated: AtomicU64,
    pub(crate) serialization_errors: AtomicU64,
    pub(crate) dropped_spans: AtomicU64,
    pub(crate) exported_spans: AtomicU64,
    pub(crate) failed_spans: AtomicU64,
    /// Spans admitted to the batch processor and not yet handed to the
    /// exporter.
    pub(crate) waiting: AtomicUsize,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Admits spans to the inner processor while fewer than `capacity` are
/// waiting for export; drops and counts the rest.
#[derive(Debug)]
pub(crate) struct AdmissionProcessor<P> {
    inner: P,
    capacity: usize,
    counters: Arc<Counters>,
    shut_down: AtomicBool,
}

impl<P> AdmissionProcessor<P> {
    pub(crate) fn new(inner: P, capacity: usize, counters: Arc<Counters>) -> Self {
        Self {
            inner,
            capacity,
            counters,
            shut_down: AtomicBool::new(false),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for AdmissionProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.shut_down.load(Ordering::Acquire) {
            // The batch processor would discard it silently; count it.
            Counters::bump(&self.counters.dropped_spans);
            return;
        }
        let before = self.counters.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let dropped = self.counters.dropped_spans.fetch_add(1, Ordering::Relaxed);
            if dropped == 0 {
                tracing::warn!(
                    capacity = self.capacity,
                    "x-ray export queue is full (collector slow or unreachable); dropping spans, see XRay::stats()"
                );
            }
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.shut_down.store(true, Ordering::Release);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps the real exporter: releases admission slots when a batch reaches it
/// and counts what was exported or failed.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    inner: E,
    counters: Arc<Counters>,
}

impl<E> CountingExporter<E> {
    pub(crate) fn new(inner: E, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        // The spans have left the batch processor's queue: free their slots
        // before the (possibly slow) export so the queue bound stays exact.
        self.counters.waiting.fetch_sub(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.counters.exported_spans
        } else {
            &self.counters.failed_spans
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
