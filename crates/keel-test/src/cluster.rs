//! Local PostgreSQL clusters for tests and demos: a primary and a streaming replica on free
//! loopback ports, started from the server packages on the machine (`/usr/lib/postgresql/*/bin`)
//! and used through plain libpq URLs. `cargo xtask cluster up|down|status` drives the same code.
//!
//! - [`up`] is idempotent (a member already running is left alone) and serialised between
//!   processes by a file lock, so parallel tests can all call it; `pg-replica` starts the
//!   primary first.
//! - State (ports, data directory) lives in `<target>/cluster/state`; the data and sockets live
//!   in `/tmp/keel-cluster-<hash of the target dir>/`, owned by the `postgres` user, who must
//!   reach them wherever the checkout is (PostgreSQL refuses to run as root).
//! - For tests only: `fsync = off`, trust authentication on
//!   127.0.0.1, superuser `root`. Every URL names database `keel`, created on the primary (the
//!   replica has it through the WAL).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::instances::{free_port, pg_bin};

/// A cluster member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Member {
    /// The primary.
    PgPrimary,
    /// One streaming replica of the primary (hot standby).
    PgReplica,
}

impl Member {
    /// The member's name: `pg-primary`, `pg-replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Member::PgPrimary => "pg-primary",
            Member::PgReplica => "pg-replica",
        }
    }

    fn data(self) -> &'static str {
        match self {
            Member::PgPrimary => "primary",
            Member::PgReplica => "replica",
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Member {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, ClusterError> {
        match s {
            "pg-primary" => Ok(Member::PgPrimary),
            "pg-replica" => Ok(Member::PgReplica),
            "pgbouncer" => Err(ClusterError(
                "pgbouncer: not built yet (PgBouncer transaction mode is still open in issue 14)".to_owned(),
            )),
            other => Err(ClusterError(format!(
                "unknown cluster member {other:?}: expected pg-primary or pg-replica"
            ))),
        }
    }
}

/// A failure starting, stopping or reading the cluster: what ran and what it said.
#[derive(Debug, thiserror::Error)]
#[error("cluster: {0}")]
pub struct ClusterError(String);

/// The URLs of the running members (plain libpq URIs; `psql` takes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Urls {
    /// The primary, when running.
    pub primary: String,
    /// The replica, when running.
    pub replica: Option<String>,
}

/// What [`status`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Running members and their URLs, in member order.
    pub members: Vec<(Member, String)>,
    /// The replica's lag as the primary sees it (`pg_stat_replication`): WAL bytes behind and
    /// replay lag, when a replica streams.
    pub lag: Option<(u64, String)>,
}

/// The target directory tests and xtask use: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn default_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// Where one target directory's cluster keeps its state, and its data.
struct Layout {
    state: PathBuf,
    data: PathBuf,
}

fn layout(target: &Path) -> Result<Layout, ClusterError> {
    let state = target.join("cluster");
    std::fs::create_dir_all(&state)
        .map_err(|e| ClusterError(format!("creating {}: {e}", state.display())))?;
    let canonical = std::fs::canonicalize(&state).unwrap_or_else(|_| state.clone());
    // FNV-1a of the path: a short, stable name per checkout.
    let hash = canonical
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    Ok(Layout { state, data: PathBuf::from(format!("/tmp/keel-cluster-{:08x}", hash as u32)) })
}

fn run(cmd: &mut Command) -> Result<String, ClusterError> {
    crate::instances::run(cmd).map_err(ClusterError)
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    cmd
}

/// Holds the cluster's file lock while alive.
struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock(l: &Layout) -> Result<Locked, ClusterError> {
    let path = l.state.join("lock");
    let file = File::create(&path).map_err(|e| ClusterError(format!("creating {}: {e}", path.display())))?;
    file.lock().map_err(|e| ClusterError(format!("locking {}: {e}", path.display())))?;
    Ok(Locked(file))
}

