//! keel-repo: typed operations on keel's schema, the same calls on PostgreSQL, MySQL/MariaDB and
//! SQLite.
//!
//! What it is for: the repository a service calls. A [`Repo`] wraps a `keel-pool`
//! [`Pool`] and offers CRUD, joins, aggregates, keyset pagination, streaming,
//! batch loads, money transfers and raw SQL, each checking its input first so every backend
//! refuses the same values the same way. What it is not for: connecting, pooling, retries and
//! error classification (`keel-pool`), or the tables and row types (`keel-schema`).
//!
//! Modules:
//! - [`users`]: users — create, read, partial update, delete, search, date ranges, keyset pages, streams.
//! - [`jobs`]: jobs (create, read, delete, by user, by salary), users with their jobs (no N+1), aggregates.
//! - [`transfer`]: accounts and idempotent money transfers in one retry-safe transaction.
//! - [`batch`]: all-or-nothing batch inserts (chunked multi-row `INSERT`, PostgreSQL `COPY`).
//! - [`raw`]: raw SQL with `:name` parameters; rows as ordered maps of column name → [`Value`].
//! - [`error`]: [`Error`] (a classified database error or a domain refusal) and [`Result`].
//! - [`cache`]: read-through caching in Redis (feature `cache`, [`Repo::with_cache`]): the keys,
//!   and which writes invalidate which keys after their commit.
//!
//! Private: `validate` (input checks shared by the modules above) and `macros` (`insert_returning!`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), keel_repo::Error> {
//! use keel_schema::NewUser;
//! let pool = keel_pool::Pool::connect(keel_pool::Config::new("sqlite://keel.db")?).await?;
//! let repo = keel_repo::Repo::new(pool);
//! let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await?;
//! assert_eq!(repo.get_user(ada.id).await?.email, "ada@example.com");
//! println!("{} users", repo.table_counts().await?.users);
//! # Ok(()) }
//! ```

mod macros;
pub(crate) use macros::{find_cached, insert_returning};

pub mod batch;
pub mod cache;
pub mod error;
pub mod jobs;
pub mod raw;
pub mod transfer;
pub mod users;
mod validate;

pub use batch::{BatchMethod, BatchOptions, BatchRow};
pub use error::{Error, Result};
pub use jobs::UserJobStats;
pub use raw::{Params, Row, Value};
pub use transfer::TransferOutcome;
pub use users::{Page, UserFilter, UserPatch};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Pool, with_conn};
use keel_schema::schema;

/// Row counts of every table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TableCounts {
    /// Rows in `users`.
    pub users: i64,
    /// Rows in `jobs`.
    pub jobs: i64,
    /// Rows in `accounts`.
    pub accounts: i64,
    /// Rows in `transfers`.
    pub transfers: i64,
}

/// The repository: typed operations over a [`Pool`].
#[derive(Debug, Clone)]
pub struct Repo {
    pool: Pool,
    #[cfg(feature = "cache")]
    cache: Option<keel_cache::Cache>,
}

impl Repo {
    /// A repository over `pool`.
    pub fn new(pool: Pool) -> Self {
        Repo {
            pool,
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// The pool underneath.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Counts the rows of every table on one connection.
    pub async fn table_counts(&self) -> Result<TableCounts> {
        let repo = self.clone();
        self.pool.detached(async move { repo.table_counts_now().await }).await
    }

    async fn table_counts_now(&self) -> Result<TableCounts> {
        let mut conn = self.pool.get().await?;
        Ok(with_conn!(&mut conn, |c| async {
            let users = schema::users::table.count().get_result(c).await?;
            let jobs = schema::jobs::table.count().get_result(c).await?;
            let accounts = schema::accounts::table.count().get_result(c).await?;
            let transfers = schema::transfers::table.count().get_result(c).await?;
            Ok(TableCounts { users, jobs, accounts, transfers })
        }
        .await)?)
    }
}
