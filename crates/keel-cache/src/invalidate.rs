//! Invalidations: sent after a commit on a task of their own, retried while Redis is down.
//!
//! What is guaranteed (stated in the crate docs too):
//! - When [`Cache::invalidate`] returns and Redis took the `DEL` (the normal case), no reader
//!   anywhere gets the old value from Redis afterwards, and no fill that started before can land.
//! - When the `DEL` failed (Redis down, slow, breaker open), the keys wait in a bounded queue
//!   and are retried every 50 ms until Redis takes them; meanwhile *this* process reads around
//!   the cache. Other processes may read the old value until the retry lands or the entry's
//!   TTL ends, whichever is first.
//! - If the queue is full, the overflowing keys are dropped and this process reads around the
//!   cache for one full TTL (every entry that could be stale has expired by then).
//! - The `DEL` runs on a spawned task: a caller that is dropped after the commit does not stop it.

use std::sync::Weak;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::cache::{Cache, Inner};
use crate::stats::bump;

/// How often undelivered invalidations are retried.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Most keys one retry `DEL` carries.
const RETRY_BATCH: usize = 500;

/// Invalidations owed by a write that has not finished yet: [`Cache::owe`]. Call
/// [`Owed::settle`] after the transaction (committed or not); if the guard is dropped instead
/// (the caller went away, maybe mid-commit), the keys are invalidated at once and again after
/// [`CacheConfig::late_invalidation`](crate::CacheConfig::late_invalidation), on a task of their
/// own, to cover a commit that lands after the drop.
#[derive(Debug)]
#[must_use = "settle it after the transaction"]
pub struct Owed {
    cache: Cache,
    keys: Vec<String>,
    settled: bool,
}

impl Owed {
    /// Adds keys learned during the transaction (say, the jobs a cascade deletes).
    pub fn add(&mut self, keys: impl IntoIterator<Item = String>) {
        self.keys.extend(keys);
    }

    /// Sends the invalidations now that the transaction is over, and waits for Redis to take
    /// them (at most the per-call timeout; then they are retried in the background).
    pub async fn settle(mut self) {
        self.settled = true;
        let keys = std::mem::take(&mut self.keys);
        self.cache.invalidate(keys).await;
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if self.settled || self.keys.is_empty() {
            return;
        }
        let keys: Vec<String> = self.keys.drain(..).map(|k| self.cache.redis_key(&k)).collect();
        let cache = self.cache.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    cache.send(keys.clone()).await;
                    tokio::time::sleep(cache.inner.config.late_invalidation).await;
                    cache.send(keys).await;
                });
            }
            // No runtime (dropped on a plain thread): the retry task sends them.
            Err(_) => cache.enqueue(keys),
        }
    }
}

impl Cache {
    /// Invalidations for `keys`, owed by a write about to run: see [`Owed`].
    pub fn owe(&self, keys: impl IntoIterator<Item = String>) -> Owed {
        Owed { cache: self.clone(), keys: keys.into_iter().collect(), settled: false }
    }

    /// Deletes `keys` (logical keys, as given to [`Cache::get_or_load`]) from Redis, values and
    /// fill leases alike, so a fill that started before cannot land. Call it after the commit.
    ///
    /// Runs on a spawned task: dropping this future does not stop it. Returns when Redis took
    /// the `DEL`, or after the per-call timeout, the keys then waiting in the retry queue (see
    /// the crate docs for what is guaranteed). Never fails.
    pub async fn invalidate(&self, keys: impl IntoIterator<Item = String>) {
        let keys: Vec<String> = keys.into_iter().map(|k| self.redis_key(&k)).collect();
        if keys.is_empty() {
            return;
        }
        let cache = self.clone();
        let _ = tokio::spawn(async move { cache.send(keys).await }).await;
    }

    /// One `DEL` of full Redis keys; on failure, into the retry queue.
    async fn send(&self, keys: Vec<String>) {
        if self.try_del(&keys).await {
            return;
        }
        self.enqueue(keys);
    }

    async fn try_del(&self, keys: &[String]) -> bool {
        let del = self
            .call(|mut conn| {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(keys);
                async move { cmd.query_async::<i64>(&mut conn).await }
            })
            .await;
        if del.is_ok() {
            self.inner.counters.invalidations_sent.fetch_add(keys.len() as u64, Relaxed);
        }
        del.is_ok()
    }

    pub(crate) fn enqueue(&self, keys: Vec<String>) {
        let i = &self.inner;
        let mut pending = i.pending.lock().unwrap_or_else(|e| e.into_inner());
        let room = i.config.max_pending_invalidations.saturating_sub(pending.len());
        let dropped = keys.len().saturating_sub(room);
        pending.extend(keys.into_iter().take(room));
        i.pending_len.store(pending.len() as u64, Relaxed);
        drop(pending);
        if dropped > 0 {
            i.counters.invalidations_dropped.fetch_add(dropped as u64, Relaxed);
            let cfg = &i.config;
            let until = Instant::now() + cfg.ttl + cfg.ttl_jitter;
            *i.bypass_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
            tracing::warn!(dropped, "invalidation queue full: reading around the cache for one TTL");
        }
    }
}

/// The retry task: sends queued invalidations until the cache is dropped.
pub(crate) async fn retry_pending(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let cache = Cache { inner: strong };
        let batch: Vec<String> = {
            let pending = cache.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.iter().take(RETRY_BATCH).cloned().collect()
        };
        if !batch.is_empty() {
            bump(&cache.inner.counters.invalidations_retried);
            if cache.try_del(&batch).await {
                let mut pending = cache.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                let n = batch.len().min(pending.len());
                pending.drain(..n);
                cache.inner.pending_len.store(pending.len() as u64, Relaxed);
                continue;
            }
        }
        // Hold no strong reference while asleep, so dropping the last Cache ends the task.
        drop(cache);
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
