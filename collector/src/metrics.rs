//! Process-wide collector metrics in the Prometheus text format.
//!
//! Counters are plain atomics, so recording costs a few nanoseconds and
//! [`render_metrics`] can be called by any HTTP handler (the OTLP HTTP
//! listener serves it on `GET /metrics`; the dashboard API and the CLI can
//! mount [`metrics_router`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The transport a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body.
    HttpJson,
    /// The JSON endpoints compatible with the earlier X-Ray services.
    LegacyJson,
}

impl Transport {
    const ALL: [Transport; 4] = [
        Transport::Grpc,
        Transport::HttpProtobuf,
        Transport::HttpJson,
        Transport::LegacyJson,
    ];

    fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http_protobuf",
            Transport::HttpJson => "http_json",
            Transport::LegacyJson => "legacy_json",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the request duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

struct PerTransport {
    requests: AtomicU64,
    spans_received: AtomicU64,
    spans_accepted: AtomicU64,
    spans_rejected: AtomicU64,
    requests_refused: AtomicU64,
    duration: Histogram,
}

impl PerTransport {
    const fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            spans_received: AtomicU64::new(0),
            spans_accepted: AtomicU64::new(0),
            spans_rejected: AtomicU64::new(0),
            requests_refused: AtomicU64::new(0),
            duration: Histogram::new(),
        }
    }
}

struct Metrics {
    transports: [PerTransport; Transport::ALL.len()],
    rows_written: AtomicU64,
    batches_written: AtomicU64,
    write_retries: AtomicU64,
    rows_dropped: AtomicU64,
    extra_rows_written: AtomicU64,
    extra_rows_dropped: AtomicU64,
    queued_rows: AtomicU64,
    queued_bytes: AtomicU64,
    refused_busy: AtomicU64,
    spool_bytes: AtomicU64,
    spool_replayed_rows: AtomicU64,
    spool_torn_records: AtomicU64,
    dead_letter_rows: AtomicU64,
    /// Refused for authentication, by [`auth_reason`] index.
    auth_refused: [AtomicU64; AUTH_REASONS.len()],
}

/// Label values of `xray_collector_auth_refused_total`.
const AUTH_REASONS: [&str; 4] = ["missing_key", "invalid_key", "rate_limited", "unavailable"];

fn auth_reason(e: &xray_auth::AuthError) -> usize {
    use xray_auth::AuthError;
    match e {
        AuthError::Missing => 0,
        AuthError::Invalid => 1,
        AuthError::RateLimited { .. } => 2,
        AuthError::Unavailable(_) => 3,
    }
}

static METRICS: Metrics = Metrics {
    transports: [const { PerTransport::new() }; Transport::ALL.len()],
    rows_written: AtomicU64::new(0),
    batches_written: AtomicU64::new(0),
    write_retries: AtomicU64::new(0),
    rows_dropped: AtomicU64::new(0),
    extra_rows_written: AtomicU64::new(0),
    extra_rows_dropped: AtomicU64::new(0),
    queued_rows: AtomicU64::new(0),
    queued_bytes: AtomicU64::new(0),
    refused_busy: AtomicU64::new(0),
    spool_bytes: AtomicU64::new(0),
    spool_replayed_rows: AtomicU64::new(0),
    spool_torn_records: AtomicU64::new(0),
    dead_letter_rows: AtomicU64::new(0),
    auth_refused: [const { AtomicU64::new(0) }; AUTH_REASONS.len()],
};

fn t(transport: Transport) -> &'static PerTransport {
    &METRICS.transports[transport.index()]
}

/// Records one handled export request (after mapping).
pub(crate) fn record_request(
    transport: Transport,
    accepted: u64,
    rejected: u64,
    duration: Duration,
) {
    let m = t(transport);
    m.requests.fetch_add(1, Ordering::Relaxed);
    m.spans_received
        .fetch_add(accepted + rejected, Ordering::Relaxed);
    m.spans_accepted.fetch_add(accepted, Ordering::Relaxed);
    m.spans_rejected.fetch_add(rejected, Ordering::Relaxed);
    m.duration.observe(duration);
}

