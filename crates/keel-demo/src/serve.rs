//! `keel-demo serve`: the HTTP API over the repository, with axum.
//!
//! One [`Pool`] per process; each request that touches the database checks a pooled connection
//! out through the [`Db`](extract::Db) extractor (the FastAPI `Depends(get_db)` of the seeds).
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | a round trip to the database; 503 with `Retry-After` when it fails |
//! | `GET /metrics` | Prometheus text: pool, queries, latency histogram, retries, cache (`keel_cache_*`), HTTP requests |
//! | `GET /users?search=&cursor=&limit=` | one keyset page: `{ "items": [...], "next_cursor": ... }` |
//! | `POST /users` | `{ "name", "email" }` → 201 with the stored user |
//! | `GET`, `PATCH`, `DELETE /users/{id}` | read; partial update `{ "name"?, "email"? }`; 204 |
//! | `GET /users/{id}/jobs` | `{ "items": [...] }`, 404 for an unknown user |
//! | `POST /users/{id}/jobs` | `{ "title", "salary_cents" }` → 201 |
//! | `GET /accounts/{id}` | the account |
//! | `POST /transfers` | `{ "from_account", "to_account", "amount_cents" }` + `Idempotency-Key`: 201 when applied now, 200 when replayed |
//!
//! With `--redis-url` (or `REDIS_URL`) the point reads (`GET /users/{id}`, `/users/{id}/jobs`,
//! `/accounts/{id}`) go through keel-cache and every write invalidates after its commit.
//!
//! Every error is `{ "error": { "kind": …, "message": … } }`, the kind being
//! [`ErrorKind::as_str`](keel_pool::ErrorKind::as_str); see [`error`] for the status mapping.
//! Bodies are limited (`--max-body-bytes`, 413), every request has a timeout
//! (`--request-timeout-secs`, 504). SIGINT/SIGTERM stop accepting connections, let in-flight
//! requests finish for up to `--shutdown-timeout-secs`, close the pool and return `Ok` (exit 0).
//!
//! Startup is fail-fast: if the database cannot be reached (or migrated) when the server
//! starts, `run` returns the connection error, naming host and port, and the process exits
//! non-zero; that is almost always a wrong URL or credentials, which retrying would hide.
//! Once running, outages are survived: requests get 503 with `Retry-After` while the database
//! is away and succeed again when it returns (the pool opens new connections on demand).
//!
//! With `KEEL_DEMO_TEST_ROUTES=1` in the environment (or [`Settings::test_routes`]),
//! `GET /debug/sleep?ms=` holds a pooled connection for `ms` milliseconds, then answers 200:
//! the shutdown and timeout tests use it as a slow in-flight request. `GET /debug/db-sleep?ms=`
//! runs one read that sleeps on the server: the cancellation tests use it.
//!
//! In process, without a port — what the route tests do:
//!
//! ```no_run
//! use tower::ServiceExt as _;
//!
//! # async fn demo(pool: keel_pool::Pool) {
//! let state = keel_demo::serve::AppState::new(keel_repo::Repo::new(pool), keel_demo::serve::Settings::default());
//! let app = keel_demo::serve::router(state);
//! let request = axum::http::Request::get("/health").body(axum::body::Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```

mod error;
mod extract;
mod handlers;
mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use keel_pool::{Config, Pool};
use keel_repo::Repo;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// Environment variable that enables the hidden test routes (`GET /debug/sleep`).
pub const TEST_ROUTES_ENV: &str = "KEEL_DEMO_TEST_ROUTES";

/// The request timeout when none is given, in seconds (`--request-timeout-secs`, [`Settings`]).
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;

/// The body limit when none is given, in bytes (`--max-body-bytes`, [`Settings`]).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Options of `keel-demo serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,

    /// Longest a request may take before it is stopped with 504.
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,

    /// After SIGINT/SIGTERM, how long in-flight requests may take before the server exits anyway.
    #[arg(long, default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Do not apply pending migrations at startup.
    #[arg(long)]
    pub skip_migrations: bool,

    /// Read users, jobs and accounts through this Redis (`redis://host:port`); writes invalidate
    /// after commit. A Redis that is down at startup or later only costs the cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

impl ServeArgs {
    /// The router settings these options ask for; the test routes follow
    /// [`TEST_ROUTES_ENV`].
    pub fn settings(&self) -> Settings {
        Settings {
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            max_body_bytes: self.max_body_bytes,
            test_routes: std::env::var(TEST_ROUTES_ENV).is_ok_and(|v| v == "1"),
        }
    }
}

/// How the router treats requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Longest a request may take before it is stopped with 504 (default 30 s).
    pub request_timeout: Duration,
    /// Largest request body accepted; larger ones get 413 (default 64 KiB).
    pub max_body_bytes: usize,
    /// Whether `GET /debug/sleep` is routed (default no).
    pub test_routes: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            test_routes: false,
        }
    }
}

impl Settings {
    /// These settings with another request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// These settings with another body limit.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// These settings with the test routes on or off.
    pub fn test_routes(mut self, on: bool) -> Self {
        self.test_routes = on;
        self
    }
}

/// What every handler shares: the repository (and through it the pool), the HTTP counters and
/// the router settings.
#[derive(Clone)]
pub struct AppState {
    repo: Repo,
    http: Arc<metrics::HttpMetrics>,
    settings: Settings,
}

impl AppState {
    /// The state of a fresh application over `repo`, its HTTP counters at zero.
    pub fn new(repo: Repo, settings: Settings) -> Self {
        AppState { repo, http: Arc::default(), settings }
    }

