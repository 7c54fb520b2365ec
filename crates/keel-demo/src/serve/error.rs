//! [`ApiError`]: every error response, `{ "error": { "kind": …, "message": … } }`, and the
//! mapping from [`ErrorKind`] (and the repository's own refusals) to an HTTP status. The
//! `kind` string is [`ErrorKind::as_str`] or [`keel_repo::Error::as_str`], never spelled here.
//!
//! | kind | status |
//! |---|---|
//! | `invalid_input`, `not_null_violation` (and malformed JSON, bad ids, bad query strings) | 400 |
//! | `not_found` (and unknown routes) | 404 |
//! | `unique_violation` | 409 |
//! | `foreign_key_violation` | 409 (the referenced row is gone or still referenced); creating a job for an unknown user is reported as 404 `not_found` by its handler |
//! | `check_violation`, `insufficient_funds` | 422 |
//! | transient kinds (`connect`, `acquire_timeout`, `connection_lost`, `server_shutdown`, `too_many_connections`, `serialization_failure`, `deadlock`, `lock_timeout`), `pool_closed`, `commit_outcome_unknown` | 503 + `Retry-After: 1` |
//! | `statement_timeout` (also the request timeout) | 504 |
//! | anything else | 500, generic message |
//!
//! Messages are written for the client: our own validation and not-found texts are passed on,
//! while database errors get a fixed sentence per kind, so no SQL, server message, host name or
//! password reaches a response. Server errors (5xx) are logged to stderr with the full,
//! password-free keel error.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use keel_pool::ErrorKind;

/// An error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    /// The `kind` string of the body, from an `as_str()` of keel's error types.
    kind: &'static str,
    message: String,
}

/// The status for a kind (503 responses also carry `Retry-After`).
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::NotNullViolation => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => StatusCode::CONFLICT,
        ErrorKind::CheckViolation => StatusCode::UNPROCESSABLE_ENTITY,
        // Tls is not transient (the setup must change), but to a client the database is just as unavailable.
        ErrorKind::PoolClosed | ErrorKind::CommitOutcomeUnknown | ErrorKind::Tls => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::StatementTimeout => StatusCode::GATEWAY_TIMEOUT,
        k if k.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What the client is told about a database-side error of this kind (never the server's text).
fn database_message(kind: ErrorKind, constraint: Option<&str>) -> String {
    let text = match kind {
        ErrorKind::UniqueViolation if constraint.is_some_and(|c| c.contains("email")) => {
            "a user with this email already exists"
        }
        ErrorKind::UniqueViolation => "a value that must be unique is already taken",
        ErrorKind::ForeignKeyViolation => "a referenced row does not exist, or the row is still referenced",
        ErrorKind::CheckViolation => "a value breaks a rule of the database (a check constraint)",
        ErrorKind::NotNullViolation => "a required value is missing",
        ErrorKind::InvalidInput => "a value cannot be stored: too long, out of range or malformed",
        ErrorKind::NotFound => "not found",
        ErrorKind::Connect
        | ErrorKind::Tls
        | ErrorKind::ConnectionLost
        | ErrorKind::ServerShutdown
        | ErrorKind::TooManyConnections => "the database is unavailable right now; retry later",
        ErrorKind::AcquireTimeout => {
            "no database connection became available in time (the database is unreachable or busy); retry later"
        }
        ErrorKind::PoolClosed => "the server is shutting down; retry later",
        ErrorKind::ReadOnly => {
            "the database accepts no writes right now (a failover may be under way); retry later"
        }
        ErrorKind::SerializationFailure | ErrorKind::Deadlock | ErrorKind::LockTimeout => {
            "the request conflicted with concurrent work; retry it"
        }
        ErrorKind::StatementTimeout => "the database stopped a statement that ran too long",
        ErrorKind::CommitOutcomeUnknown => {
            "the connection was lost while committing, so the change may or may not have been \
             applied; check before retrying (a transfer can be retried with the same Idempotency-Key)"
        }
        _ => "internal error; the server log has the details",
    };
    text.to_owned()
}

impl ApiError {
    /// An error of `kind` with the status the kind maps to and this message (shown as is).
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { status: status_of(kind), kind: kind.as_str(), message: message.into() }
    }

    /// 400 `invalid_input`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The same error with another status.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    fn from_json_rejection(rejection: &JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::invalid("the request body is too large").with_status(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let message = match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with `Content-Type: application/json`".to_owned()
            }
            other => other.body_text(),
        };
        Self::invalid(message)
    }
}

