//! The repository's error: a classified database error, or a domain refusal.

use keel_pool::{ErrorKind, TxError};
use keel_schema::Id;

/// What went wrong in a repository call: a database, pool or input error classified by
/// `keel-pool` ([`Error::kind`]), or a refusal of the repository's own domain
/// ([`Error::InsufficientFunds`], which has no `keel-pool` kind). [`Error::as_str`] names
/// either in snake_case: the string HTTP bodies, JSON and metrics use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database, pool or input error, classified by `keel-pool`. Retrying helps when
    /// [`Error::is_transient`] says so.
    #[error(transparent)]
    Db(#[from] keel_pool::Error),

    /// One row of a batch failed; nothing of the batch was written. `index` is the row's
    /// position in the input slice (0-based).
    #[error("batch row {index} was rejected, nothing was inserted: {source}")]
    BatchRow {
        /// The failing row's position in the input.
        index: usize,
        /// Why it failed.
        source: keel_pool::Error,
    },

    /// The debited account's balance does not cover the amount. Nothing was changed; not
    /// retried.
    #[error(
        "insufficient funds: account {account} holds {balance_cents} cents, the transfer needs {amount_cents}"
    )]
    InsufficientFunds {
        /// The debited account.
        account: Id,
        /// Its balance when the transfer was refused.
        balance_cents: i64,
        /// The amount asked for.
        amount_cents: i64,
    },
}

impl Error {
    /// The portable classification of a database, pool or input error; `None` for a domain
    /// refusal such as [`Error::InsufficientFunds`].
    pub fn kind(&self) -> Option<ErrorKind> {
        self.as_db().map(keel_pool::Error::kind)
    }

    /// The error's name in snake_case: [`ErrorKind::as_str`] of a classified error, or the
    /// refusal's own name (`insufficient_funds`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::InsufficientFunds { .. } => "insufficient_funds",
            Error::Db(e) | Error::BatchRow { source: e, .. } => e.kind().as_str(),
        }
    }

    /// True when running the same call again can succeed (never for a domain refusal).
    pub fn is_transient(&self) -> bool {
        self.kind().is_some_and(ErrorKind::is_transient)
    }

    /// The keel-pool error inside, if any.
    pub fn as_db(&self) -> Option<&keel_pool::Error> {
        match self {
            Error::Db(e) | Error::BatchRow { source: e, .. } => Some(e),
            Error::InsufficientFunds { .. } => None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Db(keel_pool::Error::invalid_input(message))
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::Db(keel_pool::Error::not_found(what))
    }
}

impl TxError for Error {
    fn as_keel_error(&self) -> Option<&keel_pool::Error> {
        self.as_db()
    }
}

/// Result of a repository call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
