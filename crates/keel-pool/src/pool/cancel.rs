//! Cancellation that frees the server: what happens when the future of a keel operation is
//! dropped (a request deadline, `tokio::time::timeout`, a client that hung up).
//!
//! Two mechanisms, chosen per backend by what its driver survives:
//!
//! - **PostgreSQL: the checkout's drop guard.** tokio-postgres routes every reply to its own
//!   request and discards replies nobody waits for, so a query future can be dropped at any
//!   point without corrupting the connection — but the statement runs on, and the next one sent
//!   on that session waits behind it. A [`Checkout`](crate::conn::Checkout) dropped with a query
//!   in flight or a transaction open is handed to [`recover`], which stops the statement with
//!   `pg_cancel_backend(pid)`, rolls back, absorbs a cancel that arrived late, and returns the
//!   connection to the pool. Zero cost on the hot path: the guard reads the query counter the
//!   instrumentation keeps anyway and the transaction state.
//! - **MySQL/MariaDB and SQLite: detached operations.** A mysql_async query dropped after its
//!   command was written leaves the reply unread on the socket; no driver call can resynchronise
//!   it, so such a connection can only be closed (a reconnect per cancellation). keel's own
//!   operations therefore run through [`Pool::detached`]: on a task of their own, inside a
//!   [`Scope`] that knows which connections they hold. Dropping the caller's future sends
//!   `KILL QUERY` for each of them, the task reads the interrupted statement's reply to the end,
//!   stops retrying, rolls back and returns its connections clean. On SQLite the task simply
//!   finishes the local statement. On PostgreSQL `detached` runs inline: the drop guard suffices.
//!
//! Why not PostgreSQL's cancel protocol (tokio-postgres `CancelToken`)? It returns as soon as
//! the request is written, before the server has signalled the backend, so the signal can land
//! on the connection's *next* query, someone else's (measured: most of 3,028 cancel requests
//! failed an innocent query). `pg_cancel_backend` returns after the signal was sent.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use diesel_async::SimpleAsyncConnection as _;

use crate::conn::{MysqlConnection, PgConnection};
use crate::error::{Error, ErrorKind};
use crate::manager::{BackendConn, KeelManager};
use crate::pool::Pool;
use crate::pool::shared::Shared;
use crate::url::Backend;

tokio::task_local! {
    /// The detached operation the current task runs, if any.
    static SCOPE: Arc<Scope>;
}

/// The scope of the current task's detached operation, if it runs one.
pub(crate) fn current() -> Option<Arc<Scope>> {
    SCOPE.try_with(Arc::clone).ok()
}

/// True when the current task runs a detached operation whose caller went away.
pub(crate) fn cancelled() -> bool {
    SCOPE.try_with(|s| s.is_cancelled()).unwrap_or(false)
}

/// Set once the statements a cancellation stopped have been signalled.
#[derive(Default)]
pub(crate) struct Stop {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Default)]
struct ScopeState {
    cancelled: bool,
    /// Connections checked out in this scope now: keel's local id and the server's session id.
    conns: Vec<(u64, Option<u64>)>,
    /// Local ids of the connections whose statement the cancellation stopped.
    stopped: Vec<u64>,
    stop: Option<Arc<Stop>>,
}

/// One detached operation: the connections it holds, and whether its caller went away.
#[derive(Default)]
pub(crate) struct Scope {
    state: Mutex<ScopeState>,
    /// Wakes what the operation waits for (a connection) when its caller goes away.
    gone: tokio::sync::Notify,
}

impl Scope {
    pub(crate) fn enter(&self, local_id: u64, server_id: Option<u64>) {
        if let Ok(mut s) = self.state.lock() {
            s.conns.push((local_id, server_id));
        }
    }

    /// The connection left the scope; returns the stop to wait for if its statement was stopped.
    pub(crate) fn leave(&self, local_id: u64) -> Option<Arc<Stop>> {
        let mut s = self.state.lock().ok()?;
        s.conns.retain(|(id, _)| *id != local_id);
        if s.stopped.contains(&local_id) { s.stop.clone() } else { None }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.lock().map(|s| s.cancelled).unwrap_or(true)
    }

