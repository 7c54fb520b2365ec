//! The read path: a hit from Redis, or one fill per key (single-flight in the process, a lease
//! across processes) that lands only if no invalidation came in between.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::cache::Cache;
use crate::codec::{self, Entry};
use crate::flight::{self, Outcome, Role};
use crate::stats::bump;

/// How often a caller that found another process's lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(2);

/// What a key holds in Redis now, from [`Cache::peek`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cached<T> {
    /// Nothing: the next read misses.
    Absent,
    /// A value.
    Value(T),
    /// A cached `not_found`.
    NotFound,
    /// A filler's lease: a fill is in progress.
    Lease,
}

/// Where a leader's answer came from.
enum Answer<T> {
    /// Redis held it (value or `not_found`).
    Cached(Option<T>, Vec<u8>, u64),
    /// Read from the database; `fill` says whether this caller holds the lease.
    Load { lease: Option<Vec<u8>> },
}

impl Cache {
    /// The value under `key`, from Redis when it is there, else from `load` (the database),
    /// whose answer is then cached: `Some` for [`CacheConfig::ttl`](crate::CacheConfig::ttl)
    /// plus jitter, `None` (not found) for
    /// [`CacheConfig::negative_ttl`](crate::CacheConfig::negative_ttl). Returns `load`'s error
    /// as is (errors are not cached).
    ///
    /// Concurrent misses for one key in this process run `load` once; across processes the one
    /// holding the key's lease runs it and the others poll up to
    /// [`CacheConfig::lease_wait`](crate::CacheConfig::lease_wait) for its value. A fill lands
    /// only if no invalidation of the key came in after its lease was taken, that is after
    /// `load` started. When Redis is slow, failing, or its breaker open, `load` answers and
    /// nothing is cached: Redis trouble never becomes the caller's error.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, load: F) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let key = self.redis_key(key);
        let c = &self.inner.counters;
        loop {
            // Whether Redis may be asked; when not, the flight still saves the database from
            // a stampede.
            let mut use_redis = true;
            if self.bypassing() {
                bump(&c.bypassed);
                use_redis = false;
            } else {
                let got = self
                    .call(|mut conn| {
                        let key = key.clone();
                        async move { redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut conn).await }
                    })
                    .await;
                match got {
                    Ok(Some(raw)) => match codec::decode::<T>(&key, &raw) {
                        Ok(Entry::Value(v)) => {
                            bump(&c.hits);
                            return Ok(Some(v));
                        }
                        Ok(Entry::NotFound) => {
                            bump(&c.negative_hits);
                            return Ok(None);
                        }
                        Ok(Entry::Lease) => {}
                        Err(e) => {
                            bump(&c.codec_errors);
                            tracing::warn!(error = %e, "undecodable cache entry: reading the database");
                            use_redis = false;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        if matches!(e, Error::BreakerOpen { .. }) {
                            bump(&c.bypassed);
                        }
                        use_redis = false;
                    }
                }
            }
            match self.inner.flights.join(&key) {
                Role::Follower { ticket, slot } => {
                    bump(&c.flights_joined);
                    if let Some(entry) = flight::follow(ticket, slot).await {
                        match codec::decode::<T>(&key, &entry) {
                            Ok(Entry::Value(v)) => return Ok(Some(v)),
                            Ok(Entry::NotFound) => return Ok(None),
                            // Never published; a bad entry: read again.
                            Ok(Entry::Lease) | Err(_) => {}
                        }
                    }
                    // The leader failed, went away, or read before this caller came: again.
                }
                Role::Leader(leader) => return self.lead(&key, leader, use_redis, load).await,
            }
        }
    }

    async fn lead<T, E, F, Fut>(
        &self,
        key: &str,
        mut leader: flight::Leader,
        use_redis: bool,
        load: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let c = &self.inner.counters;
        let flights = &self.inner.flights;
        let answer = if use_redis { self.acquire(key).await } else { Answer::Load { lease: None } };
        match answer {
            Answer::Cached(value, entry, fresh_as_of) => {
                leader.publish(Outcome { entry: entry.into(), fresh_as_of });
                Ok(value)
            }
            Answer::Load { lease } => {
                bump(&c.misses);
                let read_from = flights.ticket();
                let loaded = load().await;
                let value = match &loaded {
                    Ok(v) => v.as_ref(),
                    Err(_) => {
                        if let Some(token) = lease {
                            self.release(key, token);
                        }
                        return loaded;
                    }
                };
                let entry = match codec::encode(key, value) {
                    Ok(entry) => entry,
                    Err(e) => {
                        bump(&c.codec_errors);
                        tracing::warn!(error = %e, "value not cacheable");
                        return loaded;
                    }
                };
                let Some(token) = lease else {
                    leader.publish(Outcome { entry: entry.into(), fresh_as_of: read_from });
                    return loaded;
                };
                if let Some(barrier) = &self.inner.config.fill_barrier {
                    barrier(key).await;
                }
                // Callers from now on start a flight of their own; the ones already here get
                // this value if the fill lands (see `flight`).
                leader.close();
                let fill_sent = flights.ticket();
                let fresh_as_of = match self.fill(key, &token, &entry, value.is_some()).await {
                    Ok(true) => {
                        bump(&c.fills);
                        fill_sent
                    }
                    Ok(false) => {
                        bump(&c.stale_set_refusals);
                        read_from
                    }
                    Err(_) => read_from,
                };
                leader.publish(Outcome { entry: entry.into(), fresh_as_of });
                loaded
            }
        }
    }

    /// Takes the key's lease, or finds its value; waits for another process's lease for a
    /// while. Redis trouble: load without a lease.
    async fn acquire<T: DeserializeOwned>(&self, key: &str) -> Answer<T> {
        let c = &self.inner.counters;
        let i = &self.inner;
        let token = codec::lease_token();
        let lease_ms = millis(i.config.lease_ttl);
        let deadline = Instant::now() + i.config.lease_wait;
        let mut waited = false;
        loop {
            let sent = i.flights.ticket();
            let got = self
                .call(|mut conn| {
                    let mut inv = i.scripts.acquire.key(key);
                    inv.arg(&token).arg(lease_ms);
                    async move { inv.invoke_async::<Option<Vec<u8>>>(&mut conn).await }
                })
                .await;
            let raw = match got {
                Ok(None) => return Answer::Load { lease: Some(token) },
                Ok(Some(raw)) => raw,
                Err(_) => return Answer::Load { lease: None },
            };
            match codec::decode::<T>(key, &raw) {
                Ok(Entry::Value(v)) => {
                    bump(&c.hits);
                    return Answer::Cached(Some(v), raw, sent);
                }
                Ok(Entry::NotFound) => {
                    bump(&c.negative_hits);
                    return Answer::Cached(None, raw, sent);
                }
                Ok(Entry::Lease) => {
                    if !waited {
                        waited = true;
                        bump(&c.lease_waits);
                    }
                    if Instant::now() + LEASE_POLL > deadline {
                        bump(&c.lease_wait_timeouts);
                        return Answer::Load { lease: None };
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                }
                Err(_) => {
                    bump(&c.codec_errors);
                    return Answer::Load { lease: None };
                }
            }
        }
    }

    /// The conditional set: `Ok(true)` if it landed, `Ok(false)` if the lease was gone.
    async fn fill(&self, key: &str, token: &[u8], entry: &[u8], found: bool) -> Result<bool, Error> {
        let cfg = &self.inner.config;
        let ttl = if found {
            let jitter = millis(cfg.ttl_jitter);
            millis(cfg.ttl) + if jitter > 0 { rand::random_range(0..=jitter) } else { 0 }
        } else {
            millis(cfg.negative_ttl)
        };
        let landed: i64 = self
            .call(|mut conn| {
                let mut inv = self.inner.scripts.fill.key(key);
                inv.arg(token).arg(entry).arg(ttl.max(1));
                async move { inv.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(landed == 1)
    }

    /// Gives the lease back after a failed load, on a task of its own (best effort).
    fn release(&self, key: &str, token: Vec<u8>) {
        let cache = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let _ = cache
                .call(|mut conn| {
                    let mut inv = cache.inner.scripts.release.key(&key);
                    inv.arg(&token);
                    async move { inv.invoke_async::<i64>(&mut conn).await }
                })
                .await;
        });
    }

    /// What Redis holds under `key` now (for inspection, tests and the tour), through the
    /// breaker and timeout; `Codec` if the entry is not a `T`.
    pub async fn peek<T: DeserializeOwned>(&self, key: &str) -> Result<Cached<T>, Error> {
        let key = self.redis_key(key);
        let raw = self
            .call(|mut conn| {
                let key = key.clone();
                async move { redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut conn).await }
            })
            .await?;
        Ok(match raw {
            None => Cached::Absent,
            Some(raw) => match codec::decode(&key, &raw)? {
                Entry::Value(v) => Cached::Value(v),
                Entry::NotFound => Cached::NotFound,
                Entry::Lease => Cached::Lease,
            },
        })
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
