//! Golden tests of the mapper: every `tests/fixtures/NAME.otlp.json` (an
//! OTLP/JSON `ExportTraceServiceRequest`, or `{"requests": [...]}` for
//! several deliveries) is mapped and compared with `NAME.expected.json`.
//!
//! Multi-request fixtures (out-of-order and repeated delivery) also write
//! every mapped batch to a real SQLite store and record what it reads back
//! per trace, so the expected file shows the merged result.
//!
//! Every request is also encoded to protobuf and mapped through
//! `map_protobuf` (the receivers' zero-copy path), which must give exactly
//! the same outcome.
//!
//! Regenerate the expected files with `XRAY_BLESS=1 cargo test -p
//! xray-collector --test golden`, then review the diff.

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use xray_collector::mapper::{IngestContext, MapOutcome, map, map_protobuf};
use xray_store::Scope;

const INGEST_BASE_NS: i64 = 1_800_000_000_000_000_000;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn outcome_json(o: &MapOutcome) -> Value {
    json!({
        "accepted_spans": o.accepted_spans,
        "rejected_spans": o.rejected_spans,
        "error_message": o.error_message(),
        "executions": o.batch.executions,
        "steps": o.batch.steps,
    })
}

fn request(v: &Value, name: &str) -> ExportTraceServiceRequest {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: not OTLP/JSON: {e}"))
}

/// Maps `request` with `map`, and checks that its protobuf encoding maps
/// to the same outcome through `map_protobuf`.
fn map_both(request: ExportTraceServiceRequest, ctx: &IngestContext, name: &str) -> MapOutcome {
    let bytes = request.encode_to_vec();
    let out = map(request, ctx);
    let wire = map_protobuf(&bytes, ctx)
        .unwrap_or_else(|e| panic!("{name}: map_protobuf refused the encoded request: {e}"));
    assert_eq!(wire, out, "{name}: map_protobuf differs from map");
    out
}

async fn actual(name: &str, fixture: &Value) -> Value {
    let Some(requests) = fixture.get("requests").and_then(Value::as_array) else {
        let ctx = IngestContext::new(xray_model::DEFAULT_APP, INGEST_BASE_NS);
        let out = map_both(request(fixture, name), &ctx, name);
        // Determinism: the same input gives the same rows.
        assert_eq!(
            out,
            map(request(fixture, name), &ctx),
            "{name}: mapping is not deterministic"
        );
        return outcome_json(&out);
    };
    let store = xray_store::testing::sqlite().await;
    let mut deliveries = Vec::new();
    let mut traces = std::collections::BTreeSet::new();
    for (i, r) in requests.iter().enumerate() {
        let ctx = IngestContext::new(xray_model::DEFAULT_APP, INGEST_BASE_NS + i as i64 * 1_000);
        let out = map_both(request(r, name), &ctx, name);
        traces.extend(out.batch.executions.iter().map(|e| e.trace_id.clone()));
        traces.extend(out.batch.steps.iter().map(|s| s.trace_id.clone()));
        store
            .backend
            .write(&out.batch)
            .await
            .unwrap_or_else(|e| panic!("{name}: sqlite write failed: {e}"));
        deliveries.push(outcome_json(&out));
    }
    let mut stored = Vec::new();
    for t in traces {
        let detail = store
            .backend
            .get_execution(&Scope::All, &t)
            .await
            .unwrap_or_else(|e| panic!("{name}: sqlite read failed: {e}"));
        stored.push(json!({ "trace_id": t, "detail": detail }));
    }
    json!({ "deliveries": deliveries, "stored": stored })
}

#[tokio::test]
async fn golden_fixtures() {
    let bless = std::env::var("XRAY_BLESS").is_ok_and(|v| v == "1");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("read fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".otlp.json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "fixtures missing: {paths:?}");
    let mut failures = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".otlp.json", "");
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let fixture: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let got = actual(&name, &fixture).await;
        let expected_path = fixtures_dir().join(format!("{name}.expected.json"));
        let pretty = serde_json::to_string_pretty(&got).unwrap() + "\n";
        if bless {
            std::fs::write(&expected_path, pretty).expect("write expected file");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) => {
                let expected: Value =
                    serde_json::from_str(&expected).expect("expected file is JSON");
                if expected != got {
                    let actual_path = std::env::temp_dir().join(format!("{name}.actual.json"));
                    std::fs::write(&actual_path, pretty).ok();
                    failures.push(format!(
                        "{name}: output differs from {} (actual written to {})",
                        expected_path.display(),
                        actual_path.display()
                    ));
                }
            }
            Err(_) => failures.push(format!("{name}: {} is missing", expected_path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nrun XRAY_BLESS=1 cargo test -p xray-collector --test golden to regenerate, then review the diff",
        failures.join("\n")
    );
}
