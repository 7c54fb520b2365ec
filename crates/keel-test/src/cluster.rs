//! Local PostgreSQL clusters for tests and demos: a primary, a streaming replica and a
//! PgBouncer in front of the primary, on free loopback ports, started from the packages on the
//! machine (`/usr/lib/postgresql/*/bin`, `pgbouncer`) and used through plain libpq URLs.
//! `cargo xtask cluster up|down|status` drives the same code.
//!
//! - [`up`] is idempotent (a member already running is left alone) and serialised between
//!   processes by a file lock (`<target>/cluster/lock`), so parallel test processes can all call
//!   it; `pg-replica` and `pgbouncer` start the primary first. [`down`] and [`status`] are the
//!   rest.
//! - State (data directory, ports, PgBouncer's pid) lives in `<target>/cluster/state.json`. The
//!   data, sockets and logs live in `/tmp/keel-cluster-<hash of the target dir>/` (mode 0700,
//!   owned by `postgres`): the servers refuse to run as root, and the `postgres` user must reach
//!   their files wherever the checkout is (under `/root`, say). Members keep their ports across
//!   a stop, so a restarted member answers at the same URL.
//! - For tests only: `fsync = off` (a crash may lose or corrupt data; `synchronous_commit` stays
//!   on: off lets the replica trail commits by up to `wal_writer_delay`), trust authentication on 127.0.0.1, superuser `root` (as in [`crate::instances`]).
//! - Every URL names database `keel` (`postgres://root@127.0.0.1:PORT/keel`), created on the
//!   primary; the replica has it through the WAL, and PgBouncer serves any database of the
//!   primary (`* = …`), so a test's own database is reachable through it by name.
//! - PgBouncer runs in transaction mode and stays strict: it rejects unknown startup
//!   parameters (`options`). When it is not installed, [`up`] runs `apt-get install -y
//!   pgbouncer` (saying so on stderr); the distro's own pgbouncer service, if the package
//!   starts one, is neither used nor touched.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::instances::{free_port, pg_bin};

/// The database every URL names.
pub const DATABASE: &str = "keel";
/// The superuser every URL names (trust authentication, no password).
pub const USER: &str = "root";

/// A cluster member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Member {
    /// The primary.
    PgPrimary,
    /// One streaming replica of the primary (hot standby, read-only).
    PgReplica,
    /// PgBouncer in transaction mode in front of the primary.
    PgBouncer,
}

impl Member {
    /// Every member, in start order.
    pub const ALL: [Member; 3] = [Member::PgPrimary, Member::PgReplica, Member::PgBouncer];

    /// The member's name: `pg-primary`, `pg-replica`, `pgbouncer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Member::PgPrimary => "pg-primary",
            Member::PgReplica => "pg-replica",
            Member::PgBouncer => "pgbouncer",
        }
    }

    /// Its directory under the cluster's data directory.
    fn dir(self) -> &'static str {
        match self {
            Member::PgPrimary => "primary",
            Member::PgReplica => "replica",
            Member::PgBouncer => "pgbouncer",
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

    /// Parses `pg-primary`, `pg-replica` or `pgbouncer`; anything else is
    /// [`ClusterError::UnknownMember`].
    fn from_str(s: &str) -> Result<Self, ClusterError> {
        Member::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ClusterError::UnknownMember(s.to_owned()))
    }
}

/// A failure starting, stopping or reading the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The name is not a member. Retrying cannot help; use `pg-primary`, `pg-replica` or
    /// `pgbouncer`.
    #[error("unknown cluster member {0:?}: expected pg-primary, pg-replica or pgbouncer")]
    UnknownMember(String),
    /// A server's binaries are missing (and, for PgBouncer, installing them failed). Retrying
    /// cannot help until the package is installed.
    #[error("{0}")]
    Binaries(String),
    /// Reading or writing a file or directory of the cluster failed. Retrying helps only if
    /// the cause (permissions, a full disk) went away.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`creating`, `writing`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A command could not run, or exited with an error. Retrying helps only if it failed for
    /// a passing reason (a port taken meanwhile).
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line as run.
        command: String,
        /// Its exit status, or why it could not start.
        status: String,
        /// What it printed (stderr, then stdout), trimmed.
        output: String,
    },
    /// A member started but did not become ready (accepting connections, in recovery for the
    /// replica) in time, or its start command failed. The server log's tail says why.
    #[error("{member} did not come up: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    NotReady {
        /// The member.
        member: Member,
        /// What failed or timed out.
        reason: String,
        /// The member's log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
}

