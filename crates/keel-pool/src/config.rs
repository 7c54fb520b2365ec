//! [`Config`]: where the database is and how the pool behaves. The URL itself is parsed in
//! [`url`](crate::url).
//!
//! Every knob has a default and an environment variable read by [`Config::from_env`]. Where the
//! URL can say the same (TLS, keepalive), the URL gives the starting value and what is set
//! later wins: `KEEL_*` variables (applied by `from_env` after the URL), then builder calls.
//!
//! | knob | env | default |
//! |---|---|---|
//! | database URL | `DATABASE_URL` | none: `from_env` fails when unset |
//! | [`max_size`](Config::max_size) | `KEEL_POOL_MAX_SIZE` | 10 (always 1 for `sqlite::memory:`) |
//! | [`min_idle`](Config::min_idle) | `KEEL_POOL_MIN_IDLE` | none |
//! | [`acquire_timeout`](Config::acquire_timeout) | `KEEL_ACQUIRE_TIMEOUT_MS` | 5000 ms |
//! | [`connect_timeout`](Config::connect_timeout) | `KEEL_CONNECT_TIMEOUT_MS` | 5000 ms |
//! | [`idle_timeout`](Config::idle_timeout) | `KEEL_IDLE_TIMEOUT_MS` | 600 000 ms (0 = never) |
//! | [`max_lifetime`](Config::max_lifetime) | `KEEL_MAX_LIFETIME_MS` | 1 800 000 ms (0 = never) |
//! | [`application_name`](Config::application_name) | `KEEL_APPLICATION_NAME` | `keel` |
//! | [`sqlite_busy_timeout`](Config::sqlite_busy_timeout) | `KEEL_SQLITE_BUSY_TIMEOUT_MS` | 5000 ms |
//! | [`ping_idle_after`](Config::ping_idle_after) | `KEEL_PING_IDLE_AFTER_MS` | 1000 ms |
//! | [`statement_timeout`](Config::statement_timeout) | `KEEL_STATEMENT_TIMEOUT_MS` | none (0 = none) |
//! | [`slow_query_threshold`](Config::slow_query_threshold) | `KEEL_SLOW_QUERY_MS` | 1000 ms (0 = off) |
//! | [`read_connections`](Config::read_connections) | `KEEL_PG_READ_CONNECTIONS` | PostgreSQL: max_size / 4, at least 1 (0 = off; always 0 behind PgBouncer) |
//! | [`pgbouncer`](Config::pgbouncer) | URL `?pgbouncer=true` | off |
//! | [`read_stall_after`](Config::read_stall_after) | `KEEL_READ_STALL_AFTER_MS` | 5 ms |
//! | [`migration_lock_timeout`](Config::migration_lock_timeout) | `KEEL_MIGRATION_LOCK_TIMEOUT_MS` | 60 000 ms |
//! | [`ssl_mode`](Config::ssl_mode) | `KEEL_SSL_MODE` | URL `sslmode` / `ssl-mode`, else `prefer` (see [`tls`](crate::tls)) |
//! | [`ssl_root_cert`](Config::ssl_root_cert) | `KEEL_SSL_ROOT_CERT` | URL `sslrootcert` / `ssl-ca`, else the system store |
//! | [`ssl_client_cert`](Config::ssl_client_cert) | `KEEL_SSL_CERT` and `KEEL_SSL_KEY` | URL `sslcert`+`sslkey` / `ssl-cert`+`ssl-key`, else none |
//! | [`tcp_keepalive`](Config::tcp_keepalive) | `KEEL_TCP_KEEPALIVE_MS` | URL `keepalives`/`keepalives_idle` (PostgreSQL), `tcp_keepalive` (MySQL, ms), else 60 000 ms idle (0 = off) |
//! | [`replica`](Config::replica) | `KEEL_REPLICA_URLS` (comma-separated) | none |
//! | [`max_replica_lag`](Config::max_replica_lag) | `KEEL_MAX_REPLICA_LAG_MS`, `KEEL_MAX_REPLICA_LAG_BYTES` | 1000 ms, 16 MiB |
//! | [`read_your_writes_wait`](Config::read_your_writes_wait) | `KEEL_READ_YOUR_WRITES_WAIT_MS` | 5 ms |
//! | [`retry`](Config::retry) | `KEEL_RETRY_MAX_ATTEMPTS`, `KEEL_RETRY_BASE_MS`, `KEEL_RETRY_MAX_BACKOFF_MS`, `KEEL_RETRY_DEADLINE_MS` | see [`RetryPolicy`](crate::RetryPolicy) |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::tls::{RootCerts, SslMode, TlsCache, TlsConfig};
use crate::url::{Backend, DatabaseUrl, SqliteTarget};

