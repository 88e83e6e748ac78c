//! The load driver: N workers, each with its own connection and one request
//! in flight, pulling batch numbers from a shared counter, optionally paced
//! to a target rate, retrying pushback with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::generate::Generator;
use crate::report::{Report, load_average, quantile};
use crate::rng::Rng;
use crate::transport::{Exporter, Failure};
use crate::{LoadgenArgs, LoadgenError};

const DEFAULT_DURATION: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Counters shared by the workers and the progress bar.
#[derive(Default)]
struct Counters {
    executions: AtomicU64,
    spans: AtomicU64,
    steps: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    ack_executions: AtomicU64,
    ack_spans: AtomicU64,
    ack_steps: AtomicU64,
    ack_bytes: AtomicU64,
    rejected_spans: AtomicU64,
    dropped_executions: AtomicU64,
    dropped_spans: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    generator: Generator,
    next_batch: AtomicU64,
    /// Set by Ctrl-C: take no new batch.
    stop: AtomicBool,
    counters: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    start: Instant,
    deadline: Option<Instant>,
    /// Executions to send in total (`--count`).
    count: Option<u64>,
    batch: u64,
    start_index: u64,
    /// Time between two batches when paced.
    interval: Option<Duration>,
    max_retry_time: Duration,
}

impl Shared {
    /// The next batch to send: its first execution and size, or `None` when
    /// the run is over. Sleeps until the batch is due when paced.
    async fn take(&self) -> Option<(u64, u64)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let k = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let first = k * self.batch;
        let size = match self.count {
            Some(c) if first >= c => return None,
            Some(c) => self.batch.min(c - first),
            None => self.batch,
        };
        if let Some(iv) = self.interval {
            let due = self.start + iv.mul_f64(k as f64);
            if self.deadline.is_some_and(|d| due >= d) {
                return None;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        Some((self.start_index + first, size))
    }

    fn error(&self, kind: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *e.entry(kind.to_string()).or_insert(0) += 1;
    }
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs the load described by `args`; `progress` shows a live bar on stderr.
pub(crate) async fn run(args: LoadgenArgs, progress: bool) -> Result<Report, LoadgenError> {
    if args.concurrency == 0 {
        return Err(LoadgenError::Args(
            "--concurrency must be at least 1".into(),
        ));
    }
    if args.batch == 0 {
        return Err(LoadgenError::Args("--batch must be at least 1".into()));
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(LoadgenError::Args(format!(
            "--rate must be a positive number of executions per second (got {r})"
        )));
    }
    if args.count == Some(0) {
        return Err(LoadgenError::Args("--count must be at least 1".into()));
    }
    let generator = Generator::new(args.seed, args.shape())?;
    let endpoint = args.endpoint_or_default();

    let connects = (0..args.concurrency).map(|_| {
        Exporter::connect(
            args.protocol,
            &endpoint,
            args.api_key.as_deref(),
            args.compression,
            args.timeout.0,
        )
    });
    let exporters = futures_join(connects).await?;

    let duration = match (args.duration, args.count) {
        (Some(d), _) => Some(d.0),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let start = Instant::now();
    let started_at_unix = now_unix_ns() as f64 / 1e9;
    let shared = Arc::new(Shared {
        generator,
        next_batch: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        counters: Counters::default(),
        errors: Mutex::new(BTreeMap::new()),
        start,
        deadline: duration.map(|d| start + d),
        count: args.count,
        batch: u64::from(args.batch),
        start_index: args.start_index,
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(f64::from(args.batch) / r)),
        max_retry_time: args.max_retry_time.0,
    });

    let bar = progress_bar(progress, duration, args.count);
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                update_bar(&bar, &shared, duration.is_some());
            }
        })
    };
    let ctrl_c = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("interrupted: finishing the requests in flight");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let workers: Vec<_> = exporters
        .into_iter()
        .enumerate()
        .map(|(i, exporter)| tokio::spawn(worker(shared.clone(), exporter, i as u64)))
        .collect();
    let mut latencies_us = Vec::new();
    for w in workers {
        match w.await {
            Ok(mut l) => latencies_us.append(&mut l),
            Err(e) => return Err(LoadgenError::Internal(format!("worker failed: {e}"))),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ticker.abort();
    ctrl_c.abort();
    update_bar(&bar, &shared, duration.is_some());
    bar.finish_and_clear();

    latencies_us.sort_unstable();
    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let per_sec = |v: u64| {
        if elapsed > 0.0 {
            v as f64 / elapsed
        } else {
            0.0
        }
    };
    let ms = |q: f64| quantile(&latencies_us, q) as f64 / 1000.0;
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Report {
        protocol: args.protocol,
        endpoint,
        mode: args.mode,
        concurrency: args.concurrency,
        batch: args.batch,
        seed: args.seed,
        target_rate: args.rate,
        started_at_unix,
        elapsed_secs: elapsed,
        executions: get(&c.executions),
        spans: get(&c.spans),
        steps: get(&c.steps),
        bytes: get(&c.bytes),
        requests: get(&c.requests),
        acknowledged_executions: get(&c.ack_executions),
        acknowledged_spans: get(&c.ack_spans),
        acknowledged_steps: get(&c.ack_steps),
        rejected_spans: get(&c.rejected_spans),
        dropped_executions: get(&c.dropped_executions),
        dropped_spans: get(&c.dropped_spans),
        retries: get(&c.retries),
        executions_per_sec: per_sec(get(&c.ack_executions)),
        spans_per_sec: per_sec(get(&c.ack_spans)),
        steps_per_sec: per_sec(get(&c.ack_steps)),
        mb_per_sec: per_sec(get(&c.ack_bytes)) / 1e6,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
        errors,
        load_average: load_average(),
    })
}

