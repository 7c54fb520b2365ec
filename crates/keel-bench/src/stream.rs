//! `keel-bench stream`: stream every user through the repository and report peak memory
//! (the stream's memory is bounded whatever the table size).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use keel_pool::Config;
use keel_repo::Repo;
use serde::Serialize;

/// Options of `keel-bench stream`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Make sure the table holds at least this many users first (inserted in batches).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
}

/// What streaming measured.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Backend name.
    pub backend: &'static str,
    /// Rows streamed.
    pub rows: u64,
    /// Seconds to stream them.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
    /// Resident memory when streaming started, KiB (VmRSS).
    pub rss_before_kib: u64,
    /// Peak resident memory of the process, KiB (VmHWM), read after streaming.
    pub peak_rss_kib: u64,
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Tops the users table up to `rows`, then streams every user and reports memory.
pub async fn stream(config: Config, args: &StreamArgs) -> Result<StreamReport> {
    use futures_util::TryStreamExt as _;
    let backend = config.backend();
    let pool = keel_pool::Pool::connect(config).await?;
    let repo = Repo::new(pool.clone());
    let have = repo.table_counts().await?.users as u64;
    if have < args.rows {
        // Insert in a child process so this one's peak memory is the stream's alone.
        let exe = std::env::current_exe().context("finding keel-bench")?;
        let status = std::process::Command::new(exe)
            .arg("--database-url")
            .arg(pool.config().url().expose_secret())
            .args([
                "seed",
                "--users",
                &(args.rows - have).to_string(),
                "--jobs-per-user",
                "0",
                "--batch",
                "50000",
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("topping up users failed");
        }
    }
    let rss_before_kib = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let mut n = 0u64;
    let mut users = std::pin::pin!(repo.stream_users(keel_repo::UserFilter::new()));
    while let Some(user) = users.try_next().await? {
        std::hint::black_box(&user);
        n += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(StreamReport {
        backend: backend.as_str(),
        rows: n,
        seconds,
        rows_per_s: n as f64 / seconds,
        rss_before_kib,
        peak_rss_kib: proc_status_kib("VmHWM:"),
    })
}
