//! `jobs`: [`Job`] as stored and [`NewJob`] for inserts.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::jobs;
use crate::{Id, Timestamp, User};

/// A stored job, belonging to a [`User`].
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Associations, Serialize, Deserialize,
)]
#[diesel(table_name = jobs, belongs_to(User))]
pub struct Job {
    /// Primary key (UUIDv7).
    pub id: Id,
    /// The user holding the job.
    pub user_id: Id,
    /// Job title, at most [`crate::limits::JOB_TITLE_MAX_CHARS`] characters.
    pub title: String,
    /// Yearly salary in cents.
    pub salary_cents: i64,
    /// When the row was created (UTC, microseconds).
    pub created_at: Timestamp,
}

/// A job to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, keel_pool::BulkRow, Serialize, Deserialize)]
#[diesel(table_name = jobs)]
pub struct NewJob {
    /// Primary key; [`NewJob::new`] makes a fresh UUIDv7.
    pub id: Id,
    /// The user holding the job (must exist).
    pub user_id: Id,
    /// Job title.
    pub title: String,
    /// Yearly salary in cents.
    pub salary_cents: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

impl NewJob {
    /// A new job for `user_id` with a fresh id and the current time.
    pub fn new(user_id: Id, title: impl Into<String>, salary_cents: i64) -> Self {
        NewJob { id: Id::new(), user_id, title: title.into(), salary_cents, created_at: crate::now() }
    }
}
