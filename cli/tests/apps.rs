//! `xray apps` driven through the real binary: on the embedded SQLite store
//! (and the keys it prints then work against `xray serve` with
//! `auth.required = true`), and on Postgres when `XRAY_TEST_POSTGRES_URL`
//! is set. Plus revocation across two server processes over one store.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::Value;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

/// The whole `xray apps` cycle on the store `env` configures.
fn apps_cycle(dir: &Path, env: &[(&str, &str)]) -> (String, String, String) {
    let apps = |args: &[&str]| {
        let mut all = vec!["apps"];
        all.extend_from_slice(args);
        run(&all, env, dir)
    };

    assert!(ok(&apps(&["list"])).starts_with("No apps yet"));
    assert_eq!(json(&apps(&["list", "--json"])), serde_json::json!([]));

    // create: the key is printed once, and the output says so
    let text = ok(&apps(&["create", "--name", "Checkout Ranking"]));
    assert!(
        text.starts_with("Created app \"Checkout Ranking\" (id checkout-ranking)."),
        "{text}"
    );
    assert!(text.contains("shown only this once"), "{text}");
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("xr_"))
        .expect("the key is printed")
        .to_string();
    assert!(xray_auth::is_well_formed_key(&key), "{key}");

    // the same name again gets a suffixed id; --json for scripts
    let second = json(&apps(&["create", "--name", "Checkout Ranking", "--json"]));
    let second_id = second["id"].as_str().unwrap();
    assert!(
        second_id.starts_with("checkout-ranking-") && second_id.len() == 23,
        "{second}"
    );
    assert_eq!(second["key"]["app_id"], second_id);
    assert!(xray_auth::is_well_formed_key(
        second["key"]["key"].as_str().unwrap()
    ));

    // a second key for the first app
    let extra = json(&apps(&["keys", "create", "checkout-ranking", "--json"]));
    assert_eq!(extra["app_id"], "checkout-ranking");
    let extra_id = extra["id"].as_str().unwrap().to_string();
    let extra_key = extra["key"].as_str().unwrap().to_string();
    assert_ne!(extra_key, key);
    let text = ok(&apps(&["keys", "create", second_id]));
    assert!(text.starts_with(&format!("Created a key for app \"{second_id}\".")));

    // list: ids and prefixes, never a key or a hash
    let table = ok(&apps(&["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("APP "), "{table}");
    assert_eq!(lines.len(), 1 + 4, "one row per key:\n{table}");
    assert!(table.contains(&extra_id), "{table}");
    assert!(table.contains(&format!("{}…", &key[..9])), "{table}");
    let listed = json(&apps(&["list", "--json"]));
    for secret in [&key, &extra_key] {
        assert!(!table.contains(secret.as_str()), "{table}");
        assert!(!listed.to_string().contains(secret.as_str()));
        assert!(
            !listed
                .to_string()
                .contains(&xray_auth::hash_key(secret.as_str()))
        );
    }
    assert_eq!(listed[0]["id"], "checkout-ranking");
    assert_eq!(listed[0]["keys"].as_array().unwrap().len(), 2);
    assert!(listed[0]["keys"][1]["revoked_at"].is_null());

    // revoke, and revoking again still succeeds
    let text = ok(&apps(&["keys", "revoke", &extra_id]));
    assert!(
        text.starts_with(&format!("Revoked key {extra_id}.")),
        "{text}"
    );
    let again = json(&apps(&["keys", "revoke", &extra_id, "--json"]));
    assert_eq!(again, serde_json::json!({"id": extra_id, "revoked": true}));
    let listed = json(&apps(&["list", "--json"]));
    let revoked = listed[0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == extra_id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{listed}");

    // errors a user can act on
    let err = fails(&apps(&["keys", "create", "nope"]));
    assert!(
        err.contains("no app with id \"nope\": `xray apps list` shows the app ids"),
        "{err}"
    );
    let err = fails(&apps(&["keys", "revoke", "key_nope"]));
    assert!(
        err.contains("no API key with id \"key_nope\": `xray apps list` shows the key ids"),
        "{err}"
    );
    let err = fails(&apps(&["create", "--name", "  "]));
    assert!(err.contains("--name: the name must not be empty"), "{err}");

    (key, extra_key, extra_id)
}

#[test]
fn apps_on_sqlite_and_the_keys_work_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (key, revoked_key, _) = apps_cycle(dir.path(), &[]);

    // The printed keys work against a server on the same store.
    let server = Server::start(dir.path(), &[("XRAY_AUTH__REQUIRED", "true")]);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let body = otlp_json(trace, "cli-keys");
    let post = |headers: &[(&str, &str)]| {
        http(
            &server.otlp_http,
            "POST",
            "/v1/traces",
            headers,
            Some(("application/json", body.as_bytes())),
        )
        .unwrap()
    };
    let (s, _, b) = post(&[]);
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("Missing API key"), "{b}");
    let (s, _, b) = post(&[("x-api-key", &revoked_key)]);
    assert_eq!(s, 401, "a revoked key is refused: {b}");
    assert!(b.contains("Invalid API key"), "{b}");
    let (s, _, b) = post(&[("x-api-key", &key)]);
    assert_eq!(s, 200, "{b}");

    let bearer = format!("Bearer {key}");
    let detail = wait_for(
        &server.api,
        &format!("/api/v1/executions/{trace}"),
        &[("authorization", &bearer)],
        200,
    );
    let v: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(v["execution"]["app"], "checkout-ranking", "{v}");
    let (s, _, b) = http(&server.api, "GET", "/api/v1/executions", &[], None).unwrap();
    assert_eq!(s, 401, "{b}");
}

#[test]
fn apps_on_postgres() {
    let Ok(base) = std::env::var("XRAY_TEST_POSTGRES_URL") else {
        eprintln!("XRAY_TEST_POSTGRES_URL is not set: skipping (dev/test.sh sets it)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(xray_store::postgres::testing::isolated_at(&base));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("XRAY_STORAGE__BACKEND", "postgres"),
        ("XRAY_STORAGE__POSTGRES__URL", db.url.as_str()),
    ];
    let (key, _, _) = apps_cycle(dir.path(), &env);
    // what the CLI wrote is what the server authenticates with
    let stored = rt
        .block_on(xray_store::Store::api_key_by_hash(
            &db.backend,
            &xray_auth::hash_key(&key),
        ))
        .unwrap()
        .expect("key stored in postgres");
    assert_eq!(stored.app_id, "checkout-ranking");
    drop(db);
}

/// Two processes over one store (`xray dashboard-api` and `xray serve`, as
/// two replicas would be): a key revoked through the admin API of the
/// first is refused by the second, for reads and for ingest, once its
/// cache entry (`auth.cache_ttl_ms`) expires.
fn revocation_across_processes(dir: &Path, store_env: &[(&str, &str)]) {
    const ADMIN: &str = "replica-admin-token-0123456789";
    let out = run(
        &["apps", "create", "--name", "Replicas", "--json"],
        store_env,
        dir,
    );
    let created = json(&out);
    let key = created["key"]["key"].as_str().unwrap().to_string();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    let mut env = store_env.to_vec();
    env.extend([
        ("XRAY_AUTH__REQUIRED", "true"),
        ("XRAY_AUTH__ADMIN_TOKEN", ADMIN),
        ("XRAY_AUTH__CACHE_TTL_MS", "500"),
    ]);
    let api = Server::start_part("dashboard-api", dir, &env);
    let both = Server::start(dir, &env);
    let with_key = [("x-api-key", key.as_str())];
    let body = otlp_json("5b8efff798038103d269b633813fc60c", "replicas");
    let ingest = || {
        http(
            &both.otlp_http,
            "POST",
            "/v1/traces",
            &with_key,
            Some(("application/json", body.as_bytes())),
        )
        .unwrap()
        .0
    };
    for server in [&api, &both] {
        let (s, _, b) = http(&server.api, "GET", "/api/v1/executions", &with_key, None).unwrap();
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(ingest(), 200, "the key is cached on the second process");

    let bearer = format!("Bearer {ADMIN}");
    let (s, _, b) = http(
        &api.api,
        "DELETE",
        &format!("/api/v1/keys/{key_id}"),
        &[("authorization", &bearer)],
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = http(&api.api, "GET", "/api/v1/executions", &with_key, None).unwrap();
    assert_eq!(s, 401, "the revoking process refuses at once");
    // the other process: polled, with a deadline far above the TTL
    wait_for(&both.api, "/api/v1/executions", &with_key, 401);
    assert_eq!(ingest(), 401, "ingest is refused too");
}

#[test]
fn a_revoked_key_is_refused_by_another_process_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    revocation_across_processes(dir.path(), &[]);
}

#[test]
fn a_revoked_key_is_refused_by_another_process_on_postgres() {
    let Ok(base) = std::env::var("XRAY_TEST_POSTGRES_URL") else {
        eprintln!("XRAY_TEST_POSTGRES_URL is not set: skipping (dev/test.sh sets it)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(xray_store::postgres::testing::isolated_at(&base));
    let dir = tempfile::tempdir().unwrap();
    revocation_across_processes(
        dir.path(),
        &[
            ("XRAY_STORAGE__BACKEND", "postgres"),
            ("XRAY_STORAGE__POSTGRES__URL", db.url.as_str()),
        ],
    );
    drop(db);
}
