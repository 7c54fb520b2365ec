//! Pool and query numbers: counters, a latency histogram, and the [`PoolStats`] snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::ErrorKind;

const LINEAR: usize = 16;
const SUB: usize = 8;
const BUCKETS: usize = LINEAR + 40 * SUB;

/// A lock-free latency histogram in microseconds: exact below 16 µs, then 8 buckets per power
/// of two (≤ 12.5 % error), up to about 12 days. Public so that other keel crates (keel-cache)
/// report latencies the same way as the pool.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // ≥ 4
    let sub = ((us >> (exp - 3)) & (SUB as u64 - 1)) as usize;
    (LINEAR + (exp - 4) * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in microseconds.
fn bucket_top(index: usize) -> u64 {
    if index < LINEAR {
        return index as u64;
    }
    let exp = (index - LINEAR) / SUB + 4;
    let sub = ((index - LINEAR) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - 3)) - 1
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    /// The latency below which a fraction `q` of the samples fall (0 with no samples).
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count.load(Relaxed);
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Duration::from_micros(bucket_top(i).min(self.max.load(Relaxed)));
            }
        }
        Duration::from_micros(self.max.load(Relaxed))
    }

    /// Cumulative counts at each of [`LATENCY_BUCKETS_US`] (samples whose bucket lies wholly at
    /// or below the bound, as Prometheus histograms count), then the total count and sum.
    pub fn cumulative(&self) -> LatencyHistogram {
        let mut le = Vec::with_capacity(LATENCY_BUCKETS_US.len());
        let (mut seen, mut i) = (0u64, 0usize);
        for &bound in LATENCY_BUCKETS_US {
            while i < BUCKETS && bucket_top(i) <= bound {
                seen += self.buckets[i].load(Relaxed);
                i += 1;
            }
            le.push((bound, seen));
        }
        LatencyHistogram { le_us: le, count: self.count.load(Relaxed), sum_us: self.sum_us.load(Relaxed) }
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The largest sample (0 with no samples).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max.load(Relaxed))
    }
}

/// Upper bounds (µs) of the buckets [`PoolStats::query_latency`] reports: 50 µs to 10 s.
pub const LATENCY_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// A latency distribution in Prometheus form.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LatencyHistogram {
    /// `(upper bound in µs, samples at or below it)`, cumulative, for [`LATENCY_BUCKETS_US`].
    /// Bounds are approximate to within one internal bucket (≤ 12.5 %).
    pub le_us: Vec<(u64, u64)>,
    /// All samples.
    pub count: u64,
    /// Sum of all samples, µs.
    pub sum_us: u64,
}

/// Counters shared by a pool, its connections' instrumentation and its transactions.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) acquires: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    pub(crate) waiting: AtomicU64,
    pub(crate) acquire_latency: Histogram,
    pub(crate) pings: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    pub(crate) slow_queries: AtomicU64,
    pub(crate) query_latency: Histogram,
    pub(crate) transactions: AtomicU64,
    pub(crate) commits_unknown: AtomicU64,
    pub(crate) cancellations: AtomicU64,
    pub(crate) read_connections_opened: AtomicU64,
    pub(crate) retries: Mutex<BTreeMap<ErrorKind, u64>>,
}

impl Counters {
    pub(crate) fn record_retry(&self, kind: ErrorKind) {
        if let Ok(mut m) = self.retries.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }
}

