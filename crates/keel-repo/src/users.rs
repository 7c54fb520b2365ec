//! Users: create, read, partial update, delete, search, date ranges, keyset pagination and
//! streaming.

use base64::Engine as _;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::{Stream, TryStreamExt as _, stream};
use keel_pool::{Conn, Pool, Reuse, ScopedFutureExt as _, with_conn, with_read};
use keel_schema::limits::{USER_EMAIL_MAX_CHARS, USER_NAME_MAX_CHARS};
use keel_schema::schema::users;
use keel_schema::{Id, NewUser, Timestamp, User};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cache::keys;
use crate::error::{Error, Result};
use crate::{Repo, validate};

diesel::define_sql_function! {
    /// SQL `lower(text)`: case folding for case-insensitive search on every backend.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Most rows one page or search returns.
pub const MAX_PAGE_SIZE: i64 = 1_000;

/// Rows fetched per round trip by [`Repo::stream_users`].
const STREAM_BATCH: i64 = 1_000;

/// Most ids one [`Repo::get_users`] statement binds (far below every backend's limit).
const IDS_PER_STATEMENT: usize = 10_000;

/// A partial update of a user: `None` leaves the column as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset, Serialize, Deserialize)]
#[diesel(table_name = users)]
#[non_exhaustive]
pub struct UserPatch {
    /// New name.
    pub name: Option<String>,
    /// New email (must stay unique).
    pub email: Option<String>,
}

impl UserPatch {
    /// A patch that changes nothing; set fields with [`UserPatch::name`] and [`UserPatch::email`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the new name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the new email.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
}

/// Which users a listing, page or stream returns. The default is all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserFilter {
    /// Names containing this text, case-insensitively; `%`, `_` and `\` match themselves.
    /// (SQLite folds case for ASCII letters only.)
    pub name_contains: Option<String>,
    /// Created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Created at or before this time.
    pub created_to: Option<Timestamp>,
}

impl UserFilter {
    /// All users.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only names containing `text` (a literal, case-insensitive).
    pub fn name_contains(mut self, text: impl Into<String>) -> Self {
        self.name_contains = Some(text.into());
        self
    }

    /// Only users created between `from` and `to`, both inclusive.
    pub fn created_between(mut self, from: Timestamp, to: Timestamp) -> Self {
        self.created_from = Some(from);
        self.created_to = Some(to);
        self
    }
}

/// One page of a keyset-paginated listing ([`Repo::page_users`]): one read of the table, as
/// it was when this page was read; the next page is another read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Page<T> {
    /// The rows, in (created_at, id) order.
    pub items: Vec<T>,
    /// Pass this to get the next page: the rows after this page's last one in (created_at, id)
    /// order, as the table is then; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A position in the (created_at, id) order: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    created_at: Timestamp,
    id: Id,
}

impl Cursor {
    const VERSION: &'static str = "v1";

    fn after(user: &User) -> Self {
        Cursor { created_at: user.created_at, id: user.id }
    }

