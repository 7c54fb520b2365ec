//! Raw SQL with named parameters, rows as ordered maps of column name → [`Value`].
//!
//! `:name` placeholders are rewritten to `$1`, `$2`, … (PostgreSQL) or `?` (MySQL, SQLite), but
//! never inside string literals, quoted identifiers, comments or PostgreSQL dollar quotes, and
//! `::type` casts are left alone. Values are always bound, never spliced into the text. What the
//! seeds did with SQLAlchemy's `text()` + `.mappings()`, aiomysql's `DictCursor` or asyncpg's
//! `Record`:
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

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::mysql::{Mysql, MysqlType};
use diesel::pg::Pg;
use diesel::query_builder::BoxedSqlQuery;
use diesel::row::{Field, NamedRow};
use diesel::sql_types as st;
use diesel::sqlite::{Sqlite, SqliteType};
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Conn};
use keel_schema::{Id, Timestamp};
use serde::ser::{SerializeMap, Serializer};

use crate::Repo;
use crate::error::{Error, Result};

/// One value of a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL` (JSON `null`).
    Null,
    /// A boolean (PostgreSQL `boolean`; MySQL and SQLite have none and return integers).
    Bool(bool),
    /// Any integer column (JSON number).
    Int(i64),
    /// A floating-point column (JSON number).
    Float(f64),
    /// An exact decimal (`numeric`/`DECIMAL`), as text so no digit is lost (JSON string).
    Decimal(String),
    /// Text (JSON string).
    Text(String),
    /// Binary data (JSON: base64 string). MySQL `BINARY(16)` and SQLite `BLOB` ids come back
    /// as 16 bytes; [`Value::as_uuid`] reads them.
    Bytes(Vec<u8>),
    /// A PostgreSQL `uuid` (JSON string).
    Uuid(uuid::Uuid),
    /// A date (JSON `"2026-11-25"`).
    Date(NaiveDate),
    /// A time of day (JSON `"13:45:00"`).
    Time(NaiveTime),
    /// A date and time without zone (JSON `"2026-11-25T13:45:00"`).
    DateTime(NaiveDateTime),
    /// A UTC timestamp (JSON RFC 3339). As a parameter it is bound in keel's column format, so
    /// it compares correctly with `created_at` on every backend.
    Timestamp(DateTime<Utc>),
}

