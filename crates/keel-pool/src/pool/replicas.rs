//! Read replicas (PostgreSQL streaming replicas) with read-your-writes by token.
//!
//! With [`Config::replica`] set, autocommit reads ([`with_read!`](crate::with_read), the
//! repository's reads) and read-only transactions go to a healthy replica; everything else —
//! writes, read-write transactions — goes to the primary. A prober (every 100 ms) asks each
//! replica `pg_is_in_recovery()` and `pg_last_wal_replay_lsn()`, and the primary
//! `pg_current_wal_lsn()`: a replica that is down, promoted (no longer in recovery), or further
//! behind than [`Config::max_replica_lag`] (time or bytes) takes no reads until it has caught
//! up again. When no replica is usable, reads go to the primary and
//! [`RoutingStats::primary_fallbacks`] counts them.
//!
//! **Read-your-writes.** Inside a [`Session`] (the HTTP service runs one per request, fed from
//! the `Keel-Causality` header), every committed write advances the session's [`Causality`]
//! token to the primary's WAL insert position after the commit (GitLab's approach), and every
//! read is served by a replica that has replayed past the token — chosen per replica, from the
//! positions the prober saw, or asked directly — or waits for one up to
//! [`Config::read_your_writes_wait`], and otherwise goes to the primary. So a read in a session
//! never returns data older than the session's writes, whatever the replicas' lag.
//!
//! ```no_run
//! # async fn demo(pool: keel_pool::Pool) -> Result<(), keel_pool::Error> {
//! use keel_pool::Session;
//! let session = Session::new(None);
//! session.run(async {
//!     // … a write through the pool, then a read: the read sees the write …
//! }).await;
//! let token = session.settle(&pool).await?; // hand it to the next request (a header, a cookie)
//! let later = Session::new(token);
//! # Ok(()) }
//! ```
//!
//! A write checked out with [`Pool::get`] outside a transaction (an autocommit `DELETE`) marks
//! the session as owing a token; the next read in the session, or [`Session::settle`], asks
//! the primary for its position once. Transactions take the position on their own connection
//! right after `COMMIT`.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool, Text};

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::pool::{Inner, Pool};

/// How often the prober looks at each replica.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A point in the primary's history that a read must not be older than: PostgreSQL's WAL
/// position (an LSN) after a commit. Cheap to copy; shown and parsed as PostgreSQL writes an
/// LSN (`16/B374D848`), short enough for a header or a cookie. Tokens merge: the later wins.
///
/// ```
/// let a: keel_pool::Causality = "0/16B3748".parse()?;
/// let b: keel_pool::Causality = "1/0".parse()?;
/// assert_eq!(a.merge(b), b);
/// assert_eq!(b.to_string(), "1/0");
/// # Ok::<(), keel_pool::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Causality(u64);

impl Causality {
    /// The later of two tokens.
    pub fn merge(self, other: Causality) -> Causality {
        self.max(other)
    }

    /// The WAL position as a number.
    pub fn lsn(self) -> u64 {
        self.0
    }

    /// The later of an optional token and this one.
    pub fn merge_into(self, other: Option<Causality>) -> Causality {
        other.map_or(self, |o| self.merge(o))
    }
}

impl fmt::Display for Causality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Causality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad =
            || Error::invalid_input(format!("not a causality token (expected e.g. 16/B374D848): {s:?}"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Causality((u64::from(hi) << 32) | u64::from(lo)))
    }
}

tokio::task_local! {
    static SESSION: Session;
}

#[derive(Debug, Default)]
struct SessionState {
    /// The token's LSN; 0 = none.
    token: AtomicU64,
    /// A primary connection was checked out since the token was last taken.
    owed: AtomicBool,
}

/// A causal session: reads run inside it see at least the token it began with and every write
/// committed inside it. Cheap to clone (clones share the token). See the
/// [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Session {
    state: Arc<SessionState>,
}

impl Session {
    /// A session whose reads see at least `since` (a token from an earlier request).
    pub fn new(since: Option<Causality>) -> Self {
        let s = Session::default();
        if let Some(t) = since {
            s.advance(t);
        }
        s
    }

    /// The session running on this task, if any.
    pub fn current() -> Option<Session> {
        SESSION.try_with(Clone::clone).ok()
    }

