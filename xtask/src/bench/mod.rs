//! `cargo xtask bench`: keel side by side with the raw stacks it wraps, in one run, as ratios.
//!
//! Per backend: a fresh database, seeded through `keel-demo seed` (timed), then every workload
//! on every stack through release binaries — `keel-demo load --json` for keel, `keel-bench raw`
//! / `bulk` / `stream` for the baselines, both found in cargo's target directory (wherever
//! `CARGO_TARGET_DIR` or the cargo config puts it). Every stack connects through keel-pool's
//! connector, so all run with the URL's TLS mode; on PostgreSQL a TLS-cost table follows
//! (keel's W1 with `sslmode=disable` against `sslmode=require`), and on PostgreSQL and MySQL a
//! cache table (W1 uncached against through Redis, and `redis-benchmark` as the ceiling), both
//! in the load section. Tables go to stdout and `target/bench/report.md`; every figure to `target/bench/results.json`.
//!
//! Sections, in the order they run on each freshly seeded database (`--only` picks one):
//! frames (module `frames`: whole tables as Arrow and Parquet, keel beside ConnectorX, ADBC and
//! pandas), load (W1/W2/W4, and the TLS cost on PostgreSQL), bulk (W3), stream. Frames runs
//! first because bulk adds users. Then, once, cluster (module `cluster`: the local PostgreSQL
//! cluster's replica routing, read-your-writes and PgBouncer figures).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keel_pool::Backend;
use keel_test::TestDb;
use serde_json::{Value, json};

mod cluster;
mod frames;

/// A part of the bench that `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Whole tables to Arrow in memory and to Parquet: keel, ConnectorX, ADBC, pandas.
    Frames,
    /// W1 point selects, W2 join, W4 transfer (and the TLS cost on PostgreSQL).
    Load,
    /// W3 bulk insert.
    Bulk,
    /// Streaming every user with bounded memory.
    Stream,
    /// The local PostgreSQL cluster (module `cluster`): replica routing, read-your-writes,
    /// PgBouncer; once, after the per-database sections, when PostgreSQL is benched.
    Cluster,
}

/// How long and how big.
pub(crate) struct Plan {
    pub(crate) users: u64,
    jobs_per_user: u64,
    pub(crate) accounts: u64,
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
    bulk_rows: u64,
    stream_rows: u64,
    /// Interleaved runs of each frames tool (pandas, the slow baseline: `frames_pandas_reps`).
    frames_reps: u32,
    frames_pandas_reps: u32,
}

/// (label, workload, concurrency)
const RUNS: &[(&str, &str, u32)] = &[
    ("W1 point select c=1", "point-select", 1),
    ("W1 point select c=16", "point-select", 16),
    ("W1 point select c=64", "point-select", 64),
    ("W2 join c=16", "join", 16),
    ("W4 transfer c=16", "transfer", 16),
];

fn stacks(backend: Backend) -> Vec<&'static str> {
    let mut s = vec!["keel", "diesel", "diesel-no-ping"];
    if backend == Backend::Postgres {
        s.push("tokio-postgres");
    }
    s
}

fn bulk_methods(backend: Backend) -> Vec<&'static str> {
    let mut m = vec!["keel-multirow", "diesel-multirow"];
    if backend == Backend::Postgres {
        m.extend(["keel-copy", "tokio-postgres-copy"]);
    }
    m
}

/// The two release binaries a run drives.
pub(crate) struct Bins {
    pub(crate) demo: PathBuf,
    bench: PathBuf,
}

/// Builds both release binaries and finds them in cargo's target directory.
fn build() -> Result<Bins> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "keel-demo", "-p", "keel-bench"]))?;
    let dir = target_dir()?.join("release");
    let bins = Bins { demo: dir.join("keel-demo"), bench: dir.join("keel-bench") };
    for bin in [&bins.demo, &bins.bench] {
        if !bin.is_file() {
            bail!("{} is missing after the release build", bin.display());
        }
    }
    Ok(bins)
}

