//! Cancellation that frees the server: dropping the future of any keel operation stops its
//! statement on the server, leaves no transaction open, and gives the connection back without
//! a reconnect; SQLite survives operations dropped at random points.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Conn, Pool, ScopedFutureExt, with_conn};
use keel_repo::{Repo, UserPatch};
use keel_schema::{MIGRATIONS, NewUser};
use keel_test::for_each_backend;
use rand::Rng;

#[derive(Debug, diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT COUNT(*) FROM users` on `conn`.
async fn count_users(conn: &mut Conn) -> Result<i64, keel_pool::Error> {
    with_conn!(conn, |c| diesel::sql_query("SELECT COUNT(*) AS n FROM users").get_result::<N>(c).await)
        .map(|r| r.n)
}

/// One operation to drop, boxed so different ones fit in one list.
type Op = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Waits (bounded) until every connection of `pool` is back and idle.
async fn all_idle(pool: &Pool) -> keel_pool::PoolState {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = pool.state();
        if s.idle == s.connections || Instant::now() > until {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_operation_stops_on_the_server_and_keeps_its_connection() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // no server to stop; see sqlite_survives_operations_dropped_at_random_points
        }
        let work = keel_test::pool_with(&pool, |c| c.max_size(2).read_connections(1)).await;
        let repo = Repo::new(work.clone());
        let side = keel_test::side_pool(&pool).await;
        let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
        // Open both pooled connections (and the shared read session) before counting.
        let (a, b2) = (work.get().await.unwrap(), work.get().await.unwrap());
        drop((a, b2));
        let _ = repo.get_user(ada.id).await.unwrap();
        let created = work.stats().connections_created;

        let locked = keel_test::lock_table(&side, "users").await;
        let short = Duration::from_millis(150);
        let patch = UserPatch::new().name("Ada L.");
        // Each waits for the lock and is dropped by its deadline.
        let ops: Vec<(&str, Op)> = vec![
            (
                "repository read",
                Box::pin({
                    let repo = repo.clone();
                    async move {
                        let _ = repo.get_user(ada.id).await;
                    }
                }),
            ),
            (
                "repository write (transaction)",
                Box::pin({
                    let (repo, patch) = (repo.clone(), patch.clone());
                    async move {
                        let _ = repo.update_user(ada.id, &patch).await;
                    }
                }),
            ),
            (
                "transaction_with",
                Box::pin({
                    let work = work.clone();
                    async move {
                        let _ = work.transaction(|conn| count_users(conn).scope_boxed()).await;
                    }
                }),
            ),
            (
                "Pool::run",
                Box::pin({
                    let work = work.clone();
                    async move {
                        let _ = work.run(|conn| count_users(conn).scope_boxed()).await;
                    }
                }),
            ),
        ];
        for (what, op) in ops {
            assert!(tokio::time::timeout(short, op).await.is_err(), "{b}: {what} finished under the lock");
            // The lock is still held: a statement that was not stopped would still be waiting.
            let left = keel_test::settles_to_zero(|| keel_test::waiting_for_locks(&side)).await;
            assert_eq!(left, 0, "{b}: the statement of a dropped {what} is still waiting on the server");
            let s = all_idle(&work).await;
            assert_eq!(s.idle, s.connections, "{b}: {what}: a connection did not come back: {s:?}");
        }
        keel_test::unlock(locked).await;
        let stats = work.stats();
        assert_eq!(
            stats.connections_created, created,
            "{b}: a dropped operation cost a reconnect: {stats:?}"
        );
        assert!(stats.cancellations >= 4, "{b}: {stats:?}");
        // No transaction was left open: the dropped update did not apply, and both connections
        // work.
        assert_eq!(repo.get_user(ada.id).await.unwrap().name, "Ada");
        let (mut c1, mut c2) = (work.get().await.unwrap(), work.get().await.unwrap());
        for c in [&mut c1, &mut c2] {
            assert_eq!(count_users(c).await.unwrap(), 1);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_with_conn_body_dropped_mid_query_is_stopped_on_the_server() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        let work = keel_test::pool_with(&pool, |c| c.max_size(1)).await;
        let side = keel_test::side_pool(&pool).await;
        drop(work.get().await.unwrap());
        let created = work.stats().connections_created;
        let locked = keel_test::lock_table(&side, "users").await;
        let mut conn = work.get().await.unwrap();
        let dropped =
            tokio::time::timeout(Duration::from_millis(150), async { count_users(&mut conn).await }).await;
        assert!(dropped.is_err());
        drop(conn);
        let left = keel_test::settles_to_zero(|| keel_test::waiting_for_locks(&side)).await;
        assert_eq!(left, 0, "{b}: the dropped statement still waits on the server");
        keel_test::unlock(locked).await;
        assert_eq!(keel_test::count_rows(&work, "users").await.unwrap(), 0);
        let reconnects = work.stats().connections_created - created;
        match b {
            // tokio-postgres keeps the session usable: cancelled, settled, back in the pool.
            Backend::Postgres => assert_eq!(reconnects, 0),
            // The dropped query's reply is unread on the socket: closed (Pool::detached avoids
            // this for keel's own operations).
            _ => assert_eq!(reconnects, 1),
        }
    })
    .await;
}