    /// Runs `fut` inside this session.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        SESSION.scope(self.clone(), fut).await
    }

    /// The token as it stands (without asking the primary for a position still owed; see
    /// [`Session::settle`]).
    pub fn token(&self) -> Option<Causality> {
        match self.state.token.load(Relaxed) {
            0 => None,
            n => Some(Causality(n)),
        }
    }

    /// Merges `token` into the session's.
    pub fn advance(&self, token: Causality) {
        self.state.token.fetch_max(token.0, Relaxed);
    }

    /// The token after everything done in the session: asks `pool`'s primary for its position
    /// if a write may have happened since the token was last taken.
    pub async fn settle(&self, pool: &Pool) -> Result<Option<Causality>, Error> {
        if self.state.owed.swap(false, Relaxed) {
            match primary_position(pool).await {
                Ok(t) => self.advance(t),
                Err(e) => {
                    self.state.owed.store(true, Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(self.token())
    }

    pub(crate) fn owe(&self) {
        self.state.owed.store(true, Relaxed);
    }

    fn paid(&self, token: Causality) {
        self.advance(token);
        self.state.owed.store(false, Relaxed);
    }
}

/// The primary's WAL insert position now: past every commit that has returned.
async fn primary_position(pool: &Pool) -> Result<Causality, Error> {
    let mut conn = pool.checkout().await?;
    position(&mut conn).await
}

/// The WAL insert position, asked on `conn` (a primary connection).
pub(crate) async fn position(conn: &mut crate::Conn) -> Result<Causality, Error> {
    lsn(conn, "pg_current_wal_insert_lsn()::text").await
}

/// The LSN `expr` (an SQL expression giving an LSN's text) evaluates to on `conn`.
async fn lsn(conn: &mut crate::Conn, expr: &'static str) -> Result<Causality, Error> {
    use diesel_async::RunQueryDsl as _;
    let text: String =
        crate::with_conn!(conn, |c| diesel::select(diesel::dsl::sql::<Text>(expr)).get_result(c).await)?;
    text.parse()
}

/// After a read-write transaction committed on `conn`: the session's token moves to the
/// primary's position (only with replicas and a session: nothing is asked otherwise).
pub(crate) async fn note_commit(pool: &Pool, conn: &mut crate::Conn) {
    if pool.inner.replicas.is_none() {
        return;
    }
    let Some(session) = Session::current() else { return };
    if let Ok(t) = position(conn).await {
        session.paid(t);
    }
}

/// One replica: its pool (opened by the prober once the server answers) and what the prober saw.
pub(crate) struct Replica {
    config: Config,
    pool: OnceLock<Pool>,
    replay: AtomicU64,
    lag_bytes: AtomicU64,
    lag_us: AtomicU64,
    usable: AtomicBool,
    promoted: AtomicBool,
    reads: AtomicU64,
    failures: AtomicU64,
}

/// The replicas of one primary and the routing counters.
pub(crate) struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    primary_fallbacks: AtomicU64,
    token_reads: AtomicU64,
    token_waits: AtomicU64,
    token_primary: AtomicU64,
}

impl Replicas {
    pub(crate) fn new(primary: &Config) -> Option<Arc<Replicas>> {
        if primary.replicas.is_empty() {
            return None;
        }
        let list = primary
            .replicas
            .iter()
            .map(|url| Replica {
                config: primary.for_replica(url),
                pool: OnceLock::new(),
                replay: AtomicU64::new(0),
                lag_bytes: AtomicU64::new(0),
                lag_us: AtomicU64::new(0),
                usable: AtomicBool::new(false),
                promoted: AtomicBool::new(false),
                reads: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            })
            .collect();
        Some(Arc::new(Replicas {
            list,
            next: AtomicUsize::new(0),
            primary_fallbacks: AtomicU64::new(0),
            token_reads: AtomicU64::new(0),
            token_waits: AtomicU64::new(0),
            token_primary: AtomicU64::new(0),
        }))
    }

    /// Closes every replica pool.
    pub(crate) async fn close(&self) {
        for r in &self.list {
            if let Some(p) = r.pool.get() {
                // A replica pool has no replicas: this does not recurse further.
                Box::pin(p.close(Duration::ZERO)).await;
            }
        }
    }

    /// A usable replica that has replayed past `since`, taking turns.
    fn pick(&self, since: u64) -> Option<&Replica> {
        let n = self.list.len();
        let first = self.next.fetch_add(1, Relaxed);
        (0..n)
            .map(|i| &self.list[(first + i) % n])
            .find(|r| r.usable.load(Relaxed) && r.replay.load(Relaxed) >= since && r.pool.get().is_some())
    }

    /// The usable replica furthest ahead.
    fn furthest(&self) -> Option<&Replica> {
        self.list
            .iter()
            .filter(|r| r.usable.load(Relaxed) && r.pool.get().is_some())
            .max_by_key(|r| r.replay.load(Relaxed))
    }
}

/// Where one read runs: a replica's pool or the primary. Made by `with_read!`.
#[doc(hidden)]
pub struct Route<'a> {
    primary: &'a Pool,
    replica: Option<&'a Replica>,
}

impl<'a> Route<'a> {
    /// The pool the read runs on.
    pub fn pool(&self) -> &'a Pool {
        match self.replica.and_then(|r| r.pool.get()) {
            Some(p) => p,
            None => self.primary,
        }
    }

    /// After the read failed with `err`: if it ran on a replica that failed as a server (lost,
    /// down, restarting), that replica takes no reads until the prober sees it healthy, and
    /// the read runs once more on the primary (true).
    pub fn elsewhere(&mut self, err: &Error) -> bool {
        let Some(r) = self.replica else { return false };
        if !replica_trouble(err) {
            return false;
        }
        r.usable.store(false, Relaxed);
        r.failures.fetch_add(1, Relaxed);
        tracing::warn!(target: "keel_pool::replicas", replica = %r.config.url, error = %err, "replica failed a read; reading from the primary");
        self.replica = None;
        true
    }

    /// The replica's pool, when the route goes to a replica.
    pub(crate) fn replica_pool(&self) -> Option<&'a Pool> {
        self.replica.and_then(|r| r.pool.get())
    }

    /// The read succeeded.
    pub fn served(&self) {
        if let Some(r) = self.replica {
            r.reads.fetch_add(1, Relaxed);
        }
    }
}

