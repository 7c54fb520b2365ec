//! Bulk inserts for any table: [`insert`] sends many rows of a [`BulkRow`] type, all or none,
//! the fastest way the backend allows — binary `COPY … FROM STDIN` on PostgreSQL, multi-row
//! `INSERT`s chunked under the bind-parameter limit in one transaction elsewhere (and on
//! PostgreSQL when conflicts are skipped). A refused row is reported by its index in the input
//! ([`Error::BulkRow`]) and nothing is written.
//!
//! ```no_run
//! use keel_pool::{Id, Timestamp};
//!
//! diesel::table! {
//!     orders (id) {
//!         id -> keel_pool::sql_types::Uuid,
//!         customer -> Text,
//!         total_cents -> BigInt,
//!         placed_at -> keel_pool::sql_types::UtcTimestamp,
//!     }
//! }
//!
//! #[derive(Clone, diesel::Insertable, keel_pool::BulkRow)]
//! #[diesel(table_name = orders)]
//! #[bulk(validate = check_total)]
//! struct NewOrder { id: Id, customer: String, total_cents: i64, placed_at: Timestamp }
//!
//! fn check_total(o: &NewOrder) -> Result<(), keel_pool::Error> {
//!     if o.total_cents < 0 {
//!         return Err(keel_pool::Error::invalid_input(format!("total_cents {} < 0", o.total_cents)));
//!     }
//!     Ok(())
//! }
//!
//! # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_pool::Error> {
//! let rows: Vec<NewOrder> = (0..100_000)
//!     .map(|i| NewOrder { id: Id::new(), customer: format!("c{i}"), total_cents: i, placed_at: keel_pool::now() })
//!     .collect();
//! let n = keel_pool::bulk::insert(&pool, &rows, &keel_pool::bulk::Options::new()).await?;
//! assert_eq!(n, 100_000);
//! # Ok(()) }
//! ```
//!
//! Modules: `chunks` (the multi-row path and how a refused row is found), `copy` (binary `COPY`
//! with retry); both private, reached through [`insert`].
mod chunks;
mod copy;

use std::future::Future;

use diesel::QueryResult;
use scoped_futures::ScopedFutureExt as _;

use crate::error::{Error, ErrorKind};
use crate::url::Backend;
use crate::{MysqlConnection, PgConnection, Pool};

/// Bind parameters one statement may carry: PostgreSQL and MySQL 65,535, SQLite 32,766.
pub fn bind_limit(backend: Backend) -> usize {
    match backend {
        Backend::Postgres | Backend::Mysql => 65_535,
        Backend::Sqlite => 32_766,
    }
}

/// Rows per multi-row `INSERT` unless [`Options::chunk_rows`] says otherwise: beyond a few
/// thousand rows a statement only grows the SQL text without saving round trips that matter.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;

/// How the rows are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Method {
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

/// Options for [`insert`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Skip rows that collide with an existing row on a unique key (instead of failing the
    /// batch); [`insert`] then returns how many rows were really inserted.
    pub on_conflict_do_nothing: bool,
    /// How to send the rows.
    pub method: Method,
    /// Rows per `INSERT` statement (capped by the bind-parameter limit); default
    /// [`DEFAULT_CHUNK_ROWS`].
    pub chunk_rows: Option<usize>,
}

impl Options {
    /// Defaults: fail on conflicts, [`Method::Auto`], [`DEFAULT_CHUNK_ROWS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Skips conflicting rows instead of failing.
    pub fn on_conflict_do_nothing(mut self, yes: bool) -> Self {
        self.on_conflict_do_nothing = yes;
        self
    }

    /// Chooses how the rows are sent.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the rows per `INSERT` statement.
    pub fn chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = Some(rows);
        self
    }
}

/// A row type [`insert`] can load: derive it with `#[derive(keel_pool::BulkRow)]` on a struct
/// that derives diesel's `Insertable`. The derive reads `#[diesel(table_name = …)]` and
/// `#[diesel(column_name = …)]`, and takes two options of its own:
///
/// - `#[bulk(validate = path)]` on the struct: a `fn(&Self) -> Result<(), keel_pool::Error>`
///   run on every row before anything is sent (the first refusal fails the call with
///   [`Error::BulkRow`] and its index);
/// - `#[bulk(key)]` on the field that identifies a row (default: the field named `id`). MySQL
///   reports a skipped duplicate as an affected row, so with `on_conflict_do_nothing` keel counts
///   the inserted rows by this key; without one that combination is refused.
///
/// Each field's type must be a diesel `ToSql` for its column (the multi-row path) and a
/// tokio-postgres `ToSql` for PostgreSQL's binary `COPY`: [`Id`](crate::Id),
/// [`Timestamp`](crate::Timestamp), `String`, `i16`/`i32`/`i64`, `f32`/`f64`, `bool`,
/// `Vec<u8>`, `uuid::Uuid`, `chrono` dates and times, `serde_json::Value`, and `Option` of each.
/// `COPY` takes the column types from the server, so `json` and `jsonb`, `text` and `varchar`
/// all work, and a field whose type does not fit its column fails with an error naming both.
pub trait BulkRow: Clone + Send + Sync + 'static {
    /// The column names, in field order.
    const COLUMNS: &'static [&'static str];
    /// Whether the row has a key field (see the trait docs).
    const HAS_KEY: bool;

    /// The table's name as PostgreSQL SQL, quoted (and schema-qualified when the `table!` is).
    #[doc(hidden)]
    fn table_sql() -> String;

    /// The row's own check, run before anything is sent; `Ok` unless `#[bulk(validate = …)]`.
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The row's values in column order, for binary `COPY`.
    #[doc(hidden)]
    fn copy_values(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)>;

    /// One multi-row `INSERT` on PostgreSQL; the number of rows inserted.
    #[doc(hidden)]
    fn insert_pg<'a>(
        c: &'a mut PgConnection,
        rows: &'a [Self],
        do_nothing: bool,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'a;

    /// One multi-row `INSERT` on MySQL; the number of rows inserted.
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

