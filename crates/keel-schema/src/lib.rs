//! keel's demo domain: the diesel schema of users, jobs, accounts and transfers, and their row
//! structs. This crate does no I/O.
//!
//! One [`table!`](diesel::table) schema serves PostgreSQL, MySQL/MariaDB and SQLite. Two custom
//! SQL types make that possible; they live in `keel-pool` (for anyone's tables) and are
//! re-exported here under the same paths:
//! - [`sql_types::Uuid`] with the Rust type [`Id`]: `uuid` on PostgreSQL, `BINARY(16)` on
//!   MySQL/MariaDB and `BLOB` on SQLite. Ids are UUIDv7, so they sort by creation time and are
//!   generated client-side (MySQL has no `RETURNING`).
//! - [`sql_types::UtcTimestamp`] with the Rust type [`Timestamp`] (a `chrono::DateTime<Utc>`): `timestamptz` on
//!   PostgreSQL, `DATETIME(6)` (UTC) on MySQL/MariaDB and fixed-width text
//!   (`YYYY-MM-DD HH:MM:SS.ffffff`) on SQLite, so that text order is time order. Every backend
//!   keeps microseconds; use [`Timestamp::now`] to get a timestamp that round-trips exactly.
//!
//! Money is integer cents (`i64`), never floating point.
//!
//! Modules:
//! - [`schema`]: the `table!` definitions.
//! - [`models`]: `User`/`NewUser`, `Job`/`NewJob`, `Account`/`NewAccount`, `Transfer`/`NewTransfer`.
//! - `id`, `timestamp`, `sql_types`: re-exported from `keel-pool`.
//! - [`MIGRATIONS`]: the demo tables' migrations (`migrations/{postgres,mysql,sqlite}` in this crate).
//! - [`limits`]: column lengths, so callers can validate before the database does (SQLite does
//!   not enforce `VARCHAR` lengths).

pub mod limits;
pub mod models;
pub mod schema;

pub use keel_pool::{Id, IdParseError, Timestamp, id, now, sql_types, timestamp};
pub use models::*;

/// The demo tables' migrations, one set per backend, embedded from this crate's `migrations/`.
/// Apply them with `pool.migrate(&keel_schema::MIGRATIONS)`.
pub const MIGRATIONS: keel_pool::Migrations = keel_pool::embed_migrations!("migrations");
