//! The local cluster's part of `cargo xtask bench` (PostgreSQL, `keel_test::cluster`: a primary,
//! one streaming replica and PgBouncer in transaction mode on this machine), side by side in
//! one run, interleaved (A B A B) because the machine is noisy:
//!
//! - W1 point select c=16 with reads routed to the replica against the primary alone (both on
//!   this machine: the figure is the routing's cost, not a replica's extra capacity);
//! - read-your-writes: write-then-read pairs (`keel-demo load write-read --ops N`) with a
//!   causality token — stale reads (must be 0), the share the replica served, the read's
//!   p50/p99 — beside the same pairs without a token (stale reads show the replica is really
//!   used) and on the primary alone (the read without any wait);
//! - W1 and W4 through PgBouncer (`?pgbouncer=true`) against the primary directly.
//!
//! The cluster is started through the same code as the tests and stopped at the end unless it
//! was running before; the bench's database on it is dropped.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_pool::{Config, Pool};
use keel_test::cluster::{self, Member};
use serde_json::{Value, json};

use super::{Bins, Plan, json_of_with, num, ratio, run_args};

/// Runs the cluster section, appending its tables to `report`.
pub fn bench(bins: &Bins, plan: &Plan, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    writeln!(
        report,
        "## PostgreSQL cluster (primary, streaming replica, PgBouncer 1.18 transaction mode)\n"
    )?;
    let target = cluster::default_target_dir();
    let was_running = cluster::status(&target).map(|s| !s.members.is_empty()).unwrap_or(true);
    let outcome = run(bins, plan, &target, report, results);
    if !was_running && let Err(e) = cluster::down(&target, None) {
        eprintln!("stopping the local cluster after the bench failed: {e}");
    }
    outcome
}

fn run(
    bins: &Bins,
    plan: &Plan,
    target: &std::path::Path,
    report: &mut String,
    results: &mut Vec<Value>,
) -> Result<()> {
    cluster::up(target, Member::PgReplica).context("starting the cluster's replica")?;
    let urls = cluster::up(target, Member::PgBouncer).context("starting the cluster's PgBouncer")?;
    let (Some(replica), Some(bouncer)) = (urls.replica.clone(), urls.pgbouncer.clone()) else {
        bail!("the cluster started without a replica or PgBouncer: {urls:?}");
    };
    let db = format!("keel_bench_{}", std::process::id());
    let on = |url: &str| format!("{}/{db}", url.rsplit_once('/').map_or(url, |(base, _)| base));
    let (primary_db, replica_db, bouncer_db) =
        (on(&urls.primary), on(&replica), format!("{}?pgbouncer=true", on(&bouncer)));
    let rt = crate::runtime()?;
    rt.block_on(admin(&urls.primary, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))?;
    rt.block_on(admin(&urls.primary, &format!("CREATE DATABASE {db}")))?;
    let outcome = (|| {
        seed(bins, &primary_db, plan)?;
        let lag = rt.block_on(caught_up(&primary_db, &replica_db))?;
        writeln!(
            report,
            "{} users seeded on the primary; the replica caught up {:.1} s after the seed. \
             Lag the prober saw at the end: {} bytes, {} ms.\n",
            plan.users,
            lag.0.as_secs_f64(),
            lag.1,
            lag.2.as_millis()
        )?;
        let mut cx = Cx { bins, plan, report, results };
        routing(&mut cx, &primary_db, &replica_db)?;
        read_your_writes(&mut cx, &primary_db, &replica_db)?;
        pgbouncer(&mut cx, &primary_db, &bouncer_db)
    })();
    if let Err(e) = rt.block_on(admin(&urls.primary, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))) {
        eprintln!("dropping the bench database {db} failed: {e:#}");
    }
    outcome
}

