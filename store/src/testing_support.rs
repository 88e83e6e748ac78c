//! Helpers shared by the backends' test support modules.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// 16 random hex characters, for database names of isolated tests.
pub(crate) fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
    ));
    format!("{h:016x}")
}
