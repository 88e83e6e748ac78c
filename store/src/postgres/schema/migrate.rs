//! Applies the embedded `migrations/postgres/*.sql` files, forward only.
//!
//! The runner takes a session advisory lock on one connection, so concurrent
//! runs (several replicas starting together) apply each migration exactly
//! once; each migration and its `schema_migrations` row commit in one
//! transaction. The connection is closed at the end, which releases the lock
//! even when a migration failed.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::StoreError;
use crate::postgres::store_error;

/// Embedded migrations: `(version, name, sql)`, in order.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "0002_steps_by_span.sql",
        include_str!("../../../../migrations/postgres/0002_steps_by_span.sql"),
    ),
];

/// Advisory lock key: "xray-mig" as big-endian bytes.
const LOCK_KEY: i64 = 0x7872_6179_2d6d_6967;

pub(crate) async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let mut conn = pool.acquire().await.map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    let result = apply_pending(&mut conn).await;
    // Closing the session releases the advisory lock whatever happened above.
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the postgres migration connection failed");
    }
    result
}

async fn apply_pending(conn: &mut sqlx::PgConnection) -> Result<Vec<i64>, StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version       BIGINT NOT NULL PRIMARY KEY,
            name          TEXT   NOT NULL,
            applied_at_ns BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await.map_err(store_error)?;
        sqlx::raw_sql(AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Backend(format!("postgres migration {name} failed: {e}")))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at_ns) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(crate::postgres::now_ns())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        tracing::info!(version, name, "postgres migration applied");
        applied.push(*version);
    }
    Ok(applied)
}
