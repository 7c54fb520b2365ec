//! [`Pool::run`]: queries that can be abandoned without losing the connection.
//!
//! Dropping a diesel-async query future mid-flight leaves the wire protocol half-read: the
//! connection is marked broken and bb8 discards it, so every timeout costs a reconnect (measured
//! on MariaDB: about two new server connections per cancellation, and 8.5× fewer completed
//! queries). `Pool::run` instead runs the body on a task that owns the checked-out connection.
//! If the caller goes away (a request deadline, `tokio::time::timeout`, a client that hung up),
//! keel asks the server to stop the statement — `pg_cancel_backend(pid)` on PostgreSQL,
//! `KILL QUERY id` on MySQL/MariaDB, both over one side connection per pool — while the task
//! reads the outcome to the end, absorbs a cancel that came too late with one round trip, and
//! returns the connection to the pool, clean.
//!
//! Why not PostgreSQL's cancel protocol (tokio-postgres `CancelToken`)? It returns as soon as
//! the request is written, before the server has signalled the backend, so the signal can land
//! on the connection's *next* query, someone else's (measured: most of 3,028 cancel requests
//! failed an innocent query). `pg_cancel_backend` returns after the signal was sent.

use std::sync::{Arc, Mutex};

use diesel_async::SimpleAsyncConnection as _;
use scoped_futures::ScopedBoxFuture;

use crate::conn::{Conn, MysqlConnection, PgConnection};
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::pool::shared::Shared;
use crate::url::Backend;

/// The session to stop (PostgreSQL backend pid, MySQL connection id), if the backend has any.
struct Canceller(Option<u64>);

enum RunState {
    Running,
    Cancelling(tokio::task::JoinHandle<()>),
    Done,
}

/// Cancels the statement when the caller's future is dropped before the task finished.
struct CancelOnDrop {
    state: Arc<Mutex<RunState>>,
    canceller: Option<Canceller>,
    shared: Arc<Shared>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(canceller) = self.canceller.take() else { return };
        let Ok(mut state) = self.state.lock() else { return };
        if !matches!(*state, RunState::Running) {
            return;
        }
        self.shared.counters.cancellations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared = Arc::clone(&self.shared);
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        *state = RunState::Cancelling(rt.spawn(async move { cancel(&shared, canceller).await }));
    }
}

async fn cancel(shared: &Shared, canceller: Canceller) {
    let Some(id) = canceller.0 else { return };
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
        tracing::debug!(target: "keel_pool", error = %e, "cancelling a statement failed");
        *side = None;
    }
}

/// After a cancelled run: one round trip absorbs a cancel that arrived after the statement had
/// already finished, so it cannot hit the next user of the connection.
/// Any other failure of that round trip leaves the connection untrustworthy: it is closed.
async fn settle(conn: &mut Conn) {
    let result = crate::with_conn!(conn, |c| c.batch_execute("SELECT 1").await);
    if let Err(e) = result
        && e.kind() != ErrorKind::StatementTimeout
    {
        conn.mark_broken();
    }
}

/// The side connection cancellations go through, opened on first use.
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

impl Pool {
    /// Runs `f` on a pooled connection, on a task of its own, so that dropping the returned
    /// future (a deadline, a client that went away) stops the statement on the server and
    /// returns the connection to the pool clean, instead of discarding it and reconnecting.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use diesel::prelude::*;
    /// use diesel_async::RunQueryDsl;
    /// use keel_pool::{with_conn, ScopedFutureExt};
    /// use keel_schema::schema::users;
    ///
    /// # async fn demo(pool: keel_pool::Pool) {
    /// let count = tokio::time::timeout(
    ///     Duration::from_millis(50),
    ///     pool.run(|conn| async move { with_conn!(conn, |c| users::table.count().get_result::<i64>(c).await) }.scope_boxed()),
    /// )
    /// .await;
    /// // On timeout the server was asked to stop the query; the connection stays pooled.
    /// # }
    /// ```
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        let mut conn = self.get().await?;
        let canceller = Canceller(conn.server_id());
        let state = Arc::new(Mutex::new(RunState::Running));
        let task_state = Arc::clone(&state);
        let mut task = tokio::spawn(async move {
            let result = f(&mut conn).await;
            let pending = match task_state.lock() {
                Ok(mut s) => match std::mem::replace(&mut *s, RunState::Done) {
                    RunState::Cancelling(h) => Some(h),
                    _ => None,
                },
                Err(_) => None,
            };
            if let Some(cancelling) = pending {
                let _ = cancelling.await;
                settle(&mut conn).await;
            }
            result
        });
        let guard = CancelOnDrop { state, canceller: Some(canceller), shared: Arc::clone(self.shared()) };
        let joined = (&mut task).await;
        drop(guard);
        match joined {
            Ok(result) => result,
            Err(e) => Err(Error::Database {
                kind: ErrorKind::Database,
                backend: self.backend(),
                message: format!("the query task failed: {e}"),
                constraint: None,
                source: None,
            }),
        }
    }
}