/// Runs one statement on the primary's `keel` database (no transaction: CREATE/DROP DATABASE).
async fn admin(primary: &str, sql: &str) -> Result<()> {
    let pool = Pool::connect(Config::new(primary)?.max_size(1)).await.context("connecting to the primary")?;
    let mut conn = pool.get().await?;
    let done = keel_test::exec(&mut conn, sql).await.with_context(|| format!("running {sql}"));
    drop(conn);
    pool.close(Duration::from_secs(1)).await;
    done
}

fn seed(bins: &Bins, url: &str, plan: &Plan) -> Result<()> {
    let users = plan.users.to_string();
    let accounts = plan.accounts.to_string();
    for args in
        [vec!["migrate"], vec!["seed", "--users", &users, "--jobs-per-user", "1", "--accounts", &accounts]]
    {
        eprintln!("$ keel-demo --database-url <cluster database> {}", args.join(" "));
        let status = std::process::Command::new(&bins.demo)
            .arg("--database-url")
            .arg(url)
            .args(&args)
            .env("RUST_LOG", "error")
            .status()
            .context("starting keel-demo")?;
        if !status.success() {
            bail!("keel-demo {} on the cluster failed", args.join(" "));
        }
    }
    Ok(())
}

/// Waits until the replica is usable and has replayed everything (lag 0 bytes) for the
/// primary's pool; returns how long that took and the last lag seen (bytes, time).
async fn caught_up(primary: &str, replica: &str) -> Result<(Duration, u64, Duration)> {
    let pool = Pool::connect(Config::new(primary)?.replica(replica)?.max_size(2)).await?;
    let started = Instant::now();
    let seen = loop {
        let stats = pool.routing_stats().context("the pool has no replicas")?;
        let r = &stats.replicas[0];
        if r.usable && r.lag_bytes == 0 {
            break (started.elapsed(), r.lag_bytes, r.lag);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the replica did not catch up within 120 s: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    pool.close(Duration::ZERO).await;
    Ok(seen)
}

/// What every measurement of the section reads and appends to.
struct Cx<'a> {
    bins: &'a Bins,
    plan: &'a Plan,
    report: &'a mut String,
    results: &'a mut Vec<Value>,
}

/// `keel-demo load` on `url`, with `KEEL_REPLICA_URLS` set to `replica` when given.
fn load(bins: &Bins, url: &str, replica: Option<&str>, args: &[String]) -> Result<Value> {
    let mut all = vec!["load".to_owned()];
    all.extend_from_slice(args);
    all.push("--json".into());
    json_of_with(&bins.demo, url, &all, &[("KEEL_REPLICA_URLS", replica.unwrap_or(""))])
}

/// W1 c=16: the primary alone against reads routed to the replica, interleaved twice.
fn routing(cx: &mut Cx<'_>, primary: &str, replica: &str) -> Result<()> {
    let (bins, plan) = (cx.bins, cx.plan);
    let mut args = vec!["point-select".to_owned()];
    args.extend(run_args(plan, 16));
    let mut table = "| W1 point select c=16 | round | ops/s | p50 µs | p99 µs | served by the replica |\n|---|---|---|---|---|---|\n".to_owned();
    let (mut alone, mut routed) = (Vec::new(), Vec::new());
    for round in 1..=2 {
        for (name, via) in [("primary alone", None), ("routed to the replica", Some(replica))] {
            let r = load(bins, primary, via, &args)?;
            let served = r["routing"]["replica_reads"].as_u64().unwrap_or(0);
            let share = served as f64 / (r["ops"].as_f64().unwrap_or(0.0) + 1e-9);
            writeln!(
                table,
                "| {name} | {round} | {:.0} | {} | {} | {} |",
                num(&r, "ops_per_s"),
                r["p50_us"],
                r["p99_us"],
                if via.is_some() { format!("{:.0}%", 100.0 * share.min(1.0)) } else { "–".to_owned() }
            )?;
            if via.is_some() { &mut routed } else { &mut alone }.push(num(&r, "ops_per_s"));
            cx.results.push(json!({"backend": "postgres", "kind": "cluster-routing", "stack": name, "round": round, "result": r}));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    writeln!(
        cx.report,
        "{table}\nRouted / primary alone (mean ops/s of the rounds): {}\n",
        ratio(mean(&routed), mean(&alone))
    )?;
    Ok(())
}

/// Write-then-read pairs: with a token (routed), without one (routed), and on the primary.
fn read_your_writes(cx: &mut Cx<'_>, primary: &str, replica: &str) -> Result<()> {
    let (bins, plan) = (cx.bins, cx.plan);
    let pairs = if plan.duration < 2.0 { 1_000 } else { 10_000 };
    let base = [
        "write-read".to_owned(),
        "--ops".into(),
        pairs.to_string(),
        "--concurrency".into(),
        "16".into(),
        "--duration".into(),
        "600".into(),
        "--pool-size".into(),
        "16".into(),
    ];
    let mut table = format!(
        "| {pairs} write-then-read pairs, c=16 | stale reads | served by the replica | token reads the replica was asked about | by the primary | read p50 µs | read p99 µs | pairs/s |\n|---|---|---|---|---|---|---|---|\n"
    );
    for (name, via, session) in [
        ("with a token (routed)", Some(replica), true),
        ("without a token (routed)", Some(replica), false),
        ("primary alone", None, true),
    ] {
        let mut args = base.to_vec();
        if !session {
            args.push("--no-session".into());
        }
        let r = load(bins, primary, via, &args)?;
        let routing = &r["routing"];
        let ops = r["ops"].as_f64().unwrap_or(0.0).max(1.0);
        // Routing counts cover the whole run, a few reads past the last counted pair too.
        let pct = |key: &str| match routing[key].as_f64() {
            Some(n) => format!("{:.1}%", (100.0 * n / ops).min(100.0)),
            None => "–".to_owned(),
        };
        writeln!(
            table,
            "| {name} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r["stale_reads"],
            pct("replica_reads"),
            pct("token_waits"),
            if via.is_some() { pct("token_primary") } else { "100%".to_owned() },
            r["read_p50_us"],
            r["read_p99_us"],
            num(&r, "ops_per_s")
        )?;
        cx.results.push(
            json!({"backend": "postgres", "kind": "cluster-read-your-writes", "stack": name, "result": r}),
        );
    }
    writeln!(
        cx.report,
        "{table}\nThe extra wait a token costs is its read's p50/p99 against the routed reads without one \
         (they never wait, and may be stale).\n"
    )?;
    Ok(())
}

/// W1 and W4 c=16 through PgBouncer (transaction mode) against the primary directly.
fn pgbouncer(cx: &mut Cx<'_>, primary: &str, bouncer: &str) -> Result<()> {
    let (bins, plan) = (cx.bins, cx.plan);
    let mut table = "| c=16 | round | direct ops/s | PgBouncer ops/s | direct p99 µs | PgBouncer p99 µs | PgBouncer / direct |\n|---|---|---|---|---|---|---|\n".to_owned();
    for (label, workload) in [("W1 point select", "point-select"), ("W4 transfer", "transfer")] {
        for round in 1..=2 {
            let mut args = vec![workload.to_owned()];
            args.extend(run_args(plan, 16));
            let direct = load(bins, primary, None, &args)?;
            let through = load(bins, bouncer, None, &args)?;
            writeln!(
                table,
                "| {label} | {round} | {:.0} | {:.0} | {} | {} | {} |",
                num(&direct, "ops_per_s"),
                num(&through, "ops_per_s"),
                direct["p99_us"],
                through["p99_us"],
                ratio(num(&through, "ops_per_s"), num(&direct, "ops_per_s"))
            )?;
            for (stack, r) in [("direct", direct), ("pgbouncer", through)] {
                cx.results.push(json!({"backend": "postgres", "kind": "cluster-pgbouncer", "label": label, "stack": stack, "round": round, "result": r}));
            }
        }
    }
    writeln!(cx.report, "{table}")?;
    Ok(())
}
