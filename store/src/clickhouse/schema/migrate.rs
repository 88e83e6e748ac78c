//! Applies the rendered `migrations/clickhouse/*.sql` templates, forward only.
//!
//! ClickHouse has no transactions or locks, so safety comes from the
//! statements themselves: every one is idempotent (`CREATE … IF NOT EXISTS`,
//! later `ADD COLUMN IF NOT EXISTS`), and a run re-applies a migration whose
//! `schema_migrations` row is missing. Two replicas migrating at once both
//! run the same idempotent statements and both record the version;
//! `schema_migrations` is a ReplacingMergeTree, reads use `DISTINCT`. No
//! statement ever drops or rewrites data.

use clickhouse::Client;

use super::{MIGRATIONS, SchemaOptions};
use crate::StoreError;
use crate::clickhouse::{error_code, store_error};

/// Tracking table, rendered like the migrations.
const TRACKING: &str = "
CREATE TABLE IF NOT EXISTS ${db}.${local:schema_migrations} ${on_cluster}
(
    version    UInt32,
    name       String,
    applied_at DateTime64(9)
)
ENGINE = ${ReplacingMergeTree}(applied_at)
ORDER BY version;

DISTRIBUTED schema_migrations BY version;
";

/// Error codes meaning "someone else just created it": a concurrent
/// `CREATE … IF NOT EXISTS` can lose the race and report them.
const ALREADY_EXISTS: &[u32] = &[
    57,  // TABLE_ALREADY_EXISTS
    82,  // DATABASE_ALREADY_EXISTS
    253, // REPLICA_ALREADY_EXISTS
];

async fn run(client: &Client, sql: &str) -> Result<(), StoreError> {
    match client.query_raw(sql).execute().await {
        Ok(()) => Ok(()),
        Err(clickhouse::error::Error::BadResponse(m))
            if error_code(&m).is_some_and(|c| ALREADY_EXISTS.contains(&c)) =>
        {
            Ok(())
        }
        Err(e) => Err(match store_error(e) {
            StoreError::Backend(m) => StoreError::Backend(format!(
                "clickhouse migration statement failed: {m}\nstatement: {sql}"
            )),
            other => other,
        }),
    }
}

pub(crate) async fn migrate(admin: &Client, opts: &SchemaOptions) -> Result<Vec<u32>, StoreError> {
    let db = opts.db();
    run(
        admin,
        &format!("CREATE DATABASE IF NOT EXISTS {db} {}", opts.on_cluster()),
    )
    .await?;
    for stmt in opts.render(TRACKING)? {
        run(admin, &stmt).await?;
    }
    let done: Vec<u32> = admin
        .query_raw(&format!(
            "SELECT DISTINCT version FROM {db}.`schema_migrations` ORDER BY version"
        ))
        .fetch_all()
        .await
        .map_err(store_error)?;
    let mut applied = Vec::new();
    for (version, name, template) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        // Some migrations copy data (0005 fills trace_rows) and may take
        // minutes on a large database: say so before, not only after.
        tracing::info!(
            version,
            name,
            database = opts.database(),
            "applying clickhouse migration"
        );
        for stmt in opts.render(template)? {
            run(admin, &stmt).await?;
        }
        admin
            .query_raw(&format!(
                "INSERT INTO {db}.`schema_migrations` (version, name, applied_at) \
                 SELECT {{version:UInt32}}, {{name:String}}, now64(9)"
            ))
            .param("version", version)
            .param("name", name)
            .execute()
            .await
            .map_err(store_error)?;
        tracing::info!(
            version,
            name,
            database = opts.database(),
            "clickhouse migration applied"
        );
        applied.push(*version);
    }
    Ok(applied)
}
