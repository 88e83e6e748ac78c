//! The embedded SQLite backend: one database file, no server.
//!
//! - Writes go through one connection (SQLite has one writer) inside a
//!   transaction per batch; `INSERT … ON CONFLICT DO UPDATE … WHERE version`
//!   makes re-inserts idempotent with the newest version winning.
//! - Reads use a small pool of read-only connections; WAL mode lets them run
//!   while a batch is being written.
//! - Blocking SQLite calls run on tokio's blocking pool, never on the async
//!   executor.
//! - WAL checkpoints (copying committed pages from the WAL into the database
//!   file, then fsync) run on a thread of their own, `xray-sqlite-checkpoint`,
//!   woken after every write, so the writer does not pay for them between
//!   batches. The writer checkpoints itself only as a backstop, when the WAL
//!   has grown to 64 MiB (4,096 pages) because the checkpoint thread is
//!   behind.
//! - Migrations are the numbered files of `migrations/sqlite/`, embedded in
//!   the binary and tracked in `schema_migrations`.

mod analytics;
mod rows;
mod sink;
mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// Embedded migrations: `(version, name, sql)`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "0002_rowid_tables.sql",
        include_str!("../../../migrations/sqlite/0002_rowid_tables.sql"),
    ),
    (
        3,
        "0003_steps_by_span.sql",
        include_str!("../../../migrations/sqlite/0003_steps_by_span.sql"),
    ),
];

/// Page size of new database files. Rows carry prompts and outputs of a few
/// KB; 16 KiB pages keep most of them off overflow chains. Existing files
/// keep theirs.
const PAGE_SIZE: i64 = 16_384;

const READERS: usize = 4;

/// WAL size (in pages) at which the writer connection checkpoints by itself
/// (SQLite's `wal_autocheckpoint`; 4,096 pages = 64 MiB with 16 KiB pages).
/// Normally the checkpoint thread has done it long before.
const WRITER_CHECKPOINT_PAGES: i64 = 4_096;

/// The SQLite backend. Cheap to clone.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Wakes the checkpoint thread after a write; it stops when this is
    /// dropped. `None` when the thread could not be started (the writer's
    /// own `wal_autocheckpoint` then does all checkpoints).
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Inner {
    /// Runs `f` on the writer connection, then wakes the checkpoint thread.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| backend_err("writer lock poisoned"))?;
        let result = f(&mut conn);
        drop(conn);
        self.wrote();
        result
    }

    /// Tells the checkpoint thread that the WAL has new pages. Never blocks:
    /// a wake-up already pending covers this write too.
    fn wrote(&self) {
        if let Some(tx) = &self.checkpoint {
            let _ = tx.try_send(());
        }
    }
}

/// Starts the checkpoint thread on its own connection to `path`. Each
/// wake-up runs one `PRAGMA wal_checkpoint(PASSIVE)`: it copies what readers
/// no longer need and never waits for the writer or for readers, so it
/// cannot stall ingest; the next write restarts the WAL from its beginning
/// once a checkpoint has copied all of it.
fn start_checkpointer(path: &Path) -> Option<std::sync::mpsc::SyncSender<()>> {
    let conn = match Connection::open(path).and_then(|c| configure(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(),
                "cannot open a connection for background WAL checkpoints; the writer will checkpoint");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("xray-sqlite-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match done {
                    Ok((_, log, copied)) => {
                        tracing::trace!(log, copied, "wal checkpoint");
                    }
                    Err(e) => tracing::warn!(error = %e, "wal checkpoint failed; will retry after the next write"),
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; the writer will checkpoint");
            None
        }
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn backend_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -64_000)?; // 64 MB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl SqliteBackend {
    /// Opens (creating when missing) the database at `path`, its parent
    /// directory included, switches it to WAL mode and applies migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(backend_err)?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Only takes effect on a file without tables yet, so set it first.
        writer
            .pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(backend_err)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(backend_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "sqlite did not switch to WAL mode");
        }
        configure(&writer).map_err(backend_err)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(backend_err)?;
        migrate(&writer)?;
        let backend = SqliteBackend {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                checkpoint: start_checkpointer(path),
            }),
        };
        Ok(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies pending migrations (also done by [`SqliteBackend::open`]).
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .writer
                .lock()
                .map_err(|_| backend_err("writer lock poisoned"))?;
            migrate(&conn)
        })
        .await
        .map_err(backend_err)?
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.write(f))
            .await
            .map_err(backend_err)?
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool.
    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .map_err(|_| backend_err("reader pool poisoned"))?
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    configure(&c).map_err(backend_err)?;
                    c
                }
            };
            let result = f(&conn);
            let mut pool = inner
                .readers
                .lock()
                .map_err(|_| backend_err("reader pool poisoned"))?;
            if pool.len() < READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(backend_err)?
    }
}

/// Applies every embedded migration not yet recorded; returns the versions applied.
fn migrate(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at_ns INTEGER NOT NULL
        )",
    )
    .map_err(backend_err)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        // BEGIN IMMEDIATE takes the write lock, so two processes migrating the
        // same file apply each migration once.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend_err)?;
        let done: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )
            .map_err(backend_err)?;
        if done {
            conn.execute_batch("COMMIT").map_err(backend_err)?;
            continue;
        }
        let result = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ns) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, now_ns()],
            )
        });
        match result {
            Ok(_) => {
                conn.execute_batch("COMMIT").map_err(backend_err)?;
                tracing::info!(version, name, "sqlite migration applied");
                applied.push(*version);
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Backend(format!("migration {name} failed: {e}")));
            }
        }
    }
    Ok(applied)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
