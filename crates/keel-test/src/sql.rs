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

/// Takes a lock on `table` that makes every other session's statement on it wait (PostgreSQL
/// `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` in a transaction, MySQL `LOCK TABLES … WRITE`), on a
/// connection of `side` that holds it until [`unlock`].
///
/// # Panics
/// When the lock cannot be taken (the test cannot go on).
pub async fn lock_table(side: &Pool, table: &str) -> Conn {
    let mut conn = side.get().await.expect("a connection for the lock");
    let sql = match side.backend() {
        Backend::Postgres => format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
        _ => format!("LOCK TABLES {table} WRITE"),
    };
    exec(&mut conn, &sql).await.expect("taking the lock");
    conn
}

/// Releases a lock taken by [`lock_table`].
///
/// # Panics
/// When the release fails.
pub async fn unlock(mut conn: Conn) {
    let sql = match conn.backend() {
        Backend::Postgres => "ROLLBACK",
        _ => "UNLOCK TABLES",
    };
    exec(&mut conn, sql).await.expect("releasing the lock");
}

/// Statements of this database's sessions waiting for a lock right now (PostgreSQL
/// `pg_stat_activity`, MySQL `PROCESSLIST`; the holder itself does not wait).
///
/// # Panics
/// When the server cannot be asked.
pub async fn waiting_for_locks(side: &Pool) -> i64 {
    let sql = match side.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND STATE LIKE '%lock%' AND COMMAND = 'Query'"
        }
    };
    crate::db::query_count(side, sql).await.expect("reading the server's sessions")
}

/// Polls `count` every 20 ms until it reads 0 or 2 s have passed; the last reading. For server
/// state that settles shortly after an event (a stopped statement leaving `pg_stat_activity`).
pub async fn settles_to_zero<F, Fut>(mut count: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let n = count().await;
        if n == 0 || std::time::Instant::now() > until {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