/// The URLs of the running members: plain libpq URIs (`psql` takes them), database `keel`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Urls {
    /// The primary ([`up`] always starts it; empty only if it stopped again before `up`
    /// returned).
    pub primary: String,
    /// The replica, when running.
    pub replica: Option<String>,
    /// PgBouncer (transaction mode) in front of the primary, when running.
    pub pgbouncer: Option<String>,
}

impl Urls {
    /// The URL of `member`, when it runs.
    pub fn get(&self, member: Member) -> Option<&str> {
        match member {
            Member::PgPrimary => Some(self.primary.as_str()).filter(|u| !u.is_empty()),
            Member::PgReplica => self.replica.as_deref(),
            Member::PgBouncer => self.pgbouncer.as_deref(),
        }
    }
}

/// The replica's lag as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// WAL bytes not yet replayed: `pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)`; `None`
    /// before the replica reported a replay position.
    pub bytes: Option<u64>,
    /// `replay_lag`: how long the last replayed commits took to be replayed; `None` when the
    /// primary has been idle for a while (PostgreSQL clears it then).
    pub replay: Option<Duration>,
}

/// What [`status`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Running members and their URLs, in [`Member::ALL`] order.
    pub members: Vec<(Member, String)>,
    /// The replica's lag, when a replica streams from the primary.
    pub lag: Option<Lag>,
}

impl Status {
    /// The URL of `member`, when it runs.
    pub fn url(&self, member: Member) -> Option<&str> {
        self.members.iter().find(|(m, _)| *m == member).map(|(_, url)| url.as_str())
    }
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
    /// `<target>/cluster/`: the lock and `state.json`.
    state: PathBuf,
    /// `/tmp/keel-cluster-<hash>/`: the members' directories, sockets and logs.
    data: PathBuf,
}

impl Layout {
    fn member(&self, m: Member) -> PathBuf {
        self.data.join(m.dir())
    }

