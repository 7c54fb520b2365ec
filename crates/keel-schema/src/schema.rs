//! The `table!` definitions: one schema for all three backends.
//!
//! Written by hand rather than by `diesel print-schema`, because the generated schema would
//! name each backend's native types; these use the portable types in [`crate::sql_types`].

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{Uuid, UtcTimestamp};

    /// People who have jobs and accounts. `email` is unique.
    users (id) {
        /// Primary key (UUIDv7).
        id -> Uuid,
        /// Display name, at most 100 characters.
        name -> Varchar,
        /// Unique email address, at most 255 characters.
        email -> Varchar,
        /// Creation time, UTC with microseconds.
        created_at -> UtcTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{Uuid, UtcTimestamp};

    /// Jobs held by users; deleted with their user (`ON DELETE CASCADE`). Salary in cents.
    jobs (id) {
        /// Primary key (UUIDv7).
        id -> Uuid,
        /// The user holding the job.
        user_id -> Uuid,
        /// Job title, at most 200 characters.
        title -> Varchar,
        /// Yearly salary in cents (>= 0).
        salary_cents -> BigInt,
        /// Creation time, UTC with microseconds.
        created_at -> UtcTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{Uuid, UtcTimestamp};

    /// Money accounts; `balance_cents >= 0` is a `CHECK` constraint.
    accounts (id) {
        /// Primary key (UUIDv7).
        id -> Uuid,
        /// The owning user.
        owner_id -> Uuid,
        /// Balance in cents (>= 0).
        balance_cents -> BigInt,
        /// Creation time, UTC with microseconds.
        created_at -> UtcTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{Uuid, UtcTimestamp};

    /// The ledger: one row per applied transfer, unique by `idempotency_key`.
    transfers (id) {
        /// Primary key (UUIDv7).
        id -> Uuid,
        /// Debited account.
        from_account -> Uuid,
        /// Credited account (differs from `from_account`).
        to_account -> Uuid,
        /// Amount in cents (> 0).
        amount_cents -> BigInt,
        /// Unique key chosen by the caller; a repeated key is not applied twice.
        idempotency_key -> Varchar,
        /// When the transfer was applied.
        created_at -> UtcTimestamp,
    }
}

diesel::joinable!(jobs -> users (user_id));
diesel::joinable!(accounts -> users (owner_id));

diesel::allow_tables_to_appear_in_same_query!(users, jobs, accounts, transfers);