/// Cargo's target directory, as `cargo metadata` reports it (it honours `CARGO_TARGET_DIR`
/// and `build.target-dir`).
fn target_dir() -> Result<PathBuf> {
    let mut cmd = crate::cargo();
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    crate::echo(&cmd);
    let out = cmd.output().context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    meta["target_directory"].as_str().map(PathBuf::from).context("cargo metadata names no target_directory")
}

/// Runs the binary and parses the last stdout line as JSON.
fn json_of(bin: &Path, url: &str, args: &[String]) -> Result<Value> {
    json_of_with(bin, url, args, &[])
}

/// [`json_of`] with extra environment variables (shown when not empty).
pub(crate) fn json_of_with(bin: &Path, url: &str, args: &[String], env: &[(&str, &str)]) -> Result<Value> {
    let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let shown: String =
        env.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| format!("{k}=<cluster URL> ")).collect();
    eprintln!("$ {shown}{name} --database-url <test database> {}", args.join(" "));
    let out = Command::new(bin)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{name} {} failed: {}{}", args.join(" "), stdout, String::from_utf8_lossy(&out.stderr));
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))
}

pub(crate) fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// `url` with its `sslmode` parameter set to `mode`.
fn with_sslmode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let param = format!("sslmode={mode}");
    let mut pairs: Vec<&str> =
        query.split('&').filter(|p| !p.is_empty() && !p.starts_with("sslmode=")).collect();
    pairs.push(&param);
    format!("{base}?{}", pairs.join("&"))
}

/// What TLS costs keel on PostgreSQL: W1 with `sslmode=disable` against `sslmode=require`.
fn tls_cost(db: &Db, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    let Db { bins, url, plan, .. } = *db;
    let mut table = "| TLS cost (keel) | ops/s disable | ops/s require | p99 µs disable | p99 µs require | require / disable |\n|---|---|---|---|---|---|\n".to_owned();
    for concurrency in [1u32, 16] {
        let mut ops = Vec::new();
        let mut p99 = Vec::new();
        for mode in ["disable", "require"] {
            let mut args = vec!["load".to_owned(), "point-select".to_owned()];
            args.extend(run_args(plan, concurrency));
            args.push("--json".into());
            let r = json_of(&bins.demo, &with_sslmode(url, mode), &args)?;
            ops.push(num(&r, "ops_per_s"));
            p99.push(r["p99_us"].clone());
            results.push(json!({"backend": "postgres", "kind": "tls", "sslmode": mode, "concurrency": concurrency, "result": r}));
        }
        writeln!(
            table,
            "| W1 point select c={concurrency} | {:.0} | {:.0} | {} | {} | {} |",
            ops[0],
            ops[1],
            p99[0],
            p99[1],
            ratio(ops[1], ops[0])
        )?;
    }
    writeln!(report, "{table}")?;
    Ok(())
}

