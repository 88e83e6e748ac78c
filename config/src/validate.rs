//! Pure validation of a parsed [`Config`].

use std::net::SocketAddr;

use crate::{BackendKind, Config};

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ValidationError {
    /// Dotted key, e.g. `storage.clickhouse.url`.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

/// Longest allowed `auth.cache_ttl_ms`: revocation must reach every replica
/// within 5 s.
const MAX_AUTH_CACHE_TTL_MS: u64 = 5000;

fn err(key: &str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        key: key.into(),
        message: message.into(),
    }
}

fn check_addr(errors: &mut Vec<ValidationError>, key: &str, value: &str) {
    if value.parse::<SocketAddr>().is_err() {
        errors.push(err(
            key,
            format!("\"{value}\" is not an address like 127.0.0.1:8080 or [::]:8080"),
        ));
    }
}

fn check_url(errors: &mut Vec<ValidationError>, key: &str, value: &str, schemes: &[&str]) {
    let ok = schemes.iter().any(|s| {
        value
            .strip_prefix(s)
            .and_then(|r| r.strip_prefix("://"))
            .is_some_and(|r| !r.is_empty())
    });
    if !ok {
        errors.push(err(
            key,
            format!(
                "\"{value}\" is not a URL starting with {}://",
                schemes.join(":// or ")
            ),
        ));
    }
}

impl Config {
    /// Checks every value; returns all problems, each naming its key.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        check_addr(
            &mut errors,
            "receivers.otlp.grpc_addr",
            &self.receivers.otlp.grpc_addr,
        );
        check_addr(
            &mut errors,
            "receivers.otlp.http_addr",
            &self.receivers.otlp.http_addr,
        );
        check_addr(&mut errors, "api.addr", &self.api.addr);
        if self.receivers.otlp.max_message_bytes < 1024 {
            errors.push(err(
                "receivers.otlp.max_message_bytes",
                "must be at least 1024",
            ));
        }
        match self.storage.backend {
            BackendKind::Sqlite => {
                if self.storage.sqlite.path.trim().is_empty() {
                    errors.push(err("storage.sqlite.path", "must not be empty"));
                }
            }
            BackendKind::Clickhouse => {
                let ch = &self.storage.clickhouse;
                check_url(
                    &mut errors,
                    "storage.clickhouse.url",
                    &ch.url,
                    &["http", "https"],
                );
                if ch.database.is_empty()
                    || !ch
                        .database
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    errors.push(err(
                        "storage.clickhouse.database",
                        format!("\"{}\" must be letters, digits and _", ch.database),
                    ));
                }
            }
            BackendKind::Postgres => {
                check_url(
                    &mut errors,
                    "storage.postgres.url",
                    &self.storage.postgres.url,
                    &["postgres", "postgresql"],
                );
            }
        }
        if self.storage.postgres.max_connections == 0 {
            errors.push(err(
                "storage.postgres.max_connections",
                "must be at least 1",
            ));
        }
        if let Some(pg) = &self.sinks.postgres {
            check_url(
                &mut errors,
                "sinks.postgres.url",
                &pg.url,
                &["postgres", "postgresql"],
            );
        }
        let p = &self.pipeline;
        if p.batch_max_rows == 0 {
            errors.push(err("pipeline.batch_max_rows", "must be at least 1"));
        }
        if p.flush_interval_ms == 0 {
            errors.push(err("pipeline.flush_interval_ms", "must be at least 1"));
        }
        if p.write_timeout_ms == 0 {
            errors.push(err("pipeline.write_timeout_ms", "must be at least 1"));
        }
        if p.max_queue_bytes < 1024 * 1024 {
            errors.push(err(
                "pipeline.max_queue_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if p.spool_enabled && p.spool_max_bytes < 16 * 1024 * 1024 {
            errors.push(err(
                "pipeline.spool_max_bytes",
                "must be at least 16777216 (16 MiB)",
            ));
        }
        if p.spool_fsync_interval_ms == 0 {
            errors.push(err(
                "pipeline.spool_fsync_interval_ms",
                "must be at least 1",
            ));
        }
        if p.retry_initial_backoff_ms == 0 {
            errors.push(err(
                "pipeline.retry_initial_backoff_ms",
                "must be at least 1",
            ));
        }
        if p.retry_max_backoff_ms < p.retry_initial_backoff_ms {
            errors.push(err(
                "pipeline.retry_max_backoff_ms",
                "must be at least pipeline.retry_initial_backoff_ms",
            ));
        }
        // `auth.required` without an admin token is allowed (keys can be
        // created with `xray apps`), but a short token is not.
        if !self.auth.admin_token.is_empty() && self.auth.admin_token.len() < 16 {
            errors.push(err(
                "auth.admin_token",
                "must be at least 16 characters (or empty to disable admin access)",
            ));
        }
        if self.auth.cache_ttl_ms > MAX_AUTH_CACHE_TTL_MS {
            errors.push(err(
                "auth.cache_ttl_ms",
                format!(
                    "{} is too long: revoked keys must stop working within 5 s, so at most {MAX_AUTH_CACHE_TTL_MS}",
                    self.auth.cache_ttl_ms
                ),
            ));
        }
        let rl = &self.auth.rate_limit;
        if !rl.requests_per_sec.is_finite() || rl.requests_per_sec < 0.0 {
            errors.push(err(
                "auth.rate_limit.requests_per_sec",
                format!(
                    "{} must be a number of at least 0 (0 disables the limit)",
                    rl.requests_per_sec
                ),
            ));
        } else if rl.requests_per_sec > 0.0 && rl.burst == 0 {
            errors.push(err(
                "auth.rate_limit.burst",
                "must be at least 1 when auth.rate_limit.requests_per_sec is set",
            ));
        }
        if self.log.level.trim().is_empty() {
            errors.push(err("log.level", "must not be empty (e.g. \"info\")"));
        }
        crate::processors::validate(&self.processors, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = Config::default();
        c.api.addr = "localhost".into();
        c.storage.backend = BackendKind::Clickhouse;
        c.storage.clickhouse.url = "tcp://x".into();
        c.pipeline.batch_max_rows = 0;
        let errs = c.validate().unwrap_err();
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "api.addr",
                "storage.clickhouse.url",
                "pipeline.batch_max_rows"
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            "api.addr: \"localhost\" is not an address like 127.0.0.1:8080 or [::]:8080"
        );
    }

    #[test]
    fn auth_cache_and_rate_limit_are_checked() {
        let mut c = Config::default();
        c.auth.cache_ttl_ms = 5000;
        c.auth.rate_limit.requests_per_sec = 2.5;
        c.validate().unwrap();
        c.auth.cache_ttl_ms = 5001;
        c.auth.rate_limit.burst = 0;
        let keys: Vec<_> = c
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["auth.cache_ttl_ms", "auth.rate_limit.burst"]);
        c.auth.cache_ttl_ms = 0;
        c.auth.rate_limit.requests_per_sec = -1.0;
        let keys: Vec<_> = c
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["auth.rate_limit.requests_per_sec"]);
    }
}
