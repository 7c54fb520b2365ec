//! Raw SQL with named parameters, rows as ordered maps of column name → [`Value`].
//!
//! `:name` placeholders are rewritten to `$1`, `$2`, … (PostgreSQL) or `?` (MySQL, SQLite), but
//! never inside string literals, quoted identifiers, comments or PostgreSQL dollar quotes, and
//! `::type` casts are left alone. Values are always bound, never spliced into the text (the one
//! exception is the keyword `NULL`, below). What the seeds did with SQLAlchemy's `text()` +
//! `.mappings()`, aiomysql's `DictCursor` or asyncpg's `Record`:
//!
//! ```no_run
//! # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
//! use keel_repo::raw::Params;
//! let rows = repo
//!     .query("SELECT name, email FROM users WHERE name = :name ORDER BY email", &Params::new().set("name", "Ada"))
//!     .await?;
//! for row in &rows {
//!     println!("{}", serde_json::to_string(row).unwrap()); // {"name":"Ada","email":"ada@example.com"}
//! }
//! let n = repo.execute("DELETE FROM users WHERE name = :name", &Params::new().set("name", "Ada")).await?;
//! # Ok(()) }
//! ```
//!
//! A parameter the SQL uses but `params` lacks, and one `params` has but the SQL never uses
//! (usually a typo), are both `invalid_input` errors naming it.
//!
//! # NULL and decimal parameters
//!
//! The same statement gives the same answer on every backend, also for the two values whose
//! SQL type is not fixed by the value:
//! - [`Value::Null`] takes the type its place needs: `SET salary_cents = :s`, `col = :s` (no
//!   row matches) and `:s IS NULL` all work. On PostgreSQL it is written into the statement as
//!   the keyword `NULL` (a constant, never input text), which the server types from context as
//!   it does a literal; MySQL and SQLite bind it.
//! - [`Value::Decimal`] is bound as PostgreSQL `numeric` (binary, every digit kept), so it is
//!   stored into and compared with `numeric` columns as a number; MySQL and SQLite get its text,
//!   which MariaDB converts exactly to the `DECIMAL` it is stored into or compared with, and
//!   SQLite stores by the column's affinity (SQLite has no exact decimal type: keep decimals in
//!   `TEXT` columns there; `NUMERIC` affinity makes an integer or a float of them). Text that is
//!   not a decimal (`12,50`) is an `invalid_input` error on every backend, naming the parameter
//!   but not repeating the value.

mod decimal;
mod decode;
mod literal;
mod rewrite;
mod value;

pub use rewrite::rewrite;
pub use value::{Row, Value};

use diesel::mysql::Mysql;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types as st;
use diesel::sqlite::Sqlite;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Conn};
use keel_schema::{Id, Timestamp};

use self::decimal::Decimal;
use crate::Repo;
use crate::error::{Error, Result};

