//! [`Migrations`]: a migration set per backend, as a value — yours or keel's demo set
//! (`keel_schema::MIGRATIONS`) — built at compile time by [`embed_migrations!`](crate::embed_migrations)
//! from `dir/{postgres,mysql,sqlite}/<version>_<name>/{up,down}.sql`, and applied with
//! [`Pool::migrate`](crate::Pool::migrate).
//!
//! ```ignore
//! pub const MIGRATIONS: keel_pool::Migrations = keel_pool::embed_migrations!("migrations");
//! # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_pool::Error> {
//! pool.migrate(&MIGRATIONS).await?;
//! # Ok(()) }
//! ```
//!
//! Applied versions are recorded in diesel's `__diesel_schema_migrations` table (the version is
//! the folder name up to its first `_`, dashes removed, as diesel does), so a database migrated
//! by the diesel CLI or by an earlier keel reads the same.

use std::fmt;

use diesel::backend::Backend as DieselBackend;
use diesel::connection::BoxableConnection;
use diesel::migration::{Migration, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion};

use crate::url::Backend;

/// One migration's files, embedded: its folder name and the text of `up.sql` and `down.sql`.
#[derive(Debug, Clone, Copy)]
pub struct MigrationFiles {
    name: &'static str,
    up: &'static str,
    down: Option<&'static str>,
}

impl MigrationFiles {
    /// A migration named `name` (its folder, `<version>_<name>`) with these scripts. Written by
    /// [`embed_migrations!`](crate::embed_migrations); rarely called by hand.
    pub const fn new(name: &'static str, up: &'static str, down: Option<&'static str>) -> Self {
        MigrationFiles { name, up, down }
    }

    /// The folder name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for MigrationFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl MigrationName for MigrationFiles {
    fn version(&self) -> MigrationVersion<'_> {
        // diesel's rule (migrations_internals::version_from_string), so recorded versions match.
        let head = self.name.split('_').next().unwrap_or(self.name);
        MigrationVersion::from(head.replace('-', ""))
    }
}

/// Every migration runs in a transaction where the backend allows DDL in one.
struct InTransaction;

impl MigrationMetadata for InTransaction {}

impl<DB: DieselBackend> Migration<DB> for MigrationFiles {
    fn run(&self, conn: &mut dyn BoxableConnection<DB>) -> diesel::migration::Result<()> {
        conn.batch_execute(self.up).map_err(Into::into)
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<DB>) -> diesel::migration::Result<()> {
        match self.down {
            Some(down) => conn.batch_execute(down).map_err(Into::into),
            None => Err(format!("migration {} has no down.sql", self.name).into()),
        }
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        &InTransaction
    }

    fn name(&self) -> &dyn MigrationName {
        self
    }
}

/// A backend's migrations as a diesel [`MigrationSource`].
#[derive(Clone, Copy)]
pub(crate) struct Source(pub(crate) &'static [MigrationFiles]);

impl<DB: DieselBackend> MigrationSource<DB> for Source {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        Ok(self.0.iter().map(|m| Box::new(*m) as Box<dyn Migration<DB>>).collect())
    }
}

/// A migration set: one list of migrations per backend, embedded at build time.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    dir: &'static str,
    postgres: Option<&'static [MigrationFiles]>,
    mysql: Option<&'static [MigrationFiles]>,
    sqlite: Option<&'static [MigrationFiles]>,
}

impl Migrations {
    /// A set from its folder name and per-backend lists (`None`: that backend's folder does
    /// not exist). Written by [`embed_migrations!`](crate::embed_migrations).
    pub const fn embedded(
        dir: &'static str,
        postgres: Option<&'static [MigrationFiles]>,
        mysql: Option<&'static [MigrationFiles]>,
        sqlite: Option<&'static [MigrationFiles]>,
    ) -> Self {
        Migrations { dir, postgres, mysql, sqlite }
    }

    /// The folder the set was embedded from, as given to `embed_migrations!`.
    pub fn dir(&self) -> &'static str {
        self.dir
    }

    /// `backend`'s migrations, oldest first; `None` when the set has no folder for it.
    pub fn for_backend(&self, backend: Backend) -> Option<&'static [MigrationFiles]> {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Mysql => self.mysql,
            Backend::Sqlite => self.sqlite,
        }
    }

    /// `backend`'s migrations, or an error naming the missing folder.
    pub(crate) fn source(&self, backend: Backend) -> Result<Source, String> {
        self.for_backend(backend)
            .map(Source)
            .ok_or_else(|| format!("this migration set has no {}/{} folder", self.dir, backend.as_str()))
    }

    /// A fingerprint of every backend's migration names and SQL (16 hex digits, FNV-1a),
    /// computed from the embedded text: the same files give the same fingerprint on every
    /// machine and build. Test templates are named after it.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes.iter().chain(&[0u8]) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for backend in Backend::ALL {
            eat(backend.as_str().as_bytes());
            for m in self.for_backend(backend).unwrap_or_default() {
                eat(m.name.as_bytes());
                eat(m.up.as_bytes());
                eat(m.down.unwrap_or_default().as_bytes());
            }
        }
        format!("{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &[MigrationFiles] =
        &[MigrationFiles::new("2026-11-25-000001_users", "CREATE TABLE u (x INT);", None)];

    #[test]
    fn versions_follow_diesel_and_missing_backends_are_named() {
        assert_eq!(MigrationName::version(&ONE[0]).to_string(), "20261125000001");
        let set = Migrations::embedded("db/migrations", Some(ONE), None, Some(ONE));
        assert!(set.source(Backend::Postgres).is_ok());
        let err = set.source(Backend::Mysql).err().unwrap_or_default();
        assert!(err.contains("db/migrations/mysql"), "{err}");
    }

    #[test]
    fn fingerprints_change_with_the_sql() {
        const OTHER: &[MigrationFiles] =
            &[MigrationFiles::new("2026-11-25-000001_users", "CREATE TABLE u (y INT);", None)];
        let a = Migrations::embedded("m", Some(ONE), Some(ONE), Some(ONE));
        let b = Migrations::embedded("m", Some(ONE), Some(OTHER), Some(ONE));
        assert_eq!(a.fingerprint(), a.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
    }
}
