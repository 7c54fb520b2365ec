//! keel-frames: query results as Arrow record batches, and writers for Parquet, Arrow IPC,
//! CSV and JSON Lines, on every keel backend.
//!
//! What it is for: reading a query — raw SQL with `:name` parameters (the same rules as
//! [`keel_repo::raw`]; [`query`]) or a typed diesel query ([`query_diesel`]) — as a stream of
//! Arrow [`RecordBatch`]es whose schema comes from the result columns' real types, and writing
//! those batches to a file or any `Write` with constant memory. What it is not for: writing to
//! the database.
//!
//! How each backend reads:
//! - PostgreSQL: `COPY (query) TO STDOUT (FORMAT binary)` on its own session, decoded from the
//!   wire straight into Arrow builders (module `postgres`). A typed diesel query keeps its
//!   binds as diesel serialised them, so it runs as a prepared statement instead (COPY takes
//!   no parameters) and its binary rows go through the same decoder (module `typed`).
//! - MySQL/MariaDB: the query as a prepared statement on its own session, row by row (`mysql`).
//! - SQLite: row by row on a pooled connection's blocking thread (`sqlite`).
//!
//! Memory stays bounded by a few batches, whatever the result size: the reader runs ahead of
//! the consumer by at most [`QUEUED_BATCHES`] batches. Dropping [`Batches`] stops the reader and
//! ends its session (on PostgreSQL that stops the server's `COPY`).
//!
//! Types (Arrow type per database type):
//!
//! | Arrow | PostgreSQL | MySQL/MariaDB | SQLite |
//! |---|---|---|---|
//! | Boolean | boolean | TINYINT(1) | — |
//! | Int16/Int32/Int64 | smallint/integer/bigint | TINYINT…INT / BIGINT (INT UNSIGNED: Int64) | INTEGER (Int64) |
//! | UInt64 | — | BIGINT UNSIGNED | — |
//! | Float32/Float64 | real/double precision | FLOAT/DOUBLE | REAL (Float64) |
//! | Utf8 | text, varchar, char, name, json, jsonb (as text) | CHAR, VARCHAR, TEXT, JSON, ENUM, SET | TEXT |
//! | Binary | bytea | VARBINARY, BLOB | BLOB |
//! | FixedSizeBinary(n) | — | BINARY(n) (keel's ids: 16) | — |
//! | FixedSizeBinary(16), extension `arrow.uuid` | uuid | — | — |
//! | Timestamp(µs, "+00:00") | timestamptz | DATETIME, TIMESTAMP (keel stores UTC) | — (text) |
//! | Timestamp(µs) | timestamp | — | — |
//! | Date32 | date | DATE | — |
//! | Time64(µs) | time | — | — |
//! | Decimal128(p, s) | numeric(p,s); plain numeric: [`UNCONSTRAINED_DECIMAL`] | DECIMAL(p,s) | — |
//!
//! UUIDs are `FixedSizeBinary(16)` (16 bytes a value, not 36; Parquet readers see a 16-byte
//! fixed binary, pyarrow the `arrow.uuid` extension). Any other type is an
//! [`Error::UnsupportedType`] naming the column and its database type: cast it in the SQL.
//! Every column is nullable. UTC timestamps carry the zone `+00:00` (an offset, which arrow-rs
//! formats without the chrono-tz database; pyarrow and pandas read it as UTC).
//!
//! ```no_run
//! use futures_util::TryStreamExt as _;
//! use keel_frames::{Format, Options};
//! use keel_repo::raw::Params;
//!
//! # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_frames::Error> {
//! let params = Params::new().set("min", 50_000);
//! let batches = keel_frames::query(&pool, "SELECT * FROM jobs WHERE salary_cents > :min", &params, &Options::new()).await?;
//! let file = std::fs::File::create("jobs.parquet")?;
//! let written = keel_frames::write(batches, Format::Parquet, file).await?;
//! println!("{} rows", written.rows);
//! # Ok(()) }
//! ```
//!
//! Modules: [`write`] (the writers and [`Format`]); the column builders, the three readers and
//! the typed-query front end (`typed`) are private.

mod columns;
mod error;
mod mysql;
mod postgres;
mod sqlite;
mod typed;
pub mod write;

use std::pin::Pin;
use std::task::{Context, Poll};

pub use arrow_array::RecordBatch;
pub use arrow_schema::SchemaRef;
pub use columns::UNCONSTRAINED_DECIMAL;
pub use error::Error;
use futures_util::Stream;
use keel_pool::{Backend, Pool};
use keel_repo::raw::Params;
pub use typed::{DieselQuery, query_diesel};
pub use write::{Format, Written, write};

/// Where a reader sends its batches (or the error that ended it).
pub(crate) type BatchTx = tokio::sync::mpsc::Sender<Result<RecordBatch, Error>>;

/// Rows per batch unless [`Options::batch_rows`] says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 8_192;

/// Batches the reader may run ahead of the consumer.
pub const QUEUED_BATCHES: usize = 2;

/// How a query is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Rows per [`RecordBatch`] (at least 1); default [`DEFAULT_BATCH_ROWS`].
    pub batch_rows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch_rows: DEFAULT_BATCH_ROWS }
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rows per batch (0 is taken as 1).
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }
}

/// A query's result as a stream of [`RecordBatch`]es with a known [`schema`](Batches::schema).
/// Dropping it stops the query.
pub struct Batches {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, Error>>,
}

impl Batches {
    /// The schema every batch has.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for Batches {
    type Item = Result<RecordBatch, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Runs `sql` with `params` and returns its result as batches (see the [crate docs](crate)).
///
/// Fails before any row is read when a parameter is missing, unused or malformed
/// (`invalid_input`, naming it), when the SQL is refused, or with [`Error::UnsupportedType`];
/// errors met later (a value that does not fit its column, a lost connection) end the stream
/// with that error.
pub async fn query(pool: &Pool, sql: &str, params: &Params, options: &Options) -> Result<Batches, Error> {
    let options = Options { batch_rows: options.batch_rows.max(1) };
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
    let schema = match pool.backend() {
        Backend::Postgres => postgres::start(pool, sql, params, &options, tx).await?,
        Backend::Mysql => mysql::start(pool, mysql::raw_statement(sql, params)?, &options, tx).await?,
        Backend::Sqlite => sqlite::start(pool, sqlite::raw_source(sql, params), &options, tx).await?,
    };
    Ok(Batches { schema, rx })
}
