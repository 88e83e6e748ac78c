//! The `sample` processor: keeps a deterministic share of executions,
//! whole (execution and steps together), and always keeps failed and slow
//! ones.
//!
//! The decision is a pure function of the trace id and the configuration,
//! so every replica and every request agrees on it:
//! - `u = score(trace_id)` in `[0, 1)`: a 64-bit mix of the trace id's 16
//!   bytes (see [`score`]);
//! - an execution row is kept when it is `failed`, or lasted at least
//!   `keep_slower_than_ms`, or `u < rate(pipeline)` (the pipeline's entry
//!   in `pipelines`, else `rate`);
//! - a step row whose execution row travels in the same batch (same app and
//!   trace id) shares that execution's decision;
//! - a step row without its execution in the batch (child spans exported
//!   in another request) is kept when `u < min_rate`, the smallest rate of
//!   the configuration. Its execution then satisfies `u < rate(pipeline)`
//!   whatever its pipeline, so **no step is ever stored without its
//!   execution**. The price: a failed or slow execution keeps the steps that
//!   arrive with it (snapshot-mode event steps, and child spans exported in
//!   the same request) but loses the steps exported separately unless
//!   `u < min_rate`.
//!
//! Kept executions carry [`RATE_KEY`] (the rate that applied) and
//! [`REASON_KEY`] (`failed`, `slow` or `sampled`) in their metadata.

use std::collections::HashMap;

use xray_config::SampleConfig;
use xray_model::{MappedBatch, Status};

use super::metrics;

/// Metadata key: the sampling rate that applied to the execution.
pub const RATE_KEY: &str = "xray.sampling.rate";
/// Metadata key: why the execution was kept (`failed`, `slow`, `sampled`).
pub const REASON_KEY: &str = "xray.sampling.reason";

/// One compiled `sample` processor.
#[derive(Debug, Clone)]
pub struct Sampler {
    rate: f64,
    pipelines: HashMap<String, f64>,
    min_rate: f64,
    slow_ns: Option<i64>,
}