/// Named parameters for [`Repo::query`] and [`Repo::execute`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Vec<(String, Value)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `:name` to `value` (replacing an earlier value of the same name).
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
        self
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A parameter ready to bind.
#[derive(Debug)]
enum Bind<'p> {
    /// Bound with the same SQL type on every backend (decimals never come this way).
    Value(&'p Value),
    /// A checked decimal and its text (see [`BindDecimal`]).
    Decimal(&'p str, Decimal),
}

/// The SQL for `backend` and its binds in order, checking that every parameter is used, none
/// is missing, text holds no NUL byte and decimals are decimals.
///
/// On PostgreSQL a NULL parameter is written as the keyword `NULL` (a constant, never input
/// text) instead of a placeholder, so the server types it from its place in the statement as it
/// does a literal NULL. A bound parameter needs a type: text fails on `SET bigint_col = :p`
/// ("expression is of type text"), and none at all (oid 0) fails on `:p IS NULL` ("could not
/// determine data type of parameter"). MySQL and SQLite take an untyped bound NULL anywhere.
fn prepare<'p>(sql: &str, backend: Backend, params: &'p Params) -> Result<(String, Vec<Bind<'p>>)> {
    let inline_null = |name: &str| {
        (backend == Backend::Postgres && params.get(name) == Some(&Value::Null)).then(|| "NULL".to_owned())
    };
    let rewritten = rewrite::rewrite_with(sql, backend, inline_null)?;
    for name in &rewritten.used {
        if params.get(name).is_none() {
            return Err(Error::invalid(format!("missing parameter :{name}")));
        }
    }
    let unused: Vec<String> =
        params.0.iter().filter(|(n, _)| !rewritten.used.contains(n)).map(|(n, _)| format!(":{n}")).collect();
    if !unused.is_empty() {
        return Err(Error::invalid(format!("parameters not used by the SQL: {}", unused.join(", "))));
    }
    let mut binds = Vec::with_capacity(rewritten.binds.len());
    for name in &rewritten.binds {
        let v = params.get(name).expect("every used name was found above");
        binds.push(match v {
            Value::Text(t) if t.contains('\0') => {
                return Err(Error::invalid(format!(
                    "parameter :{name} contains a NUL byte, which text cannot hold"
                )));
            }
            Value::Decimal(t) => Bind::Decimal(
                t,
                Decimal::parse(t)
                    .map_err(|why| Error::invalid(format!("parameter :{name} is not a decimal: {why}")))?,
            ),
            v => Bind::Value(v),
        });
    }
    Ok((rewritten.sql, binds))
}

/// The SQL for `backend` with positional placeholders (`$1`, `?`) and the values to bind in
/// order, after the same checks [`Repo::query`] makes: every parameter used, none missing, no
/// NUL byte in text, decimals that are decimals. For drivers other than diesel (keel-frames
/// binds these through mysql_async). On PostgreSQL NULL parameters are written as the keyword
/// `NULL` and take no position (see the [module docs](self)).
pub fn positional(sql: &str, backend: Backend, params: &Params) -> Result<(String, Vec<Value>)> {
    let (text, binds) = prepare(sql, backend, params)?;
    let values = binds
        .into_iter()
        .map(|b| match b {
            Bind::Value(v) => v.clone(),
            Bind::Decimal(text, _) => Value::Decimal(text.to_owned()),
        })
        .collect();
    Ok((text, values))
}

/// PostgreSQL SQL with every `:name` written as a constant of its value's type, for statements
/// that take no bind parameters (`COPY (query) TO STDOUT`). The same checks as [`positional`]
/// run first. Text is quoted as a standard string (`'` doubled), which is exact only while
/// `standard_conforming_strings` is on: the session that runs the SQL must make sure of it
/// (PostgreSQL's default since 9.1).
pub fn inline_postgres(sql: &str, params: &Params) -> Result<String> {
    prepare(sql, Backend::Postgres, params)?;
    let inline = |name: &str| params.get(name).map(literal::postgres);
    Ok(rewrite::rewrite_with(sql, Backend::Postgres, inline)?.sql)
}

/// How a backend binds a decimal. PostgreSQL: binary `numeric`, so `numeric` columns take it,
/// comparisons are numeric and every digit is kept (bound as `text` it is refused there:
/// `numeric = text` has no operator). MySQL and SQLite: its text, which MariaDB converts to
/// `DECIMAL` exactly and SQLite stores by the column's affinity.
trait BindDecimal: diesel::backend::Backend + Sized
where
    String: diesel::serialize::ToSql<st::Text, Self>,
{
    /// Binds `text` (`parsed` is the same value, checked) onto `q`: as its text unless the
    /// backend says otherwise.
    fn bind_decimal<'f>(
        q: BoxedSqlQuery<'f, Self, SqlQuery>,
        text: &str,
        _parsed: &Decimal,
    ) -> BoxedSqlQuery<'f, Self, SqlQuery> {
        q.bind::<st::Text, _>(text.to_owned())
    }
}

