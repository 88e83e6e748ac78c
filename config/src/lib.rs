//! X-Ray configuration.
//!
//! Sources, later ones winning: built-in defaults → a TOML file
//! (`--config PATH`, else `./xray.toml` when present) → environment variables
//! `XRAY_<SECTION>__<KEY>` (double underscore nests, e.g.
//! `XRAY_STORAGE__BACKEND=clickhouse`). Unknown keys are errors that name the
//! key. [`Config::validate`] is pure and reports every problem it finds.
//!
//! `config/xray.example.toml` documents every key with its default.

mod load;
mod processors;
mod validate;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, LoadOptions, load};
pub use processors::{
    DEFAULT_DETECTORS, DETECTORS, ForwardConfig, ForwardProtocol, LimitsConfig, ProcessorConfig,
    RedactAction, RedactConfig, RedactRule, SampleConfig,
};
pub use validate::ValidationError;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Span receivers.
    pub receivers: ReceiversConfig,
    /// The dashboard API listener.
    pub api: ApiConfig,
    /// The primary store.
    pub storage: StorageConfig,
    /// Extra sinks that receive every batch next to the primary store.
    pub sinks: SinksConfig,
    /// Batching between the receivers and the sinks.
    pub pipeline: PipelineConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// `[limits]`: size caps applied to every mapped row, first in the chain.
    pub limits: LimitsConfig,
    /// `[[processors]]`: the processor chain, in order (empty by default;
    /// left out of the TOML output when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<ProcessorConfig>,
}

/// `[receivers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// `[receivers.otlp]`.
    pub otlp: OtlpReceiverConfig,
}

/// `[receivers.otlp]`: OTLP over gRPC and HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// Address of the OTLP/gRPC listener.
    pub grpc_addr: String,
    /// Address of the OTLP/HTTP listener (also serves the JSON compatibility endpoints).
    pub http_addr: String,
    /// Largest accepted request after decompression, in bytes.
    pub max_message_bytes: u64,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:4317".into(),
            http_addr: "127.0.0.1:4318".into(),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[api]`: the dashboard API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the HTTP listener.
    pub addr: String,
    /// Origins allowed by CORS; empty disables CORS headers, `["*"]` allows any.
    pub cors_origins: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            cors_origins: Vec::new(),
        }
    }
}

/// Which backend is the primary store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Embedded SQLite file (default).
    #[default]
    Sqlite,
    /// ClickHouse server (production).
    Clickhouse,
    /// PostgreSQL server.
    Postgres,
}

impl BackendKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Clickhouse => "clickhouse",
            BackendKind::Postgres => "postgres",
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite`, `clickhouse` or `postgres`.
    pub backend: BackendKind,
    /// `[storage.sqlite]`.
    pub sqlite: SqliteConfig,
    /// `[storage.clickhouse]`.
    pub clickhouse: ClickhouseConfig,
    /// `[storage.postgres]`.
    pub postgres: PostgresConfig,
}

/// `[storage.sqlite]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file; its directory is created when missing.
    pub path: String,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: "xray-data/xray.db".into(),
        }
    }
}

/// `[storage.clickhouse]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickhouseConfig {
    /// HTTP URL of the ClickHouse server.
    pub url: String,
    /// Database holding X-Ray's tables (created by the migrations).
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (secret).
    pub password: String,
    /// Days of data kept (TTL on day partitions); 0 keeps data forever.
    pub ttl_days: u32,
    /// Cluster name: when set, the replicated schema is created `ON CLUSTER`.
    pub cluster: String,
    /// Apply migrations when the process starts.
    pub migrate_on_start: bool,
    /// Use ClickHouse's server-side async inserts (off: X-Ray batches itself).
    pub async_insert: bool,
}

impl Default for ClickhouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "xray".into(),
            user: "default".into(),
            password: String::new(),
            ttl_days: 30,
            cluster: String::new(),
            migrate_on_start: true,
            async_insert: false,
        }
    }
}

/// `[storage.postgres]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL (may hold a password: secret).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// Apply migrations when the process starts.
    pub migrate_on_start: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/xray".into(),
            max_connections: 8,
            migrate_on_start: true,
        }
    }
}

/// `[sinks]`: extra sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// `[sinks.postgres]`: also write every batch to this Postgres database.
    pub postgres: Option<PostgresConfig>,
}

/// `[pipeline]`: batching between receivers and sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Flush a batch once it holds this many rows.
    pub batch_max_rows: u32,
    /// Flush a batch at the latest this long after its first row, in ms.
    pub flush_interval_ms: u64,
    /// Timeout of one sink write, in ms.
    pub write_timeout_ms: u64,
    /// On SIGINT/SIGTERM, time allowed to flush before exiting, in ms.
    pub shutdown_timeout_ms: u64,
    /// Estimated in-memory size of queued batches above which receivers
    /// answer "retry later" (HTTP 429, gRPC `RESOURCE_EXHAUSTED`), in bytes.
    pub max_queue_bytes: u64,
    /// Keep accepted batches in an on-disk spool until the store has them.
    pub spool_enabled: bool,
    /// Directory of the spool; empty: the SQLite file's path plus `-spool`
    /// (`xray-data/xray.db-spool` by default, beside SQLite's own `-wal`
    /// file, so each database has its own spool), `xray-data/spool` in the
    /// working directory for the other backends. See [`Config::spool_dir`].
    pub spool_dir: String,
    /// Largest size of the spool on disk, in bytes; a full spool answers
    /// "retry later".
    pub spool_max_bytes: u64,
    /// When spool writes reach the disk: `always` (fsync before each
    /// acknowledgement, batched across concurrent requests), `interval`
    /// (every `spool_fsync_interval_ms`) or `never` (left to the OS).
    pub spool_fsync: SpoolFsync,
    /// Time between fsyncs with `spool_fsync = "interval"`, in ms.
    pub spool_fsync_interval_ms: u64,
    /// First delay before retrying a failed store write, in ms.
    pub retry_initial_backoff_ms: u64,
    /// Longest delay between retries of a failed store write, in ms.
    pub retry_max_backoff_ms: u64,
}

