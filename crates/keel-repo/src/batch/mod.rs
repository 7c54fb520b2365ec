//! Batch inserts at wire speed: multi-row `INSERT`s chunked under each backend's bind-parameter
//! limit inside one transaction, or binary `COPY … FROM STDIN` on PostgreSQL. All rows or none;
//! a failing row is reported by its index in the input.
mod copy;
mod insert;

use std::future::Future;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, ErrorKind, MysqlConnection, PgConnection, ScopedFutureExt as _};
use keel_schema::schema::{accounts, jobs, users};
use keel_schema::{Id, NewAccount, NewJob, NewUser};
use tokio_postgres::types::{ToSql, Type};

use self::insert::insert_chunks;
use crate::Repo;
use crate::error::{Error, Result};

/// Bind parameters one statement may carry: PostgreSQL and MySQL 65,535, SQLite 32,766.
pub fn bind_limit(backend: Backend) -> usize {
    match backend {
        Backend::Postgres | Backend::Mysql => 65_535,
        Backend::Sqlite => 32_766,
    }
}

/// Rows per multi-row `INSERT` unless [`BatchOptions::chunk_rows`] says otherwise: beyond a few
/// thousand rows a statement only grows the SQL text without saving round trips that matter.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;

/// How a batch is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchMethod {
    /// `COPY` on PostgreSQL (multi-row `INSERT` when `on_conflict_do_nothing` is set, which
    /// `COPY` cannot do); multi-row `INSERT` elsewhere.
    #[default]
    Auto,
    /// Multi-row `INSERT` statements, chunked, in one transaction.
    MultiRow,
    /// PostgreSQL binary `COPY … FROM STDIN` on a tokio-postgres connection opened with the
    /// pool's settings (outside the pool). Invalid input on other backends.
    Copy,
}

/// Options for [`Repo::insert_users_with`] and [`Repo::insert_jobs_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Skip rows that collide with an existing row on a unique key (instead of failing the
    /// batch); the call returns how many rows were really inserted.
    pub on_conflict_do_nothing: bool,
    /// How to send the rows.
    pub method: BatchMethod,
    /// Rows per `INSERT` statement (capped by the bind-parameter limit); default
    /// [`DEFAULT_CHUNK_ROWS`].
    pub chunk_rows: Option<usize>,
}

impl BatchOptions {
    /// Defaults: fail on conflicts, [`BatchMethod::Auto`], [`DEFAULT_CHUNK_ROWS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Skips conflicting rows instead of failing.
    pub fn on_conflict_do_nothing(mut self, yes: bool) -> Self {
        self.on_conflict_do_nothing = yes;
        self
    }

    /// Chooses how the rows are sent.
    pub fn method(mut self, method: BatchMethod) -> Self {
        self.method = method;
        self
    }

    /// Sets the rows per `INSERT` statement.
    pub fn chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = Some(rows);
        self
    }
}

/// A row type the batch paths can insert: [`NewUser`], [`NewJob`] and [`NewAccount`].
pub trait BatchRow: Clone + Send + Sync + 'static + private::Sealed {
    /// Columns per row (bind parameters per row).
    const COLUMNS: usize;
    /// The `COPY` statement.
    #[doc(hidden)]
    const COPY_SQL: &'static str;
    /// The column types, in `COPY` order.
    #[doc(hidden)]
    const COPY_TYPES: &'static [Type];
    /// Checks every row before anything is sent; the first bad row's index and why.
    #[doc(hidden)]
    fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)>;
    /// The row's values in `COPY` order.
    #[doc(hidden)]
    fn copy_values(&self) -> Vec<&(dyn ToSql + Sync)>;
    /// One multi-row `INSERT` on PostgreSQL; the number of rows inserted.
    #[doc(hidden)]
    fn insert_pg<'a>(
        c: &'a mut PgConnection,
        rows: &'a [Self],
        do_nothing: bool,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'a;
    /// One multi-row `INSERT` on MySQL; the number of rows inserted (MySQL reports skipped
    /// duplicates as affected rows, so with `do_nothing` the rows are counted by id).
    #[doc(hidden)]
    fn insert_mysql<'a>(
        c: &'a mut MysqlConnection,
        rows: &'a [Self],
        do_nothing: bool,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'a;
    /// One multi-row `INSERT` on SQLite (synchronous, on the blocking pool).
    #[doc(hidden)]
    fn insert_sqlite(c: &mut diesel::SqliteConnection, rows: &[Self], do_nothing: bool)
    -> QueryResult<usize>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for keel_schema::NewUser {}
    impl Sealed for keel_schema::NewJob {}
    impl Sealed for keel_schema::NewAccount {}
}

