//! Single-flight in one process: concurrent misses for one key share one leader's result.
//!
//! A result is shared only with callers it is fresh enough for. Every join and every
//! operation that produces a result (the leader's Redis read, its database read, its fill)
//! takes a ticket from one counter; a follower takes the result only if it joined before the
//! operation's ticket, so a caller that starts after a write has returned never receives a
//! value read before that write (it reads again instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What a leader shares: the encoded entry and the ticket of the operation that produced it.
#[derive(Clone)]
pub(crate) struct Outcome {
    /// The encoded entry (a value or a `not_found`), see `codec`.
    pub(crate) entry: Arc<[u8]>,
    /// Taken just before the operation that produced `entry`.
    pub(crate) fresh_as_of: u64,
}

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Slot>>,
    tickets: AtomicU64,
}

pub(crate) enum Role {
    Leader(Leader),
    Follower { ticket: u64, slot: Slot },
}

impl Flights {
    pub(crate) fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight for `key`, or starts it.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut map = self.lock();
        if let Some(slot) = map.get(key) {
            return Role::Follower { ticket: self.ticket(), slot: slot.clone() };
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), rx);
        Role::Leader(Leader { flights: Arc::clone(self), key: key.to_owned(), tx, closed: false })
    }
}

/// The caller that runs the fill. Dropping it without [`Leader::publish`] (an error, or the
/// caller went away) wakes the followers with nothing: they start over.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    tx: watch::Sender<Option<Outcome>>,
    closed: bool,
}

impl Leader {
    /// Stops new callers from joining (they start a flight of their own); the ones already
    /// joined still get what is published.
    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.flights.lock().remove(&self.key);
        }
    }

    pub(crate) fn publish(mut self, outcome: Outcome) {
        self.close();
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for the leader; `None` when it went away without a result or the result is older than
/// this follower.
pub(crate) async fn follow(ticket: u64, mut slot: Slot) -> Option<Arc<[u8]>> {
    let outcome = slot.wait_for(Option::is_some).await.ok()?.clone()?;
    (ticket < outcome.fresh_as_of).then_some(outcome.entry)
}
