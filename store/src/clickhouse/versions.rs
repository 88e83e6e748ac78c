//! Newest versions without sorting every row.
//!
//! Rows are re-sent (a running execution later completed, a retried batch),
//! so reads keep the newest version of each identity. Sorting every row for
//! that (`LIMIT 1 BY`) is most of the cost of an aggregation over a window,
//! while nearly every identity has a single row. So a read first asks for
//! the hashes of the identities with several rows, then reads the others as
//! they are and sorts only those.

use super::store::{Param, Sql};

/// An execution's identity `(app, execution_id)` hashed.
pub(super) const IDENTITY_HASH: &str = "cityHash64(app, execution_id)";

/// Up to this many hashes travel as a query parameter; beyond, every row is
/// deduplicated.
pub(super) const MAX_LISTED_HASHES: usize = 10_000;

/// The clause keeping the newest row of each `identity` (columns) of
/// `executions` or `steps`: highest version, then latest write. The one
/// statement of the rule every ClickHouse read applies.
pub(super) fn keep_newest(identity: &str) -> String {
    format!("ORDER BY version DESC, written DESC LIMIT 1 BY {identity}")
}

/// The hashes (`hash`, an expression) of the identities with several rows
/// among `FROM {table} WHERE {filter}`, at most one more than
/// [`MAX_LISTED_HASHES`] (so [`Versions::from_hashes`] sees when there are
/// too many).
pub(super) fn duplicates_sql(hash: &str, table: &str, filter: &str) -> String {
    format!(
        "SELECT {hash} AS h FROM {table} WHERE {filter} GROUP BY h HAVING count() > 1 LIMIT {}",
        MAX_LISTED_HASHES + 1
    )
}

/// How a read deduplicates versions: rows whose identity hash is not listed
/// are the only row of their identity and are read as they are; only the
/// listed ones go through `LIMIT 1 BY` (a sort). Exact whatever the hash:
/// two rows of one identity always share it.
#[derive(Clone)]
pub(super) enum Versions {
    /// These identity hashes may have several rows.
    Few(Vec<u64>),
    /// Too many to list: every row is deduplicated.
    Many,
}

impl Versions {
    pub(super) fn from_hashes(hashes: Vec<u64>) -> Self {
        if hashes.len() > MAX_LISTED_HASHES {
            Versions::Many
        } else {
            Versions::Few(hashes)
        }
    }

    /// `read` (a `SELECT … WHERE …`) keeping the newest version of each
    /// `identity` (columns), hashed by `hash`; `param` names the hashes.
    pub(super) fn newest(&self, read: &str, hash: &str, identity: &str, param: &str) -> String {
        let dedupe = keep_newest(identity);
        match self {
            Versions::Few(h) if h.is_empty() => read.to_string(),
            Versions::Few(_) => format!(
                "{read} AND {hash} NOT IN {{{param}:Array(UInt64)}} \
                 UNION ALL SELECT * FROM ({read} AND {hash} IN {{{param}:Array(UInt64)}} {dedupe})"
            ),
            Versions::Many => format!("{read} {dedupe}"),
        }
    }

    pub(super) fn bind(&self, sql: &mut Sql, param: &'static str) {
        if let Versions::Few(h) = self
            && !h.is_empty()
        {
            sql.bind(param, Param::U64s(h.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_identities_are_sorted() {
        let read = "SELECT a FROM t WHERE x";
        let none = Versions::from_hashes(vec![]);
        assert_eq!(none.newest(read, "h(a)", "a", "d"), read);
        let few = Versions::from_hashes(vec![7]).newest(read, "h(a)", "a", "d");
        assert_eq!(
            few,
            "SELECT a FROM t WHERE x AND h(a) NOT IN {d:Array(UInt64)} UNION ALL SELECT * FROM \
             (SELECT a FROM t WHERE x AND h(a) IN {d:Array(UInt64)} \
             ORDER BY version DESC, written DESC LIMIT 1 BY a)"
        );
        let many = Versions::from_hashes(vec![0; MAX_LISTED_HASHES + 1]);
        assert_eq!(
            many.newest(read, "h(a)", "a", "d"),
            "SELECT a FROM t WHERE x ORDER BY version DESC, written DESC LIMIT 1 BY a"
        );
    }
}
