//! Opening one connection per backend, with the session settings keel relies on and errors
//! that say what to check.

use std::time::Duration;

use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

use crate::config::Config;
use crate::conn::{MysqlConnection, PgConnection, SqliteConnection};
use crate::error::{Error, ErrorKind};
use crate::tls::{self, SslMode, TlsFailure};
use crate::url::{Backend, SqliteTarget};

/// Builds the connect error for `config`'s server from a driver message, with a hint.
pub(crate) fn connect_error(config: &Config, reason: &str) -> Error {
    let reason = config.url.scrub(reason);
    let r = reason.to_ascii_lowercase();
    let hint = if r.contains("refused") {
        "is the server running and accepting TCP connections on that host and port?"
    } else if r.contains("timed out") || r.contains("timeout") || r.contains("unreachable") {
        "is the host reachable (host name, firewall, network)?"
    } else if r.contains("password") || r.contains("access denied") || r.contains("authentication") {
        "check the user name and password"
    } else if r.contains("does not exist") || r.contains("unknown database") {
        "check the database name in the URL, or create the database"
    } else if r.contains("lookup") || r.contains("resolve") || r.contains("name or service") {
        "check the host name"
    } else if r.contains("unable to open") {
        "check that the directory exists and is writable"
    } else {
        "check the URL and that the server is running"
    };
    let kind = match crate::classify::classify_message(config.backend(), &reason) {
        Some(k @ (ErrorKind::TooManyConnections | ErrorKind::ServerShutdown)) => k,
        _ => ErrorKind::Connect,
    };
    let hint = match kind {
        ErrorKind::TooManyConnections => {
            "the server refuses more sessions: lower max_size or raise the server's limit"
        }
        ErrorKind::ServerShutdown => "the server is restarting or shutting down; retry shortly",
        _ => hint,
    };
    Error::Connect { kind, backend: config.backend(), target: config.url.target(), reason, hint }
}

/// Why opening a connection failed.
pub(crate) enum Failure {
    /// The driver's message; [`connect_error`] classifies it.
    Driver(String),
    /// A TLS failure, already told plainly.
    Tls(TlsFailure),
    /// An error that needs no classifying (a configuration error found while opening).
    Ready(Error),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Driver(reason)
    }
}

/// The error for a TLS failure on `config`'s server: kind `Tls`, not transient.
fn tls_error(config: &Config, failure: TlsFailure) -> Error {
    Error::Connect {
        kind: ErrorKind::Tls,
        backend: config.backend(),
        target: config.url.target(),
        reason: config.url.scrub(&failure.reason),
        hint: failure.hint,
    }
}

/// Runs an opening future under `connect_timeout`, turning its failure (a driver message) or
/// the timeout into a connect error with a hint.
async fn within_connect_timeout<T>(
    config: &Config,
    opening: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Error> {
    match tokio::time::timeout(config.connect_timeout, opening).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(Failure::Driver(reason))) => Err(connect_error(config, &reason)),
        Ok(Err(Failure::Tls(failure))) => Err(tls_error(config, failure)),
        Ok(Err(Failure::Ready(e))) => Err(e),
        Err(_) => Err(connect_error(
            config,
            &format!("timed out after {}ms (connect_timeout)", config.connect_timeout.as_millis()),
        )),
    }
}

