//! The dead-letter file: batches the primary store rejected permanently
//! (bad data, type mismatch), one JSON object a line, with the reason.
//!
//! ```json
//! {"time_unix_ns":1700000000000000000,"sink":"postgres","reason":"…","rows":3,"batch":{"executions":[…],"steps":[…]}}
//! ```
//!
//! Nothing reads it back automatically: an operator inspects it, fixes the
//! cause and may re-send the rows.

use std::io::Write;
use std::path::{Path, PathBuf};

use xray_model::MappedBatch;

/// File name inside the spool directory.
pub(crate) const FILE_NAME: &str = "dead-letter.jsonl";

/// One line of the dead-letter file.
#[derive(serde::Serialize)]
struct Line<'a> {
    time_unix_ns: i64,
    sink: &'a str,
    reason: &'a str,
    rows: usize,
    batch: &'a MappedBatch,
}

/// Appends batches to `<dir>/dead-letter.jsonl`.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    /// The dead-letter file of spool directory `dir`.
    pub(crate) fn new(dir: &Path) -> DeadLetter {
        DeadLetter {
            path: dir.join(FILE_NAME),
        }
    }

    /// Appends `batch` with `reason` and syncs the file.
    pub(crate) fn append(
        &self,
        sink: &str,
        reason: &str,
        batch: &MappedBatch,
        now_ns: i64,
    ) -> std::io::Result<()> {
        let line = Line {
            time_unix_ns: now_ns,
            sink,
            reason,
            rows: batch.len(),
            batch,
        };
        let mut text = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&text)?;
        f.sync_data()
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