    /// An opaque, URL-safe string.
    fn encode(&self) -> String {
        let raw = format!("{}.{}.{}", Self::VERSION, self.created_at.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(text: &str) -> Result<Self> {
        let bad =
            || Error::invalid("malformed pagination cursor: pass back the next_cursor of a previous page");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let mut parts = raw.split('.');
        let (Some(Self::VERSION), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id: Id = id.parse().map_err(|_| bad())?;
        Ok(Cursor { created_at: Timestamp(created_at), id })
    }
}

/// `users` narrowed by a filter, an optional cursor and a limit, ordered by (created_at, id),
/// as a boxed query for the backend of `$c`.
macro_rules! user_listing {
    ($pattern:expr, $filter:expr, $cursor:expr, $limit:expr) => {{
        let mut q = users::table.select(User::as_select()).into_boxed();
        if let Some(p) = $pattern {
            q = q.filter(lower(users::name).like(lower(p)).escape('!'));
        }
        if let Some(from) = $filter.created_from {
            q = q.filter(users::created_at.ge(from));
        }
        if let Some(to) = $filter.created_to {
            q = q.filter(users::created_at.le(to));
        }
        if let Some(c) = $cursor {
            // `(created_at, id) > (c.created_at, c.id)`, spelled so every planner sees the
            // leading `created_at >=` bound and range-scans the (created_at, id) index: the bare
            // OR form made PostgreSQL and SQLite scan from the start for every page.
            q = q
                .filter(users::created_at.ge(c.created_at))
                .filter(users::created_at.gt(c.created_at).or(users::id.gt(c.id)));
        }
        q.order((users::created_at, users::id)).limit($limit)
    }};
}

fn validate_new_user(user: &NewUser) -> Result<()> {
    validate::non_empty("name", &user.name)?;
    validate::text("name", &user.name, USER_NAME_MAX_CHARS)?;
    validate::non_empty("email", &user.email)?;
    validate::text("email", &user.email, USER_EMAIL_MAX_CHARS)
}

pub(crate) fn validate_users(rows: &[NewUser]) -> Result<(), (usize, Error)> {
    rows.iter().enumerate().try_for_each(|(i, u)| validate_new_user(u).map_err(|e| (i, e)))
}

impl Repo {
    /// Inserts `user` and returns the stored row, read back in the same transaction (MySQL has
    /// no `RETURNING`; the id is generated client-side).
    ///
    /// Fails with `unique_violation` when the email is taken, `invalid_input` when a value is
    /// empty, too long or contains a NUL byte.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// let ada = repo.create_user(&keel_schema::NewUser::new("Ada", "ada@example.com")).await?;
    /// assert_eq!(repo.get_user(ada.id).await?, ada);
    /// # Ok(()) }
    /// ```
    pub async fn create_user(&self, user: &NewUser) -> Result<User> {
        let user = user.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.create_user_now(&user).await }).await
    }

    async fn create_user_now(&self, user: &NewUser) -> Result<User> {
        validate_new_user(user)?;
        // A cached `not_found` for the new id (rare: ids are fresh) must go.
        self.invalidating(|| keys::user_all(user.id), async {
            crate::insert_returning!(self, users, user, User)
        })
        .await
    }

    /// The user with this id; `not_found` if there is none.
    pub async fn get_user(&self, id: Id) -> Result<User> {
        let repo = self.clone();
        self.pool.detached(async move { repo.get_user_now(id).await }).await
    }

    async fn get_user_now(&self, id: Id) -> Result<User> {
        crate::find_cached!(self, users, User, user, id, "user")
    }

    /// The users with these ids that exist, in (created_at, id) order; missing ids are left
    /// out. Any number of ids (bound in chunks).
    pub async fn get_users(&self, ids: &[Id]) -> Result<Vec<User>> {
        let ids = ids.to_vec();
        let repo = self.clone();
        self.pool.detached(async move { repo.get_users_now(&ids).await }).await
    }

    async fn get_users_now(&self, ids: &[Id]) -> Result<Vec<User>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let rows: Vec<User> = with_read!(&self.pool, |c| users::table
                .filter(users::id.eq_any(chunk))
                .select(User::as_select())
                .load(c)
                .await)?;
            found.extend(rows);
        }
        found.sort_by_key(|u| (u.created_at, u.id));
        found.dedup_by_key(|u| u.id);
        Ok(found)
    }

    /// Changes the fields set in `patch` and returns the updated row; `not_found` if there is
    /// no such user. An empty patch returns the row unchanged.
    pub async fn update_user(&self, id: Id, patch: &UserPatch) -> Result<User> {
        let patch = patch.clone();
        let repo = self.clone();
        self.pool.detached(async move { repo.update_user_now(id, &patch).await }).await
    }

    async fn update_user_now(&self, id: Id, patch: &UserPatch) -> Result<User> {
        if let Some(name) = &patch.name {
            validate::non_empty("name", name)?;
            validate::text("name", name, USER_NAME_MAX_CHARS)?;
        }
        if let Some(email) = &patch.email {
            validate::non_empty("email", email)?;
            validate::text("email", email, USER_EMAIL_MAX_CHARS)?;
        }
        if patch.name.is_none() && patch.email.is_none() {
            return self.get_user(id).await;
        }
        let updated: Option<User> = self
            .invalidating(
                || keys::user_all(id),
                self.pool.transaction(|conn| {
                    async move {
                        with_conn!(conn, |c| {
                            match Reuse(diesel::update(users::table.find(id)).set(patch)).execute(c).await {
                                Ok(0) => Ok(None),
                                Ok(_) => {
                                    users::table.find(id).select(User::as_select()).first(c).await.map(Some)
                                }
                                Err(e) => Err(e),
                            }
                        })
                        .map_err(Error::from)
                    }
                    .scope_boxed()
                }),
            )
            .await?;
        updated.ok_or_else(|| Error::not_found(format!("user {id}")))
    }

    /// Deletes the user and, by `ON DELETE CASCADE`, their jobs and accounts; `not_found` if
    /// there is no such user.
    pub async fn delete_user(&self, id: Id) -> Result<()> {
        let repo = self.clone();
        self.pool.detached(async move { repo.delete_user_now(id).await }).await
    }

    async fn delete_user_now(&self, id: Id) -> Result<()> {
        if self.caching() {
            return self.delete_user_cached(id).await;
        }
        let mut conn = self.pool.get().await?;
        let n = with_conn!(&mut conn, |c| diesel::delete(users::table.find(id)).execute(c).await)?;
        if n == 0 {
            return Err(Error::not_found(format!("user {id}")));
        }
        Ok(())
    }

    /// The delete when reads are cached: the cascade also removes the user's jobs and accounts,
    /// whose cached entries must go too. One transaction: lock the user row (a no-op update, on
    /// every backend), so no job or account can be added for the user meanwhile (their foreign
    /// key check waits for the lock), collect the ids, delete.
    async fn delete_user_cached(&self, id: Id) -> Result<()> {
        use keel_schema::schema::{accounts, jobs};
        let mut owed = self.owe(|| keys::user_all(id));
        let removed: Result<Option<(Vec<Id>, Vec<Id>)>> = self
            .pool
            .transaction(|conn| {
                async move {
                    with_conn!(conn, |c| {
                        async {
                            let locked =
                                Reuse(diesel::update(users::table.find(id)).set(users::name.eq(users::name)))
                                    .execute(c)
                                    .await?;
                            if locked == 0 {
                                return Ok(None);
                            }
                            let job_ids =
                                jobs::table.filter(jobs::user_id.eq(id)).select(jobs::id).load(c).await?;
                            let account_ids = accounts::table
                                .filter(accounts::owner_id.eq(id))
                                .select(accounts::id)
                                .load(c)
                                .await?;
                            diesel::delete(users::table.find(id)).execute(c).await?;
                            Ok::<_, diesel::result::Error>(Some((job_ids, account_ids)))
                        }
                        .await
                    })
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await;
        if let Ok(Some((job_ids, account_ids))) = &removed {
            owed.add(job_ids.iter().map(|&j| keys::job(j)));
            owed.add(account_ids.iter().map(|&a| keys::account(a)));
        }
        owed.settle().await;
        match removed? {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!("user {id}"))),
        }
    }

    /// Users whose name contains `text`, case-insensitively, at most `limit` (capped at
    /// [`MAX_PAGE_SIZE`]). `text` is a literal: `%`, `_`, `\` and quotes match themselves.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// // Just characters, never SQL:
    /// let none = repo.search_users("'; DROP TABLE users; --", 10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn search_users(&self, text: &str, limit: i64) -> Result<Vec<User>> {
        Ok(self.page_users(&UserFilter::new().name_contains(text), None, limit).await?.items)
    }

    /// Users created between `from` and `to` (inclusive), oldest first, at most `limit`.
    pub async fn users_created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> Result<Vec<User>> {
        Ok(self.page_users(&UserFilter::new().created_between(from, to), None, limit).await?.items)
    }

    /// One page of users matching `filter`, in (created_at, id) order, after `cursor` (the
    /// previous page's `next_cursor`; `None` for the first page). A cursor that was not made by
    /// keel is `invalid_input`.
    ///
    /// Keyset pagination over a table that may change between pages: each page is a read of
    /// its own (autocommit, on whichever connection is free), and the cursor is a position in
    /// the (created_at, id) order, not a snapshot. So no row is repeated (the order's keys
    /// never change), and rows present throughout are each returned once; but a row inserted
    /// behind the cursor (an earlier `created_at`, say a clock-skewed or back-dated insert) is
    /// never seen, one inserted ahead of it is, and one deleted before its page is read is
    /// not. Pages read at different times may show one multi-row change half-applied. For
    /// exactly one snapshot of the table, use [`Repo::stream_users`].
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// use keel_repo::UserFilter;
    /// let mut cursor = None;
    /// loop {
    ///     let page = repo.page_users(&UserFilter::new(), cursor.as_deref(), 100).await?;
    ///     for user in &page.items { println!("{}", user.name); }
    ///     match page.next_cursor { Some(next) => cursor = Some(next), None => break }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn page_users(
        &self,
        filter: &UserFilter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Page<User>> {
        let filter = filter.clone();
        let cursor = cursor.map(str::to_owned);
        let repo = self.clone();
        self.pool.detached(async move { repo.page_users_now(&filter, cursor.as_deref(), limit).await }).await
    }

    async fn page_users_now(
        &self,
        filter: &UserFilter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Page<User>> {
        let limit = validate::limit(limit, MAX_PAGE_SIZE)?;
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let pattern = self.user_pattern(filter)?;
        let mut items: Vec<User> =
            with_read!(&self.pool, |c| user_listing!(pattern.as_deref(), filter, cursor, limit + 1)
                .load(c)
                .await)?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|u| Cursor::after(u).encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Every user matching `filter`, in (created_at, id) order, exactly as one consistent
    /// snapshot of the table shows them: a row committed while the stream runs is not
    /// returned, wherever it sorts, and a row deleted meanwhile still is; none is missed or
    /// repeated. The snapshot is taken when the stream is first polled.
    ///
    /// How: on first poll a task of its own checks out one pooled connection and opens a
    /// read-only snapshot transaction on it (PostgreSQL `REPEATABLE READ READ ONLY`,
    /// MySQL/MariaDB `REPEATABLE READ` + `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ
    /// ONLY`, SQLite `BEGIN DEFERRED`), then reads keyset pages of 1,000 rows inside it, one
    /// page ahead of the consumer, so memory stays at about two pages for any table size.
    ///
    /// The stream holds that connection, and the open transaction, for its whole duration,
    /// also while the consumer is slow: a stream left open keeps a pool slot busy and keeps
    /// the server from cleaning up old row versions (PostgreSQL vacuum, InnoDB purge, SQLite
    /// WAL checkpoints). On a pool of one connection (`sqlite::memory:`), other calls wait for
    /// the stream to end or be dropped. Drop it to stop early: the task notices, finishes a page read in
    /// flight, rolls back and returns the connection to the pool, clean (no reconnect). Needs a
    /// tokio runtime when first polled.
    ///
    /// Errors come through the stream, which then ends: a filter that is invalid input (first
    /// item, before any connection is taken), a checkout that timed out, or a failed read.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo) -> Result<(), keel_repo::Error> {
    /// use futures_util::TryStreamExt;
    /// let mut users = std::pin::pin!(repo.stream_users(keel_repo::UserFilter::new()));
    /// while let Some(user) = users.try_next().await? {
    ///     println!("{}", user.email);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream_users(&self, filter: UserFilter) -> impl Stream<Item = Result<User>> + Send + 'static {
        enum Feed {
            Refused(Error),
            Start(Pool, Option<String>, UserFilter),
            Running(mpsc::Receiver<Result<Vec<User>>>),
        }
        let start = match self.user_pattern(&filter) {
            Ok(pattern) => Feed::Start(self.pool.clone(), pattern, filter),
            Err(e) => Feed::Refused(e),
        };
        // Lazy: nothing is spawned and no connection is taken until the first poll.
        stream::unfold(Some(start), |feed| async move {
            let mut pages = match feed? {
                Feed::Refused(e) => return Some((Err(e), None)),
                Feed::Start(pool, pattern, filter) => {
                    let (tx, rx) = mpsc::channel(STREAM_PAGES_QUEUED);
                    tokio::spawn(read_snapshot(pool, pattern, filter, tx));
                    rx
                }
                Feed::Running(rx) => rx,
            };
            let page = pages.recv().await?;
            Some((page, Some(Feed::Running(pages))))
        })
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
    }

    /// The escaped `LIKE` pattern for the filter's name text, validated.
    fn user_pattern(&self, filter: &UserFilter) -> Result<Option<String>> {
        match &filter.name_contains {
            Some(text) => {
                validate::text("search text", text, USER_NAME_MAX_CHARS)?;
                Ok(Some(validate::like_contains(text)))
            }
            None => Ok(None),
        }
    }
}

