//! The final report of a load run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::generate::Mode;
use crate::transport::Protocol;

/// What a load run sent, what the endpoint acknowledged, how fast and how
/// long it took.
///
/// *Sent* counts every execution whose first export attempt was made.
/// *Acknowledged* counts executions in requests the endpoint accepted with no
/// rejected span (a retried request counts once, when it is finally
/// accepted); spans of partially accepted requests count as acknowledged
/// minus the rejected ones. *Dropped* requests were rejected for good or not
/// accepted within `--max-retry-time`. Rates are acknowledged counts divided
/// by the elapsed time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Protocol used.
    pub protocol: Protocol,
    /// Endpoint URL.
    pub endpoint: String,
    /// Steps as spans or snapshot events.
    pub mode: Mode,
    /// Connections.
    pub concurrency: u32,
    /// Executions per request.
    pub batch: u32,
    /// Seed.
    pub seed: u64,
    /// Target executions/s, `None` for unlimited.
    pub target_rate: Option<f64>,
    /// Start of the run, unix seconds.
    pub started_at_unix: f64,
    /// Wall time from the first request to the last answer, seconds.
    pub elapsed_secs: f64,
    /// Executions sent.
    pub executions: u64,
    /// OTLP spans sent.
    pub spans: u64,
    /// Steps sent (child spans or span events).
    pub steps: u64,
    /// Uncompressed protobuf bytes sent (first attempts only).
    pub bytes: u64,
    /// Export requests acknowledged.
    pub requests: u64,
    /// Executions acknowledged.
    pub acknowledged_executions: u64,
    /// Spans acknowledged.
    pub acknowledged_spans: u64,
    /// Steps acknowledged (in fully acknowledged requests).
    pub acknowledged_steps: u64,
    /// Spans the endpoint rejected through OTLP `partial_success`.
    pub rejected_spans: u64,
    /// Executions given up on.
    pub dropped_executions: u64,
    /// Spans given up on.
    pub dropped_spans: u64,
    /// Export attempts repeated after a retryable failure.
    pub retries: u64,
    /// Acknowledged executions per second.
    pub executions_per_sec: f64,
    /// Acknowledged spans per second.
    pub spans_per_sec: f64,
    /// Acknowledged steps per second.
    pub steps_per_sec: f64,
    /// Acknowledged protobuf megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Median export latency (first attempt to acknowledgement, retries
    /// included), milliseconds.
    pub p50_ms: f64,
    /// 90th percentile export latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile export latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest export, milliseconds.
    pub max_ms: f64,
    /// Failed attempts by kind (`grpc_resource_exhausted`, `http_429`,
    /// `timeout`, `connect`, `partial_success`, …), retried or not.
    pub errors: BTreeMap<String, u64>,
    /// `/proc/loadavg` (1, 5, 15 minutes) at the end of the run, when
    /// readable: the machine is shared, figures mean little without it.
    pub load_average: Option<[f64; 3]>,
}

impl Report {
    /// Total failed attempts over all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "xray loadgen: {} {} ({} mode), {} connections, {} executions/request, seed {}",
            self.protocol.as_str(),
            self.endpoint,
            self.mode.as_str(),
            self.concurrency,
            self.batch,
            self.seed
        )?;
        match self.target_rate {
            Some(r) => writeln!(f, "  target rate      {r} executions/s")?,
            None => writeln!(f, "  target rate      unlimited")?,
        }
        writeln!(f, "  elapsed          {:.2} s", self.elapsed_secs)?;
        writeln!(
            f,
            "  sent             {} executions, {} spans, {} steps, {:.1} MB",
            self.executions,
            self.spans,
            self.steps,
            self.bytes as f64 / 1e6
        )?;
        writeln!(
            f,
            "  acknowledged     {} executions, {} spans ({} requests)",
            self.acknowledged_executions, self.acknowledged_spans, self.requests
        )?;
        if self.dropped_executions > 0 || self.rejected_spans > 0 {
            writeln!(
                f,
                "  lost             {} executions dropped, {} spans rejected",
                self.dropped_executions, self.rejected_spans
            )?;
        }
        writeln!(
            f,
            "  throughput       {:.0} executions/s, {:.0} spans/s, {:.1} MB/s",
            self.executions_per_sec, self.spans_per_sec, self.mb_per_sec
        )?;
        writeln!(
            f,
            "  export latency   p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )?;
        if self.errors.is_empty() {
            writeln!(f, "  errors           none")?;
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                f,
                "  errors           {} ({} retries)",
                list.join(", "),
                self.retries
            )?;
        }
        if let Some([a, b, c]) = self.load_average {
            writeln!(f, "  load average     {a:.2} {b:.2} {c:.2}")?;
        }
        Ok(())
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `/proc/loadavg`, when readable.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
