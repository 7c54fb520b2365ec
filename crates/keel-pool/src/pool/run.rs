//! [`Pool::run`]: one body on one pooled connection that can be abandoned without losing the
//! connection or leaving its statement running (see [`cancel`](crate::pool::cancel) for how).

use scoped_futures::ScopedBoxFuture;

use crate::conn::Conn;
use crate::error::Error;
use crate::pool::Pool;

impl Pool {
    /// Runs `f` on a pooled connection so that dropping the returned future (a deadline, a
    /// client that went away) stops the statement on the server and returns the connection to
    /// the pool clean, instead of discarding it and reconnecting. The same as checking a
    /// connection out inside [`Pool::detached`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use diesel::prelude::*;
    /// use diesel_async::RunQueryDsl;
    /// use keel_pool::{with_conn, ScopedFutureExt};
    /// use keel_schema::schema::users;
    ///
    /// # async fn demo(pool: keel_pool::Pool) {
    /// let count = tokio::time::timeout(
    ///     Duration::from_millis(50),
    ///     pool.run(|conn| async move { with_conn!(conn, |c| users::table.count().get_result::<i64>(c).await) }.scope_boxed()),
    /// )
    /// .await;
    /// // On timeout the server was asked to stop the query; the connection stays pooled.
    /// # }
    /// ```
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.clone();
        self.detached(async move {
            let mut conn = pool.get().await?;
            f(&mut conn).await
        })
        .await
    }
}