    fn log(&self, m: Member) -> PathBuf {
        match m {
            Member::PgBouncer => self.member(m).join("pgbouncer.log"),
            _ => self.data.join(format!("{}.log", m.dir())),
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.to_owned();
    move |source| ClusterError::Io { what, path, source }
}

fn layout(target: &Path) -> Result<Layout, ClusterError> {
    let state = target.join("cluster");
    std::fs::create_dir_all(&state).map_err(io("creating", &state))?;
    let canonical = std::fs::canonicalize(&state).unwrap_or_else(|_| state.clone());
    // FNV-1a of the path: a short, stable name per checkout.
    let hash = canonical
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    Ok(Layout { state, data: PathBuf::from(format!("/tmp/keel-cluster-{:08x}", hash as u32)) })
}

/// What `state.json` holds: where the data is, each member's port (kept across stops) and the
/// primary port PgBouncer was started against.
#[derive(Debug, Default)]
struct State {
    data_dir: PathBuf,
    ports: BTreeMap<Member, u16>,
    pgbouncer_pid: Option<u32>,
    pgbouncer_primary_port: Option<u16>,
}

impl State {
    fn path(l: &Layout) -> PathBuf {
        l.state.join("state.json")
    }

    /// The state on disk; a missing or unreadable file is an empty state (the servers
    /// themselves say what runs).
    fn load(l: &Layout) -> State {
        let mut state = State { data_dir: l.data.clone(), ..State::default() };
        let Ok(text) = std::fs::read_to_string(Self::path(l)) else { return state };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { return state };
        for m in Member::ALL {
            if let Some(p) = json["ports"][m.as_str()].as_u64().and_then(|p| u16::try_from(p).ok()) {
                state.ports.insert(m, p);
            }
        }
        state.pgbouncer_pid = json["pgbouncer_pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        state.pgbouncer_primary_port =
            json["pgbouncer_primary_port"].as_u64().and_then(|p| u16::try_from(p).ok());
        state
    }

    /// Writes the state (to a temporary file, then renamed: [`status`] reads without the lock).
    fn save(&self, l: &Layout) -> Result<(), ClusterError> {
        let ports: serde_json::Map<String, serde_json::Value> =
            self.ports.iter().map(|(m, p)| (m.as_str().to_owned(), (*p).into())).collect();
        let json = serde_json::json!({
            "data_dir": self.data_dir,
            "ports": ports,
            "pgbouncer_pid": self.pgbouncer_pid,
            "pgbouncer_primary_port": self.pgbouncer_primary_port,
        });
        let path = Self::path(l);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, format!("{json:#}\n")).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming into", &path))
    }
}

/// Runs `cmd`; returns its stdout, or an error naming the command with what it printed.
pub(crate) fn run(cmd: &mut Command) -> Result<String, ClusterError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ClusterError::Command {
        command: command.clone(),
        status: format!("could not start: {e}"),
        output: String::new(),
    })?;
    if !out.status.success() {
        let output = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        return Err(ClusterError::Command {
            command,
            status: out.status.to_string(),
            output: output.trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    cmd
}

fn binaries() -> Result<PathBuf, ClusterError> {
    pg_bin().map_err(ClusterError::Binaries)
}

/// The last lines of a log (for error messages).
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn not_ready(l: &Layout, member: Member, reason: impl fmt::Display) -> ClusterError {
    let log = l.log(member);
    ClusterError::NotReady { member, reason: reason.to_string(), log_tail: tail(&log), log }
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
    let file = File::create(&path).map_err(io("creating", &path))?;
    file.lock().map_err(io("locking", &path))?;
    Ok(Locked(file))
}

/// The port a member had, if it is still free (so a restarted member keeps its URL), else a
/// free one.
fn port_for(state: &State, m: Member) -> Result<u16, ClusterError> {
    if let Some(&port) = state.ports.get(&m)
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    {
        return Ok(port);
    }
    free_port().map_err(|e| ClusterError::Command {
        command: "bind 127.0.0.1:0".to_owned(),
        status: "failed".to_owned(),
        output: e,
    })
}

/// A libpq URI for the member listening on `port`.
fn url(port: u16) -> String {
    format!("postgres://{USER}@127.0.0.1:{port}/{DATABASE}")
}

/// The port of a running member, else `None`. PostgreSQL's is the one in `postmaster.pid`
/// (what the server really listens on); PgBouncer's is the state's, when its pid is a
/// pgbouncer process.
fn running(l: &Layout, bin: &Path, state: &State, m: Member) -> Option<u16> {
    match m {
        Member::PgBouncer => {
            let pid = pgbouncer_pid(l)?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "pgbouncer").then_some(())?;
            state.ports.get(&m).copied()
        }
        _ => {
            let dir = l.member(m);
            let ok = as_postgres(&bin.join("pg_ctl"))
                .arg("status")
                .arg("-D")
                .arg(&dir)
                .output()
                .ok()?
                .status
                .success();
            if !ok {
                return None;
            }
            // postmaster.pid: pid, data directory, start time, port, ...
            std::fs::read_to_string(dir.join("postmaster.pid")).ok()?.lines().nth(3)?.trim().parse().ok()
        }
    }
}

fn pgbouncer_pid(l: &Layout) -> Option<u32> {
    std::fs::read_to_string(l.member(Member::PgBouncer).join("pgbouncer.pid")).ok()?.trim().parse().ok()
}

/// Runs one statement with `psql` against `url`; returns its unaligned, tuples-only output.
fn psql(bin: &Path, url: &str, sql: &str) -> Result<String, ClusterError> {
    run(Command::new(bin.join("psql")).args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]))
}

/// The settings of every PostgreSQL member. A hot standby needs `max_connections` (and the
/// other limits) at least the primary's, so both get the same.
fn server_conf(l: &Layout, port: u16) -> String {
    format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n\
         fsync = off\n\
         max_connections = 200\nshared_buffers = 32MB\n",
        l.data.display()
    )
}

/// Writes the settings keel owns into `postgresql.auto.conf`, which the server reads last, so
/// they win over `postgresql.conf` (and over what `pg_basebackup -R` wrote there).
fn write_conf(dir: &Path, text: &str) -> Result<(), ClusterError> {
    let path = dir.join("postgresql.auto.conf");
    let text =
        format!("# Written by keel_test::cluster at each start; ALTER SYSTEM settings do not last.\n{text}");
    std::fs::write(&path, text).map_err(io("writing", &path))
}

