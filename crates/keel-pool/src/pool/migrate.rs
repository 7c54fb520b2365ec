//! Embedded migrations, one set per backend (`migrations/{postgres,mysql,sqlite}`), run
//! through the pool's configuration.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::conn::{Conn, MysqlConnection, PgConnection};
use crate::connect;
use crate::error::Error;
use crate::pool::Pool;
use crate::url::Backend;

/// PostgreSQL migrations, embedded at build time.
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// MySQL/MariaDB migrations, embedded at build time.
pub const MYSQL: EmbeddedMigrations = embed_migrations!("../../migrations/mysql");
/// SQLite migrations, embedded at build time.
pub const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// A fingerprint of the migration files (all backends), computed at build time: test
/// templates built from other migrations are rebuilt.
pub const FINGERPRINT: &str = env!("KEEL_MIGRATIONS_FINGERPRINT");

/// Which migrations have run and which are waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Versions recorded as applied, oldest first.
    pub applied: Vec<String>,
    /// Versions embedded in this build but not applied, oldest first.
    pub pending: Vec<String>,
}

#[derive(Clone, Copy)]
enum Op {
    Run,
    RevertAll,
    Status,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn apply<DB, H>(harness: &mut H, source: EmbeddedMigrations, op: Op) -> Result<MigrationStatus, BoxError>
where
    DB: DieselBackend,
    H: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
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
    /// Applies pending migrations; returns the versions applied now (empty when up to date).
    pub async fn migrate(&self) -> Result<Vec<String>, Error> {
        let ran = self.migration_op(Op::Run).await?.applied;
        for v in &ran {
            tracing::info!(target: "keel_pool", backend = %self.backend(), version = %v, "migration applied");
        }
        Ok(ran)
    }

    /// Reverts every applied migration (runs each `down.sql`, newest first); returns the
    /// versions reverted. Meant for tests and development databases.
    pub async fn revert_all_migrations(&self) -> Result<Vec<String>, Error> {
        self.migration_op(Op::RevertAll).await.map(|s| s.applied)
    }

    /// Applied and pending migration versions.
    pub async fn migration_status(&self) -> Result<MigrationStatus, Error> {
        self.migration_op(Op::Status).await
    }

    async fn migration_op(&self, op: Op) -> Result<MigrationStatus, Error> {
        let backend = self.backend();
        let fail = |message: String| Error::Migration { backend, message: self.config().url.scrub(&message) };
        let joined = match backend {
            // Migrations run through diesel's synchronous harness on a blocking thread, on a
            // connection of their own (the wrapper drives the async connection from there).
            Backend::Postgres => {
                let (conn, _) = connect::pg(self.config()).await?;
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<PgConnection>::from(conn);
                    apply(&mut h, POSTGRES, op).map_err(|e| e.to_string())
                })
                .await
            }
            Backend::Mysql => {
                let (conn, _) = connect::mysql(self.config()).await?;
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<MysqlConnection>::from(conn);
                    apply(&mut h, MYSQL, op).map_err(|e| e.to_string())
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
                        apply(sc, SQLITE, op).map_err(diesel::result::Error::QueryBuilderError)
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
