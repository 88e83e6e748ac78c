//! The batching pipeline: receivers → (spool) → bounded queue → batcher →
//! sinks.
//!
//! - **Bounded by bytes.** Every accepted batch holds permits of a
//!   semaphore sized `pipeline.max_queue_bytes` (in KiB units, by
//!   [`estimate_bytes`]) while it sits in memory. When none are left,
//!   [`Pipeline::enqueue`] answers [`EnqueueError::Full`] and receivers
//!   answer "retry later" (HTTP 429 + `Retry-After`, gRPC
//!   `RESOURCE_EXHAUSTED` with `RetryInfo`).
//! - **Durable.** With a spool (`pipeline.spool_enabled`), `enqueue`
//!   returns only once the batch is a record in the spool (written, and
//!   fsynced per `pipeline.spool_fsync`). The batch is also kept in memory
//!   unless the memory queue is more than half full; then it is dropped
//!   from memory ("spilled") and the batcher reads it back from disk in
//!   its turn. Records are handed to the sinks in log order, and a segment
//!   of the log is deleted only once all its records are in the store.
//! - **Retries.** One batcher task owns the primary sink: it accumulates
//!   rows until `pipeline.batch_max_rows` or `pipeline.flush_interval_ms`,
//!   writes them with `pipeline.write_timeout_ms` per attempt, and retries
//!   retryable errors (and timeouts) with exponential backoff and jitter
//!   (`pipeline.retry_initial_backoff_ms` … `retry_max_backoff_ms`) until
//!   they succeed — the queue and the spool fill meanwhile, which pushes
//!   back on clients. A permanent error is never retried: the batch is
//!   split into the requests it came from, each is tried once more, and
//!   those rejected again go to the dead-letter file
//!   (`<spool_dir>/dead-letter.jsonl`) and
//!   `xray_collector_dead_letter_rows_total`.
//! - **Extra sinks** each have their own task fed through a small queue;
//!   when one is slow or down its batches are dropped (and counted) rather
//!   than holding back the primary. Every sink instance is written by
//!   exactly one task, so `Sink::write` is never called concurrently on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xray_config::PipelineConfig;
use xray_model::{CandidateDecision, Execution, MappedBatch, Step};
use xray_store::{Sink, SinkError};

use crate::metrics;
use crate::spool::dead_letter::DeadLetter;
use crate::spool::{self, Position, SpoolConfig, SpoolError, SpoolReader, SpoolWriter};

/// Batches waiting for one extra sink before new ones are dropped.
const EXTRA_SINK_QUEUE: usize = 16;
/// Retries of an extra sink's write (the primary retries until it works).
const EXTRA_RETRIES: u32 = 4;
/// Semaphore permits are KiB of estimated batch memory.
const PERMIT_BYTES: u64 = 1024;
/// Batches with at least this many rows are encoded for the spool on the
/// blocking pool.
const BLOCKING_ENCODE_ROWS: usize = 512;

/// Why a batch could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnqueueError {
    /// The memory queue or the spool is full; retry after this many seconds.
    Full {
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// The collector is shutting down.
    Closed,
    /// The spool cannot be written (disk error): nothing was accepted.
    Spool(String),
}

/// One accepted batch in memory, holding its share of the byte budget.
pub(crate) struct Queued {
    batch: MappedBatch,
    _permit: OwnedSemaphorePermit,
    rows: u64,
    bytes: u64,
    /// Its record in the spool, when there is one.
    pos: Option<Position>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        metrics::sub_queued(self.rows);
        metrics::sub_queued_bytes(self.bytes);
    }
}

/// The receivers' handle on the queue.
#[derive(Clone)]
pub(crate) struct Pipeline {
    tx: mpsc::UnboundedSender<Queued>,
    permits: Arc<Semaphore>,
    capacity: u32,
    spool: Option<SpoolWriter>,
    closed: Arc<AtomicBool>,
}

