//! The ClickHouse schema: the embedded migration templates of
//! `migrations/clickhouse/` and their rendering for one deployment (database,
//! TTL, optional cluster).
//!
//! Only validated identifiers and numbers are substituted into the templates;
//! the database and cluster names come from the configuration and must match
//! `[A-Za-z_][A-Za-z0-9_]*` (cluster names may also hold `-` and `.`), so no
//! configuration value can change the meaning of a statement.

pub(crate) mod migrate;

use crate::StoreError;

/// Embedded migrations: `(version, name, template)`, in order.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../../migrations/clickhouse/0001_init.sql"),
    ),
    (
        2,
        "0002_steps_by_span.sql",
        include_str!("../../../../migrations/clickhouse/0002_steps_by_span.sql"),
    ),
    (
        3,
        "0003_steps_by_trace.sql",
        include_str!("../../../../migrations/clickhouse/0003_steps_by_trace.sql"),
    ),
    (
        4,
        "0004_funnel_attribution.sql",
        include_str!("../../../../migrations/clickhouse/0004_funnel_attribution.sql"),
    ),
    (
        5,
        "0005_trace_rows.sql",
        include_str!("../../../../migrations/clickhouse/0005_trace_rows.sql"),
    ),
];

/// What a rendering depends on: database, TTL and cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    database: String,
    cluster: Option<String>,
    ttl_days: u32,
}

fn valid_identifier(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
        && s.len() <= 128
}