/// Records a request refused before mapping (malformed, too large, queue
/// full, not authenticated).
pub(crate) fn record_refused(transport: Transport, duration: Duration) {
    let m = t(transport);
    m.requests.fetch_add(1, Ordering::Relaxed);
    m.requests_refused.fetch_add(1, Ordering::Relaxed);
    m.duration.observe(duration);
}

/// Records a request refused by authentication (also counted by
/// [`record_refused`]).
pub(crate) fn record_auth_refused(e: &xray_auth::AuthError) {
    METRICS.auth_refused[auth_reason(e)].fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add_queued(rows: u64) {
    METRICS.queued_rows.fetch_add(rows, Ordering::Relaxed);
}

pub(crate) fn sub_queued(rows: u64) {
    METRICS.queued_rows.fetch_sub(rows, Ordering::Relaxed);
}

/// Rows queued and not yet written.
pub(crate) fn queued_rows() -> u64 {
    METRICS.queued_rows.load(Ordering::Relaxed)
}

pub(crate) fn add_queued_bytes(bytes: u64) {
    METRICS.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
}

pub(crate) fn sub_queued_bytes(bytes: u64) {
    METRICS.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
}

/// Records a request refused because the queue or the spool is full.
pub(crate) fn record_busy() {
    METRICS.refused_busy.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn set_spool_bytes(bytes: u64) {
    METRICS.spool_bytes.store(bytes, Ordering::Relaxed);
}

pub(crate) fn record_replayed(rows: u64) {
    METRICS
        .spool_replayed_rows
        .fetch_add(rows, Ordering::Relaxed);
}

pub(crate) fn record_torn_record() {
    METRICS.spool_torn_records.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn record_dead_letter(rows: u64) {
    METRICS.dead_letter_rows.fetch_add(rows, Ordering::Relaxed);
}

pub(crate) fn record_written(rows: u64) {
    METRICS.rows_written.fetch_add(rows, Ordering::Relaxed);
    METRICS.batches_written.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn record_retry() {
    METRICS.write_retries.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn record_dropped(rows: u64) {
    METRICS.rows_dropped.fetch_add(rows, Ordering::Relaxed);
}

pub(crate) fn record_extra_written(rows: u64) {
    METRICS
        .extra_rows_written
        .fetch_add(rows, Ordering::Relaxed);
}

pub(crate) fn record_extra_dropped(rows: u64) {
    METRICS
        .extra_rows_dropped
        .fetch_add(rows, Ordering::Relaxed);
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter_family(out: &mut String, name: &str, help: &str, value: impl Fn(&PerTransport) -> u64) {
    header(out, name, "counter", help);
    for tr in Transport::ALL {
        let _ = writeln!(
            out,
            "{name}{{transport=\"{}\"}} {}",
            tr.label(),
            value(t(tr))
        );
    }
}

/// A metric family of one unlabelled sample.
pub(crate) fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

/// The collector's metrics in the Prometheus text exposition format
/// (version 0.0.4).
pub fn render_metrics() -> String {
    let mut out = String::with_capacity(4096);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter_family(
        &mut out,
        "xray_collector_requests_total",
        "Export requests received.",
        |m| load(&m.requests),
    );
    counter_family(
        &mut out,
        "xray_collector_requests_refused_total",
        "Export requests refused as a whole (malformed, too large, queue full, not authenticated).",
        |m| load(&m.requests_refused),
    );
    counter_family(
        &mut out,
        "xray_collector_spans_received_total",
        "Spans received in decoded export requests.",
        |m| load(&m.spans_received),
    );
    counter_family(
        &mut out,
        "xray_collector_spans_accepted_total",
        "Spans mapped to executions or steps.",
        |m| load(&m.spans_accepted),
    );
    counter_family(
        &mut out,
        "xray_collector_spans_rejected_total",
        "Spans rejected (reported in partial_success).",
        |m| load(&m.spans_rejected),
    );
    let name = "xray_collector_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to handle an export request, from decoded body to acknowledgement."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for tr in Transport::ALL {
        let h = &t(tr).duration;
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += load(&h.buckets[i]);
            let _ = writeln!(
                out,
                "{name}_bucket{{transport=\"{}\",le=\"{le}\"}} {cumulative}",
                tr.label()
            );
        }
        let count = load(&h.count);
        let _ = writeln!(
            out,
            "{name}_bucket{{transport=\"{}\",le=\"+Inf\"}} {count}",
            tr.label()
        );
        let _ = writeln!(
            out,
            "{name}_sum{{transport=\"{}\"}} {}",
            tr.label(),
            load(&h.sum_ns) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{transport=\"{}\"}} {count}", tr.label());
    }
    let name = "xray_collector_auth_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Ingest requests refused by authentication, by reason."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (i, reason) in AUTH_REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{reason=\"{reason}\"}} {}",
            load(&METRICS.auth_refused[i])
        );
    }
    scalar(
        &mut out,
        "xray_collector_queued_rows",
        "gauge",
        "Rows accepted and not yet written to the primary sink.",
        load(&METRICS.queued_rows),
    );
    scalar(
        &mut out,
        "xray_collector_queued_bytes",
        "gauge",
        "Estimated memory of the batches queued in memory (bounded by pipeline.max_queue_bytes).",
        load(&METRICS.queued_bytes),
    );
    scalar(
        &mut out,
        "xray_collector_requests_refused_busy_total",
        "counter",
        "Export requests refused because the queue or the spool was full (HTTP 429, gRPC RESOURCE_EXHAUSTED).",
        load(&METRICS.refused_busy),
    );
    scalar(
        &mut out,
        "xray_collector_spool_bytes",
        "gauge",
        "Bytes in the on-disk spool (records not yet known to be in the store).",
        load(&METRICS.spool_bytes),
    );
    scalar(
        &mut out,
        "xray_collector_spool_replayed_rows_total",
        "counter",
        "Rows read back from the spool (after a restart or when the memory queue was full).",
        load(&METRICS.spool_replayed_rows),
    );
    scalar(
        &mut out,
        "xray_collector_spool_torn_records_total",
        "counter",
        "Spool records found incomplete or with a bad checksum and skipped.",
        load(&METRICS.spool_torn_records),
    );
    scalar(
        &mut out,
        "xray_collector_dead_letter_rows_total",
        "counter",
        "Rows the primary sink rejected permanently, written to the dead-letter file.",
        load(&METRICS.dead_letter_rows),
    );
    scalar(
        &mut out,
        "xray_collector_rows_written_total",
        "counter",
        "Rows written to the primary sink.",
        load(&METRICS.rows_written),
    );
    scalar(
        &mut out,
        "xray_collector_batches_written_total",
        "counter",
        "Batches written to the primary sink.",
        load(&METRICS.batches_written),
    );
    scalar(
        &mut out,
        "xray_collector_write_retries_total",
        "counter",
        "Retried writes to the primary sink.",
        load(&METRICS.write_retries),
    );
    scalar(
        &mut out,
        "xray_collector_rows_dropped_total",
        "counter",
        "Rows the primary sink could not write after retries (lost).",
        load(&METRICS.rows_dropped),
    );
    scalar(
        &mut out,
        "xray_collector_extra_sink_rows_written_total",
        "counter",
        "Rows written to extra sinks.",
        load(&METRICS.extra_rows_written),
    );
    scalar(
        &mut out,
        "xray_collector_extra_sink_rows_dropped_total",
        "counter",
        "Rows an extra sink failed to write or could not keep up with.",
        load(&METRICS.extra_rows_dropped),
    );
    crate::processor::metrics::render(&mut out);
    out
}

/// A router serving [`render_metrics`] on `GET /metrics`, for the dashboard
/// API or the CLI to merge into their own router.
pub fn metrics_router() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics_handler))
}

pub(crate) async fn metrics_handler() -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(),
    )
}
