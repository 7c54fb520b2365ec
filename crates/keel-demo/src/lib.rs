//! keel-demo: the first thing a new keel user runs, as a library the `keel-demo` binary
//! (`main.rs`, argument parsing only) and the tests call into.
//!
//! What it is for: showing keel on its demo domain (users, jobs, accounts, transfers) — a
//! guided tour, realistic seed data, a load generator whose results are checked, and an HTTP
//! API — on whichever backend the URL names, with nothing installed for the SQLite default.
//! What it is not for: the benchmark's raw baselines (`keel-bench`) or anything a service
//! would import; services use `keel-pool` and `keel-repo`.
//!
//! Modules:
//! - [`tour`]: `keel-demo tour` (the default command), a walk through what keel does.
//! - [`seed`]: `keel-demo seed`, realistic users, jobs and accounts through the batch path.
//! - [`export`]: `keel-demo export`, a query or table as Parquet, Arrow, CSV, JSON Lines or a text table.
//! - [`load`]: `keel-demo load`, workloads with checked results, cancellation, a JSON report.
//! - [`serve`]: `keel-demo serve`, the axum HTTP API; [`serve::router`] for in-process use.
//! - [`table`]: small aligned text tables and number formatting for stdout.

use anyhow::{Context, Result};
use keel_pool::{Config, Pool};

pub mod export;
pub mod load;
pub mod seed;
pub mod serve;
pub mod table;
pub mod tour;

/// The database when neither `--database-url` nor `DATABASE_URL` is given: an SQLite file in
/// the working directory, so the demo runs on a machine with no server.
pub const DEFAULT_URL: &str = "sqlite://keel.db";

/// Logs to stderr (stdout is for results), filtered by `RUST_LOG`, `warn` by default.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Opens a pool on `config`, the error naming the database (password hidden).
pub async fn open(config: Config) -> Result<Pool> {
    let url = config.url().to_string();
    Pool::connect(config).await.with_context(|| format!("opening {url}"))
}

/// The Redis cache at `url` with the default [`keel_cache::CacheConfig`]. Fails only for a URL
/// that cannot be used (the error never shows a password); a Redis that is down only leaves the
/// cache bypassed until it answers.
pub async fn connect_cache(url: &str) -> Result<keel_cache::Cache> {
    keel_cache::Cache::connect(url, keel_cache::CacheConfig::new())
        .await
        .context("setting up the Redis cache")
}

/// `keel-demo migrate`: applies pending migrations and lists what was applied.
pub async fn migrate(config: Config) -> Result<()> {
    let pool = open(config).await?;
    let applied = pool.migrate(&keel_schema::MIGRATIONS).await.context("running migrations")?;
    if applied.is_empty() {
        println!("{}: up to date, nothing to apply", pool.config().url());
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
}

/// Prints `value` as one JSON object on one line of stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value).context("encoding the report")?);
    Ok(())
}
