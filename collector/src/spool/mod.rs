//! The durable spool: an append-only, checksummed on-disk log of accepted
//! batches, read back in order by the batcher.
//!
//! Layout of `pipeline.spool_dir`:
//!
//! ```text
//! LOCK                          held (flock) by the one collector using the dir
//! segment-00000000000000000007.xrs   records, see [`record`]
//! segment-00000000000000000008.xrs   the segment being appended to
//! dead-letter.jsonl             batches the store rejected permanently
//! ```
//!
//! - One writer thread appends records. Concurrent requests are written as
//!   one group with one `fsync` (group commit), then each request's
//!   callback runs, in record order; only then is the request acknowledged.
//! - Records have sequence numbers (their position in the log since the
//!   oldest segment on disk). The batcher reads them either from memory
//!   (the common case: the record was also queued in memory) or from the
//!   files, with a [`Cursor`]; both advance in sequence order.
//! - A segment is deleted once every record in it and before it is in the
//!   store (or the dead-letter file). After a crash the segments left are
//!   replayed from the start; the store's idempotent writes make a replay
//!   of already written rows harmless.
//! - On open, every segment is checked record by record; a torn or corrupt
//!   record and everything after it in that segment is cut off (and
//!   counted in `xray_collector_spool_torn_records_total`), never replayed.

pub(crate) mod dead_letter;
pub(crate) mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use xray_config::SpoolFsync;
use xray_model::MappedBatch;

use crate::metrics;

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Most requests written as one group.
const MAX_GROUP: usize = 1024;

/// Spool settings (from `[pipeline]`).
#[derive(Debug, Clone)]
pub(crate) struct SpoolConfig {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// Largest size on disk.
    pub(crate) max_bytes: u64,
    /// fsync policy.
    pub(crate) fsync: SpoolFsync,
    /// fsync period with [`SpoolFsync::Interval`].
    pub(crate) fsync_interval: Duration,
}

/// Why the spool cannot take or give a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpoolError {
    /// The spool holds `pipeline.spool_max_bytes` already.
    #[error("the spool is full ({max_bytes} bytes, pipeline.spool_max_bytes)")]
    Full {
        /// The configured maximum.
        max_bytes: u64,
    },
    /// The spool is closed (shutting down).
    #[error("the spool is closed")]
    Closed,
    /// A file operation failed.
    #[error("spool {path}: {message}")]
    Io {
        /// File or directory.
        path: String,
        /// The OS error.
        message: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Where a record lies in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Sequence number.
    pub(crate) seq: u64,
    /// Segment id.
    pub(crate) segment: u64,
    /// Offset just past the record in its segment.
    pub(crate) end: u64,
}

/// Called by the writer thread once a record is written (and synced, per
/// policy) or failed; runs in record order.
pub(crate) type Done = Box<dyn FnOnce(Result<Position, SpoolError>) + Send>;

enum Msg {
    Append { payload: Vec<u8>, done: Done },
    Close,
}

/// State shared by the writer, the reader and the submitters.
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes on disk in segments.
    bytes: AtomicU64,
    /// Records appended so far (the next sequence number), published after
    /// their callbacks ran.
    written: AtomicU64,
    /// Wakes the reader when `written` grows.
    notify: Notify,
    /// Segment id → size in bytes.
    segments: Mutex<BTreeMap<u64, u64>>,
}

impl Shared {
    fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }

    fn set_bytes_metric(&self) {
        metrics::set_spool_bytes(self.bytes.load(Ordering::Relaxed));
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("segment-{id:020}.xrs"))
}

fn segment_id(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".xrs")?
        .parse()
        .ok()
}

/// What [`open`] found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Recovered {
    /// Valid records left by an earlier run (replayed first).
    pub(crate) records: u64,
    /// Torn or corrupt records cut off.
    pub(crate) torn: u64,
}

