//! Typed diesel queries as batches ([`query_diesel`]): the query is rendered by the backend's
//! own diesel `QueryBuilder` and its bind values collected by diesel's own bind collector, so
//! every value reaches the database as diesel would send it (typed, never spliced into the SQL
//! text):
//! - PostgreSQL: diesel's SQL (`$n` placeholders) as a prepared statement whose parameters are
//!   diesel's binary binds with diesel's type oids; the binary result rows go through the same
//!   decoder as COPY's tuples. (COPY takes no parameters, so a typed query does not use it.)
//!   Types diesel looks up by name (keel's `Id` is `uuid` by name) are resolved on the session
//!   with `to_regtype`.
//! - MySQL/MariaDB: diesel's SQL (`?` placeholders) with the binds converted to mysql_async
//!   values the way diesel-async converts them, then the same reader as raw SQL.
//! - SQLite: the query itself, run by diesel on the pooled connection and read by name (a
//!   wrapper makes it untyped), then the same reader as raw SQL.

use std::collections::HashMap;

use diesel::mysql::{Mysql, MysqlType, MysqlValue};
use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryBuilder as _, QueryFragment, QueryId};
use diesel::sqlite::Sqlite;
use keel_pool::{Backend, Pool};

use crate::{Batches, Error, Options, QUEUED_BATCHES};

fn diesel_err(backend: Backend, e: diesel::result::Error) -> Error {
    Error::Db(keel_pool::classify(backend, e))
}

/// A diesel query keel-frames can read on every backend: it must build for PostgreSQL, MySQL
/// and SQLite (a query boxed for one backend does not), and own its bind values (`'static`),
/// as queries built from the `table!` DSL do. Implemented for every such type.
pub trait DieselQuery:
    QueryFragment<Pg> + QueryFragment<Mysql> + QueryFragment<Sqlite> + QueryId + Send + 'static
{
}

impl<T> DieselQuery for T where
    T: QueryFragment<Pg> + QueryFragment<Mysql> + QueryFragment<Sqlite> + QueryId + Send + 'static
{
}

/// Runs a typed diesel query (anything [`AsQuery`], e.g. `jobs::table.filter(..).select(..)`,
/// or a whole table) and returns its result as batches: the same schema rules, batch size and
/// early-drop behaviour as [`query`](crate::query); the column names are those diesel selects
/// (`jobs.title` is `title`). How each backend runs it is in this module's source docs.
///
/// Fails before any row is read when the SQL is refused, a bound value's PostgreSQL type does
/// not exist on the server, or with [`Error::UnsupportedType`]; later errors end the stream.
///
/// ```no_run
/// use diesel::prelude::*;
/// use keel_frames::Options;
/// use keel_schema::schema::jobs;
///
/// # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_frames::Error> {
/// let query = jobs::table.filter(jobs::salary_cents.gt(5_000_000i64)).select((jobs::id, jobs::title));
/// let batches = keel_frames::query_diesel(&pool, query, &Options::new()).await?;
/// # Ok(()) }
/// ```
pub async fn query_diesel<Q>(pool: &Pool, query: Q, options: &Options) -> Result<Batches, Error>
where
    Q: AsQuery,
    Q::Query: DieselQuery,
{
    let query = query.as_query();
    let options = Options { batch_rows: options.batch_rows.max(1) };
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
    let schema = match pool.backend() {
        Backend::Postgres => crate::postgres::start_typed(pool, &query, &options, tx).await?,
        Backend::Mysql => crate::mysql::start(pool, mysql_statement(&query)?, &options, tx).await?,
        Backend::Sqlite => {
            let source: crate::sqlite::Source = Box::new(move |conn, each| {
                let rows = diesel::RunQueryDsl::load_iter::<
                    keel_repo::raw::Row,
                    diesel::connection::DefaultLoadingMode,
                >(ByName(query), conn)
                .map_err(|e| diesel_err(Backend::Sqlite, e))?;
                for row in rows {
                    if !each(row.map_err(|e| diesel_err(Backend::Sqlite, e))?) {
                        break;
                    }
                }
                Ok(())
            });
            crate::sqlite::start(pool, source, &options, tx).await?
        }
    };
    Ok(Batches { schema, rx })
}

