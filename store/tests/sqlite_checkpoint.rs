//! WAL checkpoints of the SQLite backend run on their own thread: after a
//! write, the committed pages reach the database file without the writer
//! checkpointing (its own threshold, 64 MiB of WAL, is far above what these
//! tests write), and writes work from both kinds of tokio runtime (in place
//! on a multi-threaded one, on the blocking pool on a current-thread one).

use std::time::{Duration, Instant};

use xray_model::{MappedBatch, StepType};
use xray_store::sqlite::SqliteBackend;
use xray_store::testing::{execution, step};
use xray_store::{Scope, Sink, Store};

const T0: i64 = 1_700_000_000_000_000_000;

/// `n` executions with two steps each, with about 4 KB of text per row so
/// the batch spans a few hundred 16 KiB pages.
fn batch(n: usize) -> MappedBatch {
    let text = "x".repeat(4_000);
    let mut b = MappedBatch::default();
    for i in 0..n {
        let mut e = execution(
            "default",
            &format!("exec-{i}"),
            "shop",
            T0 + i as i64,
            1_000,
        );
        e.input = Some(text.clone());
        for (k, name) in ["search", "rank"].into_iter().enumerate() {
            let mut s = step(&e, name, StepType::Retrieval, k as i64 * 10, 5);
            s.output = Some(text.clone());
            b.steps.push(s);
        }
        b.executions.push(e);
    }
    b
}

/// Pages of the main database file (not counting the WAL).
fn db_pages(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) / 16_384
}

async fn writes_reach_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xray.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let before = db_pages(&path);
    backend.write(&batch(300)).await.unwrap();

    // 900 rows of ~4 KB (about 220 pages): at least 150 more pages once
    // checkpointed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db_pages(&path) < before + 150 {
        assert!(
            Instant::now() < deadline,
            "the WAL was not checkpointed into {} within 30 s ({} pages, {} before the write)",
            path.display(),
            db_pages(&path),
            before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let scope = Scope::App("default".into());
    let detail = backend
        .get_execution(&scope, "exec-299")
        .await
        .unwrap()
        .expect("exec-299 stored");
    assert_eq!(detail.steps.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointed_by_the_background_thread_on_a_multi_thread_runtime() {
    writes_reach_the_database_file().await;
}

#[tokio::test(flavor = "current_thread")]
async fn checkpointed_by_the_background_thread_on_a_current_thread_runtime() {
    writes_reach_the_database_file().await;
}
