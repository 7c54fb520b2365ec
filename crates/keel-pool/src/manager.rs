//! keel's bb8 connection manager: opens connections with keel's session settings, attaches
//! query instrumentation, and pings on checkout only when a connection may have gone stale.
//!
//! bb8's default pings before every checkout, which halves point-query throughput; never
//! pinging hands out connections the server closed long ago. keel pings a connection when it
//! sat idle longer than `ping_idle_after`, or when the pool has seen a connection fail since
//! it was last used (after a server restart every idle connection is suspect at once).

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncConnection, SimpleAsyncConnection as _};

use crate::blocking::Busy;
use crate::config::Config;
use crate::conn::{MysqlConnection, PgConnection, SqliteConnection};
use crate::error::{Error, ErrorKind};
use crate::pool::shared::Shared;
use crate::url::Backend;

/// A pooled connection with what keel tracks about it.
pub struct Managed<C> {
    conn: C,
    last_used: Instant,
    server_id: Option<u64>,
    /// keel's own number for this connection, unique in the process (1, 2, …).
    local_id: u64,
    /// Queries started and not finished, counted by the instrumentation: non-zero when the
    /// connection comes back means a query future was dropped mid-flight.
    in_flight: Arc<AtomicU64>,
    /// Set when a connection-level error was seen on this connection: diesel-async's MySQL
    /// connection does not notice a closed socket by itself, so it would come back "healthy".
    broken: bool,
    /// The pool's state, told when this connection is lost (the others become suspect).
    shared: Arc<Shared>,
    /// SQLite: the blocking jobs running on this connection.
    busy: Option<Arc<Busy>>,
    /// PostgreSQL behind PgBouncer in transaction mode ([`Config::pgbouncer`]): autocommit
    /// statements get a transaction of their own.
    pgbouncer: bool,
}

impl<C> Managed<C> {
    /// The server's id for this session: PostgreSQL backend pid, MySQL `CONNECTION_ID()`.
    pub fn server_id(&self) -> Option<u64> {
        self.server_id
    }

    /// keel's own number for this connection, unique within the process: tells pooled SQLite
    /// connections apart, which have no server id.
    pub fn local_id(&self) -> u64 {
        self.local_id
    }

    /// Marks the connection unusable: the pool closes it instead of handing it out again.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Queries started on this connection and not finished.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// Forgets queries whose futures were dropped, so the next query is timed from its own
    /// start (shared read sessions, after their abandoned reads were stopped).
    pub(crate) fn forget_in_flight(&self) {
        self.in_flight.store(0, Relaxed);
    }

    /// The count of blocking jobs running on this connection (SQLite).
    pub(crate) fn busy(&self) -> Option<Arc<Busy>> {
        self.busy.clone()
    }

    /// Notes an error seen on this connection: a connection-level one (lost, server shutting
    /// down) closes it when it comes back and makes the pool's other idle connections suspect
    /// (the server may have dropped them too), so they are pinged before they are handed out.
    pub(crate) fn observe(&mut self, err: &Error) {
        if breaks_connection(err.kind()) {
            self.broken = true;
            self.shared.observe(err);
        }
    }
}

impl<C: BackendConn> Managed<C> {
    /// True when the connection cannot go straight back to the pool: a query or blocking job
    /// was left running (its future dropped), or a transaction was left open. Never asks a busy
    /// SQLite connection anything (that can panic inside diesel-async).
    pub(crate) fn dirty(&mut self) -> bool {
        if self.broken {
            return false; // closed when it comes back, whatever its state
        }
        if self.busy.as_ref().is_some_and(|b| b.is_busy()) {
            return true;
        }
        self.in_flight.load(Relaxed) != 0 || self.in_transaction()
    }

    /// A transaction is open, or diesel-async's transaction manager is mid-statement or in
    /// error (a transaction future was dropped). Call only on an idle connection.
    pub(crate) fn in_transaction(&mut self) -> bool {
        <C::TransactionManager as diesel_async::TransactionManager<C>>::is_broken_transaction_manager(
            &mut self.conn,
        )
    }

    /// Whether [`with_conn!`](crate::with_conn) must wrap the next statement in a transaction
    /// of its own: behind PgBouncer, when no transaction is open.
    #[inline]
    pub(crate) fn needs_statement_tx(&mut self) -> bool {
        self.pgbouncer && !self.in_transaction()
    }

