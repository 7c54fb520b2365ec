//! [`Config`]: where the database is and how the pool behaves.
//!
//! Every knob has a default and an environment variable read by [`Config::from_env`]:
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
//! | [`read_connections`](Config::read_connections) | `KEEL_PG_READ_CONNECTIONS` | PostgreSQL: max_size / 4, at least 1 (0 = off) |
//! | [`retry`](Config::retry) | `KEEL_RETRY_MAX_ATTEMPTS`, `KEEL_RETRY_BASE_MS`, `KEEL_RETRY_MAX_BACKOFF_MS`, `KEEL_RETRY_DEADLINE_MS` | see [`RetryPolicy`](crate::RetryPolicy) |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// The database backends keel supports, chosen at run time from the URL scheme.
/// Exhaustive on purpose, like [`Conn`](crate::Conn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// PostgreSQL ≥ 13 (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL 8 or MariaDB ≥ 10.6 (`mysql://`, `mariadb://`).
    Mysql,
    /// Embedded SQLite, bundled (`sqlite://path`, `sqlite::memory:`).
    Sqlite,
}

impl Backend {
    /// All backends, in the order tests and reports list them.
    pub const ALL: [Backend; 3] = [Backend::Postgres, Backend::Mysql, Backend::Sqlite];

    /// The name used everywhere (env, flags, JSON): `postgres`, `mysql`, `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// Parses `postgres`, `mysql` (or `mariadb`) and `sqlite`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::Mysql),
            "sqlite" => Ok(Backend::Sqlite),
            other => Err(Error::config(format!(
                "unknown backend {other:?}; expected one of: postgres, mysql, sqlite"
            ))),
        }
    }
}

const SUPPORTED_SCHEMES: &str =
    "postgres://, postgresql://, mysql://, mariadb://, sqlite://<path>, sqlite::memory:";

/// A parsed database URL. It keeps the password but never shows it: `Display` and `Debug`
/// print the URL without it (`postgres://app@db:5432/app (password hidden)`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver gets: the URL as given, with `mariadb://` turned into `mysql://`.
    driver_url: String,
    redacted: String,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    sqlite_target: Option<SqliteTarget>,
}

/// Where a SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteTarget {
    /// A file path (relative paths are relative to the working directory).
    File(String),
    /// A private in-memory database (`sqlite::memory:`); the pool holds one connection.
    Memory,
}

impl DatabaseUrl {
    /// Parses a URL and picks the backend from its scheme.
    ///
    /// Fails with a configuration error, listing the supported schemes, for anything else;
    /// the error never contains the password.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::config(format!(
                "the database URL is empty; expected one of: {SUPPORTED_SCHEMES}"
            )));
        }
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            return Self::parse_sqlite(raw, rest);
        }
        let scheme = raw.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let backend = match scheme.as_deref() {
            Some("postgres" | "postgresql") => Backend::Postgres,
            Some("mysql" | "mariadb") => Backend::Mysql,
            Some(other) => {
                let shown: String = other.chars().take(20).collect();
                return Err(Error::config(format!(
                    "unsupported database URL scheme `{shown}://`; supported: {SUPPORTED_SCHEMES}"
                )));
            }
            None => {
                return Err(Error::config(format!(
                    "the database URL has no scheme; expected one of: {SUPPORTED_SCHEMES}"
                )));
            }
        };
        let parsed = url::Url::parse(raw).map_err(|e| {
            Error::config(format!(
                "invalid {backend} database URL ({e}); expected e.g. {}",
                match backend {
                    Backend::Postgres => "postgres://user:password@localhost:5432/dbname",
                    _ => "mysql://user:password@localhost:3306/dbname",
                }
            ))
        })?;
        let host = parsed.host_str().map(str::to_owned).filter(|h| !h.is_empty());
        if host.is_none() {
            return Err(Error::config(format!(
                "the {backend} database URL has no host; expected e.g. {}://user@localhost/dbname",
                parsed.scheme()
            )));
        }
        let password = parsed
            .password()
            .map(percent_decode)
            .or_else(|| parsed.query_pairs().find(|(k, _)| k == "password").map(|(_, v)| v.into_owned()));
        let mut shown = parsed.clone();
        let _ = shown.set_password(None);
        if parsed.query().is_some() {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" { "***".to_owned() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let mut redacted = shown.to_string();
        if password.is_some() {
            redacted.push_str(" (password hidden)");
        }
        let driver_url = match backend {
            Backend::Mysql if parsed.scheme() == "mariadb" => format!("mysql{}", &raw["mariadb".len()..]),
            _ => raw.to_owned(),
        };
        let port = parsed.port().or(match backend {
            Backend::Postgres => Some(5432),
            Backend::Mysql => Some(3306),
            Backend::Sqlite => None,
        });
        let database = parsed.path().trim_start_matches('/').split('/').next().filter(|d| !d.is_empty());
        Ok(DatabaseUrl {
            backend,
            driver_url,
            redacted,
            password,
            host,
            port,
            database: database.map(percent_decode),
            sqlite_target: None,
        })
    }

    fn parse_sqlite(raw: &str, rest: &str) -> Result<Self, Error> {
        let target = match rest {
            ":memory:" | "//:memory:" => SqliteTarget::Memory,
            _ => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                let path = path.split_once('?').map_or(path, |(p, _)| p);
                if path.is_empty() {
                    return Err(Error::config(
                        "the SQLite URL has no file path; use sqlite://keel.db, sqlite:///abs/path.db or sqlite::memory:"
                            .to_owned(),
                    ));
                }
                SqliteTarget::File(path.to_owned())
            }
        };
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            driver_url: raw.to_owned(),
            redacted: raw.to_owned(),
            password: None,
            host: None,
            port: None,
            database: None,
            sqlite_target: Some(target),
        })
    }

    /// The backend this URL selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Host name, for server backends.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Port, with the backend's default filled in, for server backends.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Database name from the URL path, if any.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The SQLite file or memory target, for SQLite URLs.
    pub fn sqlite_target(&self) -> Option<&SqliteTarget> {
        self.sqlite_target.as_ref()
    }

    /// The URL without its password, safe for logs and errors.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `host:port` for server backends, the path for SQLite.
    pub fn target(&self) -> String {
        match (&self.host, self.port, &self.sqlite_target) {
            (Some(h), Some(p), _) => format!("{h}:{p}"),
            (Some(h), None, _) => h.clone(),
            (_, _, Some(SqliteTarget::File(path))) => path.clone(),
            (_, _, Some(SqliteTarget::Memory)) => ":memory:".to_owned(),
            _ => self.redacted.clone(),
        }
    }

    /// The URL with its password, for handing to the driver only. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.driver_url
    }

    /// Replaces any occurrence of the password in `text` (e.g. a driver error) with `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.driver_url, &self.redacted);
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            text = text.replace(p, "***");
        }
        text
    }

    /// The same server with another database (server backends only): used to create and reach
    /// per-test databases.
    pub fn with_database(&self, database: &str) -> Result<Self, Error> {
        let mut url = url::Url::parse(&self.driver_url)
            .map_err(|e| Error::config(format!("cannot derive a URL from {}: {e}", self.redacted)))?;
        url.set_path(&format!("/{database}"));
        DatabaseUrl::parse(url.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

impl FromStr for DatabaseUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(s)
    }
}

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
}

