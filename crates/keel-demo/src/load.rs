//! `keel-demo load`: a load generator over the repository, on seeded data. Every result is
//! checked; operations slower than `--client-timeout-ms` are really cancelled (the future is
//! dropped). A human summary, or one JSON object on stdout with `--json`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Config, Pool, with_conn};
use keel_repo::Repo;
use keel_schema::schema::{accounts, users};
use keel_schema::{Id, NewUser};
use rand::Rng;
use serde::Serialize;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// A user by a random existing id.
    PointSelect,
    /// One user with their jobs (one LEFT JOIN).
    Join,
    /// Single-row user inserts.
    Insert,
    /// The repository's transfer transaction between random accounts.
    Transfer,
    /// A user insert, then reading that user back, each pair in a read-your-writes session
    /// (`keel_pool::Session`) unless `--no-session`. With replicas (`KEEL_REPLICA_URLS`) the
    /// read may go to a replica: a read that misses the row is stale (counted; in a session it
    /// is a wrong result and fails the run).
    WriteRead,
}

impl Workload {
    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::PointSelect => "point-select",
            Workload::Join => "join",
            Workload::Insert => "insert",
            Workload::Transfer => "transfer",
            Workload::WriteRead => "write-read",
        }
    }
}

/// Options of `keel-demo load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// What to run.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Concurrent tasks.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring (not counted).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Drop (cancel) any operation slower than this; counted as timed out.
    #[arg(long)]
    pub client_timeout_ms: Option<u64>,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Pool size (default: the configured max_size).
    #[arg(long)]
    pub pool_size: Option<u32>,
    /// Stop after this many measured operations (or at the end of `--duration`, whichever
    /// comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// write-read: run the pairs outside a read-your-writes session (no causality token), to
    /// show what a replica's lag does to reads.
    #[arg(long)]
    pub no_session: bool,
    /// Read through the Redis cache (point-select and join; writes invalidate after commit).
    #[arg(long)]
    pub cache: bool,
    /// The Redis for `--cache` (default redis://127.0.0.1:6379).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

/// The Redis `--cache` uses when no `--redis-url` / `REDIS_URL` is given.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The cache's side of a `--cache` run, over the whole run (warm-up included).
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    /// Reads answered from Redis (values and cached `not_found`s).
    pub hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
    /// `hits / (hits + misses)`.
    pub hit_ratio: f64,
    /// Fills refused because an invalidation came in after their read.
    pub stale_set_refusals: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Median Redis call latency, µs.
    pub redis_p50_us: u64,
    /// 99th-percentile Redis call latency, µs.
    pub redis_p99_us: u64,
}

impl CacheReport {
    fn from_stats(s: &keel_cache::CacheStats) -> Self {
        let hits = s.hits + s.negative_hits + s.flights_joined;
        let total = hits + s.misses;
        CacheReport {
            hits,
            misses: s.misses,
            hit_ratio: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            stale_set_refusals: s.stale_set_refusals,
            redis_errors: s.redis_errors + s.redis_timeouts,
            redis_p50_us: s.redis_p50_us,
            redis_p99_us: s.redis_p99_us,
        }
    }
}

/// What one run measured; the JSON shape of `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workload name.
    pub workload: &'static str,
    /// Backend name.
    pub backend: &'static str,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Operations completed (successful and checked) in the measured window.
    pub ops: u64,
    /// `ops / duration_s`.
    pub ops_per_s: f64,
    /// Median latency of completed operations, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Failures by `ErrorKind::as_str`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Retries the pool made during the measured window.
    pub retries: u64,
    /// Operations cancelled by `--client-timeout-ms`.
    pub timed_out: u64,
    /// Results that did not match what was asked for.
    pub wrong_results: u64,
    /// Sum of all balances before (transfer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_before: Option<i64>,
    /// Sum of all balances after (transfer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<i64>,
    /// keel's pool: 99th percentile of checkout latency over the whole run, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_p99_us: Option<u64>,
    /// keel's pool after the run: how many connections it handed out at once (all of
    /// `max_size` unless cancellations lost some), each answering a query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_after: Option<u32>,
    /// The cache's numbers (`--cache` runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// write-read: reads that did not find the row just written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_reads: Option<u64>,
    /// write-read: median latency of the read alone (with a token, it includes any wait for
    /// a replica to replay past it), µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_p50_us: Option<u64>,
    /// write-read: 99th percentile of the read alone, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_p99_us: Option<u64>,
    /// With replicas: where the run's reads went (counted over the whole run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// Where a run's reads went, with replicas configured (differences of
