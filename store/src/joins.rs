//! Joins of executions and steps shared by the server backends (Postgres,
//! ClickHouse): they fetch the rows of the traces involved and attach steps
//! to executions with [`aggregate::steps_of_execution`], so every backend
//! counts and aggregates exactly like the others.

use std::collections::HashMap;

use xray_model::{Execution, Step};

use crate::aggregate::{self, FunnelRow};

type TraceKey = (String, String);

/// Executions and steps of each `(app, trace_id)`.
#[derive(Default)]
pub(crate) struct Traces {
    map: HashMap<TraceKey, (Vec<Execution>, Vec<Step>)>,
}

impl Traces {
    /// Groups rows by `(app, trace_id)`.
    pub(crate) fn new(executions: Vec<Execution>, steps: Vec<Step>) -> Self {
        let mut map: HashMap<TraceKey, (Vec<Execution>, Vec<Step>)> = HashMap::new();
        for e in executions {
            map.entry((e.app.clone(), e.trace_id.clone()))
                .or_default()
                .0
                .push(e);
        }
        for s in steps {
            map.entry((s.app.clone(), s.trace_id.clone()))
                .or_default()
                .1
                .push(s);
        }
        Self { map }
    }

    /// Every execution held.
    pub(crate) fn executions(&self) -> impl Iterator<Item = &Execution> {
        self.map.values().flat_map(|(e, _)| e.iter())
    }

    /// The steps of `execution`, ordered by `(start_time_ns, span_id)`.
    pub(crate) fn steps_of(&self, execution: &Execution) -> Vec<Step> {
        match self
            .map
            .get(&(execution.app.clone(), execution.trace_id.clone()))
        {
            Some((execs, steps)) => {
                let execs: &[Execution] = if execs.is_empty() {
                    std::slice::from_ref(execution)
                } else {
                    execs
                };
                aggregate::steps_of_execution(execution, execs, steps.clone())
            }
            None => Vec::new(),
        }
    }

    /// Funnel rows of the steps of each of `executions`.
    pub(crate) fn funnel_rows(&self, executions: &[Execution]) -> Vec<FunnelRow> {
        let mut rows = Vec::new();
        for e in executions {
            let key = format!("{}\u{0}{}", e.app, e.execution_id);
            for s in self.steps_of(e) {
                rows.push(FunnelRow {
                    duration_ns: s.duration_ns(),
                    offset_ns: s.start_time_ns - e.start_time_ns,
                    name: s.name,
                    step_type: s.step_type,
                    status: s.status,
                    execution_key: key.clone(),
                    candidates_in: s.candidates_in,
                    candidates_out: s.candidates_out,
                    rejections: s.rejections,
                    candidates: s.candidates,
                });
            }
        }
        rows
    }
}

/// The trace id `id` stands for when it is 32 hex characters (any case):
/// lower-cased, as trace ids are stored.
pub(crate) fn as_trace_id(id: &str) -> Option<String> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// Picks the execution `get_execution(id)` returns among `candidates`: an
/// execution-id match first (the earliest start, then `(app,
/// execution_id)`), else the earliest execution of the trace `id` names.
pub(crate) fn pick_execution(id: &str, candidates: Vec<Execution>) -> Option<Execution> {
    let trace = as_trace_id(id);
    let mut candidates: Vec<Execution> = candidates
        .into_iter()
        .filter(|e| e.execution_id == id || trace.as_deref() == Some(e.trace_id.as_str()))
        .collect();
    candidates.sort_by(|a, b| {
        (
            a.execution_id != id,
            a.start_time_ns,
            &a.app,
            &a.execution_id,
        )
            .cmp(&(
                b.execution_id != id,
                b.start_time_ns,
                &b.app,
                &b.execution_id,
            ))
    });
    candidates.into_iter().next()
}
