//! `keel-bench raw`: a workload on a raw stack, with the same harness rules and the same JSON
//! report as `keel-demo load`, so keel and the stacks it wraps are measured alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_demo::load::{LoadArgs, Measured, Report, Workload};
use keel_pool::{Backend, Config};
use keel_repo::Repo;
use rand::Rng;
use serde::Serialize;

use crate::diesel::{self as raw_diesel, RawPool};
use crate::tokio_pg::{self, PgClient};

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

/// Options of `keel-bench raw`.
#[derive(Debug, Clone, clap::Args)]
pub struct RawArgs {
    /// The stack.
    #[arg(long, value_enum)]
    pub stack: Stack,
    /// The workload and its timing, as for `load`.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Runs a workload on a raw stack with the same harness rules as `keel-demo load`.
pub async fn run(config: Config, args: &RawArgs) -> Result<Report> {
    let load = &args.load;
    let size = load.pool_size.unwrap_or(16);
    let backend = config.backend();
    if args.stack == Stack::TokioPostgres && backend != Backend::Postgres {
        bail!("tokio-postgres is a PostgreSQL baseline");
    }
    if load.workload == Workload::WriteRead {
        bail!(
            "write-read measures keel's read-your-writes routing; the raw stacks have none (use keel-demo load)"
        );
    }
    // Ids come through keel (not measured).
    let keel = keel_pool::Pool::connect(config.clone().max_size(2)).await?;
    let ids = keel_demo::load::sample_ids(&keel, load.workload == Workload::Transfer).await?;
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
        Stack::Diesel => Target::Diesel(raw_diesel::raw_pool(&config, size, true).await?),
        Stack::DieselNoPing => Target::Diesel(raw_diesel::raw_pool(&config, size, false).await?),
        Stack::TokioPostgres => Target::Pg(tokio_pg::clients(&config, size as usize).await?),
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
                        Target::Diesel(pool) => raw_diesel::op(pool, workload, id, other).await,
                        Target::Pg(clients) => {
                            tokio_pg::op(&clients[task % clients.len()], workload, id, other).await
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
    let measured = Measured {
        latencies_us: lat,
        errors_by_kind: errors,
        retries: 0,
        timed_out,
        wrong_results: wrong,
        balance_before,
        balance_after,
    };
    Ok(keel_demo::load::report(load, backend, measured))
}
