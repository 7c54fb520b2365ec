//! `accounts`: [`Account`] as stored and [`NewAccount`] for opening one.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::accounts;
use crate::{Id, Timestamp, User};

/// A money account owned by a [`User`].
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Associations, Serialize, Deserialize,
)]
#[diesel(table_name = accounts, belongs_to(User, foreign_key = owner_id))]
pub struct Account {
    /// Primary key (UUIDv7).
    pub id: Id,
    /// The owning user.
    pub owner_id: Id,
    /// Balance in cents, never negative (a `CHECK` constraint).
    pub balance_cents: i64,
    /// When the row was created (UTC, microseconds).
    pub created_at: Timestamp,
}

/// An account to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, keel_pool::BulkRow, Serialize, Deserialize)]
#[diesel(table_name = accounts)]
pub struct NewAccount {
    /// Primary key.
    pub id: Id,
    /// The owning user (must exist).
    pub owner_id: Id,
    /// Opening balance in cents.
    pub balance_cents: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

impl NewAccount {
    /// A new account for `owner_id` with a fresh id and the current time.
    pub fn new(owner_id: Id, balance_cents: i64) -> Self {
        NewAccount { id: Id::new(), owner_id, balance_cents, created_at: crate::now() }
    }
}
