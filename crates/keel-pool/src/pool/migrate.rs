//! [`Pool::migrate`], [`Pool::migration_status`], [`Pool::revert_all_migrations`]: a
//! [`Migrations`] set applied through the pool's configuration, with diesel's migration
//! harness and its `__diesel_schema_migrations` table.
//!
//! Running or reverting takes a migration lock first, held only while migrating, so ten
//! instances starting at once apply each migration exactly once (the others wait, then find
//! nothing pending): PostgreSQL a session advisory lock (per database), MySQL/MariaDB
//! `GET_LOCK` named after the database, SQLite a `BEGIN IMMEDIATE` transaction around the whole
//! run. Waiting is bounded by [`Config::migration_lock_timeout`](crate::Config::migration_lock_timeout)
//! (default [`LOCK_TIMEOUT`]); the error then names the session holding the
//! lock when the server says. Behind PgBouncer in transaction mode
//! ([`Config::pgbouncer`](crate::Config::pgbouncer)) a session advisory lock does not hold (the
//! next statement may run on another server session): there the whole run is one transaction
//! holding `pg_advisory_xact_lock`, each migration a savepoint inside it (so a migration that
//! cannot run in a transaction, such as `CREATE INDEX CONCURRENTLY`, needs the server itself).

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel::{QueryableByName, RunQueryDsl as _};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use crate::conn::{Conn, MysqlConnection, PgConnection};
use crate::connect;
use crate::error::Error;
use crate::migrations::{Migrations, Source};
use crate::pool::Pool;
use crate::url::Backend;

/// Which migrations have run and which are waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Versions recorded as applied, oldest first.
    pub applied: Vec<String>,
    /// Versions embedded in this build but not applied, oldest first.
    pub pending: Vec<String>,
}

/// How long a migrator waits for another one to finish, unless
/// [`Config::migration_lock_timeout`](crate::Config::migration_lock_timeout) says otherwise.
pub const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The PostgreSQL advisory lock key (advisory locks are scoped to the current database).
const PG_LOCK_KEY: i64 = 740_213_556;

/// The MySQL/MariaDB lock name: per database, at most 64 characters.
const MYSQL_LOCK_NAME: &str = "LEFT(CONCAT('keel_migrate:', DATABASE()), 64)";

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    holder: Option<String>,
}

/// Runs `body` holding the PostgreSQL migration lock on `conn`: a session advisory lock
/// (`pg_advisory_lock`), or, behind PgBouncer in transaction mode (`pooled`), one transaction
/// around the whole run holding `pg_advisory_xact_lock` — a pooler may lend another server
/// session between two transactions, which would leave a session lock behind on the first.
/// Each migration's own transaction becomes a savepoint inside it.
fn with_pg_lock<T>(
    conn: &mut AsyncConnectionWrapper<PgConnection>,
    wait: std::time::Duration,
    pooled: bool,
    body: impl FnOnce(&mut AsyncConnectionWrapper<PgConnection>) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let ms = wait.as_millis();
    let locked = if pooled {
        conn.transaction::<T, BoxError, _>(|h| {
            h.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{ms}ms'; SELECT pg_advisory_xact_lock({PG_LOCK_KEY}); \
                 SET LOCAL lock_timeout = 0"
            ))
            .map_err(|e| LockFailed(crate::classify(Backend::Postgres, e)))?;
            body(h)
        })
    } else {
        conn.batch_execute(&format!("SET lock_timeout = '{ms}ms'"))?;
        match conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_LOCK_KEY})")) {
            Err(e) => Err(LockFailed(crate::classify(Backend::Postgres, e)).into()),
            Ok(()) => {
                conn.batch_execute("RESET lock_timeout")?;
                let result = body(conn);
                // The session ends right after, which releases the lock too; unlock anyway for clarity.
                let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})"));
                result
            }
        }
    };
    let e = match locked {
        Err(e) => match e.downcast::<LockFailed>() {
            Ok(failed) => failed.0,
            Err(other) => return Err(other),
        },
        ok => return ok,
    };
    if e.kind() != crate::ErrorKind::LockTimeout {
        // Not a wait that ran out (say, the session died): say what it was.
        return Err(e.into());
    }
    let holder = |h: &mut AsyncConnectionWrapper<PgConnection>| {
        diesel::sql_query(format!(
            "SELECT 'pid ' || a.pid || COALESCE(', application ' || NULLIF(a.application_name, ''), '') AS holder \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objid = {PG_LOCK_KEY} AND l.database = \
             (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"
        ))
        .get_result::<Held>(h)
    };
    let held = if pooled { conn.transaction(holder) } else { holder(conn) };
    Err(lock_timeout_message(wait, held.ok().and_then(|h| h.holder), &e.to_string()).into())
}

/// Taking the migration lock failed with this error (told apart from the migrations' own).
#[derive(Debug)]
struct LockFailed(Error);

impl std::fmt::Display for LockFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LockFailed {}

/// Runs `body` holding the MySQL/MariaDB migration lock on `conn`.
fn with_mysql_lock<T>(
    conn: &mut AsyncConnectionWrapper<MysqlConnection>,
    wait: std::time::Duration,
    body: impl FnOnce(&mut AsyncConnectionWrapper<MysqlConnection>) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    use diesel::connection::SimpleConnection as _;
    #[derive(QueryableByName)]
    struct Got {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        got: Option<i64>,
    }
    let secs = wait.as_secs().max(1);
    let got: Got =
        diesel::sql_query(format!("SELECT GET_LOCK({MYSQL_LOCK_NAME}, {secs}) AS got")).get_result(conn)?;
    if got.got != Some(1) {
        let holder: Option<Held> = diesel::sql_query(format!(
            "SELECT CONCAT('connection ', IS_USED_LOCK({MYSQL_LOCK_NAME})) AS holder"
        ))
        .get_result(conn)
        .ok();
        return Err(lock_timeout_message(wait, holder.and_then(|h| h.holder), "GET_LOCK timed out").into());
    }
    let result = body(conn);
    let _ = conn.batch_execute(&format!("DO RELEASE_LOCK({MYSQL_LOCK_NAME})"));
    result
}

