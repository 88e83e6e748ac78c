//! Loading: defaults → TOML file → `XRAY_` environment.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::{Config, ValidationError};

/// Environment variables with this prefix configure X-Ray.
pub(crate) const ENV_PREFIX: &str = "XRAY_";

/// Variables under the prefix that are not configuration keys. Every key
/// lives in a section, so a configuration variable always has a `__`
/// (`XRAY_API__ADDR`); names without one (`XRAY_CONFIG`, the file path;
/// `XRAY_BIN` in scripts) are left alone, and so are `XRAY_TEST_*`, used by
/// the test suite.
fn is_reserved_env(key: &str) -> bool {
    // figment hands the key over after `split`, so `__` already reads `.`
    let k = key.to_ascii_lowercase();
    !(k.contains("__") || k.contains('.')) || k.starts_with("test_")
}

/// Secret keys whose environment values are taken verbatim. Figment parses
/// other `XRAY_` values (`12345` becomes a number, `true` a bool, `[a]` an
/// array, `"x"` loses its quotes), which would reject or silently change a
/// password or token that happens to look like one.
const VERBATIM_ENV_KEYS: &[&str] = &[
    "storage.clickhouse.password",
    "storage.postgres.url",
    "sinks.postgres.url",
    "auth.admin_token",
];

/// The dotted config key of an `XRAY_` variable name (`XRAY_AUTH__ADMIN_TOKEN`
/// → `auth.admin_token`), or `None` for other variables.
fn env_key(name: &str) -> Option<String> {
    let prefix = name.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    Some(
        name[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", "."),
    )
}

fn is_verbatim_key(dotted: &str) -> bool {
    let k = dotted.to_ascii_lowercase().replace("__", ".");
    VERBATIM_ENV_KEYS.contains(&k.as_str())
}

/// Sets the secret keys of [`VERBATIM_ENV_KEYS`] from the environment, as
/// the exact text of each variable.
fn apply_verbatim_env(config: &mut Config, vars: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in vars {
        let Some(key) = env_key(&name) else { continue };
        match key.as_str() {
            "storage.clickhouse.password" => config.storage.clickhouse.password = value,
            "storage.postgres.url" => config.storage.postgres.url = value,
            "sinks.postgres.url" => {
                config
                    .sinks
                    .postgres
                    .get_or_insert_with(Default::default)
                    .url = value;
            }
            "auth.admin_token" => config.auth.admin_token = value,
            _ => {}
        }
    }
}

/// Where to load from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// An explicit config file (`--config`); it must exist.
    pub file: Option<PathBuf>,
    /// Read `./xray.toml` when no explicit file is given and it exists.
    pub use_default_file: bool,
    /// Overlay `XRAY_` environment variables.
    pub use_env: bool,
}

impl LoadOptions {
    /// What the binary uses: explicit file or `./xray.toml`, then the environment.
    pub fn standard(file: Option<PathBuf>) -> Self {
        Self {
            file,
            use_default_file: true,
            use_env: true,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The explicit config file does not exist.
    #[error("config file {0} not found")]
    FileNotFound(PathBuf),
    /// A key is misspelt, has the wrong type, or the file is not valid TOML.
    #[error("{0}")]
    Parse(String),
    /// The values parse but are not acceptable.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ValidationError>),
}

/// Loads and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    let file = match &opts.file {
        Some(f) if !f.exists() => return Err(ConfigError::FileNotFound(f.clone())),
        Some(f) => Some(f.clone()),
        None if opts.use_default_file && Path::new("xray.toml").exists() => {
            Some("xray.toml".into())
        }
        None => None,
    };
    if let Some(f) = &file {
        fig = fig.merge(Toml::file_exact(f));
    }
    if opts.use_env {
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .filter(|k| !is_reserved_env(k.as_str()) && !is_verbatim_key(k.as_str())),
        );
    }
    let mut config: Config = fig.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
    if opts.use_env {
        apply_verbatim_env(
            &mut config,
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
    }
    config.validate().map_err(ConfigError::Invalid)?;
    Ok(config)
}

/// Where a value came from, for messages: the environment variable or the file.
fn source_of(meta: Option<&figment::Metadata>, key: &str) -> String {
    match meta {
        Some(m) if m.name.contains("environment") => {
            format!(
                " (environment variable {ENV_PREFIX}{})",
                key.to_ascii_uppercase().replace('.', "__")
            )
        }
        Some(m) => m
            .source
            .as_ref()
            .map(|src| format!(" (in {src})"))
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// Turns figment's errors into lines naming the key and where it came from.
fn describe(err: figment::Error) -> String {
    use figment::error::Kind;
    let mut lines = Vec::new();
    for e in err {
        let key = e.path.join(".");
        let source = source_of(e.metadata.as_ref(), &key);
        let line = match &e.kind {
            Kind::UnknownField(field, expected) => {
                // figment's path already ends with the unknown field
                let full = if key.is_empty() {
                    field.as_str()
                } else {
                    key.as_str()
                };
                format!(
                    "{full}: unknown key{source}; expected one of: {}",
                    expected.join(", ")
                )
            }
            Kind::InvalidType(actual, expected) => {
                format!("{key}: expected {expected}, found {actual}{source}")
            }
            Kind::UnknownVariant(v, expected) => {
                format!(
                    "{key}: unknown value \"{v}\"{source}; expected one of: {}",
                    expected.join(", ")
                )
            }
            other if key.is_empty() => format!("{other}{source}"),
            other => format!("{key}: {other}{source}"),
        };
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PostgresConfig;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_from_the_environment_are_taken_verbatim() {
        let mut c = Config::default();
        apply_verbatim_env(
            &mut c,
            vars(&[
                ("XRAY_STORAGE__CLICKHOUSE__PASSWORD", "12345"),
                ("XRAY_AUTH__ADMIN_TOKEN", "\"true\""),
                ("XRAY_STORAGE__POSTGRES__URL", "postgres://u:[p]@h/db"),
                ("XRAY_API__ADDR", "0.0.0.0:1"),
                ("HOME", "/root"),
            ]),
        );
        assert_eq!(c.storage.clickhouse.password, "12345");
        assert_eq!(c.auth.admin_token, "\"true\"");
        assert_eq!(c.storage.postgres.url, "postgres://u:[p]@h/db");
        assert_eq!(
            c.api.addr,
            Config::default().api.addr,
            "only secret keys are handled here"
        );
        assert_eq!(c.sinks.postgres, None);
    }

    #[test]
    fn a_sink_url_alone_enables_the_postgres_sink() {
        let mut c = Config::default();
        apply_verbatim_env(
            &mut c,
            vars(&[("xray_sinks__postgres__url", "postgres://a@b/c")]),
        );
        let sink = c.sinks.postgres.expect("sink enabled");
        assert_eq!(sink.url, "postgres://a@b/c");
        assert_eq!(
            sink.max_connections,
            PostgresConfig::default().max_connections
        );
    }

    #[test]
    fn verbatim_keys_are_recognised_in_either_spelling() {
        assert!(is_verbatim_key("storage.clickhouse.password"));
        assert!(is_verbatim_key("STORAGE__CLICKHOUSE__PASSWORD"));
        assert!(!is_verbatim_key("storage.clickhouse.user"));
        assert_eq!(
            env_key("XRAY_AUTH__ADMIN_TOKEN").as_deref(),
            Some("auth.admin_token")
        );
        assert_eq!(env_key("OTHER"), None);
    }
}
