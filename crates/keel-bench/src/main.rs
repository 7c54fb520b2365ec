//! `keel-bench`: the benchmark's raw baselines, written plainly — the same queries as keel's
//! repository on diesel-async + bb8 with no keel layers (with bb8's checkout ping and without),
//! and on PostgreSQL raw tokio-postgres with prepared statements and binary COPY. `cargo xtask
//! bench` drives it beside `keel-demo load`; both print the same JSON report (one object, last
//! line on stdout), so keel and the stacks it wraps are measured by one harness in one run.
//!
//! Modules: `raw` (the load harness on a raw stack), `diesel` and `tokio_pg` (the stacks),
//! `bulk` (one timed bulk insert per method), `stream` (streaming memory).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use keel_pool::Config;

mod bulk;
mod diesel;
mod raw;
mod stream;
mod tokio_pg;

#[derive(Parser)]
#[command(name = "keel-bench", version, about = "keel's benchmark baselines (driven by cargo xtask bench)")]
struct Cli {
    /// Database URL (postgres://, mysql://, mariadb://, sqlite://path); required.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A workload on a raw stack, reported as `keel-demo load --json` reports keel.
    Raw(raw::RawArgs),
    /// One bulk insert of fresh users, timed.
    Bulk(bulk::BulkArgs),
    /// Stream every user and report peak memory.
    Stream(stream::StreamArgs),
    /// Seed data as `keel-demo seed` does (stream uses it to top up users in a child process).
    #[command(hide = true)]
    Seed(keel_demo::seed::SeedArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    keel_demo::init_logging();
    let cli = Cli::parse();
    let url = cli.database_url.context("no database: pass --database-url or set DATABASE_URL")?;
    let config = Config::new(&url).context("reading --database-url")?.with_env_overrides()?;
    match cli.command {
        Command::Raw(args) => keel_demo::print_json(&raw::run(config, &args).await?),
        Command::Bulk(args) => keel_demo::print_json(&bulk::bulk(config, &args).await?),
        Command::Stream(args) => keel_demo::print_json(&stream::stream(config, &args).await?),
        Command::Seed(args) => keel_demo::seed::command(config, &args).await,
    }
}