macro_rules! batch_row {
    ($row:ty, $table:ident, $validate:path, $copy:expr, [$($ty:expr),*], |$r:ident| [$($val:expr),*]) => {
        impl BatchRow for $row {
            const COLUMNS: usize = [$($ty),*].len();
            const COPY_SQL: &'static str = $copy;
            const COPY_TYPES: &'static [Type] = &[$($ty),*];

            fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)> {
                $validate(rows)
            }

            fn copy_values(&self) -> Vec<&(dyn ToSql + Sync)> {
                let $r = self;
                vec![$($val),*]
            }

            fn insert_pg<'a>(
                c: &'a mut PgConnection,
                rows: &'a [Self],
                do_nothing: bool,
            ) -> impl Future<Output = QueryResult<usize>> + Send + 'a {
                async move {
                    let insert = diesel::insert_into($table::table).values(rows);
                    if do_nothing { insert.on_conflict_do_nothing().execute(c).await } else { insert.execute(c).await }
                }
            }

            fn insert_mysql<'a>(
                c: &'a mut MysqlConnection,
                rows: &'a [Self],
                do_nothing: bool,
            ) -> impl Future<Output = QueryResult<usize>> + Send + 'a {
                async move {
                    let insert = diesel::insert_into($table::table).values(rows);
                    if !do_nothing {
                        return insert.execute(c).await;
                    }
                    let ids: Vec<Id> = rows.iter().map(|r| r.id).collect();
                    let count = || $table::table.filter($table::id.eq_any(&ids)).count();
                    let before: i64 = count().get_result(c).await?;
                    insert.on_conflict_do_nothing().execute(c).await?;
                    let after: i64 = count().get_result(c).await?;
                    Ok((after - before) as usize)
                }
            }

            fn insert_sqlite(c: &mut diesel::SqliteConnection, rows: &[Self], do_nothing: bool) -> QueryResult<usize> {
                if do_nothing {
                    // diesel has no batch `ON CONFLICT DO NOTHING` for SQLite; `OR IGNORE` skips
                    // unique conflicts the same way (CHECK and NOT NULL were validated above;
                    // foreign keys still fail).
                    diesel::RunQueryDsl::execute(diesel::insert_or_ignore_into($table::table).values(rows), c)
                } else {
                    diesel::RunQueryDsl::execute(diesel::insert_into($table::table).values(rows), c)
                }
            }
        }
    };
}

batch_row!(
    NewUser,
    users,
    crate::users::validate_users,
    "COPY users (id, name, email, created_at) FROM STDIN (FORMAT binary)",
    [Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::TIMESTAMPTZ],
    |r| [&r.id.0, &r.name, &r.email, &r.created_at.0]
);

batch_row!(
    NewJob,
    jobs,
    crate::jobs::validate_jobs,
    "COPY jobs (id, user_id, title, salary_cents, created_at) FROM STDIN (FORMAT binary)",
    [Type::UUID, Type::UUID, Type::VARCHAR, Type::INT8, Type::TIMESTAMPTZ],
    |r| [&r.id.0, &r.user_id.0, &r.title, &r.salary_cents, &r.created_at.0]
);

batch_row!(
    NewAccount,
    accounts,
    validate_accounts,
    "COPY accounts (id, owner_id, balance_cents, created_at) FROM STDIN (FORMAT binary)",
    [Type::UUID, Type::UUID, Type::INT8, Type::TIMESTAMPTZ],
    |r| [&r.id.0, &r.owner_id.0, &r.balance_cents, &r.created_at.0]
);

