//! `transfers`: the ledger row, [`Transfer`] as stored and [`NewTransfer`] for inserts.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::transfers;
use crate::{Id, Timestamp};

/// One applied transfer in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = transfers)]
pub struct Transfer {
    /// Primary key (UUIDv7).
    pub id: Id,
    /// Debited account.
    pub from_account: Id,
    /// Credited account (never the same as `from_account`).
    pub to_account: Id,
    /// Amount in cents, always positive.
    pub amount_cents: i64,
    /// The caller's key: a transfer with a key already in the ledger is not applied again.
    pub idempotency_key: String,
    /// When the transfer was applied.
    pub created_at: Timestamp,
}

/// A transfer row to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Serialize, Deserialize)]
#[diesel(table_name = transfers)]
pub struct NewTransfer {
    /// Primary key.
    pub id: Id,
    /// Debited account.
    pub from_account: Id,
    /// Credited account.
    pub to_account: Id,
    /// Amount in cents.
    pub amount_cents: i64,
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// Creation time.
    pub created_at: Timestamp,
}
