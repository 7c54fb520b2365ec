//! [`Pool`]: a bb8 pool per backend behind one type — opening it, checking connections out,
//! its state, health and numbers, and closing it. Its other concerns have a file each:
//!
//! - [`cancel`]: [`Pool::detached`], cancellation that frees the server on every backend.
//! - [`run`]: [`Pool::run`], one body on one connection that can be abandoned.
//! - [`tx`]: [`Pool::transaction`] and [`TxOptions`](tx::TxOptions), transactions that retry.
//! - [`readers`]: [`Pool::reader`] and [`with_read!`](crate::with_read), pipelined shared reads.
//! - [`replicas`]: read replicas, [`Causality`](replicas::Causality) tokens and
//!   [`Session`](replicas::Session)s: read-your-writes.
//! - [`migrate`]: [`Pool::migrate`], applying a [`Migrations`](crate::Migrations) set.
//! - `shared` (crate-private): the state a pool shares with its manager and connections.

pub mod cancel;
pub mod migrate;
pub mod readers;
pub mod replicas;
pub mod run;
pub(crate) mod shared;
pub mod tx;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

use crate::config::Config;
use crate::conn::{Checkout, Conn, MysqlConnection, PgConnection, SqliteConnection};
use crate::error::Error;
use crate::manager::{BackendConn, KeelManager};
use crate::stats::{PoolStats, snapshot};
use crate::url::Backend;
use shared::Shared;

/// A pool of connections to one database, on the backend its URL chose. Cheap to clone: clones
/// share the same connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), keel_pool::Error> {
/// let pool = keel_pool::Pool::connect(keel_pool::Config::from_env()?).await?;
/// pool.migrate(&keel_schema::MIGRATIONS).await?;
/// let mut conn = pool.get().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shared: Arc<Shared>,
    /// The read replicas, when configured (PostgreSQL).
    replicas: Option<Arc<replicas::Replicas>>,
    /// `None` once closed: dropping our handle lets bb8 close idle connections, and checked-out
    /// ones close when they come back.
    pools: RwLock<Option<Pools>>,
}

#[derive(Clone)]
enum Pools {
    Postgres(bb8::Pool<KeelManager<PgConnection>>),
    Mysql(bb8::Pool<KeelManager<MysqlConnection>>),
    Sqlite(bb8::Pool<KeelManager<SqliteConnection>>),
}

impl Pools {
    fn state(&self) -> bb8::State {
        match self {
            Pools::Postgres(p) => p.state(),
            Pools::Mysql(p) => p.state(),
            Pools::Sqlite(p) => p.state(),
        }
    }
}

/// bb8 error sink: only logs at DEBUG. The last connection failure, which an acquire timeout
/// reports (bb8 itself says only "timed out", bb8 #99), is recorded by the manager's `connect`.
#[derive(Debug, Clone, Copy)]
struct QuietSink;

impl bb8::ErrorSink<Error> for QuietSink {
    fn sink(&self, error: Error) {
        tracing::debug!(target: "keel_pool", %error, "connection error reported by the pool");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<Error>> {
        Box::new(*self)
    }
}

async fn build<C: BackendConn>(shared: &Arc<Shared>) -> Result<bb8::Pool<KeelManager<C>>, Error> {
    // Open the first connection by hand so a wrong URL or an unreachable server fails here, at
    // once, with the real error.
    let first = KeelManager::<C>::open(shared).await?;
    let config = &shared.config;
    let max = config.effective_max_size();
    let pool = bb8::Pool::builder()
        .max_size(max)
        .min_idle(config.min_idle.map(|n| n.min(max)))
        .connection_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_on_check_out(true) // keel's manager decides whether a ping is due
        .error_sink(Box::new(QuietSink))
        .build_unchecked(KeelManager::<C>::new(Arc::clone(shared)));
    let _ = pool.add(first);
    Ok(pool)
}

impl Pool {
    /// Opens a pool: connects once right away, so a wrong URL or an unreachable server fails
    /// here, within `connect_timeout`, with an error naming the host and port and what to check.
    pub async fn connect(config: Config) -> Result<Pool, Error> {
        let shared = Arc::new(Shared::new(config));
        let pools = match shared.config.backend() {
            Backend::Postgres => Pools::Postgres(build(&shared).await?),
            Backend::Mysql => Pools::Mysql(build(&shared).await?),
            Backend::Sqlite => Pools::Sqlite(build(&shared).await?),
        };
        readers::spawn_reaper(&shared);
        tracing::debug!(target: "keel_pool", url = %shared.config.url, "pool opened");
        let replicas = replicas::Replicas::new(&shared.config);
        let inner = Arc::new(Inner { shared, replicas, pools: RwLock::new(Some(pools)) });
        if let Some(r) = &inner.replicas {
            replicas::spawn_prober(Arc::downgrade(&inner), Arc::clone(r));
        }
        Ok(Pool { inner })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    fn pools(&self) -> Option<Pools> {
        self.inner.pools.read().ok().and_then(|p| p.clone())
    }

    /// The configuration this pool was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// The backend of this pool.
    pub fn backend(&self) -> Backend {
        self.config().backend()
    }

    /// Checks out a connection, waiting up to `acquire_timeout`. A connection that sat idle
    /// longer than `ping_idle_after` is pinged first, and replaced if the ping fails.
    ///
    /// Waiting is fair: callers are served in the order they arrived (a FIFO line of
    /// `max_size` places in front of bb8, whose own waiters can be overtaken by newcomers and
    /// starve under overload). The returned [`Conn`] cancels cheaply when dropped mid-query
    /// (see [`cancel`](crate::pool::cancel)).
    ///
    /// Fails with [`ErrorKind::AcquireTimeout`](crate::ErrorKind::AcquireTimeout) when none
    /// became available (the error carries the last connection failure, if any),
    /// [`ErrorKind::PoolClosed`](crate::ErrorKind::PoolClosed) after [`Pool::close`], or
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) inside a [`Pool::detached`]
    /// operation whose caller went away.
    pub async fn get(&self) -> Result<Conn, Error> {
        if self.inner.replicas.is_some()
            && let Some(session) = replicas::Session::current()
        {
            // A primary connection may write: the session's token is taken before its next read.
            session.owe();
        }
        self.checkout().await
    }