impl Config {
    /// A configuration with every default for the database at `url`.
    ///
    /// Fails with a configuration error when the URL is invalid or its scheme unsupported.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Config {
            url: DatabaseUrl::parse(url)?,
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
        self.retry = self.retry.with_env_overrides()?;
        Ok(self)
    }

    /// The database URL (its `Display` hides the password).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The backend selected by the URL.
    pub fn backend(&self) -> Backend {
        self.url.backend
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

    /// Queries slower than this are logged at WARN on target `keel::query` (default 1 s).
    pub fn slow_query_threshold(mut self, d: Option<Duration>) -> Self {
        self.slow_query_threshold = d;
        self
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

    /// The number of shared read connections the pool opens on demand: PostgreSQL only;
    /// [`read_connections`](Config::read_connections) if set, else a quarter of `max_size`
    /// (at least 1).
    pub fn effective_read_connections(&self) -> u32 {
        match self.backend() {
            Backend::Postgres => self.read_connections.unwrap_or(self.max_size.div_ceil(4).max(1)),
            _ => 0,
        }
    }

    /// The pool size actually used (1 for `sqlite::memory:`).
    pub fn effective_max_size(&self) -> u32 {
        match self.url.sqlite_target {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_select_backends() {
        for (url, backend) in [
            ("postgres://u@h/db", Backend::Postgres),
            ("postgresql://u@h:5433/db", Backend::Postgres),
            ("mysql://root@127.0.0.1:3306/test", Backend::Mysql),
            ("mariadb://root@127.0.0.1/test", Backend::Mysql),
            ("sqlite://keel.db", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
        ] {
            assert_eq!(DatabaseUrl::parse(url).unwrap().backend(), backend, "{url}");
        }
    }

    #[test]
    fn mariadb_scheme_is_handed_to_the_driver_as_mysql() {
        let url = DatabaseUrl::parse("mariadb://root:pw@h:3307/test").unwrap();
        assert_eq!(url.expose_secret(), "mysql://root:pw@h:3307/test");
        assert_eq!(url.target(), "h:3307");
    }

    #[test]
    fn unknown_scheme_lists_supported_ones() {
        let err = DatabaseUrl::parse("oracle://scott:tiger@h/db").unwrap_err().to_string();
        assert!(err.contains("oracle://"), "{err}");
        assert!(
            err.contains("postgres://") && err.contains("mysql://") && err.contains("sqlite://"),
            "{err}"
        );
        assert!(!err.contains("tiger"), "{err}");
    }

    #[test]
    fn password_never_shown() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cr%40t@db:5432/app?password=other&sslmode=disable").unwrap();
        for shown in
            [url.to_string(), format!("{url:?}"), format!("{:?}", Config::new(url.expose_secret()).unwrap())]
        {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(!shown.contains("other"), "{shown}");
            assert!(shown.contains("password hidden"), "{shown}");
        }
        assert_eq!(url.scrub("auth failed for s3cr@t"), "auth failed for ***");
    }

    #[test]
    fn sqlite_targets() {
        let t = |u: &str| DatabaseUrl::parse(u).unwrap().sqlite_target().cloned().unwrap();
        assert_eq!(t("sqlite://keel.db"), SqliteTarget::File("keel.db".into()));
        assert_eq!(t("sqlite:///tmp/k.db"), SqliteTarget::File("/tmp/k.db".into()));
        assert_eq!(t("sqlite::memory:"), SqliteTarget::Memory);
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert_eq!(Config::new("sqlite::memory:").unwrap().max_size(8).effective_max_size(), 1);
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in ["", "localhost:5432", "postgres://", "mysql://:3306/x"] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{url}: {err}");
        }
    }
}
