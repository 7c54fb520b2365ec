//! [`Conn`]: a pooled connection to whichever backend the URL chose, and the macros that run
//! one diesel query body on it.

use std::sync::Arc;

use crate::manager::{BackendConn, KeelManager, Managed};
use crate::pool::cancel::Scope;
use crate::url::Backend;

/// The PostgreSQL connection type (diesel-async over tokio-postgres).
pub type PgConnection = diesel_async::AsyncPgConnection;
/// The MySQL/MariaDB connection type (diesel-async over mysql_async).
pub type MysqlConnection = diesel_async::AsyncMysqlConnection;
/// The SQLite connection type: diesel's synchronous connection run on tokio's blocking pool,
/// its jobs counted by keel (see [`blocking`](crate::blocking)).
pub type SqliteConnection = diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
    diesel::SqliteConnection,
    crate::blocking::KeelBlocking,
>;

/// A checked-out connection of type `C` (see [`Checkout`]).
pub type Pooled<C> = Checkout<C>;

/// A connection checked out of the pool, with the drop guard that makes abandoning it cheap.
///
/// Dereferences to the [`Managed`] connection. When it is dropped clean (nothing in flight, no
/// transaction open) it goes straight back to the pool. When it is dropped dirty — its query
/// future was dropped mid-flight, a transaction was left open, or keel stopped its statement —
/// a task takes it over: on PostgreSQL it asks the server to stop the statement
/// (`pg_cancel_backend`), rolls back, absorbs a late cancel and returns the connection clean; on
/// MySQL a query dropped mid-protocol leaves unread replies on the socket, so the statement is
/// stopped (`KILL QUERY`) and the connection closed (keel's own operations never get there:
/// they run where they cannot be dropped mid-query, see [`Pool::detached`](crate::Pool::detached));
/// on SQLite the task waits for the blocking job to finish before the connection is looked at.
/// Its pool slot stays taken until then, so the pool never opens a connection to replace it.
pub struct Checkout<C: BackendConn> {
    /// `None` only inside `drop`.
    conn: Option<bb8::PooledConnection<'static, KeelManager<C>>>,
    /// The pool's place in line: released with the connection (see [`Pool::get`](crate::Pool::get)).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The detached operation this checkout belongs to, if any.
    scope: Option<Arc<Scope>>,
}

impl<C: BackendConn> Checkout<C> {
    pub(crate) fn new(
        conn: bb8::PooledConnection<'static, KeelManager<C>>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        scope: Option<Arc<Scope>>,
    ) -> Self {
        if let Some(scope) = &scope {
            scope.enter(conn.local_id(), conn.server_id());
        }
        Checkout { conn: Some(conn), permit, scope }
    }
}

impl<C: BackendConn> std::ops::Deref for Checkout<C> {
    type Target = Managed<C>;
    fn deref(&self) -> &Managed<C> {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a checkout is emptied only by its own drop"),
        }
    }
}

impl<C: BackendConn> std::ops::DerefMut for Checkout<C> {
    fn deref_mut(&mut self) -> &mut Managed<C> {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("a checkout is emptied only by its own drop"),
        }
    }
}

impl<C: BackendConn> Drop for Checkout<C> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let stopped = self.scope.take().and_then(|scope| scope.leave(conn.local_id()));
        if stopped.is_none() && !conn.dirty() {
            return; // back to the pool
        }
        let permit = self.permit.take();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    crate::pool::cancel::recover(&mut conn, stopped).await;
                    drop(conn);
                    drop(permit);
                });
            }
            Err(_) => conn.mark_broken(),
        }
    }
}

/// A connection checked out of a [`Pool`](crate::Pool); it goes back when dropped.
///
/// Run queries with [`with_conn!`](crate::with_conn), which expands one diesel body for each
/// backend, or match on the variants for backend-specific code. Deliberately exhaustive: the
/// macros expand one arm per backend, and a new backend is a breaking change anyway.
// The PostgreSQL variant is ~460 bytes; boxing it would add an allocation to every checkout to
// save a memcpy when a `Conn` is moved, which is rare.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// A PostgreSQL connection.
    Postgres(Pooled<PgConnection>),
    /// A MySQL/MariaDB connection.
    Mysql(Pooled<MysqlConnection>),
    /// A SQLite connection.
    Sqlite(Pooled<SqliteConnection>),
}

impl Conn {
    /// The backend this connection talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Mysql(_) => Backend::Mysql,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }
}

impl Conn {
    /// The server's id for this session (PostgreSQL backend pid, MySQL `CONNECTION_ID()`);
    /// `None` on SQLite.
    pub fn server_id(&self) -> Option<u64> {
        match self {
            Conn::Postgres(c) => c.server_id(),
            Conn::Mysql(c) => c.server_id(),
            Conn::Sqlite(c) => c.server_id(),
        }
    }
}

impl Conn {
    /// keel's own number for this connection, unique within the process (SQLite connections
    /// have no server id).
    pub fn local_id(&self) -> u64 {
        match self {
            Conn::Postgres(c) => c.local_id(),
            Conn::Mysql(c) => c.local_id(),
            Conn::Sqlite(c) => c.local_id(),
        }
    }
}

