//! Jobs, users joined with their jobs (no N+1), and aggregates.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, ScopedFutureExt as _, with_conn, with_read};
use keel_schema::limits::JOB_TITLE_MAX_CHARS;
use keel_schema::schema::{jobs, users};
use keel_schema::{Id, Job, NewJob, User};
use serde::Serialize;

use crate::cache::keys;
use crate::error::{Error, Result};
use crate::users::MAX_PAGE_SIZE;
use crate::{Repo, validate};

/// Per-user job figures: how many jobs, and their salaries' total and average.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
#[non_exhaustive]
pub struct UserJobStats {
    /// The user.
    #[diesel(sql_type = keel_schema::sql_types::Uuid)]
    pub user_id: Id,
    /// The user's name.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    /// Number of jobs (at least 1: users without jobs are not listed).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub job_count: i64,
    /// Sum of the jobs' salaries, in cents.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub total_salary_cents: i64,
    /// Average salary in cents, rounded to the nearest cent.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub avg_salary_cents: i64,
}

fn validate_new_job(job: &NewJob) -> Result<()> {
    validate::non_empty("title", &job.title)?;
    validate::text("title", &job.title, JOB_TITLE_MAX_CHARS)?;
    if job.salary_cents < 0 {
        return Err(Error::invalid(format!("salary_cents must not be negative, got {}", job.salary_cents)));
    }
    Ok(())
}

pub(crate) fn validate_jobs(rows: &[NewJob]) -> Result<(), (usize, Error)> {
    rows.iter().enumerate().try_for_each(|(i, j)| validate_new_job(j).map_err(|e| (i, e)))
}

/// The aggregate query, ordered by `order` (a fixed clause, never user input).
fn stats_sql(backend: Backend, order: &str) -> String {
    let (int, limit) = match backend {
        Backend::Postgres => ("BIGINT", "$1"),
        Backend::Mysql => ("SIGNED", "?"),
        Backend::Sqlite => ("INTEGER", "?"),
    };
    format!(
        "SELECT u.id AS user_id, u.name AS name, COUNT(j.id) AS job_count, \
         CAST(SUM(j.salary_cents) AS {int}) AS total_salary_cents, \
         CAST(ROUND(AVG(j.salary_cents)) AS {int}) AS avg_salary_cents \
         FROM users u INNER JOIN jobs j ON j.user_id = u.id \
         GROUP BY u.id, u.name ORDER BY {order} LIMIT {limit}"
    )
}

