//! The ClickHouse backend, X-Ray's production store.
//!
//! - Talks HTTP through the official `clickhouse` crate with its defaults
//!   (LZ4 compression, `RowBinaryWithNamesAndTypes` inserts validated against
//!   the table schema).
//! - Schema: `migrations/clickhouse/*.sql` templates rendered for the
//!   configured database, TTL and (optional) cluster, see [`schema`] and
//!   `docs/clickhouse.md`.
//! - Sink (`sink.rs`): one `INSERT` per table per batch; errors are classified
//!   retryable or permanent from the ClickHouse error code.
//! - Store (`store.rs`): parameterized queries only (`{name:Type}` server-side
//!   parameters), scoped by app, newest version per identity with
//!   `LIMIT 1 BY` instead of `FINAL`.

mod funnel;
mod rows;
pub mod schema;
mod sink;
mod store;
pub mod testing;
mod versions;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use xray_config::ClickhouseConfig;

use crate::{SinkError, StoreError};
use schema::SchemaOptions;

/// The ClickHouse backend. Cheap to clone.
#[derive(Clone)]
pub struct ClickhouseBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// Client bound to the X-Ray database (queries and inserts).
    client: clickhouse::Client,
    /// Client without a database (creating it).
    admin: clickhouse::Client,
    schema: SchemaOptions,
    url: String,
    /// Last `written` timestamp handed out (strictly increasing).
    last_written: AtomicI64,
}

impl std::fmt::Debug for ClickhouseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickhouseBackend")
            .field("url", &self.inner.url)
            .field("database", &self.inner.schema.database())
            .finish_non_exhaustive()
    }
}

impl ClickhouseBackend {
    /// Builds the clients for `config` without contacting the server and
    /// without migrating. Fails with [`StoreError::InvalidArgument`] when the
    /// database or cluster name is not a plain identifier.
    pub fn new(config: &ClickhouseConfig) -> Result<Self, StoreError> {
        let schema = SchemaOptions::new(&config.database, &config.cluster, config.ttl_days)?;
        let mut admin = clickhouse::Client::default()
            .with_url(config.url.trim_end_matches('/'))
            .with_user(&config.user)
            .with_password(&config.password)
            // Wait for the insert to be written (and, with async inserts, flushed)
            // before answering: the batcher acknowledges only durable writes.
            .with_setting("wait_end_of_query", "1");
        if config.async_insert {
            admin = admin
                .with_setting("async_insert", "1")
                .with_setting("wait_for_async_insert", "1");
        }
        let client = admin.clone().with_database(schema.database());
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                admin,
                schema,
                url: config.url.clone(),
                last_written: AtomicI64::new(0),
            }),
        })
    }

    /// Builds the clients and, when `config.migrate_on_start` is true, applies
    /// pending migrations. This is what `xray_store::open` uses.
    pub async fn open(config: &ClickhouseConfig) -> Result<Self, StoreError> {
        let backend = Self::new(config)?;
        if config.migrate_on_start {
            backend.migrate().await?;
        }
        Ok(backend)
    }

    /// Creates the database and applies every migration not yet recorded in
    /// `schema_migrations`; returns the versions applied by this call. Every
    /// statement is idempotent, so concurrent runs from several replicas are
    /// safe; nothing is ever dropped.
    pub async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        schema::migrate::migrate(&self.inner.admin, &self.inner.schema).await
    }

    /// The database holding X-Ray's tables.
    pub fn database(&self) -> &str {
        self.inner.schema.database()
    }

    /// The client bound to the X-Ray database (for tests and tools).
    pub fn client(&self) -> &clickhouse::Client {
        &self.inner.client
    }

    /// A `written` timestamp: now in ns, strictly greater than the previous
    /// one handed out by this backend, so a later write always wins a tie on
    /// `version`.
    fn next_written(&self) -> i64 {
        let now = now_ns();
        let mut prev = self.inner.last_written.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self.inner.last_written.compare_exchange_weak(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

/// Now, unix nanoseconds.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// ClickHouse error codes after which the same request may succeed.
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (replica temporarily read-only)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    236, // ABORTED
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    394, // QUERY_WAS_CANCELLED
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

/// The ClickHouse error code of a server error message (`Code: 252. …`).
fn error_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// True when the same request may succeed later.
fn is_transient(e: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        E::BadResponse(message) => match error_code(message) {
            Some(code) => RETRYABLE_CODES.contains(&code),
            // No ClickHouse error: an HTTP status from a proxy or load balancer.
            None => message.starts_with('5') || message.starts_with("429"),
        },
        _ => false,
    }
}

/// Classifies a write error.
fn sink_error(e: clickhouse::error::Error) -> SinkError {
    let message = e.to_string();
    if is_transient(&e) {
        SinkError::Retryable {
            sink: "clickhouse".into(),
            message,
        }
    } else {
        SinkError::Permanent {
            sink: "clickhouse".into(),
            message,
        }
    }
}

/// Maps a read error.
fn store_error(e: clickhouse::error::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_errors_by_code() {
        let e = |m: &str| clickhouse::error::Error::BadResponse(m.into());
        assert!(is_transient(&e(
            "Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)"
        )));
        assert!(is_transient(&e(
            "Code: 241. DB::Exception: Memory limit (MEMORY_LIMIT_EXCEEDED)"
        )));
        assert!(!is_transient(&e(
            "Code: 60. DB::Exception: Unknown table (UNKNOWN_TABLE)"
        )));
        assert!(!is_transient(&e(
            "Code: 27. DB::Exception: Cannot parse input"
        )));
        assert!(is_transient(&e("503 Service Unavailable")));
        assert!(!is_transient(&e("400 Bad Request")));
        assert!(is_transient(&clickhouse::error::Error::TimedOut));
        assert!(
            sink_error(e("Code: 62. Syntax error"))
                .to_string()
                .contains("rejected")
        );
    }
}
