//! `cargo xtask cluster up|down|status`: the local PostgreSQL primary, streaming replica and
//! PgBouncer the cluster tests use (`keel_test::cluster`, the same code), for trying them by
//! hand. URLs go to stdout, progress to stderr.

use std::path::Path;

use anyhow::{Context, Result};
use keel_test::cluster::{self, Lag, Member, Status};

/// `up MEMBER`: starts it (idempotent) and prints the running members' URLs on stdout, one
/// `member url` line each.
pub fn up(target: &Path, member: &str) -> Result<()> {
    let member: Member = member.parse()?;
    eprintln!("starting {member} (and what it needs); state under {}", target.join("cluster").display());
    let started = std::time::Instant::now();
    let urls = cluster::up(target, member).with_context(|| format!("starting {member}"))?;
    eprintln!("{member} is up ({:.1} s)", started.elapsed().as_secs_f64());
    for m in Member::ALL {
        if let Some(url) = urls.get(m) {
            println!("{m:<10} {url}");
        }
    }
    Ok(())
}

/// `down [MEMBER]`: stops one member, or everything (and removes the data).
pub fn down(target: &Path, member: Option<&str>) -> Result<()> {
    let member = member.map(str::parse::<Member>).transpose()?;
    let what = member.map_or("the whole cluster", Member::as_str);
    cluster::down(target, member).with_context(|| format!("stopping {what}"))?;
    eprintln!("stopped {what}");
    Ok(())
}

fn lag_line(lag: &Lag) -> String {
    let bytes = lag.bytes.map_or("unknown".to_owned(), |b| format!("{b} bytes"));
    let replay = lag.replay.map_or("none (idle)".to_owned(), |d| format!("{:.3} ms", d.as_secs_f64() * 1e3));
    format!("replication lag: {bytes} behind, replay lag {replay}")
}

/// `status [--json]`: running members, URLs and replication lag; with `--json`, one object
/// (member -> URL) on the last line of stdout and the lag on stderr.
pub fn status(target: &Path, json: bool) -> Result<()> {
    let status: Status = cluster::status(target).context("reading the cluster's state")?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            status.members.iter().map(|(m, url)| (m.as_str().to_owned(), url.clone().into())).collect();
        if let Some(lag) = &status.lag {
            eprintln!("{}", lag_line(lag));
        }
        println!("{}", serde_json::Value::Object(map));
        return Ok(());
    }
    if status.members.is_empty() {
        println!("no cluster member is running");
    }
    for (m, url) in &status.members {
        println!("{m:<10} {url}");
    }
    if let Some(lag) = &status.lag {
        println!("{}", lag_line(lag));
    }
    Ok(())
}
