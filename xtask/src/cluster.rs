//! `cargo xtask cluster up|down|status`: the local PostgreSQL primary and streaming replica
//! the cluster tests use (`keel_test::cluster`, the same code), for trying replicas by hand.

use std::path::Path;

use anyhow::{Context, Result};
use keel_test::cluster::{self, Member};

/// `up MEMBER`: starts it (idempotent) and prints the running members' URLs on stdout.
pub fn up(target: &Path, member: &str) -> Result<()> {
    let member: Member = member.parse()?;
    eprintln!("starting {member} (and what it needs) under {}", target.join("cluster").display());
    let urls = cluster::up(target, member).with_context(|| format!("starting {member}"))?;
    println!("pg-primary {}", urls.primary);
    if let Some(r) = &urls.replica {
        println!("pg-replica {r}");
    }
    Ok(())
}

/// `down [MEMBER]`: stops one member, or everything (and removes the data).
pub fn down(target: &Path, member: Option<&str>) -> Result<()> {
    let member = member.map(str::parse::<Member>).transpose()?;
    cluster::down(target, member).context("stopping the cluster")?;
    eprintln!("stopped {}", member.map_or("the whole cluster", Member::as_str));
    Ok(())
}

/// `status [--json]`: running members, URLs and replication lag; with `--json`, one object
/// (member → URL) on the last line of stdout.
pub fn status(target: &Path, json: bool) -> Result<()> {
    let status = cluster::status(target).context("reading the cluster's state")?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            status.members.iter().map(|(m, url)| (m.as_str().to_owned(), url.clone().into())).collect();
        if let Some((bytes, time)) = &status.lag {
            eprintln!("replication lag: {bytes} bytes, replay lag {time}");
        }
        println!("{}", serde_json::Value::Object(map));
        return Ok(());
    }
    if status.members.is_empty() {
        println!("no cluster member is running");
    }
    for (m, url) in &status.members {
        println!("{m:<11} {url}");
    }
    if let Some((bytes, time)) = &status.lag {
        println!("replication lag: {bytes} bytes behind, replay lag {time}");
    }
    Ok(())
}
