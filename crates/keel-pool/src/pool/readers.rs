//! Pipelined autocommit reads on PostgreSQL: a few sessions shared by every concurrent reader.
//!
//! tokio-postgres (under diesel-async) pipelines queries issued on a shared `&AsyncPgConnection`:
//! each is sent without waiting for the previous reply, and replies are routed back in order.
//! So a read does not need a connection of its own: [`with_read!`](crate::with_read) runs it on
//! one of [`Config::read_connections`](crate::Config::read_connections) shared sessions
//! (round-robin), opened on first use. Many readers then share a few round trips' worth of
//! waiting, and the server runs a few busy processes instead of many idle ones.
//!
//! Dead sessions are found without a ping: a read that fails because its session is gone drops
//! that session from its slot and runs once more on a fresh one (an autocommit read can always
//! run again). Transactions never use these sessions; on MySQL and SQLite `with_read!` simply
//! checks a connection out of the pool.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::conn::PgConnection;
use crate::error::Error;
use crate::manager::{KeelManager, Managed};
use crate::pool::Pool;
use crate::url::Backend;

type Shared = Arc<Managed<PgConnection>>;

/// The shared read sessions of one pool.
pub(crate) struct Readers {
    slots: Box<[Mutex<Option<Shared>>]>,
    /// Held while a slot's session is being opened, so concurrent first reads wait for one
    /// session instead of each opening their own.
    opening: Box<[tokio::sync::Mutex<()>]>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(n: u32) -> Self {
        Readers {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            opening: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
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
}

/// A shared PostgreSQL session lent to one read; see the [module docs](self).
pub struct Reader {
    conn: Shared,
    slot: usize,
    pool: Pool,
}

impl Reader {
    /// The shared connection: run diesel queries on `&mut &*reader.conn()` (a shared
    /// reference), which pipelines them with other readers'.
    pub fn conn(&self) -> &PgConnection {
        &self.conn
    }

    /// A fresh session for the same slot, after [`Reader::failed`] dropped this one.
    pub async fn reopen(&self) -> Result<Reader, Error> {
        self.pool.reader_at(self.slot).await
    }

    /// The server's backend pid of this shared session.
    pub fn server_id(&self) -> Option<u64> {
        self.conn.server_id()
    }

    /// Notes a failed read: after a connection-level error the session leaves its slot (the
    /// next reader opens a new one) and the pool's other connections are pinged before reuse.
    /// Returns true when the read should run once more on a fresh session.
    pub fn failed(&self, err: &Error) -> bool {
        let shared = self.pool.shared();
        shared.observe(err);
        if !crate::manager::breaks_connection(err.kind()) {
            return false;
        }
        if let Some(slot) = shared.readers.slots.get(self.slot)
            && let Ok(mut s) = slot.lock()
            && s.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.conn))
        {
            s.take();
        }
        true
    }
}

impl Pool {
    /// A shared session for one pipelined autocommit read (PostgreSQL with
    /// [`read_connections`](crate::Config::read_connections) > 0), or `None`: then check a
    /// connection out with [`Pool::get`]. Use [`with_read!`](crate::with_read) rather than
    /// calling this directly.
    pub async fn reader(&self) -> Result<Option<Reader>, Error> {
        let shared = self.shared();
        let slots = &shared.readers.slots;
        if slots.is_empty() || self.backend() != Backend::Postgres {
            return Ok(None);
        }
        if shared.is_closed() {
            return Err(Error::PoolClosed);
        }
        let slot = shared.readers.next.fetch_add(1, Relaxed) % slots.len();
        self.reader_at(slot).await.map(Some)
    }

    /// The shared session of `slot`, opened if the slot is empty.
    async fn reader_at(&self, slot: usize) -> Result<Reader, Error> {
        let shared = self.shared();
        let slots = &shared.readers.slots;
        let current = || slots[slot].lock().ok().and_then(|s| s.clone());
        let conn = match current() {
            Some(c) => c,
            None => {
                let _opening = shared.readers.opening[slot].lock().await;
                if let Some(c) = current() {
                    return Ok(Reader { conn: c, slot, pool: self.clone() });
                }
                let opened = KeelManager::<PgConnection>::open(shared).await.inspect_err(|e| {
                    shared.note_connect_error(e.to_string());
                })?;
                shared.counters.read_connections_opened.fetch_add(1, Relaxed);
                let opened = Arc::new(opened);
                if let Ok(mut s) = slots[slot].lock() {
                    *s = Some(Arc::clone(&opened));
                }
                opened
            }
        };
        Ok(Reader { conn, slot, pool: self.clone() })
    }
}

/// Runs one autocommit read body on whichever backend, pipelined on a shared session on
/// PostgreSQL, on a pooled connection elsewhere; returns `Result<T, keel_pool::Error>`.
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
        let pool: &$crate::Pool = $pool;
        async {
            match pool.reader().await? {
                Some(mut reader) => {
                    let mut again = true;
                    loop {
                        let result: ::diesel::QueryResult<_> = {
                            let mut shared: &$crate::PgConnection = reader.conn();
                            let $c = &mut shared;
                            $body
                        };
                        match result {
                            Ok(value) => break Ok(value),
                            Err(e) => {
                                let err = $crate::classify($crate::Backend::Postgres, e);
                                if reader.failed(&err) && again {
                                    again = false;
                                    reader = reader.reopen().await?;
                                    continue;
                                }
                                break Err(err);
                            }
                        }
                    }
                }
                None => {
                    let mut conn = pool.get().await?;
                    $crate::with_conn!(&mut conn, |$c| $body)
                }
            }
        }
        .await
    }};
}