fn validate_accounts(rows: &[NewAccount]) -> std::result::Result<(), (usize, Error)> {
    match rows.iter().position(|a| a.balance_cents < 0) {
        Some(i) => Err((
            i,
            Error::invalid(format!("balance_cents cannot be negative, got {}", rows[i].balance_cents)),
        )),
        None => Ok(()),
    }
}
impl Repo {
    /// Inserts all `users` or none, the fastest way the backend allows ([`BatchMethod::Auto`]),
    /// and returns how many were inserted. If a row is refused (say, a duplicate email) the
    /// error is [`Error::BatchRow`] with that row's index and nothing is inserted.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// use keel_schema::NewUser;
    /// let users: Vec<NewUser> =
    ///     (0..10_000).map(|i| NewUser::new(format!("User {i}"), format!("user{i}@example.com"))).collect();
    /// assert_eq!(repo.insert_users(&users).await?, 10_000);
    /// # Ok(()) }
    /// ```
    pub async fn insert_users(&self, users: &[NewUser]) -> Result<usize> {
        self.insert_batch(users, &BatchOptions::default()).await
    }

    /// [`Repo::insert_users`] with options: skip conflicting rows, force a method, chunk size.
    pub async fn insert_users_with(&self, users: &[NewUser], options: &BatchOptions) -> Result<usize> {
        self.insert_batch(users, options).await
    }

    /// Inserts all `jobs` or none; see [`Repo::insert_users`]. A job whose user does not exist
    /// fails the batch with `foreign_key_violation` and its index.
    pub async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<usize> {
        self.insert_batch(jobs, &BatchOptions::default()).await
    }

    /// [`Repo::insert_jobs`] with options.
    pub async fn insert_jobs_with(&self, jobs: &[NewJob], options: &BatchOptions) -> Result<usize> {
        self.insert_batch(jobs, options).await
    }

    /// Opens many accounts at once, all or none; see [`Repo::insert_users`].
    pub async fn insert_accounts(&self, accounts: &[NewAccount]) -> Result<usize> {
        self.insert_batch(accounts, &BatchOptions::default()).await
    }

    /// The batch path for any [`BatchRow`] type.
    pub async fn insert_batch<R: BatchRow>(&self, rows: &[R], options: &BatchOptions) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        R::validate_all(rows).map_err(|(index, e)| match e {
            Error::Db(source) => Error::BatchRow { index, source },
            other => other,
        })?;
        let backend = self.pool.backend();
        let copy = match (options.method, backend) {
            (BatchMethod::Copy, Backend::Postgres) if options.on_conflict_do_nothing => {
                return Err(Error::invalid("COPY cannot skip conflicting rows; use BatchMethod::MultiRow"));
            }
            (BatchMethod::Copy, Backend::Postgres) => true,
            (BatchMethod::Copy, other) => {
                return Err(Error::invalid(format!("COPY is PostgreSQL only; this pool is {other}")));
            }
            (BatchMethod::Auto, Backend::Postgres) => !options.on_conflict_do_nothing,
            _ => false,
        };
        if copy {
            match self.copy_with_retry(rows).await {
                // Errors found at the end of the statement (foreign keys are checked then)
                // carry no line number: the chunked path finds the row, and fails the same way.
                Err(Error::Db(e)) if !e.is_transient() && e.kind() != ErrorKind::CommitOutcomeUnknown => {
                    tracing::debug!(target: "keel::repo", error = %e, "COPY failed without a row number; locating the row");
                }
                done => return done,
            }
        }
        let limit = bind_limit(backend) / R::COLUMNS;
        let chunk_rows = options.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS).clamp(1, limit);
        let do_nothing = options.on_conflict_do_nothing;
        let run = |locate: bool| {
            self.pool.transaction(move |conn| {
                async move { insert_chunks(conn, rows, chunk_rows, do_nothing, locate).await }.scope_boxed()
            })
        };
        match run(false).await {
            // A row was refused: nothing was written. Run the batch again with a savepoint
            // per chunk, which finds the row (and fails the same way, writing nothing).
            Err(Error::Db(e)) if !e.is_transient() && e.kind() != ErrorKind::CommitOutcomeUnknown => {
                tracing::debug!(target: "keel::repo", error = %e, "batch refused; locating the row");
                run(true).await
            }
            done => done,
        }
    }
}