/// The Redis cache's rows (PostgreSQL and MySQL): W1 uncached against cached through Redis,
/// interleaved (A B A B) on this noisy machine, with the hit ratio; and `redis-benchmark -c 16 -t
/// get` as the ceiling of the Redis path here. Without Redis the cached runs read the database
/// (a hit ratio of 0 says so) and the ceiling row says why it did not run.
fn cache_cost(db: &Db, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    let Db { bins, url, plan, .. } = *db;
    let redis = redis_url();
    let mut table = "| cache (keel) | ops/s uncached | ops/s Redis | p50 µs uncached / Redis | p99 µs uncached / Redis | hit ratio | Redis / uncached |\n|---|---|---|---|---|---|---|\n".to_owned();
    for concurrency in [16u32, 64] {
        let (mut ops, mut p50, mut p99, mut hit) = ([0.0f64; 2], [0u64; 2], [0u64; 2], 0.0);
        for _round in 0..2 {
            for (i, cached) in [false, true].into_iter().enumerate() {
                let mut args = vec!["load".to_owned(), "point-select".to_owned()];
                args.extend(run_args(plan, concurrency));
                args.push("--json".into());
                if cached {
                    args.extend(["--cache".to_owned(), "--redis-url".to_owned(), redis.clone()]);
                }
                let r = json_of(&bins.demo, url, &args)?;
                ops[i] += num(&r, "ops_per_s") / 2.0;
                p50[i] = p50[i].max(r["p50_us"].as_u64().unwrap_or(0));
                p99[i] = p99[i].max(r["p99_us"].as_u64().unwrap_or(0));
                if cached {
                    hit = num(&r["cache"], "hit_ratio");
                }
                results.push(
                    json!({"kind": "cache", "cached": cached, "concurrency": concurrency, "result": r}),
                );
            }
        }
        writeln!(
            table,
            "| W1 point select c={concurrency} | {:.0} | {:.0} | {} / {} | {} / {} | {hit:.3} | {} |",
            ops[0],
            ops[1],
            p50[0],
            p50[1],
            p99[0],
            p99[1],
            ratio(ops[1], ops[0])
        )?;
    }
    let port = redis
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .filter(|p| p.parse::<u16>().is_ok())
        .unwrap_or("6379")
        .to_owned();
    eprintln!("$ redis-benchmark -p {port} -c 16 -t get -n 200000 -q");
    match Command::new("redis-benchmark")
        .args(["-p", &port, "-c", "16", "-t", "get", "-n", "200000", "-q"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // -q still writes its progress on the same line, each update after a '\r'.
            let line = text
                .lines()
                .rev()
                .find(|l| l.contains("GET"))
                .and_then(|l| l.rsplit('\r').next())
                .unwrap_or("")
                .trim()
                .to_owned();
            writeln!(table, "| redis-benchmark -c 16 -t get (ceiling) | {line} | | | | | |")?;
            results.push(json!({"kind": "cache", "redis_benchmark": line}));
        }
        other => writeln!(table, "| redis-benchmark | not run: {other:?} | | | | | |")?,
    }
    writeln!(report, "{table}")?;
    Ok(())
}

/// Write-then-read pairs through the HTTP API of `keel-demo serve` reading through Redis: 8
/// clients, each PATCHes its own user's name and GETs it back (stale: another name), then GETs
/// it again (a hit). Stale reads must be 0.
fn http_write_read(
    bins: &Bins,
    url: &str,
    backend: Backend,
    pairs: usize,
    report: &mut String,
    results: &mut Vec<Value>,
) -> Result<()> {
    use std::io::BufRead as _;
    let redis = redis_url();
    eprintln!("$ REDIS_URL=<redis> keel-demo --database-url <test database> serve --addr 127.0.0.1:0");
    let mut child = Command::new(&bins.demo)
        .arg("--database-url")
        .arg(url)
        .args(["serve", "--addr", "127.0.0.1:0", "--redis-url", &redis])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting keel-demo serve")?;
    let first = child.stdout.take().map(|out| {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        line
    });
    let outcome = (|| {
        let line = first.unwrap_or_default();
        let base = line.trim().strip_prefix("listening on ").context("keel-demo serve printed no address")?;
        let base = base.to_owned();
        crate::runtime()?.block_on(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            let clients = 8;
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (client, base) = (client.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let email = format!("http.pairs.{c}.{}@example.com", std::process::id());
                    let created: Value = client
                        .post(format!("{base}/users"))
                        .json(&json!({"name": "Pairs", "email": email}))
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    let path = format!("{base}/users/{}", created["id"].as_str().unwrap_or_default());
                    let (mut stale, mut errors) = (0u64, 0u64);
                    for i in 0..pairs / clients {
                        let name = format!("name {c}.{i}");
                        let wrote = client.patch(&path).json(&json!({ "name": name })).send().await?;
                        if !wrote.status().is_success() {
                            errors += 1;
                            continue;
                        }
                        let read: Value = client.get(&path).send().await?.error_for_status()?.json().await?;
                        stale += u64::from(read["name"] != name.as_str());
                        client.get(&path).send().await?.error_for_status()?;
                    }
                    anyhow::Ok((stale, errors))
                }));
            }
            let (mut stale, mut errors) = (0, 0);
            for t in tasks {
                let (s, e) = t.await.context("a client task panicked")??;
                stale += s;
                errors += e;
            }
            let seconds = started.elapsed().as_secs_f64();
            let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
            let hits = metrics
                .lines()
                .find(|l| l.starts_with("keel_cache_hits_total"))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or("?")
                .to_owned();
            writeln!(
                report,
                "Through the HTTP API with the cache, {pairs} write-then-read pairs (PATCH, GET, GET; 8 clients): \
                 {stale} stale reads, {errors} failed writes, {:.0} pairs/s, keel_cache_hits_total {hits}.\n",
                pairs as f64 / seconds
            )?;
            results.push(json!({"backend": backend.as_str(), "kind": "cache-http-pairs", "pairs": pairs, "stale": stale, "errors": errors, "seconds": seconds}));
            if stale > 0 {
                bail!("{stale} stale reads through the cache after writes");
            }
            anyhow::Ok(())
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// The Redis the cache rows use: `REDIS_URL`, else the machine's.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| keel_test::servers::REDIS_URL.to_owned())
}

