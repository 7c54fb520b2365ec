//! A database of each test's own, on every backend.
//!
//! Every test gets a database of its own, so tests run in parallel without seeing each other:
//! - PostgreSQL: `CREATE DATABASE … TEMPLATE keel_tpl_<fingerprint>`, a file copy that takes
//!   milliseconds. The template is migrated once and marked with the migrations' fingerprint;
//!   a template from other migrations is rebuilt (under an advisory lock, since nextest runs
//!   tests in parallel processes).
//! - MySQL/MariaDB: a fresh database with the migrations applied.
//! - SQLite: a temporary file.
//!
//! A database is dropped when its test passes and kept, with its name printed, when it fails.
//!
//! Servers are found as [`servers`](crate::servers) says; a backend whose server is unreachable
//! is skipped, with the reason, unless it is required. Every outcome is recorded in the
//! [`report`](crate::report) file. The helpers that run a test body ([`test_db`], [`run_on`],
//! [`for_each_backend`]) label it with the running test's name ([`current_test`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};
use futures_util::FutureExt as _;
use keel_pool::{Backend, Config, Conn, DatabaseUrl, Error, ErrorKind, Migrations, Pool, with_conn};

use crate::report::{Outcome, record};
use crate::servers::{pooler_url, required_backends, selected, server_url};

/// Prefix of the PostgreSQL templates test databases are copied from; the rest of the name is
/// the migration set's [fingerprint](Migrations::fingerprint), so every set (yours, keel's)
/// has its own template and checkouts on one server with the same set share it.
pub const TEMPLATE_PREFIX: &str = "keel_tpl_";

/// The PostgreSQL template of `migrations`: `keel_tpl_<fingerprint>`.
pub fn template_name(migrations: &Migrations) -> String {
    template_of(&migrations.fingerprint())
}

/// The template name for a fingerprint already computed (hashing the SQL is not free).
fn template_of(fingerprint: &str) -> String {
    format!("{TEMPLATE_PREFIX}{fingerprint}")
}

/// The server URL `backend`'s test databases are created beside.
fn server(backend: Backend) -> Result<DatabaseUrl, TestDbError> {
    DatabaseUrl::parse(&server_url(backend).unwrap_or_default()).map_err(setup_err(backend))
}

/// Prefix of every database (or SQLite file) this module creates.
pub const PREFIX: &str = "keel_t_";

/// Why a test database could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestDbError {
    /// The server could not be reached: the backend is skipped (unless required).
    #[error("{backend} server unreachable: {reason}")]
    Unavailable {
        /// The backend.
        backend: Backend,
        /// The connect error.
        reason: String,
    },
    /// The server was reachable but preparing the database failed: always a test failure.
    #[error("preparing a {0} test database failed: {1}")]
    Setup(Backend, Error),
}

fn setup_err(backend: Backend) -> impl Fn(Error) -> TestDbError {
    move |e| match e.kind() {
        ErrorKind::Connect | ErrorKind::ServerShutdown => {
            TestDbError::Unavailable { backend, reason: e.to_string() }
        }
        _ => TestDbError::Setup(backend, e),
    }
}

/// A database of a test's own, with a pool on it.
pub struct TestDb {
    backend: Backend,
    name: String,
    url: DatabaseUrl,
    admin_url: Option<DatabaseUrl>,
    sqlite_path: Option<PathBuf>,
    pool: Pool,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("backend", &self.backend).field("name", &self.name).finish()
    }
}

fn unique_name(test: &str) -> String {
    let mut tag: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    tag.truncate(28);
    let random = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a UUIDv7 is random; the head is the time, which parallel tests share.
    format!("{PREFIX}{tag}_{}", &random[20..])
}

/// An administrative session on the server at `url`, through a pool of one connection (so it
/// is opened with keel's own settings, TLS included, and errors are classified the keel way).
async fn admin(backend: Backend, url: &DatabaseUrl) -> Result<Conn, TestDbError> {
    let config = Config::new(url.expose_secret()).map_err(setup_err(backend))?.max_size(1);
    let pool = Pool::connect(config).await.map_err(setup_err(backend))?;
    pool.get().await.map_err(setup_err(backend))
}

