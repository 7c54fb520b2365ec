//! `cargo xtask`: the repository's own tasks, one file each — `db` (migrate, db status),
//! `test` (the suite on every backend), `ci`, `tidy` (the repository's shape), `bench` (keel
//! beside the raw stacks it wraps). This file parses the command line and holds the helpers
//! every task shares; every external command is echoed before it runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod cluster;
mod db;
mod test;
mod tidy;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "keel's repository tasks")]
struct Cli {
    /// Database URL for `migrate` and `db status` (default: DATABASE_URL, then sqlite://keel.db
    /// for `migrate` and the test servers for `db status`).
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
    /// Benchmarks: seeds a dataset and runs every workload for keel (`keel-demo load`) and for
    /// the raw stacks it wraps (`keel-bench`: diesel-async + bb8 with and without the checkout
    /// ping, tokio-postgres), printing ops/s, p50, p99 and keel's ratio to each; whole tables
    /// as Arrow and Parquet beside ConnectorX, ADBC and pandas (Python packages installed into
    /// target/bench/venv); also target/bench/report.md and results.json.
    Bench {
        /// postgres, mysql, sqlite or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// A small dataset and 1 s runs (under 2 minutes).
        #[arg(long)]
        quick: bool,
        /// Run only this section: frames, load, bulk, stream (after seeding each backend), or
        /// cluster (replica routing, read-your-writes and PgBouncer on the local PostgreSQL
        /// cluster).
        #[arg(long, value_enum)]
        only: Option<bench::Section>,
    },
    /// Local PostgreSQL cluster (a primary, a streaming replica and PgBouncer on free loopback
    /// ports, data under /tmp/keel-cluster-*, state under target/cluster/): up, down, status.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Check the repository's shape: every .rs file opens with `//!`, every `pub mod` is in
    /// its file's map, no dbg!/todo!/unimplemented! left in.
    Tidy,
    /// What CI runs: fmt check, clippy with -D warnings, tidy, then `test` with every backend
    /// required (KEEL_REQUIRE_BACKENDS=postgres,mysql,sqlite), failing if any was skipped, then
    /// a load smoke run on SQLite.
    Ci,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Start a member (pg-primary, pg-replica or pgbouncer; the replica and PgBouncer start
    /// the primary first) unless it runs, and print the running members' URLs.
    Up {
        /// pg-primary, pg-replica or pgbouncer.
        member: String,
    },
    /// Stop one member (pg-replica or pgbouncer: only it; pg-primary: all three) or, without
    /// one, everything.
    Down {
        /// pg-primary, pg-replica or pgbouncer; none: the whole cluster, data removed.
        member: Option<String>,
    },
    /// Running members, their URLs and the replication lag.
    Status {
        /// One JSON object (member -> URL) on the last line of stdout.
        #[arg(long)]
        json: bool,
    },
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
    let url = cli.database_url.as_deref();
    match cli.command {
        Task::Migrate => runtime()?.block_on(db::migrate(url)),
        Task::Db { command: DbCommand::Status } => runtime()?.block_on(db::status(url)),
        Task::Test { args } => test::test(&root, &args, &[]),
        Task::Cluster { command } => {
            let target = keel_test::cluster::default_target_dir();
            match command {
                ClusterCommand::Up { member } => cluster::up(&target, &member),
                ClusterCommand::Down { member } => cluster::down(&target, member.as_deref()),
                ClusterCommand::Status { json } => cluster::status(&target, json),
            }
        }
        Task::Tidy => tidy::check(&root),
        Task::Ci => ci::ci(&root),
        Task::Bench { backend, quick, only } => bench::bench(&root, &backend, quick, only),
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

/// Prints `cmd` (with the environment it sets) to stderr, as `$ …`.
fn echo(cmd: &Command) -> String {
    let shown = std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let envs: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    eprintln!("$ {envs}{shown}");
    shown
}

/// Runs a command after echoing it; fails when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = echo(cmd);
    let status = cmd.status().with_context(|| format!("starting `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}