/// Errors that say the replica (not the read) is in trouble: the read can run elsewhere.
pub(crate) fn replica_trouble(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionLost
            | ErrorKind::ServerShutdown
            | ErrorKind::Connect
            | ErrorKind::AcquireTimeout
            | ErrorKind::PoolClosed
            | ErrorKind::TooManyConnections
    )
}

impl Pool {
    /// Where the next autocommit read goes (see the [module docs](self)). Used by
    /// [`with_read!`](crate::with_read).
    #[doc(hidden)]
    pub async fn read_route(&self) -> Result<Route<'_>, Error> {
        let Some(replicas) = self.inner.replicas.as_deref() else {
            return Ok(Route { primary: self, replica: None });
        };
        let session = Session::current();
        let since = match &session {
            Some(s) => s.settle(self).await?.map_or(0, Causality::lsn),
            None => 0,
        };
        if since > 0 {
            replicas.token_reads.fetch_add(1, Relaxed);
        }
        if let Some(r) = replicas.pick(since) {
            return Ok(Route { primary: self, replica: Some(r) });
        }
        if since == 0 {
            replicas.primary_fallbacks.fetch_add(1, Relaxed);
            return Ok(Route { primary: self, replica: None });
        }
        // A token no replica is known to have passed: ask the one furthest ahead until it
        // has, or the wait is over.
        replicas.token_waits.fetch_add(1, Relaxed);
        let deadline = Instant::now() + self.config().read_your_writes_wait;
        while let Some(r) = replicas.furthest() {
            if let Some(lsn) = replay_position(r).await {
                r.replay.fetch_max(lsn, Relaxed);
                if lsn >= since {
                    return Ok(Route { primary: self, replica: Some(r) });
                }
            } else {
                r.usable.store(false, Relaxed);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        replicas.token_primary.fetch_add(1, Relaxed);
        Ok(Route { primary: self, replica: None })
    }

    /// The replicas' numbers and where reads went; `None` without replicas.
    pub fn routing_stats(&self) -> Option<RoutingStats> {
        let r = self.inner.replicas.as_deref()?;
        Some(RoutingStats {
            replicas: r
                .list
                .iter()
                .map(|x| ReplicaStats {
                    url: x.config.url.to_string(),
                    usable: x.usable.load(Relaxed),
                    promoted: x.promoted.load(Relaxed),
                    reads: x.reads.load(Relaxed),
                    failures: x.failures.load(Relaxed),
                    lag_bytes: x.lag_bytes.load(Relaxed),
                    lag: Duration::from_micros(x.lag_us.load(Relaxed)),
                    replayed: match x.replay.load(Relaxed) {
                        0 => None,
                        n => Some(Causality(n)),
                    },
                })
                .collect(),
            primary_fallbacks: r.primary_fallbacks.load(Relaxed),
            token_reads: r.token_reads.load(Relaxed),
            token_waits: r.token_waits.load(Relaxed),
            token_primary: r.token_primary.load(Relaxed),
        })
    }
}

/// A replica's replay position now, asked directly.
async fn replay_position(r: &Replica) -> Option<u64> {
    let mut conn = r.pool.get()?.get().await.ok()?;
    lsn(&mut conn, "COALESCE(pg_last_wal_replay_lsn()::text, '0/0')").await.ok().map(Causality::lsn)
}

/// Starts the prober of a pool with replicas; it ends when the pool is closed or dropped.
pub(crate) fn spawn_prober(inner: Weak<Inner>, replicas: Arc<Replicas>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    rt.spawn(async move {
        loop {
            let Some(primary) = inner.upgrade().map(|inner| Pool { inner }) else { return };
            if primary.is_closed() {
                return replicas.close().await;
            }
            probe(&primary, &replicas).await;
            drop(primary);
            tokio::time::sleep(PROBE_EVERY).await;
        }
    });
}

async fn probe(primary: &Pool, replicas: &Replicas) {
    use diesel_async::RunQueryDsl as _;
    let head = match primary_position(primary).await {
        Ok(t) => t.lsn(),
        Err(_) => 0,
    };
    let config = primary.config();
    for r in &replicas.list {
        if r.pool.get().is_none() {
            match Pool::connect(r.config.clone()).await {
                Ok(p) => {
                    let _ = r.pool.set(p);
                }
                Err(e) => {
                    r.usable.store(false, Relaxed);
                    tracing::debug!(target: "keel_pool::replicas", replica = %r.config.url, error = %e, "replica not reachable");
                    continue;
                }
            }
        }
        let Some(pool) = r.pool.get() else { continue };
        let seen = async {
            let mut conn = pool.get().await?;
            crate::with_conn!(&mut conn, |c| {
                diesel::select(diesel::dsl::sql::<(Bool, Text, BigInt)>(
                    "pg_is_in_recovery(), COALESCE(pg_last_wal_replay_lsn()::text, '0/0'), \
                     COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000000)::bigint, 0)",
                ))
                .get_result::<(bool, String, i64)>(c)
                .await
            })
        };
        let (in_recovery, replay, since_replay_us) =
            match tokio::time::timeout(config.connect_timeout, seen).await {
                Ok(Ok(v)) => v,
                _ => {
                    r.usable.store(false, Relaxed);
                    continue;
                }
            };
        let replay = replay.parse::<Causality>().map_or(0, Causality::lsn);
        r.replay.fetch_max(replay, Relaxed);
        let behind = head.saturating_sub(replay);
        // Time lag: none when it has replayed everything the primary had; else the age of the
        // last transaction it replayed (an idle primary makes that age grow meaninglessly).
        let lag_us = if behind == 0 { 0 } else { u64::try_from(since_replay_us).unwrap_or(0) };
        r.lag_bytes.store(behind, Relaxed);
        r.lag_us.store(lag_us, Relaxed);
        let (max_time, max_bytes) = config.max_replica_lag;
        let usable = in_recovery && behind <= max_bytes && Duration::from_micros(lag_us) <= max_time;
        if !in_recovery && !r.promoted.swap(true, Relaxed) {
            tracing::warn!(target: "keel_pool::replicas", replica = %r.config.url, "replica is no longer in recovery: it was promoted (a failover), so it takes no reads, and writes go on failing until the configuration points at the new primary");
        } else if in_recovery {
            r.promoted.store(false, Relaxed);
        }
        r.usable.store(usable, Relaxed);
    }
}

/// Where reads went, and each replica's state. From [`Pool::routing_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoutingStats {
    /// One entry per configured replica, in configuration order.
    pub replicas: Vec<ReplicaStats>,
    /// Reads sent to the primary because no replica was usable.
    pub primary_fallbacks: u64,
    /// Reads that carried a token.
    pub token_reads: u64,
    /// Token reads no replica was known to have passed: they asked a replica directly,
    /// waiting up to `read_your_writes_wait`.
    pub token_waits: u64,
    /// Token reads the primary served because no replica caught up in time.
    pub token_primary: u64,
}

/// One replica's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's URL (no password).
    pub url: String,
    /// Takes reads now: reachable, in recovery, within `max_replica_lag`.
    pub usable: bool,
    /// Seen out of recovery at the last probe: it was promoted to a primary (a failover). It
    /// takes no reads; point the configuration at it (as the primary) to use it.
    pub promoted: bool,
    /// Reads it served.
    pub reads: u64,
    /// Reads that failed on it and ran again on the primary.
    pub failures: u64,
    /// WAL bytes behind the primary at the last probe.
    pub lag_bytes: u64,
    /// Replay lag at the last probe (0 when caught up).
    pub lag: Duration,
    /// The last replay position seen.
    pub replayed: Option<Causality>,
}
