//! Cost of recording a step, with the collector down (nothing listens on the
//! endpoint), so export never helps by draining memory.
//!
//! Two parts:
//! 1. criterion benches of one step with a small input and output, in
//!    snapshot mode (the default), in live mode, and as a timed scope;
//! 2. a 1M-step run that times every step on its own (p50 / p99) and reads
//!    the live heap (a counting global allocator, `stats_alloc`) at
//!    checkpoints: with the queue full and export failing, the heap must stop
//!    growing.
//!
//! Run: `cargo bench -p xray-sdk --bench record`
//! (results and date in docs/benchmarks.md).
#![allow(clippy::print_stdout)]

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use serde::Serialize;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use xray_sdk::{DeliveryMode, StepType, XRay};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Serialize)]
struct Small {
    query: &'static str,
    limit: u32,
}

const INPUT: Small = Small {
    query: "insulated water bottle",
    limit: 50,
};
const OUTPUT: [&str; 3] = ["B0A1", "B0A2", "B0A3"];

/// Steps per execution in the benches.
const STEPS_PER_EXECUTION: usize = 100;

/// An SDK exporting to a port nothing listens on.
fn xray_collector_down(mode: DeliveryMode, queue: usize) -> XRay {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("reserve a port");
    XRay::builder()
        .endpoint(format!("http://{addr}"))
        .mode(mode)
        .max_queue_size(queue)
        .export_timeout(Duration::from_millis(200))
        .build()
        .expect("build sdk")
}

fn record_step(exec: &xray_sdk::Execution) {
    exec.step("filter_price")
        .kind(StepType::Filter)
        .input(&INPUT)
        .output(&OUTPUT)
        .candidates_in(50)
        .reject("price_above_limit", 47)
        .candidates_out(3)
        .record();
}

fn bench_steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_step");
    g.throughput(Throughput::Elements(1));
    for (label, mode) in [
        ("snapshot", DeliveryMode::Snapshot),
        ("live", DeliveryMode::Live),
    ] {
        let xray = xray_collector_down(mode, 2048);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(STEPS_PER_EXECUTION as u64);
                    let exec = xray.execution("bench").start();
                    let t = Instant::now();
                    for _ in 0..n {
                        record_step(black_box(&exec));
                    }
                    total += t.elapsed();
                    exec.complete_empty();
                    left -= n;
                }
                total
            })
        });
        xray.shutdown().ok();
    }
    let xray = xray_collector_down(DeliveryMode::Snapshot, 2048);
    g.bench_function("span_step_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(STEPS_PER_EXECUTION as u64);
                let exec = xray.execution("bench").start();
                let t = Instant::now();
                for _ in 0..n {
                    let mut s = exec.span_step("rank");
                    s.kind(StepType::Rank).output(&OUTPUT);
                }
                total += t.elapsed();
                exec.complete_empty();
                left -= n;
            }
            total
        })
    });
    xray.shutdown().ok();
    g.finish();
}

/// Bytes currently allocated (stats_alloc already folds reallocations into
/// the allocated / deallocated totals).
fn live_bytes() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// 1M steps, each timed on its own, with heap checkpoints.
fn million_steps() {
    const TOTAL: usize = 1_000_000;
    const EVERY: usize = 50_000;
    let queue = 64;
    let xray = xray_collector_down(DeliveryMode::Snapshot, queue);
    let mut times = Vec::with_capacity(TOTAL);
    let mut checkpoints = Vec::with_capacity(TOTAL / EVERY);
    let baseline = live_bytes();
    let mut done = 0;
    while done < TOTAL {
        let exec = xray.execution("bench").start();
        for _ in 0..STEPS_PER_EXECUTION {
            let t = Instant::now();
            record_step(&exec);
            times.push(t.elapsed());
        }
        exec.complete_empty();
        done += STEPS_PER_EXECUTION;
        if done % EVERY == 0 {
            // `times` and `checkpoints` are preallocated: they do not move
            // the figure.
            checkpoints.push((done, live_bytes() - baseline));
        }
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    let st = xray.stats();
    println!("1M steps, snapshot mode, 100 steps per execution, collector down, queue {queue}:");
    println!(
        "  per step: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    let kib = |b: i64| b as f64 / 1024.0;
    let line: Vec<String> = checkpoints
        .iter()
        .map(|(n, b)| format!("{}k:{:.0}", n / 1000, kib(*b)))
        .collect();
    println!(
        "  live heap above baseline, KiB, by steps: {}",
        line.join(" ")
    );
    let half = checkpoints.len() / 2;
    let max = |c: &[(usize, i64)]| c.iter().map(|x| x.1).max().unwrap_or(0);
    println!(
        "  max live heap: first 500k steps {:.0} KiB, last 500k steps {:.0} KiB",
        kib(max(&checkpoints[..half])),
        kib(max(&checkpoints[half..]))
    );
    println!(
        "  stats: executions {} steps {} dropped_spans {} failed_spans {} exported_spans {}",
        st.executions_ended,
        st.steps_recorded,
        st.dropped_spans,
        st.failed_spans,
        st.exported_spans
    );
    xray.shutdown().ok();
    println!(
        "  live heap after shutdown: {:.0} KiB",
        kib(live_bytes() - baseline)
    );
}

criterion_group!(benches, bench_steps);

fn main() {
    million_steps();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