fn lock_timeout_message(wait: std::time::Duration, holder: Option<String>, detail: &str) -> String {
    let who = holder.map(|h| format!(" (held by {h})")).unwrap_or_default();
    format!(
        "gave up after {} s waiting for the migration lock{who}: another migrator is running or hung ({detail})",
        wait.as_secs_f64()
    )
}

#[derive(Clone, Copy)]
enum Op {
    Run,
    RevertAll,
    Status,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn apply<DB, H>(harness: &mut H, source: Source, op: Op) -> Result<MigrationStatus, BoxError>
where
    DB: DieselBackend,
    H: MigrationHarness<DB>,
    Source: MigrationSource<DB>,
{
    let names =
        |v: Vec<diesel::migration::MigrationVersion<'_>>| v.into_iter().map(|v| v.to_string()).collect();
    match op {
        Op::Run => {
            let ran = harness.run_pending_migrations(source)?;
            Ok(MigrationStatus { applied: names(ran), pending: Vec::new() })
        }
        Op::RevertAll => {
            let reverted = harness.revert_all_migrations(source)?;
            Ok(MigrationStatus { applied: names(reverted), pending: Vec::new() })
        }
        Op::Status => {
            let mut applied: Vec<String> = names(harness.applied_migrations()?);
            applied.sort();
            let pending =
                harness.pending_migrations(source)?.iter().map(|m| m.name().version().to_string()).collect();
            Ok(MigrationStatus { applied, pending })
        }
    }
}

impl Pool {
    /// Applies the pending migrations of `migrations` for this pool's backend; returns the
    /// versions applied now (empty when up to date). Fails with
    /// [`ErrorKind::Migration`](crate::ErrorKind::Migration) when a migration fails (its SQL
    /// error included) or the set has no folder for this backend.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<Vec<String>, Error> {
        let ran = self.migration_op(migrations, Op::Run).await?.applied;
        for v in &ran {
            tracing::info!(target: "keel_pool", backend = %self.backend(), version = %v, "migration applied");
        }
        Ok(ran)
    }

    /// Reverts every applied migration (runs each `down.sql`, newest first); returns the
    /// versions reverted. Meant for tests and development databases.
    pub async fn revert_all_migrations(&self, migrations: &Migrations) -> Result<Vec<String>, Error> {
        self.migration_op(migrations, Op::RevertAll).await.map(|s| s.applied)
    }

    /// Applied and pending migration versions of `migrations` on this database.
    pub async fn migration_status(&self, migrations: &Migrations) -> Result<MigrationStatus, Error> {
        self.migration_op(migrations, Op::Status).await
    }

    async fn migration_op(&self, migrations: &Migrations, op: Op) -> Result<MigrationStatus, Error> {
        let backend = self.backend();
        let fail = |message: String| Error::Migration { backend, message: self.config().url.scrub(&message) };
        let source = migrations.source(backend).map_err(fail)?;
        let wait = self.config().migration_lock_timeout;
        let joined = match backend {
            // Migrations run through diesel's synchronous harness on a blocking thread, on a
            // connection of their own (the wrapper drives the async connection from there).
            Backend::Postgres => {
                let (conn, _) = connect::pg(self.config()).await?;
                let pooled = self.config().is_pgbouncer();
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<PgConnection>::from(conn);
                    match op {
                        // Behind PgBouncer even reading the status needs one server session.
                        Op::Status if pooled => {
                            diesel::Connection::transaction(&mut h, |h| apply(h, source, op))
                        }
                        Op::Status => apply(&mut h, source, op),
                        _ => with_pg_lock(&mut h, wait, pooled, |h| apply(h, source, op)),
                    }
                    .map_err(|e| e.to_string())
                })
                .await
            }
            Backend::Mysql => {
                let (conn, _) = connect::mysql(self.config()).await?;
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<MysqlConnection>::from(conn);
                    match op {
                        Op::Status => apply(&mut h, source, op),
                        _ => with_mysql_lock(&mut h, wait, |h| apply(h, source, op)),
                    }
                    .map_err(|e| e.to_string())
                })
                .await
            }
            // A pooled connection, not a new one: `sqlite::memory:` exists only inside it.
            Backend::Sqlite => {
                let mut conn = self.get().await?;
                let Conn::Sqlite(c) = &mut conn else {
                    unreachable!("a SQLite pool hands out SQLite connections")
                };
                let result = c
                    .spawn_blocking(move |sc| {
                        let run = |sc: &mut diesel::SqliteConnection| {
                            apply(sc, source, op).map_err(diesel::result::Error::QueryBuilderError)
                        };
                        match op {
                            Op::Status => run(sc),
                            // The write lock for the whole run; each migration's own transaction
                            // becomes a savepoint inside it. Waiting is the busy timeout.
                            _ => sc.immediate_transaction(run),
                        }
                    })
                    .await
                    .map_err(|e| match e {
                        diesel::result::Error::QueryBuilderError(e) => e.to_string(),
                        other => other.to_string(),
                    });
                Ok(result)
            }
        };
        match joined {
            Ok(result) => result.map_err(fail),
            Err(join) => Err(fail(format!("the migration thread failed: {join}"))),
        }
    }
}
