//! [`DatabaseUrl`]: where the database is, parsed from a URL whose scheme picks the
//! [`Backend`], with the password kept out of everything that is shown.
//!
//! Supported: `postgres://`, `postgresql://`, `mysql://`, `mariadb://` (handed to the driver as
//! `mysql://`), `sqlite://<path>` and `sqlite::memory:`. [`Backend`] lives here because the URL
//! scheme is what chooses it; its [`FromStr`] reads the plain names (`postgres`, `mysql`,
//! `sqlite`) used in flags and environment variables. `Display`, `Debug`, [`DatabaseUrl::redacted`]
//! and every error built from a URL leave the password out; only [`DatabaseUrl::expose_secret`]
//! hands it to the driver.

use std::fmt;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
