//! Raw SQL helpers for tests: statements on a pooled connection, a second pool on the same
//! database, and terminating a session from the side (PostgreSQL `pg_terminate_backend`,
//! MySQL `KILL`).

use diesel_async::SimpleAsyncConnection as _;
use keel_pool::{Backend, Config, Conn, Pool, with_conn};
/// Runs `sql` (one or more statements) on `conn`.
pub async fn exec(conn: &mut Conn, sql: &str) -> Result<(), keel_pool::Error> {
    with_conn!(conn, |c| c.batch_execute(sql).await)
}

/// Runs `sql` on a connection from `pool`.
pub async fn exec_on(pool: &Pool, sql: &str) -> Result<(), keel_pool::Error> {
    exec(&mut pool.get().await?, sql).await
}

/// Another pool on the same database as `pool`, configured by `adjust`.
///
/// # Panics
/// When the second pool cannot connect (the first one just did, so the test cannot go on).
pub async fn pool_with(pool: &Pool, adjust: impl FnOnce(Config) -> Config) -> Pool {
    let config = Config::new(pool.config().url().expose_secret()).expect("the pool's own URL parses");
    Pool::connect(adjust(config)).await.unwrap_or_else(|e| panic!("a second pool on the test database: {e}"))
}

/// A second pool on the same database, for acting on the first one's sessions from the side.
pub async fn side_pool(pool: &Pool) -> Pool {
    pool_with(pool, |c| c.max_size(2)).await
}

/// Ends the server session `server_id` (PostgreSQL `pg_terminate_backend`, MySQL `KILL`).
pub async fn terminate(side: &Pool, server_id: u64) {
    let sql = match side.backend() {
        Backend::Postgres => format!("SELECT pg_terminate_backend({server_id})"),
        Backend::Mysql => format!("KILL {server_id}"),
        Backend::Sqlite => return,
    };
    let _ = exec_on(side, &sql).await;
}
