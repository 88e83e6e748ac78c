//! The batching pipeline: receivers → bounded queue → batcher → sinks.
//!
//! Receivers hand mapped batches to [`Pipeline::try_enqueue`]. The queue is
//! bounded in *rows* (a semaphore whose permits travel with the rows until
//! they are written), so memory never grows without bound: when it is full,
//! receivers answer "try again later" (gRPC `UNAVAILABLE`, HTTP 503 with
//! `Retry-After`) and OTel exporters retry.
//!
//! One batcher task owns the primary sink: it accumulates rows until
//! `pipeline.batch_max_rows` or `pipeline.flush_interval_ms` after the first
//! row, then writes them with `pipeline.write_timeout_ms` per attempt,
//! retrying retryable errors with exponential backoff. Each extra sink has its
//! own task fed through a small queue; when an extra sink is slow or down its
//! batches are dropped (and counted) rather than holding back the primary.
//! Every sink instance is written by exactly one task, so `Sink::write` is
//! never called concurrently on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xray_config::PipelineConfig;
use xray_model::MappedBatch;
use xray_store::Sink;

use crate::metrics;

/// Retries after the first attempt of a sink write.
const MAX_RETRIES: u32 = 4;
/// Delay before the first retry; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Batches waiting for one extra sink before new ones are dropped.
const EXTRA_SINK_QUEUE: usize = 16;

/// Why a batch could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnqueueError {
    /// The queue holds as many rows as it may; retry later.
    Full,
    /// The collector is shutting down.
    Closed,
}

struct Queued {
    batch: MappedBatch,
    _permit: Option<OwnedSemaphorePermit>,
    rows: u64,
}

/// The receivers' handle on the queue.
#[derive(Clone)]
pub(crate) struct Pipeline {
    tx: mpsc::UnboundedSender<Queued>,
    permits: Arc<Semaphore>,
    capacity_rows: u32,
}

/// Owner side: stops and awaits the batcher.
pub(crate) struct PipelineTask {
    close: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl PipelineTask {
    /// Stops taking new batches, then drains the queue into the sinks.
    /// Resolves when every queued row was handed to the sinks.
    pub(crate) fn close(&self) {
        self.close.notify_one();
    }

    /// The batcher task (finishes after [`PipelineTask::close`]).
    pub(crate) fn handle(&mut self) -> &mut JoinHandle<()> {
        &mut self.handle
    }
}

impl Pipeline {
    /// Starts the batcher and the extra sinks' tasks.
    pub(crate) fn start(
        cfg: &PipelineConfig,
        primary: Arc<dyn Sink>,
        extra: Vec<Arc<dyn Sink>>,
    ) -> (Pipeline, PipelineTask) {
        let max_rows = cfg.batch_max_rows.max(1);
        let capacity_rows = max_rows.saturating_mul(4).max(10_000);
        let permits = Arc::new(Semaphore::new(capacity_rows as usize));
        // Unbounded channel, bounded by the row semaphore above.
        let (tx, rx) = mpsc::unbounded_channel();
        let close = Arc::new(Notify::new());
        let write_timeout = Duration::from_millis(cfg.write_timeout_ms.max(1));
        let extras = extra
            .into_iter()
            .map(|sink| {
                let (etx, erx) = mpsc::channel(EXTRA_SINK_QUEUE);
                let name = sink.name().to_string();
                let handle = tokio::spawn(run_extra(sink, erx, write_timeout));
                ExtraSink {
                    name,
                    tx: etx,
                    handle,
                }
            })
            .collect();
        let batcher = Batcher {
            rx,
            primary,
            extras,
            max_rows: max_rows as usize,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms.max(1)),
            write_timeout,
        };
        let handle = tokio::spawn(batcher.run(close.clone()));
        (
            Pipeline {
                tx,
                permits,
                capacity_rows,
            },
            PipelineTask { close, handle },
        )
    }

    /// Queues a batch for writing, without waiting.
    pub(crate) fn try_enqueue(&self, batch: MappedBatch) -> Result<(), EnqueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.tx.is_closed() {
            return Err(EnqueueError::Closed);
        }
        let rows = batch.len() as u64;
        // A single batch larger than the whole queue takes all of it.
        let wanted = u32::try_from(rows)
            .unwrap_or(u32::MAX)
            .min(self.capacity_rows);
        let permit = match self.permits.clone().try_acquire_many_owned(wanted) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(EnqueueError::Full),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(EnqueueError::Closed),
        };
        metrics::add_queued(rows);
        self.tx
            .send(Queued {
                batch,
                _permit: Some(permit),
                rows,
            })
            .map_err(|_| {
                metrics::sub_queued(rows);
                EnqueueError::Closed
            })
    }
}

