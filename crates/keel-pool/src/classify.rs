//! The driver tables: which codes and messages mean which [`ErrorKind`], and where a
//! constraint's name hides in a message. Edit this file when a driver changes its wording.
//!
//! Drivers report the same condition differently: PostgreSQL by SQLSTATE, MySQL/MariaDB by
//! error number, SQLite by result code, and diesel-async keeps only some of them (it turns a
//! PostgreSQL deadlock or any MySQL lock error into `Unknown` with a message). [`classify()`]
//! reads the code where diesel kept it and the server's message where it did not;
//! [`classify_postgres`] does the same for a plain tokio-postgres client.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error::{Error, ErrorKind};
use crate::url::Backend;

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
                DatabaseErrorKind::ReadOnlyTransaction => ErrorKind::ReadOnly,
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
        "25006" => ErrorKind::ReadOnly,
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
            } else if has("in a read-only transaction") {
                ErrorKind::ReadOnly
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
            } else if has("--read-only option") || has("in a read only transaction") {
                // 1290 (a read-only server), 1792 (START TRANSACTION READ ONLY), 1836
                ErrorKind::ReadOnly
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
            } else if has("attempt to write a readonly database") {
                ErrorKind::ReadOnly
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
    fn mysql_key_names_from_messages() {
        let m = "Duplicate entry 'a@x' for key 'users_email_key'";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("users_email_key"));
        let m = "Duplicate entry 'a@x' for key 'users.users_email_key'";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("users_email_key"));
        let m = "Cannot add or update a child row: a foreign key constraint fails (`t`.`jobs`, CONSTRAINT `jobs_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE)";
        assert_eq!(constraint_from_message(Backend::Mysql, m).as_deref(), Some("jobs_user_id_fkey"));
    }
}