/// The error and its sources, joined: tokio-postgres's `Display` leaves the cause out
/// ("error connecting to server" without "Connection refused").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The tokio-postgres configuration for `config`, with its TLS connector: TLS mode,
/// keepalive, `application_name`, `statement_timeout` (in the startup packet, so no extra
/// round trip) and the connect timeout. Every PostgreSQL connection keel opens starts here.
pub(crate) fn pg_config(
    config: &Config,
) -> Result<(tokio_postgres::Config, tokio_postgres_rustls::MakeRustlsConnect), Error> {
    use tokio_postgres::config::{Host, SslMode as PgSslMode};
    let mut pg_config: tokio_postgres::Config =
        config.url.driver_url().parse().map_err(|e: tokio_postgres::Error| {
            Error::config(format!("invalid PostgreSQL URL {}: {}", config.url, error_chain(&e)))
        })?;
    if pg_config.get_user().is_none() {
        // libpq's fallback: a URL such as `postgres:///db?host=/var/run/postgresql` names no user.
        let user = ["PGUSER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        match user {
            Some(user) => {
                pg_config.user(&user);
            }
            None => {
                return Err(Error::config(format!(
                    "the PostgreSQL URL {} names no user, and PGUSER/USER are unset; \
                     add one (postgres://user@host/db, or ?user=name)",
                    config.url
                )));
            }
        }
    }
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(&config.application_name);
    }
    // Behind PgBouncer the limit is `SET LOCAL` in each transaction: it refuses startup options.
    if let Some(t) = config.statement_timeout.filter(|_| !config.is_pgbouncer()) {
        let mut options = pg_config.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        pg_config.options(options.trim());
    }
    pg_config.connect_timeout(config.connect_timeout);
    pg_config.keepalives(config.tcp_keepalive.is_some());
    if let Some(idle) = config.tcp_keepalive {
        pg_config.keepalives_idle(idle);
    }
    // Unix sockets are local: no TLS there, as in libpq (the server would refuse it anyway).
    let unix_only = pg_config.get_hosts().iter().all(|h| !matches!(h, Host::Tcp(_)));
    pg_config.ssl_mode(match config.tls.mode() {
        _ if unix_only => PgSslMode::Disable,
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    let connector = tls::pg_connector(&config.tls, &config.tls_cache)?;
    Ok((pg_config, connector))
}

/// Tells a PostgreSQL connect failure plainly when TLS is the cause.
fn pg_failure(config: &Config, e: &tokio_postgres::Error) -> Failure {
    if let Some(failure) = tls::failure_in(e, config.url.host().unwrap_or_default()) {
        return Failure::Tls(failure);
    }
    let text = error_chain(e);
    if text.contains("server does not support TLS") {
        return Failure::Tls(tls::no_tls_on_server(config.tls.mode(), Backend::Postgres));
    }
    Failure::Driver(text)
}

/// Opens a plain tokio-postgres client with the same settings as the pool's connections, for
/// what diesel-async cannot do (`COPY`). Its connection task runs on the tokio runtime and ends
/// when the client is dropped.
pub(crate) async fn pg_client(config: &Config) -> Result<tokio_postgres::Client, Error> {
    let (pg_config, tls) = pg_config(config)?;
    let connecting = async {
        let (client, connection) = pg_config.connect(tls).await.map_err(|e| pg_failure(config, &e))?;
        spawn_pg_connection(connection, "side PostgreSQL connection ended");
        Ok::<_, Failure>(client)
    };
    within_connect_timeout(config, connecting).await
}

/// Opens a PostgreSQL connection with `application_name` and `statement_timeout` set, and
/// returns it with its backend pid. Connects through tokio-postgres directly (the driver
/// diesel-async wraps) so the real cause of a failure reaches the user.
pub(crate) async fn pg(config: &Config) -> Result<(PgConnection, Option<u64>), Error> {
    let (pg_config, tls) = pg_config(config)?;
    let connecting = async {
        let (client, connection) = pg_config.connect(tls).await.map_err(|e| pg_failure(config, &e))?;
        if config.is_pgbouncer() {
            return pg_behind_pgbouncer(client, connection).await;
        }
        let mut conn = PgConnection::try_from_client_and_connection(client, connection)
            .await
            .map_err(|e| e.to_string())?;
        let pid: i32 = diesel_async::RunQueryDsl::get_result(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("pg_backend_pid()")),
            &mut conn,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, Failure>((conn, Some(pid as u64)))
    };
    within_connect_timeout(config, connecting).await
}

/// Drives a tokio-postgres connection on the runtime until its client is dropped; `ended` is
/// logged at DEBUG with the error, if it ended with one.
fn spawn_pg_connection<S>(
    connection: tokio_postgres::Connection<tokio_postgres::Socket, S>,
    ended: &'static str,
) where
    S: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(target: "keel::pool", error = %e, "{ended}");
        }
    });
}