    pub(crate) fn pool(&self) -> &Pool {
        self.repo.pool()
    }
}

/// The server-side statement timeout `serve` runs with: the configured one
/// (`KEEL_STATEMENT_TIMEOUT_MS`), else just above the request timeout — a statement the request
/// no longer waits for is stopped by the server even if the client-side cancel never arrives.
pub fn with_statement_timeout(config: Config, request_timeout: Duration) -> Config {
    match config.statement_timeout_limit() {
        Some(_) => config,
        None => config.statement_timeout(Some(request_timeout + Duration::from_secs(1))),
    }
}

/// Serves the HTTP API until `shutdown` resolves (with the name of what stopped it, e.g.
/// [`shutdown_signal`]'s `"SIGTERM"`), then drains and closes; see the module docs.
pub async fn run(
    config: Config,
    args: ServeArgs,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> Result<()> {
    let url = config.url().to_string();
    let config = with_statement_timeout(config, args.settings().request_timeout);
    let pool = Pool::connect(config).await.with_context(|| format!("opening {url}"))?;
    if !args.skip_migrations {
        for version in pool.migrate(&keel_schema::MIGRATIONS).await.context("running migrations")? {
            tracing::info!(%version, "applied migration");
        }
    }
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let repo = match &args.redis_url {
        Some(redis) => Repo::new(pool.clone()).with_cache(crate::connect_cache(redis).await?),
        None => Repo::new(pool.clone()),
    };
    let app = router(AppState::new(repo, args.settings()));

    // The one line on stdout (tests and scripts read the port from it); logs go to stderr.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")
            .and_then(|()| out.flush())
            .context("writing to stdout")?;
    }
    tracing::info!(%addr, database = %url, "serving");

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let name = shutdown.await;
        tracing::info!(signal = name, "shutting down: no new connections, finishing in-flight requests");
        let _ = signalled_tx.send(());
    });
    let deadline = Duration::from_secs(args.shutdown_timeout_secs);
    let forced = async move {
        match signalled_rx.await {
            Ok(()) => tokio::time::sleep(deadline).await,
            // The server ended on its own; the other branch reports how.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        () = forced => tracing::warn!(
            deadline_secs = args.shutdown_timeout_secs,
            "requests still in flight at the shutdown deadline; exiting anyway"
        ),
    }
    // In-flight requests are done (or abandoned): give the pool a short grace to get its
    // connections back, then close them.
    let still_out = pool.close(Duration::from_secs(1)).await;
    if still_out > 0 {
        tracing::warn!(connections = still_out, "closed the pool with connections still checked out");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The application: routes, then (inner to outer) the body limit, the timeout/panic guard, the
/// HTTP metrics and request tracing. `Router::layer` wraps each route, so the metrics layer
/// sees the matched route template.
pub fn router(state: AppState) -> Router {
    use handlers as h;
    let mut routes = Router::new()
        .route("/health", get(h::health))
        .route("/metrics", get(h::metrics))
        .route("/users", get(h::list_users).post(h::create_user))
        .route("/users/{id}", get(h::get_user).patch(h::update_user).delete(h::delete_user))
        .route("/users/{id}/jobs", get(h::user_jobs).post(h::create_job))
        .route("/accounts/{id}", get(h::get_account))
        .route("/transfers", axum::routing::post(h::create_transfer))
        .route("/export/jobs", get(h::export_jobs));
    if state.settings.test_routes {
        routes = routes
            .route("/debug/sleep", get(h::debug_sleep))
            .route("/debug/db-sleep", get(h::debug_db_sleep));
    }
    let timeout = state.settings.request_timeout;
    routes
        .method_not_allowed_fallback(h::method_not_allowed)
        .fallback(h::no_route)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), causality))
        .layer(axum::middleware::from_fn_with_state(timeout, error::guard))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.http), metrics::track))
        // 5xx are logged once, with the keel error, where they are made (`error.rs`).
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .with_state(state)
}

/// The request header a client sends back so its reads see its earlier writes, and the
/// response header that carries the token after a write.
pub const CAUSALITY_HEADER: &str = "keel-causality";

/// Read-your-writes across requests: the request runs in a [`keel_pool::Session`] that starts
/// from the `Keel-Causality` request header (when present); after a request that wrote, the
/// response carries the session's token in the same header. With no replicas configured the
/// session costs nothing and no header is sent. A malformed header answers 400.
async fn causality(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let pool = state.pool().clone();
    if pool.config().replica_urls().is_empty() {
        return next.run(request).await;
    }
    let since = match request.headers().get(CAUSALITY_HEADER).map(|v| v.to_str().map(str::parse)) {
        None => None,
        Some(Ok(Ok(token))) => Some(token),
        Some(_) => {
            let err = keel_pool::Error::invalid_input(
                "the Keel-Causality header is not a causality token (expected e.g. 16/B374D848)",
            );
            return error::ApiError::from(err).into_response();
        }
    };
    let session = keel_pool::Session::new(since);
    let mut response = session.run(next.run(request)).await;
    match session.settle(&pool).await {
        Ok(Some(token)) if Some(token) != since => {
            if let Ok(value) = axum::http::HeaderValue::from_str(&token.to_string()) {
                response.headers_mut().insert(CAUSALITY_HEADER, value);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not take the causality token after a write"),
    }
    response
}

/// Resolves with the name of the first SIGINT or SIGTERM received. The handlers are
/// registered when this is called, not when the future is first polled.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Resolves on Ctrl-C (the only signal outside Unix).
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    })
}
