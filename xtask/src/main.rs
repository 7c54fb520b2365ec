//! `cargo xtask`: the repository's own tasks — migrations, database status, the test suite on
//! every backend, and CI. Every external command is echoed before it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use keel_pool::{Backend, Config, Pool};

mod bench;

/// The database `migrate` and `db status` use when neither `--database-url` nor `DATABASE_URL`
/// is given.
const DEFAULT_URL: &str = "sqlite://keel.db";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "keel's repository tasks")]
struct Cli {
    /// Database URL for `migrate` and `db status` (default: DATABASE_URL, then sqlite://keel.db).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Apply pending migrations to the database.
    Migrate,
    /// Database inspection.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Prepare test templates, run the whole workspace suite on every reachable backend, and
    /// print per backend how many tests ran and how many were skipped.
    Test {
        /// Extra arguments passed to `cargo nextest run` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks: seeds a dataset and runs every workload for keel and for the raw stacks it
    /// wraps (diesel-async + bb8 with and without the checkout ping, tokio-postgres), printing
    /// ops/s, p50, p99 and keel's ratio to each; also target/bench/report.md and results.json.
    Bench {
        /// postgres, mysql, sqlite or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// A small dataset and 1 s runs (under 2 minutes).
        #[arg(long)]
        quick: bool,
    },
    /// What CI runs: fmt check, clippy with -D warnings, then `test` with every backend
    /// required (KEEL_REQUIRE_BACKENDS=postgres,mysql,sqlite), failing if any was skipped.
    Ci,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Per backend: reachable?, server version, applied and pending migrations.
    Status,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = repo_root();
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match cli.command {
        Task::Migrate => runtime()?.block_on(migrate(cli.database_url.as_deref().unwrap_or(DEFAULT_URL))),
        Task::Db { command: DbCommand::Status } => {
            runtime()?.block_on(db_status(cli.database_url.as_deref()))
        }
        Task::Test { args } => test(&root, &args, &[]),
        Task::Ci => ci(&root),
        Task::Bench { backend, quick } => bench::bench(&root, &backend, quick),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

async fn migrate(url: &str) -> Result<()> {
    let config = Config::new(url)?;
    println!("migrating {}", config.url());
    let pool = Pool::connect(config).await.context("connecting")?;
    let applied = pool.migrate().await.context("running migrations")?;
    if applied.is_empty() {
        println!("up to date");
    }
    for v in applied {
        println!("applied {v}");
    }
    Ok(())
}

async fn db_status(url: Option<&str>) -> Result<()> {
    let given = url.map(Config::new).transpose()?;
    for backend in Backend::ALL {
        let url = match (&given, backend) {
            (Some(c), b) if c.backend() == b => c.url().expose_secret().to_owned(),
            (_, Backend::Postgres) => "postgres://root@127.0.0.1:5432/test".to_owned(),
            (_, Backend::Mysql) => "mysql://root@127.0.0.1:3306/test".to_owned(),
            (_, Backend::Sqlite) => DEFAULT_URL.to_owned(),
        };
        let config = Config::new(&url)?.connect_timeout(std::time::Duration::from_secs(2));
        println!("{backend:<8} {}", config.url());
        let pool = match Pool::connect(config).await {
            Ok(pool) => pool,
            Err(e) => {
                println!("         reachable: no — {e}");
                continue;
            }
        };
        println!("         reachable: yes");
        match pool.server_version().await {
            Ok(v) => println!("         version:   {v}"),
            Err(e) => println!("         version:   unknown ({e})"),
        }
        match pool.migration_status().await {
            Ok(s) => {
                println!("         applied:   {} {}", s.applied.len(), s.applied.join(", "));
                println!("         pending:   {} {}", s.pending.len(), s.pending.join(", "));
            }
            Err(e) => println!("         migrations: unknown ({e})"),
        }
    }
    Ok(())
}

/// Runs a command after echoing it; fails when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    eprintln!("$ {}{}", envs.iter().map(|e| format!("{e} ")).collect::<String>(), shown);
    let status = cmd.status().with_context(|| format!("starting `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Outcomes per backend from the report file the test helpers append to.
#[derive(Default, Debug)]
struct Tally {
    ran: usize,
    skipped: usize,
    failed: usize,
    reasons: BTreeMap<String, usize>,
}

fn read_report(path: &Path) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for b in Backend::ALL {
        tallies.entry(b.to_string()).or_default();
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(4, '\t');
        let (Some(backend), Some(outcome)) = (parts.next(), parts.next()) else { continue };
        let reason = parts.nth(1).unwrap_or("").to_owned();
        let t = tallies.entry(backend.to_owned()).or_default();
        match outcome {
            "ran" => t.ran += 1,
            "skipped" => {
                t.skipped += 1;
                *t.reasons.entry(reason).or_default() += 1;
            }
            _ => t.failed += 1,
        }
    }
    tallies
}

fn test(root: &Path, extra: &[String], env: &[(&str, &str)]) -> Result<()> {
    let report_dir = root.join("target").join("keel-test-report");
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).with_context(|| format!("creating {}", report_dir.display()))?;

    // Migrate the PostgreSQL template once for this run; every test database is a copy.
    eprintln!("preparing the PostgreSQL test template (keel_template)");
    let required = env.iter().any(|(k, v)| *k == "KEEL_REQUIRE_BACKENDS" && v.contains("postgres"))
        || keel_pool::testing::required_backends().contains(&Backend::Postgres);
    match runtime()?.block_on(keel_pool::testing::prepare_postgres_template(true)) {
        Ok(()) => {}
        Err(keel_pool::testing::TestDbError::Unavailable { reason, .. }) if !required => {
            eprintln!("PostgreSQL unreachable, its tests will be skipped: {reason}");
        }
        Err(e) => return Err(e).context("preparing the PostgreSQL template"),
    }

    // Everything else first, in parallel; then the `serial_` tests (server restarts,
    // server-wide counters) alone, so they neither disturb nor are disturbed by other tests.
    let suite = if has_nextest() {
        let phases = [("not test(/^serial_/)", false), ("test(/^serial_/)", true)];
        let mut result = Ok(());
        for (filter, serial) in phases {
            let mut cmd = cargo();
            cmd.args([
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
                "--no-tests=pass",
            ]);
            cmd.args(["-E", filter]).args(extra).env("KEEL_TEST_REPORT_DIR", &report_dir);
            if serial {
                cmd.args(["--test-threads", "1"]);
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            if let Err(e) = run(&mut cmd) {
                result = Err(e);
            }
        }
        result
    } else {
        eprintln!(
            "cargo-nextest not found; falling back to cargo test (serial_ tests run in parallel with the rest)"
        );
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
        cmd.args(extra).env("KEEL_TEST_REPORT_DIR", &report_dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let docs = if extra.is_empty() && has_nextest() {
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--all-features", "--doc"]);
        for (k, v) in env {
            doc.env(k, v);
        }
        run(&mut doc)
    } else {
        Ok(())
    };

    let tallies = read_report(&report_dir.join("results.tsv"));
    println!("\nper-backend results (tests that use a database):");
    println!("  {:<9} {:>5} {:>8} {:>7}", "backend", "ran", "skipped", "failed");
    for (backend, t) in &tallies {
        println!("  {backend:<9} {:>5} {:>8} {:>7}", t.ran, t.skipped, t.failed);
        for (reason, n) in &t.reasons {
            println!("            skipped {n}×: {reason}");
        }
    }
    suite?;
    docs?;
    let required: Vec<String> = env
        .iter()
        .find(|(k, _)| *k == "KEEL_REQUIRE_BACKENDS")
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    for backend in &required {
        let t = tallies.get(backend.as_str());
        if t.is_none_or(|t| t.ran == 0 || t.skipped > 0) {
            bail!("{backend} is required but its tests were skipped or did not run: {t:?}");
        }
    }
    Ok(())
}

fn ci(root: &Path) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    test(root, &[], &[("KEEL_REQUIRE_BACKENDS", "postgres,mysql,sqlite")])?;
    load_smoke(root)
}

/// Benchmarks do not run in CI as timings; this keeps the load path from rotting: seed a
/// small SQLite database and run `keel-demo load point-select --duration 1` (it fails on any
/// wrong result).
fn load_smoke(root: &Path) -> Result<()> {
    let dir = root.join("target/ci-smoke");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("creating target/ci-smoke")?;
    let url = format!("sqlite://{}", dir.join("smoke.db").display());
    let demo = |args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(["run", "--quiet", "-p", "keel-demo", "--", "--database-url", &url]).args(args);
        run(&mut cmd)
    };
    demo(&["seed", "--users", "500", "--jobs-per-user", "2", "--accounts", "10"])?;
    demo(&["load", "point-select", "--duration", "1", "--concurrency", "4"])
}