/// Idle time before the first TCP keepalive probe, unless the URL or
/// [`Config::tcp_keepalive`] says otherwise.
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Pool configuration. Build it with [`Config::new`] or [`Config::from_env`], then adjust with
/// the builder methods. `Debug` never shows the password.
///
/// ```
/// use std::time::Duration;
/// let config = keel_pool::Config::new("postgres://app:secret@db:5432/app")?
///     .max_size(16)
///     .acquire_timeout(Duration::from_secs(2));
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), keel_pool::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) url: DatabaseUrl,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) application_name: String,
    pub(crate) sqlite_busy_timeout: Duration,
    pub(crate) ping_idle_after: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) slow_query_threshold: Option<Duration>,
    pub(crate) retry: crate::RetryPolicy,
    pub(crate) read_connections: Option<u32>,
    pub(crate) read_stall_after: Duration,
    pub(crate) migration_lock_timeout: Duration,
    pub(crate) tls: TlsConfig,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) replicas: Vec<DatabaseUrl>,
    pub(crate) max_replica_lag: (Duration, u64),
    pub(crate) read_your_writes_wait: Duration,
    pub(crate) pgbouncer: bool,
    /// Built from `tls` once and shared by clones; replaced whenever `tls` changes.
    pub(crate) tls_cache: Arc<TlsCache>,
}

impl Config {
    /// A configuration with every default for the database at `url`.
    ///
    /// Fails with a configuration error when the URL is invalid or its scheme unsupported.
    pub fn new(url: &str) -> Result<Self, Error> {
        let url = DatabaseUrl::parse(url)?;
        Ok(Config {
            tls: url.tls().clone(),
            tcp_keepalive: url.tcp_keepalive().unwrap_or(Some(DEFAULT_TCP_KEEPALIVE)),
            tls_cache: Arc::default(),
            max_size: 10,
            min_idle: None,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            application_name: "keel".to_owned(),
            sqlite_busy_timeout: Duration::from_secs(5),
            ping_idle_after: Duration::from_secs(1),
            statement_timeout: None,
            slow_query_threshold: Some(Duration::from_secs(1)),
            retry: crate::RetryPolicy::default(),
            read_connections: None,
            read_stall_after: Duration::from_millis(5),
            migration_lock_timeout: crate::pool::migrate::LOCK_TIMEOUT,
            replicas: Vec::new(),
            max_replica_lag: (Duration::from_secs(1), 16 << 20),
            read_your_writes_wait: Duration::from_millis(5),
            pgbouncer: url.pgbouncer().unwrap_or(false),
            url,
        })
    }

    /// Reads `DATABASE_URL` and the `KEEL_*` variables in the table above.
    ///
    /// Fails when `DATABASE_URL` is unset (a library does not guess where your data lives),
    /// or when a variable does not parse.
    pub fn from_env() -> Result<Self, Error> {
        let url = std::env::var("DATABASE_URL").map_err(|_| {
            Error::config(
                "DATABASE_URL is not set; set it to e.g. postgres://user@localhost:5432/app, \
                 mysql://user@localhost:3306/app or sqlite://app.db"
                    .to_owned(),
            )
        })?;
        Config::new(&url)?.with_env_overrides()
    }