    /// After a dirty connection was made clean by [`recover`](crate::pool::cancel::recover):
    /// no transaction, nothing in flight, timings start afresh.
    pub(crate) fn reset_after_cancel(&mut self) {
        self.conn.reset_transaction_state();
        self.in_flight.store(0, Relaxed);
    }
}

/// True for errors after which a connection must not be reused.
pub(crate) fn breaks_connection(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectionLost | ErrorKind::ServerShutdown | ErrorKind::CommitOutcomeUnknown)
}

impl<C> std::ops::Deref for Managed<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> std::ops::DerefMut for Managed<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// What keel needs from each backend's connection type. Implemented for the three connection
/// types; not meant to be implemented outside keel.
pub trait BackendConn: AsyncConnection + PoolableConnection + Send + 'static {
    /// The backend this connection type talks to.
    const BACKEND: Backend;
    /// A statement that does nothing, to absorb a stop signal that arrived late.
    const NOOP: &'static str;
    /// Opens a connection with keel's session settings; returns it with its server-side id and,
    /// on SQLite, the count of its blocking jobs.
    fn open(config: &Config) -> impl Future<Output = Result<Opened<Self>, Error>> + Send;
    /// A cheap round trip proving the session is alive.
    fn keepalive(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send;
    /// Forgets diesel-async's transaction state after keel rolled the session back itself.
    fn reset_transaction_state(&mut self);
}

/// A connection just opened, with what keel tracks about it.
pub struct Opened<C> {
    conn: C,
    server_id: Option<u64>,
    busy: Option<Arc<Busy>>,
}

fn opened<C>((conn, server_id): (C, Option<u64>)) -> Opened<C> {
    Opened { conn, server_id, busy: None }
}

impl BackendConn for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
    const NOOP: &'static str = "SELECT 1";
    async fn open(config: &Config) -> Result<Opened<Self>, Error> {
        crate::connect::pg(config).await.map(opened)
    }
    fn keepalive(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send {
        self.batch_execute("")
    }
    fn reset_transaction_state(&mut self) {
        *self.transaction_state() = Default::default();
    }
}

impl BackendConn for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
    const NOOP: &'static str = "DO 1";
    async fn open(config: &Config) -> Result<Opened<Self>, Error> {
        crate::connect::mysql(config).await.map(opened)
    }
    fn keepalive(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send {
        self.batch_execute("DO 1")
    }
    fn reset_transaction_state(&mut self) {
        *self.transaction_state() = Default::default();
    }
}

impl BackendConn for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;
    const NOOP: &'static str = "SELECT 1";
    async fn open(config: &Config) -> Result<Opened<Self>, Error> {
        let (conn, busy) = crate::connect::sqlite(config).await?;
        Ok(Opened { conn, server_id: None, busy: Some(busy) })
    }
    fn keepalive(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send {
        // A local file does not go away between queries.
        std::future::ready(Ok(()))
    }
    fn reset_transaction_state(&mut self) {
        // Called on an idle connection only (after `Busy::idle`): no job shares it.
        *self.transaction_state() = Default::default();
    }
}

/// keel's bb8 manager for connection type `C` (see the module docs). Created by
/// [`Pool::connect`](crate::Pool::connect).
pub struct KeelManager<C> {
    shared: Arc<Shared>,
    _conn: PhantomData<fn() -> C>,
}

impl<C> KeelManager<C> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        KeelManager { shared, _conn: PhantomData }
    }
}

impl<C: BackendConn> KeelManager<C> {
    /// Opens a connection and wraps it; also used for the pool's first connection.
    pub(crate) async fn open(shared: &Arc<Shared>) -> Result<Managed<C>, Error> {
        let Opened { mut conn, server_id, busy } = C::open(&shared.config).await?;
        let in_flight = Arc::new(AtomicU64::new(0));
        conn.set_instrumentation(QueryTimer {
            backend: C::BACKEND,
            shared: Arc::clone(shared),
            started: VecDeque::new(),
            in_flight: Arc::clone(&in_flight),
        });
        static NEXT_LOCAL_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let local_id = NEXT_LOCAL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Managed {
            conn,
            last_used: Instant::now(),
            server_id,
            local_id,
            in_flight,
            broken: false,
            pgbouncer: C::BACKEND == Backend::Postgres && shared.config.is_pgbouncer(),
            shared: Arc::clone(shared),
            busy,
        })
    }
}

