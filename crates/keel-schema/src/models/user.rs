//! `users`: [`User`] as stored, [`NewUser`] for inserts.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::users;
use crate::{Id, Timestamp};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = users)]
pub struct User {
    /// Primary key (UUIDv7).
    pub id: Id,
    /// Display name, at most [`crate::limits::USER_NAME_MAX_CHARS`] characters.
    pub name: String,
    /// Unique email address.
    pub email: String,
    /// When the row was created (UTC, microseconds).
    pub created_at: Timestamp,
}

/// A user to insert. The id and timestamp are generated client-side, so the same row can be
/// read back on MySQL, which has no `RETURNING`.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, keel_pool::BulkRow, Serialize, Deserialize)]
#[diesel(table_name = users)]
pub struct NewUser {
    /// Primary key; [`NewUser::new`] makes a fresh UUIDv7.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Unique email address.
    pub email: String,
    /// Creation time; [`NewUser::new`] uses [`crate::now`].
    pub created_at: Timestamp,
}

impl NewUser {
    /// A new user with a fresh id and the current time.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        NewUser { id: Id::new(), name: name.into(), email: email.into(), created_at: crate::now() }
    }
}
