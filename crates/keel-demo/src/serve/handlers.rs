//! The route handlers.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_pool::ErrorKind;
use keel_repo::{Page, UserFilter, UserPatch};
use keel_schema::{Account, Id, Job, NewJob, NewUser, Transfer, User};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{Db, IdPath, JsonBody, QueryParams};

/// Result of a handler.
type ApiResult<T> = Result<T, ApiError>;

/// Rows a listing returns when the client does not say.
const DEFAULT_PAGE_SIZE: i64 = 50;

/// Longest `GET /debug/sleep` may sleep.
const MAX_DEBUG_SLEEP_MS: u64 = 60_000;

/// `GET /health`: checkout plus one round trip. 200 with the backend, server version and
/// latency; 503 with `Retry-After` on any failure.
pub(crate) async fn health(State(state): State<AppState>) -> ApiResult<Response> {
    match state.pool().health().await {
        Ok(h) => {
            let body = serde_json::json!({
                "status": "ok",
                "backend": h.backend.as_str(),
                "server_version": h.server_version,
                "latency_ms": h.latency.as_secs_f64() * 1000.0,
            });
            Ok(axum::Json(body).into_response())
        }
        Err(e) => Err(ApiError::from(e).with_status(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = super::metrics::render(
        &state.pool().stats(),
        state.pool().routing_stats().as_ref(),
        state.repo.cache().map(keel_cache::Cache::stats).as_ref(),
        &state.http,
    );
    ([(header::CONTENT_TYPE, HeaderValue::from_static(super::metrics::CONTENT_TYPE))], text).into_response()
}

/// Query string of `GET /users`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListUsers {
    /// Names containing this text (case-insensitive); empty means no filter.
    search: Option<String>,
    /// The previous page's `next_cursor`; empty means the first page.
    cursor: Option<String>,
    /// Page size: default 50, at most 1000 (larger values are capped).
    limit: Option<i64>,
}

/// `GET /users?search=&cursor=&limit=`: one keyset page.
pub(crate) async fn list_users(
    Db(repo): Db,
    QueryParams(q): QueryParams<ListUsers>,
) -> ApiResult<axum::Json<Page<User>>> {
    let mut filter = UserFilter::new();
    if let Some(text) = q.search.filter(|s| !s.is_empty()) {
        filter = filter.name_contains(text);
    }
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let page = repo.page_users(&filter, cursor.as_deref(), q.limit.unwrap_or(DEFAULT_PAGE_SIZE)).await?;
    Ok(axum::Json(page))
}

/// Body of `POST /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    name: String,
    email: String,
}

/// `POST /users`: 201 with the stored user and its `Location`.
pub(crate) async fn create_user(Db(repo): Db, JsonBody(body): JsonBody<CreateUser>) -> ApiResult<Response> {
    let user = repo.create_user(&NewUser::new(body.name, body.email)).await?;
    Ok(created(Some(&format!("/users/{}", user.id)), &user))
}

/// `GET /users/{id}`.
pub(crate) async fn get_user(Db(repo): Db, IdPath(id): IdPath) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(repo.get_user(id).await?))
}

/// Body of `PATCH /users/{id}`: absent (or null) fields stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchUser {
    name: Option<String>,
    email: Option<String>,
}

/// `PATCH /users/{id}`: the updated user.
pub(crate) async fn update_user(
    Db(repo): Db,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchUser>,
) -> ApiResult<axum::Json<User>> {
    let mut patch = UserPatch::new();
    if let Some(name) = body.name {
        patch = patch.name(name);
    }
    if let Some(email) = body.email {
        patch = patch.email(email);
    }
    Ok(axum::Json(repo.update_user(id, &patch).await?))
}

/// `DELETE /users/{id}`: 204 (the user's jobs and accounts go too).
pub(crate) async fn delete_user(Db(repo): Db, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    repo.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A list response.
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    items: Vec<T>,
}

/// `GET /users/{id}/jobs`: the user's jobs, oldest first; 404 for an unknown user (one
/// `LEFT JOIN` round trip).
pub(crate) async fn user_jobs(Db(repo): Db, IdPath(id): IdPath) -> ApiResult<axum::Json<Items<Job>>> {
    let (_user, jobs) = repo.user_with_jobs(id).await?;
    Ok(axum::Json(Items { items: jobs }))
}

/// Body of `POST /users/{id}/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJob {
    title: String,
    salary_cents: i64,
}