/// [`keel_pool::RoutingStats`] over the run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Routing {
    /// Reads the replicas served.
    pub replica_reads: u64,
    /// Reads that failed on a replica and ran again on the primary.
    pub replica_failures: u64,
    /// Reads sent to the primary because no replica was usable.
    pub primary_fallbacks: u64,
    /// Reads that carried a causality token.
    pub token_reads: u64,
    /// Token reads that asked a replica for its position (none was known to be past it).
    pub token_waits: u64,
    /// Token reads served by the primary: no replica caught up within the wait.
    pub token_primary: u64,
}

impl Routing {
    fn of(pool: &Pool) -> Option<Routing> {
        let r = pool.routing_stats()?;
        Some(Routing {
            replica_reads: r.replicas.iter().map(|x| x.reads).sum(),
            replica_failures: r.replicas.iter().map(|x| x.failures).sum(),
            primary_fallbacks: r.primary_fallbacks,
            token_reads: r.token_reads,
            token_waits: r.token_waits,
            token_primary: r.token_primary,
        })
    }

    fn since(self, before: &Routing) -> Routing {
        Routing {
            replica_reads: self.replica_reads - before.replica_reads,
            replica_failures: self.replica_failures - before.replica_failures,
            primary_fallbacks: self.primary_fallbacks - before.primary_fallbacks,
            token_reads: self.token_reads - before.token_reads,
            token_waits: self.token_waits - before.token_waits,
            token_primary: self.token_primary - before.token_primary,
        }
    }
}

