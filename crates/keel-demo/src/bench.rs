//! The benchmark's baselines, written plainly: the same queries as keel's repository on
//! diesel-async + bb8 with no keel layers (bb8's defaults, which ping on every checkout, and
//! without that ping), and on PostgreSQL raw tokio-postgres with prepared statements and
//! binary COPY. Hidden subcommands of `keel-demo`, driven by `cargo xtask bench`; they print
//! the same JSON as `keel-demo load --json`, so keel and the raw stacks are measured by one
//! harness in one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diesel::prelude::*;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection as _};
use keel_pool::{Backend, Config};
use keel_repo::{BatchMethod, BatchOptions, Repo};
use keel_schema::schema::{accounts, jobs, transfers, users};
use keel_schema::{Id, Job, NewTransfer, NewUser, User};
use rand::Rng;
use serde::Serialize;

use crate::load::{Report, Workload};

/// A raw stack to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// diesel-async + bb8 with bb8's defaults (a ping query on every checkout).
    Diesel,
    /// diesel-async + bb8 without the ping on checkout.
    DieselNoPing,
    /// tokio-postgres, prepared statements, one client per pool slot shared (pipelined) by
    /// the tasks above that count. PostgreSQL only.
    TokioPostgres,
}

/// Options of `keel-demo bench-raw`.
#[derive(Debug, Clone, clap::Args)]
pub struct RawArgs {
    /// The stack.
    #[arg(long, value_enum)]
    pub stack: Stack,
    /// The workload and its timing, as for `load`.
    #[command(flatten)]
    pub load: crate::load::LoadArgs,
}

/// Options of `keel-demo bench-bulk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// keel-multirow, keel-copy, diesel-multirow, tokio-postgres-copy.
    #[arg(long)]
    pub method: String,
    /// Users to insert in one transaction.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
}

/// What one bulk insert measured.
#[derive(Debug, Clone, Serialize)]
pub struct BulkReport {
    /// The method.
    pub method: String,
    /// Backend name.
    pub backend: &'static str,
    /// Rows inserted.
    pub rows: usize,
    /// Seconds for the whole call.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
}

type PgPool = bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncPgConnection>>;
type MyPool = bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncMysqlConnection>>;
type LitePool = bb8::Pool<AsyncDieselConnectionManager<keel_pool::SqliteConnection>>;

#[derive(Clone)]
enum RawPool {
    Pg(PgPool),
    My(MyPool),
    Lite(LitePool),
}

/// Runs one diesel body on a checked-out raw connection of whichever backend.
macro_rules! with_raw {
    ($pool:expr, |$c:ident| $body:expr) => {
        match $pool {
            RawPool::Pg(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut diesel_async::AsyncPgConnection = &mut conn;
                $body
            }
            RawPool::My(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut diesel_async::AsyncMysqlConnection = &mut conn;
                $body
            }
            RawPool::Lite(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut keel_pool::SqliteConnection = &mut conn;
                $body
            }
        }
    };
}

async fn raw_pool(config: &Config, size: u32, ping: bool) -> Result<RawPool> {
    let url = config.url().expose_secret().to_owned();
    fn builder<M: bb8::ManageConnection>(size: u32, ping: bool) -> bb8::Builder<M> {
        bb8::Pool::builder().max_size(size).test_on_check_out(ping)
    }
    Ok(match config.backend() {
        Backend::Postgres => {
            RawPool::Pg(builder(size, ping).build(AsyncDieselConnectionManager::new(url)).await?)
        }
        Backend::Mysql => {
            RawPool::My(builder(size, ping).build(AsyncDieselConnectionManager::new(url)).await?)
        }
        Backend::Sqlite => {
            let path = match config.url().sqlite_target() {
                Some(keel_pool::SqliteTarget::File(p)) => p.clone(),
                _ => bail!("the SQLite baseline needs a file database"),
            };
            let mut manager_config = diesel_async::pooled_connection::ManagerConfig::default();
            manager_config.custom_setup = Box::new(|url| {
                let url = url.to_owned();
                Box::pin(async move {
                    let mut c = keel_pool::SqliteConnection::establish(&url).await?;
                    c.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(c)
                })
            });
            RawPool::Lite(
                builder(size, ping)
                    .build(AsyncDieselConnectionManager::new_with_config(path, manager_config))
                    .await?,
            )
        }
    })
}

