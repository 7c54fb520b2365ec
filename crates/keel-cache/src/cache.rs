//! [`Cache`]: the connection to Redis, the per-call timeout and breaker, and the Lua scripts.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use crate::breaker::{Breaker, BreakerState};
use crate::flight::Flights;
use crate::stats::{self, CacheStats, Counters};
use crate::{CacheConfig, Error};

/// Takes the lease on an empty key, or returns what the key holds (a value, a `not_found`, or
/// another filler's lease). KEYS[1] = key, ARGV[1] = lease token, ARGV[2] = lease TTL in ms.
const ACQUIRE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Sets the value only if the key still holds this filler's lease: an invalidation (which
/// deletes the key, lease and all) between the lease and the fill makes the fill a no-op.
/// KEYS[1] = key, ARGV[1] = lease token, ARGV[2] = entry, ARGV[3] = TTL in ms.
const FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Deletes the key only if it still holds this filler's lease (a failed fill lets others in).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) fill: Script,
    pub(crate) release: Script,
}

/// A Redis read-through cache with leases, single-flight fills and a circuit breaker. Cheap to
/// clone (one shared state); `Debug` shows the server, never credentials.
///
/// ```no_run
/// # async fn demo() -> Result<(), keel_cache::Error> {
/// use keel_cache::{Cache, CacheConfig};
/// let cache = Cache::connect("redis://127.0.0.1:6379", CacheConfig::new()).await?;
/// let name: Option<String> = cache
///     .get_or_load("user:42", || async { Ok::<_, std::io::Error>(Some("Ada".to_owned())) })
///     .await
///     .expect("the loader does not fail");
/// cache.invalidate(["user:42".to_owned()]).await; // after the commit that changed it
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: CacheConfig,
    conn: ConnectionManager,
    /// `host:port`, for messages (never credentials).
    pub(crate) server: String,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Counters,
    pub(crate) flights: Arc<Flights>,
    pub(crate) scripts: Scripts,
    /// Keys whose invalidation failed, oldest first, waiting for the retry task.
    pub(crate) pending: Mutex<VecDeque<String>>,
    pub(crate) pending_len: AtomicU64,
    /// Reads bypass the cache until then (an invalidation was dropped).
    pub(crate) bypass_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("server", &self.inner.server)
            .field("config", &self.inner.config)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

/// `host:port` of a Redis URL, or `***` when it does not parse; `url` with its password replaced.
fn describe(url: &str) -> (String, String) {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let server = format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(6379));
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            (server, u.to_string())
        }
        Err(_) => ("?".into(), "(unparsable URL, not shown)".into()),
    }
}

impl Cache {
    /// A cache on the Redis at `url` (`redis://[user:password@]host[:port][/db]`).
    ///
    /// The connection is made in the background and remade by itself after Redis restarts.
    /// When Redis cannot be reached now, the cache is still returned, with its breaker open:
    /// reads go to the database until Redis answers (a warning is logged; [`Cache::ping`]
    /// tells). Fails only for a URL that cannot be used. Needs a tokio runtime.
    pub async fn connect(url: &str, config: CacheConfig) -> Result<Cache, Error> {
        let (server, shown) = describe(url);
        let invalid = |reason: String| Error::InvalidUrl { url: shown.clone(), reason };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if parsed.scheme() != "redis" {
            return Err(invalid(format!(
                "scheme {:?} is not supported: use redis://host:port (TLS is not built in)",
                parsed.scheme()
            )));
        }
        // redis-rs's own message may repeat the URL: keep ours.
        let client = redis::Client::open(url).map_err(|_| invalid("not a Redis URL".into()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| invalid(e.to_string()))?;
        let cache = Cache {
            inner: Arc::new(Inner {
                breaker: Breaker::new(config.breaker_threshold, config.breaker_open_for),
                config,
                conn,
                server,
                counters: Counters::default(),
                flights: Arc::default(),
                scripts: Scripts {
                    acquire: Script::new(ACQUIRE),
                    fill: Script::new(FILL),
                    release: Script::new(RELEASE),
                },
                pending: Mutex::default(),
                pending_len: AtomicU64::new(0),
                bypass_until: Mutex::new(None),
            }),
        };
        tokio::spawn(crate::invalidate::retry_pending(Arc::downgrade(&cache.inner)));
        if let Err(e) = cache.ping_within(Duration::from_secs(1)).await {
            cache.inner.breaker.trip();
            tracing::warn!(server = %cache.inner.server, error = %e, "Redis unreachable: reading from the database until it answers");
        }
        Ok(cache)
    }

    /// A health check: one `PING` round trip, sent even while the breaker is open (a success
    /// closes it), within the per-call timeout or 1 s, whichever is longer. Its latency, or why
    /// Redis cannot be used now.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = Instant::now();
        self.ping_within(self.inner.config.timeout.max(Duration::from_secs(1))).await?;
        self.inner.breaker.success();
        Ok(start.elapsed())
    }

    /// `PING` bypassing the breaker.
    async fn ping_within(&self, limit: Duration) -> Result<(), Error> {
        let mut c = self.inner.conn.clone();
        match tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut c)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.redis_error(&e)),
            Err(_) => Err(self.timeout_error(limit)),
        }
    }

    /// The cache's numbers now.
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        stats::snapshot(
            &i.counters,
            i.breaker.state(),
            i.breaker.opens.load(Relaxed),
            i.pending_len.load(Relaxed),
        )
    }

    /// The breaker now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// The config the cache runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The Redis key for a logical key: `{prefix}:v{version}:{key}`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:v{}:{}", self.inner.config.prefix, self.inner.config.version, key)
    }

    fn redis_error(&self, e: &redis::RedisError) -> Error {
        // A RedisError's text holds the server's message or the I/O error, not the URL.
        Error::Redis { server: self.inner.server.clone(), message: e.to_string() }
    }

    fn timeout_error(&self, limit: Duration) -> Error {
        Error::Timeout {
            server: self.inner.server.clone(),
            timeout_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// One Redis call through the breaker and the per-call timeout, timed and counted.
    pub(crate) async fn call<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let i = &self.inner;
        if !i.breaker.allow() {
            return Err(Error::BreakerOpen { server: i.server.clone() });
        }
        let start = Instant::now();
        let outcome = tokio::time::timeout(i.config.timeout, op(i.conn.clone())).await;
        i.counters.redis_latency.record(start.elapsed());
        match outcome {
            Ok(Ok(v)) => {
                i.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                i.breaker.failure();
                stats::bump(&i.counters.redis_errors);
                Err(self.redis_error(&e))
            }
            Err(_) => {
                i.breaker.failure();
                stats::bump(&i.counters.redis_timeouts);
                Err(self.timeout_error(i.config.timeout))
            }
        }
    }

    /// True when reads must skip Redis: invalidations owed by this process are undelivered (so
    /// Redis may hold a value this process knows is stale), or some were dropped within a TTL.
    pub(crate) fn bypassing(&self) -> bool {
        let i = &self.inner;
        if i.pending_len.load(Relaxed) > 0 {
            return true;
        }
        let mut until = i.bypass_until.lock().unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }
}