impl Conn {
    /// Notes an error seen on this connection: after a connection-level error (lost, server
    /// shutting down) the pool closes the connection instead of reusing it, and pings its other
    /// idle connections before handing them out. [`with_conn!`](crate::with_conn) and
    /// transactions call this; call it yourself when you run queries another way.
    pub fn observe(&mut self, err: &crate::Error) {
        match self {
            Conn::Postgres(c) => c.observe(err),
            Conn::Mysql(c) => c.observe(err),
            Conn::Sqlite(c) => c.observe(err),
        }
    }

    /// Makes the pool close this connection when it comes back instead of reusing it.
    pub fn mark_broken(&mut self) {
        match self {
            Conn::Postgres(c) => c.mark_broken(),
            Conn::Mysql(c) => c.mark_broken(),
            Conn::Sqlite(c) => c.mark_broken(),
        }
    }
}

impl Conn {
    /// Behind PgBouncer ([`Config::pgbouncer`](crate::Config::pgbouncer)) with no transaction
    /// open: [`with_conn!`](crate::with_conn) runs its body in a transaction of its own.
    #[doc(hidden)]
    #[inline]
    pub fn __needs_statement_tx(&mut self) -> bool {
        match self {
            Conn::Postgres(c) => c.needs_statement_tx(),
            _ => false,
        }
    }

    /// Opens the statement's own transaction (see [`__needs_statement_tx`](Conn::__needs_statement_tx)),
    /// with `SET LOCAL statement_timeout` when the pool has a limit.
    #[doc(hidden)]
    pub async fn __begin_statement_tx(&mut self) -> diesel::QueryResult<()> {
        let Conn::Postgres(c) = self else { return Ok(()) };
        let sql = crate::pool::tx::pgbouncer_begin_sql("BEGIN", c.shared().config.statement_timeout);
        diesel_async::AnsiTransactionManager::begin_transaction_sql(&mut ***c, &sql).await
    }

    /// Ends the statement's own transaction: commits after `result` succeeded (a failed
    /// commit is the result then), rolls back after it failed.
    #[doc(hidden)]
    pub async fn __end_statement_tx<T>(&mut self, result: diesel::QueryResult<T>) -> diesel::QueryResult<T> {
        use diesel_async::TransactionManager as _;
        let Conn::Postgres(c) = self else { return result };
        let c: &mut PgConnection = c;
        match result {
            Ok(value) => diesel_async::AnsiTransactionManager::commit_transaction(c).await.map(|()| value),
            Err(e) => {
                // A failed rollback leaves the manager broken: the pool then closes the connection.
                let _ = diesel_async::AnsiTransactionManager::rollback_transaction(c).await;
                Err(e)
            }
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.backend())
    }
}

/// Runs one diesel body on a [`Conn`], whatever its backend, and classifies the error.
///
/// `with_conn!(conn, |c| body)` binds `c` to `&mut PgConnection`, `&mut MysqlConnection` or
/// `&mut SqliteConnection` and expands `body` once per backend, so the same typed query is
/// compiled for each. `body` evaluates to a `diesel::QueryResult<T>`; the macro returns
/// `Result<T, keel_pool::Error>`. Use [`with_conn_raw!`](crate::with_conn_raw) to keep the body's
/// own result type.
///
/// ```no_run
/// use diesel::prelude::*;
/// use diesel_async::RunQueryDsl;
/// use keel_schema::{schema::users, User};
///
/// # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_pool::Error> {
/// let mut conn = pool.get().await?;
/// let names: Vec<String> = keel_pool::with_conn!(&mut conn, |c| {
///     users::table.select(users::name).order(users::name).load(c).await
/// })?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {{
        let conn: &mut $crate::Conn = $conn;
        let backend = conn.backend();
        // Behind PgBouncer an autocommit statement gets a transaction of its own (`Config::pgbouncer`).
        let own_tx = conn.__needs_statement_tx();
        let begun: ::diesel::QueryResult<()> =
            if own_tx { conn.__begin_statement_tx().await } else { Ok(()) };
        let result: ::diesel::QueryResult<_> = match begun {
            Ok(()) => $crate::with_conn_raw!(&mut *conn, |$c| $body),
            Err(e) => Err(e),
        };
        let result = if own_tx { conn.__end_statement_tx(result).await } else { result };
        result.map_err(|e| {
            let err = $crate::classify(backend, e);
            conn.observe(&err);
            err
        })
    }};
}

/// Like [`with_conn!`](crate::with_conn) but returns the body's value as it is.
#[macro_export]
macro_rules! with_conn_raw {
    ($conn:expr, |$c:ident| $body:expr) => {{
        #[allow(unreachable_patterns)]
        match $conn {
            $crate::Conn::Postgres($c) => {
                let $c: &mut $crate::PgConnection = &mut ***$c;
                $body
            }
            $crate::Conn::Mysql($c) => {
                let $c: &mut $crate::MysqlConnection = &mut ***$c;
                $body
            }
            $crate::Conn::Sqlite($c) => {
                let $c: &mut $crate::SqliteConnection = &mut ***$c;
                $body
            }
        }
    }};
}
