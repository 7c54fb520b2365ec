//! [`Pool::migrate`], [`Pool::migration_status`], [`Pool::revert_all_migrations`]: a
//! [`Migrations`] set applied through the pool's configuration, with diesel's migration
//! harness and its `__diesel_schema_migrations` table.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
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
        let joined = match backend {
            // Migrations run through diesel's synchronous harness on a blocking thread, on a
            // connection of their own (the wrapper drives the async connection from there).
            Backend::Postgres => {
                let (conn, _) = connect::pg(self.config()).await?;
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<PgConnection>::from(conn);
                    apply(&mut h, source, op).map_err(|e| e.to_string())
                })
                .await
            }
            Backend::Mysql => {
                let (conn, _) = connect::mysql(self.config()).await?;
                tokio::task::spawn_blocking(move || {
                    let mut h = AsyncConnectionWrapper::<MysqlConnection>::from(conn);
                    apply(&mut h, source, op).map_err(|e| e.to_string())
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
                        apply(sc, source, op).map_err(diesel::result::Error::QueryBuilderError)
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
