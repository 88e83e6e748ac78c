//! Counters of the processors, rendered into the collector's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use xray_config::RedactAction;

use crate::metrics::{header, scalar};

const ACTIONS: [&str; 3] = ["mask", "hash", "drop"];
const REASONS: [&str; 3] = ["failed", "slow", "sampled"];
const LIMITED: [&str; 4] = ["metadata", "steps", "candidates", "events"];
const FORWARD: [&str; 4] = ["sent", "retried", "failed", "dropped"];

struct Counters {
    redacted_rows: AtomicU64,
    redactions: [AtomicU64; 3],
    kept: [AtomicU64; 3],
    executions_dropped: AtomicU64,
    steps_dropped: AtomicU64,
    truncated_values: AtomicU64,
    truncated_bytes: AtomicU64,
    limited: [AtomicU64; 4],
    forward: [AtomicU64; 4],
    forward_queued: AtomicU64,
}

static C: Counters = Counters {
    redacted_rows: AtomicU64::new(0),
    redactions: [const { AtomicU64::new(0) }; 3],
    kept: [const { AtomicU64::new(0) }; 3],
    executions_dropped: AtomicU64::new(0),
    steps_dropped: AtomicU64::new(0),
    truncated_values: AtomicU64::new(0),
    truncated_bytes: AtomicU64::new(0),
    limited: [const { AtomicU64::new(0) }; 4],
    forward: [const { AtomicU64::new(0) }; 4],
    forward_queued: AtomicU64::new(0),
};

fn inc(a: &AtomicU64, n: u64) {
    if n > 0 {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) fn record_redacted_row() {
    inc(&C.redacted_rows, 1);
}

pub(crate) fn record_redaction(action: RedactAction) {
    let i = match action {
        RedactAction::Mask => 0,
        RedactAction::Hash => 1,
        RedactAction::Drop => 2,
    };
    inc(&C.redactions[i], 1);
}

/// One execution kept (with its reason) or dropped (`None`).
pub(crate) fn record_sampled(reason: Option<&str>) {
    match reason.and_then(|r| REASONS.iter().position(|x| *x == r)) {
        Some(i) => inc(&C.kept[i], 1),
        None => inc(&C.executions_dropped, 1),
    }
}

pub(crate) fn record_steps_sampled_out(n: u64) {
    inc(&C.steps_dropped, n);
}

pub(crate) fn record_truncated(bytes: u64) {
    inc(&C.truncated_values, 1);
    inc(&C.truncated_bytes, bytes);
}

/// Items dropped by a cap: `metadata`, `steps`, `candidates` or `events`.
pub(crate) fn record_limited(kind: &str, n: u64) {
    if let Some(i) = LIMITED.iter().position(|x| *x == kind) {
        inc(&C.limited[i], n);
    }
}

/// A forwarded request's outcome: `sent`, `retried`, `failed` or `dropped`.
pub(crate) fn record_forward(outcome: &str) {
    if let Some(i) = FORWARD.iter().position(|x| *x == outcome) {
        inc(&C.forward[i], 1);
    }
}

pub(crate) fn forward_queued(delta: i64) {
    if delta >= 0 {
        C.forward_queued
            .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
    } else {
        C.forward_queued
            .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// A counter family with one sample per label value.
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    counters: &[AtomicU64],
) {
    header(out, name, "counter", help);
    for (v, c) in values.iter().zip(counters) {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{v}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
}

fn counter(out: &mut String, name: &str, help: &str, a: &AtomicU64) {
    scalar(out, name, "counter", help, a.load(Ordering::Relaxed));
}

/// Appends the processor metrics in the Prometheus text format.
pub(crate) fn render(out: &mut String) {
    counter(
        out,
        "xray_processor_redacted_rows_total",
        "Rows with at least one redaction.",
        &C.redacted_rows,
    );
    labelled(
        out,
        "xray_processor_redactions_total",
        "Values redacted, by action.",
        "action",
        &ACTIONS,
        &C.redactions,
    );
    labelled(
        out,
        "xray_processor_sampled_executions_kept_total",
        "Executions the sample processor kept, by reason.",
        "reason",
        &REASONS,
        &C.kept,
    );
    counter(
        out,
        "xray_processor_sampled_executions_dropped_total",
        "Executions the sample processor dropped.",
        &C.executions_dropped,
    );
    counter(
        out,
        "xray_processor_sampled_steps_dropped_total",
        "Steps the sample processor dropped.",
        &C.steps_dropped,
    );
    counter(
        out,
        "xray_processor_truncated_values_total",
        "Text values cut to the size cap.",
        &C.truncated_values,
    );
    counter(
        out,
        "xray_processor_truncated_bytes_total",
        "Bytes removed by truncation.",
        &C.truncated_bytes,
    );
    labelled(
        out,
        "xray_processor_limited_items_total",
        "Items dropped by a count cap, by kind.",
        "kind",
        &LIMITED,
        &C.limited,
    );
    labelled(
        out,
        "xray_processor_forward_requests_total",
        "Forwarded export requests, by outcome (sent, retried attempts, failed after retries, dropped on a full queue).",
        "outcome",
        &FORWARD,
        &C.forward,
    );
    scalar(
        out,
        "xray_processor_forward_queued_requests",
        "gauge",
        "Requests waiting to be forwarded.",
        C.forward_queued.load(Ordering::Relaxed),
    );
}