/// A diesel-async connection through PgBouncer in transaction mode (see
/// [`Config::pgbouncer`]): diesel-async's setup runs two `SET`s as prepared statements, whose
/// Parse and Execute a transaction pooler may send to different server sessions, so they run
/// inside one transaction; the statement cache is off (a cached statement would outlive its
/// server session), and there is no backend pid (it would be whichever session PgBouncer lends).
async fn pg_behind_pgbouncer<S>(
    client: tokio_postgres::Client,
    connection: tokio_postgres::Connection<tokio_postgres::Socket, S>,
) -> Result<(PgConnection, Option<u64>), Failure>
where
    S: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
{
    use diesel_async::SimpleAsyncConnection as _;
    spawn_pg_connection(connection, "PostgreSQL connection (PgBouncer) ended");
    client.batch_execute("BEGIN").await.map_err(|e| Failure::Driver(error_chain(&e)))?;
    let mut conn = PgConnection::try_from(client).await.map_err(|e| Failure::Driver(e.to_string()))?;
    conn.batch_execute("COMMIT").await.map_err(|e| Failure::Driver(e.to_string()))?;
    diesel_async::AsyncConnection::set_prepared_statement_cache_size(
        &mut conn,
        diesel::connection::CacheSize::Disabled,
    );
    Ok((conn, None))
}

/// mysql_async's options for `config`: the URL without keel's parameters, keepalive, and TLS
/// (`with_tls`: the mode asks for it, and `PREFERRED` has not found the server without TLS).
/// `host_name` replaces the name the certificate is checked against (`VERIFY_CA`).
fn mysql_opts(
    config: &Config,
    with_tls: bool,
    host_name: Option<String>,
) -> Result<mysql_async::Opts, Error> {
    let opts = mysql_async::Opts::from_url(config.url.driver_url()).map_err(|e| {
        Error::config(format!("invalid MySQL URL {}: {}", config.url, config.url.scrub(&e.to_string())))
    })?;
    let keepalive = config.tcp_keepalive.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
    // keel keeps its own statement cache; found rows match PostgreSQL's affected-row counts
    // (both as diesel-async's `establish` sets them).
    let mut builder = mysql_async::OptsBuilder::from_opts(opts)
        .stmt_cache_size(0)
        .client_found_rows(true)
        .tcp_keepalive(keepalive);
    if with_tls {
        builder = builder.ssl_opts(tls::mysql_ssl_opts(&config.tls, host_name).map_err(Error::config)?);
        if config.tls.mode().requires_tls() {
            // mysql_async would otherwise move a loopback TCP session onto the server's Unix
            // socket, where there is no TLS.
            builder = builder.prefer_socket(false);
        }
    }
    Ok(builder.into())
}

/// Opens one mysql_async connection, telling TLS failures plainly.
async fn mysql_conn(config: &Config, opts: mysql_async::Opts) -> Result<mysql_async::Conn, Failure> {
    mysql_async::Conn::new(opts).await.map_err(|e| {
        if matches!(e, mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) {
            return Failure::Tls(tls::no_tls_on_server(config.tls.mode(), Backend::Mysql));
        }
        match tls::failure_in(&e, config.url.host().unwrap_or_default()) {
            Some(failure) => Failure::Tls(failure),
            None => Failure::Driver(e.to_string()),
        }
    })
}

/// Opens a mysql_async connection with `config`'s TLS mode: `PREFERRED` goes on in plain text
/// when the server has no TLS (and remembers it), `VERIFY_CA` accepts a certificate whose chain
/// is good for a name other than the host's.
async fn mysql_raw(config: &Config) -> Result<mysql_async::Conn, Failure> {
    let mode = config.tls.mode();
    let cache = &config.tls_cache;
    let with_tls = mode != SslMode::Disable && !(mode == SslMode::Prefer && cache.mysql_is_plain());
    let opts = |tls: bool, name: Option<String>| mysql_opts(config, tls, name).map_err(Failure::Ready);
    match mysql_conn(config, opts(with_tls, cache.mysql_host_name())?).await {
        // Only the server saying it has no TLS moves PREFERRED to plain text for good.
        Err(Failure::Tls(f)) if mode == SslMode::Prefer && with_tls && f.server_has_no_tls => {
            cache.mysql_plain.store(true, std::sync::atomic::Ordering::Relaxed);
            mysql_conn(config, opts(false, None)?).await
        }
        Err(Failure::Tls(failure)) if config.tls.verification() == tls::Verification::Ca => {
            // mysql_async cannot skip only the name check (its own option does not recognise
            // rustls's current error), so check the chain against a name the certificate lists.
            match failure.presented_name.clone() {
                Some(name) => {
                    cache.set_mysql_host_name(name.clone());
                    mysql_conn(config, opts(true, Some(name))?).await
                }
                None => Err(Failure::Tls(failure)),
            }
        }
        other => other,
    }
}

