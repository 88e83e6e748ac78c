//! Pure aggregation shared by the backends, so every store computes the same
//! figures: percentiles, the per-step pipeline funnel, and which steps of a
//! trace belong to which execution.

use std::collections::{BTreeMap, HashMap, HashSet};

use xray_model::{
    CandidateDecision, Execution, Rejections, Status, Step, StepType, merge_rejections,
};

use crate::PipelineStepStats;

/// Nearest-rank percentile of an ascending slice: the smallest value with at
/// least `p` of the values at or below it (`p` in `0.0..=1.0`).
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One step run, as the pipeline funnel needs it.
#[derive(Debug, Clone)]
pub struct FunnelRow {
    /// Step name.
    pub name: String,
    /// Step type.
    pub step_type: StepType,
    /// Step status.
    pub status: Status,
    /// The execution it belongs to (any key unique per execution).
    pub execution_key: String,
    /// Step duration, when ended.
    pub duration_ns: Option<i64>,
    /// Step start minus execution start.
    pub offset_ns: i64,
    /// Candidates in.
    pub candidates_in: Option<u64>,
    /// Candidates out.
    pub candidates_out: Option<u64>,
    /// Rejection histogram.
    pub rejections: Rejections,
    /// Sampled decisions.
    pub candidates: Vec<CandidateDecision>,
}

#[derive(Default)]
struct Acc {
    types: HashMap<StepType, u64>,
    executions: HashSet<String>,
    runs: u64,
    failed: u64,
    with_counts: u64,
    total_in: u64,
    total_out: u64,
    drop_sum: f64,
    drop_n: u64,
    durations: Vec<i64>,
    offset_sum: f64,
    rejections: BTreeMap<String, u64>,
}

/// The figures of one step name before the last step of the funnel: what a
/// store's query computes (sums and counts per step name, the two
/// percentiles, the merged rejection counts), from which
/// [`finish_funnel`] derives [`PipelineStepStats`] the same way on every
/// backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepTotals {
    /// Step name.
    pub name: String,
    /// Runs per step type.
    pub types: Vec<(StepType, u64)>,
    /// Distinct executions that ran a step of this name.
    pub executions: u64,
    /// Step rows.
    pub runs: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs that reported both counts.
    pub runs_with_counts: u64,
    /// Sum of `candidates_in` over the runs with both counts.
    pub total_in: u64,
    /// Sum of `candidates_out` over the runs with both counts.
    pub total_out: u64,
    /// Sum over runs with both counts and `in > 0` of `(in - out) / in`
    /// (`in - out` saturating at 0).
    pub drop_sum: f64,
    /// Number of runs in `drop_sum`.
    pub drop_n: u64,
    /// Sum of the runs' offsets from their execution's start, ns.
    pub offset_sum: f64,
    /// Nearest-rank median of the durations of the ended runs.
    pub p50_duration_ns: Option<i64>,
    /// Nearest-rank 95th percentile of the same.
    pub p95_duration_ns: Option<i64>,
    /// Rejection counts per reason, merged per run with
    /// [`merge_rejections`], in any order.
    pub rejections: Vec<(String, u64)>,
}

/// Aggregates step runs into the pipeline funnel, ordered by mean offset
/// (ties by name). See [`PipelineStepStats`] for each figure's definition.
pub fn pipeline_funnel(rows: impl IntoIterator<Item = FunnelRow>) -> Vec<PipelineStepStats> {
    let mut by_name: HashMap<String, Acc> = HashMap::new();
    for r in rows {
        let a = by_name.entry(r.name).or_default();
        *a.types.entry(r.step_type).or_default() += 1;
        a.executions.insert(r.execution_key);
        a.runs += 1;
        if r.status == Status::Failed {
            a.failed += 1;
        }
        if let (Some(i), Some(o)) = (r.candidates_in, r.candidates_out) {
            a.with_counts += 1;
            a.total_in += i;
            a.total_out += o;
            if i > 0 {
                a.drop_sum += i.saturating_sub(o) as f64 / i as f64;
                a.drop_n += 1;
            }
        }
        if let Some(d) = r.duration_ns {
            a.durations.push(d);
        }
        a.offset_sum += r.offset_ns as f64;
        for (reason, n) in merge_rejections(&r.rejections, &r.candidates) {
            *a.rejections.entry(reason).or_default() += n;
        }
    }
    finish_funnel(by_name.into_iter().map(|(name, mut a)| {
        a.durations.sort_unstable();
        StepTotals {
            name,
            types: a.types.into_iter().collect(),
            executions: a.executions.len() as u64,
            runs: a.runs,
            failed: a.failed,
            runs_with_counts: a.with_counts,
            total_in: a.total_in,
            total_out: a.total_out,
            drop_sum: a.drop_sum,
            drop_n: a.drop_n,
            offset_sum: a.offset_sum,
            p50_duration_ns: percentile(&a.durations, 0.50),
            p95_duration_ns: percentile(&a.durations, 0.95),
            rejections: a.rejections.into_iter().collect(),
        }
    }))
}

