//! Opening the configured primary store.

use std::sync::Arc;

use xray_config::{BackendKind, StorageConfig};

use crate::sqlite::SqliteBackend;
use crate::{SharedBackend, StoreError};

/// Opens the primary store named by `storage.backend`, applying migrations
/// where the configuration asks for it.
pub async fn open(config: &StorageConfig) -> Result<SharedBackend, StoreError> {
    match config.backend {
        BackendKind::Sqlite => Ok(Arc::new(SqliteBackend::open(&config.sqlite.path).await?)),
        other => Err(StoreError::InvalidArgument(format!(
            "storage.backend: \"{}\" is not available in this build",
            other.as_str()
        ))),
    }
}

/// A one-line description of the configured store for start-up logs
/// (no secrets).
pub fn describe(config: &StorageConfig) -> String {
    match config.backend {
        BackendKind::Sqlite => format!("sqlite at {}", config.sqlite.path),
        BackendKind::Clickhouse => {
            format!(
                "clickhouse at {} (database {})",
                config.clickhouse.url, config.clickhouse.database
            )
        }
        BackendKind::Postgres => format!(
            "postgres at {}",
            xray_config::mask_url_password(&config.postgres.url)
        ),
    }
}

/// Applies the migrations of the configured primary store (what
/// `xray migrate` runs), whatever `migrate_on_start` says.
pub async fn migrate(config: &StorageConfig) -> Result<(), StoreError> {
    match config.backend {
        BackendKind::Sqlite => {
            // opening applies pending migrations
            SqliteBackend::open(&config.sqlite.path).await?;
            Ok(())
        }
        other => Err(StoreError::InvalidArgument(format!(
            "storage.backend: \"{}\" is not available in this build",
            other.as_str()
        ))),
    }
}

/// Opens the extra sinks of `[sinks]`, each receiving every batch next to the
/// primary store.
pub async fn open_extra_sinks(
    config: &xray_config::SinksConfig,
) -> Result<Vec<Arc<dyn crate::Sink>>, StoreError> {
    let sinks: Vec<Arc<dyn crate::Sink>> = Vec::new();
    if config.postgres.is_some() {
        return Err(StoreError::InvalidArgument(
            "sinks.postgres: not available in this build".into(),
        ));
    }
    Ok(sinks)
}