/// A mysql_async connection with keel's URL handling and TLS, for [`Pool::mysql_client`](crate::Pool::mysql_client).
pub(crate) async fn mysql_client(config: &Config) -> Result<mysql_async::Conn, Error> {
    within_connect_timeout(config, async { mysql_raw(config).await }).await
}

/// A MySQL connection with keel's URL handling, TLS and keepalive, and nothing else.
pub(crate) async fn mysql_bare(config: &Config) -> Result<MysqlConnection, Error> {
    let opening = async {
        let raw = mysql_raw(config).await?;
        Ok::<_, Failure>(MysqlConnection::try_from(raw).await.map_err(|e| e.to_string())?)
    };
    within_connect_timeout(config, opening).await
}

#[derive(diesel::QueryableByName)]
struct MysqlSession {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Opens a MySQL/MariaDB connection (diesel-async sets UTC and utf8mb4 for the session), sets
/// the statement timeout, and returns it with its `CONNECTION_ID()`.
pub(crate) async fn mysql(config: &Config) -> Result<(MysqlConnection, Option<u64>), Error> {
    let opening = async {
        let raw = mysql_raw(config).await?;
        let mut conn = MysqlConnection::try_from(raw).await.map_err(|e| e.to_string())?;
        let session: MysqlSession = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id, VERSION() AS version"),
            &mut conn,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(t) = config.statement_timeout {
            let sql = if session.version.contains("MariaDB") {
                format!("SET SESSION max_statement_time = {:.3}", t.as_secs_f64())
            } else {
                format!("SET SESSION MAX_EXECUTION_TIME = {}", t.as_millis())
            };
            diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, Failure>((conn, Some(session.id as u64)))
    };
    within_connect_timeout(config, opening).await
}

/// Opens a synchronous SQLite connection with foreign keys on, a busy timeout, and WAL for
/// files. Blocking: call it from a blocking thread.
pub(crate) fn sqlite_blocking(config: &Config) -> Result<diesel::SqliteConnection, Error> {
    let (path, is_file) = match config.url.sqlite_target() {
        Some(SqliteTarget::File(path)) => (path.clone(), true),
        _ => (":memory:".to_owned(), false),
    };
    let mut conn =
        diesel::SqliteConnection::establish(&path).map_err(|e| connect_error(config, &e.to_string()))?;
    let busy_ms = config.sqlite_busy_timeout.as_millis().min(i32::MAX as u128);
    let mut setup = format!("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms};");
    if is_file {
        // WAL lets readers run beside the one writer; NORMAL sync is durable in WAL mode
        // except for the last transactions on power loss, the usual server trade-off.
        setup.push_str(" PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    }
    conn.batch_execute(&setup).map_err(|e| connect_error(config, &e.to_string()))?;
    Ok(conn)
}

/// Opens a SQLite connection for async use.
pub(crate) async fn sqlite(
    config: &Config,
) -> Result<(SqliteConnection, std::sync::Arc<crate::blocking::Busy>), Error> {
    let cfg = config.clone();
    let timeout: Duration = config.connect_timeout.max(config.sqlite_busy_timeout);
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || sqlite_blocking(&cfg))).await {
        Ok(Ok(result)) => result.map(crate::blocking::wrap),
        Ok(Err(join)) => Err(connect_error(config, &format!("the connecting thread failed: {join}"))),
        Err(_) => Err(connect_error(config, &format!("timed out after {}ms", timeout.as_millis()))),
    }
}