impl BindDecimal for Pg {
    fn bind_decimal<'f>(
        q: BoxedSqlQuery<'f, Self, SqlQuery>,
        _: &str,
        parsed: &Decimal,
    ) -> BoxedSqlQuery<'f, Self, SqlQuery> {
        q.bind::<st::Numeric, _>(parsed.to_pg_numeric())
    }
}

impl BindDecimal for Mysql {}

impl BindDecimal for Sqlite {}

/// Binds `binds` onto a boxed SQL query for one backend.
macro_rules! bind_values {
    ($db:ty, $sql:expr, $binds:expr) => {{
        let mut q: BoxedSqlQuery<'_, $db, SqlQuery> = diesel::sql_query($sql).into_boxed::<$db>();
        for b in $binds {
            let v = match b {
                Bind::Decimal(text, parsed) => {
                    q = <$db as BindDecimal>::bind_decimal(q, text, parsed);
                    continue;
                }
                Bind::Value(v) => v,
            };
            q = match v {
                // Only MySQL and SQLite bind NULLs (`prepare` inlines them on PostgreSQL),
                // and take one of any type.
                Value::Null => q.bind::<st::Nullable<st::Text>, _>(None::<String>),
                Value::Bool(b) => q.bind::<st::Bool, _>(*b),
                Value::Int(i) => q.bind::<st::BigInt, _>(*i),
                Value::Float(f) => q.bind::<st::Double, _>(*f),
                Value::Text(t) => q.bind::<st::Text, _>(t.clone()),
                Value::Decimal(_) => unreachable!("prepare turns every decimal into Bind::Decimal"),
                Value::Bytes(b) => q.bind::<st::Binary, _>(b.clone()),
                Value::Uuid(u) => q.bind::<keel_schema::sql_types::Uuid, _>(Id(*u)),
                Value::Date(d) => q.bind::<st::Date, _>(*d),
                Value::Time(t) => q.bind::<st::Time, _>(*t),
                Value::DateTime(t) => q.bind::<st::Timestamp, _>(*t),
                Value::Timestamp(t) => q.bind::<keel_schema::sql_types::UtcTimestamp, _>(Timestamp(*t)),
            };
        }
        q
    }};
}

/// Runs one body on the connection's concrete type, with that backend's boxed query, and
/// classifies the error like `with_conn!`.
macro_rules! on_backend {
    ($conn:expr, |$c:ident, $db:ident| $body:expr) => {{
        let conn: &mut Conn = $conn;
        let backend = conn.backend();
        // Behind PgBouncer an autocommit statement gets a transaction of its own, as in `with_conn!`.
        let own_tx = conn.__needs_statement_tx();
        let begun: diesel::QueryResult<()> = if own_tx { conn.__begin_statement_tx().await } else { Ok(()) };
        let result = match begun {
            Err(e) => Err(e),
            Ok(()) => match &mut *conn {
                Conn::Postgres($c) => {
                    let $c: &mut keel_pool::PgConnection = &mut ***$c;
                    type $db = Pg;
                    $body
                }
                Conn::Mysql($c) => {
                    let $c: &mut keel_pool::MysqlConnection = &mut ***$c;
                    type $db = Mysql;
                    $body
                }
                Conn::Sqlite($c) => {
                    let $c: &mut keel_pool::SqliteConnection = &mut ***$c;
                    type $db = Sqlite;
                    $body
                }
            },
        };
        let result = if own_tx { conn.__end_statement_tx(result).await } else { result };
        result.map_err(|e| {
            let err = keel_pool::classify(backend, e);
            conn.observe(&err);
            Error::Db(err)
        })
    }};
}

