//! Pipelined autocommit reads on PostgreSQL: a few sessions shared by every concurrent reader.
//!
//! tokio-postgres (under diesel-async) pipelines queries issued on a shared `&AsyncPgConnection`:
//! each is sent without waiting for the previous reply, and replies are routed back in order.
//! So a read does not need a connection of its own: [`with_read!`](crate::with_read) runs it on
//! one of [`Config::read_connections`](crate::Config::read_connections) shared sessions
//! (round-robin), opened in the background on first use. Many readers then share a few round trips' worth of
//! waiting, and the server runs a few busy processes instead of many idle ones.
//!
//! Dead sessions are found without a ping: a read that fails because its session is gone drops
//! that session from its slot and runs once more on a fresh one (an autocommit read can always
//! run again). Transactions never use these sessions; on MySQL and SQLite `with_read!` simply
//! checks a connection out of the pool.
//!
//! Replies come back in order, so one slow read (waiting for a lock, a long scan) holds up
//! every read pipelined behind it. A session whose reads in flight have had no reply for
//! [`read_stall_after`](crate::Config::read_stall_after) takes no new reads: they go to another
//! session, or to a pooled connection when every session is stalled.
//!
//! An abandoned read (its future dropped: a deadline, a client gone) cannot simply be cancelled
//! with `pg_cancel_backend`: the signal stops whatever the session runs at that moment, maybe
//! another reader's statement. keel takes the session out of rotation instead, cancels, lets the
//! reads already queued there finish (one that the cancel hit runs again elsewhere: keel knows
//! its own cancel, "canceling statement due to user request", from a statement timeout), absorbs
//! a late signal with one round trip and puts the session back. New reads never wait for it.
//! Sessions age like pooled connections: a reaper task closes them after `max_lifetime` or
//! `idle_timeout`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::conn::PgConnection;
use crate::error::{Error, ErrorKind};
use crate::manager::{KeelManager, Managed};
use crate::pool::Pool;
use crate::pool::shared::Shared;
use crate::url::Backend;

/// One shared session and what keel tracks about it.
struct Session {
    conn: Managed<PgConnection>,
    /// Reads in flight on it (started, neither finished nor abandoned).
    live: AtomicU64,
    /// Micros (pool clock) of the last reply, or of the first read's start when it was idle: a
    /// session with reads in flight and no reply for longer than `read_stall_after` is stalled.
    progress: AtomicU64,
    /// A read was abandoned mid-flight: no new reads until its statement is stopped.
    draining: AtomicBool,
    /// Woken when the last live read of a draining session finishes.
    drained: tokio::sync::Notify,
    opened: Instant,
}

impl Session {
    /// Whether a new read may be pipelined here: not draining, and not stalled behind a slow
    /// read (a lock wait, a long scan) — the reads queued behind one wait for all of it.
    fn usable(&self, shared: &Shared, stall_after: Duration) -> bool {
        if self.draining.load(Relaxed) {
            return false;
        }
        self.live.load(Relaxed) == 0
            || shared.micros(Instant::now()).saturating_sub(self.progress.load(Relaxed))
                <= stall_after.as_micros() as u64
    }

    fn start(&self, shared: &Shared) {
        if self.live.fetch_add(1, Relaxed) == 0 {
            self.progress.store(shared.micros(Instant::now()), Relaxed);
        }
    }

    /// A read ended (finished or abandoned).
    fn end(&self, shared: &Shared) {
        let left = self.live.fetch_sub(1, Relaxed).saturating_sub(1);
        if left > 0 {
            self.progress.store(shared.micros(Instant::now()), Relaxed);
        } else if self.draining.load(Relaxed) {
            self.drained.notify_waiters();
        }
    }
}

type Slot = Mutex<Option<Arc<Session>>>;

/// The shared read sessions of one pool.
pub(crate) struct Readers {
    slots: Box<[Slot]>,
    /// Set while a slot's session is being opened (on a task of its own, so a read whose
    /// deadline is shorter than a connect still gets a session opened for the next ones).
    opening: Box<[AtomicBool]>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(n: u32) -> Self {
        Readers {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            opening: (0..n).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            if let Ok(mut s) = slot.lock() {
                s.take();
            }
        }
    }

    /// Takes `session` out of `slot` if it is still there: the next read opens a fresh one.
    fn evict(&self, slot: usize, session: &Arc<Session>) {
        if let Some(slot) = self.slots.get(slot)
            && let Ok(mut s) = slot.lock()
            && s.as_ref().is_some_and(|c| Arc::ptr_eq(c, session))
        {
            s.take();
        }
    }

    /// Evicts sessions older than `max_lifetime` or idle longer than `idle_timeout`, as the pool
    /// does with its own connections. Runs every second on the pool's reaper task.
    fn reap(&self, shared: &Shared) {
        let now = shared.micros(Instant::now());
        for slot in self.slots.iter() {
            let Ok(mut s) = slot.lock() else { continue };
            let Some(session) = s.as_ref() else { continue };
            let old = shared.config.max_lifetime.is_some_and(|l| session.opened.elapsed() >= l);
            let idle = session.live.load(Relaxed) == 0
                && shared.config.idle_timeout.is_some_and(|t| {
                    now.saturating_sub(session.progress.load(Relaxed)) >= t.as_micros() as u64
                });
            if old || idle {
                s.take();
            }
        }
    }
}