/// A typed query read by column name: diesel returns its rows as [`keel_repo::raw::Row`]s
/// (which decode any column) instead of the query's own Rust types.
struct ByName<Q>(Q);

impl<Q: QueryId> QueryId for ByName<Q> {
    type QueryId = ByName<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: QueryFragment<Sqlite>> QueryFragment<Sqlite> for ByName<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Sqlite>) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }
}

impl<Q> Query for ByName<Q> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Q, C> diesel::RunQueryDsl<C> for ByName<Q> {}

/// Type names diesel asked for while collecting binds, and those already resolved.
#[derive(Default)]
struct Names {
    asked: Vec<(String, Option<String>)>,
    known: HashMap<(String, Option<String>), (u32, u32)>,
}

impl PgMetadataLookup for Names {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let key = (type_name.to_owned(), schema.map(str::to_owned));
        match self.known.get(&key) {
            Some(&(oid, array_oid)) => PgTypeMetadata::new(oid, array_oid),
            None => {
                // A placeholder for the first pass; the binds are collected again once resolved.
                self.asked.push(key);
                PgTypeMetadata::new(0, 0)
            }
        }
    }
}

fn collect_pg<Q: QueryFragment<Pg>>(
    query: &Q,
    names: &mut Names,
) -> Result<RawBytesBindCollector<Pg>, Error> {
    let mut collector = RawBytesBindCollector::<Pg>::new();
    query
        .collect_binds(&mut collector, names as &mut dyn PgMetadataLookup, &Pg)
        .map_err(|e| diesel_err(Backend::Postgres, e))?;
    Ok(collector)
}

/// A diesel query's PostgreSQL SQL and its binds as `(type oid, binary value)`, type names
/// resolved on `client`'s session.
pub(crate) async fn postgres_binds<Q: QueryFragment<Pg>>(
    client: &tokio_postgres::Client,
    query: &Q,
) -> Result<(String, Vec<(u32, Option<Vec<u8>>)>), Error> {
    let mut builder = diesel::pg::PgQueryBuilder::default();
    query.to_sql(&mut builder, &Pg).map_err(|e| diesel_err(Backend::Postgres, e))?;
    let sql = builder.finish();
    let mut names = Names::default();
    let mut collector = collect_pg(query, &mut names)?;
    if !names.asked.is_empty() {
        for (name, schema) in std::mem::take(&mut names.asked) {
            let row = client
                .query_opt(
                    "SELECT t.oid, t.typarray FROM pg_type t WHERE t.oid = to_regtype(CASE WHEN $2::text IS NULL \
                     THEN quote_ident($1) ELSE quote_ident($2) || '.' || quote_ident($1) END)",
                    &[&name, &schema],
                )
                .await
                .map_err(|e| Error::Db(keel_pool::classify_postgres(&e)))?;
            let Some(row) = row else {
                return Err(Error::Db(keel_pool::Error::invalid_input(format!(
                    "the query binds a value of PostgreSQL type {name}, which this database does not have"
                ))));
            };
            names.known.insert((name, schema), (row.get(0), row.get(1)));
        }
        collector = collect_pg(query, &mut names)?;
    }
    let mut binds = Vec::with_capacity(collector.binds.len());
    for (meta, bind) in collector.metadata.iter().zip(collector.binds) {
        let oid = meta.oid().map_err(|e| Error::Db(keel_pool::Error::invalid_input(e.to_string())))?;
        binds.push((oid, bind));
    }
    Ok((sql, binds))
}