fn port_file(l: &Layout, m: Member) -> PathBuf {
    l.state.join(format!("{}.port", m.as_str()))
}

/// The port a member had (kept across a stop, so a restarted member keeps its URL), else a
/// free one.
fn port_for(l: &Layout, m: Member) -> Result<u16, ClusterError> {
    match std::fs::read_to_string(port_file(l, m)).ok().and_then(|p| p.trim().parse().ok()) {
        Some(port) => Ok(port),
        None => free_port().map_err(ClusterError),
    }
}

fn url(port: u16) -> String {
    format!("postgres://root@127.0.0.1:{port}/keel")
}

/// The member's port, when its server runs.
fn running(l: &Layout, bin: &Path, m: Member) -> Option<u16> {
    let port: u16 = std::fs::read_to_string(port_file(l, m)).ok()?.trim().parse().ok()?;
    let dir = l.data.join(m.data());
    let ok = as_postgres(bin, "pg_ctl").arg("status").arg("-D").arg(&dir).output().ok()?.status.success();
    ok.then_some(port)
}

fn psql(bin: &Path, port: u16, sql: &str) -> Result<String, ClusterError> {
    run(crate::instances::psql(bin, port).args(["-At", "-c", sql]))
}

fn start(bin: &Path, dir: &Path) -> Result<(), ClusterError> {
    let log = dir.with_extension("log");
    run(as_postgres(bin, "pg_ctl").args(["start", "-w", "-t", "60", "-D"]).arg(dir).arg("-l").arg(&log))
        .map_err(|e| {
            ClusterError(format!("{e}\nserver log: {}", std::fs::read_to_string(&log).unwrap_or_default()))
        })?;
    Ok(())
}

fn append_conf(dir: &Path, text: &str) -> Result<(), ClusterError> {
    let path = dir.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&path).unwrap_or_default();
    conf.push_str(text);
    std::fs::write(&path, conf).map_err(|e| ClusterError(format!("writing {}: {e}", path.display())))
}

fn up_primary(l: &Layout, bin: &Path) -> Result<u16, ClusterError> {
    if let Some(port) = running(l, bin, Member::PgPrimary) {
        return Ok(port);
    }
    let dir = l.data.join(Member::PgPrimary.data());
    let port = port_for(l, Member::PgPrimary)?;
    if !dir.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&l.data);
        std::fs::create_dir_all(&l.data)
            .map_err(|e| ClusterError(format!("creating {}: {e}", l.data.display())))?;
        run(Command::new("chown").arg("postgres:").arg(&l.data))?;
        run(Command::new("chmod").arg("700").arg(&l.data))?;
        run(as_postgres(bin, "initdb").arg("-D").arg(&dir).args([
            "-U",
            "root",
            "--auth=trust",
            "-E",
            "UTF8",
        ]))?;
        let hba =
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n";
        std::fs::write(dir.join("pg_hba.conf"), hba).map_err(|e| ClusterError(e.to_string()))?;
    }
    append_conf(
        &dir,
        &format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nwal_level = replica\n\
             max_wal_senders = 5\nhot_standby = on\nfsync = off\nmax_connections = 300\n\
             shared_buffers = 32MB\n",
            l.data.display()
        ),
    )?;
    run(Command::new("chown").arg("-R").arg("postgres:").arg(&l.data))?;
    start(bin, &dir)?;
    if psql(bin, port, "SELECT 1 FROM pg_database WHERE datname = 'keel'")?.trim().is_empty() {
        psql(bin, port, "CREATE DATABASE keel")?;
    }
    std::fs::write(port_file(l, Member::PgPrimary), port.to_string())
        .map_err(|e| ClusterError(e.to_string()))?;
    Ok(port)
}

