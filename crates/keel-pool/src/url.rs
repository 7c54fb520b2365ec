//! [`DatabaseUrl`]: where the database is, parsed from a URL whose scheme picks the
//! [`Backend`], with the password kept out of everything that is shown.
//!
//! Supported: `postgres://`, `postgresql://`, `mysql://`, `mariadb://` (handed to the driver as
//! `mysql://`), `sqlite://<path>` and `sqlite::memory:`. [`Backend`] lives here because the URL
//! scheme is what chooses it; its [`FromStr`] reads the plain names (`postgres`, `mysql`,
//! `sqlite`) used in flags and environment variables. `Display`, `Debug`, [`DatabaseUrl::redacted`]
//! and every error built from a URL leave the password out; only [`DatabaseUrl::expose_secret`]
//! hands it to the driver.
//!
//! Server URLs may name a Unix socket: `postgres:///db?host=/var/run/postgresql` (libpq's
//! form: an empty host and a `host` parameter holding the socket directory) and
//! `mysql://root@localhost/db?socket=/run/mysqld/mysqld.sock`. keel reads the TLS parameters
//! (see [`tls`](crate::tls)) and the keepalive ones itself and hands the driver the rest.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;
use crate::tls::{RootCerts, SslMode, TlsConfig};

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
    /// The URL as given, with `mariadb://` turned into `mysql://`.
    given_url: String,
    /// What the driver gets: `given_url` without the parameters keel handles itself.
    driver_url: String,
    redacted: String,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    /// The Unix socket: PostgreSQL's `host=/dir`, MySQL's `socket=/path`.
    socket: Option<String>,
    database: Option<String>,
    sqlite_target: Option<SqliteTarget>,
    tls: TlsConfig,
    tcp_keepalive: Option<Option<Duration>>,
    /// PostgreSQL's `pgbouncer` parameter, if given.
    pgbouncer: Option<bool>,
}

/// The parameters keel reads out of a server URL itself; the driver never sees them.
const PG_PARAMS: &[&str] =
    &["sslmode", "sslrootcert", "sslcert", "sslkey", "keepalives", "keepalives_idle", "pgbouncer"];
const MYSQL_PARAMS: &[&str] = &["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key", "tcp_keepalive"];

fn is_keel_param(backend: Backend, key: &str) -> bool {
    match backend {
        Backend::Postgres => PG_PARAMS.contains(&key),
        _ => MYSQL_PARAMS.contains(&key),
    }
}

/// What [`UrlParams::take`] found in the query.
struct UrlParams {
    tls: TlsConfig,
    tcp_keepalive: Option<Option<Duration>>,
    /// PostgreSQL's `host` parameter (a Unix-socket directory, or a host name).
    host_param: Option<String>,
    /// MySQL's `socket` parameter.
    socket: Option<String>,
    /// PostgreSQL's `pgbouncer=true|false`.
    pgbouncer: Option<bool>,
    /// True when some parameter must be kept from the driver.
    taken: bool,
}

