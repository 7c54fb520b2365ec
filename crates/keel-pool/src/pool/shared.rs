//! [`Shared`]: the state one pool shares with its bb8 manager, its connections' query timers,
//! its cancellation side connection and its shared read sessions — configuration, counters,
//! the last connection failure, and which idle connections are suspect.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::manager::breaks_connection;
use crate::stats::Counters;

/// State shared by a pool, its manager and its connections.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Counters,
    pub(crate) last_connect_error: Mutex<Option<String>>,
    epoch: Instant,
    /// Micros since `epoch` when a connection was last seen failing.
    pub(crate) suspect_since: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// The side connection cancellations go through (`pg_cancel_backend`, `KILL QUERY`), opened
    /// on first use.
    pub(crate) killer: super::cancel::Killer,
    /// PostgreSQL sessions shared by pipelined reads.
    pub(crate) readers: super::readers::Readers,
    /// The fair line in front of bb8: one place per connection (see `Pool::get`).
    pub(crate) line: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Shared {
            readers: super::readers::Readers::new(config.effective_read_connections()),
            line: std::sync::Arc::new(tokio::sync::Semaphore::new(config.effective_max_size() as usize)),
            config,
            counters: Counters::default(),
            last_connect_error: Mutex::new(None),
            epoch: Instant::now(),
            suspect_since: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            killer: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// True once the pool was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Marks every connection last used before now as needing a ping before reuse.
    pub(crate) fn suspect_all(&self) {
        self.suspect_since.fetch_max(self.micros(Instant::now()), Relaxed);
    }

    pub(crate) fn note_connect_error(&self, message: String) {
        tracing::warn!(target: "keel_pool", error = %message, "database connection attempt failed");
        if let Ok(mut slot) = self.last_connect_error.lock() {
            *slot = Some(message);
        }
    }

    pub(crate) fn clear_connect_error(&self) {
        if let Ok(mut slot) = self.last_connect_error.lock()
            && slot.is_some()
        {
            *slot = None;
        }
    }

    pub(crate) fn last_connect_error(&self) -> Option<String> {
        self.last_connect_error.lock().ok().and_then(|s| s.clone())
    }

    /// Records an error seen on a connection: a lost connection makes the others suspect.
    pub(crate) fn observe(&self, err: &Error) {
        if breaks_connection(err.kind()) {
            self.suspect_all();
        }
    }
}
