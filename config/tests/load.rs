//! Loading from files and the environment, as the binary does.

// figment::Jail closures must return figment::Error, which is large.
#![allow(clippy::result_large_err)]

use std::io::Write;

use figment::Jail;
use xray_config::{BackendKind, Config, ConfigError, LoadOptions, load};

fn file_only(path: &str) -> LoadOptions {
    LoadOptions {
        file: Some(path.into()),
        use_default_file: false,
        use_env: false,
    }
}

#[test]
fn example_file_parses_and_equals_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/xray.example.toml");
    let loaded = load(&file_only(path)).expect("example parses");
    assert_eq!(loaded, Config::default());
}

#[test]
fn example_file_documents_every_key() {
    // Every key of the defaults appears in the example (commented-out
    // optional tables included).
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/xray.example.toml")).unwrap();
    let defaults: toml::Value = toml::from_str(&Config::default().to_toml()).unwrap();
    fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    keys(&p, v, out)
                } else {
                    out.push(p)
                }
            }
        }
    }
    let mut all = Vec::new();
    keys("", &defaults, &mut all);
    for key in all {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            example.contains(&format!("{leaf} = ")),
            "xray.example.toml does not document {key}"
        );
    }
    assert!(example.contains("[sinks.postgres]"));
}

#[test]
fn env_overrides_file_and_nests_with_double_underscore() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "xray.toml",
            "[api]\naddr = \"127.0.0.1:7000\"\n[storage]\nbackend = \"postgres\"\n",
        )?;
        jail.set_env("XRAY_API__ADDR", "127.0.0.1:9999");
        jail.set_env("XRAY_STORAGE__CLICKHOUSE__TTL_DAYS", "7");
        jail.set_env("XRAY_AUTH__REQUIRED", "true");
        jail.set_env("XRAY_TEST_CLICKHOUSE_URL", "http://ignored");
        jail.set_env("XRAY_CONFIG", "ignored.toml");
        let c = load(&LoadOptions::standard(None)).map_err(|e| e.to_string())?;
        assert_eq!(c.api.addr, "127.0.0.1:9999");
        assert_eq!(c.storage.backend, BackendKind::Postgres);
        assert_eq!(c.storage.clickhouse.ttl_days, 7);
        assert!(c.auth.required);
        Ok(())
    });
}

#[test]
fn misspelt_key_in_file_is_named() {
    let mut f = tempfile_in_target("wrongkey.toml");
    writeln!(f.1, "[api]\nadr = \"127.0.0.1:1\"").unwrap();
    let err = load(&file_only(&f.0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse(_)));
    assert!(msg.contains("api.adr: unknown key"), "{msg}");
    assert!(msg.contains("wrongkey.toml"), "{msg}");
}

#[test]
fn misspelt_key_in_env_is_named_with_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("XRAY_STORAGE__BACKND", "sqlite");
        let msg = load(&LoadOptions::standard(None)).unwrap_err().to_string();
        assert!(msg.contains("storage.backnd: unknown key"), "{msg}");
        assert!(msg.contains("XRAY_STORAGE__BACKND"), "{msg}");
        Ok(())
    });
}

#[test]
fn unknown_backend_names_the_key_and_choices() {
    Jail::expect_with(|jail| {
        jail.set_env("XRAY_STORAGE__BACKEND", "clickhuose");
        let msg = load(&LoadOptions::standard(None)).unwrap_err().to_string();
        assert!(msg.contains("storage.backend"), "{msg}");
        assert!(msg.contains("clickhuose"), "{msg}");
        assert!(
            msg.contains("sqlite") && msg.contains("clickhouse") && msg.contains("postgres"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn invalid_values_are_reported_together() {
    Jail::expect_with(|jail| {
        jail.set_env("XRAY_API__ADDR", "nowhere");
        jail.set_env("XRAY_PIPELINE__BATCH_MAX_ROWS", "0");
        let msg = load(&LoadOptions::standard(None)).unwrap_err().to_string();
        assert!(msg.contains("api.addr: \"nowhere\""), "{msg}");
        assert!(
            msg.contains("pipeline.batch_max_rows: must be at least 1"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn missing_explicit_file_is_an_error() {
    let err = load(&file_only("/definitely/not/here.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file /definitely/not/here.toml not found"
    );
}

fn tempfile_in_target(name: &str) -> (String, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("xray-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    (path.to_string_lossy().into_owned(), f)
}

#[test]
fn configuration_doc_lists_every_key_with_its_env_name() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let defaults: toml::Value = toml::from_str(&Config::default().to_toml()).unwrap();
    fn walk(prefix: &str, v: &toml::Value, doc: &str) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    walk(&p, v, doc);
                } else {
                    let env = format!("XRAY_{}", p.to_ascii_uppercase().replace('.', "__"));
                    assert!(
                        doc.contains(&format!("`{env}`")),
                        "docs/configuration.md lacks {p} ({env})"
                    );
                }
            }
        }
    }
    walk("", &defaults, &doc);
}
