//! Loading: defaults → TOML file → `XRAY_` environment.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::{Config, ValidationError};

/// Environment variables with this prefix configure X-Ray.
pub(crate) const ENV_PREFIX: &str = "XRAY_";

/// Variables under the prefix that are not configuration keys: `XRAY_CONFIG`
/// (the file path) and `XRAY_TEST_*` (used by the test suite).
fn is_reserved_env(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "config" || k.starts_with("test_")
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
                .filter(|k| !is_reserved_env(k.as_str())),
        );
    }
    let config: Config = fig.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
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
