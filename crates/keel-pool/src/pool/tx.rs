//! Transactions that retry correctly: [`Pool::transaction`], [`Pool::transaction_with`] and
//! [`TxOptions`].
//!
//! The closure is a factory (`Fn`) returning a scoped boxed future (`async move { … }.scope_boxed()`,
//! with [`ScopedFutureExt`](crate::ScopedFutureExt); it may borrow local variables): each attempt runs it again from the start, on a healthy
//! connection, inside a fresh transaction. An attempt is retried when it fails with a transient
//! error (serialization failure, deadlock, lock timeout, lost connection…, including those
//! reported at `COMMIT`), within the [`RetryPolicy`]. Errors the closure returns that are not
//! database errors (say, "insufficient funds") are never retried.
//!
//! A connection lost while `COMMIT` was in flight is ambiguous: the server may have committed.
//! keel then returns [`ErrorKind::CommitOutcomeUnknown`](crate::ErrorKind::CommitOutcomeUnknown) instead of running the work a second
//! time, unless the transaction is marked [`idempotent`](TxOptions::idempotent) — e.g. it writes
//! a row with a unique idempotency key, so a second run cannot apply twice:
//!
//! ```no_run
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl;
//! use keel_pool::{with_conn, Isolation, ScopedFutureExt, TxOptions};
//! use keel_schema::schema::accounts;
//!
//! # async fn demo(pool: keel_pool::Pool, id: keel_schema::Id) -> Result<(), keel_pool::Error> {
//! let options = TxOptions::new().isolation(Isolation::Serializable);
//! let balance: i64 = pool
//!     .transaction_with(options, |conn| {
//!         async move {
//!             with_conn!(conn, |c| accounts::table.find(id).select(accounts::balance_cents).first(c).await)
//!         }
//!         .scope_boxed()
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The idempotent case: the transfer row carries the caller's idempotency key (unique), and the
//! closure first checks whether that key was already applied — so if a commit was lost in
//! flight and did happen, the retry finds the row and does nothing:
//!
//! ```no_run
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl;
//! use keel_pool::{with_conn, ScopedFutureExt, TxOptions};
//! use keel_schema::{schema::transfers, NewTransfer};
//!
//! # async fn demo(pool: keel_pool::Pool, row: NewTransfer) -> Result<(), keel_pool::Error> {
//! pool.transaction_with(TxOptions::new().idempotent(true), |conn| {
//!     let row = row.clone();
//!     async move {
//!         let done: i64 = with_conn!(conn, |c| transfers::table
//!             .filter(transfers::idempotency_key.eq(&row.idempotency_key))
//!             .count()
//!             .get_result(c)
//!             .await)?;
//!         if done == 0 {
//!             // … debit, credit …
//!             with_conn!(conn, |c| diesel::insert_into(transfers::table).values(&row).execute(c).await)?;
//!         }
//!         Ok::<_, keel_pool::Error>(())
//!     }
//!     .scope_boxed()
//! })
//! .await
//! # }
//! ```

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use diesel_async::{AnsiTransactionManager, SimpleAsyncConnection as _, TransactionManager};
use scoped_futures::ScopedBoxFuture;

use crate::conn::Conn;
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::retry::RetryPolicy;
use crate::url::Backend;

/// Transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// Whatever the server uses (PostgreSQL: read committed; MySQL/MariaDB: repeatable read;
    /// SQLite: serializable). Saves a statement on MySQL.
    #[default]
    ServerDefault,
    /// `READ COMMITTED` (SQLite is always serializable).
    ReadCommitted,
    /// `REPEATABLE READ` (PostgreSQL: snapshot isolation).
    RepeatableRead,
    /// `SERIALIZABLE`: conflicts surface as serialization failures (PostgreSQL) or deadlocks
    /// and lock timeouts (MySQL), which keel retries.
    Serializable,
}

impl Isolation {
    fn sql(self) -> Option<&'static str> {
        match self {
            Isolation::ServerDefault => None,
            Isolation::ReadCommitted => Some("READ COMMITTED"),
            Isolation::RepeatableRead => Some("REPEATABLE READ"),
            Isolation::Serializable => Some("SERIALIZABLE"),
        }
    }
}

/// How to run a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxOptions {
    /// Isolation level (default: the server's).
    pub isolation: Isolation,
    /// Refuse writes: PostgreSQL and MySQL `READ ONLY`, SQLite `PRAGMA query_only`.
    pub read_only: bool,
    /// Running the closure twice cannot apply its effect twice (it writes with a unique key), so
    /// a commit with an unknown outcome is retried instead of reported.
    pub idempotent: bool,
    /// Retry policy for this transaction (default: the pool's).
    pub retry: Option<RetryPolicy>,
}