/// Implements tokio-postgres's `ToSql` for a newtype by its wrapped value, for binary `COPY`:
/// it takes whatever column types the inner type does.
macro_rules! copy_as_inner {
    ($outer:ty, $inner:ty) => {
        #[doc = concat!("For binary `COPY` ([`bulk::insert`](crate::bulk::insert)): encoded as the wrapped `", stringify!($inner), "`.")]
        impl tokio_postgres::types::ToSql for $outer {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                tokio_postgres::types::ToSql::to_sql(&self.0, ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <$inner as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }
    };
}
pub(crate) use copy_as_inner;

/// What `#[derive(BulkRow)]` expands to needs: not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use diesel::QueryResult;
    pub use tokio_postgres::types::ToSql;
    pub use {diesel, diesel_async};

    /// `table`'s name as PostgreSQL renders it (`"orders"`, `"shop"."orders"`).
    pub fn pg_sql<T: diesel::query_builder::QueryFragment<diesel::pg::Pg>>(table: &T) -> String {
        let mut qb = <diesel::pg::PgQueryBuilder as Default>::default();
        match table.to_sql(&mut qb, &diesel::pg::Pg) {
            Ok(()) => diesel::query_builder::QueryBuilder::finish(qb),
            Err(_) => String::new(),
        }
    }

    /// The error of a MySQL skip-conflicts insert on a row type without a key (refused
    /// before it is sent; this is the backstop).
    pub fn no_key_error() -> diesel::result::Error {
        diesel::result::Error::QueryBuilderError(super::NO_KEY.into())
    }
}

const NO_KEY: &str = "on_conflict_do_nothing on MySQL needs a key field to count inserted rows: \
                      name one `id` or mark it #[bulk(key)]";

/// Inserts all `rows` or none and returns how many were inserted (with
/// [`Options::on_conflict_do_nothing`], how many did not collide). Every row is first checked
/// with [`BulkRow::validate`]. A refused row fails the call with [`Error::BulkRow`], which names
/// its index; transient failures (a lost connection, a deadlock) are retried with the pool's
/// [`RetryPolicy`](crate::RetryPolicy).
pub async fn insert<R: BulkRow>(pool: &Pool, rows: &[R], options: &Options) -> Result<usize, Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    if let Some((index, source)) =
        rows.iter().enumerate().find_map(|(i, r)| r.validate().err().map(|e| (i, e)))
    {
        return Err(Error::BulkRow { index, source: Box::new(source) });
    }
    let backend = pool.backend();
    let copy = match (options.method, backend) {
        (Method::Copy, Backend::Postgres) if options.on_conflict_do_nothing => {
            return Err(Error::invalid_input("COPY cannot skip conflicting rows; use Method::MultiRow"));
        }
        (Method::Copy, Backend::Postgres) => true,
        (Method::Copy, other) => {
            return Err(Error::invalid_input(format!("COPY is PostgreSQL only; this pool is {other}")));
        }
        (Method::Auto, Backend::Postgres) => !options.on_conflict_do_nothing,
        _ => false,
    };
    if backend == Backend::Mysql && options.on_conflict_do_nothing && !R::HAS_KEY {
        return Err(Error::invalid_input(NO_KEY));
    }
    if copy {
        match copy::copy_with_retry(pool, rows).await {
            // Errors found at the end of the statement (foreign keys are checked then) carry
            // no line number: the chunked path finds the row, and fails the same way.
            Err(e) if refused(&e) => {
                tracing::debug!(target: "keel::bulk", error = %e, "COPY failed without a row number; locating the row");
            }
            done => return done,
        }
    }
    let limit = (bind_limit(backend) / R::COLUMNS.len().max(1)).max(1);
    let chunk_rows = options.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS).clamp(1, limit);
    let do_nothing = options.on_conflict_do_nothing;
    let run = |locate: bool| {
        pool.transaction(move |conn| {
            async move { chunks::insert_chunks(conn, rows, chunk_rows, do_nothing, locate).await }
                .scope_boxed()
        })
    };
    match run(false).await {
        // A row was refused: nothing was written. Run the batch again with a savepoint per
        // chunk, which finds the row (and fails the same way, writing nothing).
        Err(e) if refused(&e) => {
            tracing::debug!(target: "keel::bulk", error = %e, "batch refused; locating the row");
            run(true).await
        }
        done => done,
    }
}

/// A refusal without a row index: neither transient nor of unknown outcome, and not already
/// located.
fn refused(e: &Error) -> bool {
    !matches!(e, Error::BulkRow { .. }) && !e.is_transient() && e.kind() != ErrorKind::CommitOutcomeUnknown
}