/// The submitters' handle: appends records.
#[derive(Clone)]
pub(crate) struct SpoolWriter {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// Owner of the writer thread.
pub(crate) struct WriterThread {
    tx: mpsc::Sender<Msg>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// The batcher's handle: reads records in order and releases segments.
pub(crate) struct SpoolReader {
    shared: Arc<Shared>,
    cursor: Option<Cursor>,
    next_seq: u64,
}

/// Opens (creating) the spool directory, takes its lock, checks and trims
/// every segment, and starts the writer thread.
pub(crate) fn open(
    cfg: &SpoolConfig,
) -> Result<(SpoolWriter, WriterThread, SpoolReader, Recovered, File), SpoolError> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))?;
    let lock_path = cfg.dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    lock.try_lock().map_err(|_| SpoolError::Io {
        path: lock_path.display().to_string(),
        message: "another collector uses this spool directory (pipeline.spool_dir); give each collector its own".into(),
    })?;
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))? {
        let entry = entry.map_err(|e| io_err(&cfg.dir, e))?;
        if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut recovered = Recovered::default();
    let mut segments = BTreeMap::new();
    for &id in &ids {
        let path = segment_path(&cfg.dir, id);
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let (records, error) = record::scan(&bytes);
        let mut keep = bytes.len() as u64;
        if let Some((at, e)) = error {
            recovered.torn += 1;
            metrics::record_torn_record();
            tracing::warn!(
                file = %path.display(),
                offset = at,
                reason = %e,
                dropped_bytes = bytes.len() - at,
                "spool segment ends in a torn or corrupt record; cutting it off"
            );
            keep = at as u64;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            f.set_len(keep).map_err(|e| io_err(&path, e))?;
            f.sync_all().map_err(|e| io_err(&path, e))?;
        }
        if records.is_empty() {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            continue;
        }
        recovered.records += records.len() as u64;
        segments.insert(id, keep);
    }
    let total: u64 = segments.values().sum();
    let first = segments.keys().next().copied();
    let next_id = ids.last().map_or(0, |l| l + 1);
    let shared = Arc::new(Shared {
        dir: cfg.dir.clone(),
        max_bytes: cfg.max_bytes,
        bytes: AtomicU64::new(total),
        written: AtomicU64::new(recovered.records),
        notify: Notify::new(),
        segments: Mutex::new(segments),
    });
    shared.set_bytes_metric();
    if recovered.records > 0 {
        tracing::info!(
            records = recovered.records,
            bytes = total,
            dir = %cfg.dir.display(),
            "replaying the spool left by an earlier run"
        );
    }
    let (tx, rx) = mpsc::channel();
    let writer = Writer::new(cfg, shared.clone(), next_id, recovered.records)?;
    let handle = std::thread::Builder::new()
        .name("xray-spool-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| io_err(&cfg.dir, e))?;
    let reader = SpoolReader {
        shared: shared.clone(),
        cursor: first.map(|segment| Cursor {
            segment,
            offset: 0,
            file: None,
        }),
        next_seq: 0,
    };
    Ok((
        SpoolWriter {
            tx: tx.clone(),
            shared,
        },
        WriterThread {
            tx,
            handle: Some(handle),
        },
        reader,
        recovered,
        lock,
    ))
}

impl SpoolWriter {
    /// Queues `payload` for appending; `done` runs once it is written.
    /// Refuses at once when the spool is full.
    pub(crate) fn append(&self, payload: Vec<u8>, done: Done) -> Result<(), SpoolError> {
        let need = (payload.len() + record::HEADER_LEN) as u64;
        if self.shared.bytes.load(Ordering::Relaxed) + need > self.shared.max_bytes {
            return Err(SpoolError::Full {
                max_bytes: self.shared.max_bytes,
            });
        }
        self.tx
            .send(Msg::Append { payload, done })
            .map_err(|_| SpoolError::Closed)
    }
}

impl WriterThread {
    /// Writes what is queued, syncs, and stops the thread.
    pub(crate) fn close(&mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("the spool writer thread panicked");
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    fsync: SpoolFsync,
    interval: Duration,
    segment: u64,
    file: File,
    size: u64,
    seq: u64,
    last_sync: Instant,
    dirty: bool,
}

fn create_segment(shared: &Shared, id: u64) -> Result<File, SpoolError> {
    let path = shared.segment_path(id);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(&shared.dir) {
        let _ = d.sync_all();
    }
    if let Ok(mut s) = shared.segments.lock() {
        s.insert(id, 0);
    }
    Ok(file)
}

impl Writer {
    fn new(
        cfg: &SpoolConfig,
        shared: Arc<Shared>,
        segment: u64,
        seq: u64,
    ) -> Result<Writer, SpoolError> {
        let file = create_segment(&shared, segment)?;
        Ok(Writer {
            shared,
            fsync: cfg.fsync,
            interval: cfg.fsync_interval,
            segment,
            file,
            size: 0,
            seq,
            last_sync: Instant::now(),
            dirty: false,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut closing = false;
        while !closing {
            let first = match rx.recv_timeout(self.interval) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.maybe_sync(false);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let push = |m: Msg, group: &mut Vec<(Vec<u8>, Done)>| match m {
                Msg::Append { payload, done } => {
                    group.push((payload, done));
                    false
                }
                Msg::Close => true,
            };
            closing = push(first, &mut group);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(m) => closing |= push(m, &mut group),
                    Err(_) => break,
                }
            }
            self.write_group(group);
        }
        // Requests sent after Close get `Closed` (their callbacks are dropped
        // with the channel, and their submitters see the sender fail).
        self.maybe_sync(true);
        tracing::debug!("spool writer stopped");
    }

    fn maybe_sync(&mut self, force: bool) {
        if !self.dirty || self.fsync == SpoolFsync::Never {
            return;
        }
        if force || self.last_sync.elapsed() >= self.interval || self.fsync == SpoolFsync::Always {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(error = %e, "spool fsync failed");
            }
            self.last_sync = Instant::now();
            self.dirty = false;
        }
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        if self.fsync != SpoolFsync::Never {
            self.file
                .sync_data()
                .map_err(|e| io_err(&self.shared.segment_path(self.segment), e))?;
        }
        let next = self.segment + 1;
        self.file = create_segment(&self.shared, next)?;
        self.segment = next;
        self.size = 0;
        Ok(())
    }

    /// Writes a group of records with one write (per segment) and one sync,
    /// then runs the callbacks in order and publishes the new count.
    fn write_group(&mut self, group: Vec<(Vec<u8>, Done)>) {
        let mut results: Vec<(Done, Result<Position, SpoolError>)> =
            Vec::with_capacity(group.len());
        let mut buf: Vec<u8> = Vec::new();
        let mut pending: Vec<(Done, Position)> = Vec::new();
        for (payload, done) in group {
            let len = (payload.len() + record::HEADER_LEN) as u64;
            let total = self.shared.bytes.load(Ordering::Relaxed) + buf.len() as u64;
            if total + len > self.shared.max_bytes {
                results.push((
                    done,
                    Err(SpoolError::Full {
                        max_bytes: self.shared.max_bytes,
                    }),
                ));
                continue;
            }
            if self.size + buf.len() as u64 > 0
                && self.size + buf.len() as u64 + len > SEGMENT_BYTES
            {
                self.flush_buf(&mut buf, &mut pending, &mut results);
                if let Err(e) = self.rotate() {
                    results.push((done, Err(e)));
                    continue;
                }
            }
            buf.extend_from_slice(&record::header(&payload));
            buf.extend_from_slice(&payload);
            let pos = Position {
                seq: self.seq + pending.len() as u64,
                segment: self.segment,
                end: self.size + buf.len() as u64,
            };
            pending.push((done, pos));
        }
        self.flush_buf(&mut buf, &mut pending, &mut results);
        if self.fsync == SpoolFsync::Always {
            self.maybe_sync(true);
        } else {
            self.maybe_sync(false);
        }
        for (done, result) in results {
            done(result);
        }
        self.shared.written.store(self.seq, Ordering::Release);
        self.shared.set_bytes_metric();
        self.shared.notify.notify_one();
    }

    /// Writes `buf` to the current segment. On failure the segment is cut
    /// back and the records fail.
    fn flush_buf(
        &mut self,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(Done, Position)>,
        results: &mut Vec<(Done, Result<Position, SpoolError>)>,
    ) {
        if buf.is_empty() {
            return;
        }
        let path = self.shared.segment_path(self.segment);
        let written = self.file.write_all(buf);
        let n = buf.len() as u64;
        buf.clear();
        match written {
            Ok(()) => {
                self.size += n;
                self.dirty = true;
                self.seq += pending.len() as u64;
                self.shared.bytes.fetch_add(n, Ordering::Relaxed);
                if let Ok(mut s) = self.shared.segments.lock() {
                    s.insert(self.segment, self.size);
                }
                results.extend(pending.drain(..).map(|(d, p)| (d, Ok(p))));
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "spool write failed");
                // Never leave a half-written record behind.
                let _ = self.file.set_len(self.size);
                let err = io_err(&path, e);
                results.extend(pending.drain(..).map(|(d, _)| (d, Err(err.clone()))));
            }
        }
    }
}