impl TxOptions {
    /// Defaults: server isolation, read-write, not idempotent, the pool's retry policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the isolation level.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Makes the transaction read-only.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Marks the transaction idempotent (see the type docs).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Uses this retry policy instead of the pool's.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// The statement to run before `BEGIN` (if any) and the `BEGIN` itself, for `backend`.
    fn begin_sql(&self, backend: Backend) -> (Option<String>, String) {
        match backend {
            Backend::Postgres => {
                let mut sql = "BEGIN".to_owned();
                if let Some(level) = self.isolation.sql() {
                    sql.push_str(" ISOLATION LEVEL ");
                    sql.push_str(level);
                }
                if self.read_only {
                    sql.push_str(" READ ONLY");
                }
                (None, sql)
            }
            // MySQL has no isolation clause on START TRANSACTION: SET TRANSACTION applies to
            // the next transaction only.
            Backend::Mysql => (
                self.isolation.sql().map(|level| format!("SET TRANSACTION ISOLATION LEVEL {level}")),
                if self.read_only { "START TRANSACTION READ ONLY" } else { "START TRANSACTION" }.to_owned(),
            ),
            // Writers take the write lock at BEGIN, so a busy database fails there (and is
            // retried) rather than half-way through.
            Backend::Sqlite => {
                if self.read_only {
                    (Some("PRAGMA query_only = 1".to_owned()), "BEGIN DEFERRED".to_owned())
                } else {
                    (None, "BEGIN IMMEDIATE".to_owned())
                }
            }
        }
    }
}

/// Error types a transaction closure may return: keel's [`Error`], or a domain error that can
/// carry one. Only the keel errors it carries are considered for retry.
///
/// ```
/// #[derive(Debug)]
/// enum TransferError { InsufficientFunds, Db(keel_pool::Error) }
/// impl From<keel_pool::Error> for TransferError {
///     fn from(e: keel_pool::Error) -> Self { TransferError::Db(e) }
/// }
/// impl keel_pool::TxError for TransferError {
///     fn as_keel_error(&self) -> Option<&keel_pool::Error> {
///         match self { TransferError::Db(e) => Some(e), _ => None }
///     }
/// }
/// ```
pub trait TxError: From<Error> {
    /// The keel error inside, if this is one.
    fn as_keel_error(&self) -> Option<&Error>;
}

impl TxError for Error {
    fn as_keel_error(&self) -> Option<&Error> {
        Some(self)
    }
}

impl Pool {
    /// Runs `f` in a transaction with default [`TxOptions`], retrying transient failures. See
    /// the [module docs](crate::pool::tx).
    pub async fn transaction<'a, T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> Fn(&'c mut Conn) -> ScopedBoxFuture<'a, 'c, Result<T, E>> + 'a,
        E: TxError + 'a,
        T: 'a,
    {
        self.transaction_with(TxOptions::default(), f).await
    }

    /// Runs `f` in a transaction with `options`, retrying transient failures.
    pub async fn transaction_with<'a, T, E, F>(&self, options: TxOptions, f: F) -> Result<T, E>
    where
        F: for<'c> Fn(&'c mut Conn) -> ScopedBoxFuture<'a, 'c, Result<T, E>> + 'a,
        E: TxError + 'a,
        T: 'a,
    {
        if options.read_only
            && self.inner.replicas.is_some()
            && let Some(replica) = self.read_route().await?.replica_pool()
        {
            // A read-only transaction runs on a replica; if that replica fails as a server,
            // on the primary.
            match replica.retrying(&options, &f).await {
                Err(err) if err.as_keel_error().is_some_and(super::replicas::replica_trouble) => {}
                done => return done,
            }
        }
        self.retrying(&options, &f).await
    }

    /// The attempts of one transaction on this pool, with backoff, within the retry policy.
    async fn retrying<'a, T, E, F>(&self, options: &TxOptions, f: &F) -> Result<T, E>
    where
        F: for<'c> Fn(&'c mut Conn) -> ScopedBoxFuture<'a, 'c, Result<T, E>> + 'a,
        E: TxError + 'a,
        T: 'a,
    {
        let policy = options.retry.clone().unwrap_or_else(|| self.config().retry.clone());
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let err = match self.attempt(options, f).await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let Some(kind) = err.as_keel_error().filter(|e| retried(e)).map(Error::kind) else {
                return Err(err);
            };
            if crate::pool::cancel::cancelled() {
                return Err(err); // the caller went away: nobody waits for another attempt
            }
            let Some(backoff) = policy.backoff(attempt, started.elapsed()) else {
                if let Some(e) = err.as_keel_error() {
                    tracing::warn!(target: "keel_pool::retry", attempt, kind = kind.as_str(), error = %e, "transaction failed; retries exhausted");
                }
                return Err(err);
            };
            self.shared().counters.record_retry(kind);
            if let Some(e) = err.as_keel_error() {
                tracing::info!(
                    target: "keel_pool::retry",
                    attempt,
                    kind = kind.as_str(),
                    backoff_ms = backoff.as_millis() as u64,
                    error = %e,
                    "transaction failed transiently; retrying"
                );
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    async fn attempt<'a, T, E, F>(&self, options: &TxOptions, f: &F) -> Result<T, E>
    where
        F: for<'c> Fn(&'c mut Conn) -> ScopedBoxFuture<'a, 'c, Result<T, E>> + 'a,
        E: TxError + 'a,
        T: 'a,
    {
        let shared = self.shared();
        // A read-only transaction writes nothing: a causal session owes no token for it.
        let mut conn = if options.read_only { self.checkout().await? } else { self.get().await? };
        let backend = conn.backend();
        shared.counters.transactions.fetch_add(1, Relaxed);
        let (before, mut begin_sql) = options.begin_sql(backend);
        if self.config().is_pgbouncer() {
            begin_sql = pgbouncer_begin_sql(&begin_sql, self.config().statement_timeout);
        }
        let begun = begin(&mut conn, before, begin_sql).await;
        if let Err(e) = begun {
            let err = crate::classify(backend, e);
            conn.observe(&err);
            reset_session(&mut conn, options).await;
            return Err(err.into());
        }
        match f(&mut conn).await {
            Ok(value) => {
                let committed: diesel::QueryResult<()> =
                    crate::with_conn_raw!(&mut conn, |c| commit(c).await);
                reset_session(&mut conn, options).await;
                match committed {
                    Ok(()) => {
                        if !options.read_only {
                            super::replicas::note_commit(self, &mut conn).await;
                        }
                        Ok(value)
                    }
                    Err(e) => {
                        let err = crate::classify(backend, e);
                        conn.observe(&err);
                        let lost = crate::manager::breaks_connection(err.kind());
                        if lost && !options.idempotent {
                            shared.counters.commits_unknown.fetch_add(1, Relaxed);
                            return Err(Error::CommitOutcomeUnknown { source: Box::new(err) }.into());
                        }
                        Err(err.into())
                    }
                }
            }
            Err(err) => {
                // A failed rollback leaves the transaction manager broken: bb8 then discards
                // the connection instead of reusing it.
                let _: diesel::QueryResult<()> = crate::with_conn_raw!(&mut conn, |c| rollback(c).await);
                reset_session(&mut conn, options).await;
                if let Some(e) = err.as_keel_error() {
                    conn.observe(e);
                }
                Err(err)
            }
        }
    }
}