impl Repo {
    /// Inserts a job and returns the stored row. `foreign_key_violation` if the user does not
    /// exist; `invalid_input` for an empty or too long title or a negative salary.
    pub async fn create_job(&self, job: &NewJob) -> Result<Job> {
        let job = job.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.create_job_now(&job).await }).await
    }

    async fn create_job_now(&self, job: &NewJob) -> Result<Job> {
        validate_new_job(job)?;
        self.invalidating(|| [keys::job(job.id), keys::user_jobs(job.user_id)], async {
            crate::insert_returning!(self, jobs, job, Job)
        })
        .await
    }

    /// The job with this id; `not_found` if there is none.
    pub async fn get_job(&self, id: Id) -> Result<Job> {
        let repo = self.clone();
        self.pool.detached(async move { repo.get_job_now(id).await }).await
    }

    async fn get_job_now(&self, id: Id) -> Result<Job> {
        crate::find_cached!(self, jobs, Job, job, id, "job")
    }

    /// Deletes a job; `not_found` if there is none.
    pub async fn delete_job(&self, id: Id) -> Result<()> {
        let repo = self.clone();
        self.pool.detached(async move { repo.delete_job_now(id).await }).await
    }

    async fn delete_job_now(&self, id: Id) -> Result<()> {
        if self.caching() {
            return self.delete_job_cached(id).await;
        }
        let mut conn = self.pool.get().await?;
        let n = with_conn!(&mut conn, |c| diesel::delete(jobs::table.find(id)).execute(c).await)?;
        if n == 0 {
            return Err(Error::not_found(format!("job {id}")));
        }
        Ok(())
    }

    /// The delete when reads are cached: the job's user (for its `user_jobs` entry) is read in
    /// the same transaction as the delete.
    async fn delete_job_cached(&self, id: Id) -> Result<()> {
        let mut owed = self.owe(|| [keys::job(id)]);
        let owner: Result<Option<Id>> = self
            .pool
            .transaction(|conn| {
                async move {
                    with_conn!(conn, |c| {
                        match jobs::table.find(id).select(jobs::user_id).first::<Id>(c).await.optional() {
                            Ok(Some(user)) => {
                                diesel::delete(jobs::table.find(id)).execute(c).await.map(|_| Some(user))
                            }
                            other => other,
                        }
                    })
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await;
        if let Ok(Some(user)) = &owner {
            owed.add([keys::user_jobs(*user)]);
        }
        owed.settle().await;
        match owner? {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!("job {id}"))),
        }
    }

    /// A user's jobs, oldest first (empty if the user has none or does not exist).
    pub async fn jobs_for_user(&self, user_id: Id) -> Result<Vec<Job>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.jobs_for_user_now(user_id).await }).await
    }

    async fn jobs_for_user_now(&self, user_id: Id) -> Result<Vec<Job>> {
        Ok(with_read!(&self.pool, |c| jobs::table
            .filter(jobs::user_id.eq(user_id))
            .order((jobs::created_at, jobs::id))
            .select(Job::as_select())
            .load(c)
            .await)?)
    }

    /// Jobs paying between `min_cents` and `max_cents` (inclusive, SQL `BETWEEN`), highest first,
    /// at most `limit`.
    pub async fn jobs_by_salary(&self, min_cents: i64, max_cents: i64, limit: i64) -> Result<Vec<Job>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.jobs_by_salary_now(min_cents, max_cents, limit).await }).await
    }

    async fn jobs_by_salary_now(&self, min_cents: i64, max_cents: i64, limit: i64) -> Result<Vec<Job>> {
        if min_cents > max_cents {
            return Err(Error::invalid(format!("salary range is empty: {min_cents} > {max_cents}")));
        }
        let limit = validate::limit(limit, MAX_PAGE_SIZE)?;
        Ok(with_read!(&self.pool, |c| jobs::table
            .filter(jobs::salary_cents.between(min_cents, max_cents))
            .order((jobs::salary_cents.desc(), jobs::id))
            .limit(limit)
            .select(Job::as_select())
            .load(c)
            .await)?)
    }

    /// One user and their jobs in a single `LEFT JOIN` round trip; `not_found` if there is no
    /// such user.
    pub async fn user_with_jobs(&self, id: Id) -> Result<(User, Vec<Job>)> {
        let repo = self.clone();
        self.pool.detached(async move { repo.user_with_jobs_now(id).await }).await
    }

    async fn user_with_jobs_now(&self, id: Id) -> Result<(User, Vec<Job>)> {
        let found = self.read_through(|| keys::user_jobs(id), || self.load_user_with_jobs(id)).await?;
        found.ok_or_else(|| Error::not_found(format!("user {id}")))
    }

    async fn load_user_with_jobs(&self, id: Id) -> Result<Option<(User, Vec<Job>)>> {
        let rows: Vec<(User, Option<Job>)> = with_read!(&self.pool, |c| users::table
            .left_join(jobs::table)
            .filter(users::id.eq(id))
            .order((jobs::created_at, jobs::id))
            .select((User::as_select(), Option::<Job>::as_select()))
            .load(c)
            .await)?;
        let mut rows = rows.into_iter();
        let Some((user, first)) = rows.next() else {
            return Ok(None);
        };
        let jobs = first.into_iter().chain(rows.filter_map(|(_, job)| job)).collect();
        Ok(Some((user, jobs)))
    }

    /// Users who have at least one job, with their jobs (an `INNER JOIN`'s users), oldest user
    /// first, at most `limit` users. Two queries whatever the count: the users, then all their
    /// jobs at once (`belonging_to` + `grouped_by`), never one query per user.
    pub async fn users_with_jobs(&self, limit: i64) -> Result<Vec<(User, Vec<Job>)>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.users_with_jobs_now(limit).await }).await
    }

    async fn users_with_jobs_now(&self, limit: i64) -> Result<Vec<(User, Vec<Job>)>> {
        self.users_and_jobs(limit, true).await
    }

    /// Like [`Repo::users_with_jobs`] but keeps users without jobs (a `LEFT JOIN`), with an
    /// empty list.
    pub async fn users_with_jobs_left(&self, limit: i64) -> Result<Vec<(User, Vec<Job>)>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.users_with_jobs_left_now(limit).await }).await
    }

    async fn users_with_jobs_left_now(&self, limit: i64) -> Result<Vec<(User, Vec<Job>)>> {
        self.users_and_jobs(limit, false).await
    }

    async fn users_and_jobs(&self, limit: i64, inner: bool) -> Result<Vec<(User, Vec<Job>)>> {
        let limit = validate::limit(limit, MAX_PAGE_SIZE)?;
        let (people, jobs): (Vec<User>, Vec<Job>) = with_read!(&self.pool, |c| {
            let mut q = users::table.select(User::as_select()).into_boxed();
            if inner {
                q = q.filter(diesel::dsl::exists(jobs::table.filter(jobs::user_id.eq(users::id))));
            }
            match q.order((users::created_at, users::id)).limit(limit).load(c).await {
                Ok(people) => Job::belonging_to(&people)
                    .order((jobs::created_at, jobs::id))
                    .select(Job::as_select())
                    .load(c)
                    .await
                    .map(|jobs| (people, jobs)),
                Err(e) => Err(e),
            }
        })?;
        let grouped = jobs.grouped_by(&people);
        Ok(people.into_iter().zip(grouped).collect())
    }

    /// Job count, total and average salary per user who has jobs (`GROUP BY`), by name, at most
    /// `limit` users.
    pub async fn job_stats(&self, limit: i64) -> Result<Vec<UserJobStats>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.job_stats_now(limit).await }).await
    }

    async fn job_stats_now(&self, limit: i64) -> Result<Vec<UserJobStats>> {
        self.stats("u.name, u.id", limit).await
    }

    /// The `n` users with the highest total salary, highest first.
    pub async fn top_earners(&self, n: i64) -> Result<Vec<UserJobStats>> {
        let repo = self.clone();
        self.pool.detached(async move { repo.top_earners_now(n).await }).await
    }

    async fn top_earners_now(&self, n: i64) -> Result<Vec<UserJobStats>> {
        self.stats("total_salary_cents DESC, u.id", n).await
    }

    async fn stats(&self, order: &str, limit: i64) -> Result<Vec<UserJobStats>> {
        let limit = validate::limit(limit, MAX_PAGE_SIZE)?;
        let sql = stats_sql(self.pool.backend(), order);
        Ok(with_read!(&self.pool, |c| diesel::sql_query(&sql)
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .load(c)
            .await)?)
    }
}