/// What one operation came to.
enum Outcome {
    Ok,
    /// write-read: the read, timed alone (µs), found the row (true) or not.
    Read(u32, bool),
    Wrong,
    Failed(&'static str),
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    read_latencies_us: Vec<u32>,
    errors: BTreeMap<&'static str, u64>,
    timed_out: u64,
    wrong: u64,
    stale: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Ids of existing rows to pick from (at most 100,000).
pub async fn sample_ids(pool: &Pool, accounts_table: bool) -> Result<Vec<Id>> {
    let mut conn = pool.get().await?;
    let ids: Vec<Id> = if accounts_table {
        with_conn!(&mut conn, |c| accounts::table.select(accounts::id).limit(100_000).load(c).await)?
    } else {
        with_conn!(&mut conn, |c| users::table.select(users::id).limit(100_000).load(c).await)?
    };
    Ok(ids)
}

async fn one_op(repo: &Repo, workload: Workload, ids: &[Id], session: bool) -> Outcome {
    let pick = || ids[rand::rng().random_range(0..ids.len())];
    let failed = |e: keel_repo::Error| Outcome::Failed(e.as_str());
    match workload {
        Workload::PointSelect => {
            let id = pick();
            match repo.get_user(id).await {
                Ok(u) if u.id == id => Outcome::Ok,
                Ok(_) => Outcome::Wrong,
                Err(e) => failed(e),
            }
        }
        Workload::Join => {
            let id = pick();
            match repo.user_with_jobs(id).await {
                Ok((u, jobs)) if u.id == id && jobs.iter().all(|j| j.user_id == id) => Outcome::Ok,
                Ok(_) => Outcome::Wrong,
                Err(e) => failed(e),
            }
        }
        Workload::Insert => {
            let new = NewUser::new("Load Insert", format!("load.{}@example.com", Id::new()));
            match repo.create_user(&new).await {
                Ok(u) if u.id == new.id && u.email == new.email => Outcome::Ok,
                Ok(_) => Outcome::Wrong,
                Err(e) => failed(e),
            }
        }
        Workload::Transfer => {
            let (from, mut to) = (pick(), pick());
            while to == from && ids.len() > 1 {
                to = pick();
            }
            let amount = rand::rng().random_range(1..=100);
            let key = Id::new().to_string();
            match repo.transfer(from, to, amount, &key).await {
                Ok(o) if o.applied_now && o.transfer.amount_cents == amount => Outcome::Ok,
                Ok(_) => Outcome::Wrong,
                Err(e) => failed(e),
            }
        }
        Workload::WriteRead if session => keel_pool::Session::new(None).run(write_read(repo)).await,
        Workload::WriteRead => write_read(repo).await,
    }
}

/// One write-read pair: a user insert, then reading it back.
async fn write_read(repo: &Repo) -> Outcome {
    let new = NewUser::new("Load WriteRead", format!("wr.{}@example.com", Id::new()));
    if let Err(e) = repo.create_user(&new).await {
        return Outcome::Failed(e.as_str());
    }
    let t0 = Instant::now();
    match repo.get_user(new.id).await {
        Ok(u) if u.id == new.id => Outcome::Read(micros(t0.elapsed()), true),
        Ok(_) => Outcome::Wrong,
        Err(e) if e.kind() == Some(keel_pool::ErrorKind::NotFound) => {
            Outcome::Read(micros(t0.elapsed()), false)
        }
        Err(e) => Outcome::Failed(e.as_str()),
    }
}

/// Runs the workload and reports. Fails when the data is missing (seed first).
pub async fn run(pool: &Pool, args: &LoadArgs) -> Result<Report> {
    if args.concurrency == 0 || args.duration.is_nan() || args.duration <= 0.0 {
        bail!("--concurrency and --duration must be positive");
    }
    let repo = if args.cache {
        let url = args.redis_url.as_deref().unwrap_or(DEFAULT_REDIS_URL);
        Repo::new(pool.clone()).with_cache(crate::connect_cache(url).await?)
    } else {
        Repo::new(pool.clone())
    };
    let ids = match args.workload {
        Workload::Transfer => sample_ids(pool, true).await.context("reading account ids")?,
        _ => sample_ids(pool, false).await.context("reading user ids")?,
    };
    if ids.len() < 2 && args.workload != Workload::Insert {
        bail!("no data to load: run `keel-demo seed --users 1000 --accounts 100` first");
    }
    let ids = Arc::new(ids);
    let balance_before = match args.workload {
        Workload::Transfer => Some(repo.total_balance().await?),
        _ => None,
    };
    let timeout = args.client_timeout_ms.map(Duration::from_millis);
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measured = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let (measure_from, stop) = (start + warmup, start + warmup + measured);
    let retries_at = Arc::new(tokio::sync::OnceCell::new());
    let routing_before = Routing::of(pool);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let max_ops = args.ops.unwrap_or(u64::MAX);
    let session = !args.no_session;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (repo, ids, retries_at, done) = (repo.clone(), ids.clone(), retries_at.clone(), done.clone());
        let workload = args.workload;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= stop
                    || std::sync::atomic::AtomicU64::load(&done, std::sync::atomic::Ordering::Relaxed)
                        >= max_ops
                {
                    break;
                }
                let counted = t0 >= measure_from;
                if counted {
                    retries_at.get_or_init(|| async { repo.pool().stats().total_retries() }).await;
                }
                let outcome = match timeout {
                    Some(limit) => {
                        tokio::time::timeout(limit, one_op(&repo, workload, &ids, session)).await.ok()
                    }
                    None => Some(one_op(&repo, workload, &ids, session).await),
                };
                if !counted {
                    continue;
                }
                if done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max_ops {
                    break;
                }
                match outcome {
                    None => tally.timed_out += 1,
                    Some(Outcome::Ok) => tally.latencies_us.push(micros(t0.elapsed())),
                    // In a session a stale read breaks read-your-writes: a wrong result.
                    Some(Outcome::Read(_, false)) if session => tally.wrong += 1,
                    Some(Outcome::Read(read, found)) => {
                        tally.latencies_us.push(micros(t0.elapsed()));
                        tally.read_latencies_us.push(read);
                        tally.stale += u64::from(!found);
                    }
                    Some(Outcome::Wrong) => tally.wrong += 1,
                    Some(Outcome::Failed(kind)) => *tally.errors.entry(kind).or_default() += 1,
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.context("a load task panicked")?;
        all.latencies_us.extend(t.latencies_us);
        all.read_latencies_us.extend(t.read_latencies_us);
        all.timed_out += t.timed_out;
        all.wrong += t.wrong;
        all.stale += t.stale;
        for (k, v) in t.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    let retries = pool.stats().total_retries() - retries_at.get().copied().unwrap_or(0);
    let balance_after = match args.workload {
        Workload::Transfer => Some(repo.total_balance().await?),
        _ => None,
    };
    let measured = Measured {
        latencies_us: all.latencies_us,
        errors_by_kind: all.errors.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        retries,
        timed_out: all.timed_out,
        wrong_results: all.wrong,
        balance_before,
        balance_after,
    };
    // With --ops the run may end before --duration: rates are over the time it really took.
    let elapsed = Instant::now().min(stop).saturating_duration_since(measure_from).as_secs_f64();
    let mut report = report(args, pool.backend(), measured);
    if args.ops.is_some() && elapsed > 0.0 && elapsed < report.duration_s {
        report.duration_s = elapsed;
        report.ops_per_s = report.ops as f64 / elapsed;
    }
    report.acquire_p99_us = Some(pool.stats().acquire_p99_us);
    report.capacity_after = Some(capacity(pool).await);
    if args.workload == Workload::WriteRead {
        let mut reads = all.read_latencies_us;
        reads.sort_unstable();
        report.stale_reads = Some(all.stale);
        report.read_p50_us = Some(quantile(&reads, 0.5));
        report.read_p99_us = Some(quantile(&reads, 0.99));
    }
    report.routing = Routing::of(pool).zip(routing_before).map(|(after, before)| after.since(&before));
    report.cache = repo.cache().map(|c| CacheReport::from_stats(&c.stats()));
    Ok(report)
}

/// Checks out every connection of the pool at once and runs a query on each: the number that
/// answered within the acquire timeout.
async fn capacity(pool: &keel_pool::Pool) -> u32 {
    let mut held = Vec::new();
    for _ in 0..pool.config().effective_max_size() {
        match pool.get().await {
            Ok(conn) => held.push(conn),
            Err(_) => break,
        }
    }
    let mut answered = 0;
    for conn in &mut held {
        let ok: Result<i32, keel_pool::Error> = keel_pool::with_conn!(conn, |c| {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result(c).await
        });
        answered += u32::from(ok.is_ok());
    }
    answered
}

/// What the tasks of one run gathered, before it is summarised into a [`Report`].
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Latency of every completed (and checked) operation, µs.
    pub latencies_us: Vec<u32>,
    /// Failures by `ErrorKind::as_str`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Retries the pool made during the measured window.
    pub retries: u64,
    /// Operations cancelled by `--client-timeout-ms`.
    pub timed_out: u64,
    /// Results that did not match what was asked for.
    pub wrong_results: u64,
    /// Sum of all balances before (transfer only).
    pub balance_before: Option<i64>,
    /// Sum of all balances after (transfer only).
    pub balance_after: Option<i64>,
}

/// Summarises what a run measured (shared with the raw baselines of `keel-bench`).
pub fn report(args: &LoadArgs, backend: keel_pool::Backend, measured: Measured) -> Report {
    let mut latencies_us = measured.latencies_us;
    latencies_us.sort_unstable();
    let q = |p: f64| quantile(&latencies_us, p);
    let ops = latencies_us.len() as u64;
    Report {
        workload: args.workload.name(),
        backend: backend.as_str(),
        concurrency: args.concurrency,
        duration_s: args.duration,
        ops,
        ops_per_s: ops as f64 / args.duration,
        p50_us: q(0.5),
        p99_us: q(0.99),
        max_us: latencies_us.last().copied().map(u64::from).unwrap_or(0),
        errors: measured.errors_by_kind.values().sum(),
        errors_by_kind: measured.errors_by_kind,
        retries: measured.retries,
        timed_out: measured.timed_out,
        wrong_results: measured.wrong_results,
        balance_before: measured.balance_before,
        balance_after: measured.balance_after,
        acquire_p99_us: None,
        capacity_after: None,
        stale_reads: None,
        read_p50_us: None,
        read_p99_us: None,
        routing: None,
        cache: None,
    }
}

/// The `p` quantile (0..=1) of sorted `values` in µs (0 when empty).
fn quantile(values: &[u32], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let i = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
    u64::from(values[i])
}

/// `keel-demo load`: opens the pool (sized by `--pool-size` when given), runs, prints the
/// summary or the JSON report, and fails when the run found wrong results or a changed balance.
pub async fn command(config: Config, args: &LoadArgs) -> Result<()> {
    let config = match args.pool_size {
        Some(n) => config.max_size(n),
        None => config,
    };
    let pool = crate::open(config).await?;
    let report = run(&pool, args).await?;
    if args.json {
        crate::print_json(&report)?;
    } else {
        println!("{}", summary(&report));
    }
    pool.close(Duration::from_secs(5)).await;
    if failed(&report) {
        bail!("the load run found wrong results or a changed balance");
    }
    Ok(())
}

/// The human summary.
pub fn summary(r: &Report) -> String {
    let mut out = format!(
        "{} on {} with {} tasks for {:.1}s: {} ops ({:.0} ops/s), p50 {} µs, p99 {} µs, max {} µs\n\
         errors {} {:?}, retries {}, timed out {}, wrong results {}",
        r.workload,
        r.backend,
        r.concurrency,
        r.duration_s,
        r.ops,
        r.ops_per_s,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.errors,
        r.errors_by_kind,
        r.retries,
        r.timed_out,
        r.wrong_results
    );
    if let Some(c) = &r.cache {
        out.push_str(&format!(
            "\ncache: hit ratio {:.3} ({} hits, {} misses), Redis p50 {} µs, p99 {} µs, Redis errors {}",
            c.hit_ratio, c.hits, c.misses, c.redis_p50_us, c.redis_p99_us, c.redis_errors
        ));
    }
    if let (Some(b), Some(a)) = (r.balance_before, r.balance_after) {
        out.push_str(&format!(
            "\nbalance before {b}, after {a}{}",
            if a == b { "" } else { "  <-- CHANGED" }
        ));
    }
    out
}

/// True when the run found a problem: wrong results or money created or lost.
pub fn failed(r: &Report) -> bool {
    r.wrong_results > 0 || r.balance_before != r.balance_after
}
