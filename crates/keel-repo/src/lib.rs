//! keel-repo: typed operations on keel's schema, the same calls on PostgreSQL, MySQL/MariaDB and
//! SQLite.
//!
//! What it is for: the repository a service calls (today: [`Repo::table_counts`]; CRUD, joins,
//! pagination, batch loads and transfers arrive with the repository issue). What it is not
//! for: pooling, retries and error classification, which live in `keel-pool`.

/// Inserts `$row` into `$table` and reads the stored row back by id as `$model`, in one
/// transaction (MySQL has no `RETURNING`; the id is generated client-side).
macro_rules! insert_returning {
    ($repo:expr, $table:ident, $row:expr, $model:ty) => {
        $repo
            .pool
            .transaction(|conn| {
                async move {
                    keel_pool::with_conn!(conn, |c| {
                        match keel_pool::Reuse(diesel::insert_into($table::table).values($row))
                            .execute(c)
                            .await
                        {
                            Ok(_) => $table::table.find($row.id).select(<$model>::as_select()).first(c).await,
                            Err(e) => Err(e),
                        }
                    })
                    .map_err($crate::Error::from)
                }
                .scope_boxed()
            })
            .await
    };
}
pub(crate) use insert_returning;

pub mod batch;
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
}

impl Repo {
    /// A repository over `pool`.
    pub fn new(pool: Pool) -> Self {
        Repo { pool }
    }

    /// The pool underneath.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Counts the rows of every table on one connection.
    pub async fn table_counts(&self) -> Result<TableCounts> {
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