impl UrlParams {
    fn take(backend: Backend, url: &url::Url) -> Result<Self, Error> {
        let mut found = UrlParams {
            tls: TlsConfig::default(),
            tcp_keepalive: None,
            host_param: None,
            socket: None,
            pgbouncer: None,
            taken: false,
        };
        let (mut cert, mut key) = (None, None);
        let mut keepalives: Option<bool> = None;
        let mut idle: Option<Duration> = None;
        for (k, v) in url.query_pairs() {
            let (k, v) = (k.as_ref(), v.as_ref());
            let wrong = match backend {
                Backend::Postgres => {
                    MYSQL_PARAMS.contains(&k) || matches!(k, "ssl_mode" | "ssl_ca" | "ssl-mode" | "ssl-ca")
                }
                _ => PG_PARAMS.contains(&k) || matches!(k, "require_ssl" | "verify_ca" | "verify_identity"),
            };
            if wrong && k == "pgbouncer" {
                return Err(Error::config(format!(
                    "the URL parameter `pgbouncer` is for PostgreSQL URLs (PgBouncer pools PostgreSQL \
                     connections), not {backend}"
                )));
            }
            if wrong {
                return Err(Error::config(format!(
                    "the {backend} URL parameter `{k}` is not one keel reads for {backend}; use {}",
                    match backend {
                        Backend::Postgres => "sslmode, sslrootcert, sslcert, sslkey",
                        _ => "ssl-mode, ssl-ca, ssl-cert, ssl-key",
                    }
                )));
            }
            found.taken |= is_keel_param(backend, k);
            match k {
                "sslmode" | "ssl-mode" => {
                    let mode = v.parse::<SslMode>().map_err(|e| match e {
                        Error::Config { message } => Error::config(format!("URL parameter {k}: {message}")),
                        other => other,
                    })?;
                    found.tls = found.tls.with_mode(mode);
                }
                "sslrootcert" | "ssl-ca" => found.tls = found.tls.with_root_certs(Some(RootCerts::parse(v))),
                "sslcert" | "ssl-cert" => cert = Some(v.to_owned()),
                "sslkey" | "ssl-key" => key = Some(v.to_owned()),
                "keepalives" => keepalives = Some(v.trim() != "0"),
                "pgbouncer" => {
                    found.pgbouncer = Some(match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" | "on" => true,
                        "false" | "0" | "no" | "off" => false,
                        _ => {
                            return Err(Error::config(format!(
                                "URL parameter pgbouncer={v:?}: expected true or false"
                            )));
                        }
                    })
                }
                "keepalives_idle" => idle = Some(Duration::from_secs(parse_number(k, v)?)),
                "tcp_keepalive" => {
                    let ms = parse_number(k, v)?;
                    found.tcp_keepalive = Some((ms > 0).then(|| Duration::from_millis(ms)));
                }
                "host" if backend == Backend::Postgres && !v.is_empty() => {
                    found.host_param = Some(v.to_owned())
                }
                "socket" if backend == Backend::Mysql && !v.is_empty() => found.socket = Some(v.to_owned()),
                _ => {}
            }
        }
        match (cert, key) {
            (Some(cert), Some(key)) => found.tls = found.tls.with_client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(Error::config(format!(
                    "a client certificate needs both {}",
                    match backend {
                        Backend::Postgres => "sslcert and sslkey",
                        _ => "ssl-cert and ssl-key",
                    }
                )));
            }
        }
        if keepalives.is_some() || idle.is_some() {
            found.tcp_keepalive = Some(match keepalives {
                Some(false) => None,
                _ => Some(idle.unwrap_or(crate::config::DEFAULT_TCP_KEEPALIVE)),
            });
        }
        Ok(found)
    }
}