/// The flags every timed load run takes: concurrency, duration, warm-up, a pool of 16.
pub(crate) fn run_args(plan: &Plan, concurrency: u32) -> Vec<String> {
    ["--concurrency", &concurrency.to_string(), "--duration", &plan.duration.to_string()]
        .into_iter()
        .chain(["--warmup", &plan.warmup.to_string(), "--pool-size", "16"])
        .map(str::to_owned)
        .collect()
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}", a / b) } else { "–".to_owned() }
}

/// Runs the benchmark on `backend` ("postgres", "mysql", "sqlite" or "all"), every section or
/// only `only`.
pub fn bench(root: &Path, backend: &str, quick: bool, only: Option<Section>) -> Result<()> {
    let backends: Vec<Backend> = match backend {
        "all" => Backend::ALL.to_vec(),
        one => vec![one.parse().map_err(|e| anyhow::anyhow!("{e}"))?],
    };
    let plan = if quick {
        Plan {
            users: 10_000,
            jobs_per_user: 10,
            accounts: 1_000,
            duration: 1.0,
            warmup: 0.3,
            bulk_rows: 20_000,
            stream_rows: 100_000,
            frames_reps: 1,
            frames_pandas_reps: 1,
        }
    } else {
        Plan {
            users: 100_000,
            jobs_per_user: 10,
            accounts: 1_000,
            duration: 8.0,
            warmup: 2.0,
            bulk_rows: 100_000,
            stream_rows: 1_000_000,
            frames_reps: 2,
            frames_pandas_reps: 1,
        }
    };
    let bins = build()?;
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).context("creating target/bench")?;
    let wants = |s: Section| only.is_none_or(|o| o == s);
    let python = if wants(Section::Frames) {
        frames::ensure_gnu_time()?;
        Some(frames::python(root, &out_dir))
    } else {
        None
    };
    let rt = crate::runtime()?;
    let started = Instant::now();
    let mut report = String::new();
    let mut results = Vec::new();
    writeln!(
        report,
        "# keel bench ({})\n\n{} users, {} jobs, {} accounts; {} s measured after {} s warm-up per run; pool size 16.\n",
        if quick { "quick" } else { "full" },
        plan.users,
        plan.users * plan.jobs_per_user,
        plan.accounts,
        plan.duration,
        plan.warmup
    )?;
    let per_database = [Section::Frames, Section::Load, Section::Bulk, Section::Stream];
    for &backend in backends.iter().filter(|_| per_database.into_iter().any(wants)) {
        let db = match rt.block_on(TestDb::create(backend, "bench", &keel_schema::MIGRATIONS)) {
            Ok(db) => db,
            Err(e) => {
                eprintln!("skipping {backend}: {e}");
                writeln!(report, "## {backend}\n\nskipped: {e}\n")?;
                continue;
            }
        };
        let url = db.url().expose_secret().to_owned();
        let frames =
            python.as_ref().map(|python| frames::Ctx { bins: &bins, python, out_dir: &out_dir, plan: &plan });
        let on = Db { bins: &bins, url: &url, backend, plan: &plan };
        let outcome = bench_one(&on, &wants, frames.as_ref(), &mut report, &mut results);
        rt.block_on(db.drop_database());
        outcome?;
    }
    if wants(Section::Cluster) && backends.contains(&Backend::Postgres) {
        cluster::bench(&bins, &plan, &mut report, &mut results)?;
    }
    writeln!(report, "\nTotal time {:.0} s.", started.elapsed().as_secs_f64())?;
    print!("{report}");
    std::fs::write(out_dir.join("report.md"), &report).context("writing target/bench/report.md")?;
    let json = serde_json::to_string_pretty(&Value::Array(results))?;
    std::fs::write(out_dir.join("results.json"), json).context("writing target/bench/results.json")?;
    eprintln!("wrote target/bench/report.md and target/bench/results.json");
    Ok(())
}

