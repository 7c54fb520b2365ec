//! [`Error`] and its portable classification, [`ErrorKind`].
//!
//! Drivers report the same condition differently: PostgreSQL by SQLSTATE, MySQL/MariaDB by
//! error number, SQLite by result code, and diesel-async keeps only some of them (it turns a
//! PostgreSQL deadlock or any MySQL lock error into `Unknown` with a message). [`classify`] reads
//! the code where diesel kept it and the server's message where it did not.

use std::fmt;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

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
    /// A business rule refused the operation: the account's balance does not cover the amount.
    /// Not transient; nothing was changed.
    InsufficientFunds,
    /// Any other database error.
    Database,
}

impl ErrorKind {
    /// The stable snake_case name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::AcquireTimeout => "acquire_timeout",
            ErrorKind::PoolClosed => "pool_closed",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::ServerShutdown => "server_shutdown",
            ErrorKind::TooManyConnections => "too_many_connections",
            ErrorKind::SerializationFailure => "serialization_failure",
            ErrorKind::Deadlock => "deadlock",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::StatementTimeout => "statement_timeout",
            ErrorKind::UniqueViolation => "unique_violation",
            ErrorKind::ForeignKeyViolation => "foreign_key_violation",
            ErrorKind::CheckViolation => "check_violation",
            ErrorKind::NotNullViolation => "not_null_violation",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::CommitOutcomeUnknown => "commit_outcome_unknown",
            ErrorKind::Migration => "migration",
            ErrorKind::InsufficientFunds => "insufficient_funds",
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
    /// is `Connect`, or `TooManyConnections` / `ServerShutdown` when the server said so.
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
            Error::Database { kind, .. } => *kind,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Migration { .. } => ErrorKind::Migration,
            Error::CommitOutcomeUnknown { .. } => ErrorKind::CommitOutcomeUnknown,
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
            _ => None,
        }
    }
}

/// Turns a diesel error from `backend` into a classified [`Error`].
pub fn classify(backend: Backend, err: DieselError) -> Error {
    let (kind, message, constraint) = match &err {
        DieselError::NotFound => return Error::not_found("row"),
        DieselError::DatabaseError(db_kind, info) => {
            let message = info.message().to_owned();
            let kind = match db_kind {
                DatabaseErrorKind::UniqueViolation => ErrorKind::UniqueViolation,
                DatabaseErrorKind::ForeignKeyViolation => ErrorKind::ForeignKeyViolation,
                DatabaseErrorKind::CheckViolation => ErrorKind::CheckViolation,
                DatabaseErrorKind::NotNullViolation => ErrorKind::NotNullViolation,
                DatabaseErrorKind::SerializationFailure => ErrorKind::SerializationFailure,
                DatabaseErrorKind::ClosedConnection => ErrorKind::ConnectionLost,
                DatabaseErrorKind::UnableToSendCommand => {
                    classify_message(backend, &message).unwrap_or(ErrorKind::ConnectionLost)
                }
                _ => classify_message(backend, &message).unwrap_or(ErrorKind::Database),
            };
            let constraint = info
                .constraint_name()
                .map(str::to_owned)
                .or_else(|| constraint_from_message(backend, &message));
            (kind, message, constraint)
        }
        DieselError::BrokenTransactionManager => {
            (ErrorKind::ConnectionLost, "the connection's transaction state is broken".to_owned(), None)
        }
        DieselError::SerializationError(e) => (ErrorKind::InvalidInput, e.to_string(), None),
        DieselError::DeserializationError(e) => (ErrorKind::Database, e.to_string(), None),
        other => {
            let message = other.to_string();
            (classify_message(backend, &message).unwrap_or(ErrorKind::Database), message, None)
        }
    };
    Error::Database { kind, backend, message, constraint, source: Some(err) }
}

/// Turns an error from a plain tokio-postgres client (see
/// [`Pool::postgres_client`](crate::Pool::postgres_client)) into a classified [`Error`], by its
/// SQLSTATE when the server sent one.
pub fn classify_postgres(err: &tokio_postgres::Error) -> Error {
    let backend = Backend::Postgres;
    let Some(db) = err.as_db_error() else {
        let message = crate::connect::error_chain(err);
        let kind = classify_message(backend, &message).unwrap_or(if err.is_closed() {
            ErrorKind::ConnectionLost
        } else {
            ErrorKind::Database
        });
        return Error::Database { kind, backend, message, constraint: None, source: None };
    };
    let code = db.code().code();
    let kind = match code {
        "23505" => ErrorKind::UniqueViolation,
        "23503" => ErrorKind::ForeignKeyViolation,
        "23514" => ErrorKind::CheckViolation,
        "23502" => ErrorKind::NotNullViolation,
        "40001" => ErrorKind::SerializationFailure,
        "40P01" => ErrorKind::Deadlock,
        "55P03" => ErrorKind::LockTimeout,
        "57014" => ErrorKind::StatementTimeout,
        "53300" => ErrorKind::TooManyConnections,
        c if c.starts_with("57P") => ErrorKind::ServerShutdown,
        c if c.starts_with("22") => ErrorKind::InvalidInput,
        _ => classify_message(backend, db.message()).unwrap_or(ErrorKind::Database),
    };
    Error::Database {
        kind,
        backend,
        message: db.message().to_owned(),
        constraint: db.constraint().map(str::to_owned),
        source: None,
    }
}