fn chown_postgres(path: &Path) -> Result<(), ClusterError> {
    run(Command::new("chown").arg("-R").arg("postgres:").arg(path)).map(drop)
}

fn pg_start(l: &Layout, bin: &Path, m: Member) -> Result<(), ClusterError> {
    let dir = l.member(m);
    chown_postgres(&dir)?;
    run(as_postgres(&bin.join("pg_ctl"))
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(&dir)
        .arg("-l")
        .arg(l.log(m)))
    .map(drop)
    .map_err(|e| not_ready(l, m, e))
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn up_primary(l: &Layout, bin: &Path, state: &mut State) -> Result<u16, ClusterError> {
    if let Some(port) = running(l, bin, state, Member::PgPrimary) {
        state.ports.insert(Member::PgPrimary, port);
        return Ok(port);
    }
    let dir = l.member(Member::PgPrimary);
    if !dir.join("PG_VERSION").exists() {
        // A new primary: a replica or PgBouncer of an old one has nothing to follow.
        stop(l, bin, state, Member::PgBouncer)?;
        stop(l, bin, state, Member::PgReplica)?;
        match std::fs::remove_dir_all(&l.data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &l.data)(e)),
            _ => {}
        }
        std::fs::create_dir_all(&l.data).map_err(io("creating", &l.data))?;
        chown_postgres(&l.data)?;
        run(Command::new("chmod").arg("700").arg(&l.data))?;
        run(as_postgres(&bin.join("initdb")).arg("-D").arg(&dir).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]))?;
        let hba_path = dir.join("pg_hba.conf");
        let hba =
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n";
        std::fs::write(&hba_path, hba).map_err(io("writing", &hba_path))?;
    }
    let port = port_for(state, Member::PgPrimary)?;
    write_conf(&dir, &server_conf(l, port))?;
    pg_start(l, bin, Member::PgPrimary)?;
    let admin = format!("postgres://{USER}@127.0.0.1:{port}/postgres");
    if psql(bin, &admin, &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"))?
        .trim()
        .is_empty()
    {
        psql(bin, &admin, &format!("CREATE DATABASE {DATABASE}"))?;
    }
    state.ports.insert(Member::PgPrimary, port);
    state.save(l)?;
    Ok(port)
}

fn up_replica(l: &Layout, bin: &Path, state: &mut State, primary: u16) -> Result<u16, ClusterError> {
    let dir = l.member(Member::PgReplica);
    // A replica promoted by [`failover`] has no standby.signal: it no longer follows the
    // primary, so it is rebuilt from a new backup.
    let promoted = dir.join("PG_VERSION").exists() && !dir.join("standby.signal").exists();
    if promoted {
        stop(l, bin, state, Member::PgReplica)?;
    } else if let Some(port) = running(l, bin, state, Member::PgReplica) {
        state.ports.insert(Member::PgReplica, port);
        return Ok(port);
    }
    if promoted || !dir.join("PG_VERSION").exists() {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &dir)(e)),
            _ => {}
        }
        run(as_postgres(&bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &primary.to_string(), "-U", USER, "-D"])
            .arg(&dir)
            // A fast checkpoint: the default (spread) one made the backup wait ~90 s.
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]))?;
    }
    let port = port_for(state, Member::PgReplica)?;
    // primary_conninfo again (pg_basebackup -R wrote it here, and this file is rewritten): the
    // primary may have moved to another port since the backup.
    write_conf(
        &dir,
        &format!(
            "{}hot_standby_feedback = on\n\
             primary_conninfo = 'host=127.0.0.1 port={primary} user={USER} application_name=pg-replica'\n",
            server_conf(l, port)
        ),
    )?;
    pg_start(l, bin, Member::PgReplica)?;
    let replica = url(port);
    let in_recovery = wait_until(Duration::from_secs(30), || {
        psql(bin, &replica, "SELECT pg_is_in_recovery()").is_ok_and(|s| s.trim() == "t")
    });
    if !in_recovery {
        return Err(not_ready(l, Member::PgReplica, "not accepting connections in recovery within 30 s"));
    }
    state.ports.insert(Member::PgReplica, port);
    state.save(l)?;
    Ok(port)
}