/// The reader's place in the log.
struct Cursor {
    segment: u64,
    offset: u64,
    file: Option<File>,
}

impl SpoolReader {
    /// Sequence number of the next record the batcher needs.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records appended so far.
    pub(crate) fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Waits until more records may have been appended.
    pub(crate) async fn changed(&self) {
        self.shared.notify.notified().await;
    }

    /// The record at `pos` was taken from memory: move past it.
    pub(crate) fn skip_to(&mut self, pos: Position) {
        self.next_seq = pos.seq + 1;
        match &mut self.cursor {
            Some(c) if c.segment == pos.segment => c.offset = pos.end,
            _ => {
                self.cursor = Some(Cursor {
                    segment: pos.segment,
                    offset: pos.end,
                    file: None,
                });
            }
        }
    }

    /// Reads the next record from disk (blocking file reads): its batch
    /// (`None` when its payload cannot be decoded) and position.
    pub(crate) fn read_next(&mut self) -> Result<(Option<MappedBatch>, Position), SpoolError> {
        loop {
            let Some(c) = self.cursor.as_mut() else {
                let first = self.first_segment_after(None).ok_or(SpoolError::Closed)?;
                self.cursor = Some(Cursor {
                    segment: first,
                    offset: 0,
                    file: None,
                });
                continue;
            };
            let path = self.shared.segment_path(c.segment);
            if c.file.is_none() {
                c.file = Some(File::open(&path).map_err(|e| io_err(&path, e))?);
            }
            let file = c.file.as_ref().ok_or(SpoolError::Closed)?;
            let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
            if c.offset >= len {
                let segment = c.segment;
                let next = self
                    .first_segment_after(Some(segment))
                    .ok_or_else(|| io_err(&path, "the log ends before the records it counts"))?;
                self.cursor = Some(Cursor {
                    segment: next,
                    offset: 0,
                    file: None,
                });
                continue;
            }
            let mut header = [0u8; record::HEADER_LEN];
            file.read_exact_at(&mut header, c.offset)
                .map_err(|e| io_err(&path, e))?;
            let (plen, _) = record::parse_header(&header).map_err(|e| io_err(&path, e))?;
            let mut whole = vec![0u8; record::HEADER_LEN + plen as usize];
            file.read_exact_at(&mut whole, c.offset)
                .map_err(|e| io_err(&path, e))?;
            let (payload, total) = record::parse(&whole).map_err(|e| io_err(&path, e))?;
            c.offset += total as u64;
            let pos = Position {
                seq: self.next_seq,
                segment: c.segment,
                end: c.offset,
            };
            self.next_seq += 1;
            let batch = match record::decode_batch(payload) {
                Ok(b) => Some(b),
                Err(e) => {
                    metrics::record_torn_record();
                    tracing::error!(file = %path.display(), offset = c.offset, error = %e, "spool record does not decode; skipped");
                    None
                }
            };
            return Ok((batch, pos));
        }
    }