/// A diesel query's MySQL SQL and its binds as mysql_async values.
pub(crate) fn mysql_statement<Q: QueryFragment<Mysql>>(
    query: &Q,
) -> Result<(String, Vec<mysql_async::Value>), Error> {
    let mut builder = diesel::mysql::MysqlQueryBuilder::new();
    query.to_sql(&mut builder, &Mysql).map_err(|e| diesel_err(Backend::Mysql, e))?;
    let sql = builder.finish();
    let mut collector = RawBytesBindCollector::<Mysql>::new();
    query.collect_binds(&mut collector, &mut (), &Mysql).map_err(|e| diesel_err(Backend::Mysql, e))?;
    let values = collector
        .metadata
        .into_iter()
        .zip(collector.binds)
        .map(|(ty, bind)| match bind {
            None => Ok(mysql_async::Value::NULL),
            Some(bytes) => mysql_value(ty, bytes).map_err(|m| {
                Error::Db(keel_pool::Error::invalid_input(format!("a bind value of MySQL type {ty:?}: {m}")))
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok((sql, values))
}

fn ne<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

/// One diesel MySQL bind (native-endian numbers, `MYSQL_TIME` for dates and times, bytes for the
/// rest: diesel's encoding) as a mysql_async value, as diesel-async converts them.
fn mysql_value(ty: MysqlType, bytes: Vec<u8>) -> Result<mysql_async::Value, String> {
    use diesel::deserialize::FromSql;
    use diesel::mysql::data_types::MysqlTime;
    use mysql_async::Value as M;
    let narrow = |v: u32| u8::try_from(v).map_err(|e| e.to_string());
    Ok(match ty {
        MysqlType::Tiny => M::Int(i64::from(i8::from_ne_bytes(ne(&bytes)?))),
        MysqlType::Short => M::Int(i64::from(i16::from_ne_bytes(ne(&bytes)?))),
        MysqlType::Long => M::Int(i64::from(i32::from_ne_bytes(ne(&bytes)?))),
        MysqlType::LongLong => M::Int(i64::from_ne_bytes(ne(&bytes)?)),
        MysqlType::UnsignedTiny => M::UInt(u64::from(u8::from_ne_bytes(ne(&bytes)?))),
        MysqlType::UnsignedShort => M::UInt(u64::from(u16::from_ne_bytes(ne(&bytes)?))),
        MysqlType::UnsignedLong => M::UInt(u64::from(u32::from_ne_bytes(ne(&bytes)?))),
        MysqlType::UnsignedLongLong => M::UInt(u64::from_ne_bytes(ne(&bytes)?)),
        MysqlType::Float => M::Float(f32::from_ne_bytes(ne(&bytes)?)),
        MysqlType::Double => M::Double(f64::from_ne_bytes(ne(&bytes)?)),
        MysqlType::Time => {
            let t: MysqlTime =
                FromSql::<diesel::sql_types::Time, Mysql>::from_sql(MysqlValue::new(&bytes, ty))
                    .map_err(|e| e.to_string())?;
            M::Time(
                t.neg,
                t.day,
                narrow(t.hour)?,
                narrow(t.minute)?,
                narrow(t.second)?,
                u32::try_from(t.second_part).map_err(|e| e.to_string())?,
            )
        }
        MysqlType::Date | MysqlType::DateTime | MysqlType::Timestamp => {
            let t: MysqlTime =
                FromSql::<diesel::sql_types::Timestamp, Mysql>::from_sql(MysqlValue::new(&bytes, ty))
                    .map_err(|e| e.to_string())?;
            M::Date(
                u16::try_from(t.year).map_err(|e| e.to_string())?,
                narrow(t.month)?,
                narrow(t.day)?,
                narrow(t.hour)?,
                narrow(t.minute)?,
                narrow(t.second)?,
                u32::try_from(t.second_part).map_err(|e| e.to_string())?,
            )
        }
        MysqlType::Numeric | MysqlType::Set | MysqlType::Enum | MysqlType::String | MysqlType::Blob => {
            M::Bytes(bytes)
        }
        other => return Err(format!("diesel's {other:?} binds are not supported; bind it as another type")),
    })
}
