//! [`Id`]: the portable primary-key type.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::mysql::{Mysql, MysqlValue};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use std::io::Write;

use crate::sql_types::Uuid as SqlUuid;

/// A primary key: a UUIDv7, stored natively on every backend (see [`SqlUuid`]).
///
/// ```
/// let id = keel_pool::Id::new();
/// let parsed: keel_pool::Id = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
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
#[diesel(sql_type = SqlUuid)]
#[serde(transparent)]
pub struct Id(pub uuid::Uuid);

impl Id {
    /// A new UUIDv7: time-ordered, so inserts land at the end of B-tree indexes.
    pub fn new() -> Self {
        Id(uuid::Uuid::now_v7())
    }

    /// The 16 raw bytes, as stored on MySQL and SQLite.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Builds an id from 16 raw bytes; fails when `bytes` is not 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdParseError> {
        uuid::Uuid::from_slice(bytes)
            .map(Id)
            .map_err(|_| IdParseError(format!("{} bytes, expected 16", bytes.len())))
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<uuid::Uuid> for Id {
    fn from(value: uuid::Uuid) -> Self {
        Id(value)
    }
}

/// The text given to [`Id::from_str`] (or the bytes given to [`Id::from_slice`]) is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id (UUID): {0}")]
pub struct IdParseError(String);

impl FromStr for Id {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Id).map_err(|_| {
            let shown: String = s.chars().take(40).collect();
            IdParseError(format!("{shown:?}"))
        })
    }
}

impl ToSql<SqlUuid, Pg> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<SqlUuid, Pg> for Id {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Id::from_slice(value.as_bytes())?)
    }
}

impl ToSql<SqlUuid, Mysql> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<SqlUuid, Mysql> for Id {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        Ok(Id::from_slice(value.as_bytes())?)
    }
}

impl ToSql<SqlUuid, Sqlite> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_bytes().as_slice());
        Ok(IsNull::No)
    }
}

impl FromSql<SqlUuid, Sqlite> for Id {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(Id::from_slice(value.read_blob())?)
    }
}

crate::bulk::copy_as_inner!(Id, uuid::Uuid);