    /// [`Pool::get`] for reads: a read-your-writes session owes no token for it.
    #[doc(hidden)]
    pub async fn checkout(&self) -> Result<Conn, Error> {
        let shared = &self.inner.shared;
        let Some(pools) = self.pools().filter(|_| !shared.is_closed()) else {
            return Err(Error::PoolClosed);
        };
        let scope = cancel::current();
        if scope.as_ref().is_some_and(|s| s.is_cancelled()) {
            return Err(Error::Cancelled);
        }
        let started = Instant::now();
        let counters = &shared.counters;
        counters.waiting.fetch_add(1, Relaxed);
        // Decrement even when the caller drops this future mid-wait.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        let waiting = Waiting(&counters.waiting);
        let limit = self.config().acquire_timeout;
        let held = scope.clone();
        let checkout = async {
            // The line: a place is free at once unless others are waiting (tokio's semaphore hands
            // released places to waiters in order), so the common case costs no timer.
            let (permit, budget) = match Arc::clone(&shared.line).try_acquire_owned() {
                Ok(p) => (Some(p), None),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(bb8::RunError::User(Error::PoolClosed));
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    match tokio::time::timeout(limit, Arc::clone(&shared.line).acquire_owned()).await {
                        Ok(Ok(p)) => (Some(p), Some(limit.saturating_sub(started.elapsed()))),
                        Ok(Err(_)) => return Err(bb8::RunError::User(Error::PoolClosed)),
                        Err(_) => (None, Some(Duration::ZERO)),
                    }
                }
            };
            match permit {
                None => Err(bb8::RunError::TimedOut),
                Some(permit) => {
                    let got = async {
                        match &pools {
                            Pools::Postgres(p) => p
                                .get_owned()
                                .await
                                .map(|c| Conn::Postgres(Checkout::new(c, Some(permit), held))),
                            Pools::Mysql(p) => {
                                p.get_owned().await.map(|c| Conn::Mysql(Checkout::new(c, Some(permit), held)))
                            }
                            Pools::Sqlite(p) => p
                                .get_owned()
                                .await
                                .map(|c| Conn::Sqlite(Checkout::new(c, Some(permit), held))),
                        }
                    };
                    match budget {
                        None => got.await,
                        Some(left) => {
                            tokio::time::timeout(left, got).await.unwrap_or(Err(bb8::RunError::TimedOut))
                        }
                    }
                }
            }
        };
        // An operation whose caller went away stops waiting for a connection at once.
        let result = match &scope {
            None => checkout.await,
            Some(s) => tokio::select! {
                biased;
                r = checkout => r,
                () = s.until_cancelled() => Err(bb8::RunError::User(Error::Cancelled)),
            },
        };
        drop(waiting);
        match result {
            Ok(conn) => {
                counters.acquires.fetch_add(1, Relaxed);
                counters.acquire_latency.record(started.elapsed());
                Ok(conn)
            }
            Err(bb8::RunError::TimedOut) => {
                counters.acquire_timeouts.fetch_add(1, Relaxed);
                Err(Error::AcquireTimeout { waited: limit, last_connect_error: shared.last_connect_error() })
            }
            Err(bb8::RunError::User(e)) => Err(e),
        }
    }

