//! A bounded fuzz test of the legacy endpoints' parse + map paths
//! (`POST /executions`, `POST /v1/events`, `POST /v1/events/batch`,
//! `POST /ingest`): deterministic, seeded mutations of the fixtures in
//! `tests/fixtures/legacy/` (JSON-aware: values swapped for other types,
//! huge or negative numbers, keys dropped, deep nesting; and byte-level:
//! flips, truncations, insertions) plus arbitrary bytes.
//!
//! Every input must either be refused with a `LegacyError` (which the
//! endpoints answer 400 / 422) or give a valid batch: rows of the caller's
//! app, hex trace and span ids, non-empty execution ids, finite numbers.
//! Never a panic.
//!
//! It runs about 3 s in total by default; `XRAY_FUZZ_SECS=60` runs each
//! endpoint for a minute, `XRAY_FUZZ_SEED=N` changes the seed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use xray_collector::legacy::{LegacyError, events, runs, snapshot};
use xray_collector::mapper::IngestContext;
use xray_model::MappedBatch;

/// xorshift64*: small, deterministic, good enough for mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixture_bodies(endpoints: &[&str]) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| !s.ends_with(".expected.json")))
        .collect();
    names.sort();
    for p in names {
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        let reqs = match v.get("requests") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![v],
        };
        for r in reqs {
            if endpoints.contains(&r["endpoint"].as_str().unwrap_or("")) {
                out.push(r["body"].clone());
            }
        }
    }
    assert!(!out.is_empty(), "no fixtures for {endpoints:?}");
    out
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 9 } else { 12 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(1e300),
        5 => json!(rng.next() as f64 / 7.0),
        6 => json!(""),
        7 => json!(
            [
                "2024-05-01T12:00:00Z",
                "not a time",
                "12:00",
                "1714564800000",
                "NaN",
                "-1",
                "\u{0}",
                "2024-13-45T99:99:99"
            ][rng.below(8)]
        ),
        8 => json!(
            [
                "llm_call",
                "run_start",
                "step_end",
                "run_end",
                "decision",
                "COMPLETED",
                "filter",
                "xx"
            ][rng.below(8)]
        ),
        9 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        10 => {
            let keys = [
                "id", "run_id", "type", "data", "name", "trace_id", "span_id", "events", "steps",
            ];
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    keys[rng.below(keys.len())].into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
        _ => {
            // deep nesting
            let mut v = json!(1);
            for _ in 0..rng.below(200) {
                v = json!([v]);
            }
            v
        }
    }
}

/// Mutates one random place of `v` (in place).
fn mutate(v: &mut Value, rng: &mut Rng, depth: u32) {
    let descend = depth < 6 && rng.below(3) != 0;
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = keys[rng.below(keys.len())].clone();
            if descend {
                mutate(m.get_mut(&k).unwrap(), rng, depth + 1);
            } else if rng.below(2) == 0 {
                m.remove(&k);
            } else {
                m.insert(k, random_value(rng, depth));
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            if descend {
                mutate(&mut a[i], rng, depth + 1);
            } else if rng.below(2) == 0 {
                a.remove(i);
            } else {
                let dup = a[i].clone();
                a.push(dup);
            }
        }
        other => *other = random_value(rng, depth),
    }
}

fn bytes_of(base: &Value, rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        // arbitrary bytes
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        // byte-level mutation of valid JSON
        1 | 2 => {
            let mut b = serde_json::to_vec(base).unwrap();
            for _ in 0..=rng.below(4) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                match rng.below(3) {
                    0 => b[i] ^= 1 << rng.below(8),
                    1 => b.truncate(i),
                    _ => b.insert(i, rng.next() as u8),
                }
            }
            b
        }
        // structural mutations
        _ => {
            let mut v = base.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut v, rng, 0);
            }
            serde_json::to_vec(&v).unwrap()
        }
    }
}

fn check_batch(b: &MappedBatch, app: &str, input: &[u8]) {
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    let shown = || String::from_utf8_lossy(input).into_owned();
    for e in &b.executions {
        assert_eq!(e.app, app, "{}", shown());
        assert!(!e.execution_id.is_empty(), "{}", shown());
        assert!(hex(&e.trace_id, 32) && hex(&e.span_id, 16), "{e:?}");
    }
    for s in &b.steps {
        assert_eq!(s.app, app);
        assert!(!s.execution_id.is_empty(), "{}", shown());
        assert!(hex(&s.trace_id, 32) && hex(&s.span_id, 16), "{s:?}");
        for f in [s.cost, s.confidence].into_iter().flatten() {
            assert!(f.is_finite(), "{s:?}");
        }
    }
    // the batch serializes (what every sink does with it)
    serde_json::to_vec(b).unwrap();
}

fn budget() -> Duration {
    match std::env::var("XRAY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        Some(s) => Duration::from_secs_f64(s),
        None => Duration::from_millis(750),
    }
}

fn seed() -> u64 {
    std::env::var("XRAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e6a_c0de)
}

/// Runs `map` over mutated fixtures until the budget is used; returns
/// (inputs, accepted).
fn fuzz(
    name: &str,
    endpoints: &[&str],
    map: impl Fn(&[u8], &IngestContext) -> Result<MappedBatch, LegacyError>,
) {
    let bases = fixture_bodies(endpoints);
    let mut rng = Rng(seed() ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let ctx = IngestContext::new("fuzz-app", 1_800_000_000_000_000_000);
    let (mut n, mut ok) = (0u64, 0u64);
    let until = Instant::now() + budget();
    // the unmutated fixtures map
    for b in &bases {
        let bytes = serde_json::to_vec(b).unwrap();
        let batch = map(&bytes, &ctx).unwrap_or_else(|e| panic!("{name}: fixture refused: {e}"));
        check_batch(&batch, "fuzz-app", &bytes);
    }
    while Instant::now() < until || n < 200 {
        let base = &bases[rng.below(bases.len())];
        let input = bytes_of(base, &mut rng);
        match map(&input, &ctx) {
            Ok(batch) => {
                ok += 1;
                check_batch(&batch, "fuzz-app", &input);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        n += 1;
    }
    eprintln!("{name}: {n} inputs, {ok} mapped, {} refused", n - ok);
    assert!(
        ok > 0,
        "{name}: no mutated input was accepted; mutations too destructive"
    );
}

#[test]
fn snapshot_endpoint_never_panics() {
    fuzz("POST /executions", &["snapshot"], |b, ctx| {
        snapshot::map_snapshot(b, ctx)
    });
}

#[test]
fn event_endpoints_never_panic() {
    let prior = HashMap::new();
    fuzz("POST /v1/events", &["events"], |b, ctx| {
        let evs = events::parse_events(b, true)?;
        Ok(events::map_events(&evs, ctx, &prior)?.batch)
    });
    fuzz("POST /v1/events/batch", &["events_batch"], |b, ctx| {
        let evs = events::parse_events(b, false)?;
        Ok(events::map_events(&evs, ctx, &prior)?.batch)
    });
}

#[test]
fn run_endpoint_never_panics() {
    let prior = HashMap::new();
    fuzz("POST /ingest", &["runs"], |b, ctx| {
        let evs = runs::parse_ingest(b)?;
        let _ = runs::referenced_runs(&evs);
        let out = runs::map_run_events(&evs, ctx, &prior)?;
        let _ = out.response();
        Ok(out.batch)
    });
}