/// Wraps a future and drops it after `polls` polls that returned `Pending` (an exact I/O wait,
/// unlike a timer, which rounds up to its tick).
struct DropAfter<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: u32,
}

impl<F: std::future::Future> std::future::Future for DropAfter<F> {
    type Output = Option<F::Output>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending if self.polls == 0 => std::task::Poll::Ready(None),
            std::task::Poll::Pending => {
                self.polls -= 1;
                std::task::Poll::Pending
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_operations_dropped_at_random_points() {
    let secs: f64 = std::env::var("KEEL_SQLITE_DROP_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6.0);
    let Some(db) = keel_test::test_db(Backend::Sqlite, &MIGRATIONS).await else { return };
    let panics = Arc::new(AtomicU64::new(0));
    {
        let panics = Arc::clone(&panics);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, SeqCst);
            previous(info);
        }));
    }
    let max = 4;
    let pool =
        keel_test::pool_with(db.pool(), |c| c.max_size(max).sqlite_busy_timeout(Duration::from_millis(20)))
            .await;
    let repo = Repo::new(pool.clone());
    let users: Vec<NewUser> =
        (0..50).map(|i| NewUser::new(format!("S {i}"), format!("s{i}@example.com"))).collect();
    repo.insert_users(&users).await.unwrap();
    let ids: Vec<_> =
        repo.page_users(&Default::default(), None, 50).await.unwrap().items.iter().map(|u| u.id).collect();
    // Holds the write lock now and then, so BEGIN IMMEDIATE waits out its busy timeout.
    let holder = keel_test::pool_with(db.pool(), |c| c.max_size(1)).await;

    let until = Instant::now() + Duration::from_secs_f64(secs);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (repo, pool, holder, ids, dropped) =
            (repo.clone(), pool.clone(), holder.clone(), ids.clone(), dropped.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0u64;
            while Instant::now() < until {
                k += 1;
                let (polls, id) = {
                    let mut rng = rand::rng();
                    (rng.random_range(0..6), ids[rng.random_range(0..ids.len())])
                };
                let op: Op = match (t + k) % 5 {
                    0 => Box::pin({
                        let repo = repo.clone();
                        async move { let _ = repo.get_user(id).await; }
                    }),
                    1 => Box::pin({
                        // A 200 ms recursive CTE, on a connection of its own.
                        let pool = pool.clone();
                        async move {
                            let Ok(mut conn) = pool.get().await else { return };
                            let _ = with_conn!(&mut conn, |c| diesel::sql_query(
                                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 1000000) \
                                 SELECT COUNT(*) AS n FROM r"
                            )
                            .get_result::<N>(c)
                            .await);
                        }
                    }),
                    2 => Box::pin({
                        let repo = repo.clone();
                        let patch = UserPatch::new().name(format!("S {t}.{k}"));
                        async move { let _ = repo.update_user(id, &patch).await; }
                    }),
                    3 => Box::pin({
                        // Takes the write lock for a moment: other writers' BEGIN IMMEDIATE waits.
                        let holder = holder.clone();
                        async move {
                            let _ = holder
                                .transaction(|conn| {
                                    async move {
                                        keel_test::exec(conn, "UPDATE users SET name = name WHERE 0").await?;
                                        tokio::time::sleep(Duration::from_millis(30)).await;
                                        Ok::<_, keel_pool::Error>(())
                                    }
                                    .scope_boxed()
                                })
                                .await;
                        }
                    }),
                    _ => Box::pin({
                        let pool = pool.clone();
                        async move {
                            let _ = pool
                                .transaction(|conn| {
                                    async move { keel_test::exec(conn, "UPDATE users SET name = name WHERE 0").await }
                                        .scope_boxed()
                                })
                                .await;
                        }
                    }),
                };
                if (DropAfter { inner: Box::pin(op), polls }).await.is_none() {
                    dropped.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let dropped = AtomicU64::load(&dropped, SeqCst);
    eprintln!("sqlite: {dropped} operations dropped mid-flight in {secs}s; pool {:?}", pool.stats());
    assert!(dropped > 20, "only {dropped} operations were dropped");
    assert_eq!(AtomicU64::load(&panics, SeqCst), 0, "a dropped SQLite operation panicked");
    // Full capacity: max_size connections at once, each working.
    let mut conns = Vec::new();
    for _ in 0..max {
        conns.push(
            tokio::time::timeout(Duration::from_secs(10), pool.get())
                .await
                .expect("pool capacity lost")
                .unwrap(),
        );
    }
    for c in &mut conns {
        assert_eq!(count_users(c).await.unwrap(), 50);
    }
    db.drop_database().await;
}