/// Runs `sql` with `params` on a synchronous SQLite connection (inside
/// `SyncConnectionWrapper::spawn_blocking`) and hands each row to `each` as it is read, without
/// collecting them; `each` returns `false` to stop early. Fails like [`query_on`].
pub fn for_each_sqlite(
    conn: &mut diesel::SqliteConnection,
    sql: &str,
    params: &Params,
    mut each: impl FnMut(Row) -> bool,
) -> Result<()> {
    let (text, binds) = prepare(sql, Backend::Sqlite, params)?;
    let classify = |e| Error::Db(keel_pool::classify(Backend::Sqlite, e));
    let query = bind_values!(Sqlite, text, &binds);
    let rows = diesel::RunQueryDsl::load_iter::<Row, diesel::connection::DefaultLoadingMode>(query, conn)
        .map_err(classify)?;
    for row in rows {
        if !each(row.map_err(classify)?) {
            break;
        }
    }
    Ok(())
}

/// Runs `sql` with `params` on `conn` and returns the rows (see the [module docs](self)). Use
/// it inside [`Pool::transaction`](keel_pool::Pool::transaction) closures.
pub async fn query_on(conn: &mut Conn, sql: &str, params: &Params) -> Result<Vec<Row>> {
    let (text, binds) = prepare(sql, conn.backend(), params)?;
    on_backend!(conn, |c, DB| bind_values!(DB, text.clone(), &binds).load::<Row>(c).await)
}

/// Runs a statement with `params` on `conn`; the number of rows it affected.
pub async fn execute_on(conn: &mut Conn, sql: &str, params: &Params) -> Result<usize> {
    let (text, binds) = prepare(sql, conn.backend(), params)?;
    on_backend!(conn, |c, DB| bind_values!(DB, text.clone(), &binds).execute(c).await)
}

impl Repo {
    /// Runs a query with named parameters on a pooled connection; rows as ordered maps.
    pub async fn query(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        let sql = sql.to_owned();
        let params = params.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.query_now(&sql, &params).await }).await
    }

    async fn query_now(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        query_on(&mut self.pool.get().await?, sql, params).await
    }

    /// Runs a statement with named parameters; the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &Params) -> Result<usize> {
        let sql = sql.to_owned();
        let params = params.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.execute_now(&sql, &params).await }).await
    }

    async fn execute_now(&self, sql: &str, params: &Params) -> Result<usize> {
        execute_on(&mut self.pool.get().await?, sql, params).await
    }
}

#[cfg(test)]
mod tests {
    use keel_pool::Backend;

    use super::*;

    #[test]
    fn missing_and_unused_parameters_are_named() {
        let sql = "SELECT :a, :b";
        let pg = Backend::Postgres;
        let err = prepare(sql, pg, &Params::new().set("a", 1)).unwrap_err();
        assert!(err.to_string().contains("missing parameter :b"), "{err}");
        let err = prepare(sql, pg, &Params::new().set("a", 1).set("b", 2).set("typo", 3)).unwrap_err();
        assert!(err.to_string().contains(":typo"), "{err}");
        let err = prepare(sql, pg, &Params::new().set("a", "x\0").set("b", 2)).unwrap_err();
        assert_eq!(err.kind(), Some(keel_pool::ErrorKind::InvalidInput));
        // A NULL inlined on PostgreSQL is still a used parameter.
        let none = Params::new().set("a", 1).set("b", Option::<i64>::None);
        let (text, binds) = prepare(sql, pg, &none).unwrap();
        assert_eq!((text.as_str(), binds.len()), ("SELECT $1, NULL", 1));
        let (text, binds) = prepare(sql, Backend::Mysql, &none).unwrap();
        assert_eq!((text.as_str(), binds.len()), ("SELECT ?, ?", 2));
    }

    #[test]
    fn malformed_decimals_are_invalid_input_on_every_backend() {
        for backend in Backend::ALL {
            let params = Params::new().set("d", Value::Decimal("12,50".into()));
            let err = prepare("SELECT :d", backend, &params).unwrap_err();
            assert_eq!(err.kind(), Some(keel_pool::ErrorKind::InvalidInput), "{backend}");
            assert!(err.to_string().contains("parameter :d is not a decimal"), "{backend}: {err}");
            assert!(!err.to_string().contains("12,50"), "the value stays out of the message: {err}");
        }
    }
}
