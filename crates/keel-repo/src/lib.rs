//! keel-repo: typed operations on keel's schema, the same calls on PostgreSQL, MySQL/MariaDB and
//! SQLite.
//!
//! What it is for: the repository a service calls (today: [`Repo::table_counts`]; CRUD, joins,
//! pagination, batch loads and transfers arrive with the repository issue). What it is not
//! for: pooling, retries and error classification, which live in `keel-pool`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Error, Pool, with_conn};
use keel_schema::schema::{accounts, jobs, transfers, users};

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
    pub async fn table_counts(&self) -> Result<TableCounts, Error> {
        let mut conn = self.pool.get().await?;
        with_conn!(&mut conn, |c| async {
            let users = users::table.count().get_result(c).await?;
            let jobs = jobs::table.count().get_result(c).await?;
            let accounts = accounts::table.count().get_result(c).await?;
            let transfers = transfers::table.count().get_result(c).await?;
            Ok(TableCounts { users, jobs, accounts, transfers })
        }
        .await)
    }
}
