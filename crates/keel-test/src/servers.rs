//! Where the test servers are: one definition of the default URLs, their environment
//! overrides, and which backends a run requires.
//!
//! | what | env | default |
//! |---|---|---|
//! | PostgreSQL server | `KEEL_TEST_POSTGRES_URL` | [`POSTGRES_URL`] |
//! | MySQL/MariaDB server | `KEEL_TEST_MYSQL_URL` | [`MYSQL_URL`] |
//! | required backends | `KEEL_REQUIRE_BACKENDS` (comma list: `postgres,mysql,sqlite`, and `redis` for the cache tests) | none |
//! | Redis server (cache tests) | `KEEL_TEST_REDIS_URL` | [`REDIS_URL`] |
//! | backends to run on | `KEEL_TEST_BACKENDS` (comma list) | all |
//! | PostgreSQL through a pooler | `KEEL_TEST_POSTGRES_POOLER_URL` | none |
//!
//! With `KEEL_TEST_POSTGRES_POOLER_URL` set (PgBouncer, say, with `?pgbouncer=true`), test
//! databases are still created and dropped on the server itself (`KEEL_TEST_POSTGRES_URL`:
//! `CREATE DATABASE` cannot run inside the transaction a transaction pooler needs), and the
//! tests' pools and URLs reach them through the pooler.
//!
//! A backend whose server is unreachable is skipped, with the reason, unless it is required:
//! then its tests fail.

use keel_pool::Backend;

/// The PostgreSQL server tests use by default (its maintenance database; test databases are
/// created beside it).
pub const POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

/// The MySQL/MariaDB server tests use by default.
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The Redis server the cache tests use by default.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Redis server for the cache tests: `KEEL_TEST_REDIS_URL`, or [`REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("KEEL_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.to_owned())
}

/// True when `KEEL_REQUIRE_BACKENDS` names `redis`: an unreachable Redis then fails the cache
/// tests instead of skipping them.
pub fn redis_required() -> bool {
    std::env::var("KEEL_REQUIRE_BACKENDS").unwrap_or_default().split(',').any(|s| s.trim() == "redis")
}

/// The SQLite database the repository's tools use when given no URL.
pub const SQLITE_URL: &str = "sqlite://keel.db";

/// Server URL for tests on `backend`: the `KEEL_TEST_*_URL` variable or its default.
/// `None` for SQLite, which needs no server.
pub fn server_url(backend: Backend) -> Option<String> {
    let (var, default) = match backend {
        Backend::Postgres => ("KEEL_TEST_POSTGRES_URL", POSTGRES_URL),
        Backend::Mysql => ("KEEL_TEST_MYSQL_URL", MYSQL_URL),
        Backend::Sqlite => return None,
    };
    Some(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
}

/// The URL tests reach `backend`'s test databases through, when it is not the server itself:
/// `KEEL_TEST_POSTGRES_POOLER_URL` for PostgreSQL.
pub fn pooler_url(backend: Backend) -> Option<String> {
    match backend {
        Backend::Postgres => std::env::var("KEEL_TEST_POSTGRES_POOLER_URL").ok().filter(|u| !u.is_empty()),
        _ => None,
    }
}

/// Whether tests run on `backend`: named in `KEEL_TEST_BACKENDS`, or that variable unset.
pub fn selected(backend: Backend) -> bool {
    match std::env::var("KEEL_TEST_BACKENDS") {
        Ok(list) if !list.trim().is_empty() => parse_backends(&list).contains(&backend),
        _ => true,
    }
}

/// Backends named in `KEEL_REQUIRE_BACKENDS`: for these an unreachable server fails the test.
pub fn required_backends() -> Vec<Backend> {
    parse_backends(&std::env::var("KEEL_REQUIRE_BACKENDS").unwrap_or_default())
}

/// Parses a comma list of backend names, ignoring blanks and unknown names.
pub fn parse_backends(list: &str) -> Vec<Backend> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_lists_parse() {
        assert_eq!(parse_backends("postgres, mysql,,sqlite"), Backend::ALL.to_vec());
        assert!(parse_backends("").is_empty());
    }
}
