//! Read-through caching of the repository's point reads (feature `cache`): which reads go
//! through [`keel_cache::Cache`], under which keys, and which writes invalidate which keys after
//! their commit. Without the feature (or without [`Repo::with_cache`]) every call here is a
//! plain database read and invalidations are no-ops.
//!
//! | read | key | invalidated by |
//! |---|---|---|
//! | [`Repo::get_user`] | `user:{id}` | create, update, delete of the user; batch insert of users |
//! | [`Repo::user_with_jobs`] | `user_jobs:{id}` | the same, and create, delete, batch insert of the user's jobs |
//! | [`Repo::get_job`] | `job:{id}` | create, delete of the job (or its user); batch insert of jobs |
//! | [`Repo::get_account`] | `account:{id}` | create of the account, a transfer from or to it, deletion of its owner |
//!
//! Writes through [`Repo::execute`] (raw SQL) invalidate nothing: the repository cannot know
//! which rows they touch. Such a write's stale entries live until their TTL; invalidate them
//! yourself with [`keel_cache::Cache::invalidate`] and the keys of [`keys`].

use std::future::Future;

use keel_schema::Id;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Repo;
use crate::error::Result;

/// The cache keys of the repository's reads (before the cache's own prefix and version).
pub mod keys {
    use keel_schema::Id;

    /// [`Repo::get_user`](crate::Repo::get_user).
    pub fn user(id: Id) -> String {
        format!("user:{id}")
    }

    /// [`Repo::user_with_jobs`](crate::Repo::user_with_jobs).
    pub fn user_jobs(id: Id) -> String {
        format!("user_jobs:{id}")
    }

    /// [`Repo::get_job`](crate::Repo::get_job).
    pub fn job(id: Id) -> String {
        format!("job:{id}")
    }

    /// [`Repo::get_account`](crate::Repo::get_account).
    pub fn account(id: Id) -> String {
        format!("account:{id}")
    }

    /// Everything cached about a user row: the row and its jobs listing.
    pub fn user_all(id: Id) -> [String; 2] {
        [user(id), user_jobs(id)]
    }
}

/// Invalidations owed by a write in progress; a no-op without a cache. See [`keel_cache::Owed`].
pub(crate) struct Owed {
    #[cfg(feature = "cache")]
    inner: Option<keel_cache::Owed>,
}

impl Owed {
    /// Adds keys learned during the write (say, the rows a cascade deleted).
    #[cfg_attr(not(feature = "cache"), allow(unused_variables, unused_mut))]
    pub(crate) fn add(&mut self, keys: impl IntoIterator<Item = String>) {
        #[cfg(feature = "cache")]
        if let Some(owed) = &mut self.inner {
            owed.add(keys);
        }
    }

    /// Sends the invalidations, the write being over (committed or rolled back). Retried writes
    /// settle once, after their last attempt.
    pub(crate) async fn settle(self) {
        #[cfg(feature = "cache")]
        if let Some(owed) = self.inner {
            owed.settle().await;
        }
    }
}

impl Repo {
    /// Reads through the cache: [`Repo::get_user`], [`Repo::get_job`], [`Repo::get_account`] and
    /// [`Repo::user_with_jobs`] answer from Redis when they can, and the repository's writes
    /// invalidate what they change after their commit (see the `cache` module docs).
    ///
    /// ```no_run
    /// # async fn demo(pool: keel_pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = keel_cache::Cache::connect("redis://127.0.0.1:6379", keel_cache::CacheConfig::new()).await?;
    /// let repo = keel_repo::Repo::new(pool).with_cache(cache);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cache")]
    pub fn with_cache(mut self, cache: keel_cache::Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The cache the repository reads through, if any.
    #[cfg(feature = "cache")]
    pub fn cache(&self) -> Option<&keel_cache::Cache> {
        self.cache.as_ref()
    }

    /// True when reads go through a cache.
    pub(crate) fn caching(&self) -> bool {
        #[cfg(feature = "cache")]
        return self.cache.is_some();
        #[cfg(not(feature = "cache"))]
        false
    }

    /// `load` through the cache under `key`, or `load` alone without one.
    #[cfg_attr(not(feature = "cache"), allow(unused_variables))]
    pub(crate) async fn read_through<T, F, Fut>(
        &self,
        key: impl FnOnce() -> String,
        load: F,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.cache {
            return cache.get_or_load(&key(), load).await;
        }
        load().await
    }

    /// Invalidations a write about to start owes (sent by [`Owed::settle`], or on drop).
    #[cfg_attr(not(feature = "cache"), allow(unused_variables))]
    pub(crate) fn owe<K: IntoIterator<Item = String>>(&self, keys: impl FnOnce() -> K) -> Owed {
        Owed {
            #[cfg(feature = "cache")]
            inner: self.cache.as_ref().map(|c| c.owe(keys())),
        }
    }

    /// Runs `write`, then sends the invalidations of `keys` whatever its outcome (a failed or
    /// retried write may still have committed); dropped mid-write, the [`Owed`] guard sends them.
    pub(crate) async fn invalidating<T, K: IntoIterator<Item = String>>(
        &self,
        keys: impl FnOnce() -> K,
        write: impl Future<Output = T>,
    ) -> T {
        let owed = self.owe(keys);
        let done = write.await;
        owed.settle().await;
        done
    }

    /// Invalidates everything cached about these users (a batch insert), after the commit.
    pub(crate) fn user_keys(ids: impl IntoIterator<Item = Id>) -> Vec<String> {
        ids.into_iter().flat_map(keys::user_all).collect()
    }
}