/// Runs each statement on `conn`, one call per statement.
async fn run_each(backend: Backend, conn: &mut Conn, statements: &[String]) -> Result<(), TestDbError> {
    for sql in statements {
        with_conn!(conn, |c| c.batch_execute(sql).await).map_err(|e| TestDbError::Setup(backend, e))?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Comment {
    #[diesel(sql_type = Nullable<Text>)]
    comment: Option<String>,
}

/// Makes sure the template of `migrations` exists and is complete (migrated, then marked);
/// with `force`, rebuilds it regardless. A template left half-built by a crash is rebuilt.
pub async fn prepare_postgres_template(migrations: &Migrations, force: bool) -> Result<(), TestDbError> {
    let b = Backend::Postgres;
    let fingerprint = migrations.fingerprint();
    let template = template_of(&fingerprint);
    let template = template.as_str();
    let admin_url = server(b)?;
    let mut admin = admin(b, &admin_url).await?;
    // One builder at a time across processes; the lock ends with the session.
    run_each(b, &mut admin, &["SELECT pg_advisory_lock(740213555)".to_owned()]).await?;
    let expected = format!("keel migrations {fingerprint}");
    let current: Option<Comment> = with_conn!(&mut admin, |c| diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(template)
    .get_result(c)
    .await
    .optional())
    .map_err(|e| TestDbError::Setup(b, e))?;
    let up_to_date = current.as_ref().and_then(|c| c.comment.as_deref()) == Some(expected.as_str());
    if up_to_date && !force {
        return Ok(());
    }
    if current.is_some() {
        // One statement per call: PostgreSQL runs a multi-statement string as one transaction,
        // and DROP DATABASE refuses to run inside one.
        run_each(
            b,
            &mut admin,
            &[
                format!("ALTER DATABASE {template} WITH IS_TEMPLATE false"),
                format!("DROP DATABASE {template} WITH (FORCE)"),
            ],
        )
        .await?;
    }
    run_each(b, &mut admin, &[format!("CREATE DATABASE {template}")]).await?;
    let template_url = admin_url.with_database(template).map_err(setup_err(b))?;
    {
        let pool =
            Pool::connect(Config::new(template_url.expose_secret()).map_err(setup_err(b))?.max_size(1))
                .await
                .map_err(setup_err(b))?;
        pool.migrate(migrations).await.map_err(setup_err(b))?;
    }
    // Copying needs the template without sessions: drop any the pool left behind.
    run_each(b, &mut admin, &[
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}' AND pid <> pg_backend_pid()"
        ),
        format!("COMMENT ON DATABASE {template} IS '{expected}'"),
        format!("ALTER DATABASE {template} WITH IS_TEMPLATE true"),
    ])
    .await?;
    Ok(())
}

/// Fingerprints whose template this process has checked.
static TEMPLATES_READY: tokio::sync::Mutex<Vec<String>> = tokio::sync::Mutex::const_new(Vec::new());

impl TestDb {
    /// Creates a database for `test` on `backend`, migrated with `migrations`.
    pub async fn create(
        backend: Backend,
        test: &str,
        migrations: &Migrations,
    ) -> Result<TestDb, TestDbError> {
        Self::create_inner(backend, test, Some(migrations)).await
    }

    /// Creates an empty database (no migrations applied), for tests of migrations themselves.
    pub async fn create_empty(backend: Backend, test: &str) -> Result<TestDb, TestDbError> {
        Self::create_inner(backend, test, None).await
    }

