//! The `limits` processor (and the always-on `[limits]` section): caps on
//! text sizes, metadata entries per row, steps per execution and
//! candidates per step. Cut values end in `…[truncated N bytes]`; rows that
//! lost entries say how many under `xray.limits.*` metadata keys.
//!
//! `max_events_per_span` is applied earlier, while mapping (see
//! [`crate::mapper::IngestContext::max_events_per_span`]).

use std::collections::HashMap;

use xray_config::LimitsConfig;
use xray_model::{MappedBatch, Metadata};

use super::metrics;

/// Metadata key: metadata entries dropped from the row.
pub const DROPPED_METADATA_KEY: &str = "xray.limits.dropped_metadata";
/// Metadata key: candidate decisions dropped from the step.
pub const DROPPED_CANDIDATES_KEY: &str = "xray.limits.dropped_candidates";
/// Metadata key: text values of the row that were truncated.
pub const TRUNCATED_KEY: &str = "xray.limits.truncated_values";

/// Metadata the processors write themselves: never capped.
fn is_own_key(k: &str) -> bool {
    k.starts_with("xray.limits.") || k.starts_with("xray.sampling.") || k == "xray.redaction.rules"
}

/// One compiled `limits` processor.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    max_bytes: usize,
    max_metadata: usize,
    max_steps: usize,
    max_candidates: usize,
}

fn cap(v: impl TryInto<usize>) -> usize {
    match v.try_into() {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary), marker
/// included; returns whether it was cut.
pub fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    // The marker carries the number of bytes cut, which is at most the
    // length: reserving that many digits keeps the result within `max`.
    let digits = s.len().to_string().len();
    let mut keep = max.saturating_sub(MARKER_LEN + digits);
    while keep > 0 && !s.is_char_boundary(keep) {
        keep -= 1;
    }
    let cut = s.len() - keep;
    s.truncate(keep);
    s.push_str(&format!("…[truncated {cut} bytes]"));
    metrics::record_truncated(cut as u64);
    true
}

const MARKER_LEN: usize = "…[truncated  bytes]".len();

impl Limits {
    /// Compiles `config` (0 turns a cap off).
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            max_bytes: cap(config.max_attribute_bytes),
            max_metadata: cap(config.max_attributes_per_span),
            max_steps: cap(config.max_steps_per_execution),
            max_candidates: cap(config.max_candidates_per_step),
        }
    }

    fn text(&self, v: &mut String, n: &mut u64) {
        if truncate(v, self.max_bytes) {
            *n += 1;
        }
    }

    fn opt(&self, v: &mut Option<String>, n: &mut u64) {
        if let Some(s) = v {
            self.text(s, n);
        }
    }

    fn metadata(&self, m: &mut Metadata, truncated: &mut u64) {
        let mut dropped = 0u64;
        if m.len() > self.max_metadata {
            let mut i = 0;
            m.retain(|k, _| {
                if is_own_key(k) {
                    return true;
                }
                i += 1;
                let keep = i <= self.max_metadata;
                if !keep {
                    dropped += 1;
                }
                keep
            });
            metrics::record_limited("metadata", dropped);
        }
        for v in m.values_mut() {
            self.text(v, truncated);
        }
        if dropped > 0 {
            m.insert(DROPPED_METADATA_KEY.to_string(), dropped.to_string());
        }
    }

    /// Applies the caps to every row of `batch`. Pure.
    pub fn apply(&self, batch: &mut MappedBatch) {
        for e in &mut batch.executions {
            let mut n = 0;
            self.opt(&mut e.input, &mut n);
            self.opt(&mut e.output, &mut n);
            self.opt(&mut e.error, &mut n);
            for t in &mut e.tags {
                self.text(t, &mut n);
            }
            self.metadata(&mut e.metadata, &mut n);
            if n > 0 {
                e.metadata.insert(TRUNCATED_KEY.to_string(), n.to_string());
            }
        }
        if batch.steps.len() > self.max_steps {
            let mut per_trace: HashMap<(String, String), usize> = HashMap::new();
            let before = batch.steps.len();
            batch.steps.retain(|s| {
                let c = per_trace
                    .entry((s.app.clone(), s.trace_id.clone()))
                    .or_insert(0);
                *c += 1;
                *c <= self.max_steps
            });
            metrics::record_limited("steps", (before - batch.steps.len()) as u64);
        }
        for s in &mut batch.steps {
            let mut n = 0;
            self.opt(&mut s.input, &mut n);
            self.opt(&mut s.output, &mut n);
            self.opt(&mut s.reasoning, &mut n);
            self.opt(&mut s.error, &mut n);
            if s.candidates.len() > self.max_candidates {
                let dropped = s.candidates.len() - self.max_candidates;
                s.candidates.truncate(self.max_candidates);
                s.metadata
                    .insert(DROPPED_CANDIDATES_KEY.to_string(), dropped.to_string());
                metrics::record_limited("candidates", dropped as u64);
            }
            for c in &mut s.candidates {
                self.text(&mut c.id, &mut n);
                self.opt(&mut c.reason, &mut n);
            }
            self.metadata(&mut s.metadata, &mut n);
            if n > 0 {
                s.metadata.insert(TRUNCATED_KEY.to_string(), n.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_model::{CandidateDecision, Decision, Step, StepType};

    fn step(trace: &str, input: &str, candidates: usize) -> Step {
        let e = xray_store::testing::execution("default", trace, "p", 0, 0);
        Step {
            execution_id: String::new(),
            trace_id: trace.into(),
            input: Some(input.into()),
            metadata: (0..10).map(|i| (format!("k{i:02}"), "v".into())).collect(),
            candidates: (0..candidates)
                .map(|i| CandidateDecision {
                    id: format!("c{i}"),
                    decision: Decision::Accepted,
                    reason: None,
                    score: None,
                })
                .collect(),
            ..xray_store::testing::step(&e, "n", StepType::Custom, 0, 0)
        }
    }

    #[test]
    fn truncation_marks_the_cut_and_respects_char_boundaries() {
        let mut s = "é".repeat(100);
        assert!(truncate(&mut s, 64));
        assert!(s.len() <= 64 && s.len() >= 60, "{}", s.len());
        assert!(s.ends_with("…[truncated 160 bytes]"), "{s}");
        assert!(s.starts_with(&"é".repeat(20)));
        let mut short = "abc".to_string();
        assert!(!truncate(&mut short, 64));
    }

    #[test]
    fn caps_steps_candidates_metadata_and_text() {
        let l = Limits::new(&LimitsConfig {
            max_attribute_bytes: 100,
            max_attributes_per_span: 4,
            max_events_per_span: 0,
            max_steps_per_execution: 2,
            max_candidates_per_step: 3,
        });
        let mut b = MappedBatch {
            executions: vec![],
            steps: vec![
                step("a", &"x".repeat(1000), 10),
                step("a", "ok", 0),
                step("a", "ok", 0),
                step("b", "ok", 0),
            ],
        };
        l.apply(&mut b);
        assert_eq!(b.steps.len(), 3, "third step of trace a dropped");
        let s = &b.steps[0];
        assert!(s.input.as_ref().unwrap().len() <= 100);
        assert!(s.input.as_ref().unwrap().contains("…[truncated"));
        assert_eq!(s.candidates.len(), 3);
        assert_eq!(s.metadata[DROPPED_CANDIDATES_KEY], "7");
        assert_eq!(s.metadata[DROPPED_METADATA_KEY], "6");
        assert_eq!(s.metadata[TRUNCATED_KEY], "1");
    }
}