fn parse_number(key: &str, value: &str) -> Result<u64, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("URL parameter {key}={value:?} is not a whole number")))
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
        let params = UrlParams::take(backend, &parsed)?;
        let host = parsed
            .host_str()
            .map(str::to_owned)
            .filter(|h| !h.is_empty())
            .or_else(|| params.host_param.clone());
        if host.is_none() {
            return Err(Error::config(format!(
                "the {backend} database URL has no host; expected e.g. {}",
                match backend {
                    Backend::Postgres => format!(
                        "{}://user@localhost/dbname, or {}:///dbname?host=/var/run/postgresql for a Unix socket",
                        parsed.scheme(),
                        parsed.scheme()
                    ),
                    _ => format!(
                        "{}://user@localhost/dbname, or add ?socket=/run/mysqld/mysqld.sock for a Unix socket",
                        parsed.scheme()
                    ),
                }
            )));
        }
        let socket = match backend {
            Backend::Postgres => host.clone().filter(|h| h.starts_with('/')),
            _ => params.socket.clone(),
        };
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
        let driver_only = if params.taken {
            let mut only = url::Url::parse(&driver_url)
                .map_err(|e| Error::config(format!("invalid {backend} database URL ({e})")))?;
            let kept: Vec<(String, String)> = only
                .query_pairs()
                .filter(|(k, _)| !is_keel_param(backend, k))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                only.set_query(None);
            } else {
                only.query_pairs_mut().clear().extend_pairs(kept);
            }
            only.to_string()
        } else {
            driver_url.clone()
        };
        let port = parsed.port().or(match backend {
            Backend::Postgres => Some(5432),
            Backend::Mysql => Some(3306),
            Backend::Sqlite => None,
        });
        let database = parsed.path().trim_start_matches('/').split('/').next().filter(|d| !d.is_empty());
        Ok(DatabaseUrl {
            backend,
            given_url: driver_url,
            driver_url: driver_only,
            redacted,
            password,
            host,
            port,
            socket,
            database: database.map(percent_decode),
            sqlite_target: None,
            tls: params.tls,
            tcp_keepalive: params.tcp_keepalive,
            pgbouncer: params.pgbouncer,
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
            given_url: raw.to_owned(),
            redacted: raw.to_owned(),
            driver_url: raw.to_owned(),
            password: None,
            host: None,
            port: None,
            socket: None,
            database: None,
            sqlite_target: Some(target),
            tls: TlsConfig::new(SslMode::Disable),
            tcp_keepalive: None,
            pgbouncer: None,
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

    /// The Unix socket, when the URL names one: PostgreSQL's `host=/dir` (the directory
    /// holding `.s.PGSQL.<port>`), MySQL's `socket=/path`.
    pub fn socket(&self) -> Option<&str> {
        self.socket.as_deref()
    }

    /// The TLS settings the URL gives (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`; on MySQL
    /// `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`), defaults where it gives none.
    /// [`Config`](crate::Config) starts from these.
    pub fn tls(&self) -> &TlsConfig {
        &self.tls
    }

    /// The TCP keepalive the URL asks for, if it says (`keepalives`/`keepalives_idle` on
    /// PostgreSQL, `tcp_keepalive` in ms on MySQL): `Some(None)` is off.
    pub fn tcp_keepalive(&self) -> Option<Option<Duration>> {
        self.tcp_keepalive
    }

    /// PostgreSQL: whether the URL says the server is PgBouncer in transaction mode
    /// (`?pgbouncer=true`, the spelling Prisma uses); `None` when it does not say. See
    /// [`Config::pgbouncer`](crate::Config::pgbouncer).
    pub fn pgbouncer(&self) -> Option<bool> {
        self.pgbouncer
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

    /// `host:port` for server backends (the socket path for Unix sockets), the path for SQLite.
    pub fn target(&self) -> String {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        match (&self.host, self.port, &self.sqlite_target) {
            (Some(h), Some(p), _) => format!("{h}:{p}"),
            (Some(h), None, _) => h.clone(),
            (_, _, Some(SqliteTarget::File(path))) => path.clone(),
            (_, _, Some(SqliteTarget::Memory)) => ":memory:".to_owned(),
            _ => self.redacted.clone(),
        }
    }

    /// The URL with its password, as given (`mariadb://` as `mysql://`, keel's own parameters
    /// such as `sslmode` included): for [`Config::new`](crate::Config::new) or a driver that
    /// knows every parameter in it. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.given_url
    }

    /// The URL with its password and without the parameters keel reads itself (TLS,
    /// keepalive): what tokio-postgres and mysql_async are given. Never log it.
    pub(crate) fn driver_url(&self) -> &str {
        &self.driver_url
    }

    /// Replaces any occurrence of the password in `text` (e.g. a driver error) with `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text =
            text.replace(&self.given_url, &self.redacted).replace(&self.driver_url, &self.redacted);
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            text = text.replace(p, "***");
        }
        text
    }

    /// The same server with another database (server backends only): used to create and reach
    /// per-test databases.
    pub fn with_database(&self, database: &str) -> Result<Self, Error> {
        let mut url = url::Url::parse(&self.given_url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::tls::{RootCerts, SslMode};

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

    #[test]
    fn unix_sockets_parse() {
        let pg = DatabaseUrl::parse("postgres:///test?host=/var/run/postgresql").unwrap();
        assert_eq!(pg.socket(), Some("/var/run/postgresql"));
        assert_eq!(pg.target(), "/var/run/postgresql");
        assert_eq!(pg.database(), Some("test"));
        let config = Config::new(&format!("{}&user=root", pg.expose_secret())).unwrap();
        let (pg_config, _) = crate::tls::tokio_postgres_connector(&config).unwrap();
        assert_eq!(pg_config.get_user(), Some("root"));
        assert!(
            matches!(pg_config.get_hosts(), [tokio_postgres::config::Host::Unix(p)] if p.as_os_str() == "/var/run/postgresql")
        );
        let my = DatabaseUrl::parse("mysql://root@localhost/test?socket=/run/mysqld/mysqld.sock").unwrap();
        assert_eq!(my.socket(), Some("/run/mysqld/mysqld.sock"));
        assert_eq!(my.target(), "/run/mysqld/mysqld.sock");
        let err = DatabaseUrl::parse("postgres:///test").unwrap_err().to_string();
        assert!(err.contains("?host=/var/run/postgresql"), "{err}");
    }

    #[test]
    fn tls_params_are_read_by_keel_and_kept_from_the_driver() {
        let url = DatabaseUrl::parse(
            "postgres://app:pw@db/app?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url.tls().mode(), SslMode::VerifyFull);
        assert_eq!(url.tls().root_cert(), Some(&RootCerts::File("/ca.pem".into())));
        assert!(url.tls().client_cert().is_some());
        assert_eq!(url.driver_url(), "postgres://app:pw@db/app?application_name=x");
        assert!(url.expose_secret().contains("sslmode=verify-full"), "round-trips through Config::new");
        let my = DatabaseUrl::parse("mariadb://root@h/test?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem").unwrap();
        assert_eq!(my.tls().mode(), SslMode::VerifyFull);
        assert_eq!(my.driver_url(), "mysql://root@h/test");
        assert_eq!(DatabaseUrl::parse("postgres://h/db").unwrap().tls().mode(), SslMode::Prefer);
        let system = DatabaseUrl::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!(system.tls().root_cert(), Some(&RootCerts::System));
    }

    #[test]
    fn bad_tls_params_are_config_errors_that_say_what_is_valid() {
        for (url, needle) in [
            ("postgres://h/db?sslmode=allow", "verify-full"),
            ("postgres://h/db?sslmode=bogus", "\"bogus\""),
            ("mysql://h/db?ssl-mode=VERIFY", "VERIFY_IDENTITY"),
            ("postgres://h/db?ssl-mode=REQUIRED", "sslmode"),
            ("mysql://h/db?sslmode=require", "ssl-mode"),
            ("mysql://h/db?require_ssl=true", "ssl-mode"),
            ("postgres://h/db?sslcert=/c.pem", "sslcert and sslkey"),
            ("postgres://h/db?keepalives_idle=soon", "keepalives_idle"),
        ] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{url}: {err}");
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn keepalive_from_url_and_default() {
        let on = Config::new("postgres://h/db").unwrap();
        assert_eq!(on.tcp_keepalive_idle(), Some(crate::config::DEFAULT_TCP_KEEPALIVE));
        let off = Config::new("postgres://h/db?keepalives=0").unwrap();
        assert_eq!(off.tcp_keepalive_idle(), None);
        let idle = Config::new("postgres://h/db?keepalives_idle=7").unwrap();
        assert_eq!(idle.tcp_keepalive_idle(), Some(std::time::Duration::from_secs(7)));
        let my = Config::new("mysql://h/db?tcp_keepalive=1500").unwrap();
        assert_eq!(my.tcp_keepalive_idle(), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(my.url().driver_url(), "mysql://h/db");
    }

    #[test]
    fn secrets_stay_hidden_with_tls_params() {
        let raw = "postgres://app:s3cret@db/app?sslmode=require&sslkey=/keys/client.key&sslcert=/keys/c.pem";
        let config = Config::new(raw).unwrap().ssl_mode(SslMode::VerifyFull);
        for shown in [format!("{config:?}"), config.url().to_string(), format!("{:?}", config.url())] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(!config.url().scrub(&format!("failed: {}", config.url().driver_url())).contains("s3cret"));
        let err = Config::new("postgres://app:s3cret@db/app?sslmode=nope").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