/// The trace id's position in `[0, 1)`: splitmix64 finalizers over its two
/// 64-bit halves (hex decoded; other ids are hashed with FNV-1a first).
/// Stable across versions: the sampling decision of a trace never changes.
pub fn score(trace_id: &str) -> f64 {
    let (hi, lo) = match hex_halves(trace_id) {
        Some(h) => h,
        None => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in trace_id.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            (h, !h)
        }
    };
    let x = mix(hi ^ mix(lo));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn hex_halves(id: &str) -> Option<(u64, u64)> {
    if id.len() != 32 {
        return None;
    }
    let hi = u64::from_str_radix(&id[..16], 16).ok()?;
    let lo = u64::from_str_radix(&id[16..], 16).ok()?;
    Some((hi, lo))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sampler {
    /// Compiles `config` (validated: rates within `0..=1`).
    pub fn new(config: &SampleConfig) -> Sampler {
        let min_rate = config
            .pipelines
            .values()
            .copied()
            .fold(config.rate, f64::min);
        Sampler {
            rate: config.rate,
            pipelines: config
                .pipelines
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            min_rate,
            slow_ns: (config.keep_slower_than_ms > 0).then(|| {
                i64::try_from(config.keep_slower_than_ms)
                    .unwrap_or(i64::MAX / 1_000_000)
                    .saturating_mul(1_000_000)
            }),
        }
    }

    fn rate_of(&self, pipeline: &str) -> f64 {
        self.pipelines.get(pipeline).copied().unwrap_or(self.rate)
    }

    /// Drops the executions (and their steps) that are not sampled, and
    /// marks the kept ones. Pure.
    pub fn apply(&self, batch: &mut MappedBatch) {
        // (app, trace id) → keep, for the executions of this batch.
        let mut decisions: HashMap<(&str, &str), bool> = HashMap::new();
        let mut keep_exec = Vec::with_capacity(batch.executions.len());
        for e in &batch.executions {
            let rate = self.rate_of(&e.pipeline);
            let reason = if e.status == Status::Failed {
                Some("failed")
            } else if self
                .slow_ns
                .is_some_and(|t| e.duration_ns().is_some_and(|d| d >= t))
            {
                Some("slow")
            } else if score(&e.trace_id) < rate {
                Some("sampled")
            } else {
                None
            };
            let d = decisions
                .entry((e.app.as_str(), e.trace_id.as_str()))
                .or_insert(false);
            *d |= reason.is_some();
            keep_exec.push(reason.map(|r| (r, rate)));
        }
        let mut keep_step = Vec::with_capacity(batch.steps.len());
        for s in &batch.steps {
            let keep = match decisions.get(&(s.app.as_str(), s.trace_id.as_str())) {
                Some(k) => *k,
                None => score(&s.trace_id) < self.min_rate,
            };
            keep_step.push(keep);
        }
        drop(decisions);
        let mut it = keep_exec.into_iter();
        batch.executions.retain_mut(|e| match it.next().flatten() {
            Some((reason, rate)) => {
                e.metadata.insert(RATE_KEY.to_string(), format_rate(rate));
                e.metadata
                    .insert(REASON_KEY.to_string(), reason.to_string());
                metrics::record_sampled(Some(reason));
                true
            }
            None => {
                metrics::record_sampled(None);
                false
            }
        });
        let mut it = keep_step.into_iter();
        let before = batch.steps.len();
        batch.steps.retain(|_| it.next().unwrap_or(true));
        metrics::record_steps_sampled_out((before - batch.steps.len()) as u64);
    }
}

fn format_rate(r: f64) -> String {
    let s = format!("{r}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_model::{Execution, Step, StepType};

    fn exec(trace: &str, pipeline: &str, status: Status, dur_ms: i64) -> Execution {
        Execution {
            trace_id: trace.into(),
            status,
            ..xray_store::testing::execution("default", trace, pipeline, 0, dur_ms * 1_000_000)
        }
    }

    fn step(trace: &str) -> Step {
        let e = exec(trace, "", Status::Completed, 0);
        Step {
            execution_id: String::new(),
            ..xray_store::testing::step(&e, "n", StepType::Custom, 0, 0)
        }
    }

    fn trace(i: u64) -> String {
        format!("{:016x}{:016x}", i.wrapping_mul(7919), i)
    }

    #[test]
    fn score_is_uniform_and_stable() {
        assert_eq!(score(&trace(1)), score(&trace(1)));
        let n = 100_000;
        let below = (0..n).filter(|i| score(&trace(*i)) < 0.3).count();
        assert!((below as f64 / n as f64 - 0.3).abs() < 0.01, "{below}");
        assert!((0.0..1.0).contains(&score("not-hex")));
    }

    #[test]
    fn keeps_failed_slow_and_the_rate_marking_the_reason() {
        let s = Sampler::new(&SampleConfig {
            rate: 0.0,
            pipelines: [("vip".to_string(), 1.0)].into(),
            keep_slower_than_ms: 1000,
        });
        let mut b = MappedBatch {
            executions: vec![
                exec(&trace(1), "p", Status::Failed, 5),
                exec(&trace(2), "p", Status::Completed, 2000),
                exec(&trace(3), "p", Status::Completed, 5),
                exec(&trace(4), "vip", Status::Completed, 5),
            ],
            steps: vec![step(&trace(1)), step(&trace(3)), step(&trace(9))],
        };
        s.apply(&mut b);
        let kept: Vec<(&str, &str)> = b
            .executions
            .iter()
            .map(|e| {
                (
                    e.metadata[REASON_KEY].as_str(),
                    e.metadata[RATE_KEY].as_str(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            vec![("failed", "0.0"), ("slow", "0.0"), ("sampled", "1.0")]
        );
        // The failed execution's step stays; the dropped one's goes; the
        // orphan goes (min rate 0).
        assert_eq!(b.steps.len(), 1);
        assert_eq!(b.steps[0].trace_id, trace(1));
    }

    #[test]
    fn orphan_steps_kept_only_when_every_pipeline_would_keep_the_execution() {
        let s = Sampler::new(&SampleConfig {
            rate: 0.5,
            pipelines: [("cheap".to_string(), 0.1)].into(),
            keep_slower_than_ms: 0,
        });
        for i in 0..5000 {
            let t = trace(i);
            let mut orphan = MappedBatch {
                executions: vec![],
                steps: vec![step(&t)],
            };
            s.apply(&mut orphan);
            if orphan.steps.is_empty() {
                continue;
            }
            for p in ["cheap", "other"] {
                let mut e = MappedBatch {
                    executions: vec![exec(&t, p, Status::Completed, 1)],
                    steps: vec![],
                };
                s.apply(&mut e);
                assert_eq!(
                    e.executions.len(),
                    1,
                    "step kept but execution of {p} dropped"
                );
            }
        }
    }
}