    fn first_segment_after(&self, after: Option<u64>) -> Option<u64> {
        let s = self.shared.segments.lock().ok()?;
        match after {
            Some(a) => s.range(a + 1..).next().map(|(k, _)| *k),
            None => s.keys().next().copied(),
        }
    }

    /// Every record up to and including `pos` is in the store: deletes the
    /// segments before `pos.segment`; with `all_done` (nothing more was
    /// appended) `pos.segment` too, unless the writer still appends to it.
    pub(crate) fn release(&mut self, pos: Position) {
        let doomed: Vec<u64> = match self.shared.segments.lock() {
            Ok(s) => s.range(..pos.segment).map(|(k, _)| *k).collect(),
            Err(_) => return,
        };
        for id in doomed {
            self.remove_segment(id);
        }
    }

    /// Deletes every segment (all records are in the store); called when
    /// the writer has stopped.
    pub(crate) fn release_all(&mut self) {
        let all: Vec<u64> = match self.shared.segments.lock() {
            Ok(s) => s.keys().copied().collect(),
            Err(_) => return,
        };
        self.cursor = None;
        for id in all {
            self.remove_segment(id);
        }
    }

    fn remove_segment(&mut self, id: u64) {
        let path = self.shared.segment_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a written spool segment");
                return;
            }
        }
        if let Ok(mut s) = self.shared.segments.lock()
            && let Some(size) = s.remove(&id)
        {
            self.shared.bytes.fetch_sub(size, Ordering::Relaxed);
        }
        self.shared.set_bytes_metric();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 30,
            fsync: SpoolFsync::Always,
            fsync_interval: Duration::from_millis(50),
        }
    }

    fn batch(n: usize) -> MappedBatch {
        let e = xray_store::testing::execution("app", &format!("e{n}"), "pipe", 1, 2);
        MappedBatch {
            executions: vec![e],
            steps: Vec::new(),
        }
    }

    fn append_all(w: &SpoolWriter, batches: &[MappedBatch]) -> Vec<Position> {
        let (tx, rx) = mpsc::channel();
        for b in batches {
            let tx = tx.clone();
            w.append(
                record::encode_batch(b),
                Box::new(move |r| tx.send(r).unwrap()),
            )
            .unwrap();
        }
        (0..batches.len())
            .map(|_| rx.recv().unwrap().unwrap())
            .collect()
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<_> = (0..3).map(batch).collect();
        let (w, mut t, mut r, rec, lock) = open(&config(dir.path())).unwrap();
        assert_eq!(rec, Recovered::default());
        let pos = append_all(&w, &batches);
        assert_eq!(pos.iter().map(|p| p.seq).collect::<Vec<_>>(), [0, 1, 2]);
        // The writer publishes the count just after the callbacks ran.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while r.written() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.written(), 3);
        for b in &batches {
            assert_eq!(r.read_next().unwrap().0.as_ref(), Some(b));
        }
        t.close();
        drop((w, r, lock));

        // Not released: a restart replays all three.
        let (_w, mut t, mut r, rec, lock) = open(&config(dir.path())).unwrap();
        assert_eq!(rec.records, 3);
        for b in &batches {
            assert_eq!(r.read_next().unwrap().0.as_ref(), Some(b));
        }
        t.close();
        r.release_all();
        drop(lock);
        let (_w, mut t, _r, rec, _lock) = open(&config(dir.path())).unwrap();
        assert_eq!(rec.records, 0);
        t.close();
    }

    #[test]
    fn one_collector_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_w, mut t, _r, _rec, _lock) = open(&config(dir.path())).unwrap();
        match open(&config(dir.path())) {
            Err(SpoolError::Io { message, .. }) => {
                assert!(message.starts_with("another collector uses this spool directory"));
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a second open of the same directory succeeded"),
        }
        t.close();
    }

    #[test]
    fn a_full_spool_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.max_bytes = 64;
        let (w, mut t, _r, _rec, _lock) = open(&cfg).unwrap();
        let err = w
            .append(record::encode_batch(&batch(1)), Box::new(|_| {}))
            .unwrap_err();
        assert_eq!(err, SpoolError::Full { max_bytes: 64 });
        t.close();
    }
}
