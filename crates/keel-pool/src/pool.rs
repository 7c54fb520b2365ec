//! [`Pool`]: a bb8 pool per backend behind one type.

use std::sync::{Arc, Mutex};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolError};
use futures_util::FutureExt as _;

use crate::config::{Backend, Config, DatabaseUrl};
use crate::conn::{Conn, MysqlManager, PgManager, SqliteManager};
use crate::connect;
use crate::error::Error;

/// A pool of connections to one database, on the backend its URL chose. Cheap to clone: clones
/// share the same connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), keel_pool::Error> {
/// let pool = keel_pool::Pool::connect(keel_pool::Config::from_env()?).await?;
/// pool.migrate().await?;
/// let mut conn = pool.get().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pools: Pools,
    last_connect_error: LastError,
}

enum Pools {
    Postgres(bb8::Pool<PgManager>),
    Mysql(bb8::Pool<MysqlManager>),
    Sqlite(bb8::Pool<SqliteManager>),
}

/// The most recent connection failure, kept so an acquire timeout can say why (bb8 itself only
/// reports "timed out").
#[derive(Clone)]
struct LastError {
    slot: Arc<Mutex<Option<String>>>,
    url: DatabaseUrl,
}

impl std::fmt::Debug for LastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LastError")
    }
}

impl LastError {
    fn set(&self, message: String) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(message);
        }
    }

    fn get(&self) -> Option<String> {
        self.slot.lock().ok().and_then(|s| s.clone())
    }
}

impl bb8::ErrorSink<PoolError> for LastError {
    fn sink(&self, error: PoolError) {
        let message = self.url.scrub(&error.to_string());
        tracing::warn!(target: "keel_pool", error = %message, "database connection attempt failed");
        self.set(message);
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

fn manager<C, F>(config: &Config, open: F) -> AsyncDieselConnectionManager<C>
where
    C: diesel_async::AsyncConnection + 'static,
    F: Fn(Config) -> futures_util::future::BoxFuture<'static, Result<C, Error>> + Send + Sync + 'static,
{
    let cfg = config.clone();
    let mut mc = ManagerConfig::default();
    mc.custom_setup = Box::new(move |_url| {
        open(cfg.clone())
            .map(|r| r.map_err(|e| diesel::ConnectionError::BadConnection(e.to_string())))
            .boxed()
    });
    AsyncDieselConnectionManager::new_with_config(config.url.redacted(), mc)
}

async fn build<M>(config: &Config, manager: M, first: M::Connection, sink: LastError) -> bb8::Pool<M>
where
    M: bb8::ManageConnection<Error = PoolError>,
{
    let pool = bb8::Pool::builder()
        .max_size(config.effective_max_size())
        .min_idle(config.min_idle.map(|n| n.min(config.effective_max_size())))
        .connection_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .error_sink(Box::new(sink))
        .build_unchecked(manager);
    // The first connection was opened by hand so that an unreachable server fails at once with
    // the real error; hand it to the pool instead of wasting it.
    let _ = pool.add(first);
    pool
}

impl Pool {
    /// Opens a pool: connects once right away, so a wrong URL or an unreachable server fails
    /// here, within `connect_timeout`, with an error naming the host and port and what to check.
    pub async fn connect(config: Config) -> Result<Pool, Error> {
        let sink = LastError { slot: Arc::default(), url: config.url.clone() };
        let pools = match config.backend() {
            Backend::Postgres => {
                let first = connect::pg(&config).await?;
                let m = manager(&config, |c| async move { connect::pg(&c).await }.boxed());
                Pools::Postgres(build(&config, m, first, sink.clone()).await)
            }
            Backend::Mysql => {
                let first = connect::mysql(&config).await?;
                let m = manager(&config, |c| async move { connect::mysql(&c).await }.boxed());
                Pools::Mysql(build(&config, m, first, sink.clone()).await)
            }
            Backend::Sqlite => {
                let first = connect::sqlite(&config).await?;
                let m = manager(&config, |c| async move { connect::sqlite(&c).await }.boxed());
                Pools::Sqlite(build(&config, m, first, sink.clone()).await)
            }
        };
        tracing::debug!(target: "keel_pool", url = %config.url, backend = %config.backend(), "pool opened");
        Ok(Pool { inner: Arc::new(Inner { config, pools, last_connect_error: sink }) })
    }

    /// The configuration this pool was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backend of this pool.
    pub fn backend(&self) -> Backend {
        self.inner.config.backend()
    }

    /// Checks out a connection, waiting up to `acquire_timeout`.
    ///
    /// Fails with [`ErrorKind::AcquireTimeout`](crate::ErrorKind::AcquireTimeout) when none
    /// became available; the error carries the last connection failure when there was one.
    pub async fn get(&self) -> Result<Conn, Error> {
        let result = match &self.inner.pools {
            Pools::Postgres(p) => p.get_owned().await.map(Conn::Postgres),
            Pools::Mysql(p) => p.get_owned().await.map(Conn::Mysql),
            Pools::Sqlite(p) => p.get_owned().await.map(Conn::Sqlite),
        };
        result.map_err(|e| match e {
            bb8::RunError::TimedOut => Error::AcquireTimeout {
                waited: self.inner.config.acquire_timeout,
                last_connect_error: self.inner.last_connect_error.get(),
            },
            bb8::RunError::User(e) => {
                let message = self.inner.config.url.scrub(&e.to_string());
                connect::connect_error(&self.inner.config, &message)
            }
        })
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

    /// Connections open and idle right now.
    pub fn state(&self) -> PoolState {
        let s = match &self.inner.pools {
            Pools::Postgres(p) => p.state(),
            Pools::Mysql(p) => p.state(),
            Pools::Sqlite(p) => p.state(),
        };
        PoolState {
            connections: s.connections,
            idle: s.idle_connections,
            max_size: self.config().effective_max_size(),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("url", &self.inner.config.url).field("state", &self.state()).finish()
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