/// Turns per-name totals into the funnel: the most frequent step type (ties:
/// the first in [`StepType`] order), mean drop rate and offset, the top 20
/// rejection reasons (most frequent first, ties by reason), ordered by mean
/// offset (ties by name). Names with no runs are left out.
pub fn finish_funnel(totals: impl IntoIterator<Item = StepTotals>) -> Vec<PipelineStepStats> {
    let mut out: Vec<PipelineStepStats> = totals
        .into_iter()
        .filter(|t| t.runs > 0)
        .map(|t| {
            let step_type = t
                .types
                .iter()
                .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
                .map(|(t, _)| *t)
                .unwrap_or(StepType::Custom);
            let mut merged: BTreeMap<String, u64> = BTreeMap::new();
            for (reason, n) in t.rejections {
                *merged.entry(reason).or_default() += n;
            }
            let mut top: Vec<(String, u64)> = merged.into_iter().collect();
            top.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            top.truncate(20);
            PipelineStepStats {
                name: t.name,
                step_type,
                executions: t.executions,
                runs: t.runs,
                failed: t.failed,
                runs_with_counts: t.runs_with_counts,
                total_in: t.total_in,
                total_out: t.total_out,
                mean_drop_rate: (t.drop_n > 0).then(|| t.drop_sum / t.drop_n as f64),
                p50_duration_ns: t.p50_duration_ns,
                p95_duration_ns: t.p95_duration_ns,
                mean_offset_ns: t.offset_sum / t.runs as f64,
                top_rejections: top,
            }
        })
        .collect();
    out.sort_by(|x, y| {
        x.mean_offset_ns
            .total_cmp(&y.mean_offset_ns)
            .then_with(|| x.name.cmp(&y.name))
    });
    out
}

/// Picks, from all steps stored for a trace, the steps of `execution`.
///
/// Rules: a step whose span is itself an execution span of the trace is not a
/// step; when the trace holds several executions, a step belongs to the
/// execution whose span is its nearest ancestor, and steps with no execution
/// among their ancestors belong to the earliest execution. The result is
/// ordered by `(start_time_ns, span_id)`.
pub fn steps_of_execution(
    execution: &Execution,
    trace_executions: &[Execution],
    steps: Vec<Step>,
) -> Vec<Step> {
    let exec_spans: HashMap<&str, &Execution> = trace_executions
        .iter()
        .map(|e| (e.span_id.as_str(), e))
        .collect();
    let earliest = trace_executions
        .iter()
        .min_by(|a, b| (a.start_time_ns, &a.execution_id).cmp(&(b.start_time_ns, &b.execution_id)))
        .map(|e| e.execution_id.as_str())
        .unwrap_or(execution.execution_id.as_str());
    let parents: HashMap<&str, &str> = steps
        .iter()
        .map(|s| (s.span_id.as_str(), s.parent_span_id.as_str()))
        .collect();
    let owner = |s: &Step| -> &str {
        nearest_execution(
            &s.parent_span_id,
            parents.len(),
            |span| exec_spans.get(span).copied(),
            |span| parents.get(span).copied(),
        )
        .map_or(earliest, |e| e.execution_id.as_str())
    };
    let mut mine: Vec<Step> = steps
        .iter()
        .filter(|s| !exec_spans.contains_key(s.span_id.as_str()) && s.span_id != execution.span_id)
        .filter(|s| trace_executions.len() <= 1 || owner(s) == execution.execution_id)
        .cloned()
        .collect();
    mine.sort_by(|a, b| (a.start_time_ns, &a.span_id).cmp(&(b.start_time_ns, &b.span_id)));
    mine
}

/// The execution whose span is the nearest ancestor of a span whose parent
/// is `parent`: follows `parent_of` up the span tree, at most `max_hops`
/// hops, until `execution_at` names an execution span. `None` when the chain
/// ends, or leaves the spans `parent_of` knows, first.
///
/// The rule [`steps_of_execution`] applies to whole traces, and the
/// ClickHouse sink to each batch when it records a step's execution.
pub(crate) fn nearest_execution<'e, 's>(
    parent: &'s str,
    max_hops: usize,
    execution_at: impl Fn(&str) -> Option<&'e Execution>,
    parent_of: impl Fn(&str) -> Option<&'s str>,
) -> Option<&'e Execution> {
    let mut cur = parent;
    for _ in 0..=max_hops {
        if cur.is_empty() {
            return None;
        }
        if let Some(e) = execution_at(cur) {
            return Some(e);
        }
        cur = parent_of(cur)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 0.5), Some(20));
        assert_eq!(percentile(&v, 0.95), Some(40));
        assert_eq!(percentile(&v, 0.0), Some(10));
        assert_eq!(percentile(&[], 0.5), None);
        let w: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&w, 0.99), Some(99));
        assert_eq!(percentile(&w, 0.95), Some(95));
    }

    fn row(name: &str, exec: &str, i: Option<u64>, o: Option<u64>, offset: i64) -> FunnelRow {
        FunnelRow {
            name: name.into(),
            step_type: StepType::Filter,
            status: Status::Completed,
            execution_key: exec.into(),
            duration_ns: Some(offset + 10),
            offset_ns: offset,
            candidates_in: i,
            candidates_out: o,
            rejections: Rejections::new(),
            candidates: vec![],
        }
    }

    #[test]
    fn funnel_figures_are_exact() {
        let mut a = row("filter", "e1", Some(100), Some(25), 10);
        a.rejections.insert("price".into(), 75);
        let b = row("filter", "e2", Some(0), Some(0), 20);
        let c = row("filter", "e2", None, Some(3), 30);
        let d = row("search", "e1", None, Some(100), 0);
        let f = pipeline_funnel(vec![a, b, c, d]);
        assert_eq!(
            f.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["search", "filter"]
        );
        let filter = &f[1];
        assert_eq!(
            (filter.executions, filter.runs, filter.runs_with_counts),
            (2, 3, 2)
        );
        assert_eq!((filter.total_in, filter.total_out), (100, 25));
        assert_eq!(filter.mean_drop_rate, Some(0.75));
        assert_eq!(filter.top_rejections, vec![("price".to_string(), 75)]);
        assert_eq!(filter.mean_offset_ns, 20.0);
        assert_eq!(f[0].mean_drop_rate, None);
    }
}