/// One seeded database and what the sections run on it.
#[derive(Clone, Copy)]
struct Db<'a> {
    bins: &'a Bins,
    url: &'a str,
    backend: Backend,
    plan: &'a Plan,
}

fn bench_one(
    db: &Db,
    wants: &dyn Fn(Section) -> bool,
    frames: Option<&frames::Ctx>,
    report: &mut String,
    results: &mut Vec<Value>,
) -> Result<()> {
    let Db { bins, url, backend, plan } = *db;
    writeln!(report, "## {backend}\n")?;
    let t0 = Instant::now();
    let seed = [
        "seed".to_owned(),
        "--users".into(),
        plan.users.to_string(),
        "--jobs-per-user".into(),
        plan.jobs_per_user.to_string(),
        "--accounts".into(),
        plan.accounts.to_string(),
    ];
    eprintln!("$ keel-demo --database-url <test database> {}", seed.join(" "));
    let status = Command::new(&bins.demo).arg("--database-url").arg(url).args(&seed).status()?;
    if !status.success() {
        bail!("seeding {backend} failed");
    }
    let seeded = t0.elapsed().as_secs_f64();
    writeln!(report, "Seeding took {seeded:.1} s.\n")?;
    results.push(json!({"backend": backend.as_str(), "kind": "seed", "seconds": seeded}));
    if let Some(ctx) = frames {
        frames::section(ctx, url, backend, report, results)?;
    }
    if wants(Section::Load) {
        load(db, report, results)?;
    }
    if wants(Section::Bulk) {
        bulk(db, report, results)?;
    }
    if wants(Section::Stream) {
        stream(db, report, results)?;
    }
    Ok(())
}