impl From<keel_repo::Error> for ApiError {
    fn from(err: keel_repo::Error) -> Self {
        let Some(db) = err.as_db() else {
            // A refusal of the repository's own (not enough money): its text is ours, and
            // the request was understood but cannot be carried out.
            return ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: err.as_str(),
                message: err.to_string(),
            };
        };
        let kind = db.kind();
        let message = match db {
            // Texts keel wrote itself (validation, "not found: user …"): safe and useful.
            keel_pool::Error::InvalidInput { .. } | keel_pool::Error::NotFound { .. } => db.to_string(),
            _ => database_message(kind, db.constraint()),
        };
        let api = ApiError::new(kind, message);
        if api.status.is_server_error() {
            // keel's errors never contain the password (URLs are redacted, driver text scrubbed).
            if kind.is_transient() || api.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(kind = kind.as_str(), error = %err, "request failed: database unavailable");
            } else {
                tracing::error!(kind = kind.as_str(), error = %err, "request failed");
            }
        }
        api
    }
}

impl From<keel_pool::Error> for ApiError {
    fn from(err: keel_pool::Error) -> Self {
        keel_repo::Error::from(err).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::from_json_rejection(&rejection)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "kind": self.kind, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Middleware: stops a request that runs longer than `limit` (504 `statement_timeout`: the
/// handler is dropped, and keel cancels its query on the server), and turns a handler panic
/// into a generic 500 instead of a dropped connection.
pub(crate) async fn guard(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, AssertUnwindSafe(next.run(request)).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(_panic)) => {
            // The panic hook has printed the message to stderr.
            tracing::error!("a request handler panicked");
            ApiError::new(ErrorKind::Database, "internal error; the server log has the details")
                .with_status(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::new(
                ErrorKind::StatementTimeout,
                format!("the request took longer than {} ms and was stopped", limit.as_millis()),
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_kind() {
        for (kind, status) in [
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::UniqueViolation, 409),
            (ErrorKind::ForeignKeyViolation, 409),
            (ErrorKind::CheckViolation, 422),
            (ErrorKind::Connect, 503),
            (ErrorKind::Tls, 503),
            (ErrorKind::AcquireTimeout, 503),
            (ErrorKind::ConnectionLost, 503),
            (ErrorKind::PoolClosed, 503),
            (ErrorKind::CommitOutcomeUnknown, 503),
            (ErrorKind::StatementTimeout, 504),
            (ErrorKind::Database, 500),
            (ErrorKind::Migration, 500),
            (ErrorKind::Config, 500),
        ] {
            assert_eq!(status_of(kind).as_u16(), status, "{kind}");
        }
    }

    #[test]
    fn database_text_never_reaches_the_client() {
        let err = keel_pool::Error::Database {
            kind: ErrorKind::Database,
            backend: keel_pool::Backend::Postgres,
            message: "syntax error at or near \"SELECT\"".to_owned(),
            constraint: None,
            source: None,
        };
        let api = ApiError::from(err);
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!api.message.contains("SELECT"), "{}", api.message);
        assert_eq!(api.kind, "database");
    }

    #[test]
    fn insufficient_funds_is_422_with_its_own_kind() {
        let err = keel_repo::Error::InsufficientFunds {
            account: keel_schema::Id::new(),
            balance_cents: 5,
            amount_cents: 6,
        };
        let api = ApiError::from(err);
        assert_eq!((api.status, api.kind), (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds"));
        assert!(api.message.contains("holds 5 cents"), "{}", api.message);
    }

    #[test]
    fn duplicate_email_is_409() {
        let err = keel_pool::Error::Database {
            kind: ErrorKind::UniqueViolation,
            backend: keel_pool::Backend::Mysql,
            message: "Duplicate entry 'a@x' for key 'users_email_key'".to_owned(),
            constraint: Some("users_email_key".to_owned()),
            source: None,
        };
        let api = ApiError::from(err);
        assert_eq!(api.status, StatusCode::CONFLICT);
        assert_eq!(api.message, "a user with this email already exists");
    }
}
