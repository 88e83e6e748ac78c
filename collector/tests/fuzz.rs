//! A bounded mutation fuzzer for the OTLP decode + map path.
//!
//! Seeds are the OTLP/JSON requests in `tests/fuzz-corpus/`. Each round
//! mutates a seed (bit flips, random bytes, inserted, deleted, duplicated
//! or spliced ranges, truncation) either as protobuf bytes or as JSON text
//! and checks:
//!
//! - nothing panics;
//! - protobuf: [`mapper::map_protobuf`] accepts exactly what prost accepts,
//!   with prost's error message, and maps to exactly what
//!   `mapper::map(prost_decode(bytes))` gives;
//! - JSON: a request serde accepts maps without panicking, and its protobuf
//!   encoding maps to the same rows through the zero-copy path.
//!
//! It runs for `XRAY_FUZZ_SECS` seconds (default 3; `dev/test.sh` runs it once more for 60 s
//! by default), seeded from `XRAY_FUZZ_SEED` (default: the
//! clock, printed so a failure can be replayed). A failing input is written
//! next to the test binary's temp dir and its path printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use xray_collector::mapper::{self, IngestContext};

/// xorshift64*: small, fast, reproducible.
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
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the decoders: varint edges, wire-type keys, JSON
/// punctuation.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x1a, 0x22, 0x09, 0x0d, 0x0b, 0x0c, b'{', b'}',
    b'[', b']', b'"', b'\\', b':', b',', b'-', b'0', b'9', b'e',
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, copy);
            }
            5 if len > 0 => v.truncate(rng.below(len)),
            6 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                let n = 1 + rng.below((other.len() - j).min(256));
                v.splice(i..i, other[j..j + n].iter().copied());
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    v
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(seeds.len() >= 3, "seed corpus missing in {}", dir.display());
    seeds
}

fn save_failure(kind: &str, input: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "xray-fuzz-failure-{kind}-{}.bin",
        std::process::id()
    ));
    let _ = std::fs::write(&path, input);
    path
}

/// The protobuf oracle: the zero-copy path agrees with prost.
fn check_protobuf(input: &[u8], ctx: &IngestContext) -> Result<(), String> {
    let ours = mapper::map_protobuf(input, ctx);
    match ExportTraceServiceRequest::decode(input) {
        Ok(request) => {
            let want = mapper::map(request, ctx);
            match ours {
                Ok(got) if got == want => Ok(()),
                Ok(_) => Err("map_protobuf maps differently from prost + map".into()),
                Err(e) => Err(format!("prost accepts, map_protobuf refuses: {e}")),
            }
        }
        Err(prost_err) => match ours {
            Ok(_) => Err(format!("prost refuses ({prost_err}), map_protobuf accepts")),
            Err(e) if e.to_string() == prost_err.to_string() => Ok(()),
            Err(e) => Err(format!(
                "messages differ: ours \"{e}\", prost \"{prost_err}\""
            )),
        },
    }
}

/// The JSON oracle: whatever serde accepts maps, and maps like its
/// protobuf encoding.
fn check_json(input: &[u8], ctx: &IngestContext) -> Result<(), String> {
    let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(input) else {
        return Ok(());
    };
    let bytes = request.encode_to_vec();
    let via_json = mapper::map(request, ctx);
    match mapper::map_protobuf(&bytes, ctx) {
        Ok(via_protobuf) if via_protobuf == via_json => Ok(()),
        Ok(_) => Err("JSON and its protobuf encoding map differently".into()),
        Err(e) => Err(format!(
            "the protobuf encoding of a JSON request is refused: {e}"
        )),
    }
}

#[test]
fn otlp_decode_and_map_survive_mutated_input() {
    let secs: u64 = std::env::var("XRAY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("XRAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fuzzing for {secs} s with XRAY_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let ctx = IngestContext::new("fuzz", 1_700_000_000_000_000_000);
    let json_seeds = corpus();
    let proto_seeds: Vec<Vec<u8>> = json_seeds
        .iter()
        .map(|j| {
            serde_json::from_slice::<ExportTraceServiceRequest>(j)
                .expect("seeds are valid OTLP/JSON")
                .encode_to_vec()
        })
        .collect();
    // The seeds themselves pass.
    for (j, p) in json_seeds.iter().zip(&proto_seeds) {
        check_json(j, &ctx).unwrap();
        check_protobuf(p, &ctx).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut rounds, mut accepted) = (0u64, 0u64);
    while Instant::now() < deadline {
        for _ in 0..64 {
            rounds += 1;
            let protobuf = rng.below(2) == 0;
            let seeds = if protobuf { &proto_seeds } else { &json_seeds };
            let base = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, base, other);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if protobuf {
                    check_protobuf(&input, &ctx)
                } else {
                    check_json(&input, &ctx)
                }
            }));
            let kind = if protobuf { "protobuf" } else { "json" };
            match result {
                Ok(Ok(())) => {
                    if protobuf && ExportTraceServiceRequest::decode(input.as_slice()).is_ok() {
                        accepted += 1;
                    }
                }
                Ok(Err(why)) => panic!(
                    "{kind} input {} (seed {seed}): {why}",
                    save_failure(kind, &input).display()
                ),
                Err(_) => panic!(
                    "{kind} input {} (seed {seed}) panicked",
                    save_failure(kind, &input).display()
                ),
            }
        }
    }
    eprintln!("{rounds} inputs, {accepted} mutated protobuf inputs still valid");
    assert!(rounds > 1000, "the fuzzer ran only {rounds} inputs");
}