/// Classifies by the server's message, for the errors whose codes diesel-async drops.
pub(crate) fn classify_message(backend: Backend, message: &str) -> Option<ErrorKind> {
    let m = message.to_ascii_lowercase();
    let has = |needle: &str| m.contains(needle);
    let kind = match backend {
        Backend::Postgres => {
            if has("deadlock detected") {
                ErrorKind::Deadlock
            } else if has("could not serialize access") {
                ErrorKind::SerializationFailure
            } else if has("statement timeout") || has("canceling statement due to user request") {
                ErrorKind::StatementTimeout
            } else if has("lock timeout") || has("could not obtain lock") {
                ErrorKind::LockTimeout
            } else if has("terminating connection due to administrator command")
                || has("the database system is shutting down")
                || has("the database system is starting up")
                || has("terminating connection due to crash")
                || has("cannot connect now")
            {
                ErrorKind::ServerShutdown
            } else if has("too many clients")
                || has("too many connections")
                || has("remaining connection slots are reserved")
            {
                ErrorKind::TooManyConnections
            } else if has("value too long")
                || has("invalid byte sequence")
                || has("invalid input syntax")
                || has("out of range")
            {
                ErrorKind::InvalidInput
            } else if has("connection closed") || has("connection reset") || has("broken pipe") {
                ErrorKind::ConnectionLost
            } else {
                return None;
            }
        }
        Backend::Mysql => {
            if has("deadlock found") {
                ErrorKind::Deadlock
            } else if has("lock wait timeout exceeded") {
                ErrorKind::LockTimeout
            } else if has("max_statement_time")
                || has("maximum statement execution time exceeded")
                || has("query execution was interrupted")
            {
                ErrorKind::StatementTimeout
            } else if has("too many connections") || has("max_user_connections") {
                ErrorKind::TooManyConnections
            } else if has("server shutdown in progress") {
                ErrorKind::ServerShutdown
            } else if has("data too long")
                || has("incorrect string value")
                || has("out of range value")
                || has("incorrect integer value")
            {
                ErrorKind::InvalidInput
            } else if has("constraint") && has("failed") {
                ErrorKind::CheckViolation
            } else if has("server has gone away")
                || has("connection was killed")
                || has("input/output error")
                || has("connection to the server is closed")
                || has("lost connection")
                || has("connection reset")
                || has("broken pipe")
                || has("unexpected eof")
                || has("connection closed")
            {
                ErrorKind::ConnectionLost
            } else {
                return None;
            }
        }
        Backend::Sqlite => {
            if has("database is locked") || has("database table is locked") || has("database is busy") {
                ErrorKind::LockTimeout
            } else if has("constraint failed") && has("check") {
                ErrorKind::CheckViolation
            } else {
                return None;
            }
        }
    };
    Some(kind)
}

/// Pulls the key or constraint name out of a message, for backends that do not report it
/// separately: MySQL `Duplicate entry 'x' for key 'users_email_key'`, SQLite
/// `UNIQUE constraint failed: users.email`.
fn constraint_from_message(backend: Backend, message: &str) -> Option<String> {
    match backend {
        Backend::Mysql => {
            if let Some(rest) = message.split("for key '").nth(1) {
                let key = rest.split('\'').next()?;
                // MySQL 8 says `table.key`, MariaDB just `key`.
                return Some(key.rsplit('.').next().unwrap_or(key).to_owned());
            }
            // `... a foreign key constraint fails (`db`.`jobs`, CONSTRAINT `jobs_user_id_fkey` ...`
            // and `CONSTRAINT `accounts_balance_cents_check` failed for ...`
            let rest = message.split("CONSTRAINT `").nth(1)?;
            Some(rest.split('`').next()?.to_owned())
        }
        Backend::Sqlite => message.split("constraint failed: ").nth(1).map(|s| s.trim().to_owned()),
        Backend::Postgres => None,
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
            ErrorKind::NotFound,
            ErrorKind::InvalidInput,
            ErrorKind::CommitOutcomeUnknown,
            ErrorKind::Migration,
            ErrorKind::InsufficientFunds,
            ErrorKind::Database,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn mysql_key_names_from_messages() {
        let m = "Duplicate entry 'a@x' for key 'users_email_key'";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("users_email_key"));
        let m = "Duplicate entry 'a@x' for key 'users.users_email_key'";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("users_email_key"));
        let m = "Cannot add or update a child row: a foreign key constraint fails (`t`.`jobs`, CONSTRAINT `jobs_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE)";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("jobs_user_id_fkey"));
    }
}
