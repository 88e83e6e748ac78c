//! Test support: a Postgres backend in a database of its own, created from
//! `XRAY_TEST_POSTGRES_URL` and dropped afterwards, so tests run in parallel.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use super::PostgresBackend;

/// Environment variable naming the Postgres server tests use.
pub const ENV: &str = "XRAY_TEST_POSTGRES_URL";

/// A migrated backend in a fresh database; the database is dropped when
/// this value is dropped.
#[derive(Debug)]
pub struct IsolatedPostgres {
    /// The backend.
    pub backend: PostgresBackend,
    /// URL of the fresh database.
    pub url: String,
    admin: PgConnectOptions,
    database: String,
}

/// A fresh, migrated database on the server of `XRAY_TEST_POSTGRES_URL`;
/// `None` when the variable is unset. Panics when the server is unusable
/// (a test environment problem, reported loudly).
pub async fn isolated() -> Option<IsolatedPostgres> {
    let url = std::env::var(ENV).ok().filter(|u| !u.trim().is_empty())?;
    Some(isolated_at(&url).await)
}

/// Like [`isolated`], but fails the calling test when the variable is unset.
pub async fn require() -> IsolatedPostgres {
    match isolated().await {
        Some(db) => db,
        None => panic!(
            "{ENV} is not set: run the tests through dev/test.sh (it starts the servers), \
             or set {ENV}=postgres://postgres@127.0.0.1:5432/test"
        ),
    }
}

/// A fresh, migrated database on the server of `url`.
pub async fn isolated_at(url: &str) -> IsolatedPostgres {
    let admin: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|e| panic!("{ENV} is not a valid postgres URL: {e}"));
    let database = format!("xray_test_{}", crate::testing_support::random_suffix());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to postgres at {ENV}: {e}"));
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {database}: {e}"));
    let _ = conn.close().await;
    let options = admin.clone().database(&database);
    let backend = PostgresBackend::connect_with(options, 4)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test database {database}: {e}"));
    backend
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating test database {database} failed: {e}"));
    let url = replace_database(url, &database);
    IsolatedPostgres {
        backend,
        url,
        admin,
        database,
    }
}

/// `url` with its database (path) replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| i + after_scheme)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for IsolatedPostgres {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let database = self.database.clone();
        // Dropping runs outside any async context: a thread with its own
        // runtime, joined so the database is gone when the test ends.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await.ok()?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            tracing::warn!(database = %self.database, "could not drop the postgres test database");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            super::replace_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://h", "x"),
            "postgres://h/x"
        );
    }
}