    /// Returns once the caller went away: a checkout waiting in line stops waiting then, so an
    /// abandoned operation never takes a connection it would only give back.
    pub(crate) async fn until_cancelled(&self) {
        loop {
            let gone = self.gone.notified();
            if self.is_cancelled() {
                return;
            }
            gone.await;
        }
    }

    /// The caller went away: stop every statement of the scope's connections on the server.
    fn cancel(&self, shared: &Arc<Shared>) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.cancelled {
            return;
        }
        s.cancelled = true;
        self.gone.notify_waiters();
        shared.counters.cancellations.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<u64> = s.conns.iter().filter_map(|(_, server)| *server).collect();
        if ids.is_empty() {
            return;
        }
        s.stopped = s.conns.iter().map(|(local, _)| *local).collect();
        let stop = Arc::new(Stop::default());
        s.stop = Some(Arc::clone(&stop));
        let shared = Arc::clone(shared);
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return stop.finish() };
        rt.spawn(async move {
            for id in ids {
                stop_statement(&shared, id).await;
            }
            stop.finish();
        });
    }
}

/// Asks the server to stop whatever session `id` is running: `pg_cancel_backend` on PostgreSQL,
/// `KILL QUERY` on MySQL/MariaDB, through the pool's side connection. Returns once the server
/// has signalled the session (or the request failed; logged at DEBUG).
pub(crate) async fn stop_statement(shared: &Shared, id: u64) {
    let mut side = shared.killer.lock().await;
    if side.is_none() {
        *side = SideConn::open(shared).await;
    }
    let result = match side.as_mut() {
        Some(SideConn::Postgres(c)) => c.batch_execute(&format!("SELECT pg_cancel_backend({id})")).await,
        Some(SideConn::Mysql(c)) => c.batch_execute(&format!("KILL QUERY {id}")).await,
        None => return,
    };
    if let Err(e) = result {
        tracing::debug!(target: "keel_pool", error = %e, "stopping a statement failed");
        *side = None;
    }
}

/// The side connection statements are stopped through, opened on first use.
pub(crate) enum SideConn {
    Postgres(Box<PgConnection>),
    Mysql(MysqlConnection),
}

impl SideConn {
    async fn open(shared: &Shared) -> Option<SideConn> {
        match shared.config.backend() {
            Backend::Postgres => {
                crate::connect::pg(&shared.config).await.ok().map(|(c, _)| SideConn::Postgres(Box::new(c)))
            }
            Backend::Mysql => {
                crate::connect::mysql(&shared.config).await.ok().map(|(c, _)| SideConn::Mysql(c))
            }
            Backend::Sqlite => None,
        }
    }
}

/// The pool's side connection slot.
pub(crate) type Killer = tokio::sync::Mutex<Option<SideConn>>;

/// Makes a connection dropped dirty clean again, or marks it broken (see the module docs). Runs
/// on a task that owns the checkout; the connection goes back to the pool when it returns.
pub(crate) async fn recover<C: BackendConn>(
    conn: &mut bb8::PooledConnection<'static, KeelManager<C>>,
    stopped: Option<Arc<Stop>>,
) {
    let shared = Arc::clone(conn.shared());
    let mut late_stop = None;
    match C::BACKEND {
        Backend::Sqlite => {
            if let Some(busy) = conn.busy() {
                busy.idle().await;
            }
        }
        Backend::Postgres | Backend::Mysql if conn.in_flight() != 0 => {
            shared.counters.cancellations.fetch_add(1, Ordering::Relaxed);
            if C::BACKEND == Backend::Mysql {
                // The reply of the dropped query is still on the socket: only closing is safe.
                if let Some(id) = conn.server_id() {
                    stop_statement(&shared, id).await;
                }
                conn.mark_broken();
                return;
            }
            // PostgreSQL: the settling statement queues behind the dropped one; stop that one
            // only if it does not finish by itself within the grace.
            late_stop = conn.server_id().map(|id| LateStop { shared: &shared, id });
        }
        _ => {}
    }
    let signalled = stopped.is_some() || late_stop.is_some();
    if let Some(stop) = stopped {
        stop.wait().await;
    }
    let in_transaction = conn.in_transaction();
    if in_transaction || signalled {
        // ROLLBACK ends what was left open; either statement absorbs a stop signal that arrived
        // after the statement it was meant for had finished, so it cannot hit the next user.
        let sql = if in_transaction { "ROLLBACK" } else { C::NOOP };
        let clean = absorb(&mut **conn, C::BACKEND, sql, late_stop).await;
        if !clean {
            conn.mark_broken();
            return;
        }
    }
    conn.reset_after_cancel();
}

