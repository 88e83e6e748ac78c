//! The PostgreSQL backend: usable as the primary store
//! (`storage.backend = "postgres"`) or as an extra sink next to ClickHouse
//! (`[sinks.postgres]`).
//!
//! - Connections come from an `sqlx` pool (tokio runtime, rustls for TLS).
//! - Each batch is one transaction: one `INSERT … SELECT FROM UNNEST(…)` per
//!   table with `ON CONFLICT … DO UPDATE … WHERE excluded.version >= version`,
//!   so a retried batch never duplicates and the newest version wins.
//! - Input and output are kept as the exact text sent, plus JSONB when the
//!   text is valid JSON; metadata, rejections and candidates are JSONB.
//! - Migrations are the numbered files of `migrations/postgres/`, embedded in
//!   the binary, tracked in `schema_migrations` and applied under a session
//!   advisory lock, so several replicas may start at once.

mod rows;
pub(crate) mod schema;
mod sink;
mod store;
pub mod testing;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use xray_config::PostgresConfig;

use crate::{SinkError, StoreError};

/// The PostgreSQL backend. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    name: String,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects a pool to `config.url` (no migration; see
    /// [`PostgresBackend::open`]). Fails with [`StoreError::Unavailable`]
    /// when the server cannot be reached.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = config.url.parse().map_err(|e| {
            StoreError::InvalidArgument(format!("storage.postgres.url is not a valid URL: {e}"))
        })?;
        Self::connect_with(options, config.max_connections)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                    "cannot connect to postgres at {}: {m}",
                    xray_config::mask_url_password(&config.url)
                )),
                other => other,
            })
    }

    /// Connects a pool of at most `max_connections` with explicit options.
    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        // A statement that runs longer than this is cancelled (SQLSTATE 57014,
        // retryable), so no read or write hangs on a stuck server.
        let options = options.options([("statement_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            name: "postgres".into(),
        })
    }

    /// Connects and, when `config.migrate_on_start` is true, applies pending
    /// migrations. This is what `xray_store::open` uses for the primary store.
    pub async fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        let backend = Self::connect(config).await?;
        if config.migrate_on_start {
            backend.migrate().await?;
        }
        Ok(backend)
    }

    /// The extra sink of `[sinks.postgres]`: same as [`PostgresBackend::open`],
    /// named `postgres-sink` in logs and metrics so it is told apart from a
    /// Postgres primary store.
    pub async fn open_extra_sink(config: &PostgresConfig) -> Result<Self, StoreError> {
        let mut backend = Self::open(config).await?;
        backend.name = "postgres-sink".into();
        Ok(backend)
    }

    /// Applies every embedded migration not yet recorded in
    /// `schema_migrations`; returns the versions applied by this call (empty
    /// when the schema was up to date). Safe to run concurrently from several
    /// processes: they serialize on an advisory lock.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        schema::migrate::migrate(&self.pool).await
    }

    /// The connection pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// SQLSTATE classes and codes after which the same statement may succeed.
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("40") // serialization failure, deadlock
        || code.starts_with("53") // insufficient resources
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code == "55P03" // lock not available
        || code == "57014" // query canceled (statement timeout)
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        // Garbage or a closed socket while talking to the server (e.g. a
        // proxy in front of Postgres that accepts and drops connections
        // while the server is away): the connection, not the data, is bad.
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| retryable_sqlstate(&c)),
        _ => false,
    }
}

/// Classifies a write error: transient failures are retryable, everything
/// else (bad data, constraint violations, schema mismatch) is permanent.
fn sink_error(sink: &str, e: sqlx::Error) -> SinkError {
    let message = e.to_string();
    if is_transient(&e) {
        SinkError::Retryable {
            sink: sink.to_string(),
            message,
        }
    } else {
        SinkError::Permanent {
            sink: sink.to_string(),
            message,
        }
    }
}

/// Maps a read error.
fn store_error(e: sqlx::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Now, unix nanoseconds.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