/// W1, W2 and W4 on every stack (and the TLS cost on PostgreSQL).
fn load(db: &Db, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    let Db { bins, url, backend, plan } = *db;

    if backend != Backend::Sqlite {
        let mode = keel_pool::Config::new(url).map_err(|e| anyhow::anyhow!("{e}"))?.tls_config().mode();
        writeln!(
            report,
            "TLS: every stack connects through keel-pool's connector with sslmode={mode} \
             (the URL's, else the default `prefer`: TLS whenever the server offers it).\n"
        )?;
    }
    let stacks = stacks(backend);
    let mut header = "| workload | stack | ops/s | p50 µs | p99 µs | errors | wrong | keel / this |\n|---|---|---|---|---|---|---|---|\n".to_owned();
    for (label, workload, concurrency) in RUNS {
        let mut keel_ops = 0.0;
        for stack in &stacks {
            let (bin, mut args): (&Path, Vec<String>) = if *stack == "keel" {
                (&bins.demo, vec!["load".into(), workload.to_string()])
            } else {
                (&bins.bench, vec!["raw".into(), "--stack".into(), stack.to_string(), workload.to_string()])
            };
            args.extend(run_args(plan, *concurrency));
            if *stack == "keel" {
                args.push("--json".into());
            }
            let r = json_of(bin, url, &args)?;
            let ops = num(&r, "ops_per_s");
            if *stack == "keel" {
                keel_ops = ops;
            }
            let acquire =
                r["acquire_p99_us"].as_u64().map(|a| format!(" (acquire p99 {a} µs)")).unwrap_or_default();
            writeln!(
                header,
                "| {label} | {stack}{acquire} | {:.0} | {} | {} | {} | {} | {} |",
                ops,
                r["p50_us"],
                r["p99_us"],
                r["errors"],
                r["wrong_results"],
                if *stack == "keel" { "1.00".to_owned() } else { ratio(keel_ops, ops) }
            )?;
            results.push(json!({"backend": backend.as_str(), "kind": "load", "label": label, "stack": stack, "result": r}));
        }
    }
    writeln!(report, "{header}")?;
    if backend == Backend::Postgres {
        tls_cost(db, report, results)?;
    }
    if backend != Backend::Sqlite {
        cache_cost(db, report, results)?;
        http_write_read(bins, url, backend, 10_000, report, results)?;
    }
    Ok(())
}

/// W3: bulk inserts by every method.
fn bulk(db: &Db, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    let Db { bins, url, backend, plan } = *db;
    let mut bulk = "| W3 bulk insert | rows | seconds | rows/s |\n|---|---|---|---|\n".to_owned();
    let mut rates = std::collections::BTreeMap::new();
    for method in bulk_methods(backend) {
        let args = [
            "bulk".to_owned(),
            "--method".into(),
            method.to_owned(),
            "--rows".into(),
            plan.bulk_rows.to_string(),
        ];
        let r = json_of(&bins.bench, url, &args)?;
        rates.insert(method, num(&r, "rows_per_s"));
        writeln!(
            bulk,
            "| {method} | {} | {:.2} | {:.0} |",
            r["rows"],
            num(&r, "seconds"),
            num(&r, "rows_per_s")
        )?;
        results.push(json!({"backend": backend.as_str(), "kind": "bulk", "method": method, "result": r}));
    }
    writeln!(report, "{bulk}")?;
    let get = |m: &str| rates.get(m).copied().unwrap_or(0.0);
    write!(
        report,
        "W3 ratios: keel multi-row / diesel multi-row = {}",
        ratio(get("keel-multirow"), get("diesel-multirow"))
    )?;
    if backend == Backend::Postgres {
        write!(
            report,
            "; keel COPY / tokio-postgres COPY = {}",
            ratio(get("keel-copy"), get("tokio-postgres-copy"))
        )?;
    }
    writeln!(report, "\n")?;
    Ok(())
}

/// Streams every user through keel-bench, reporting rows/s and peak RSS.
fn stream(db: &Db, report: &mut String, results: &mut Vec<Value>) -> Result<()> {
    let Db { bins, url, backend, plan } = *db;
    let args = ["stream".to_owned(), "--rows".into(), plan.stream_rows.to_string()];
    let r = json_of(&bins.bench, url, &args)?;
    writeln!(
        report,
        "Streaming {} users: {:.1} s ({:.0} rows/s), RSS {} MiB before, peak {} MiB.\n",
        r["rows"],
        num(&r, "seconds"),
        num(&r, "rows_per_s"),
        r["rss_before_kib"].as_u64().unwrap_or(0) / 1024,
        r["peak_rss_kib"].as_u64().unwrap_or(0) / 1024
    )?;
    results.push(json!({"backend": backend.as_str(), "kind": "stream", "result": r}));
    Ok(())
}
