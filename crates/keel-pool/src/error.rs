//! [`Error`] and its portable classification, [`ErrorKind`]. Turning a driver's error into an
//! [`Error`] is [`classify`](mod@crate::classify)'s job.

use std::fmt;
use std::time::Duration;

use diesel::result::Error as DieselError;

use crate::url::Backend;

/// What went wrong, the same on every backend. Use [`ErrorKind::as_str`] for the stable
/// snake_case name (HTTP bodies, JSON, metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid configuration (bad URL, unknown scheme, unparsable variable). Not transient.
    Config,
    /// A connection could not be opened (refused, unreachable, authentication failed).
    Connect,
    /// The TLS handshake failed or could not happen: the server's certificate was not trusted
    /// (unknown issuer, wrong host name, expired), or the server has no TLS while the TLS mode
    /// requires it. Not transient: the configuration of the client or the server must change.
    Tls,
    /// No connection became available within the acquire timeout.
    AcquireTimeout,
    /// The pool was closed.
    PoolClosed,
    /// The connection broke while in use (server gone, network cut).
    ConnectionLost,
    /// The server is shutting down or restarting (PostgreSQL 57P01–57P03).
    ServerShutdown,
    /// The server refused a new connection: too many clients.
    TooManyConnections,
    /// The transaction could not be serialized (PostgreSQL 40001); run it again.
    SerializationFailure,
    /// The transaction was chosen as a deadlock victim; run it again.
    Deadlock,
    /// A lock could not be taken in time (PostgreSQL 55P03, MySQL 1205, SQLite busy/locked).
    LockTimeout,
    /// The statement ran longer than the statement timeout and the server stopped it.
    StatementTimeout,
    /// A unique constraint was violated.
    UniqueViolation,
    /// A foreign-key constraint was violated.
    ForeignKeyViolation,
    /// A `CHECK` constraint was violated.
    CheckViolation,
    /// A `NOT NULL` column got a null.
    NotNullViolation,
    /// The server accepts no writes: a write reached a hot standby (PostgreSQL 25006; after a
    /// failover the configured primary may have become one), a MySQL/MariaDB server running
    /// `--read-only` (1290, 1836), or a read-only transaction ([`TxOptions::read_only`]; SQLite
    /// `SQLITE_READONLY`). Transient: the same write succeeds once the service reaches a
    /// writable primary (its address re-pointed, or the configuration changed). Not retried by
    /// [`Pool::transaction`](crate::Pool::transaction): a standby stays one for longer than a
    /// backoff, and in a read-only transaction the write is the transaction's own mistake.
    ///
    /// [`TxOptions::read_only`]: crate::TxOptions::read_only
    ReadOnly,
    /// The row asked for does not exist.
    NotFound,
    /// A value the database cannot store: too long, a NUL byte in text, bad encoding, a
    /// malformed cursor.
    InvalidInput,
    /// The connection was lost while `COMMIT` was in flight: the transaction may or may not
    /// have been committed.
    CommitOutcomeUnknown,
    /// A migration failed.
    Migration,
    /// The caller went away (its future was dropped) and keel stopped the operation: seen only
    /// by work keel finishes on the caller's behalf, never by the caller.
    Cancelled,
    /// Any other database error.
    Database,
}

