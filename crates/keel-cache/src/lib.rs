//! keel-cache: a Redis read-through cache that is never stale after a commit and never takes
//! the service down.
//!
//! What it is for: putting Redis in front of hot point reads without the three bugs of
//! hand-written cache-aside. **Stale sets**: a fill takes a lease on the key before the
//! database read and sets the value with a Lua script only if that lease is still there; an
//! invalidation deletes the key, lease and all, so a fill that read before a commit can never
//! land after that commit's invalidation. **Stampedes**: concurrent misses for one key in a
//! process share one database read (single-flight), and other processes that find the lease
//! poll briefly for its value instead of reading the database. **Outages**: every Redis call has
//! a timeout of a few milliseconds, after which the caller reads the database; a circuit breaker
//! stops paying even that while Redis is down and probes it again every
//! [`CacheConfig::breaker_open_for`], so a Redis that comes back is used within about a
//! second, by itself.
//!
//! What it is not for: knowing which keys a write touches. The caller names them — `keel-repo`
//! does for its own tables (feature `cache`) — and calls [`Cache::invalidate`] (or
//! [`Cache::owe`]) after the commit.
//!
//! # What is guaranteed
//! - After `invalidate` returns with Redis up, no reader anywhere gets the pre-commit value
//!   from Redis, and no fill that started before the invalidation lands.
//! - With Redis down or slow, the invalidation waits in a bounded queue and is retried every
//!   50 ms; until it is delivered, this process reads around the cache. Other processes can see
//!   the old value until the retry lands or the entry's TTL ([`CacheConfig::ttl`] plus jitter)
//!   ends, whichever is first; a writer that crashes between commit and invalidation is bounded
//!   by the TTL the same way. If the queue overflows, this process reads around the cache for a
//!   full TTL.
//! - The invalidation runs on a spawned task: a caller dropped after the commit still sends
//!   it, and an [`Owed`] guard dropped mid-commit sends it twice (at once and after
//!   [`CacheConfig::late_invalidation`]).
//! - A caller that joins another caller's fill gets its result only if that result was read
//!   after the caller joined (or was set under a lease no invalidation broke); otherwise it
//!   reads again.
//!
//! Modules: `cache` ([`Cache`], connection, timeout, breaker use, the Lua scripts), `read`
//! ([`Cache::get_or_load`], [`Cache::peek`]), `invalidate` ([`Cache::invalidate`], [`Owed`],
//! the retry queue), `flight` (single-flight), `codec` (what a key holds), [`breaker`],
//! [`config`], [`stats`], [`error`].

mod cache;
mod codec;
mod flight;
mod invalidate;
mod read;

pub mod breaker;
pub mod config;
pub mod error;
pub mod stats;

pub use breaker::BreakerState;
pub use cache::Cache;
pub use config::CacheConfig;
pub use error::Error;
pub use invalidate::Owed;
pub use read::Cached;
pub use stats::CacheStats;