/// Outcome of one raw operation: `Ok(true)` right, `Ok(false)` wrong, `Err` failed.
type Op = Result<bool>;

async fn diesel_op(pool: &RawPool, workload: Workload, id: Id, other: Id) -> Op {
    match workload {
        Workload::PointSelect => with_raw!(pool, |c| {
            let u: User = users::table.find(id).select(User::as_select()).first(c).await?;
            Ok(u.id == id)
        }),
        Workload::Join => with_raw!(pool, |c| {
            let rows: Vec<(User, Option<Job>)> = users::table
                .left_join(jobs::table)
                .filter(users::id.eq(id))
                .order((jobs::created_at, jobs::id))
                .select((User::as_select(), Option::<Job>::as_select()))
                .load(c)
                .await?;
            Ok(!rows.is_empty()
                && rows.iter().all(|(u, j)| u.id == id && j.as_ref().is_none_or(|j| j.user_id == id)))
        }),
        Workload::Insert => {
            let new = NewUser::new("Load Insert", format!("raw.{}@example.com", Id::new()));
            let new = &new;
            with_raw!(pool, |c| {
                let u: User = c
                    .transaction::<_, diesel::result::Error, _>(async |c| {
                        diesel::insert_into(users::table).values(new).execute(c).await?;
                        users::table.find(new.id).select(User::as_select()).first(c).await
                    })
                    .await?;
                Ok(u.id == new.id)
            })
        }
        Workload::Transfer => {
            let amount: i64 = rand::rng().random_range(1..=100);
            let row = NewTransfer {
                id: Id::new(),
                from_account: id,
                to_account: other,
                amount_cents: amount,
                idempotency_key: Id::new().to_string(),
                created_at: keel_schema::now(),
            };
            let row = &row;
            let (first, second, d1, d2) = if id.as_bytes() < other.as_bytes() {
                (id, other, -amount, amount)
            } else {
                (other, id, amount, -amount)
            };
            with_raw!(pool, |c| {
                let applied = c
                    .transaction::<_, diesel::result::Error, _>(async |c| {
                        let seen: i64 = transfers::table
                            .filter(transfers::idempotency_key.eq(&row.idempotency_key))
                            .count()
                            .get_result(c)
                            .await?;
                        if seen > 0 {
                            return Ok(false);
                        }
                        for (acct, delta) in [(first, d1), (second, d2)] {
                            let n = diesel::update(
                                accounts::table
                                    .filter(accounts::id.eq(acct))
                                    .filter(accounts::balance_cents.ge(-delta)),
                            )
                            .set(accounts::balance_cents.eq(accounts::balance_cents + delta))
                            .execute(c)
                            .await?;
                            if n != 1 {
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                        }
                        diesel::insert_into(transfers::table).values(row).execute(c).await?;
                        Ok(true)
                    })
                    .await;
                match applied {
                    Ok(ok) => Ok(ok),
                    Err(diesel::result::Error::RollbackTransaction) => {
                        Err(anyhow::anyhow!("insufficient_funds"))
                    }
                    Err(e) => Err(e.into()),
                }
            })
        }
    }
}

const PG_POINT: &str = "SELECT id, name, email, created_at FROM users WHERE id = $1";
const PG_JOIN: &str = "SELECT u.id, j.user_id FROM users u LEFT JOIN jobs j ON j.user_id = u.id \
                       WHERE u.id = $1 ORDER BY j.created_at, j.id";

const PG_INSERT_USER: &str = "INSERT INTO users (id, name, email, created_at) VALUES ($1, $2, $3, $4)";
const PG_SEEN: &str = "SELECT count(*) FROM transfers WHERE idempotency_key = $1";
const PG_UPDATE: &str = "UPDATE accounts SET balance_cents = balance_cents + $1::bigint \
                         WHERE id = $2 AND balance_cents >= -$1::bigint";
const PG_INSERT_TRANSFER: &str = "INSERT INTO transfers (id, from_account, to_account, amount_cents, \
                                  idempotency_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Statements prepared once per session, as a tokio-postgres service would.
struct Prepared {
    point: tokio_postgres::Statement,
    join: tokio_postgres::Statement,
    insert_user: tokio_postgres::Statement,
    seen: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
    insert_transfer: tokio_postgres::Statement,
}

impl Prepared {
    async fn on(c: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Prepared {
            point: c.prepare(PG_POINT).await?,
            join: c.prepare(PG_JOIN).await?,
            insert_user: c.prepare(PG_INSERT_USER).await?,
            seen: c.prepare(PG_SEEN).await?,
            update: c.prepare(PG_UPDATE).await?,
            insert_transfer: c.prepare(PG_INSERT_TRANSFER).await?,
        })
    }
}