    async fn create_inner(
        backend: Backend,
        test: &str,
        migrations: Option<&Migrations>,
    ) -> Result<TestDb, TestDbError> {
        let name = unique_name(test);
        match backend {
            Backend::Postgres => {
                let admin_url = server(backend)?;
                let mut admin = admin(backend, &admin_url).await?;
                let template = match migrations {
                    Some(m) => {
                        let fingerprint = m.fingerprint();
                        let template = template_of(&fingerprint);
                        let mut ready = TEMPLATES_READY.lock().await;
                        if !ready.contains(&fingerprint) {
                            prepare_postgres_template(m, false).await?;
                            ready.push(fingerprint);
                        }
                        template
                    }
                    None => "template0".to_owned(),
                };
                run_each(backend, &mut admin, &[format!("CREATE DATABASE {name} TEMPLATE {template}")])
                    .await?;
                let reach = match pooler_url(backend) {
                    Some(u) => DatabaseUrl::parse(&u).map_err(setup_err(backend))?,
                    None => admin_url.clone(),
                };
                let url = reach.with_database(&name).map_err(setup_err(backend))?;
                let pool = test_pool(&url).await.map_err(setup_err(backend))?;
                Ok(TestDb { backend, name, url, admin_url: Some(admin_url), sqlite_path: None, pool })
            }
            Backend::Mysql => {
                let admin_url = server(backend)?;
                let mut admin = admin(backend, &admin_url).await?;
                run_each(backend, &mut admin, &[format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")])
                    .await?;
                let url = admin_url.with_database(&name).map_err(setup_err(backend))?;
                let pool = test_pool(&url).await.map_err(setup_err(backend))?;
                let db = TestDb { backend, name, url, admin_url: Some(admin_url), sqlite_path: None, pool };
                db.migrated_if(migrations).await
            }
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display()))
                    .map_err(setup_err(backend))?;
                let pool = test_pool(&url).await.map_err(setup_err(backend))?;
                let db = TestDb { backend, name, url, admin_url: None, sqlite_path: Some(path), pool };
                db.migrated_if(migrations).await
            }
        }
    }

    /// Applies the migrations when asked; drops the database if they fail.
    async fn migrated_if(self, migrations: Option<&Migrations>) -> Result<TestDb, TestDbError> {
        if let Some(m) = migrations
            && let Err(e) = self.pool.migrate(m).await
        {
            let backend = self.backend;
            self.drop_database().await;
            return Err(TestDbError::Setup(backend, e));
        }
        Ok(self)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database name (the file stem for SQLite).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// A pool on this database (max 4 connections).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Where to find the database after a failed test.
    pub fn location(&self) -> String {
        match (&self.sqlite_path, &self.admin_url) {
            (Some(path), _) => path.display().to_string(),
            _ => format!("database {} on {}", self.name, self.url.target()),
        }
    }

    /// Drops the database (closing this pool first). Errors are printed, not returned: a
    /// leftover test database is not worth failing a passed test for.
    pub async fn drop_database(self) {
        let TestDb { backend, name, admin_url, sqlite_path, pool, .. } = self;
        drop(pool);
        let drop_sql = match backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        let result: Result<(), String> = match backend {
            Backend::Postgres | Backend::Mysql => match admin_url {
                Some(url) => match admin(backend, &url).await {
                    Ok(mut admin) => {
                        run_each(backend, &mut admin, &[drop_sql]).await.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                },
                None => Ok(()),
            },
            Backend::Sqlite => {
                if let Some(path) = sqlite_path {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut p = path.clone().into_os_string();
                        p.push(suffix);
                        let _ = std::fs::remove_file(p);
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            eprintln!("keel-test: could not drop {backend} test database {name}: {e}");
        }
    }
}

async fn test_pool(url: &DatabaseUrl) -> Result<Pool, Error> {
    Pool::connect(Config::new(url.expose_secret())?.max_size(4)).await
}

/// The running test's name, as libtest names the thread it runs the test on (`module::test`);
/// `"unnamed"` off a test thread (say, inside a spawned task).
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "unnamed".to_owned(),
    }
}

/// Creates a migrated test database on `backend`, or returns `None` (printing and recording the
/// reason) when its server is unreachable and the backend is not required.
///
/// The database and the outcome are labelled with [`current_test`].
///
/// # Panics
/// When the backend is required but unreachable, or when the server is reachable but the
/// database cannot be prepared.
pub async fn test_db(backend: Backend, migrations: &Migrations) -> Option<TestDb> {
    let test = &current_test();
    if !selected(backend) {
        return None; // not asked for in this run (KEEL_TEST_BACKENDS): nothing to record
    }
    match TestDb::create(backend, test, migrations).await {
        Ok(db) => Some(db),
        Err(TestDbError::Unavailable { reason, .. }) => {
            if required_backends().contains(&backend) {
                record(backend, Outcome::Failed, test, &reason);
                panic!("{backend} is required (KEEL_REQUIRE_BACKENDS) but unavailable: {reason}");
            }
            eprintln!("SKIPPED {test} on {backend}: {reason}");
            record(backend, Outcome::Skipped, test, &reason);
            None
        }
        Err(e) => {
            record(backend, Outcome::Failed, test, &e.to_string());
            panic!("{e}")
        }
    }
}

/// Runs `body` with a test database on `db`, dropping it afterwards when `body` passes and
/// keeping it (printing where it is) when `body` panics; the panic is passed on.
pub async fn run_on<F, Fut>(db: TestDb, body: F)
where
    F: FnOnce(Pool) -> Fut,
    Fut: Future<Output = ()>,
{
    let test = &current_test();
    let backend = db.backend();
    let outcome = AssertUnwindSafe(body(db.pool().clone())).catch_unwind().await;
    match outcome {
        Ok(()) => {
            record(backend, Outcome::Ran, test, "");
            db.drop_database().await;
        }
        Err(panic) => {
            eprintln!("keel-test: {test} failed on {backend}; kept {} for inspection", db.location());
            record(backend, Outcome::Failed, test, "");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs `body` once per backend (PostgreSQL, MySQL/MariaDB, SQLite), each time on a fresh
/// database of its own, migrated with `migrations`. Unreachable servers are skipped as described in the module
/// docs.
pub async fn for_each_backend<F, Fut>(migrations: &Migrations, body: F)
where
    F: Fn(Pool) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in Backend::ALL {
        if let Some(db) = test_db(backend, migrations).await {
            run_on(db, &body).await;
        }
    }
}

/// Lists databases this module created and left behind (failed tests keep theirs).
pub async fn leftover_databases(backend: Backend) -> Result<Vec<String>, TestDbError> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let url = server(backend)?;
    // `_` is a LIKE wildcard: escaped, so the `keel_tpl_` templates do not match `keel_t_%`.
    let pattern = format!("{}%", PREFIX.replace('_', "\\_"));
    let sql = match backend {
        Backend::Postgres => "SELECT datname AS name FROM pg_database WHERE datname LIKE $1",
        Backend::Mysql => {
            "SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name LIKE ?"
        }
        Backend::Sqlite => return Ok(Vec::new()),
    };
    let mut conn = admin(backend, &url).await?;
    let rows: Vec<Name> =
        with_conn!(&mut conn, |c| diesel::sql_query(sql).bind::<Text, _>(&pattern).load(c).await)
            .map_err(|e| TestDbError::Setup(backend, e))?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Counts rows of `table` through `pool` (a test convenience).
pub async fn count_rows(pool: &Pool, table: &str) -> Result<i64, Error> {
    query_count(pool, &format!("SELECT COUNT(*) AS n FROM {table}")).await
}

/// Runs `sql`, a query returning one row with one `BIGINT` column named `n` (a `COUNT(*) AS n`),
/// on a connection from `pool`; the number.
pub async fn query_count(pool: &Pool, sql: &str) -> Result<i64, Error> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = pool.get().await?;
    let row: Count = with_conn!(&mut conn, |c| diesel::sql_query(sql).get_result(c).await)?;
    Ok(row.n)
}
