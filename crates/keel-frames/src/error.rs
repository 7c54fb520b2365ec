//! [`Error`]: what can go wrong reading a query as batches or writing them.

/// An error of keel-frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool or the database failed (connect, SQL error, lost connection), or a parameter
    /// was missing, unused or malformed (`invalid_input`, naming the parameter). Retrying helps
    /// when [`keel_pool::Error::is_transient`] says so.
    #[error(transparent)]
    Db(#[from] keel_pool::Error),

    /// A result column has a database type keel-frames cannot map to Arrow. Not retryable:
    /// cast the column in the SQL (`col::text`).
    #[error(
        "column {column} has database type {db_type}, which keel-frames cannot read as Arrow; cast it in the SQL (e.g. to text)"
    )]
    UnsupportedType {
        /// The column's name in the result.
        column: String,
        /// The database's name for its type.
        db_type: String,
    },

    /// A value could not be decoded into its column's Arrow type (a decimal with more digits
    /// than its column allows, a malformed wire value). Not retryable.
    #[error("column {column}: {message}")]
    Value {
        /// The column's name in the result.
        column: String,
        /// What was wrong with the value.
        message: String,
    },

    /// Arrow or Parquet refused a batch or a write.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// Parquet refused a batch or a write.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

impl From<keel_repo::Error> for Error {
    fn from(e: keel_repo::Error) -> Self {
        match e {
            keel_repo::Error::Db(e) => Error::Db(e),
            other => Error::Db(keel_pool::Error::invalid_input(other.to_string())),
        }
    }
}

impl Error {
    pub(crate) fn value(column: &str, message: impl std::fmt::Display) -> Self {
        Error::Value { column: column.to_owned(), message: message.to_string() }
    }
}
