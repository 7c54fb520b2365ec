//! The cache's numbers: counters and the [`CacheStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use keel_pool::{Histogram, LatencyHistogram};

use crate::breaker::BreakerState;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) stale_set_refusals: AtomicU64,
    pub(crate) flights_joined: AtomicU64,
    pub(crate) lease_waits: AtomicU64,
    pub(crate) lease_wait_timeouts: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) redis_timeouts: AtomicU64,
    pub(crate) codec_errors: AtomicU64,
    pub(crate) invalidations_sent: AtomicU64,
    pub(crate) invalidations_retried: AtomicU64,
    pub(crate) invalidations_dropped: AtomicU64,
    pub(crate) redis_latency: Histogram,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// A snapshot of a cache's numbers, from [`Cache::stats`](crate::Cache::stats). Counters are
/// totals since the cache was created.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from Redis with a value.
    pub hits: u64,
    /// Reads answered from Redis with a cached `not_found`.
    pub negative_hits: u64,
    /// Reads that went to the database (Redis had nothing, or was skipped).
    pub misses: u64,
    /// Values (or `not_found`s) written to Redis after a database read.
    pub fills: u64,
    /// Fills refused because their lease was gone: an invalidation (or a newer fill) came in
    /// between the database read and the set. Each is a stale value that did not land.
    pub stale_set_refusals: u64,
    /// Reads that shared another caller's fill in this process instead of running their own.
    pub flights_joined: u64,
    /// Reads that found another process's lease and waited for its value.
    pub lease_waits: u64,
    /// Of those, the waits that ran out and read the database.
    pub lease_wait_timeouts: u64,
    /// Reads that went straight to the database without asking Redis (breaker open, or
    /// invalidations owed by this process still undelivered).
    pub bypassed: u64,
    /// Redis calls that failed with an error.
    pub redis_errors: u64,
    /// Redis calls that took longer than the timeout.
    pub redis_timeouts: u64,
    /// Cached values that could not be decoded (read from the database instead).
    pub codec_errors: u64,
    /// The breaker now.
    pub breaker_state: BreakerState,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Keys invalidated in Redis.
    pub invalidations_sent: u64,
    /// Keys whose invalidation failed and waits for a retry right now.
    pub invalidations_pending: u64,
    /// Retry rounds of pending invalidations.
    pub invalidations_retried: u64,
    /// Keys dropped because the retry queue was full (this process then bypassed the cache for
    /// one TTL).
    pub invalidations_dropped: u64,
    /// Median Redis call latency, microseconds (timeouts count as the timeout).
    pub redis_p50_us: u64,
    /// 99th-percentile Redis call latency, microseconds.
    pub redis_p99_us: u64,
    /// The Redis call latency distribution (for Prometheus histograms).
    pub redis_latency: LatencyHistogram,
}

pub(crate) fn snapshot(c: &Counters, breaker: BreakerState, opens: u64, pending: u64) -> CacheStats {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let n = |a: &AtomicU64| a.load(Relaxed);
    CacheStats {
        hits: n(&c.hits),
        negative_hits: n(&c.negative_hits),
        misses: n(&c.misses),
        fills: n(&c.fills),
        stale_set_refusals: n(&c.stale_set_refusals),
        flights_joined: n(&c.flights_joined),
        lease_waits: n(&c.lease_waits),
        lease_wait_timeouts: n(&c.lease_wait_timeouts),
        bypassed: n(&c.bypassed),
        redis_errors: n(&c.redis_errors),
        redis_timeouts: n(&c.redis_timeouts),
        codec_errors: n(&c.codec_errors),
        breaker_state: breaker,
        breaker_opens: opens,
        invalidations_sent: n(&c.invalidations_sent),
        invalidations_pending: pending,
        invalidations_retried: n(&c.invalidations_retried),
        invalidations_dropped: n(&c.invalidations_dropped),
        redis_p50_us: us(c.redis_latency.quantile(0.5)),
        redis_p99_us: us(c.redis_latency.quantile(0.99)),
        redis_latency: c.redis_latency.cumulative(),
    }
}