/// Pages a stream's reading task may have waiting for the consumer. The task reserves room
/// before it reads a page, so with one queued page the stream holds at most two: the one the
/// consumer works through and the next.
const STREAM_PAGES_QUEUED: usize = 1;

/// The reading side of [`Repo::stream_users`], on a task that owns its connection: opens the
/// snapshot, sends its pages, ends the transaction and gives the connection back, then reports
/// an error, if any (so a slow consumer does not hold the connection while the error waits).
async fn read_snapshot(
    pool: Pool,
    pattern: Option<String>,
    filter: UserFilter,
    pages: mpsc::Sender<Result<Vec<User>>>,
) {
    let outcome = async {
        let mut conn = pool.get().await?;
        begin_snapshot(&mut conn).await?;
        let sent = send_pages(&mut conn, pattern.as_deref(), &filter, &pages).await;
        end_snapshot(&mut conn).await;
        sent
    }
    .await;
    if let Err(e) = outcome {
        let _ = pages.send(Err(e)).await;
    }
}

/// Opens a read-only transaction whose reads all see one snapshot, through the connection's
/// transaction manager: a connection that comes back to the pool still inside it is closed by
/// the pool, never reused.
async fn begin_snapshot(conn: &mut Conn) -> Result<()> {
    use diesel_async::{AnsiTransactionManager, SimpleAsyncConnection as _};
    let backend = conn.backend();
    let begun: QueryResult<()> = match conn {
        Conn::Postgres(c) => {
            AnsiTransactionManager::begin_transaction_sql(
                &mut ***c,
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
            .await
        }
        // The consistent snapshot is a REPEATABLE READ view: under a server or session default of
        // READ COMMITTED every page would read a fresh one. SET TRANSACTION covers the next
        // transaction only.
        Conn::Mysql(c) => match c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await {
            Ok(()) => {
                AnsiTransactionManager::begin_transaction_sql(
                    &mut ***c,
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                )
                .await
            }
            Err(e) => Err(e),
        },
        // diesel-async wraps SQLite's synchronous transaction manager: begin on the inner one.
        // The read snapshot starts at the first page's SELECT (WAL: writers go on meanwhile).
        Conn::Sqlite(c) => {
            c.spawn_blocking(|sc| {
                diesel::connection::AnsiTransactionManager::begin_transaction_sql(sc, "BEGIN DEFERRED")
            })
            .await
        }
    };
    begun.map_err(|e| {
        let err = keel_pool::classify(backend, e);
        conn.observe(&err);
        err.into()
    })
}

/// Reads keyset pages inside the snapshot and queues them for the consumer, until the last
/// page or until the consumer is gone.
async fn send_pages(
    conn: &mut Conn,
    pattern: Option<&str>,
    filter: &UserFilter,
    pages: &mpsc::Sender<Result<Vec<User>>>,
) -> Result<()> {
    let mut cursor: Option<Cursor> = None;
    loop {
        // Room first, then the read: memory stays at two pages, and a dropped stream is seen
        // here, between queries, never by abandoning one mid-protocol.
        let Ok(room) = pages.reserve().await else { return Ok(()) };
        let page: Vec<User> =
            with_conn!(conn, |c| user_listing!(pattern, filter, cursor, STREAM_BATCH).load(c).await)?;
        cursor = match page.last() {
            Some(last) if page.len() as i64 == STREAM_BATCH => Some(Cursor::after(last)),
            _ => None,
        };
        if !page.is_empty() {
            room.send(Ok(page));
        }
        if cursor.is_none() {
            return Ok(());
        }
    }
}

/// Ends the snapshot with `ROLLBACK` (it wrote nothing). A failed rollback leaves the
/// transaction manager broken, so the pool closes the connection instead of reusing it.
async fn end_snapshot(conn: &mut Conn) {
    async fn rollback<C: diesel_async::AsyncConnection>(c: &mut C) -> QueryResult<()> {
        <C::TransactionManager as diesel_async::TransactionManager<C>>::rollback_transaction(c).await
    }
    let backend = conn.backend();
    let ended: QueryResult<()> = keel_pool::with_conn_raw!(&mut *conn, |c| rollback(c).await);
    if let Err(e) = ended {
        conn.observe(&keel_pool::classify(backend, e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { created_at: keel_schema::now(), id: Id::new() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "x", "djE", "%%%", "djEuMTIzLm5vdC1hLXV1aWQ"] {
            let err = Cursor::decode(bad).unwrap_err();
            assert_eq!(err.kind(), Some(keel_pool::ErrorKind::InvalidInput), "{bad}");
        }
    }
}
