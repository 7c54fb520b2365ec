//! `/metrics`: the pool's numbers and the HTTP request counters in the Prometheus text format
//! (0.0.4), written by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use keel_cache::BreakerState;
use keel_pool::{ErrorKind, LatencyHistogram, PoolStats};

/// The `Content-Type` of the exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of requests that matched no route (never the raw path: ids in paths would
/// make one series per id).
const UNMATCHED: &str = "unmatched";

/// Kinds that transactions retry, listed with 0 before any retry so dashboards see the series.
const RETRIED_KINDS: &[ErrorKind] = &[
    ErrorKind::Connect,
    ErrorKind::AcquireTimeout,
    ErrorKind::ConnectionLost,
    ErrorKind::ServerShutdown,
    ErrorKind::TooManyConnections,
    ErrorKind::SerializationFailure,
    ErrorKind::Deadlock,
    ErrorKind::LockTimeout,
];

/// HTTP counters, by route template, method and status.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    in_flight: Mutex<BTreeMap<String, i64>>,
}

impl HttpMetrics {
    fn add_in_flight(&self, route: &str, delta: i64) {
        if let Ok(mut m) = self.in_flight.lock() {
            *m.entry(route.to_owned()).or_default() += delta;
        }
    }
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a> {
    metrics: &'a HttpMetrics,
    route: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.add_in_flight(self.route, -1);
    }
}