/// Starts the task that ages the shared read sessions of a PostgreSQL pool; it ends when the
/// pool is dropped or closed.
pub(crate) fn spawn_reaper(shared: &Arc<Shared>) {
    if shared.readers.slots.is_empty() || shared.config.backend() != Backend::Postgres {
        return;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            if shared.is_closed() {
                return;
            }
            shared.readers.reap(&shared);
        }
    });
}

/// A shared PostgreSQL session lent to one read; see the [module docs](self).
///
/// Dropping it before [`Reader::finish`] means the read was abandoned mid-flight: the session
/// leaves the rotation, its statement is stopped on the server once no other read runs there,
/// and it serves again (the reads queued with it are not delayed).
pub struct Reader {
    session: Arc<Session>,
    slot: usize,
    pool: Pool,
    finished: bool,
}

impl Reader {
    /// The shared connection: run diesel queries on `&mut &*reader.conn()` (a shared
    /// reference), which pipelines them with other readers'.
    pub fn conn(&self) -> &PgConnection {
        &self.session.conn
    }

    /// The server's backend pid of this shared session.
    pub fn server_id(&self) -> Option<u64> {
        self.session.conn.server_id()
    }

    /// Ends the read with its result. On failure, returns the error and whether the read
    /// should run once more: after a lost session (it leaves its slot; the pool's other
    /// connections are pinged before reuse), after "cached plan must not change result type"
    /// (a migration changed a column's type: the session leaves its slot with its statement
    /// cache), or when keel's own cancel of an abandoned read on this session hit this one.
    pub fn finish<T>(mut self, result: diesel::QueryResult<T>) -> Result<T, (Error, bool)> {
        self.finished = true;
        let shared = self.pool.shared();
        self.session.end(shared);
        let err = match result {
            Ok(value) => return Ok(value),
            Err(e) => crate::classify(Backend::Postgres, e),
        };
        shared.observe(&err);
        if crate::manager::breaks_connection(err.kind()) || stale_plan(&err) {
            shared.readers.evict(self.slot, &self.session);
            return Err((err, true));
        }
        let ours = err.kind() == ErrorKind::StatementTimeout && err.to_string().contains("user request");
        Err((err, ours))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let shared = Arc::clone(self.pool.shared());
        shared.counters.cancellations.fetch_add(1, Relaxed);
        let first = !self.session.draining.swap(true, Relaxed);
        self.session.end(&shared);
        if !first {
            return; // a drain is under way; it stops this read's statement too
        }
        let (session, slot) = (Arc::clone(&self.session), self.slot);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return shared.readers.evict(slot, &session);
        };
        rt.spawn(async move { drain(&shared, slot, &session).await });
    }
}

/// Stops the abandoned reads of a session and puts it back into rotation. One round trip sent
/// now queues behind everything already on the session; when it answers, every read before it
/// (abandoned or not) is done. If it has not answered within the grace, keel cancels: only the
/// abandoned statement or one queued with it can be running, and a read cancelled by mistake
/// runs again (see [`Reader::finish`]); the round trip absorbs a cancel that arrived late. A
/// session that fails it leaves its slot.
async fn drain(shared: &Arc<Shared>, slot: usize, session: &Arc<Session>) {
    let mut conn: &PgConnection = &session.conn;
    let late_stop = session.conn.server_id().map(|id| crate::pool::cancel::LateStop { shared, id });
    let clean = crate::pool::cancel::absorb(&mut conn, Backend::Postgres, "SELECT 1", late_stop).await;
    if !clean {
        return shared.readers.evict(slot, session);
    }
    // Reads that took the session just before it left the rotation may still be in flight.
    loop {
        let drained = session.drained.notified();
        if session.live.load(Relaxed) == 0 {
            break;
        }
        drained.await;
    }
    session.conn.forget_in_flight();
    session.draining.store(false, Relaxed);
}

/// True for PostgreSQL's "cached plan must not change result type": a prepared statement whose
/// result columns changed type under it (a migration); only a fresh statement cache helps.
pub(crate) fn stale_plan(err: &Error) -> bool {
    err.to_string().contains("cached plan must not change result type")
}

