//! Test support: a ClickHouse backend in a database of its own on the server
//! of `XRAY_TEST_CLICKHOUSE_URL` (the dev server of `dev/clickhouse-server/`
//! or a real ClickHouse), dropped afterwards, so tests run in parallel.

use xray_config::ClickhouseConfig;

use super::ClickhouseBackend;

/// Environment variable naming the ClickHouse server tests use.
pub const ENV: &str = "XRAY_TEST_CLICKHOUSE_URL";

/// A migrated backend in a fresh database, dropped when this value is.
#[derive(Debug)]
pub struct IsolatedClickhouse {
    /// The backend.
    pub backend: ClickhouseBackend,
    /// Its configuration (URL and the fresh database).
    pub config: ClickhouseConfig,
}

/// The configuration of a fresh database on the server of
/// `XRAY_TEST_CLICKHOUSE_URL` (not created yet); `None` when unset.
///
/// `ttl_days` is 0 (keep forever): test fixtures use fixed timestamps, and
/// ClickHouse drops rows older than the TTL as soon as they are inserted.
pub fn config_from_env() -> Option<ClickhouseConfig> {
    let url = std::env::var(ENV).ok().filter(|u| !u.trim().is_empty())?;
    Some(ClickhouseConfig {
        url,
        database: format!("xray_test_{}", crate::testing_support::random_suffix()),
        ttl_days: 0,
        ..ClickhouseConfig::default()
    })
}

/// A fresh, migrated database; `None` when `XRAY_TEST_CLICKHOUSE_URL` is
/// unset. Panics when the server is unusable.
pub async fn isolated() -> Option<IsolatedClickhouse> {
    Some(isolated_with(config_from_env()?).await)
}

/// Like [`isolated`], but fails the calling test when the variable is unset.
pub async fn require() -> IsolatedClickhouse {
    match isolated().await {
        Some(db) => db,
        None => panic!(
            "{ENV} is not set: run the tests through dev/test.sh (it starts the ClickHouse \
             dev server), or export {ENV}=$(dev/clickhouse-server/start.sh)"
        ),
    }
}

/// A migrated backend for `config` (whose database is dropped afterwards).
pub async fn isolated_with(config: ClickhouseConfig) -> IsolatedClickhouse {
    let backend = ClickhouseBackend::new(&config)
        .unwrap_or_else(|e| panic!("bad clickhouse test configuration: {e}"));
    backend
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating clickhouse test database failed: {e}"));
    IsolatedClickhouse { backend, config }
}

impl Drop for IsolatedClickhouse {
    fn drop(&mut self) {
        // A new client: the backend's pooled connections belong to the test's
        // runtime, which is blocked in this drop.
        let admin = clickhouse::Client::default()
            .with_url(self.config.url.trim_end_matches('/'))
            .with_user(&self.config.user)
            .with_password(&self.config.password);
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.backend.database());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(admin.query_raw(&sql).execute()).ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            tracing::warn!(
                database = self.backend.database(),
                "could not drop the clickhouse test database"
            );
        }
    }
}