fn up_replica(l: &Layout, bin: &Path, primary: u16) -> Result<u16, ClusterError> {
    if let Some(port) = running(l, bin, Member::PgReplica) {
        return Ok(port);
    }
    let dir = l.data.join(Member::PgReplica.data());
    let port = port_for(l, Member::PgReplica)?;
    if !dir.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        run(as_postgres(bin, "pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary.to_string(), "-U", "root", "-D"])
            .arg(&dir)
            .args(["-R", "-X", "stream", "-c", "fast"]))?;
    }
    append_conf(
        &dir,
        &format!(
            "port = {port}\nhot_standby_feedback = on\nprimary_conninfo = 'host=127.0.0.1 port={primary} user=root'\n"
        ),
    )?;
    run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))?;
    start(bin, &dir)?;
    let started = Instant::now();
    while psql(bin, port, "SELECT pg_is_in_recovery()").map(|s| s.trim().to_owned()).ok().as_deref()
        != Some("t")
    {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(ClusterError("the replica did not come up in recovery within 30 s".to_owned()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(port_file(l, Member::PgReplica), port.to_string())
        .map_err(|e| ClusterError(e.to_string()))?;
    Ok(port)
}

/// Starts `member` (and what it needs) unless it runs; returns the running members' URLs.
pub fn up(target: &Path, member: Member) -> Result<Urls, ClusterError> {
    let l = layout(target)?;
    let bin = pg_bin().map_err(ClusterError)?;
    let _lock = lock(&l)?;
    let primary = up_primary(&l, &bin)?;
    if member == Member::PgReplica {
        up_replica(&l, &bin, primary)?;
    }
    Ok(urls(&l, &bin))
}

fn urls(l: &Layout, bin: &Path) -> Urls {
    Urls {
        primary: running(l, bin, Member::PgPrimary).map(url).unwrap_or_default(),
        replica: running(l, bin, Member::PgReplica).map(url),
    }
}

fn stop(l: &Layout, bin: &Path, m: Member) -> Result<(), ClusterError> {
    if running(l, bin, m).is_some() {
        run(as_postgres(bin, "pg_ctl").args(["stop", "-w", "-m", "fast", "-D"]).arg(l.data.join(m.data())))?;
    }
    Ok(())
}

/// Stops one member (`pg-primary` stops the replica too) or, with `None`, everything, and
/// removes the data. Idempotent.
pub fn down(target: &Path, member: Option<Member>) -> Result<(), ClusterError> {
    let l = layout(target)?;
    let bin = pg_bin().map_err(ClusterError)?;
    let _lock = lock(&l)?;
    match member {
        Some(Member::PgReplica) => stop(&l, &bin, Member::PgReplica),
        Some(Member::PgPrimary) => {
            stop(&l, &bin, Member::PgReplica)?;
            stop(&l, &bin, Member::PgPrimary)
        }
        None => {
            stop(&l, &bin, Member::PgReplica)?;
            stop(&l, &bin, Member::PgPrimary)?;
            let _ = std::fs::remove_dir_all(&l.data);
            for m in [Member::PgPrimary, Member::PgReplica] {
                let _ = std::fs::remove_file(port_file(&l, m));
            }
            Ok(())
        }
    }
}

/// The running members, their URLs and the replica's lag.
pub fn status(target: &Path) -> Result<Status, ClusterError> {
    let l = layout(target)?;
    let bin = pg_bin().map_err(ClusterError)?;
    let mut members = Vec::new();
    for m in [Member::PgPrimary, Member::PgReplica] {
        if let Some(port) = running(&l, &bin, m) {
            members.push((m, url(port)));
        }
    }
    let lag = match running(&l, &bin, Member::PgPrimary) {
        Some(port) => psql(
            &bin,
            port,
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint || '|' || COALESCE(replay_lag::text, '0') \
             FROM pg_stat_replication LIMIT 1",
        )
        .ok()
        .and_then(|s| {
            let (bytes, time) = s.trim().split_once('|')?;
            Some((bytes.parse().ok()?, time.to_owned()))
        }),
        None => None,
    };
    Ok(Status { members, lag })
}