/// Owner side: stops the spool writer, then drains and awaits the batcher.
pub(crate) struct PipelineTask {
    close: Arc<Notify>,
    closed: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    writer: Option<spool::WriterThread>,
    /// Held for the life of the pipeline: one collector per spool dir.
    _lock: Option<std::fs::File>,
}

impl PipelineTask {
    /// Stops taking new batches (the spool writes and syncs what it was
    /// given), then lets the batcher drain into the sinks; await
    /// [`PipelineTask::handle`] for it to finish.
    pub(crate) async fn close(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(mut w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.close()).await;
        }
        self.close.notify_one();
    }

    /// The batcher task (finishes after [`PipelineTask::close`]).
    pub(crate) fn handle(&mut self) -> &mut JoinHandle<()> {
        &mut self.handle
    }

    /// Whether accepted batches are kept in a spool (so a batcher stopped
    /// early loses nothing: the next start replays them).
    pub(crate) fn durable(&self) -> bool {
        self._lock.is_some()
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StartError(pub(crate) SpoolError);

/// Backoff settings of the primary sink's retries.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): exponential,
    /// capped, with "equal jitter" (between half and all of it) so that
    /// collectors retrying the same store spread out.
    fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(random % span)
    }
}

fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0)
    })
}

impl Pipeline {
    /// Opens the spool (`spool_dir`: `None` disables it) and starts the
    /// batcher and the extra sinks' tasks.
    pub(crate) fn start(
        cfg: &PipelineConfig,
        spool_dir: Option<std::path::PathBuf>,
        primary: Arc<dyn Sink>,
        extra: Vec<Arc<dyn Sink>>,
    ) -> Result<(Pipeline, PipelineTask), StartError> {
        let capacity =
            u32::try_from((cfg.max_queue_bytes / PERMIT_BYTES).max(1)).unwrap_or(u32::MAX);
        let permits = Arc::new(Semaphore::new(capacity as usize));
        // Unbounded channel, bounded by the byte semaphore above.
        let (tx, rx) = mpsc::unbounded_channel();
        let (spool_writer, writer, reader, lock, dead) = match spool_dir {
            Some(dir) => {
                let (w, t, r, recovered, lock) = spool::open(&SpoolConfig {
                    dir: dir.clone(),
                    max_bytes: cfg.spool_max_bytes,
                    fsync: cfg.spool_fsync,
                    fsync_interval: Duration::from_millis(cfg.spool_fsync_interval_ms.max(1)),
                })
                .map_err(StartError)?;
                tracing::info!(
                    dir = %dir.display(),
                    fsync = ?cfg.spool_fsync,
                    replay_records = recovered.records,
                    torn_records = recovered.torn,
                    "spool open"
                );
                (
                    Some(w),
                    Some(t),
                    Some(r),
                    Some(lock),
                    Some(DeadLetter::new(&dir)),
                )
            }
            None => {
                tracing::warn!(
                    "pipeline.spool_enabled = false: accepted batches live in memory only and are lost if the process dies"
                );
                (None, None, None, None, None)
            }
        };
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
            max_rows: cfg.batch_max_rows.max(1) as usize,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms.max(1)),
            write_timeout,
            backoff: Backoff {
                initial: Duration::from_millis(cfg.retry_initial_backoff_ms.max(1)),
                max: Duration::from_millis(
                    cfg.retry_max_backoff_ms
                        .max(cfg.retry_initial_backoff_ms.max(1)),
                ),
            },
            reader,
            dead,
            pending: None,
            buf: MappedBatch::default(),
            parts: Vec::new(),
            held: Vec::new(),
            last_pos: None,
        };
        let handle = tokio::spawn(batcher.run(close.clone()));
        let closed = Arc::new(AtomicBool::new(false));
        Ok((
            Pipeline {
                tx,
                permits,
                capacity,
                spool: spool_writer,
                closed: closed.clone(),
            },
            PipelineTask {
                close,
                closed,
                handle,
                writer,
                _lock: lock,
            },
        ))
    }

    /// Accepts a batch: returns once it is queued in memory (no spool) or
    /// written to the spool. On error nothing of it was accepted.
    pub(crate) async fn enqueue(&self, batch: MappedBatch) -> Result<(), EnqueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.closed.load(Ordering::SeqCst) || self.tx.is_closed() {
            return Err(EnqueueError::Closed);
        }
        let rows = batch.len() as u64;
        let bytes = estimate_bytes(&batch);
        // A single batch larger than the whole queue takes all of it.
        let wanted = u32::try_from(bytes.div_ceil(PERMIT_BYTES))
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let permit = match self.permits.clone().try_acquire_many_owned(wanted) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(EnqueueError::Full {
                    retry_after_secs: 1,
                });
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(EnqueueError::Closed),
        };
        metrics::add_queued(rows);
        metrics::add_queued_bytes(bytes);
        let queued = Queued {
            batch,
            _permit: permit,
            rows,
            bytes,
            pos: None,
        };
        let Some(spool) = &self.spool else {
            return self.tx.send(queued).map_err(|_| EnqueueError::Closed);
        };
        let (payload, queued) = if queued.batch.len() >= BLOCKING_ENCODE_ROWS {
            tokio::task::spawn_blocking(move || {
                let p = spool::record::encode_batch(&queued.batch);
                (p, queued)
            })
            .await
            .map_err(|e| EnqueueError::Spool(e.to_string()))?
        } else {
            (spool::record::encode_batch(&queued.batch), queued)
        };
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.clone();
        let permits = self.permits.clone();
        let capacity = self.capacity as usize;
        let done: spool::Done = Box::new(move |result| {
            let outcome = match result {
                Ok(pos) => {
                    let used = capacity.saturating_sub(permits.available_permits());
                    if used <= capacity / 2 {
                        let mut q = queued;
                        q.pos = Some(pos);
                        // When the batcher is gone the record is still on disk.
                        let _ = tx.send(q);
                    }
                    // else: spilled; the batcher reads it back from disk.
                    Ok(())
                }
                Err(SpoolError::Full { .. }) => Err(EnqueueError::Full {
                    retry_after_secs: 5,
                }),
                Err(SpoolError::Closed) => Err(EnqueueError::Closed),
                Err(e) => Err(EnqueueError::Spool(e.to_string())),
            };
            let _ = reply.send(outcome);
        });
        match spool.append(payload, done) {
            Ok(()) => {}
            Err(SpoolError::Full { .. }) => {
                return Err(EnqueueError::Full {
                    retry_after_secs: 5,
                });
            }
            Err(SpoolError::Closed) => return Err(EnqueueError::Closed),
            Err(e) => return Err(EnqueueError::Spool(e.to_string())),
        }
        answer.await.unwrap_or(Err(EnqueueError::Closed))
    }
}

fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

fn map_len(m: &std::collections::BTreeMap<String, String>) -> usize {
    // A B-tree entry costs about its strings plus two String headers and
    // node overhead.
    m.iter().map(|(k, v)| k.len() + v.len() + 64).sum()
}

/// Estimated heap + inline memory of a batch, in bytes. Pure.
pub(crate) fn estimate_bytes(batch: &MappedBatch) -> u64 {
    let exec = |e: &Execution| {
        std::mem::size_of::<Execution>()
            + e.app.len()
            + e.execution_id.len()
            + e.trace_id.len()
            + e.span_id.len()
            + e.pipeline.len()
            + e.environment.len()
            + e.service.len()
            + opt_len(&e.input)
            + opt_len(&e.output)
            + opt_len(&e.error)
            + e.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + map_len(&e.metadata)
    };
    let step = |s: &Step| {
        std::mem::size_of::<Step>()
            + s.app.len()
            + s.execution_id.len()
            + s.trace_id.len()
            + s.span_id.len()
            + s.parent_span_id.len()
            + s.name.len()
            + s.service.len()
            + opt_len(&s.input)
            + opt_len(&s.output)
            + opt_len(&s.reasoning)
            + opt_len(&s.model)
            + opt_len(&s.provider)
            + opt_len(&s.error)
            + map_len(&s.metadata)
            + s.rejections.keys().map(|k| k.len() + 56).sum::<usize>()
            + s.candidates
                .iter()
                .map(|c| std::mem::size_of::<CandidateDecision>() + c.id.len() + opt_len(&c.reason))
                .sum::<usize>()
    };
    let total: usize = batch.executions.iter().map(exec).sum::<usize>()
        + batch.steps.iter().map(step).sum::<usize>();
    total as u64
}

