//! Decode + map throughput of realistic spans: 10 attributes, 2 events and
//! about 1 KB of JSON input and output each; 512 spans per request (the OTel
//! batch span processor's default export size), 1 execution span with 511
//! child steps.
//!
//! - `decode_and_map_512_spans`: protobuf bytes → rows through
//!   `map_protobuf`, the path both OTLP protobuf receivers take (zero-copy
//!   decoding straight into the mapper);
//! - `prost_decode_and_map_512_spans`: the same bytes decoded into owned
//!   prost messages first, then `map` (the OTLP/JSON path's shape, and the
//!   receivers' path before `map_protobuf`), for comparison;
//! - `map_only_512_spans`: `map` of an already decoded request.
//!
//! The group `mapper_cpu_time` runs the first two again but measures the
//! bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) instead of
//! wall-clock time: on a machine shared with other builds, wall-clock
//! figures mostly measure how often the thread was descheduled, CPU time
//! measures the work (cache and frequency effects of the other load
//! remain).
//!
//! The group `processor_chain_cpu_time` measures what the processor chain
//! adds (CPU time): `decode_and_map_512_spans` against
//! `decode_map_and_default_chain_512_spans`, the same plus the chain a
//! user gets with one default `redact` processor (email, payment card,
//! bearer token and API-key detectors) and the `[limits]` defaults; and
//! `…_with_secrets`, where every 8th span's input holds an email, a card
//! number and an API key (the path that redacts and re-encodes JSON);
//! `default_chain_only_512_spans` times the chain alone on rows mapped
//! outside the measurement (the steadiest figure on a busy machine).
//!
//! Run: `cargo bench -p xray-collector --bench mapper`
//! Latest results are in `docs/benchmarks.md`.
//!
//! The bench uses mimalloc, the allocator the `xray` binary ships with, so
//! the figures are the ones the collector gets in production (allocation is
//! a large share of mapping: every attribute is a string).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
use prost::Message;
use xray_collector::mapper::{IngestContext, map, map_protobuf};
use xray_collector::processor::Chain;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPANS: usize = 512;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn json_blob(seed: usize) -> String {
    let items: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{"id":"B0-{seed}-{i}","title":"trail running shoe {i}","price":{}.99}}"#,
                50 + i
            )
        })
        .collect();
    format!(
        r#"{{"query":"running shoes","candidates":[{}]}}"#,
        items.join(",")
    )
}

fn request() -> ExportTraceServiceRequest {
    request_with(false)
}