struct PgClient {
    client: tokio::sync::Mutex<(tokio_postgres::Client, Prepared)>,
    shared: (tokio_postgres::Client, Prepared),
}

async fn pg_clients(config: &Config, n: usize) -> Result<Vec<Arc<PgClient>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // Two sessions per slot: one shared by reads (pipelined), one locked by transactions.
        let connect = || async {
            let (client, conn) =
                tokio_postgres::connect(config.url().expose_secret(), tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(client)
        };
        let (a, b) = (connect().await?, connect().await?);
        let (pa, pb) = (Prepared::on(&a).await?, Prepared::on(&b).await?);
        out.push(Arc::new(PgClient { client: tokio::sync::Mutex::new((a, pa)), shared: (b, pb) }));
    }
    Ok(out)
}

async fn pg_op(c: &PgClient, workload: Workload, id: Id, other: Id) -> Op {
    match workload {
        Workload::PointSelect => {
            let (client, p) = &c.shared;
            let row = client.query_one(&p.point, &[&id.0]).await?;
            Ok(row.get::<_, uuid::Uuid>(0) == id.0)
        }
        Workload::Join => {
            let (client, p) = &c.shared;
            let rows = client.query(&p.join, &[&id.0]).await?;
            Ok(!rows.is_empty()
                && rows.iter().all(|r| {
                    r.get::<_, uuid::Uuid>(0) == id.0
                        && r.get::<_, Option<uuid::Uuid>>(1).is_none_or(|u| u == id.0)
                }))
        }
        Workload::Insert => {
            let mut guard = c.client.lock().await;
            let (client, p) = &mut *guard;
            let tx = client.transaction().await?;
            let new = NewUser::new("Load Insert", format!("tp.{}@example.com", Id::new()));
            tokio_postgres::Transaction::execute(
                &tx,
                &p.insert_user,
                &[&new.id.0, &new.name, &new.email, &new.created_at.0],
            )
            .await?;
            let row = tx.query_one(&p.point, &[&new.id.0]).await?;
            tx.commit().await?;
            Ok(row.get::<_, uuid::Uuid>(0) == new.id.0)
        }
        Workload::Transfer => {
            let amount: i64 = rand::rng().random_range(1..=100);
            let key = Id::new().to_string();
            let (first, second, d1, d2) = if id.as_bytes() < other.as_bytes() {
                (id, other, -amount, amount)
            } else {
                (other, id, amount, -amount)
            };
            let mut guard = c.client.lock().await;
            let (client, p) = &mut *guard;
            let tx = client.transaction().await?;
            if tx.query_one(&p.seen, &[&key]).await?.get::<_, i64>(0) > 0 {
                return Ok(false);
            }
            for (acct, delta) in [(first, d1), (second, d2)] {
                if tokio_postgres::Transaction::execute(&tx, &p.update, &[&delta, &acct.0]).await? != 1 {
                    tx.rollback().await?;
                    bail!("insufficient_funds");
                }
            }
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&Id::new().0, &id.0, &other.0, &amount, &key, &keel_schema::now().0];
            tokio_postgres::Transaction::execute(&tx, &p.insert_transfer, &values).await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}

/// Runs a workload on a raw stack with the same harness rules as `keel-demo load`.
pub async fn run_raw(config: Config, args: &RawArgs) -> Result<Report> {
    let load = &args.load;
    let size = load.pool_size.unwrap_or(16);
    let backend = config.backend();
    if args.stack == Stack::TokioPostgres && backend != Backend::Postgres {
        bail!("tokio-postgres is a PostgreSQL baseline");
    }
    // Ids come through keel (not measured).
    let keel = keel_pool::Pool::connect(config.clone().max_size(2)).await?;
    let ids = crate::load::sample_ids(&keel, load.workload == Workload::Transfer).await?;
    let balance_before = match load.workload {
        Workload::Transfer => Some(Repo::new(keel.clone()).total_balance().await?),
        _ => None,
    };
    if ids.len() < 2 {
        bail!("no data: seed first");
    }
    let ids = Arc::new(ids);
    enum Target {
        Diesel(RawPool),
        Pg(Vec<Arc<PgClient>>),
    }
    let target = Arc::new(match args.stack {
        Stack::Diesel => Target::Diesel(raw_pool(&config, size, true).await?),
        Stack::DieselNoPing => Target::Diesel(raw_pool(&config, size, false).await?),
        Stack::TokioPostgres => Target::Pg(pg_clients(&config, size as usize).await?),
    });
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(load.warmup.max(0.0));
    let stop = measure_from + Duration::from_secs_f64(load.duration);
    let timeout = load.client_timeout_ms.map(Duration::from_millis);
    let mut tasks = Vec::new();
    for task in 0..load.concurrency {
        let (target, ids, workload) = (target.clone(), ids.clone(), load.workload);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut wrong, mut timed_out) = (0u64, 0u64);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let t0 = Instant::now();
                if t0 >= stop {
                    break;
                }
                let (id, other) = {
                    let mut rng = rand::rng();
                    let a = ids[rng.random_range(0..ids.len())];
                    let mut b = ids[rng.random_range(0..ids.len())];
                    while b == a {
                        b = ids[rng.random_range(0..ids.len())];
                    }
                    (a, b)
                };
                let op = async {
                    match &*target {
                        Target::Diesel(pool) => diesel_op(pool, workload, id, other).await,
                        Target::Pg(clients) => {
                            pg_op(&clients[task % clients.len()], workload, id, other).await
                        }
                    }
                };
                let outcome = match timeout {
                    Some(t) => tokio::time::timeout(t, op).await.ok(),
                    None => Some(op.await),
                };
                if t0 < measure_from {
                    continue;
                }
                match outcome {
                    None => timed_out += 1,
                    Some(Ok(true)) => lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Some(Ok(false)) => wrong += 1,
                    Some(Err(e)) => {
                        let kind = if e.to_string().contains("insufficient_funds") {
                            "insufficient_funds"
                        } else {
                            "database"
                        };
                        *errors.entry(kind.to_owned()).or_default() += 1;
                    }
                }
            }
            (lat, wrong, timed_out, errors)
        }));
    }
    let mut lat = Vec::new();
    let (mut wrong, mut timed_out) = (0, 0);
    let mut errors = BTreeMap::new();
    for t in tasks {
        let (l, w, to, e) = t.await.context("a task panicked")?;
        lat.extend(l);
        wrong += w;
        timed_out += to;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let balance_after = match load.workload {
        Workload::Transfer => Some(Repo::new(keel.clone()).total_balance().await?),
        _ => None,
    };
    Ok(crate::load::report(load, backend, lat, errors, 0, timed_out, wrong, balance_before, balance_after))
}

