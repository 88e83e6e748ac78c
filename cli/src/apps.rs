//! `xray apps`: managing apps and API keys on the configured store (any
//! backend), without a running server and without the admin token.
//!
//! - `xray apps create --name NAME` creates an app and its first key;
//! - `xray apps list` shows every app with its keys (ids and prefixes, never
//!   the keys);
//! - `xray apps keys create APP` adds a key to an app;
//! - `xray apps keys revoke KEY_ID` revokes a key.
//!
//! Keys are printed once, when they are created. `--json` prints the same
//! shapes the admin API answers with (`xray_dashboard_api::apps`).

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xray_auth::{AppWithKeys, ManageError};
use xray_config::Config;
use xray_dashboard_api::apps::{AppView, CreatedApp, NewKey, RevokedKey};
use xray_store::SharedBackend;

/// `xray apps …`.
#[derive(Debug, Args)]
pub(crate) struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app and its first API key (the key is printed once).
    Create {
        /// Display name; the app id is derived from it (`Checkout Ranking` → `checkout-ranking`).
        #[arg(long)]
        name: String,
        /// Print the app and its key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every app with its keys (ids and prefixes, never the keys).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage the API keys of an app.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new API key for an app (the key is printed once).
    Create {
        /// App id, as `xray apps list` shows it.
        #[arg(value_name = "APP")]
        app: String,
        /// Print the key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key: every replica refuses it within auth.cache_ttl_ms.
    Revoke {
        /// Key id (`key_…`), as `xray apps list` shows it.
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `xray apps …` on the store of `config`; returns what to print.
pub(crate) async fn run(config: &Config, args: AppsArgs) -> Result<String> {
    let store = open(config).await?;
    let store = store.as_ref();
    match args.command {
        AppsCommand::Create { name, json } => {
            let (app, record, key) = xray_auth::create_app_with_key(store, &name)
                .await
                .map_err(|e| manage_error(e, "create the app"))?;
            let created = CreatedApp::new(&app, &record, key);
            if json {
                return to_json(&created);
            }
            Ok(format!(
                "Created app \"{}\" (id {}).\n{}",
                created.name,
                created.id,
                key_text(&created.key)
            ))
        }
        AppsCommand::List { json } => {
            let apps = xray_auth::list_apps(store)
                .await
                .map_err(|e| manage_error(e, "list the apps"))?;
            if json {
                let views: Vec<AppView> = apps.iter().map(AppView::from).collect();
                return to_json(&views);
            }
            Ok(table(&apps))
        }
        AppsCommand::Keys {
            command: KeysCommand::Create { app, json },
        } => {
            let (record, key) = xray_auth::create_key(store, &app)
                .await
                .map_err(|e| manage_error(e, "create the key"))?;
            let new = NewKey::new(&record, key);
            if json {
                return to_json(&new);
            }
            Ok(format!(
                "Created a key for app \"{}\".\n{}",
                new.app_id,
                key_text(&new)
            ))
        }
        AppsCommand::Keys {
            command: KeysCommand::Revoke { key_id, json },
        } => {
            let revoked = xray_auth::revoke_key(store, &key_id)
                .await
                .map_err(|e| manage_error(e, "revoke the key"))?;
            if !revoked {
                bail!(
                    "no API key with id \"{key_id}\": `xray apps list` shows the key ids (key_…)"
                );
            }
            if json {
                return to_json(&RevokedKey {
                    id: key_id,
                    revoked: true,
                });
            }
            Ok(format!(
                "Revoked key {key_id}. Running servers refuse it within auth.cache_ttl_ms ({} ms).\n",
                config.auth.cache_ttl_ms
            ))
        }
    }
}

async fn open(config: &Config) -> Result<SharedBackend> {
    let what = xray_store::describe(&config.storage);
    xray_store::open(&config.storage)
        .await
        .with_context(|| format!("cannot open the store ({what})"))
}

fn manage_error(e: ManageError, what: &str) -> anyhow::Error {
    match e {
        ManageError::AppNotFound(id) => anyhow::anyhow!(
            "no app with id \"{id}\": `xray apps list` shows the app ids, `xray apps create --name NAME` makes one"
        ),
        ManageError::InvalidName(reason) => anyhow::anyhow!("--name: {reason}"),
        other => anyhow::Error::from(other).context(format!("cannot {what}")),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(v)?))
}

fn key_text(k: &NewKey) -> String {
    format!(
        "API key (shown only this once; X-Ray keeps just its hash, so store it now):\n\n  {}\n\n\
         Key id {} (prefix {}). Send the key as `x-api-key: <key>` or `authorization: Bearer <key>`;\n\
         revoke it with `xray apps keys revoke {}`.\n",
        k.key, k.id, k.prefix, k.id
    )
}

/// Seconds-precision UTC time for the table.
fn short_time(rfc3339: &str) -> String {
    // "2026-11-22T01:06:10.123456789Z" -> "2026-11-22 01:06:10Z"
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t}Z"),
        _ => rfc3339.to_string(),
    }
}

/// One row per key (an app without keys gets one row with `-`).
fn table(apps: &[AppWithKeys]) -> String {
    if apps.is_empty() {
        return "No apps yet: create one with `xray apps create --name NAME`.\n".into();
    }
    let header = ["APP", "NAME", "KEY ID", "PREFIX", "CREATED", "REVOKED"].map(String::from);
    let mut rows = vec![header];
    for a in apps.iter().map(AppView::from) {
        if a.keys.is_empty() {
            rows.push([
                a.id.clone(),
                a.name.clone(),
                "-".into(),
                "-".into(),
                short_time(&a.created_at),
                "-".into(),
            ]);
        }
        for k in &a.keys {
            rows.push([
                a.id.clone(),
                a.name.clone(),
                k.id.clone(),
                format!("{}…", k.prefix),
                short_time(&k.created_at),
                k.revoked_at
                    .as_deref()
                    .map(short_time)
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_model::{ApiKey, App};

    #[test]
    fn table_has_a_row_per_key() {
        let app = |id: &str, name: &str| App {
            id: id.into(),
            name: name.into(),
            created_at_ns: 1_700_000_000_000_000_000,
        };
        let key = |id: &str, app: &str, revoked: Option<i64>| ApiKey {
            id: id.into(),
            app_id: app.into(),
            prefix: "xr_AbCdEf".into(),
            hash: "h".into(),
            scopes: vec![],
            created_at_ns: 1_700_000_060_000_000_000,
            revoked_at_ns: revoked,
        };
        let apps = vec![
            AppWithKeys {
                app: app("shop", "Shop"),
                keys: vec![
                    key("key_1", "shop", None),
                    key("key_2", "shop", Some(1_700_000_120_000_000_000)),
                ],
            },
            AppWithKeys {
                app: app("empty", "Empty App"),
                keys: vec![],
            },
        ];
        assert_eq!(
            table(&apps),
            "\
APP    NAME       KEY ID  PREFIX      CREATED               REVOKED
shop   Shop       key_1   xr_AbCdEf…  2023-11-14 22:14:20Z  -
shop   Shop       key_2   xr_AbCdEf…  2023-11-14 22:14:20Z  2023-11-14 22:15:20Z
empty  Empty App  -       -           2023-11-14 22:13:20Z  -
"
        );
        assert!(table(&[]).starts_with("No apps yet"));
    }
}
