//! Batch inserts of the demo's rows, on [`keel_pool::bulk`]: the repository checks each row
//! with its own rules (the same as for one row), then hands the batch to
//! [`keel_pool::bulk::insert`] (binary `COPY` on PostgreSQL, chunked multi-row `INSERT`s in one
//! transaction elsewhere). All rows or none; a failing row is reported by its index.

use keel_pool::BulkRow;
use keel_schema::{NewAccount, NewJob, NewUser};

use crate::Repo;
use crate::cache::keys;
use crate::error::{Error, Result};

pub use keel_pool::bulk::{DEFAULT_CHUNK_ROWS, Method as BatchMethod, Options as BatchOptions, bind_limit};

/// A row type the repository's batch paths insert: [`NewUser`], [`NewJob`] and [`NewAccount`],
/// each a [`BulkRow`] checked with the repository's rules first.
pub trait BatchRow: BulkRow + private::Sealed {
    /// Checks every row before anything is sent; the first bad row's index and why.
    #[doc(hidden)]
    fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)>;

    /// The cache keys inserting these rows makes stale (see [`crate::cache`]).
    #[doc(hidden)]
    fn cache_keys(rows: &[Self]) -> Vec<String>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for keel_schema::NewUser {}
    impl Sealed for keel_schema::NewJob {}
    impl Sealed for keel_schema::NewAccount {}
}

impl BatchRow for NewUser {
    fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)> {
        crate::users::validate_users(rows)
    }

    fn cache_keys(rows: &[Self]) -> Vec<String> {
        Repo::user_keys(rows.iter().map(|u| u.id))
    }
}

impl BatchRow for NewJob {
    fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)> {
        crate::jobs::validate_jobs(rows)
    }

    fn cache_keys(rows: &[Self]) -> Vec<String> {
        let owners: std::collections::BTreeSet<_> = rows.iter().map(|j| j.user_id).collect();
        let jobs = rows.iter().map(|j| keys::job(j.id));
        owners.into_iter().map(keys::user_jobs).chain(jobs).collect()
    }
}

impl BatchRow for NewAccount {
    fn validate_all(rows: &[Self]) -> std::result::Result<(), (usize, Error)> {
        match rows.iter().position(|a| a.balance_cents < 0) {
            Some(i) => Err((
                i,
                Error::invalid(format!("balance_cents cannot be negative, got {}", rows[i].balance_cents)),
            )),
            None => Ok(()),
        }
    }

    fn cache_keys(rows: &[Self]) -> Vec<String> {
        rows.iter().map(|a| keys::account(a.id)).collect()
    }
}

impl Repo {
    /// Inserts all `users` or none, the fastest way the backend allows ([`BatchMethod::Auto`]),
    /// and returns how many were inserted. If a row is refused (say, a duplicate email) the
    /// error is [`Error::BatchRow`] with that row's index and nothing is inserted.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// use keel_schema::NewUser;
    /// let users: Vec<NewUser> =
    ///     (0..10_000).map(|i| NewUser::new(format!("User {i}"), format!("user{i}@example.com"))).collect();
    /// assert_eq!(repo.insert_users(&users).await?, 10_000);
    /// # Ok(()) }
    /// ```
    pub async fn insert_users(&self, users: &[NewUser]) -> Result<usize> {
        let users = users.to_vec();
        let repo = self.clone();
        self.pool.detached(async move { repo.insert_users_now(&users).await }).await
    }

    async fn insert_users_now(&self, users: &[NewUser]) -> Result<usize> {
        self.insert_batch(users, &BatchOptions::default()).await
    }

    /// [`Repo::insert_users`] with options: skip conflicting rows, force a method, chunk size.
    pub async fn insert_users_with(&self, users: &[NewUser], options: &BatchOptions) -> Result<usize> {
        let users = users.to_vec();
        let options = options.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.insert_users_with_now(&users, &options).await }).await
    }

    async fn insert_users_with_now(&self, users: &[NewUser], options: &BatchOptions) -> Result<usize> {
        self.insert_batch(users, options).await
    }

    /// Inserts all `jobs` or none; see [`Repo::insert_users`]. A job whose user does not exist
    /// fails the batch with `foreign_key_violation` and its index.
    pub async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<usize> {
        let jobs = jobs.to_vec();
        let repo = self.clone();
        self.pool.detached(async move { repo.insert_jobs_now(&jobs).await }).await
    }

    async fn insert_jobs_now(&self, jobs: &[NewJob]) -> Result<usize> {
        self.insert_batch(jobs, &BatchOptions::default()).await
    }

    /// [`Repo::insert_jobs`] with options.
    pub async fn insert_jobs_with(&self, jobs: &[NewJob], options: &BatchOptions) -> Result<usize> {
        let jobs = jobs.to_vec();
        let options = options.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.insert_jobs_with_now(&jobs, &options).await }).await
    }

    async fn insert_jobs_with_now(&self, jobs: &[NewJob], options: &BatchOptions) -> Result<usize> {
        self.insert_batch(jobs, options).await
    }

    /// Opens many accounts at once, all or none; see [`Repo::insert_users`].
    pub async fn insert_accounts(&self, accounts: &[NewAccount]) -> Result<usize> {
        let accounts = accounts.to_vec();
        let repo = self.clone();
        self.pool.detached(async move { repo.insert_accounts_now(&accounts).await }).await
    }

    async fn insert_accounts_now(&self, accounts: &[NewAccount]) -> Result<usize> {
        self.insert_batch(accounts, &BatchOptions::default()).await
    }

    /// The batch path for any [`BatchRow`] type: the repository's checks, then
    /// [`keel_pool::bulk::insert`].
    pub async fn insert_batch<R: BatchRow>(&self, rows: &[R], options: &BatchOptions) -> Result<usize> {
        R::validate_all(rows).map_err(|(index, e)| match e {
            Error::Db(source) => Error::BatchRow { index, source },
            other => other,
        })?;
        let inserted =
            self.invalidating(|| R::cache_keys(rows), keel_pool::bulk::insert(&self.pool, rows, options));
        inserted.await.map_err(|e| match e {
            keel_pool::Error::BulkRow { index, source } => Error::BatchRow { index, source: *source },
            other => Error::Db(other),
        })
    }
}
