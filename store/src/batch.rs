//! Batch preparation shared by the server backends.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use xray_model::{Execution, MappedBatch, Step};

/// The rows of `batch` with each identity once, in its newest version (the
/// later row wins on equal versions), in first-seen order.
///
/// Postgres needs it because one `INSERT … ON CONFLICT DO UPDATE` may not
/// touch a row twice; ClickHouse because reads break version ties by write
/// time, which is the same for every row of one insert.
pub(crate) fn newest_rows(batch: &MappedBatch) -> (Vec<&Execution>, Vec<&Step>) {
    (
        newest_by(
            &batch.executions,
            |e| (e.app.as_str(), e.execution_id.as_str(), ""),
            |e| e.version,
        ),
        newest_by(
            &batch.steps,
            |s| (s.app.as_str(), s.trace_id.as_str(), s.span_id.as_str()),
            |s| s.version,
        ),
    )
}

/// `rows` with each `key` once: the row with the highest `order`, the later
/// one on a tie, in first-seen order.
pub(crate) fn newest_by<T, K, O>(
    rows: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    order: impl Fn(&T) -> O,
) -> Vec<T>
where
    K: Hash + Eq,
    O: Ord,
{
    let rows = rows.into_iter();
    let mut slot: HashMap<K, usize> = HashMap::with_capacity(rows.size_hint().0);
    let mut out: Vec<T> = Vec::with_capacity(rows.size_hint().0);
    for row in rows {
        match slot.entry(key(&row)) {
            Entry::Occupied(i) => {
                let i = *i.get();
                if order(&row) >= order(&out[i]) {
                    out[i] = row;
                }
            }
            Entry::Vacant(v) => {
                v.insert(out.len());
                out.push(row);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_model::{Metadata, Rejections, Status, StepType};

    fn step(span: &str, version: u64, name: &str) -> Step {
        Step {
            app: "a".into(),
            execution_id: String::new(),
            trace_id: "t".into(),
            span_id: span.into(),
            parent_span_id: String::new(),
            name: name.into(),
            step_type: StepType::Custom,
            status: Status::Completed,
            service: String::new(),
            start_time_ns: 0,
            end_time_ns: None,
            input: None,
            output: None,
            reasoning: None,
            metadata: Metadata::new(),
            candidates_in: None,
            candidates_out: None,
            rejections: Rejections::new(),
            candidates: vec![],
            model: None,
            provider: None,
            input_tokens: None,
            output_tokens: None,
            cost: None,
            confidence: None,
            error: None,
            version,
        }
    }

    #[test]
    fn keeps_newest_and_later_on_ties() {
        let batch = MappedBatch {
            executions: vec![],
            steps: vec![
                step("s1", 2, "new"),
                step("s2", 1, "first"),
                step("s1", 1, "old"),
                step("s2", 1, "second"),
            ],
        };
        let (_, steps) = newest_rows(&batch);
        let names: Vec<_> = steps
            .iter()
            .map(|s| (s.span_id.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(names, [("s1", "new"), ("s2", "second")]);
    }
}