/// `pipeline.spool_fsync`: when spooled batches are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpoolFsync {
    /// fsync before acknowledging (survives power loss).
    #[default]
    Always,
    /// fsync every `pipeline.spool_fsync_interval_ms` (survives a process
    /// crash; a power loss may lose that interval).
    Interval,
    /// Never fsync explicitly (survives a process crash only).
    Never,
}

impl Config {
    /// The spool directory `pipeline.spool_dir` resolves to, or `None` when
    /// `pipeline.spool_enabled` is off.
    pub fn spool_dir(&self) -> Option<std::path::PathBuf> {
        if !self.pipeline.spool_enabled {
            return None;
        }
        if !self.pipeline.spool_dir.is_empty() {
            return Some(self.pipeline.spool_dir.clone().into());
        }
        Some(match self.storage.backend {
            BackendKind::Sqlite => format!("{}-spool", self.storage.sqlite.path).into(),
            _ => std::path::PathBuf::from("xray-data").join("spool"),
        })
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_rows: 20_000,
            flush_interval_ms: 1000,
            write_timeout_ms: 10_000,
            shutdown_timeout_ms: 4000,
            max_queue_bytes: 256 * 1024 * 1024,
            spool_enabled: true,
            spool_dir: String::new(),
            spool_max_bytes: 4 * 1024 * 1024 * 1024,
            spool_fsync: SpoolFsync::Always,
            spool_fsync_interval_ms: 200,
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 10_000,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Reject ingest and reads without a valid API key.
    pub required: bool,
    /// Token that manages apps and reads every app (secret); empty disables admin access.
    pub admin_token: String,
    /// How long a key lookup is cached, in ms (0 disables the cache). A
    /// revoked key keeps working on other replicas for at most this long;
    /// at most 5000.
    pub cache_ttl_ms: u64,
    /// `[auth.rate_limit]`: per-key request rate limit.
    pub rate_limit: RateLimitConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: false,
            admin_token: String::new(),
            cache_ttl_ms: 2000,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `[auth.rate_limit]`: a token bucket per API key, per process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second allowed for one API key; 0 disables
    /// the limit.
    pub requests_per_sec: f64,
    /// Requests one key may send in a burst above the sustained rate (the
    /// bucket's size); at least 1 when the limit is on.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: 0.0,
            burst: 100,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing` syntax, e.g. `info` or `xray_collector=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

const MASK: &str = "********";

impl Config {
    /// A copy with every secret replaced by a mask (passwords, tokens, and
    /// the password part of URLs), for printing.
    pub fn masked(&self) -> Config {
        let mut c = self.clone();
        if !c.storage.clickhouse.password.is_empty() {
            c.storage.clickhouse.password = MASK.into();
        }
        if !c.auth.admin_token.is_empty() {
            c.auth.admin_token = MASK.into();
        }
        c.storage.postgres.url = mask_url_password(&c.storage.postgres.url);
        if let Some(pg) = c.sinks.postgres.as_mut() {
            pg.url = mask_url_password(&pg.url);
        }
        for p in &mut c.processors {
            match p {
                ProcessorConfig::Redact(r) if !r.hmac_key.is_empty() => r.hmac_key = MASK.into(),
                ProcessorConfig::Forward(f) => {
                    f.headers.values_mut().for_each(|v| *v = MASK.into());
                }
                _ => {}
            }
        }
        c
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serializes to TOML")
    }
}

/// Replaces the password of `scheme://user:password@host/…` with a mask.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:{}{}",
            &url[..scheme_end],
            &userinfo[..colon],
            MASK,
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_dir_belongs_to_its_database() {
        let mut c = Config::default();
        assert_eq!(
            c.spool_dir(),
            Some(std::path::PathBuf::from("xray-data/xray.db-spool"))
        );
        // Two SQLite databases in one folder get two spools.
        c.storage.sqlite.path = "/tmp/x/auth.db".into();
        assert_eq!(
            c.spool_dir(),
            Some(std::path::PathBuf::from("/tmp/x/auth.db-spool"))
        );
        c.storage.backend = BackendKind::Postgres;
        assert_eq!(
            c.spool_dir(),
            Some(std::path::PathBuf::from("xray-data/spool"))
        );
        c.pipeline.spool_dir = "/var/lib/xray/spool".into();
        assert_eq!(
            c.spool_dir(),
            Some(std::path::PathBuf::from("/var/lib/xray/spool"))
        );
        c.pipeline.spool_enabled = false;
        assert_eq!(c.spool_dir(), None);
    }

    #[test]
    fn masks_url_passwords_only() {
        assert_eq!(
            mask_url_password("postgres://u:secret@h:5432/db"),
            "postgres://u:********@h:5432/db"
        );
        assert_eq!(mask_url_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url_password("not a url"), "not a url");
    }

    #[test]
    fn masked_hides_every_secret() {
        let mut c = Config::default();
        c.storage.clickhouse.password = "hunter2".into();
        c.auth.admin_token = "s3cr3t-admin-token-value".into();
        c.sinks.postgres = Some(PostgresConfig {
            url: "postgres://a:b@c/d".into(),
            ..Default::default()
        });
        let text = c.masked().to_toml();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t") && !text.contains(":b@"),
            "{text}"
        );
        assert!(text.contains(MASK));
    }
}
