//! `keel-demo`: the first thing a new keel user runs. `tour` (the default) migrates the
//! database and walks through what keel does; `migrate` applies pending migrations.
//!
//! The database URL comes from `--database-url`, then `DATABASE_URL`, then the embedded
//! default `sqlite://keel.db`, so `cargo run --release -p keel-demo` works with nothing else
//! installed.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use keel_pool::{Config, Pool};

mod bench;
mod load;
mod seed;
mod serve;
mod table;
mod tour;

/// The default database: an SQLite file in the working directory.
const DEFAULT_URL: &str = "sqlite://keel.db";

#[derive(Parser)]
#[command(name = "keel-demo", version, about = "The keel guided tour and tools")]
struct Cli {
    /// Database URL (postgres://, mysql://, mariadb://, sqlite://path, sqlite::memory:).
    /// Defaults to DATABASE_URL, then sqlite://keel.db.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then walk through what keel does (the default).
    Tour,
    /// Apply pending migrations and list what was applied.
    Migrate,
    /// Generate realistic users, jobs and accounts through the batch path (COPY on PostgreSQL).
    Seed(seed::SeedArgs),
    /// Run a workload against seeded data and report throughput, latency and correctness.
    Load(load::LoadArgs),
    /// Benchmark baseline: a workload on a raw stack (driven by `cargo xtask bench`).
    #[command(hide = true)]
    BenchRaw(bench::RawArgs),
    /// Benchmark: one bulk insert of fresh users, timed (driven by `cargo xtask bench`).
    #[command(hide = true)]
    BenchBulk(bench::BulkArgs),
    /// Benchmark: stream every user and report peak memory (driven by `cargo xtask bench`).
    #[command(hide = true)]
    BenchStream(bench::StreamArgs),
    /// Serve the HTTP API (one pool per process, one pooled connection per request).
    Serve(serve::ServeArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let url = cli.database_url.unwrap_or_else(|| DEFAULT_URL.to_owned());
    let config = Config::new(&url)?.with_env_overrides()?;
    match cli.command.unwrap_or(Command::Tour) {
        Command::Tour => tour(config).await,
        Command::Migrate => migrate(config).await,
        Command::Serve(args) => serve::run(config, args).await,
        Command::Load(args) => {
            let config = match args.pool_size {
                Some(n) => config.max_size(n),
                None => config,
            };
            let pool = open(config).await?;
            let report = load::run(&pool, &args).await?;
            if args.json {
                print_json(&report)?;
            } else {
                println!("{}", load::summary(&report));
            }
            pool.close(std::time::Duration::from_secs(5)).await;
            if load::failed(&report) {
                anyhow::bail!("the load run found wrong results or a changed balance");
            }
            Ok(())
        }
        Command::BenchRaw(args) => print_json(&bench::run_raw(config, &args).await?),
        Command::BenchBulk(args) => print_json(&bench::bulk(config, &args).await?),
        Command::BenchStream(args) => print_json(&bench::stream(config, &args).await?),
        Command::Seed(args) => {
            let pool = open(config).await?;
            pool.migrate().await.context("running migrations")?;
            let seeded = seed::run(&pool, &args).await?;
            println!("{}", seed::summary(&seeded));
            Ok(())
        }
    }
}

/// Prints one JSON object on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value).context("encoding the report")?);
    Ok(())
}

async fn open(config: Config) -> Result<Pool> {
    let url = config.url().to_string();
    Pool::connect(config).await.with_context(|| format!("opening {url}"))
}

async fn migrate(config: Config) -> Result<()> {
    let pool = open(config).await?;
    let applied = pool.migrate().await.context("running migrations")?;
    if applied.is_empty() {
        println!("{}: up to date, nothing to apply", pool.config().url());
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
}

async fn tour(config: Config) -> Result<()> {
    let pool = open(config).await?;
    tour::run(pool).await
}