    /// Applies the `KEEL_*` variables (not `DATABASE_URL`) on top of this configuration.
    pub fn with_env_overrides(mut self) -> Result<Self, Error> {
        if let Some(v) = env_parse::<u32>("KEEL_POOL_MAX_SIZE")? {
            self = self.max_size(v);
        }
        if let Some(v) = env_parse::<u32>("KEEL_POOL_MIN_IDLE")? {
            self = self.min_idle(Some(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_ACQUIRE_TIMEOUT_MS")? {
            self = self.acquire_timeout(Duration::from_millis(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_CONNECT_TIMEOUT_MS")? {
            self = self.connect_timeout(Duration::from_millis(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_IDLE_TIMEOUT_MS")? {
            self = self.idle_timeout((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Some(v) = env_parse::<u64>("KEEL_MAX_LIFETIME_MS")? {
            self = self.max_lifetime((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Ok(v) = std::env::var("KEEL_APPLICATION_NAME") {
            self = self.application_name(v);
        }
        if let Some(v) = env_parse::<u64>("KEEL_SQLITE_BUSY_TIMEOUT_MS")? {
            self = self.sqlite_busy_timeout(Duration::from_millis(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_PING_IDLE_AFTER_MS")? {
            self = self.ping_idle_after(Duration::from_millis(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_STATEMENT_TIMEOUT_MS")? {
            self = self.statement_timeout((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Some(v) = env_parse::<u64>("KEEL_SLOW_QUERY_MS")? {
            self = self.slow_query_threshold((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Some(v) = env_parse::<u32>("KEEL_PG_READ_CONNECTIONS")? {
            self = self.read_connections(v);
        }
        if let Some(v) = env_parse::<u64>("KEEL_READ_STALL_AFTER_MS")? {
            self = self.read_stall_after(Duration::from_millis(v));
        }
        if let Some(v) = env_parse::<u64>("KEEL_MIGRATION_LOCK_TIMEOUT_MS")? {
            self = self.migration_lock_timeout(Duration::from_millis(v));
        }
        if let Ok(v) = std::env::var("KEEL_SSL_MODE") {
            self = self
                .ssl_mode(v.parse().map_err(|e: Error| Error::config(format!("KEEL_SSL_MODE={v:?}: {e}")))?);
        }
        if let Ok(v) = std::env::var("KEEL_SSL_ROOT_CERT") {
            self = self.ssl_root_cert(v);
        }
        match (std::env::var("KEEL_SSL_CERT"), std::env::var("KEEL_SSL_KEY")) {
            (Ok(cert), Ok(key)) => self = self.ssl_client_cert(cert, key),
            (Err(_), Err(_)) => {}
            _ => {
                return Err(Error::config("KEEL_SSL_CERT and KEEL_SSL_KEY must be set together".to_owned()));
            }
        }
        if let Some(v) = env_parse::<u64>("KEEL_TCP_KEEPALIVE_MS")? {
            self = self.tcp_keepalive((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Ok(v) = std::env::var("KEEL_REPLICA_URLS") {
            for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                self = self.replica(url)?;
            }
        }
        let lag_ms = env_parse::<u64>("KEEL_MAX_REPLICA_LAG_MS")?;
        let lag_bytes = env_parse::<u64>("KEEL_MAX_REPLICA_LAG_BYTES")?;
        if lag_ms.is_some() || lag_bytes.is_some() {
            let (time, bytes) = self.max_replica_lag;
            self =
                self.max_replica_lag(lag_ms.map_or(time, Duration::from_millis), lag_bytes.unwrap_or(bytes));
        }
        if let Some(v) = env_parse::<u64>("KEEL_READ_YOUR_WRITES_WAIT_MS")? {
            self = self.read_your_writes_wait(Duration::from_millis(v));
        }
        self.retry = self.retry.with_env_overrides()?;
        Ok(self)
    }

    /// The database URL (its `Display` hides the password).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The backend selected by the URL.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    /// Most connections the pool opens (default 10, at least 1). A `sqlite::memory:` database
    /// always uses 1: each in-memory connection would otherwise see its own empty database.
    pub fn max_size(mut self, n: u32) -> Self {
        self.max_size = n.max(1);
        self
    }

    /// Idle connections the pool keeps open even when unused (default: none).
    pub fn min_idle(mut self, n: Option<u32>) -> Self {
        self.min_idle = n;
        self
    }

    /// How long [`Pool::get`](crate::Pool::get) waits for a connection before failing with
    /// an acquire-timeout error (default 5 s).
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// How long opening one connection may take (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Idle connections above `min_idle` are closed after this long (default 10 min).
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Connections are closed and replaced after this age (default 30 min).
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.max_lifetime = d;
        self
    }

    /// The name the server shows for keel's sessions (PostgreSQL `application_name`;
    /// default `keel`).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// How long a SQLite connection waits on a locked database before failing with a busy
    /// error (default 5 s).
    pub fn sqlite_busy_timeout(mut self, d: Duration) -> Self {
        self.sqlite_busy_timeout = d;
        self
    }

    /// A connection that sat idle in the pool longer than this is pinged before it is handed
    /// out (default 1 s). Pinging on every checkout, bb8's default, costs a round trip per
    /// query; never pinging hands out connections the server has closed.
    pub fn ping_idle_after(mut self, d: Duration) -> Self {
        self.ping_idle_after = d;
        self
    }

    /// Server-side limit on each statement (default none): PostgreSQL `statement_timeout`,
    /// MariaDB `max_statement_time`, MySQL `MAX_EXECUTION_TIME` (SELECTs only). The server
    /// stops the statement; the error kind is `StatementTimeout`. SQLite has no equivalent.
    pub fn statement_timeout(mut self, d: Option<Duration>) -> Self {
        self.statement_timeout = d;
        self
    }

    /// PostgreSQL: the server is PgBouncer in `pool_mode = transaction` (default: the URL's
    /// `?pgbouncer=true`, else off). Consecutive transactions of one client may then run on
    /// different server sessions, so keel keeps everything a statement needs inside one
    /// transaction:
    /// - every autocommit statement run through [`with_conn!`](crate::with_conn) (and so every
    ///   repository call) runs in a `BEGIN … COMMIT` of its own, so diesel-async's named
    ///   prepared statement lives and dies (Parse … Close) on one server session; the statement
    ///   cache is off, since a cached statement would outlive its server session;
    /// - [`statement_timeout`](Config::statement_timeout) is set with `SET LOCAL` in each
    ///   transaction, not as a startup option (PgBouncer refuses unknown startup options);
    /// - no shared read sessions ([`read_connections`](Config::read_connections) is 0): they
    ///   pipeline unrelated autocommit reads on one client connection, which a transaction
    ///   pooler may hand to different server sessions between them;
    /// - no `pg_cancel_backend`: the server pid keel would signal is not this client's. A
    ///   dropped statement is waited for (bounded by `statement_timeout`) and rolled back;
    /// - migrations run in one transaction under `pg_advisory_xact_lock`.
    ///
    /// Statements you run on a [`Conn`](crate::Conn) without `with_conn!` (matching on its
    /// variants) must be inside a transaction ([`Pool::transaction`](crate::Pool::transaction)).
    /// Ignored on other backends.
    pub fn pgbouncer(mut self, on: bool) -> Self {
        self.pgbouncer = on;
        self
    }

    /// Whether keel runs in PgBouncer transaction-mode mode (see [`pgbouncer`](Config::pgbouncer));
    /// always false off PostgreSQL.
    pub fn is_pgbouncer(&self) -> bool {
        self.pgbouncer && self.backend() == Backend::Postgres
    }

    /// The server-side statement limit set by [`statement_timeout`](Config::statement_timeout).
    pub fn statement_timeout_limit(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// Queries slower than this are logged at WARN on target `keel::query` (default 1 s).
    pub fn slow_query_threshold(mut self, d: Option<Duration>) -> Self {
        self.slow_query_threshold = d;
        self
    }

    /// The TLS mode for PostgreSQL and MySQL connections (default: the URL's `sslmode` /
    /// `ssl-mode`, else [`SslMode::Prefer`]). Env `KEEL_SSL_MODE`. See [`tls`](crate::tls).
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.tls = self.tls.with_mode(mode);
        self.tls_cache = Arc::default();
        self
    }

    /// Trusts the CA certificates in this PEM file (`system`: the system store, the default).
    /// Used by `verify-ca`, `verify-full`, and `require` once given. Env `KEEL_SSL_ROOT_CERT`.
    pub fn ssl_root_cert(mut self, path: impl AsRef<Path>) -> Self {
        self.tls = self.tls.with_root_certs(Some(RootCerts::parse(&path.as_ref().to_string_lossy())));
        self.tls_cache = Arc::default();
        self
    }

    /// Presents this client certificate chain and private key (PEM files) to servers that ask
    /// for one. Env `KEEL_SSL_CERT` and `KEEL_SSL_KEY`.
    pub fn ssl_client_cert(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.tls = self.tls.with_client_cert(cert.as_ref(), key.as_ref());
        self.tls_cache = Arc::default();
        self
    }

    /// Replaces all TLS settings at once.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self.tls_cache = Arc::default();
        self
    }

    /// The TLS settings connections use.
    pub fn tls_config(&self) -> &TlsConfig {
        &self.tls
    }

    /// TCP keepalive on server connections: the idle time before the first probe, `None` for
    /// off (default 60 s, or what the URL says). Without it a connection whose peer vanished
    /// (a half-open socket) can hang until the OS gives up, hours later. Env
    /// `KEEL_TCP_KEEPALIVE_MS` (0 = off).
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// The TCP keepalive idle time in use (`None`: off).
    pub fn tcp_keepalive_idle(&self) -> Option<Duration> {
        self.tcp_keepalive
    }

    /// Retry policy for [`Pool::transaction`](crate::Pool::transaction).
    pub fn retry(mut self, policy: crate::RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy transactions use unless they set their own.
    pub fn retry_policy(&self) -> &crate::RetryPolicy {
        &self.retry
    }

    /// PostgreSQL: how many extra sessions the pool keeps for pipelined autocommit reads
    /// ([`with_read!`](crate::with_read)): many concurrent reads share each of them, so a busy
    /// service needs fewer round trips and fewer server processes. Opened on first use,
    /// outside `max_size`. 0 sends reads through the pool like everything else. Ignored on
    /// other backends (MySQL's protocol cannot pipeline). Env `KEEL_PG_READ_CONNECTIONS`.
    pub fn read_connections(mut self, n: u32) -> Self {
        self.read_connections = Some(n);
        self
    }

    /// PostgreSQL: a shared read session whose oldest read in flight has had no reply for
    /// this long (a read waiting for a lock, a long scan) takes no new reads: they go to
    /// another shared session or a pooled connection instead of queueing behind it (default
    /// 5 ms). Env `KEEL_READ_STALL_AFTER_MS`.
    pub fn read_stall_after(mut self, d: Duration) -> Self {
        self.read_stall_after = d;
        self
    }

    /// How long [`Pool::migrate`](crate::Pool::migrate) waits for the migration lock another
    /// migrator holds before failing (default 60 s, at least 1 s: the servers count whole
    /// seconds; SQLite waits its [`sqlite_busy_timeout`](Config::sqlite_busy_timeout) instead).
    /// Env `KEEL_MIGRATION_LOCK_TIMEOUT_MS`.
    pub fn migration_lock_timeout(mut self, d: Duration) -> Self {
        self.migration_lock_timeout = d.max(Duration::from_secs(1));
        self
    }

    /// Adds a read replica (PostgreSQL streaming replica; any number): autocommit reads and
    /// read-only transactions go to a usable replica, the rest to the primary (see
    /// [`replicas`](crate::pool::replicas)). The replica's connections take this
    /// configuration's knobs, and TLS from its own URL. Env `KEEL_REPLICA_URLS`
    /// (comma-separated). Fails on an invalid URL, or when the primary is not PostgreSQL
    /// (MySQL/MariaDB replicas are not routed yet).
    ///
    /// ```
    /// let config = keel_pool::Config::new("postgres://app@primary:5432/app")?
    ///     .replica("postgres://app@replica-1:5432/app")?;
    /// # Ok::<(), keel_pool::Error>(())
    /// ```
    pub fn replica(mut self, url: &str) -> Result<Self, Error> {
        let url = DatabaseUrl::parse(url)?;
        if self.backend() != Backend::Postgres || url.backend() != Backend::Postgres {
            return Err(Error::config(format!(
                "replica {url}: read replicas are routed on PostgreSQL only (primary: {})",
                self.backend()
            )));
        }
        self.replicas.push(url);
        Ok(self)
    }

    /// A replica further behind the primary than this — in time or in WAL bytes — takes no
    /// reads until it catches up (default 1 s and 16 MiB). Env `KEEL_MAX_REPLICA_LAG_MS`,
    /// `KEEL_MAX_REPLICA_LAG_BYTES`.
    pub fn max_replica_lag(mut self, time: Duration, bytes: u64) -> Self {
        self.max_replica_lag = (time, bytes);
        self
    }

    /// How long a read with a causality token waits for a replica to replay past it before
    /// the primary serves it instead (default 5 ms). Env `KEEL_READ_YOUR_WRITES_WAIT_MS`.
    pub fn read_your_writes_wait(mut self, d: Duration) -> Self {
        self.read_your_writes_wait = d;
        self
    }

    /// The replicas' URLs.
    pub fn replica_urls(&self) -> &[DatabaseUrl] {
        &self.replicas
    }

    /// The configuration of one replica's own pool: these knobs, its URL and TLS settings, no
    /// replicas of its own.
    pub(crate) fn for_replica(&self, url: &DatabaseUrl) -> Config {
        let mut c = self.clone();
        c.tls = url.tls().clone();
        c.tls_cache = Arc::default();
        c.pgbouncer = url.pgbouncer().unwrap_or(false);
        c.url = url.clone();
        c.replicas = Vec::new();
        c
    }

    /// The number of shared read connections the pool opens on demand: PostgreSQL only;
    /// [`read_connections`](Config::read_connections) if set, else a quarter of `max_size`
    /// (at least 1).
    pub fn effective_read_connections(&self) -> u32 {
        match self.backend() {
            // Behind a transaction pooler pipelined autocommit reads could land on different
            // server sessions: see `pgbouncer`.
            Backend::Postgres if self.pgbouncer => 0,
            Backend::Postgres => self.read_connections.unwrap_or(self.max_size.div_ceil(4).max(1)),
            _ => 0,
        }
    }

    /// The pool size actually used (1 for `sqlite::memory:`).
    pub fn effective_max_size(&self) -> u32 {
        match self.url.sqlite_target() {
            Some(SqliteTarget::Memory) => 1,
            _ => self.max_size,
        }
    }
}

pub(crate) fn env_parse<T: FromStr>(name: &str) -> Result<Option<T>, Error>
where
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| Error::config(format!("{name}={v:?} is not valid: {e}"))),
        Err(_) => Ok(None),
    }
}
