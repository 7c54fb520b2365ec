//! [`Error`]: what the order service's operations return — a classified keel error, or a
//! refusal of the service's own.

use keel_pool::ErrorKind;

/// Every error the order service returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database, pool or input error, classified by keel. Transient ones (serialization
    /// failure, deadlock, lost connection…) were already retried inside the transaction;
    /// [`Error::kind`] says what happened.
    #[error(transparent)]
    Db(#[from] keel_pool::Error),

    /// An order without lines was refused before reaching the database. Not retryable.
    #[error("an order needs at least one line")]
    EmptyOrder,

    /// A text field of the order was refused before reaching the database: an empty customer,
    /// a text longer than its column, or a NUL byte (PostgreSQL cannot store one in text, the
    /// others would), so every backend refuses the same input the same way. Not retryable.
    #[error("{field} refused: {reason}")]
    InvalidField {
        /// Which field (`customer`, `note`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A line was refused before reaching the database (an empty, over-long or NUL-holding SKU,
    /// a quantity that is not positive, a negative price, a total that does not fit in 64 bits). `index` is the line's position
    /// in the request (0-based). Nothing was written; not retryable.
    #[error("order line {index} ({sku:?}) refused: {reason}")]
    InvalidLine {
        /// The line's position in the request.
        index: usize,
        /// Its SKU, as given.
        sku: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The portable classification of a database error; `None` for the service's own refusals.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Db(e) => Some(e.kind()),
            Error::EmptyOrder | Error::InvalidField { .. } | Error::InvalidLine { .. } => None,
        }
    }
}

/// Lets [`Pool::transaction`](keel_pool::Pool::transaction) retry the keel errors inside and
/// never the refusals.
impl keel_pool::TxError for Error {
    fn as_keel_error(&self) -> Option<&keel_pool::Error> {
        match self {
            Error::Db(e) => Some(e),
            _ => None,
        }
    }
}