struct ExtraSink {
    name: String,
    tx: mpsc::Sender<Arc<MappedBatch>>,
    handle: JoinHandle<()>,
}

struct Batcher {
    rx: mpsc::UnboundedReceiver<Queued>,
    primary: Arc<dyn Sink>,
    extras: Vec<ExtraSink>,
    max_rows: usize,
    flush_interval: Duration,
    write_timeout: Duration,
}

impl Batcher {
    async fn run(mut self, close: Arc<Notify>) {
        let mut buf = MappedBatch::default();
        let mut held: Vec<Queued> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut closing = false;
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(mut q) => {
                        buf.extend(std::mem::take(&mut q.batch));
                        held.push(q);
                        deadline.get_or_insert_with(|| Instant::now() + self.flush_interval);
                        if buf.len() >= self.max_rows {
                            self.flush(&mut buf, &mut held).await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                _ = sleep => {
                    self.flush(&mut buf, &mut held).await;
                    deadline = None;
                }
                _ = close.notified(), if !closing => {
                    // No new batches; `recv` drains what is queued, then
                    // returns None.
                    closing = true;
                    self.rx.close();
                }
            }
        }
        self.flush(&mut buf, &mut held).await;
        // Closing the extra sinks' queues lets their tasks drain and stop.
        for extra in self.extras.drain(..) {
            drop(extra.tx);
            if let Err(e) = extra.handle.await {
                tracing::error!(sink = extra.name, error = %e, "extra sink task failed");
            }
        }
        tracing::debug!("batcher stopped");
    }

    async fn flush(&mut self, buf: &mut MappedBatch, held: &mut Vec<Queued>) {
        if buf.is_empty() {
            held.clear();
            return;
        }
        let batch = std::mem::take(buf);
        let rows = batch.len() as u64;
        let batch = Arc::new(batch);
        for extra in &self.extras {
            if let Err(e) = extra.tx.try_send(batch.clone()) {
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "its queue is full",
                    mpsc::error::TrySendError::Closed(_) => "it stopped",
                };
                metrics::record_extra_dropped(rows);
                tracing::warn!(
                    sink = extra.name,
                    rows,
                    reason,
                    "batch not sent to extra sink"
                );
            }
        }
        match write_with_retries(self.primary.as_ref(), &batch, self.write_timeout).await {
            Ok(()) => metrics::record_written(rows),
            Err(e) => {
                metrics::record_dropped(rows);
                tracing::error!(sink = self.primary.name(), rows, error = %e, "batch lost: primary sink write failed");
            }
        }
        let queued: u64 = held.iter().map(|q| q.rows).sum();
        metrics::sub_queued(queued);
        held.clear();
    }
}

async fn run_extra(
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Arc<MappedBatch>>,
    write_timeout: Duration,
) {
    while let Some(batch) = rx.recv().await {
        let rows = batch.len() as u64;
        match write_with_retries(sink.as_ref(), &batch, write_timeout).await {
            Ok(()) => metrics::record_extra_written(rows),
            Err(e) => {
                metrics::record_extra_dropped(rows);
                tracing::error!(sink = sink.name(), rows, error = %e, "batch lost: extra sink write failed");
            }
        }
    }
}

/// Writes `batch`, retrying retryable errors and timeouts with backoff.
async fn write_with_retries(
    sink: &dyn Sink,
    batch: &MappedBatch,
    timeout: Duration,
) -> Result<(), xray_store::SinkError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        let result = match tokio::time::timeout(timeout, sink.write(batch)).await {
            Ok(r) => r,
            Err(_) => Err(xray_store::SinkError::Retryable {
                sink: sink.name().to_string(),
                message: format!("write timed out after {} ms", timeout.as_millis()),
            }),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < MAX_RETRIES => {
                attempt += 1;
                metrics::record_retry();
                tracing::warn!(sink = sink.name(), attempt, error = %e, "sink write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}