/// Splits a merged batch back into the parts it was made of; `parts` holds
/// each part's (executions, steps) counts in order. Pure.
pub(crate) fn split(batch: MappedBatch, parts: &[(usize, usize)]) -> Vec<MappedBatch> {
    let mut executions = batch.executions.into_iter();
    let mut steps = batch.steps.into_iter();
    parts
        .iter()
        .map(|&(e, s)| MappedBatch {
            executions: executions.by_ref().take(e).collect(),
            steps: steps.by_ref().take(s).collect(),
        })
        .collect()
}

struct ExtraSink {
    name: String,
    tx: mpsc::Sender<Arc<MappedBatch>>,
    handle: JoinHandle<()>,
}

/// A batch ready for the buffer, from memory or from the spool.
struct Item {
    batch: MappedBatch,
    queued: Option<Queued>,
    pos: Option<Position>,
}

struct Batcher {
    rx: mpsc::UnboundedReceiver<Queued>,
    primary: Arc<dyn Sink>,
    extras: Vec<ExtraSink>,
    max_rows: usize,
    flush_interval: Duration,
    write_timeout: Duration,
    backoff: Backoff,
    reader: Option<SpoolReader>,
    dead: Option<DeadLetter>,
    /// A batch taken from the channel that is not its turn yet.
    pending: Option<Queued>,
    buf: MappedBatch,
    parts: Vec<(usize, usize)>,
    held: Vec<Queued>,
    last_pos: Option<Position>,
}