impl<C: BackendConn> bb8::ManageConnection for KeelManager<C> {
    type Connection = Managed<C>;
    type Error = Error;

    fn connect(&self) -> impl Future<Output = Result<Managed<C>, Error>> + Send {
        let shared = Arc::clone(&self.shared);
        async move {
            let result = Self::open(&shared).await;
            match &result {
                Err(e) => shared.note_connect_error(e.to_string()),
                // The server is reachable again: an acquire timeout from now on means a busy
                // pool, not an outage.
                Ok(_) => shared.clear_connect_error(),
            }
            result
        }
    }

    fn is_valid(&self, conn: &mut Managed<C>) -> impl Future<Output = Result<(), Error>> + Send {
        let stale = conn.last_used.elapsed() > self.shared.config.ping_idle_after
            || self.shared.micros(conn.last_used) <= self.shared.suspect_since.load(Relaxed);
        let shared = Arc::clone(&self.shared);
        async move {
            if !stale {
                return Ok(());
            }
            shared.counters.pings.fetch_add(1, Relaxed);
            conn.conn.keepalive().await.map_err(|e| crate::classify(C::BACKEND, e))?;
            conn.last_used = Instant::now();
            Ok(())
        }
    }

    fn has_broken(&self, conn: &mut Managed<C>) -> bool {
        // bb8 calls this when a connection comes back: the moment it was last used.
        conn.last_used = Instant::now();
        // A connection dropped mid-query or mid-transaction never gets here dirty: the
        // checkout's drop guard cleaned it first (PostgreSQL: cancelled, settled, its query
        // count reset) or marked it broken (MySQL, whose unread reply would reach the next
        // query; see `pool::cancel`).
        conn.broken || conn.conn.is_broken()
    }
}

/// Times every query (diesel reports start and finish, not durations) and logs it through
/// `tracing`: target `keel::query`, DEBUG for each query, WARN above `slow_query_threshold`.
/// Bind values are never logged.
struct QueryTimer {
    backend: Backend,
    shared: Arc<Shared>,
    /// Start times of queries in flight, oldest first: PostgreSQL pipelines several queries on
    /// one connection and answers them in order.
    started: VecDeque<Instant>,
    /// Shared with the [`Managed`] wrapper.
    in_flight: Arc<AtomicU64>,
}

fn sql_text(query: &dyn diesel::connection::DebugQuery) -> String {
    let text = query.to_string();
    match text.find(" -- binds: ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

impl Instrumentation for QueryTimer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                // Nothing in flight, yet starts queued: they belong to query futures that were
                // dropped (no finish event ever comes for them; the count was zeroed once they
                // were stopped: `reset_after_cancel`, `forget_in_flight`). Timing the next
                // finish from them would report innocent queries as slow.
                if self.in_flight.fetch_add(1, Relaxed) == 0 {
                    self.started.clear();
                }
                self.started.push_back(Instant::now())
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let _ = self.in_flight.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
                let elapsed = self.started.pop_front().map(|t| t.elapsed()).unwrap_or(Duration::ZERO);
                let c = &self.shared.counters;
                c.queries.fetch_add(1, Relaxed);
                c.query_latency.record(elapsed);
                if error.is_some() {
                    c.query_errors.fetch_add(1, Relaxed);
                }
                let slow = self.shared.config.slow_query_threshold.is_some_and(|t| elapsed >= t);
                if slow {
                    c.slow_queries.fetch_add(1, Relaxed);
                    tracing::warn!(
                        target: "keel::query",
                        backend = %self.backend,
                        sql = %sql_text(query),
                        duration_us = elapsed.as_micros() as u64,
                        ok = error.is_none(),
                        "slow query"
                    );
                } else if tracing::enabled!(target: "keel::query", tracing::Level::DEBUG) {
                    tracing::debug!(
                        target: "keel::query",
                        backend = %self.backend,
                        sql = %sql_text(query),
                        duration_us = elapsed.as_micros() as u64,
                        ok = error.is_none(),
                        error = error.map(|e| e.to_string()),
                        "query"
                    );
                }
            }
            _ => {}
        }
    }
}