impl ErrorKind {
    /// The stable snake_case name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::AcquireTimeout => "acquire_timeout",
            ErrorKind::PoolClosed => "pool_closed",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::ServerShutdown => "server_shutdown",
            ErrorKind::TooManyConnections => "too_many_connections",
            ErrorKind::SerializationFailure => "serialization_failure",
            ErrorKind::Deadlock => "deadlock",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::StatementTimeout => "statement_timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::UniqueViolation => "unique_violation",
            ErrorKind::ForeignKeyViolation => "foreign_key_violation",
            ErrorKind::CheckViolation => "check_violation",
            ErrorKind::NotNullViolation => "not_null_violation",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::CommitOutcomeUnknown => "commit_outcome_unknown",
            ErrorKind::Migration => "migration",
            ErrorKind::Database => "database",
        }
    }

    /// True when running the same work again (on a healthy connection, after a pause) can
    /// succeed. `CommitOutcomeUnknown` is not transient: retrying could apply the work twice.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Connect
                | ErrorKind::AcquireTimeout
                | ErrorKind::ConnectionLost
                | ErrorKind::ServerShutdown
                | ErrorKind::TooManyConnections
                | ErrorKind::SerializationFailure
                | ErrorKind::Deadlock
                | ErrorKind::LockTimeout
                | ErrorKind::ReadOnly
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error keel-pool returns. Match on [`Error::kind`] rather than on variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message says which value and what is expected.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// A connection could not be opened. `target` is `host:port` (never a password). The kind
    /// is `Connect`, `Tls` when the TLS handshake failed or the server has no TLS, or
    /// `TooManyConnections` / `ServerShutdown` when the server said so.
    #[error("cannot connect to {backend} at {target}: {reason} — {hint}")]
    Connect {
        /// Portable classification.
        kind: ErrorKind,
        /// The backend being reached.
        backend: Backend,
        /// `host:port`, or the SQLite path.
        target: String,
        /// The driver's error, with any password scrubbed.
        reason: String,
        /// What to check.
        hint: &'static str,
    },

    /// No connection became available in time. Carries the last error seen while opening
    /// connections, if any: that is usually the real cause.
    #[error("no database connection available after {}ms{}", waited.as_millis(), match last_connect_error {
        Some(e) => format!("; last connection attempt failed: {e}"),
        None => " (all connections busy; raise max_size or shorten transactions)".to_owned(),
    })]
    AcquireTimeout {
        /// How long the caller waited.
        waited: Duration,
        /// The most recent connection failure, password scrubbed.
        last_connect_error: Option<String>,
    },

    /// The pool has been closed.
    #[error("the connection pool is closed")]
    PoolClosed,

    /// The operation's caller went away and keel stopped the operation (see
    /// [`Pool::detached`](crate::Pool::detached)).
    #[error("the operation was cancelled: its caller went away")]
    Cancelled,

    /// The database reported an error (or the connection failed mid-query).
    #[error("{backend} {}: {message}", kind.as_str().replace('_', " "))]
    Database {
        /// Portable classification.
        kind: ErrorKind,
        /// The backend that reported it.
        backend: Backend,
        /// The server's message.
        message: String,
        /// The violated constraint (or key) name, when the server gives one.
        constraint: Option<String>,
        /// The underlying diesel error.
        #[source]
        source: Option<DieselError>,
    },

    /// The requested row does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for, e.g. `user 0190…`.
        what: String,
    },

    /// The input cannot be stored or used, found before reaching the database.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong with which value.
        message: String,
    },

    /// The connection was lost while `COMMIT` was in flight: the transaction may or may not have
    /// been applied. Not retried automatically; settle it through an idempotency key.
    #[error("the outcome of COMMIT is unknown (the connection was lost while it was in flight): {source}")]
    CommitOutcomeUnknown {
        /// The error seen at COMMIT.
        source: Box<Error>,
    },

    /// A bulk insert refused one row ([`bulk::insert`](crate::bulk::insert)); nothing was
    /// inserted. `index` is the row's position in the input (0-based); [`Error::kind`] is the
    /// refusal's.
    #[error("bulk row {index} was rejected, nothing was inserted: {source}")]
    BulkRow {
        /// The failing row's position in the input.
        index: usize,
        /// Why it failed.
        source: Box<Error>,
    },

    /// Running or inspecting migrations failed.
    #[error("migration failed on {backend}: {message}")]
    Migration {
        /// The backend being migrated.
        backend: Backend,
        /// The migration error.
        message: String,
    },
}

impl Error {
    /// A configuration error with this message.
    pub fn config(message: String) -> Self {
        Error::Config { message }
    }

    /// An invalid-input error with this message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput { message: message.into() }
    }

    /// A not-found error naming what was looked for.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// What happened, portable across backends.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Connect { kind, .. } => *kind,
            Error::AcquireTimeout { .. } => ErrorKind::AcquireTimeout,
            Error::PoolClosed => ErrorKind::PoolClosed,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Database { kind, .. } => *kind,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Migration { .. } => ErrorKind::Migration,
            Error::CommitOutcomeUnknown { .. } => ErrorKind::CommitOutcomeUnknown,
            Error::BulkRow { source, .. } => source.kind(),
        }
    }

    /// True when running the same work again can succeed; see [`ErrorKind::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// The violated constraint's name, when the database named it.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::Database { constraint, .. } => constraint.as_deref(),
            Error::BulkRow { source, .. } => source.constraint(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_snake_case_and_unique() {
        let all = [
            ErrorKind::Config,
            ErrorKind::Connect,
            ErrorKind::Tls,
            ErrorKind::AcquireTimeout,
            ErrorKind::PoolClosed,
            ErrorKind::ConnectionLost,
            ErrorKind::ServerShutdown,
            ErrorKind::TooManyConnections,
            ErrorKind::SerializationFailure,
            ErrorKind::Deadlock,
            ErrorKind::LockTimeout,
            ErrorKind::StatementTimeout,
            ErrorKind::UniqueViolation,
            ErrorKind::ForeignKeyViolation,
            ErrorKind::CheckViolation,
            ErrorKind::NotNullViolation,
            ErrorKind::ReadOnly,
            ErrorKind::NotFound,
            ErrorKind::InvalidInput,
            ErrorKind::CommitOutcomeUnknown,
            ErrorKind::Migration,
            ErrorKind::Database,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