/// Connects every exporter concurrently; the first error wins.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Result<Vec<Exporter>, LoadgenError>
where
    F: std::future::Future<Output = Result<Exporter, LoadgenError>>,
{
    let mut out = Vec::new();
    for r in futures::future::join_all(futs).await {
        out.push(r?);
    }
    Ok(out)
}

/// One connection: take a batch, generate it, send it until acknowledged or
/// given up, repeat. Returns the latencies of acknowledged requests (µs).
async fn worker(shared: Arc<Shared>, mut exporter: Exporter, id: u64) -> Vec<u64> {
    let mut latencies = Vec::new();
    let mut jitter = Rng::new(0x6a69_7474 ^ id);
    let c = &shared.counters;
    while let Some((first, size)) = shared.take().await {
        let batch = shared.generator.batch(first, size, now_unix_ns());
        let (payload, bytes) = exporter.prepare(batch.request);
        c.executions.fetch_add(batch.executions, Ordering::Relaxed);
        c.spans.fetch_add(batch.spans, Ordering::Relaxed);
        c.steps.fetch_add(batch.steps, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);

        let t0 = Instant::now();
        let mut backoff = BACKOFF_START;
        loop {
            match exporter.export(&payload).await {
                Ok(ack) => {
                    latencies.push(t0.elapsed().as_micros() as u64);
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    let rejected = ack.rejected_spans.min(batch.spans);
                    c.ack_spans
                        .fetch_add(batch.spans - rejected, Ordering::Relaxed);
                    c.ack_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    if rejected == 0 {
                        c.ack_executions
                            .fetch_add(batch.executions, Ordering::Relaxed);
                        c.ack_steps.fetch_add(batch.steps, Ordering::Relaxed);
                    } else {
                        c.rejected_spans.fetch_add(rejected, Ordering::Relaxed);
                        shared.error("partial_success");
                    }
                    break;
                }
                Err(Failure {
                    kind,
                    retryable,
                    retry_after,
                    detail,
                }) => {
                    shared.error(&kind);
                    let wait = retry_after.unwrap_or_else(|| {
                        // full jitter over the current backoff
                        backoff.mul_f64(0.5 + jitter.unit() * 0.5)
                    });
                    let give_up = !retryable || t0.elapsed() + wait > shared.max_retry_time;
                    tracing::debug!(kind, detail, retryable, give_up, "export attempt failed");
                    if give_up {
                        c.dropped_executions
                            .fetch_add(batch.executions, Ordering::Relaxed);
                        c.dropped_spans.fetch_add(batch.spans, Ordering::Relaxed);
                        break;
                    }
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
    latencies
}

fn progress_bar(show: bool, duration: Option<Duration>, count: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (len, template) = match (duration, count) {
        (Some(d), _) => (
            d.as_secs().max(1),
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s  {msg}",
        ),
        (None, Some(c)) => (
            c,
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}  {msg}",
        ),
        (None, None) => (1, "{spinner} {msg}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn update_bar(bar: &ProgressBar, shared: &Shared, by_time: bool) {
    if bar.is_hidden() {
        return;
    }
    let c = &shared.counters;
    let secs = shared.start.elapsed().as_secs_f64().max(1e-3);
    let ack_spans = c.ack_spans.load(Ordering::Relaxed);
    let ack_exec = c.ack_executions.load(Ordering::Relaxed);
    if by_time {
        bar.set_position(shared.start.elapsed().as_secs());
    } else {
        bar.set_position(ack_exec + c.dropped_executions.load(Ordering::Relaxed));
    }
    bar.set_message(format!(
        "{ack_exec} executions acked, {:.0} spans/s, {:.1} MB/s, {} errors",
        ack_spans as f64 / secs,
        c.ack_bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        c.errors.load(Ordering::Relaxed)
    ));
}
