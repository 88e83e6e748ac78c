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