/// Plain diesel-async: 5,000-row INSERTs in one transaction.
macro_rules! multirow {
    ($c:expr, $rows:expr) => {
        $c.transaction::<_, diesel::result::Error, _>(async |c| {
            let mut n = 0;
            for chunk in $rows.chunks(5_000) {
                n += diesel::insert_into(users::table).values(chunk).execute(c).await?;
            }
            Ok(n)
        })
        .await?
    };
}

/// Inserts `rows` fresh users in one transaction by `method` and times it.
pub async fn bulk(config: Config, args: &BulkArgs) -> Result<BulkReport> {
    let tag = &Id::new().to_string()[24..];
    let rows: Vec<NewUser> = (0..args.rows)
        .map(|i| NewUser::new(format!("Bulk User {i}"), format!("bulk{i}.{tag}@example.com")))
        .collect();
    let backend = config.backend();
    let keel = keel_pool::Pool::connect(config.clone().max_size(2)).await?;
    let started;
    let n = match args.method.as_str() {
        "keel-multirow" | "keel-copy" => {
            let method = if args.method == "keel-copy" { BatchMethod::Copy } else { BatchMethod::MultiRow };
            let repo = Repo::new(keel.clone());
            started = Instant::now();
            repo.insert_users_with(&rows, &BatchOptions::new().method(method)).await?
        }
        "diesel-multirow" => {
            let pool = raw_pool(&config, 1, false).await?;
            started = Instant::now();
            let rows = &rows;
            match &pool {
                RawPool::Lite(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let owned = rows.clone();
                    c.spawn_blocking(move |c| {
                        diesel::Connection::transaction(c, |c| {
                            let mut n = 0;
                            for chunk in owned.chunks(5_000) {
                                n += diesel::RunQueryDsl::execute(
                                    diesel::insert_into(users::table).values(chunk),
                                    c,
                                )?;
                            }
                            Ok(n)
                        })
                    })
                    .await?
                }
                RawPool::Pg(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    multirow!(&mut *c, rows)
                }
                RawPool::My(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    multirow!(&mut *c, rows)
                }
            }
        }
        "tokio-postgres-copy" => {
            use tokio_postgres::binary_copy::BinaryCopyInWriter;
            use tokio_postgres::types::Type;
            let (mut client, conn) =
                tokio_postgres::connect(config.url().expose_secret(), tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            started = Instant::now();
            let tx = client.transaction().await?;
            let sink =
                tx.copy_in("COPY users (id, name, email, created_at) FROM STDIN (FORMAT binary)").await?;
            let mut w = std::pin::pin!(BinaryCopyInWriter::new(
                sink,
                &[Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::TIMESTAMPTZ]
            ));
            for r in &rows {
                w.as_mut().write(&[&r.id.0, &r.name, &r.email, &r.created_at.0]).await?;
            }
            let n = w.finish().await?;
            tx.commit().await?;
            n as usize
        }
        other => bail!("unknown bulk method {other:?}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    if n != args.rows {
        bail!("inserted {n} rows, expected {}", args.rows);
    }
    Ok(BulkReport {
        method: args.method.clone(),
        backend: backend.as_str(),
        rows: n,
        seconds,
        rows_per_s: n as f64 / seconds,
    })
}

/// Options of `keel-demo bench-stream`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Make sure the table holds at least this many users first (inserted in batches).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
}

/// What streaming measured.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Backend name.
    pub backend: &'static str,
    /// Rows streamed.
    pub rows: u64,
    /// Seconds to stream them.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
    /// Resident memory when streaming started, KiB (VmRSS).
    pub rss_before_kib: u64,
    /// Peak resident memory of the process, KiB (VmHWM), read after streaming.
    pub peak_rss_kib: u64,
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Tops the users table up to `rows`, then streams every user and reports memory.
pub async fn stream(config: Config, args: &StreamArgs) -> Result<StreamReport> {
    use futures_util::TryStreamExt as _;
    let backend = config.backend();
    let pool = keel_pool::Pool::connect(config).await?;
    let repo = Repo::new(pool.clone());
    let have = repo.table_counts().await?.users as u64;
    if have < args.rows {
        // Insert in a child process so this one's peak memory is the stream's alone.
        let exe = std::env::current_exe().context("finding keel-demo")?;
        let status = std::process::Command::new(exe)
            .arg("--database-url")
            .arg(pool.config().url().expose_secret())
            .args([
                "seed",
                "--users",
                &(args.rows - have).to_string(),
                "--jobs-per-user",
                "0",
                "--batch",
                "50000",
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("topping up users failed");
        }
    }
    let rss_before_kib = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let mut n = 0u64;
    let mut users = std::pin::pin!(repo.stream_users(keel_repo::UserFilter::new()));
    while let Some(user) = users.try_next().await? {
        std::hint::black_box(&user);
        n += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(StreamReport {
        backend: backend.as_str(),
        rows: n,
        seconds,
        rows_per_s: n as f64 / seconds,
        rss_before_kib,
        peak_rss_kib: proc_status_kib("VmHWM:"),
    })
}
