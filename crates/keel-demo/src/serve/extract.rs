//! Extractors: the per-request database dependency ([`Db`]) and wrappers around axum's JSON,
//! path and query extractors whose rejections are [`ApiError`]s (400 `invalid_input`, or 413
//! for a body over the limit) in the API's JSON shape instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use keel_repo::Repo;
use keel_schema::Id;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// The database, as a request dependency: FastAPI's `Depends(get_db)`.
///
/// Extracting it checks a connection out of the pool (waiting up to the pool's acquire
/// timeout), so a request fails with 503 and `Retry-After` before its handler runs when the
/// database is unreachable or every connection is busy. The connection then goes straight back
/// to the pool and the handler gets the [`Repo`], whose calls check out their own connection:
/// keel-repo has no functions taking a caller's `&mut Conn`, and holding the extractor's
/// connection while the repository takes a second one would need two connections per request
/// and deadlock a saturated pool. So a request holds at most one pooled connection at any
/// time; the price is one extra (cheap, usually ping-free) checkout per request.
pub(crate) struct Db(pub(crate) Repo);

impl FromRequestParts<AppState> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        drop(state.pool().get().await?);
        Ok(Db(state.repo.clone()))
    }
}

/// A JSON request body (`Content-Type: application/json`, within the body limit).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(JsonBody(value))
    }
}

/// The `{id}` path segment, parsed as an [`Id`] (a UUID).
pub(crate) struct IdPath(pub(crate) Id);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        raw.parse().map(IdPath).map_err(|e: keel_schema::IdParseError| ApiError::invalid(e.to_string()))
    }
}

/// A query string deserialized into `T`.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryParams(value))
    }
}