fn request_with(secrets: bool) -> ExportTraceServiceRequest {
    let trace_id: Vec<u8> = (1..=16).collect();
    let spans = (0..SPANS)
        .map(|i| {
            let mut attributes = vec![
                kv("xray.step.type", s("filter")),
                kv("xray.step.input", s(&json_blob(i))),
                kv("xray.step.output", s(&json_blob(i + 1))),
                kv("xray.step.candidates.in", Value::IntValue(5000)),
                kv("xray.step.candidates.out", Value::IntValue(100)),
                kv(
                    "xray.step.rejections",
                    s(r#"{"price_above_limit":4700,"out_of_stock":200}"#),
                ),
                kv(
                    "xray.step.reasoning",
                    s("kept items under the price limit that are in stock"),
                ),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("http.request.method", s("POST")),
                kv("xray.step.metadata.region", s("eu-west-1")),
            ];
            if secrets && i % 8 == 0 {
                attributes[1] = kv(
                    "xray.step.input",
                    s(&json_blob(i).replace(
                        "running shoes",
                        "mail jane.doe@example.com, card 4111 1111 1111 1111, key sk-proj-AbCdEfGhIjKlMnOp1234",
                    )),
                );
            }
            let mut parent = vec![0, 0, 0, 0, 0, 0, 0, 1];
            if i == 0 {
                attributes[0] = kv("xray.pipeline", s("product-picker"));
                parent.clear();
            }
            let mut span_id = vec![0u8; 8];
            span_id[..8].copy_from_slice(&((i as u64) + 1).to_be_bytes());
            Span {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: parent,
                name: format!("step-{}", i % 7),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_700_000_000_100_000_000 + i as u64,
                attributes,
                events: vec![
                    Event {
                        time_unix_nano: 1_700_000_000_050_000_000,
                        name: "cache-miss".into(),
                        attributes: vec![kv("cache.key", s("k1"))],
                        ..Default::default()
                    },
                    Event {
                        time_unix_nano: 1_700_000_000_060_000_000,
                        name: "retry".into(),
                        attributes: vec![kv("attempt", Value::IntValue(2))],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("shop-search"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn bench(c: &mut Criterion) {
    let bytes = request().encode_to_vec();
    let ctx = IngestContext::new("default", 1_800_000_000_000_000_000);
    let mut g = c.benchmark_group("mapper");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_and_map_512_spans", |b| {
        b.iter_batched(
            || (),
            |()| map_protobuf(&bytes, &ctx).expect("decode"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("prost_decode_and_map_512_spans", |b| {
        b.iter_batched(
            || (),
            |()| {
                let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decode");
                map(req, &ctx)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("map_only_512_spans", |b| {
        b.iter_batched(request, |req| map(req, &ctx), BatchSize::SmallInput)
    });
    g.finish();

    let mut g = c.benchmark_group("mapper_cpu_time");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_and_map_512_spans", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                black_box(map_protobuf(black_box(&bytes), &ctx).expect("decode"))
            })
        })
    });
    g.bench_function("prost_decode_and_map_512_spans", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                let req =
                    ExportTraceServiceRequest::decode(black_box(bytes.as_slice())).expect("decode");
                black_box(map(req, &ctx))
            })
        })
    });
    g.finish();

    let config = xray_config::Config {
        processors: vec![xray_config::ProcessorConfig::Redact(Default::default())],
        ..Default::default()
    };
    let chain = Chain::rows_only(&config).expect("default chain");
    let with_secrets = request_with(true).encode_to_vec();
    let mut g = c.benchmark_group("processor_chain_cpu_time");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_and_map_512_spans", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                black_box(map_protobuf(black_box(&bytes), &ctx).expect("decode"))
            })
        })
    });
    g.bench_function("decode_map_and_default_chain_512_spans", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                let mut out = map_protobuf(black_box(&bytes), &ctx).expect("decode");
                chain.apply(&mut out.batch);
                black_box(out)
            })
        })
    });
    g.bench_function("default_chain_only_512_spans", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut out = map_protobuf(&bytes, &ctx).expect("decode");
                let start = thread_cpu_time();
                chain.apply(black_box(&mut out.batch));
                total += thread_cpu_time().saturating_sub(start);
                black_box(out);
            }
            total
        })
    });
    g.bench_function("decode_and_map_512_spans_with_secrets", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                black_box(map_protobuf(black_box(&with_secrets), &ctx).expect("decode"))
            })
        })
    });
    g.bench_function("decode_map_and_default_chain_512_spans_with_secrets", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                let mut out = map_protobuf(black_box(&with_secrets), &ctx).expect("decode");
                chain.apply(&mut out.batch);
                black_box(out)
            })
        })
    });
    g.finish();
}

/// CPU time this thread has run.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// CPU time of `iters` calls of `routine`; outputs are dropped outside the
/// measurement, as `iter_batched` does.
fn cpu_time_of<O>(iters: u64, mut routine: impl FnMut() -> O) -> Duration {
    const CHUNK: u64 = 64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut outputs = Vec::with_capacity(CHUNK as usize);
    while left > 0 {
        let n = left.min(CHUNK);
        let start = thread_cpu_time();
        for _ in 0..n {
            outputs.push(routine());
        }
        total += thread_cpu_time().saturating_sub(start);
        outputs.clear();
        left -= n;
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);