impl SchemaOptions {
    /// Validates the names. `cluster` empty means single node; `ttl_days` 0
    /// keeps data forever.
    pub fn new(database: &str, cluster: &str, ttl_days: u32) -> Result<Self, StoreError> {
        if !valid_identifier(database, &[]) {
            return Err(StoreError::InvalidArgument(format!(
                "storage.clickhouse.database {database:?} must be letters, digits and '_' \
                 and not start with a digit"
            )));
        }
        let cluster = match cluster.trim() {
            "" => None,
            c if valid_identifier(c, &['-', '.']) => Some(c.to_string()),
            c => {
                return Err(StoreError::InvalidArgument(format!(
                    "storage.clickhouse.cluster {c:?} must be letters, digits, '_', '-' and '.' \
                     and start with a letter or '_'"
                )));
            }
        };
        Ok(Self {
            database: database.to_string(),
            cluster,
            ttl_days,
        })
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The cluster name in clustered mode.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// `ON CLUSTER \`name\`` or nothing.
    pub fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!("ON CLUSTER `{c}`"))
            .unwrap_or_default()
    }

    /// The back-quoted database.
    pub fn db(&self) -> String {
        format!("`{}`", self.database)
    }

    fn local(&self, name: &str) -> String {
        if self.cluster.is_some() {
            format!("{name}_local")
        } else {
            name.to_string()
        }
    }

    /// Renders one template into its statements.
    pub fn render(&self, template: &str) -> Result<Vec<String>, StoreError> {
        let body: String = template
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = Vec::new();
        for raw in body.split(";\n").chain(std::iter::once("")) {
            let stmt = raw.trim().trim_end_matches(';').trim();
            if stmt.is_empty() {
                continue;
            }
            if let Some(rest) = stmt.strip_prefix("DISTRIBUTED ") {
                if let Some(s) = self.distributed(rest)? {
                    out.push(s);
                }
                continue;
            }
            out.push(self.substitute(stmt)?);
        }
        Ok(out)
    }

    fn distributed(&self, spec: &str) -> Result<Option<String>, StoreError> {
        let (name, key) = spec
            .split_once(" BY ")
            .ok_or_else(|| template_error(format!("bad DISTRIBUTED statement: {spec}")))?;
        let name = name.trim();
        if !valid_identifier(name, &[]) {
            return Err(template_error(format!("bad table name {name:?}")));
        }
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        Ok(Some(format!(
            "CREATE TABLE IF NOT EXISTS {db}.`{name}` {on} AS {db}.`{name}_local` \
             ENGINE = Distributed('{cluster}', '{database}', '{name}_local', {key})",
            db = self.db(),
            on = self.on_cluster(),
            database = self.database,
            key = key.trim(),
        )))
    }

    fn substitute(&self, stmt: &str) -> Result<String, StoreError> {
        let mut out = String::with_capacity(stmt.len() + 64);
        let mut rest = stmt;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| template_error("unterminated ${".into()))?
                + start;
            let token = &rest[start + 2..end];
            let replicated = self.cluster.is_some();
            let value = match token.split_once(':') {
                None => match token {
                    "db" => self.db(),
                    "on_cluster" => self.on_cluster(),
                    "ReplacingMergeTree" if replicated => "ReplicatedReplacingMergeTree".into(),
                    "ReplacingMergeTree" => "ReplacingMergeTree".into(),
                    "MergeTree" if replicated => "ReplicatedMergeTree".into(),
                    "MergeTree" => "MergeTree".into(),
                    other => return Err(template_error(format!("unknown placeholder {other}"))),
                },
                Some(("local", name)) if valid_identifier(name, &[]) => {
                    format!("`{}`", self.local(name))
                }
                Some(("ttl", column)) if valid_identifier(column, &[]) => {
                    if self.ttl_days == 0 {
                        String::new()
                    } else {
                        format!("TTL toDateTime({column}) + INTERVAL {} DAY", self.ttl_days)
                    }
                }
                _ => return Err(template_error(format!("unknown placeholder {token}"))),
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn template_error(message: String) -> StoreError {
    StoreError::Backend(format!("clickhouse migration template: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_that_are_not_identifiers() {
        assert!(SchemaOptions::new("xray", "", 30).is_ok());
        assert!(SchemaOptions::new("x_ray2", "prod-cluster.eu", 30).is_ok());
        for bad in ["", "1x", "x-y", "x`y", "x; DROP TABLE t", "x.y", "x y"] {
            assert!(SchemaOptions::new(bad, "", 30).is_err(), "{bad}");
        }
        assert!(SchemaOptions::new("xray", "c`; DROP", 30).is_err());
        assert!(SchemaOptions::new("xray", "c'x", 30).is_err());
    }

    #[test]
    fn single_node_rendering() {
        let o = SchemaOptions::new("xray", "", 7).unwrap();
        let stmts = o.render(MIGRATIONS[0].2).unwrap();
        assert!(
            stmts
                .iter()
                .all(|s| !s.contains("${") && !s.contains("DISTRIBUTED"))
        );
        let exec = &stmts[0];
        assert!(
            exec.starts_with("CREATE TABLE IF NOT EXISTS `xray`.`executions`"),
            "{exec}"
        );
        assert!(exec.contains("ENGINE = ReplacingMergeTree(version)"));
        assert!(exec.contains("TTL toDateTime(start_time) + INTERVAL 7 DAY"));
        assert!(!exec.contains("ON CLUSTER"));
        let forever = SchemaOptions::new("xray", "", 0).unwrap();
        assert!(
            forever
                .render(MIGRATIONS[0].2)
                .unwrap()
                .iter()
                .all(|s| !s.contains("TTL"))
        );
    }

    #[test]
    fn clustered_rendering() {
        let o = SchemaOptions::new("xray", "main", 30).unwrap();
        let stmts = o.render(MIGRATIONS[0].2).unwrap();
        assert!(stmts[0].contains("`xray`.`executions_local` ON CLUSTER `main`"));
        assert!(stmts[0].contains("ReplicatedReplacingMergeTree(version)"));
        assert!(stmts[1].contains(
            "Distributed('main', 'xray', 'executions_local', cityHash64(app, trace_id))"
        ));
        assert!(stmts.iter().all(|s| s.contains("ON CLUSTER `main`")));
    }
}