impl Batcher {
    async fn run(mut self, close: Arc<Notify>) {
        let mut deadline: Option<Instant> = None;
        let mut closing = false;
        let mut rx_done = false;
        loop {
            while self.buf.len() < self.max_rows {
                match self.ready().await {
                    Some(item) => {
                        self.add(item);
                        deadline.get_or_insert_with(|| Instant::now() + self.flush_interval);
                    }
                    None => break,
                }
            }
            if self.buf.len() >= self.max_rows {
                self.flush().await;
                deadline = None;
                continue;
            }
            let caught_up = self
                .reader
                .as_ref()
                .is_none_or(|r| r.next_seq() >= r.written());
            if rx_done && self.pending.is_none() && caught_up {
                break;
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.rx.recv(), if !rx_done && self.pending.is_none() => match msg {
                    Some(q) => self.pending = Some(q),
                    None => rx_done = true,
                },
                _ = reader_changed(&self.reader, caught_up) => {}
                _ = sleep => {
                    self.flush().await;
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
        self.flush().await;
        if let Some(r) = &mut self.reader
            && r.next_seq() >= r.written()
        {
            // Everything the spool holds is in the store.
            r.release_all();
        }
        // Closing the extra sinks' queues lets their tasks drain and stop.
        for extra in self.extras.drain(..) {
            drop(extra.tx);
            if let Err(e) = extra.handle.await {
                tracing::error!(sink = extra.name, error = %e, "extra sink task failed");
            }
        }
        tracing::debug!("batcher stopped");
    }

    /// The next batch whose turn it is, without waiting for new ones.
    async fn ready(&mut self) -> Option<Item> {
        loop {
            if let Some(mut q) = self.pending.take() {
                let (Some(pos), Some(reader)) = (q.pos, self.reader.as_mut()) else {
                    let batch = std::mem::take(&mut q.batch);
                    return Some(Item {
                        batch,
                        pos: q.pos,
                        queued: Some(q),
                    });
                };
                if pos.seq < reader.next_seq() {
                    // Read from disk already (it raced the reader).
                    continue;
                }
                if pos.seq == reader.next_seq() {
                    reader.skip_to(pos);
                    let batch = std::mem::take(&mut q.batch);
                    return Some(Item {
                        batch,
                        pos: Some(pos),
                        queued: Some(q),
                    });
                }
                // Spilled records come first.
                self.pending = Some(q);
                return self.read_disk().await;
            }
            match self.rx.try_recv() {
                Ok(q) => {
                    self.pending = Some(q);
                    continue;
                }
                Err(_) => {
                    if self
                        .reader
                        .as_ref()
                        .is_some_and(|r| r.next_seq() < r.written())
                    {
                        return self.read_disk().await;
                    }
                    return None;
                }
            }
        }
    }

    /// Reads the next record from the spool files.
    async fn read_disk(&mut self) -> Option<Item> {
        let mut reader = self.reader.take()?;
        let joined = tokio::task::spawn_blocking(move || {
            let r = reader.read_next();
            (reader, r)
        })
        .await;
        let (reader, result) = match joined {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "spool read task failed");
                return None;
            }
        };
        self.reader = Some(reader);
        match result {
            Ok((batch, pos)) => {
                let batch = batch.unwrap_or_default();
                metrics::record_replayed(batch.len() as u64);
                Some(Item {
                    batch,
                    queued: None,
                    pos: Some(pos),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    fn add(&mut self, item: Item) {
        self.parts
            .push((item.batch.executions.len(), item.batch.steps.len()));
        self.buf.extend(item.batch);
        if let Some(q) = item.queued {
            self.held.push(q);
        }
        if item.pos.is_some() {
            self.last_pos = item.pos;
        }
    }

    async fn flush(&mut self) {
        let parts = std::mem::take(&mut self.parts);
        if !self.buf.is_empty() {
            let batch = Arc::new(std::mem::take(&mut self.buf));
            let rows = batch.len() as u64;
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
            match self.write_primary(&batch).await {
                Ok(()) => metrics::record_written(rows),
                Err(e) => {
                    // Permanent: find the parts the store rejects.
                    let batch = Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
                    let pieces = if parts.len() > 1 {
                        split(batch, &parts)
                    } else {
                        vec![batch]
                    };
                    let single = pieces.len() == 1;
                    for piece in pieces {
                        if piece.is_empty() {
                            continue;
                        }
                        let result = if single {
                            Err(e.to_string())
                        } else {
                            self.write_primary(&piece).await.map_err(|e| e.to_string())
                        };
                        match result {
                            Ok(()) => metrics::record_written(piece.len() as u64),
                            Err(reason) => self.dead_letter(&piece, &reason),
                        }
                    }
                }
            }
        }
        if let (Some(pos), Some(reader)) = (self.last_pos.take(), self.reader.as_mut()) {
            reader.release(pos);
        }
        self.held.clear();
    }

    fn dead_letter(&self, batch: &MappedBatch, reason: &str) {
        let rows = batch.len() as u64;
        metrics::record_dead_letter(rows);
        let sink = self.primary.name();
        match &self.dead {
            Some(dl) => match dl.append(sink, reason, batch, now_ns()) {
                Ok(()) => tracing::error!(
                    sink,
                    rows,
                    reason,
                    file = %dl.path().display(),
                    "the store rejected a batch permanently; written to the dead-letter file"
                ),
                Err(e) => {
                    metrics::record_dropped(rows);
                    tracing::error!(
                    sink,
                    rows,
                    reason,
                    error = %e,
                    "the store rejected a batch permanently and the dead-letter file cannot be written; batch lost"
                    );
                }
            },
            None => {
                metrics::record_dropped(rows);
                tracing::error!(
                    sink,
                    rows,
                    reason,
                    "the store rejected a batch permanently (no spool, so no dead-letter file); batch lost"
                );
            }
        }
    }

    /// Writes to the primary sink until it succeeds or fails permanently.
    async fn write_primary(&self, batch: &MappedBatch) -> Result<(), SinkError> {
        let sink = self.primary.as_ref();
        let mut attempt = 0u32;
        loop {
            match write_once(sink, batch, self.write_timeout).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    attempt = attempt.saturating_add(1);
                    metrics::record_retry();
                    let delay = self.backoff.delay(attempt, random_u64());
                    tracing::warn!(
                        sink = sink.name(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %e,
                        "store write failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Resolves when the spool may hold records the batcher has not read.
async fn reader_changed(reader: &Option<SpoolReader>, caught_up: bool) {
    match reader {
        Some(_) if !caught_up => tokio::task::yield_now().await,
        Some(r) => r.changed().await,
        None => std::future::pending().await,
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn run_extra(
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Arc<MappedBatch>>,
    write_timeout: Duration,
) {
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    while let Some(batch) = rx.recv().await {
        let rows = batch.len() as u64;
        let mut attempt = 0;
        loop {
            match write_once(sink.as_ref(), &batch, write_timeout).await {
                Ok(()) => {
                    metrics::record_extra_written(rows);
                    break;
                }
                Err(e) if e.is_retryable() && attempt < EXTRA_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(backoff.delay(attempt, random_u64())).await;
                }
                Err(e) => {
                    metrics::record_extra_dropped(rows);
                    tracing::error!(sink = sink.name(), rows, error = %e, "batch lost: extra sink write failed");
                    break;
                }
            }
        }
    }
}

/// One write of `batch`, a timeout counting as retryable.
async fn write_once(
    sink: &dyn Sink,
    batch: &MappedBatch,
    timeout: Duration,
) -> Result<(), SinkError> {
    match tokio::time::timeout(timeout, sink.write(batch)).await {
        Ok(r) => r,
        Err(_) => Err(SinkError::Retryable {
            sink: sink.name().to_string(),
            message: format!("write timed out after {} ms", timeout.as_millis()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_store::testing::{execution, step};

    fn batch(n: usize) -> MappedBatch {
        let e = execution(
            "app",
            &format!("e{n}"),
            "pipe",
            1_700_000_000_000_000_000,
            10,
        );
        let steps = (0..n)
            .map(|i| step(&e, &format!("s{i}"), xray_model::StepType::Filter, 1, 2))
            .collect();
        MappedBatch {
            executions: vec![e],
            steps,
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for random in [0, 1, 12_345, u64::MAX] {
            let d1 = b.delay(1, random);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = b.delay(3, random);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d30 = b.delay(30, random);
            assert!(
                d30 >= Duration::from_secs(1) && d30 <= Duration::from_secs(2),
                "{d30:?}"
            );
        }
        assert_ne!(b.delay(5, 1), b.delay(5, 7_777));
    }

    #[test]
    fn estimates_grow_with_content() {
        let small = estimate_bytes(&batch(1));
        let big = estimate_bytes(&batch(100));
        assert!(small >= std::mem::size_of::<Step>() as u64);
        assert!(big > 50 * small, "{small} {big}");
        let mut b = batch(1);
        b.steps[0].input = Some("x".repeat(1_000_000));
        assert!(estimate_bytes(&b) > 1_000_000);
    }

    #[test]
    fn split_restores_the_parts() {
        let (a, b) = (batch(2), batch(3));
        let mut merged = a.clone();
        merged.extend(b.clone());
        assert_eq!(split(merged, &[(1, 2), (1, 3)]), vec![a, b]);
    }
}
