//! Golden tests of the legacy mappers: every
//! `tests/fixtures/legacy/NAME.json` is `{"endpoint", "body"}` (one request)
//! or `{"requests": [...]}` (several deliveries), where `endpoint` is
//! `snapshot` (`POST /executions`), `events` (`POST /v1/events`),
//! `events_batch` (`POST /v1/events/batch`) or `runs` (`POST /ingest`).
//! Each request is mapped and compared with `NAME.expected.json`.
//!
//! Multi-request fixtures write every batch to a real SQLite store, looking
//! the stored state up before each request exactly as the endpoints do, and
//! record what the store reads back, so the expected file shows the merged
//! result (runs completed by later requests, duplicates stored once).
//!
//! Regenerate with `XRAY_BLESS=1 cargo test -p xray-collector --test
//! legacy_golden`, then review the diff.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use xray_collector::legacy::{events, runs, snapshot};
use xray_collector::mapper::IngestContext;
use xray_model::MappedBatch;
use xray_store::{ExecutionDetail, Scope};

const INGEST_BASE_NS: i64 = 1_800_000_000_000_000_000;
const APP: &str = "shop";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy")
}

/// Maps one request like its endpoint does; `prior` is the stored state.
fn map_one(
    endpoint: &str,
    body: &[u8],
    ctx: &IngestContext,
    prior: &HashMap<String, ExecutionDetail>,
) -> (MappedBatch, Value) {
    match endpoint {
        "snapshot" => (snapshot::map_snapshot(body, ctx).unwrap(), json!(null)),
        "events" | "events_batch" => {
            let evs = events::parse_events(body, endpoint == "events").unwrap();
            let o = events::map_events(&evs, ctx, prior).unwrap();
            (o.batch, json!({ "span_ids": o.span_ids }))
        }
        "runs" => {
            let evs = runs::parse_ingest(body).unwrap();
            let prior: HashMap<String, runs::RunState> = prior
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            let o = runs::map_run_events(&evs, ctx, &prior).unwrap();
            let resp = o.response();
            (o.batch, resp)
        }
        other => panic!("unknown endpoint {other}"),
    }
}

fn ids_of(endpoint: &str, body: &Value) -> Vec<String> {
    match endpoint {
        "runs" => runs::referenced_runs(body["events"].as_array().unwrap()),
        "events" => vec![body["trace_id"].as_str().unwrap_or_default().to_string()],
        "events_batch" => body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["trace_id"].as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

async fn actual(fixture: &Value) -> Value {
    let single = fixture.get("requests").is_none();
    let requests: Vec<Value> = if single {
        vec![fixture.clone()]
    } else {
        fixture["requests"].as_array().unwrap().clone()
    };
    let store = xray_store::testing::sqlite().await;
    let scope = Scope::App(APP.into());
    let mut deliveries = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, r) in requests.iter().enumerate() {
        let endpoint = r["endpoint"].as_str().unwrap();
        let body = serde_json::to_vec(&r["body"]).unwrap();
        let mut prior = HashMap::new();
        for id in ids_of(endpoint, &r["body"]) {
            if let Some(d) = store.backend.get_execution(&scope, &id).await.unwrap() {
                prior.insert(id, d);
            }
        }
        let ctx = IngestContext::new(APP, INGEST_BASE_NS + i as i64 * 1_000);
        let (batch, response) = map_one(endpoint, &body, &ctx, &prior);
        // Determinism: the same request gives the same rows.
        assert_eq!(batch, map_one(endpoint, &body, &ctx, &prior).0);
        ids.extend(batch.executions.iter().map(|e| e.execution_id.clone()));
        store.backend.write(&batch).await.unwrap();
        deliveries.push(json!({
            "response": response,
            "executions": batch.executions,
            "steps": batch.steps,
        }));
    }
    if single {
        return deliveries.pop().unwrap();
    }
    let mut stored = serde_json::Map::new();
    for id in ids {
        let d = store.backend.get_execution(&scope, &id).await.unwrap();
        stored.insert(
            id,
            d.map(|d| json!({ "execution": d.execution, "steps": d.steps }))
                .unwrap_or(Value::Null),
        );
    }
    json!({ "deliveries": deliveries, "stored": stored })
}

#[tokio::test]
async fn legacy_fixtures_match_expected() {
    let bless = std::env::var_os("XRAY_BLESS").is_some();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_str()
                .is_some_and(|s| s.ends_with(".json") && !s.ends_with(".expected.json"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 6, "fixtures missing in {:?}", dir());
    let mut failed = Vec::new();
    for path in names {
        let fixture: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let got = actual(&fixture).await;
        let expected_path = path.with_extension("expected.json");
        if bless {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let want: Value = match std::fs::read(&expected_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => {
                failed.push(format!("{}: no expected file", path.display()));
                continue;
            }
        };
        if got != want {
            failed.push(format!(
                "{} differs from {}:\n{}",
                path.display(),
                expected_path.display(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