impl Pool {
    /// A shared session for one pipelined autocommit read (PostgreSQL with
    /// [`read_connections`](crate::Config::read_connections) > 0), or `None`: then check a
    /// connection out with [`Pool::get`]. `None` also when every session is draining an
    /// abandoned read or stalled behind a slow one (its oldest read in flight has had no reply
    /// for [`read_stall_after`](crate::Config::read_stall_after)), and while sessions are being
    /// opened (in the background: the first reads use pooled connections). Use
    /// [`with_read!`](crate::with_read) rather than calling this directly.
    pub async fn reader(&self) -> Result<Option<Reader>, Error> {
        let shared = self.shared();
        let slots = &shared.readers.slots;
        if slots.is_empty() || self.backend() != Backend::Postgres {
            return Ok(None);
        }
        if shared.is_closed() {
            return Err(Error::PoolClosed);
        }
        let stall_after = shared.config.read_stall_after;
        let first = shared.readers.next.fetch_add(1, Relaxed);
        for i in 0..slots.len() {
            let slot = (first + i) % slots.len();
            let Some(session) = slots[slot].lock().ok().and_then(|s| s.clone()) else {
                self.open_reader(slot);
                continue;
            };
            if session.usable(shared, stall_after) {
                session.start(shared);
                return Ok(Some(Reader { session, slot, pool: self.clone(), finished: false }));
            }
        }
        Ok(None)
    }

    /// Opens the session of an empty `slot` on a task of its own, unless one is being opened;
    /// reads meanwhile use the other sessions or a pooled connection.
    fn open_reader(&self, slot: usize) {
        let shared = Arc::clone(self.shared());
        if shared.readers.opening[slot].swap(true, Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return shared.readers.opening[slot].store(false, Relaxed);
        };
        rt.spawn(async move {
            match KeelManager::<PgConnection>::open(&shared).await {
                Ok(opened) if !shared.is_closed() => {
                    shared.counters.read_connections_opened.fetch_add(1, Relaxed);
                    let session = Arc::new(Session {
                        conn: opened,
                        live: AtomicU64::new(0),
                        progress: AtomicU64::new(shared.micros(Instant::now())),
                        draining: AtomicBool::new(false),
                        drained: tokio::sync::Notify::new(),
                        opened: Instant::now(),
                    });
                    if let Ok(mut s) = shared.readers.slots[slot].lock() {
                        *s = Some(session);
                    }
                }
                Ok(_) => {}
                Err(e) => shared.note_connect_error(e.to_string()),
            }
            shared.readers.opening[slot].store(false, Relaxed);
        });
    }

    /// After a failed read on a pooled connection: whether to run it once more. Only for a
    /// stale cached plan (see [`Reader::finish`]): the connection is closed with its statement
    /// cache, and the read runs on another.
    #[doc(hidden)]
    pub fn read_again(&self, conn: &mut crate::Conn, err: &Error) -> bool {
        if stale_plan(err) {
            conn.mark_broken();
            return true;
        }
        false
    }
}

/// Runs one autocommit read body on whichever backend, pipelined on a shared session on
/// PostgreSQL, on a pooled connection elsewhere; returns `Result<T, keel_pool::Error>`. With
/// [replicas](crate::pool::replicas) configured it runs on a usable replica (one that has
/// replayed past the current [`Session`](crate::Session)'s token), and once more on the
/// primary if that replica fails as a server.
///
/// The body is expanded once per connection type (like [`with_conn!`](crate::with_conn)):
/// `c` is `&mut &PgConnection` on the shared path and `&mut` the pooled connection otherwise,
/// so write it with `diesel_async::RunQueryDsl` methods that take any connection. It must be a
/// single read with no side effects: after a lost session it runs again.
///
/// ```no_run
/// use diesel::prelude::*;
/// use diesel_async::RunQueryDsl;
/// use keel_schema::{schema::users, User};
///
/// # async fn demo(pool: keel_pool::Pool, id: keel_schema::Id) -> Result<(), keel_pool::Error> {
/// let user: Option<User> = keel_pool::with_read!(&pool, |c| {
///     users::table.find(id).select(User::as_select()).first(c).await.optional()
/// })?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! with_read {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let primary: &$crate::Pool = $pool;
        async {
            let mut route = primary.read_route().await?;
            let mut again = true;
            loop {
                let pool = route.pool();
                // Err((error, run it once more on this pool))
                let outcome: ::std::result::Result<_, ($crate::Error, bool)> = match pool.reader().await {
                    Err(err) => Err((err, false)),
                    Ok(Some(reader)) => {
                        let result: ::diesel::QueryResult<_> = {
                            let mut shared: &$crate::PgConnection = reader.conn();
                            let $c = &mut shared;
                            $body
                        };
                        reader.finish(result)
                    }
                    Ok(None) => match pool.checkout().await {
                        Err(err) => Err((err, false)),
                        Ok(mut conn) => match $crate::with_conn!(&mut conn, |$c| $body) {
                            Ok(value) => Ok(value),
                            Err(err) => {
                                let retry = pool.read_again(&mut conn, &err);
                                Err((err, retry))
                            }
                        },
                    },
                };
                match outcome {
                    Ok(value) => {
                        route.served();
                        break Ok(value);
                    }
                    // A replica in trouble: once more on the primary.
                    Err((err, _)) if route.elsewhere(&err) => {}
                    Err((_, true)) if again => again = false,
                    Err((err, _)) => break Err(err),
                }
            }
        }
        .await
    }};
}
