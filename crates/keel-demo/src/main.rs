//! The `keel-demo` binary: parses the command line and calls into the [`keel_demo`] library.
//! Commands: `tour` (the default), `migrate`, `seed`, `load`, `serve`, `export`.
//!
//! The database URL comes from `--database-url`, then `DATABASE_URL`, then the embedded
//! default `sqlite://keel.db`, so `cargo run --release -p keel-demo` works with nothing else
//! installed.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use keel_demo::{export, load, seed, serve, tour};
use keel_pool::Config;

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
    /// Export a query or a table as Parquet, Arrow IPC, CSV, JSON Lines or a text table.
    Export(export::ExportArgs),
    /// Serve the HTTP API (one pool per process, one pooled connection per request).
    Serve(serve::ServeArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    keel_demo::init_logging();
    let cli = Cli::parse();
    let url = cli.database_url.unwrap_or_else(|| keel_demo::DEFAULT_URL.to_owned());
    let config = Config::new(&url)?.with_env_overrides()?;
    match cli.command.unwrap_or(Command::Tour) {
        Command::Tour => tour::run(keel_demo::open(config).await?).await,
        Command::Migrate => keel_demo::migrate(config).await,
        Command::Seed(args) => seed::command(config, &args).await,
        Command::Load(args) => load::command(config, &args).await,
        Command::Export(args) => export::command(config, &args).await,
        Command::Serve(args) => {
            // Installed before the port is announced: a signal sent as soon as the address is
            // printed is a graceful shutdown, not a kill.
            let signal = serve::shutdown_signal().context("installing the SIGINT/SIGTERM handlers")?;
            serve::run(config, args, signal).await
        }
    }
}
