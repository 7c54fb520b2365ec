//! [`CacheConfig`]: the cache's knobs, each with its default.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A test hook run between a fill's database read and its conditional set (see
/// [`CacheConfig::fill_barrier`]).
#[doc(hidden)]
pub type FillBarrier = Arc<dyn Fn(&str) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How a [`Cache`](crate::Cache) behaves. Build with [`CacheConfig::new`] (the defaults) and
/// the setters; every knob has a default that suits a service next to its Redis.
#[derive(Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long a filled value lives (default 300 s). This is also the bound on staleness when an
    /// invalidation cannot be delivered (see the crate docs).
    pub ttl: Duration,
    /// Up to this much is added at random to each value's TTL, so keys filled together do not
    /// expire together (default 30 s).
    pub ttl_jitter: Duration,
    /// How long a cached `not_found` lives (default 5 s).
    pub negative_ttl: Duration,
    /// The most one Redis call may take before the cache gives up on it and the caller goes to
    /// the database (default 5 ms; `KEEL_CACHE_TIMEOUT_MS`).
    pub timeout: Duration,
    /// How long a fill lease lives in Redis: a filler that died or hangs stops blocking others
    /// after this (default 2 s).
    pub lease_ttl: Duration,
    /// How long a caller that finds another process's lease polls for that process's value
    /// before reading the database itself (default 50 ms), and how often (every 2 ms).
    pub lease_wait: Duration,
    /// Consecutive Redis failures (errors or timeouts) that open the circuit breaker (default 5).
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one probe call is let through (default 200 ms): a
    /// Redis that comes back is used again within about twice this.
    pub breaker_open_for: Duration,
    /// Most keys whose invalidation failed and waits for a retry (default 10,000). Past it, keys
    /// are dropped and this process reads around the cache for one TTL (see the crate docs).
    pub max_pending_invalidations: usize,
    /// An invalidation whose writer was dropped mid-commit is sent at once and again after this
    /// (default 1 s), to cover a commit that lands after the first one.
    pub late_invalidation: Duration,
    /// Key prefix (default `keel`); keys are `{prefix}:v{version}:{key}`.
    pub prefix: String,
    /// Schema version in every key (default 1): bump it when the cached types change, and old
    /// entries are never read again (they expire by TTL).
    pub version: u32,
    /// Test hook: awaited with the key after a fill's database read and before its conditional
    /// set, to pause a filler at exactly that point.
    #[doc(hidden)]
    pub fill_barrier: Option<FillBarrier>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(300),
            ttl_jitter: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            timeout: Duration::from_millis(5),
            lease_ttl: Duration::from_secs(2),
            lease_wait: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_open_for: Duration::from_millis(200),
            max_pending_invalidations: 10_000,
            late_invalidation: Duration::from_secs(1),
            prefix: "keel".into(),
            version: 1,
            fill_barrier: None,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("ttl", &self.ttl)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("negative_ttl", &self.negative_ttl)
            .field("timeout", &self.timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_open_for", &self.breaker_open_for)
            .field("max_pending_invalidations", &self.max_pending_invalidations)
            .field("late_invalidation", &self.late_invalidation)
            .field("prefix", &self.prefix)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl CacheConfig {
    /// The defaults, with `KEEL_CACHE_TIMEOUT_MS` applied when set to a number.
    pub fn new() -> Self {
        let mut c = Self::default();
        if let Some(ms) = std::env::var("KEEL_CACHE_TIMEOUT_MS").ok().and_then(|v| v.trim().parse().ok()) {
            c.timeout = Duration::from_millis(ms);
        }
        c
    }

    /// Sets the value TTL and its jitter.
    pub fn ttl(mut self, ttl: Duration, jitter: Duration) -> Self {
        self.ttl = ttl;
        self.ttl_jitter = jitter;
        self
    }

    /// Sets the TTL of a cached `not_found`.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Sets the per-call Redis timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the key prefix and schema version.
    pub fn prefix(mut self, prefix: impl Into<String>, version: u32) -> Self {
        self.prefix = prefix.into();
        self.version = version;
        self
    }

    /// Sets the breaker's threshold of consecutive failures and its open interval.
    pub fn breaker(mut self, threshold: u32, open_for: Duration) -> Self {
        self.breaker_threshold = threshold.max(1);
        self.breaker_open_for = open_for;
        self
    }

    /// Sets the lease TTL and how long a caller waits for another process's fill.
    pub fn lease(mut self, ttl: Duration, wait: Duration) -> Self {
        self.lease_ttl = ttl;
        self.lease_wait = wait;
        self
    }

    /// Test hook, see the field.
    #[doc(hidden)]
    pub fn fill_barrier(mut self, barrier: FillBarrier) -> Self {
        self.fill_barrier = Some(barrier);
        self
    }
}