/// Whether a transaction that failed with `err` runs again: transient failures, except a
/// busy pool — an acquire timeout while the server is reachable. Waiting was the acquire timeout
/// already, and another one only doubles what the caller waits for the same answer. An acquire
/// timeout while connections cannot be opened (the server restarting) is retried: the pool
/// reconnects when the server is back. Nor is a write refused as read-only: a standby stays one
/// for longer than a backoff, and in a read-only transaction the write is the body's mistake.
fn retried(err: &Error) -> bool {
    match err {
        Error::AcquireTimeout { last_connect_error, .. } => last_connect_error.is_some(),
        other => other.kind().is_transient() && other.kind() != ErrorKind::ReadOnly,
    }
}

/// Behind PgBouncer ([`Config::pgbouncer`](crate::Config::pgbouncer)): `begin`, then the
/// statement limit as `SET LOCAL` (it ends with the transaction), sent in one simple query.
pub(crate) fn pgbouncer_begin_sql(begin: &str, statement_timeout: Option<std::time::Duration>) -> String {
    match statement_timeout {
        Some(t) => format!("{begin}; SET LOCAL statement_timeout = {}", t.as_millis()),
        None => begin.to_owned(),
    }
}

/// Runs `before` (if any) and the `BEGIN` statement through the connection's transaction
/// manager, so nested `conn.transaction(..)` calls inside the closure become savepoints.
async fn begin(conn: &mut Conn, before: Option<String>, sql: String) -> diesel::QueryResult<()> {
    match conn {
        Conn::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(&mut ***c, &sql).await,
        Conn::Mysql(c) => {
            if let Some(before) = &before {
                c.batch_execute(before).await?;
            }
            AnsiTransactionManager::begin_transaction_sql(&mut ***c, &sql).await
        }
        // diesel-async wraps SQLite's synchronous transaction manager: begin on the inner one.
        Conn::Sqlite(c) => {
            c.spawn_blocking(move |sc| {
                if let Some(before) = &before {
                    diesel::connection::SimpleConnection::batch_execute(sc, before)?;
                }
                diesel::connection::AnsiTransactionManager::begin_transaction_sql(sc, &sql)
            })
            .await
        }
    }
}

async fn commit<C: diesel_async::AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::commit_transaction(c).await
}

async fn rollback<C: diesel_async::AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::rollback_transaction(c).await
}

/// Undoes per-transaction session settings (SQLite's `query_only`).
async fn reset_session(conn: &mut Conn, options: &TxOptions) {
    if options.read_only
        && let Conn::Sqlite(c) = conn
    {
        let _ = c.batch_execute("PRAGMA query_only = 0").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_statements() {
        let ser_ro = TxOptions::new().isolation(Isolation::Serializable).read_only(true);
        assert_eq!(
            ser_ro.begin_sql(Backend::Postgres),
            (None, "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY".into())
        );
        assert_eq!(
            ser_ro.begin_sql(Backend::Mysql),
            (
                Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE".into()),
                "START TRANSACTION READ ONLY".into()
            )
        );
        assert_eq!(TxOptions::new().begin_sql(Backend::Sqlite), (None, "BEGIN IMMEDIATE".into()));
        assert_eq!(TxOptions::new().begin_sql(Backend::Mysql), (None, "START TRANSACTION".into()));
    }
}
