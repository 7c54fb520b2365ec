//! keel-pool: connections, pooling and errors for keel, on PostgreSQL, MySQL/MariaDB and
//! SQLite, chosen at run time from the database URL.
//!
//! What it is for: opening a [`Pool`] from a [`Config`] (a URL plus documented knobs), checking
//! out a [`Conn`] and running one diesel query body on whichever backend it is with
//! [`with_conn!`], running any [`Migrations`] set ([`Pool::migrate`]), and getting errors that
//! say what happened the same way on every backend ([`Error::kind`], [`ErrorKind`]).
//! What it is not for: the schema (`keel-schema`) and typed operations on it (`keel-repo`).
//!
//! Modules (every public one):
//! - [`config`]: [`Config`], the pool's knobs with their defaults and environment variables.
//! - [`tls`]: [`SslMode`], [`TlsConfig`]: TLS on PostgreSQL and MySQL (rustls), from the URL or `Config`.
//! - [`url`]: [`DatabaseUrl`] (never shows a password), [`SqliteTarget`], the [`Backend`] it picks.
//! - [`error`]: [`Error`] and its portable classification, [`ErrorKind`].
//! - [`blocking`]: how SQLite connections run their blocking work, counted so a busy one is never asked.
//! - [`bulk`]: [`bulk::insert`], loading many rows of any [`BulkRow`] table (`COPY` on PostgreSQL).
//! - [`classify`](mod@classify): the driver codes and message tables behind [`classify()`].
//! - [`conn`]: [`Conn`] and the connection types; the [`with_conn!`] and [`with_conn_raw!`] macros.
//! - [`manager`]: the bb8 manager: opens connections, pings stale ones, times queries.
//! - [`migrations`]: [`Migrations`], a migration set per backend as a value, from [`embed_migrations!`].
//! - [`pool`]: the [`Pool`] type (connect, check out, state, health, stats, close); its concerns:
//!   - [`cancel`](pool::cancel): [`Pool::detached`], cancellation that frees the server on every backend.
//!   - [`run`](pool::run): [`Pool::run`], one body on one connection that can be abandoned.
//!   - [`tx`](pool::tx): [`Pool::transaction`], [`TxOptions`], [`Isolation`], [`TxError`].
//!   - [`readers`](pool::readers): [`Reader`], [`with_read!`]: pipelined reads on shared sessions.
//!   - [`replicas`](pool::replicas): read replicas, [`Causality`] tokens and [`Session`]s: read-your-writes.
//!   - [`migrate`](pool::migrate): [`Pool::migrate`], [`MigrationStatus`]: applying a [`Migrations`] set.
//! - [`retry`]: [`RetryPolicy`], backoff with jitter for transient failures.
//! - [`reuse`]: [`Reuse`], keeping write statements prepared.
//! - [`id`], [`timestamp`]: [`Id`] (UUIDv7) and [`Timestamp`] (UTC, microseconds), portable column
//!   types for anyone's tables; [`sql_types`]: their SQL types for `table!`.
//! - [`stats`]: [`PoolStats`] and [`LatencyHistogram`], the pool's numbers.
//!
//! ```no_run
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl;
//! use keel_schema::schema::users;
//!
//! # async fn demo() -> Result<(), keel_pool::Error> {
//! let pool = keel_pool::Pool::connect(keel_pool::Config::new("sqlite://keel.db")?).await?;
//! pool.migrate(&keel_schema::MIGRATIONS).await?;
//! let mut conn = pool.get().await?;
//! let n: i64 = keel_pool::with_conn!(&mut conn, |c| users::table.count().get_result(c).await)?;
//! # Ok(()) }
//! ```

pub mod blocking;
pub mod bulk;
pub mod classify;
pub mod config;
pub mod conn;
mod connect;
pub mod error;
pub mod id;
pub mod manager;
pub mod migrations;
pub mod pool;
pub mod retry;
pub mod reuse;
pub mod sql_types;
pub mod stats;
pub mod timestamp;
pub mod tls;
pub mod url;

pub use bulk::BulkRow;
pub use classify::{classify, classify_postgres};
pub use config::Config;
pub use conn::{Conn, MysqlConnection, PgConnection, SqliteConnection};
pub use error::{Error, ErrorKind};
pub use id::{Id, IdParseError};
pub use keel_derive::{BulkRow, embed_migrations};
pub use migrations::Migrations;
pub use pool::migrate::MigrationStatus;
pub use pool::readers::Reader;
pub use pool::replicas::{Causality, ReplicaStats, RoutingStats, Session};
pub use pool::tx::{Isolation, TxError, TxOptions};
pub use pool::{Health, Pool, PoolState};
pub use retry::RetryPolicy;
pub use reuse::Reuse;
pub use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
pub use stats::{Histogram, LATENCY_BUCKETS_US, LatencyHistogram, PoolStats};
pub use timestamp::{Timestamp, now};
pub use tls::{SslMode, TlsConfig};
pub use url::{Backend, DatabaseUrl, SqliteTarget};
