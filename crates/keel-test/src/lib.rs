//! keel-test: what keel's tests (and yours) need to run against real servers.
//!
//! What it is for: a database of the test's own on every backend, dropped when the test passes
//! and kept (its name printed) when it fails; running one test body on every reachable backend;
//! a TCP proxy that cuts connections without touching the real server; and the results file
//! that `cargo xtask test` reads to print per-backend counts — written and read by this crate
//! only, so its format has one definition. What it is not for: production code (nothing here
//! is tuned or hardened for it) and mocks (there are none: every test talks to a real server).
//!
//! Modules:
//! - [`servers`]: the default server URLs, `KEEL_TEST_*_URL` overrides, `KEEL_REQUIRE_BACKENDS`.
//! - [`db`]: [`TestDb`], [`test_db`], [`run_on`], [`for_each_backend`], leftover listing.
//! - [`report`]: the results file (`results.tsv`): [`report::record`] and [`report::read`].
//! - [`sql`]: raw SQL on a pool, side pools, terminating a session.
//! - [`proxy`]: [`Proxy`], a fault-injecting TCP proxy bound to `127.0.0.1:0`.
//! - [`instances`]: [`instances::PgInstance`], [`instances::MariaInstance`]: servers of a test's own
//!   with TLS, and [`instances::TestCa`], the certificates for them.
//! - [`cluster`]: a local PostgreSQL primary, streaming replica and PgBouncer ([`cluster::up`],
//!   [`cluster::down`], [`cluster::status`]), shared by the tests that need one; `cargo xtask
//!   cluster` drives it.
//! - [`http`]: [`http::Response`], an HTTP response as API tests check it (leaks, error bodies).
//!
//! A test names no label: the label is the running test's name (libtest names the thread that
//! runs a test after it).
//!
//! ```no_run
//! #[tokio::test(flavor = "multi_thread")]
//! async fn counts_users() {
//!     # const MIGRATIONS: keel_pool::Migrations = keel_pool::Migrations::embedded("m", None, None, None);
//!     keel_test::for_each_backend(&MIGRATIONS, |pool| async move {
//!         let _conn = pool.get().await.unwrap();
//!     })
//!     .await;
//! }
//! ```

pub mod cluster;
pub mod db;
pub mod http;
pub mod instances;
pub mod proxy;
pub mod report;
pub mod servers;
pub mod sql;

pub use db::{
    PREFIX, TEMPLATE_PREFIX, TestDb, TestDbError, count_rows, current_test, for_each_backend,
    leftover_databases, prepare_postgres_template, query_count, run_on, template_name, test_db,
};
pub use proxy::{CommitFault, Proxy, server_addr};
pub use servers::{required_backends, server_url};
pub use sql::{
    exec, exec_on, lock_table, pool_with, settles_to_zero, side_pool, terminate, unlock, waiting_for_locks,
};