/// A snapshot of a pool's numbers, from [`Pool::stats`](crate::Pool::stats).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// The most connections the pool opens.
    pub max_size: u32,
    /// Connections open (idle + in use).
    pub size: u32,
    /// Connections idle in the pool.
    pub idle: u32,
    /// Connections checked out.
    pub in_use: u32,
    /// Callers waiting in [`Pool::get`](crate::Pool::get) right now.
    pub waiters: u64,
    /// Connections opened since the pool started.
    pub connections_created: u64,
    /// Connections closed because they were broken (lost, or a dropped query mid-flight).
    pub connections_closed_broken: u64,
    /// Connections closed because a checkout ping failed.
    pub connections_closed_invalid: u64,
    /// Connections closed for age (`max_lifetime`) or idleness (`idle_timeout`).
    pub connections_closed_expired: u64,
    /// Successful checkouts.
    pub acquires: u64,
    /// Checkouts that had to wait for a connection.
    pub acquires_waited: u64,
    /// Checkouts that failed with an acquire timeout.
    pub acquire_timeouts: u64,
    /// Median checkout latency, microseconds.
    pub acquire_p50_us: u64,
    /// 99th-percentile checkout latency, microseconds.
    pub acquire_p99_us: u64,
    /// Pings sent on checkout (connections idle longer than `ping_idle_after`).
    pub pings: u64,
    /// Queries run (through diesel's instrumentation).
    pub queries: u64,
    /// Queries that returned an error.
    pub query_errors: u64,
    /// Queries slower than `slow_query_threshold`.
    pub slow_queries: u64,
    /// Median query latency, microseconds.
    pub query_p50_us: u64,
    /// 99th-percentile query latency, microseconds.
    pub query_p99_us: u64,
    /// Slowest query, microseconds.
    pub query_max_us: u64,
    /// The query latency distribution (for Prometheus histograms).
    pub query_latency: LatencyHistogram,
    /// Transactions started through [`Pool::transaction`](crate::Pool::transaction) (attempts).
    pub transactions: u64,
    /// Transactions whose commit outcome was unknown.
    pub commits_unknown: u64,
    /// Queries cancelled on the server because their caller went away.
    pub cancellations: u64,
    /// Shared PostgreSQL read sessions opened (see [`Config::read_connections`](crate::Config::read_connections)).
    pub read_connections_opened: u64,
    /// Retries, by the error kind that caused them (`ErrorKind::as_str` names).
    pub retries: BTreeMap<String, u64>,
}

impl PoolStats {
    /// Total retries of every kind.
    pub fn total_retries(&self) -> u64 {
        self.retries.values().sum()
    }
}

pub(crate) fn snapshot(c: &Counters, state: &bb8::State, max_size: u32) -> PoolStats {
    let s = &state.statistics;
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    PoolStats {
        max_size,
        size: state.connections,
        idle: state.idle_connections,
        in_use: state.connections.saturating_sub(state.idle_connections),
        waiters: c.waiting.load(Relaxed),
        connections_created: s.connections_created,
        connections_closed_broken: s.connections_closed_broken,
        connections_closed_invalid: s.connections_closed_invalid,
        connections_closed_expired: s.connections_closed_max_lifetime + s.connections_closed_idle_timeout,
        acquires: c.acquires.load(Relaxed),
        acquires_waited: s.get_waited,
        acquire_timeouts: c.acquire_timeouts.load(Relaxed),
        acquire_p50_us: us(c.acquire_latency.quantile(0.5)),
        acquire_p99_us: us(c.acquire_latency.quantile(0.99)),
        pings: c.pings.load(Relaxed),
        queries: c.queries.load(Relaxed),
        query_errors: c.query_errors.load(Relaxed),
        slow_queries: c.slow_queries.load(Relaxed),
        query_p50_us: us(c.query_latency.quantile(0.5)),
        query_p99_us: us(c.query_latency.quantile(0.99)),
        query_max_us: us(c.query_latency.max()),
        query_latency: c.query_latency.cumulative(),
        transactions: c.transactions.load(Relaxed),
        commits_unknown: c.commits_unknown.load(Relaxed),
        cancellations: c.cancellations.load(Relaxed),
        read_connections_opened: c.read_connections_opened.load(Relaxed),
        retries: c
            .retries
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_an_eighth() {
        for us in [0u64, 1, 15, 16, 17, 100, 999, 1000, 12_345, 1_000_000, 987_654_321] {
            let top = bucket_top(bucket_of(us));
            assert!(top >= us, "{us} -> {top}");
            assert!(top as f64 <= (us as f64) * 1.125 + 1.0, "{us} -> {top}");
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as u64;
        let p99 = h.quantile(0.99).as_micros() as u64;
        assert!((500..=570).contains(&p50), "{p50}");
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.count(), 1000);
    }
}