impl Value {
    /// The value as a UUID: a PostgreSQL `uuid`, 16 bytes (MySQL/SQLite ids) or UUID text.
    pub fn as_uuid(&self) -> Option<uuid::Uuid> {
        match self {
            Value::Uuid(u) => Some(*u),
            Value::Bytes(b) => uuid::Uuid::from_slice(b).ok(),
            Value::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as text, if it is text or a decimal.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Decimal(s) => Some(s),
            _ => None,
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use base64::Engine as _;
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Decimal(t) | Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Uuid(u) => s.collect_str(u),
            Value::Date(d) => s.collect_str(&d.format("%Y-%m-%d")),
            Value::Time(t) => s.collect_str(&t.format("%H:%M:%S%.f")),
            Value::DateTime(t) => s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S%.f")),
            Value::Timestamp(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

value_from!(
    bool => |v| Value::Bool(v),
    i32 => |v| Value::Int(i64::from(v)),
    i64 => |v| Value::Int(v),
    f64 => |v| Value::Float(v),
    &str => |v| Value::Text(v.to_owned()),
    String => |v| Value::Text(v),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Bytes(v),
    uuid::Uuid => |v| Value::Uuid(v),
    Id => |v| Value::Uuid(v.0),
    NaiveDate => |v| Value::Date(v),
    NaiveTime => |v| Value::Time(v),
    NaiveDateTime => |v| Value::DateTime(v),
    DateTime<Utc> => |v| Value::Timestamp(v),
    Timestamp => |v| Value::Timestamp(v.0),
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

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

/// One result row: columns in query order, each with its name and value. Serialises as a JSON
/// object in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(Vec<(String, Value)>);

impl Row {
    /// The value of the column named `name` (the first, if several share it).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Column names and values, in query order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Column names, in query order.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Rewrites `:name` placeholders for `backend`; returns the SQL and, per bind position, the
/// parameter name. PostgreSQL numbers each distinct name once (`$1` twice for a repeated name);
/// MySQL and SQLite get one `?` per occurrence.
///
/// Fails on a `?` (MySQL, SQLite) or `$n` (PostgreSQL) placeholder outside literals: mixing
/// them with named parameters would shift every position.
pub fn rewrite(sql: &str, backend: Backend) -> Result<(String, Vec<String>)> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    let pg = backend == Backend::Postgres;
    let my = backend == Backend::Mysql;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Copies chars[i..end] verbatim.
    let copy = |out: &mut String, from: usize, to: usize| out.extend(&chars[from..to.min(chars.len())]);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' if c != '`' || my => {
                // E'…' on PostgreSQL and every MySQL string take backslash escapes.
                let backslash = my || (pg && c == '\'' && i > 0 && matches!(chars[i - 1], 'e' | 'E'));
                let mut j = i + 1;
                while j < chars.len() {
                    if backslash && chars[j] == '\\' {
                        j += 2;
                        continue;
                    }
                    if chars[j] == c {
                        if chars.get(j + 1) == Some(&c) {
                            j += 2; // doubled quote
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                copy(&mut out, i, j + 1);
                i = j + 1;
            }
            '-' if next == Some('-') => {
                let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p);
                copy(&mut out, i, end);
                i = end;
            }
            '#' if my => {
                let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p);
                copy(&mut out, i, end);
                i = end;
            }
            '/' if next == Some('*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < chars.len() && depth > 0 {
                    if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 2;
                    } else if pg && chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                copy(&mut out, i, j);
                i = j;
            }
            '$' if pg && next.is_some_and(|n| n.is_ascii_digit()) => {
                return Err(Error::invalid("use :name parameters, not $n placeholders"));
            }
            '$' if pg && next.is_some_and(|n| n == '$' || ident_start(n)) => {
                // A dollar-quoted string: $tag$ … $tag$.
                let tag_end = chars[i + 1..].iter().position(|&c| !ident(c)).map(|p| i + 1 + p);
                match tag_end {
                    Some(t) if chars[t] == '$' => {
                        let tag: String = chars[i..=t].iter().collect();
                        let rest: String = chars[t + 1..].iter().collect();
                        let close = rest
                            .find(&tag)
                            .map_or(chars.len(), |p| t + 1 + rest[..p].chars().count() + tag.chars().count());
                        copy(&mut out, i, close);
                        i = close;
                    }
                    _ => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            '?' if !pg => return Err(Error::invalid("use :name parameters, not ? placeholders")),
            ':' if next == Some(':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if next.is_some_and(ident_start) && !(i > 0 && ident(chars[i - 1]) && pg) => {
                let end = chars[i + 1..].iter().position(|&c| !ident(c)).map_or(chars.len(), |p| i + 1 + p);
                let name: String = chars[i + 1..end].iter().collect();
                if pg {
                    let n = match names.iter().position(|x| *x == name) {
                        Some(p) => p + 1,
                        None => {
                            names.push(name);
                            names.len()
                        }
                    };
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    names.push(name);
                    out.push('?');
                }
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok((out, names))
}

/// The values in bind order, checking that every parameter is used and none is missing.
fn bind_values<'p>(names: &[String], params: &'p Params) -> Result<Vec<&'p Value>> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let v = params.get(name).ok_or_else(|| Error::invalid(format!("missing parameter :{name}")))?;
        if let Value::Text(t) = v
            && t.contains('\0')
        {
            return Err(Error::invalid(format!(
                "parameter :{name} contains a NUL byte, which text cannot hold"
            )));
        }
        values.push(v);
    }
    let unused: Vec<String> =
        params.0.iter().filter(|(n, _)| !names.contains(n)).map(|(n, _)| format!(":{n}")).collect();
    if !unused.is_empty() {
        return Err(Error::invalid(format!("parameters not used by the SQL: {}", unused.join(", "))));
    }
    Ok(values)
}

/// Binds `values` onto a boxed SQL query for one backend.
macro_rules! bind_values {
    ($db:ty, $sql:expr, $values:expr) => {{
        let mut q: BoxedSqlQuery<'_, $db, diesel::query_builder::SqlQuery> =
            diesel::sql_query($sql).into_boxed::<$db>();
        for v in $values {
            q = match v {
                Value::Null => q.bind::<st::Nullable<st::Text>, _>(None::<String>),
                Value::Bool(b) => q.bind::<st::Bool, _>(*b),
                Value::Int(i) => q.bind::<st::BigInt, _>(*i),
                Value::Float(f) => q.bind::<st::Double, _>(*f),
                Value::Decimal(t) | Value::Text(t) => q.bind::<st::Text, _>(t.clone()),
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
        let result = match &mut *conn {
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
        };
        result.map_err(|e| {
            let err = keel_pool::classify(backend, e);
            conn.observe(&err);
            Error::Db(err)
        })
    }};
}

/// Runs `sql` with `params` on `conn` and returns the rows (see the [module docs](self)). Use
/// it inside [`Pool::transaction`](keel_pool::Pool::transaction) closures.
pub async fn query_on(conn: &mut Conn, sql: &str, params: &Params) -> Result<Vec<Row>> {
    let (text, names) = rewrite(sql, conn.backend())?;
    let values = bind_values(&names, params)?;
    on_backend!(conn, |c, DB| bind_values!(DB, text.clone(), &values).load::<Row>(c).await)
}

/// Runs a statement with `params` on `conn`; the number of rows it affected.
pub async fn execute_on(conn: &mut Conn, sql: &str, params: &Params) -> Result<usize> {
    let (text, names) = rewrite(sql, conn.backend())?;
    let values = bind_values(&names, params)?;
    on_backend!(conn, |c, DB| bind_values!(DB, text.clone(), &values).execute(c).await)
}

impl Repo {
    /// Runs a query with named parameters on a pooled connection; rows as ordered maps.
    pub async fn query(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        query_on(&mut self.pool.get().await?, sql, params).await
    }

    /// Runs a statement with named parameters; the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &Params) -> Result<usize> {
        execute_on(&mut self.pool.get().await?, sql, params).await
    }
}

fn decode_err(column: &str, what: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    format!("column {column}: {what}").into()
}

/// Reads every column of a row with `decode`.
fn build_row<'a, DB, R>(
    row: &R,
    decode: impl Fn(&str, DB::RawValue<'_>) -> deserialize::Result<Value>,
) -> deserialize::Result<Row>
where
    DB: diesel::backend::Backend,
    R: NamedRow<'a, DB>,
{
    let n = diesel::row::Row::field_count(row);
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let field = diesel::row::Row::get(row, i).ok_or_else(|| decode_err("?", "missing field"))?;
        let name = field.field_name().unwrap_or("?").to_owned();
        let value = match field.value() {
            None => Value::Null,
            Some(raw) => decode(&name, raw)?,
        };
        columns.push((name, value));
    }
    Ok(Row(columns))
}

/// PostgreSQL `numeric` (base-10000 digit groups) as decimal text.
fn numeric_text(n: diesel::pg::data_types::PgNumeric) -> String {
    use diesel::pg::data_types::PgNumeric;
    let (neg, weight, scale, digits) = match n {
        PgNumeric::Positive { weight, scale, digits } => (false, weight, scale, digits),
        PgNumeric::Negative { weight, scale, digits } => (true, weight, scale, digits),
        PgNumeric::NaN => return "NaN".to_owned(),
    };
    let group = |i: i64| if i >= 0 { digits.get(i as usize).copied().unwrap_or(0) } else { 0 };
    let mut int = String::new();
    for i in 0..=i64::from(weight) {
        let d = group(i);
        if int.is_empty() { int.push_str(&d.to_string()) } else { int.push_str(&format!("{d:04}")) }
    }
    let int = if int.is_empty() || int.chars().all(|c| c == '0') { "0".to_owned() } else { int };
    let mut frac = String::new();
    let mut k = 1i64;
    while frac.len() < usize::from(scale) {
        frac.push_str(&format!("{:04}", group(i64::from(weight) + k)));
        k += 1;
    }
    frac.truncate(usize::from(scale));
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
}

impl diesel::deserialize::QueryableByName<Pg> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Pg>) -> deserialize::Result<Self> {
        build_row::<Pg, _>(row, |name, raw| {
            let oid = raw.get_oid().get();
            Ok(match oid {
                16 => Value::Bool(<bool as FromSql<st::Bool, Pg>>::from_sql(raw)?),
                21 => Value::Int(i64::from(<i16 as FromSql<st::SmallInt, Pg>>::from_sql(raw)?)),
                23 => Value::Int(i64::from(<i32 as FromSql<st::Integer, Pg>>::from_sql(raw)?)),
                20 => Value::Int(<i64 as FromSql<st::BigInt, Pg>>::from_sql(raw)?),
                700 => Value::Float(f64::from(<f32 as FromSql<st::Float, Pg>>::from_sql(raw)?)),
                701 => Value::Float(<f64 as FromSql<st::Double, Pg>>::from_sql(raw)?),
                1700 => Value::Decimal(numeric_text(FromSql::<st::Numeric, Pg>::from_sql(raw)?)),
                25 | 1043 | 1042 | 19 | 114 => Value::Text(<String as FromSql<st::Text, Pg>>::from_sql(raw)?),
                3802 => Value::Text(
                    String::from_utf8_lossy(raw.as_bytes().get(1..).unwrap_or_default()).into_owned(),
                ),
                17 => Value::Bytes(<Vec<u8> as FromSql<st::Binary, Pg>>::from_sql(raw)?),
                2950 => Value::Uuid(uuid::Uuid::from_slice(raw.as_bytes()).map_err(|e| decode_err(name, e))?),
                1082 => Value::Date(<NaiveDate as FromSql<st::Date, Pg>>::from_sql(raw)?),
                1083 => Value::Time(<NaiveTime as FromSql<st::Time, Pg>>::from_sql(raw)?),
                1114 => Value::DateTime(<NaiveDateTime as FromSql<st::Timestamp, Pg>>::from_sql(raw)?),
                1184 => Value::Timestamp(<DateTime<Utc> as FromSql<st::Timestamptz, Pg>>::from_sql(raw)?),
                other => {
                    return Err(decode_err(
                        name,
                        format!(
                            "PostgreSQL type oid {other} has no keel Value; cast it in SQL (e.g. {name}::text)"
                        ),
                    ));
                }
            })
        })
    }
}

impl diesel::deserialize::QueryableByName<Mysql> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Mysql>) -> deserialize::Result<Self> {
        build_row::<Mysql, _>(row, |name, raw| {
            Ok(match raw.value_type() {
                MysqlType::Tiny
                | MysqlType::Short
                | MysqlType::Long
                | MysqlType::LongLong
                | MysqlType::UnsignedTiny
                | MysqlType::UnsignedShort
                | MysqlType::UnsignedLong => Value::Int(<i64 as FromSql<st::BigInt, Mysql>>::from_sql(raw)?),
                MysqlType::UnsignedLongLong => {
                    let text = String::from_utf8_lossy(raw.as_bytes()).into_owned();
                    match <u64 as FromSql<st::Unsigned<st::BigInt>, Mysql>>::from_sql(raw) {
                        Ok(v) => i64::try_from(v).map(Value::Int).unwrap_or(Value::Decimal(v.to_string())),
                        Err(_) => Value::Decimal(text),
                    }
                }
                MysqlType::Float | MysqlType::Double => {
                    Value::Float(<f64 as FromSql<st::Double, Mysql>>::from_sql(raw)?)
                }
                MysqlType::Numeric => Value::Decimal(String::from_utf8_lossy(raw.as_bytes()).into_owned()),
                MysqlType::String | MysqlType::Enum | MysqlType::Set => {
                    match std::str::from_utf8(raw.as_bytes()) {
                        Ok(t) => Value::Text(t.to_owned()),
                        Err(_) => Value::Bytes(raw.as_bytes().to_vec()),
                    }
                }
                MysqlType::Blob | MysqlType::Bit => Value::Bytes(raw.as_bytes().to_vec()),
                MysqlType::Date => Value::Date(<NaiveDate as FromSql<st::Date, Mysql>>::from_sql(raw)?),
                MysqlType::Time => Value::Time(<NaiveTime as FromSql<st::Time, Mysql>>::from_sql(raw)?),
                MysqlType::DateTime | MysqlType::Timestamp => {
                    Value::DateTime(<NaiveDateTime as FromSql<st::Timestamp, Mysql>>::from_sql(raw)?)
                }
                other => {
                    return Err(decode_err(
                        name,
                        format!("MySQL type {other:?} has no keel Value; cast it in SQL"),
                    ));
                }
            })
        })
    }
}

impl diesel::deserialize::QueryableByName<Sqlite> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Sqlite>) -> deserialize::Result<Self> {
        build_row::<Sqlite, _>(row, |_, raw| {
            Ok(match raw.value_type() {
                None => Value::Null,
                Some(SqliteType::Double | SqliteType::Float) => {
                    Value::Float(<f64 as FromSql<st::Double, Sqlite>>::from_sql(raw)?)
                }
                Some(SqliteType::Text) => Value::Text(<String as FromSql<st::Text, Sqlite>>::from_sql(raw)?),
                Some(SqliteType::Binary) => {
                    Value::Bytes(<Vec<u8> as FromSql<st::Binary, Sqlite>>::from_sql(raw)?)
                }
                Some(_) => Value::Int(<i64 as FromSql<st::BigInt, Sqlite>>::from_sql(raw)?),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> (String, Vec<String>) {
        rewrite(sql, Backend::Postgres).unwrap()
    }

    fn my(sql: &str) -> (String, Vec<String>) {
        rewrite(sql, Backend::Mysql).unwrap()
    }

    #[test]
    fn placeholders_outside_literals_and_comments_only() {
        let sql = "SELECT ':name', 'it''s :x', \"col:x\", x::int, '{1,2}'::int[] -- :x\n\
                   FROM t /* :x */ WHERE a = :a AND b = :b AND c = :a";
        let (text, names) = pg(sql);
        assert_eq!(
            text,
            "SELECT ':name', 'it''s :x', \"col:x\", x::int, '{1,2}'::int[] -- :x\n\
             FROM t /* :x */ WHERE a = $1 AND b = $2 AND c = $1"
        );
        assert_eq!(names, ["a", "b"]);
        let (text, names) = my(sql);
        assert!(text.ends_with("WHERE a = ? AND b = ? AND c = ?"), "{text}");
        assert_eq!(names, ["a", "b", "a"]);
    }

    #[test]
    fn dialect_quirks() {
        // PostgreSQL: nested comments, dollar quotes, E'' escapes.
        let (t, n) = pg("SELECT /* a /* :x */ :y */ $$ :z $$, $q$ :z $q$, E'\\' :w', :v");
        assert_eq!(t, "SELECT /* a /* :x */ :y */ $$ :z $$, $q$ :z $q$, E'\\' :w', $1");
        assert_eq!(n, ["v"]);
        // MySQL: backticks, backslash escapes, # comments.
        let (t, n) = my("SELECT `a:b`, 'x\\' :no', :yes # :c");
        assert_eq!(t, "SELECT `a:b`, 'x\\' :no', ? # :c");
        assert_eq!(n, ["yes"]);
        assert_eq!(
            rewrite("SELECT ?", Backend::Sqlite).unwrap_err().kind(),
            keel_pool::ErrorKind::InvalidInput
        );
        assert_eq!(
            rewrite("SELECT $1", Backend::Postgres).unwrap_err().kind(),
            keel_pool::ErrorKind::InvalidInput
        );
        // A `?` inside a literal is fine.
        assert_eq!(my("SELECT '?', :a").0, "SELECT '?', ?");
    }

    #[test]
    fn missing_and_unused_parameters_are_named() {
        let (_, names) = pg("SELECT :a, :b");
        let err = bind_values(&names, &Params::new().set("a", 1)).unwrap_err();
        assert!(err.to_string().contains("missing parameter :b"), "{err}");
        let err = bind_values(&names, &Params::new().set("a", 1).set("b", 2).set("typo", 3)).unwrap_err();
        assert!(err.to_string().contains(":typo"), "{err}");
        let err = bind_values(&names, &Params::new().set("a", "x\0").set("b", 2)).unwrap_err();
        assert_eq!(err.kind(), keel_pool::ErrorKind::InvalidInput);
        assert_eq!(
            bind_values(&names, &Params::new().set("a", 1).set("b", Option::<i64>::None)).unwrap().len(),
            2
        );
    }

    #[test]
    fn numeric_text_keeps_every_digit() {
        use diesel::pg::data_types::PgNumeric;
        let n = |weight, scale, digits: Vec<i16>| numeric_text(PgNumeric::Positive { weight, scale, digits });
        assert_eq!(n(0, 2, vec![12, 5000]), "12.50");
        assert_eq!(n(1, 0, vec![1, 2345]), "12345");
        assert_eq!(n(-1, 4, vec![5]), "0.0005");
        assert_eq!(n(0, 0, vec![]), "0");
        assert_eq!(numeric_text(PgNumeric::Negative { weight: 0, scale: 1, digits: vec![3, 1000] }), "-3.1");
    }

    #[test]
    fn rows_serialise_in_column_order() {
        let row = Row(vec![
            ("z".into(), Value::Int(1)),
            ("a".into(), Value::Null),
            ("m".into(), Value::Decimal("1.50".into())),
        ]);
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"z":1,"a":null,"m":"1.50"}"#);
    }
}