/// `POST /users/{id}/jobs`: 201 with the stored job; 404 when the user does not exist.
pub(crate) async fn create_job(
    Db(repo): Db,
    IdPath(user_id): IdPath,
    JsonBody(body): JsonBody<CreateJob>,
) -> ApiResult<Response> {
    let job = match repo.create_job(&NewJob::new(user_id, body.title, body.salary_cents)).await {
        Ok(job) => job,
        // `jobs.user_id` is the table's only foreign key: the user is not there.
        Err(e) if e.kind() == Some(ErrorKind::ForeignKeyViolation) => {
            return Err(ApiError::new(ErrorKind::NotFound, format!("not found: user {user_id}")));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(created(None, &job))
}

/// `GET /accounts/{id}`.
pub(crate) async fn get_account(Db(repo): Db, IdPath(id): IdPath) -> ApiResult<axum::Json<Account>> {
    Ok(axum::Json(repo.get_account(id).await?))
}

/// Body of `POST /transfers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTransfer {
    from_account: Id,
    to_account: Id,
    amount_cents: i64,
}

/// Response of `POST /transfers`: the ledger row plus whether this call applied it.
#[derive(Debug, Serialize)]
struct TransferResponse {
    #[serde(flatten)]
    transfer: Transfer,
    applied_now: bool,
}

/// `POST /transfers` with an `Idempotency-Key` header: 201 when the money moved now, 200 with
/// the earlier ledger row when the key had already been applied.
pub(crate) async fn create_transfer(
    Db(repo): Db,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateTransfer>,
) -> ApiResult<Response> {
    let key = match headers.get("idempotency-key") {
        None => return Err(ApiError::invalid("the Idempotency-Key header is required")),
        Some(v) => v
            .to_str()
            .map_err(|_| ApiError::invalid("the Idempotency-Key header must be visible ASCII text"))?,
    };
    let outcome = repo.transfer(body.from_account, body.to_account, body.amount_cents, key).await?;
    let status = if outcome.applied_now { StatusCode::CREATED } else { StatusCode::OK };
    let body = TransferResponse { transfer: outcome.transfer, applied_now: outcome.applied_now };
    Ok((status, axum::Json(body)).into_response())
}

/// Query string of `GET /debug/sleep`.
#[derive(Debug, Deserialize)]
pub(crate) struct Sleep {
    ms: u64,
}

/// `GET /debug/sleep?ms=` (only with `KEEL_DEMO_TEST_ROUTES=1`): holds a pooled connection for
/// `ms` milliseconds (at most a minute), then makes one round trip on the pool, so a request
/// in flight during shutdown proves the pool stays open until it is done.
pub(crate) async fn debug_sleep(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<Sleep>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let ms = q.ms.min(MAX_DEBUG_SLEEP_MS);
    let conn = state.pool().get().await?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    drop(conn);
    let version = state.pool().server_version().await?;
    Ok(axum::Json(serde_json::json!({ "slept_ms": ms, "server_version": version })))
}

#[derive(diesel::QueryableByName)]
struct Slept {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `GET /debug/db-sleep?ms=` (only with `KEEL_DEMO_TEST_ROUTES=1`): one slow autocommit read
/// that sleeps on the server (`pg_sleep`, `SLEEP`) for `ms` milliseconds (at most a minute), run
/// like the repository's reads (pipelined on a shared session on PostgreSQL, detached on MySQL).
/// The timeout and disconnect tests use it to prove the request timeout stops the statement on
/// the server. SQLite has no server-side sleep: 400.
pub(crate) async fn debug_db_sleep(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<Sleep>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let secs = q.ms.min(MAX_DEBUG_SLEEP_MS) as f64 / 1000.0;
    let sql = match state.pool().backend() {
        keel_pool::Backend::Postgres => format!("SELECT CAST(1 AS BIGINT) AS n FROM pg_sleep({secs})"),
        keel_pool::Backend::Mysql => format!("SELECT CAST(SLEEP({secs}) AS SIGNED) AS n"),
        _ => return Err(ApiError::invalid("SQLite has no server-side sleep")),
    };
    let pool = state.pool().clone();
    let slept = state
        .pool()
        .detached(async move {
            keel_pool::with_read!(&pool, |c| diesel_async::RunQueryDsl::get_result::<Slept>(
                diesel::sql_query(&sql),
                c
            )
            .await)
        })
        .await?;
    Ok(axum::Json(serde_json::json!({ "slept_ms": q.ms, "result": slept.n })))
}

/// Fallback for unknown paths: 404 `not_found`.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such route")
}

/// Fallback for a known path with another method: 405 `invalid_input`.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::invalid("this method is not allowed on this route").with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// 201 with `value` as JSON and, when the new resource has its own URL, a `Location` header.
fn created<T: Serialize>(location: Option<&str>, value: &T) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(value)).into_response();
    if let Some(Ok(v)) = location.map(HeaderValue::from_str) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `?format=` of `GET /export/jobs`.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportQuery {
    format: Option<String>,
}

/// `GET /export/jobs?format=csv|parquet|arrow|jsonl`: every job, streamed as the file is
/// written (`arrow` is the IPC stream format, which needs no footer); the query stops if the
/// client goes away.
pub(crate) async fn export_jobs(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ExportQuery>,
) -> Response {
    let name = q.format.unwrap_or_else(|| "csv".to_owned());
    let format = match name.as_str() {
        "arrow" => Some(keel_frames::Format::ArrowStream),
        other => keel_frames::Format::parse(other),
    };
    let Some(format) = format else {
        return (StatusCode::BAD_REQUEST, format!("unknown format {name:?}: csv, parquet, arrow or jsonl\n"))
            .into_response();
    };
    let sql = "SELECT id, user_id, title, salary_cents, created_at FROM jobs";
    let options = keel_frames::Options::new();
    match keel_frames::query(state.pool(), sql, &keel_repo::raw::Params::new(), &options).await {
        Ok(batches) => {
            let body = axum::body::Body::from_stream(keel_frames::write::chunks(batches, format));
            let disposition = format!("attachment; filename=\"jobs.{}\"", format.extension());
            let mut res = body.into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            res
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("export failed: {e}\n")).into_response(),
    }
}