/// A method as a label value: the standard ones by name, anything else as `other` (clients
/// choose methods, and each would otherwise become a series).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts every response in `http_requests_total` under the matched route
/// template (`/users/{id}`), and requests in flight per route.
pub(crate) async fn track(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
    metrics.add_in_flight(&route, 1);
    let guard = InFlight { metrics: &metrics, route: &route };
    let response = next.run(request).await;
    drop(guard);
    if let Ok(mut m) = metrics.requests.lock() {
        *m.entry((route, method, response.status().as_u16())).or_default() += 1;
    }
    response
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

fn histogram(out: &mut String, name: &str, help: &str, h: &LatencyHistogram) {
    family(out, name, "histogram", help);
    for &(le_us, count) in &h.le_us {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", seconds(le_us));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", seconds(h.sum_us));
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// The whole exposition: pool gauges and counters, the query latency histogram, retries by
/// kind and the HTTP counters.
/// Per replica: reads served, lag, failures; and where reads went when no replica could serve.
fn routing_metrics(o: &mut String, r: &keel_pool::RoutingStats) {
    type Value = fn(&keel_pool::ReplicaStats) -> f64;
    let families: [(&str, &str, &str, Value); 6] = [
        ("keel_replica_reads_total", "counter", "Reads served by each replica.", |x| x.reads as f64),
        (
            "keel_replica_failures_total",
            "counter",
            "Reads that failed on a replica and ran on the primary.",
            |x| x.failures as f64,
        ),
        ("keel_replica_lag_bytes", "gauge", "WAL bytes each replica is behind the primary.", |x| {
            x.lag_bytes as f64
        }),
        ("keel_replica_lag_seconds", "gauge", "Replay lag of each replica (0 when caught up).", |x| {
            x.lag.as_secs_f64()
        }),
        ("keel_replica_usable", "gauge", "1 when the replica takes reads.", |x| {
            f64::from(u8::from(x.usable))
        }),
        (
            "keel_replica_promoted",
            "gauge",
            "1 when the replica was seen promoted (out of recovery): a failover happened.",
            |x| f64::from(u8::from(x.promoted)),
        ),
    ];
    for (name, kind, help, value) in families {
        family(o, name, kind, help);
        for x in &r.replicas {
            let _ = writeln!(o, "{name}{{replica=\"{}\"}} {}", escape(&x.url), value(x));
        }
    }
    single(
        o,
        "keel_replica_fallbacks_total",
        "counter",
        "Reads sent to the primary: no replica was usable.",
        r.primary_fallbacks,
    );
    single(
        o,
        "keel_read_your_writes_reads_total",
        "counter",
        "Reads that carried a causality token.",
        r.token_reads,
    );
    single(
        o,
        "keel_read_your_writes_waits_total",
        "counter",
        "Token reads that asked a replica for its position.",
        r.token_waits,
    );
    single(
        o,
        "keel_read_your_writes_primary_total",
        "counter",
        "Token reads the primary served: no replica caught up in time.",
        r.token_primary,
    );
}

/// The Redis cache's numbers (when `serve` runs with one).
fn cache_metrics(o: &mut String, c: &keel_cache::CacheStats) {
    for (name, help, n) in [
        ("keel_cache_hits_total", "Reads answered from Redis with a value.", c.hits),
        (
            "keel_cache_negative_hits_total",
            "Reads answered from Redis with a cached not_found.",
            c.negative_hits,
        ),
        ("keel_cache_misses_total", "Reads that went to the database.", c.misses),
        ("keel_cache_fills_total", "Values written to Redis after a database read.", c.fills),
        (
            "keel_cache_stale_set_refusals_total",
            "Fills refused because an invalidation came in after their database read.",
            c.stale_set_refusals,
        ),
        ("keel_cache_flights_joined_total", "Reads that shared another caller's fill.", c.flights_joined),
        ("keel_cache_lease_waits_total", "Reads that waited for another process's fill.", c.lease_waits),
        ("keel_cache_bypassed_total", "Reads sent straight to the database (breaker open).", c.bypassed),
        ("keel_cache_redis_errors_total", "Redis calls that failed.", c.redis_errors),
        ("keel_cache_redis_timeouts_total", "Redis calls over the per-call timeout.", c.redis_timeouts),
        ("keel_cache_breaker_opens_total", "Times the circuit breaker opened.", c.breaker_opens),
        ("keel_cache_invalidations_total", "Keys invalidated in Redis.", c.invalidations_sent),
        (
            "keel_cache_invalidations_dropped_total",
            "Invalidations dropped because the retry queue was full.",
            c.invalidations_dropped,
        ),
    ] {
        single(o, name, "counter", help, n);
    }
    single(
        o,
        "keel_cache_invalidations_pending",
        "gauge",
        "Invalidations waiting for Redis to come back.",
        c.invalidations_pending,
    );
    family(o, "keel_cache_breaker_state", "gauge", "1 for the circuit breaker's current state.");
    for state in [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen] {
        let on = u8::from(c.breaker_state == state);
        let _ = writeln!(o, "keel_cache_breaker_state{{state=\"{}\"}} {on}", state.as_str());
    }
    histogram(o, "keel_cache_redis_duration_seconds", "Redis call latency.", &c.redis_latency);
}

pub(crate) fn render(
    stats: &PoolStats,
    routing: Option<&keel_pool::RoutingStats>,
    cache: Option<&keel_cache::CacheStats>,
    http: &HttpMetrics,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;
    single(o, "keel_pool_max_connections", "gauge", "Most connections the pool opens.", stats.max_size);
    single(o, "keel_pool_connections", "gauge", "Connections open (idle + in use).", stats.size);
    single(o, "keel_pool_idle_connections", "gauge", "Connections idle in the pool.", stats.idle);
    single(o, "keel_pool_in_use_connections", "gauge", "Connections checked out.", stats.in_use);
    single(o, "keel_pool_waiters", "gauge", "Callers waiting for a connection.", stats.waiters);
    single(
        o,
        "keel_pool_connections_created_total",
        "counter",
        "Connections opened.",
        stats.connections_created,
    );
    family(o, "keel_pool_connections_closed_total", "counter", "Connections closed, by reason.");
    for (reason, n) in [
        ("broken", stats.connections_closed_broken),
        ("invalid", stats.connections_closed_invalid),
        ("expired", stats.connections_closed_expired),
    ] {
        let _ = writeln!(o, "keel_pool_connections_closed_total{{reason=\"{reason}\"}} {n}");
    }
    single(o, "keel_pool_acquires_total", "counter", "Successful checkouts.", stats.acquires);
    single(
        o,
        "keel_pool_acquires_waited_total",
        "counter",
        "Checkouts that had to wait.",
        stats.acquires_waited,
    );
    single(
        o,
        "keel_pool_acquire_timeouts_total",
        "counter",
        "Checkouts that timed out.",
        stats.acquire_timeouts,
    );
    single(o, "keel_pool_pings_total", "counter", "Pings sent on checkout.", stats.pings);
    single(o, "keel_queries_total", "counter", "Queries run.", stats.queries);
    single(o, "keel_query_errors_total", "counter", "Queries that returned an error.", stats.query_errors);
    single(o, "keel_slow_queries_total", "counter", "Queries over the slow threshold.", stats.slow_queries);
    histogram(o, "keel_query_duration_seconds", "Query latency.", &stats.query_latency);
    single(o, "keel_transactions_total", "counter", "Transaction attempts.", stats.transactions);
    single(
        o,
        "keel_commits_unknown_total",
        "counter",
        "Transactions whose commit outcome was unknown.",
        stats.commits_unknown,
    );
    single(
        o,
        "keel_query_cancellations_total",
        "counter",
        "Queries cancelled because their caller went away.",
        stats.cancellations,
    );
    family(o, "keel_retries_total", "counter", "Transaction retries, by the error kind that caused them.");
    let mut retries: BTreeMap<&str, u64> = RETRIED_KINDS.iter().map(|k| (k.as_str(), 0)).collect();
    for (kind, n) in &stats.retries {
        *retries.entry(kind.as_str()).or_default() += n;
    }
    for (kind, n) in retries {
        let _ = writeln!(o, "keel_retries_total{{kind=\"{}\"}} {n}", escape(kind));
    }
    if let Some(r) = routing {
        routing_metrics(o, r);
    }
    if let Some(c) = cache {
        cache_metrics(o, c);
    }
    family(o, "http_requests_total", "counter", "HTTP responses, by route template, method and status.");
    if let Ok(m) = http.requests.lock() {
        for ((route, method, status), n) in m.iter() {
            let _ = writeln!(
                o,
                "http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
    }
    family(o, "http_requests_in_flight", "gauge", "HTTP requests being handled, by route template.");
    if let Ok(m) = http.in_flight.lock() {
        for (route, n) in m.iter() {
            let _ = writeln!(o, "http_requests_in_flight{{route=\"{}\"}} {n}", escape(route));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_a_well_formed_histogram() {
        let http = HttpMetrics::default();
        http.requests.lock().unwrap().insert(("/users/{id}".to_owned(), "GET", 200), 3);
        let mut stats = PoolStats::default();
        stats.query_latency.le_us = keel_pool::LATENCY_BUCKETS_US.iter().map(|&b| (b, 0)).collect();
        let text = render(&stats, None, None, &http);
        for needle in [
            "# TYPE keel_pool_connections gauge",
            "# TYPE keel_query_duration_seconds histogram",
            "keel_query_duration_seconds_bucket{le=\"0.00005\"} 0",
            "keel_query_duration_seconds_bucket{le=\"+Inf\"} 0",
            "keel_query_duration_seconds_count 0",
            "keel_retries_total{kind=\"deadlock\"} 0",
            "http_requests_total{route=\"/users/{id}\",method=\"GET\",status=\"200\"} 3",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
