//! Custom SQL types that map to a different native type on each backend.

use diesel::query_builder::QueryId;
use diesel::sql_types::SqlType;

/// A 16-byte UUID: `uuid` on PostgreSQL, `BINARY(16)` on MySQL/MariaDB, `BLOB` on SQLite.
///
/// The PostgreSQL OIDs are fixed (2950 / 2951), so no type lookup query is ever run.
#[derive(Debug, Clone, Copy, Default, SqlType, QueryId)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(mysql_type(name = "Blob"))]
#[diesel(sqlite_type(name = "Binary"))]
pub struct Uuid;

/// A UTC instant with microsecond precision: `timestamptz` on PostgreSQL, `DATETIME(6)` on
/// MySQL/MariaDB (the connection's time zone is `+00:00`), fixed-width text on SQLite.
#[derive(Debug, Clone, Copy, Default, SqlType, QueryId)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(mysql_type(name = "DateTime"))]
#[diesel(sqlite_type(name = "Text"))]
pub struct UtcTimestamp;
