//! [`Timestamp`]: a UTC instant with microsecond precision, stored as [`UtcTimestamp`].

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::mysql::{Mysql, MysqlValue};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Datetime, Timestamptz};
use diesel::sqlite::{Sqlite, SqliteValue};

use crate::sql_types::UtcTimestamp;

/// How SQLite stores a [`Timestamp`]: always six fractional digits, so that comparing the text
/// compares the instants (keyset pagination and range queries rely on it).
pub const SQLITE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A UTC instant, microsecond precision on every backend. Wraps `chrono::DateTime<Utc>`
/// (`Deref`, `From` both ways); serialises as RFC 3339.
///
/// ```
/// let t = keel_pool::Timestamp::now();
/// assert_eq!(t.timestamp_subsec_nanos() % 1000, 0);
/// ```
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    AsExpression,
    FromSqlRow,
    serde::Serialize,
    serde::Deserialize,
)]
#[diesel(sql_type = UtcTimestamp)]
#[serde(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time truncated to microseconds, the precision every backend keeps, so a
    /// value written and read back compares equal.
    pub fn now() -> Self {
        Timestamp::from(Utc::now())
    }
}

/// Shorthand for [`Timestamp::now`].
pub fn now() -> Timestamp {
    Timestamp::now()
}

impl From<DateTime<Utc>> for Timestamp {
    /// Truncates to microseconds.
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.trunc_subsecs(6))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(value: Timestamp) -> Self {
        value.0
    }
}

impl std::ops::Deref for Timestamp {
    type Target = DateTime<Utc>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

impl ToSql<UtcTimestamp, Pg> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<UtcTimestamp, Pg> for Timestamp {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<Timestamptz, Pg>>::from_sql(value).map(Timestamp)
    }
}

impl ToSql<UtcTimestamp, Mysql> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        let naive = self.0.naive_utc();
        <NaiveDateTime as ToSql<Datetime, Mysql>>::to_sql(&naive, &mut out.reborrow())
    }
}

impl FromSql<UtcTimestamp, Mysql> for Timestamp {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        let naive = <NaiveDateTime as FromSql<Datetime, Mysql>>::from_sql(value)?;
        Ok(Timestamp(naive.and_utc()))
    }
}

impl ToSql<UtcTimestamp, Sqlite> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format(SQLITE_FORMAT).to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<UtcTimestamp, Sqlite> for Timestamp {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        // `%.f` also accepts text without a fraction (SQLite's own `CURRENT_TIMESTAMP`).
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|naive| Timestamp(naive.and_utc()))
            .map_err(|e| format!("invalid timestamp text {text:?} in SQLite: {e}").into())
    }
}

crate::bulk::copy_as_inner!(Timestamp, DateTime<Utc>);