/// A statement to stop on session `id` if the settling statement queued behind it has not
/// answered within the grace ([`Config::read_stall_after`](crate::Config::read_stall_after)):
/// most abandoned statements are about to finish, and then a cancel is one round trip (and one
/// side-connection turn) spent for nothing.
pub(crate) struct LateStop<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) id: u64,
}

/// Runs `sql` until it succeeds without being hit by a stop signal (at most 3 times); false
/// when it failed otherwise: the session cannot be trusted. With `late_stop`, the session's
/// earlier statement is stopped when the first attempt has not answered within the grace.
pub(crate) async fn absorb<S>(
    conn: &mut S,
    backend: Backend,
    sql: &str,
    late_stop: Option<LateStop<'_>>,
) -> bool
where
    S: diesel_async::SimpleAsyncConnection + Send,
{
    let mut late_stop = late_stop;
    for _ in 0..3 {
        let result = {
            let attempt = conn.batch_execute(sql);
            tokio::pin!(attempt);
            match late_stop.take() {
                None => attempt.await,
                Some(stop) => {
                    match tokio::time::timeout(stop.shared.config.read_stall_after, &mut attempt).await {
                        Ok(r) => r,
                        Err(_) => {
                            stop_statement(stop.shared, stop.id).await;
                            attempt.await
                        }
                    }
                }
            }
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                if crate::classify(backend, e).kind() != ErrorKind::StatementTimeout {
                    return false;
                }
            }
        }
    }
    false
}

/// Cancels the scope when the caller's future is dropped before the operation finished.
struct CancelOnDrop {
    scope: Arc<Scope>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.scope.cancel(&self.shared);
        }
    }
}

impl Pool {
    /// Runs `operation` so that dropping the returned future (a deadline, a client that went
    /// away) stops its statements on the server and gives its connections back clean, with no
    /// reconnect, on every backend. keel's repository runs every call through it.
    ///
    /// On PostgreSQL it runs inline: the checkout's drop guard cancels (see the
    /// [module docs](self)). On MySQL/MariaDB and SQLite it runs on a task of its own: when the
    /// caller goes away, `KILL QUERY` stops the statements of the connections it holds, the task
    /// reads their replies to the end, and the operation ends early: later checkouts in it fail
    /// with [`ErrorKind::Cancelled`], transactions stop retrying and roll back.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use diesel::prelude::*;
    /// use diesel_async::RunQueryDsl;
    /// use keel_schema::schema::users;
    ///
    /// # async fn demo(pool: keel_pool::Pool) {
    /// let p = pool.clone();
    /// let count = tokio::time::timeout(
    ///     Duration::from_millis(50),
    ///     pool.detached(async move {
    ///         let mut conn = p.get().await?;
    ///         keel_pool::with_conn!(&mut conn, |c| users::table.count().get_result::<i64>(c).await)
    ///     }),
    /// )
    /// .await;
    /// // On timeout the server was asked to stop the query; the connection stays pooled.
    /// # }
    /// ```
    pub async fn detached<T, E, F>(&self, operation: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        if self.backend() == Backend::Postgres || current().is_some() {
            // PostgreSQL: the drop guard cancels. Inside a detached operation already: its
            // scope covers this one too.
            return operation.await;
        }
        let scope = Arc::new(Scope::default());
        let mut guard =
            CancelOnDrop { scope: Arc::clone(&scope), shared: Arc::clone(self.shared()), finished: false };
        let joined = tokio::spawn(SCOPE.scope(scope, operation)).await;
        guard.finished = true;
        joined.map_err(|e| {
            E::from(Error::Database {
                kind: ErrorKind::Database,
                backend: self.backend(),
                message: format!("the operation's task failed: {e}"),
                constraint: None,
                source: None,
            })
        })?
    }
}
