//! [`Reuse`]: keep a write statement prepared instead of preparing it again on every run.
//!
//! diesel declines to cache the prepared statements of `UPDATE`s (and of some `INSERT`s):
//! `UpdateStatement` marks itself unsafe to cache, because an `AsChangeset` with optional fields
//! can render different SQL for the same Rust type. diesel-async then prepares a fresh named
//! statement for every run — a Parse round trip and a Close each time (measured on PostgreSQL:
//! `s100`, `s101`, … one per transfer). Wrapping the statement in [`Reuse`] tells diesel's
//! statement cache it may keep it, keyed by its SQL text and bind types, so each distinct SQL
//! is prepared once per connection and then only executed.
//!
//! ```no_run
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl;
//! use keel_pool::{Reuse, with_conn};
//! use keel_schema::schema::accounts;
//!
//! # async fn demo(conn: &mut keel_pool::Conn, id: keel_schema::Id) -> Result<(), keel_pool::Error> {
//! with_conn!(conn, |c| Reuse(
//!     diesel::update(accounts::table.find(id)).set(accounts::balance_cents.eq(accounts::balance_cents + 1))
//! )
//! .execute(c)
//! .await)?;
//! # Ok(()) }
//! ```

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

/// A statement whose prepared form may be cached by its SQL text; see the [module docs](self).
/// Only wrap statements whose SQL depends on the statement's shape, never on values inlined
/// into the text (keel never inlines values; diesel binds them).
#[derive(Debug, Clone, Copy)]
pub struct Reuse<Q>(pub Q);

impl<Q> QueryId for Reuse<Q> {
    type QueryId = ();
    // Keyed by SQL text and bind types, not by Rust type: the same type may render different
    // SQL (optional changeset fields).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, DB> QueryFragment<DB> for Reuse<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Reuse<Q> {
    type SqlType = Q::SqlType;
}