    /// A plain tokio-postgres client on the pool's PostgreSQL server, opened with the pool's
    /// settings but outside the pool, for what diesel-async cannot do (`COPY … FROM STDIN`).
    /// The caller owns it; dropping it closes the session. Fails with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) on another backend.
    pub async fn postgres_client(&self) -> Result<tokio_postgres::Client, Error> {
        self.own_client_of(Backend::Postgres, "PostgreSQL")?;
        crate::connect::pg_client(self.config()).await
    }

    /// A plain mysql_async connection on the pool's MySQL/MariaDB server, opened with the pool's
    /// URL handling and TLS but outside the pool, for what diesel-async does not expose (column
    /// metadata: decimal precision and scale, binary or text collation). The caller owns it;
    /// dropping it closes the session. Fails with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) on another backend.
    pub async fn mysql_client(&self) -> Result<mysql_async::Conn, Error> {
        self.own_client_of(Backend::Mysql, "MySQL")?;
        crate::connect::mysql_client(self.config()).await
    }

    /// Whether a `name` driver client outside the pool may be opened on this pool.
    fn own_client_of(&self, backend: Backend, name: &str) -> Result<(), Error> {
        if self.backend() != backend {
            return Err(Error::invalid_input(format!(
                "a {name} client was asked of a {} pool",
                self.backend()
            )));
        }
        if self.is_closed() {
            return Err(Error::PoolClosed);
        }
        Ok(())
    }

    /// The server's version string (`15.4`, `10.11.6-MariaDB`, `3.46.0` for SQLite).
    pub async fn server_version(&self) -> Result<String, Error> {
        let expr = match self.backend() {
            Backend::Postgres => "current_setting('server_version')",
            Backend::Mysql => "version()",
            Backend::Sqlite => "sqlite_version()",
        };
        let mut conn = self.get().await?;
        crate::with_conn!(&mut conn, |c| {
            diesel::select(diesel::dsl::sql::<Text>(expr)).get_result::<String>(c).await
        })
    }

    /// A round trip to the server with its latency, and the server version.
    pub async fn health(&self) -> Result<Health, Error> {
        let started = Instant::now();
        let server_version = self.server_version().await?;
        Ok(Health { backend: self.backend(), latency: started.elapsed(), server_version })
    }

    /// Connections open and idle right now.
    pub fn state(&self) -> PoolState {
        let s = self.pools().map(|p| p.state());
        PoolState {
            connections: s.as_ref().map_or(0, |s| s.connections),
            idle: s.as_ref().map_or(0, |s| s.idle_connections),
            max_size: self.config().effective_max_size(),
        }
    }

    /// The pool's numbers: connections, checkouts and their latency, queries, retries.
    pub fn stats(&self) -> PoolStats {
        let state = self.pools().map(|p| p.state());
        match state {
            Some(s) => snapshot(&self.inner.shared.counters, &s, self.config().effective_max_size()),
            None => PoolStats { max_size: self.config().effective_max_size(), ..Default::default() },
        }
    }

    /// Closes the pool: no more checkouts (they fail with `PoolClosed`), waits up to `deadline`
    /// for checked-out connections to come back, then closes every connection. Returns how many
    /// connections were still checked out at the deadline (they close when returned).
    pub async fn close(&self, deadline: Duration) -> u32 {
        self.inner.shared.closed.store(true, Relaxed);
        self.inner.shared.line.close();
        if let Some(r) = &self.inner.replicas {
            r.close().await;
        }
        let until = Instant::now() + deadline;
        let mut in_use = 0;
        while let Some(pools) = self.pools() {
            let s = pools.state();
            in_use = s.connections.saturating_sub(s.idle_connections);
            if in_use == 0 || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Ok(mut p) = self.inner.pools.write() {
            p.take();
        }
        self.inner.shared.readers.clear();
        in_use
    }

    /// True once [`Pool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("url", &self.config().url).field("state", &self.state()).finish()
    }
}

/// A snapshot of the pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections open (idle or checked out).
    pub connections: u32,
    /// Connections idle in the pool.
    pub idle: u32,
    /// The most connections the pool will open.
    pub max_size: u32,
}

/// The result of [`Pool::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The backend.
    pub backend: Backend,
    /// Checkout plus one query round trip.
    pub latency: Duration,
    /// The server's version string.
    pub server_version: String,
}