/// The `pgbouncer` program, installed with apt-get when missing.
fn pgbouncer_program() -> Result<PathBuf, ClusterError> {
    let find = || {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join("pgbouncer"))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!(
        "keel cluster: pgbouncer is not installed; running apt-get update && apt-get install -y pgbouncer"
    );
    let install = run(Command::new("apt-get").arg("update")).and_then(|_| {
        run(Command::new("apt-get")
            .args(["install", "-y", "pgbouncer"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    });
    if let Err(e) = install {
        return Err(ClusterError::Binaries(format!(
            "pgbouncer is not installed and installing it failed: {e}"
        )));
    }
    find().ok_or_else(|| {
        ClusterError::Binaries(
            "apt-get installed pgbouncer but no pgbouncer program is on PATH or in /usr/sbin".to_owned(),
        )
    })
}

fn up_pgbouncer(l: &Layout, bin: &Path, state: &mut State, primary: u16) -> Result<u16, ClusterError> {
    if let Some(port) = running(l, bin, state, Member::PgBouncer) {
        if state.pgbouncer_primary_port == Some(primary) {
            return Ok(port);
        }
        // It points at a primary port that is no longer the primary's.
        stop(l, bin, state, Member::PgBouncer)?;
    }
    let program = pgbouncer_program()?;
    let dir = l.member(Member::PgBouncer);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let port = port_for(state, Member::PgBouncer)?;
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, "\"postgres\" \"\"\n\"root\" \"\"\n").map_err(io("writing", &userlist))?;
    let ini = dir.join("pgbouncer.ini");
    let d = dir.display();
    let text = format!(
        "[databases]\n* = host=127.0.0.1 port={primary}\n\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {d}\n\
         pool_mode = transaction\nauth_type = trust\nauth_file = {d}/userlist.txt\nadmin_users = postgres\n\
         max_client_conn = 1000\ndefault_pool_size = 20\n\
         logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n"
    );
    std::fs::write(&ini, text).map_err(io("writing", &ini))?;
    let _ = std::fs::remove_file(dir.join("pgbouncer.pid"));
    chown_postgres(&dir)?;
    // -d daemonises after binding; -u drops root (PgBouncer refuses to run as root).
    run(Command::new(&program).args(["-d", "-u", "postgres"]).arg(&ini))
        .map_err(|e| not_ready(l, Member::PgBouncer, e))?;
    let through = url(port);
    if !wait_until(Duration::from_secs(10), || psql(bin, &through, "SELECT 1").is_ok_and(|s| s.trim() == "1"))
    {
        let why = psql(bin, &through, "SELECT 1").err().map_or_else(String::new, |e| e.to_string());
        return Err(not_ready(l, Member::PgBouncer, format!("SELECT 1 through it failed for 10 s: {why}")));
    }
    state.ports.insert(Member::PgBouncer, port);
    state.pgbouncer_pid = pgbouncer_pid(l);
    state.pgbouncer_primary_port = Some(primary);
    state.save(l)?;
    Ok(port)
}

/// Starts `member`, and what it needs (the primary, for the replica and PgBouncer), unless it
/// runs; returns the URLs of all running members.
///
/// Safe to call from several processes at once (a file lock under `<target>/cluster/`
/// serialises them). Fails when a server's binaries are missing (PgBouncer is installed with
/// apt-get if it is), a command fails, or a member does not become ready; the error names the
/// command and its output, or the member's log tail.
pub fn up(root_target_dir: &Path, member: Member) -> Result<Urls, ClusterError> {
    let l = layout(root_target_dir)?;
    let bin = binaries()?;
    let _lock = lock(&l)?;
    let mut state = State::load(&l);
    let primary = up_primary(&l, &bin, &mut state)?;
    match member {
        Member::PgPrimary => {}
        Member::PgReplica => drop(up_replica(&l, &bin, &mut state, primary)?),
        Member::PgBouncer => drop(up_pgbouncer(&l, &bin, &mut state, primary)?),
    }
    Ok(urls(&l, &bin, &state))
}

fn urls(l: &Layout, bin: &Path, state: &State) -> Urls {
    let of = |m| running(l, bin, state, m).map(url);
    Urls {
        primary: of(Member::PgPrimary).unwrap_or_default(),
        replica: of(Member::PgReplica),
        pgbouncer: of(Member::PgBouncer),
    }
}

fn stop(l: &Layout, bin: &Path, state: &State, m: Member) -> Result<(), ClusterError> {
    if running(l, bin, state, m).is_none() {
        return Ok(());
    }
    match m {
        Member::PgBouncer => {
            let Some(pid) = pgbouncer_pid(l) else { return Ok(()) };
            run(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
            if !wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{pid}")).exists()) {
                return Err(not_ready(l, m, format!("pid {pid} still runs 10 s after SIGTERM")));
            }
            Ok(())
        }
        _ => run(as_postgres(&bin.join("pg_ctl")).args(["stop", "-w", "-m", "fast", "-D"]).arg(l.member(m)))
            .map(drop),
    }
}

/// Fails the primary over to the replica, as an operator would after losing the primary:
/// stops the primary (fast shutdown) and promotes the running replica (`pg_ctl promote -w`),
/// which then takes writes at its own URL. The next [`up`] that needs the replica starts the
/// old primary again and rebuilds the replica from it (the promoted copy is discarded).
/// Fails when no replica runs.
pub fn failover(root_target_dir: &Path) -> Result<Urls, ClusterError> {
    let l = layout(root_target_dir)?;
    let bin = binaries()?;
    let _lock = lock(&l)?;
    let state = State::load(&l);
    if running(&l, &bin, &state, Member::PgReplica).is_none() {
        return Err(not_ready(&l, Member::PgReplica, "no replica runs: nothing to promote"));
    }
    stop(&l, &bin, &state, Member::PgPrimary)?;
    run(as_postgres(&bin.join("pg_ctl")).args(["promote", "-w", "-D"]).arg(l.member(Member::PgReplica)))?;
    Ok(urls(&l, &bin, &state))
}

/// Stops one member or, with `None`, everything and removes the data directory. Idempotent:
/// stopping what does not run does nothing.
///
/// `pg-replica` and `pgbouncer` stop only themselves; `pg-primary` stops PgBouncer and the
/// replica too (they follow it). Data is removed only after every member stopped, and only
/// this target directory's (other checkouts' clusters, and the distro's servers, are not
/// touched). Waits for a concurrent [`up`] to finish first.
pub fn down(root_target_dir: &Path, member: Option<Member>) -> Result<(), ClusterError> {
    let l = layout(root_target_dir)?;
    let bin = binaries()?;
    let _lock = lock(&l)?;
    let state = State::load(&l);
    let order: &[Member] = match member {
        Some(Member::PgReplica) => &[Member::PgReplica],
        Some(Member::PgBouncer) => &[Member::PgBouncer],
        Some(Member::PgPrimary) | None => &[Member::PgBouncer, Member::PgReplica, Member::PgPrimary],
    };
    for &m in order {
        stop(&l, &bin, &state, m)?;
    }
    if member.is_none() {
        match std::fs::remove_dir_all(&l.data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &l.data)(e)),
            _ => {}
        }
        let path = State::path(&l);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &path)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// The running members, their URLs and the replica's lag. Takes no lock (a concurrent [`up`]
/// may be half done); fails only when the state directory cannot be created or PostgreSQL's
/// binaries are missing.
pub fn status(root_target_dir: &Path) -> Result<Status, ClusterError> {
    let l = layout(root_target_dir)?;
    let bin = binaries()?;
    let state = State::load(&l);
    let members: Vec<(Member, String)> =
        Member::ALL.into_iter().filter_map(|m| running(&l, &bin, &state, m).map(|p| (m, url(p)))).collect();
    let primary = members.iter().find(|(m, _)| *m == Member::PgPrimary);
    let lag = primary.and_then(|(_, primary)| {
        let row = psql(
            &bin,
            primary,
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, EXTRACT(EPOCH FROM replay_lag) \
             FROM pg_stat_replication ORDER BY application_name = 'pg-replica' DESC LIMIT 1",
        )
        .ok()?;
        let (bytes, replay) = row.trim().split_once('|')?;
        Some(Lag {
            bytes: bytes.parse::<i64>().ok().map(|b| b.max(0).unsigned_abs()),
            replay: replay.parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok()),
        })
    });
    Ok(Status { members, lag })
}
