//! Opening one connection per backend, with the session settings keel relies on and errors
//! that say what to check.

use std::time::Duration;

use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;
use diesel_async::AsyncConnection as _;

use crate::config::Config;
use crate::conn::{MysqlConnection, PgConnection, SqliteConnection};
use crate::error::{Error, ErrorKind};
use crate::url::SqliteTarget;

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

/// Runs an opening future under `connect_timeout`, turning its failure (a driver message) or
/// the timeout into a connect error with a hint.
async fn within_connect_timeout<T>(
    config: &Config,
    opening: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, Error> {
    match tokio::time::timeout(config.connect_timeout, opening).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(reason)) => Err(connect_error(config, &reason)),
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

/// The tokio-postgres configuration for `config`: `application_name`, `statement_timeout` (in
/// the startup packet, so no extra round trip) and the connect timeout.
fn pg_config(config: &Config) -> Result<tokio_postgres::Config, Error> {
    let mut pg_config: tokio_postgres::Config =
        config.url.expose_secret().parse().map_err(|e: tokio_postgres::Error| {
            Error::config(format!("invalid PostgreSQL URL {}: {}", config.url, error_chain(&e)))
        })?;
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(&config.application_name);
    }
    if let Some(t) = config.statement_timeout {
        let mut options = pg_config.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        pg_config.options(options.trim());
    }
    pg_config.connect_timeout(config.connect_timeout);
    Ok(pg_config)
}

/// Opens a plain tokio-postgres client with the same settings as the pool's connections, for
/// what diesel-async cannot do (`COPY`). Its connection task runs on the tokio runtime and ends
/// when the client is dropped.
pub(crate) async fn pg_client(config: &Config) -> Result<tokio_postgres::Client, Error> {
    let pg_config = pg_config(config)?;
    let connecting = async {
        let (client, connection) =
            pg_config.connect(tokio_postgres::NoTls).await.map_err(|e| error_chain(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "keel::pool", error = %e, "side PostgreSQL connection ended");
            }
        });
        Ok::<_, String>(client)
    };
    within_connect_timeout(config, connecting).await
}

/// Opens a PostgreSQL connection with `application_name` and `statement_timeout` set, and
/// returns it with its backend pid. Connects through tokio-postgres directly (the driver
/// diesel-async wraps) so the real cause of a failure reaches the user.
pub(crate) async fn pg(config: &Config) -> Result<(PgConnection, Option<u64>), Error> {
    let pg_config = pg_config(config)?;
    let connecting = async {
        let (client, connection) =
            pg_config.connect(tokio_postgres::NoTls).await.map_err(|e| error_chain(&e))?;
        let mut conn = PgConnection::try_from_client_and_connection(client, connection)
            .await
            .map_err(|e| e.to_string())?;
        let pid: i32 = diesel_async::RunQueryDsl::get_result(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("pg_backend_pid()")),
            &mut conn,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, Some(pid as u64)))
    };
    within_connect_timeout(config, connecting).await
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
        let mut conn =
            MysqlConnection::establish(config.url.expose_secret()).await.map_err(|e| e.to_string())?;
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
        Ok::<_, String>((conn, Some(session.id as u64)))
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
pub(crate) async fn sqlite(config: &Config) -> Result<SqliteConnection, Error> {
    let cfg = config.clone();
    let timeout: Duration = config.connect_timeout.max(config.sqlite_busy_timeout);
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || sqlite_blocking(&cfg))).await {
        Ok(Ok(result)) => result.map(SqliteConnection::new),
        Ok(Err(join)) => Err(connect_error(config, &format!("the connecting thread failed: {join}"))),
        Err(_) => Err(connect_error(config, &format!("timed out after {}ms", timeout.as_millis()))),
    }
}
