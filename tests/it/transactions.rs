//! `Pool::transaction`: options that take effect, retries after real conflicts, savepoints,
//! domain errors, and commits whose outcome is unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_pool::{
    Backend, Config, Conn, Error, ErrorKind, Isolation, Pool, RetryPolicy, ScopedBoxFuture, ScopedFutureExt,
    TxError, TxOptions, with_conn,
};
use keel_schema::MIGRATIONS;
use keel_schema::schema::{accounts, users};
use keel_schema::{Id, NewAccount, NewUser};
use keel_test::for_each_backend;
use keel_test::{CommitFault, Proxy, exec, server_addr};

async fn add_user(conn: &mut Conn, email: &str) -> Result<Id, Error> {
    let user = NewUser::new("Someone", email);
    with_conn!(conn, |c| diesel::insert_into(users::table).values(&user).execute(c).await)?;
    Ok(user.id)
}

async fn count_users(pool: &Pool) -> i64 {
    keel_test::count_rows(pool, "users").await.unwrap()
}

/// Two accounts of 100 cents each.
async fn two_accounts(pool: &Pool) -> (Id, Id) {
    let mut conn = pool.get().await.unwrap();
    let owner = add_user(&mut conn, "owner@example.com").await.unwrap();
    let (a, b) = (NewAccount::new(owner, 100), NewAccount::new(owner, 100));
    for acc in [&a, &b] {
        with_conn!(&mut conn, |c| diesel::insert_into(accounts::table).values(acc).execute(c).await).unwrap();
    }
    (a.id, b.id)
}

async fn balance(conn: &mut Conn, id: Id) -> Result<i64, Error> {
    with_conn!(conn, |c| accounts::table.find(id).select(accounts::balance_cents).first(c).await)
}

/// A transaction body inserting one user.
fn insert(
    email: &'static str,
) -> impl for<'c> Fn(&'c mut Conn) -> ScopedBoxFuture<'static, 'c, Result<Id, Error>> {
    move |conn| async move { add_user(conn, email).await }.scope_boxed()
}

#[derive(Debug)]
enum Withdraw {
    Insufficient,
    Db(Error),
}
impl From<Error> for Withdraw {
    fn from(e: Error) -> Self {
        Withdraw::Db(e)
    }
}
impl TxError for Withdraw {
    fn as_keel_error(&self) -> Option<&Error> {
        match self {
            Withdraw::Db(e) => Some(e),
            Withdraw::Insufficient => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_skew_under_serializable_fails_one_side_which_is_retried() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // writers are serialized by BEGIN IMMEDIATE: no skew possible (see busy test)
        }
        let (x, y) = two_accounts(&pool).await;
        // Rule: the two accounts together keep at least 100. Each transaction withdraws 80 from
        // its own account when the rule allows; run together without isolation, both would.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let attempts = Arc::new(AtomicUsize::new(0));
        let withdraw = |mine: Id| {
            let (pool, barrier, attempts) = (pool.clone(), barrier.clone(), attempts.clone());
            async move {
                let options = TxOptions::new().isolation(Isolation::Serializable);
                pool.transaction_with(options, |conn| {
                    let (barrier, attempts) = (barrier.clone(), attempts.clone());
                    async move {
                        let n = attempts.fetch_add(1, SeqCst);
                        let total = balance(conn, x).await? + balance(conn, y).await?;
                        if n < 2 {
                            barrier.wait().await; // both have read before either writes
                        }
                        if total - 80 < 100 {
                            return Err(Withdraw::Insufficient);
                        }
                        with_conn!(conn, |c| diesel::update(accounts::table.find(mine))
                            .set(accounts::balance_cents.eq(accounts::balance_cents - 80))
                            .execute(c)
                            .await)?;
                        Ok(())
                    }
                    .scope_boxed()
                })
                .await
            }
        };
        let (r1, r2) = tokio::join!(tokio::spawn(withdraw(x)), tokio::spawn(withdraw(y)));
        let results = [r1.unwrap(), r2.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results.iter().filter(|r| matches!(r, Err(Withdraw::Insufficient))).count();
        assert_eq!((ok, refused), (1, 1), "{b}: {results:?}");
        let mut conn = pool.get().await.unwrap();
        assert_eq!(balance(&mut conn, x).await.unwrap() + balance(&mut conn, y).await.unwrap(), 120, "{b}");
        assert!(AtomicUsize::load(&attempts, SeqCst) >= 3, "the loser ran again");
        let stats = pool.stats();
        assert!(stats.total_retries() >= 1, "{b}: {stats:?}");
        let kind = if b == Backend::Postgres { "serialization_failure" } else { "deadlock" };
        assert!(stats.retries.contains_key(kind), "{b}: {:?}", stats.retries);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_errors_are_never_retried() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let attempts = AtomicUsize::new(0);
        let result: Result<(), Withdraw> = pool
            .transaction(|conn| {
                let attempts = &attempts;
                async move {
                    attempts.fetch_add(1, SeqCst);
                    add_user(conn, "rolled-back@example.com").await?;
                    Err(Withdraw::Insufficient)
                }
                .scope_boxed()
            })
            .await;
        assert!(matches!(result, Err(Withdraw::Insufficient)));
        assert_eq!(AtomicUsize::load(&attempts, SeqCst), 1);
        assert_eq!(count_users(&pool).await, 0, "rolled back");
        // A non-transient database error is not retried either.
        let attempts = AtomicUsize::new(0);
        let mut conn = pool.get().await.unwrap();
        add_user(&mut conn, "taken@example.com").await.unwrap();
        drop(conn);
        let err = pool
            .transaction(|conn| {
                let attempts = &attempts;
                async move {
                    attempts.fetch_add(1, SeqCst);
                    add_user(conn, "taken@example.com").await
                }
                .scope_boxed()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UniqueViolation);
        assert_eq!(AtomicUsize::load(&attempts, SeqCst), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_refuse_writes() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        let attempts = AtomicUsize::new(0);
        let err = pool
            .transaction_with(TxOptions::new().read_only(true), |conn| {
                attempts.fetch_add(1, SeqCst);
                async move { add_user(conn, "ro@example.com").await }.scope_boxed()
            })
            .await
            .unwrap_err();
        // The same kind on every backend, and not retried: the write is the body's mistake.
        assert_eq!(err.kind(), ErrorKind::ReadOnly, "{b}: {err}");
        assert_eq!(AtomicUsize::load(&attempts, SeqCst), 1, "{b}: a read-only refusal is not retried");
        assert_eq!(count_users(&pool).await, 0, "{b}");
        // Reads work, and the session is writable again afterwards.
        let n: i64 = pool
            .transaction_with(TxOptions::new().read_only(true), |conn| {
                async move { with_conn!(conn, |c| users::table.count().get_result(c).await) }.scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
        let mut conn = pool.get().await.unwrap();
        add_user(&mut conn, "rw@example.com").await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_transactions_are_savepoints() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        pool.transaction(|conn| {
            async move {
                add_user(conn, "outer@example.com").await?;
                let inner: Result<(), diesel::result::Error> = keel_pool::with_conn_raw!(conn, |c| {
                    c.transaction(async |c| {
                        diesel::insert_into(users::table)
                            .values(&NewUser::new("Inner", "inner@example.com"))
                            .execute(c)
                            .await?;
                        Err(diesel::result::Error::RollbackTransaction)
                    })
                    .await
                });
                assert!(inner.is_err());
                Ok::<_, Error>(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        let mut conn = pool.get().await.unwrap();
        let emails: Vec<String> =
            with_conn!(&mut conn, |c| users::table.select(users::email).load(c).await).unwrap();
        assert_eq!(emails, vec!["outer@example.com".to_owned()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sqlite_writer_is_retried_until_the_lock_is_free() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        if pool.backend() != Backend::Sqlite {
            return;
        }
        let pool = keel_test::pool_with(&pool, |c| c.sqlite_busy_timeout(Duration::from_millis(50))).await;
        let mut holder = pool.get().await.unwrap();
        exec(&mut holder, "BEGIN IMMEDIATE").await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            exec(&mut holder, "COMMIT").await.unwrap();
        });
        pool.transaction(|conn| async move { add_user(conn, "patient@example.com").await }.scope_boxed())
            .await
            .unwrap();
        release.await.unwrap();
        assert_eq!(count_users(&pool).await, 1);
        assert!(pool.stats().retries.get("lock_timeout").copied().unwrap_or(0) >= 1, "{:?}", pool.stats());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_during_commit_is_an_unknown_outcome() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // no network between SQLite and its caller
        }
        let url = pool.config().url().expose_secret().to_owned();
        let proxy = Proxy::start(server_addr(&url)).await;
        let via = Pool::connect(Config::new(&proxy.url_for(&url)).unwrap().max_size(2)).await.unwrap();

        // Dropped before the server saw COMMIT: nothing was written, but the client cannot know.
        proxy.fault_next_commit(CommitFault::DropBeforeCommit);
        let err = via.transaction(insert("before@example.com")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommitOutcomeUnknown, "{b}: {err}");
        assert!(!err.is_transient());
        // Dropped after the server got COMMIT: it was written; the same error, by necessity.
        proxy.fault_next_commit(CommitFault::DropAfterCommit);
        let err = via.transaction(insert("after@example.com")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommitOutcomeUnknown, "{b}: {err}");
        let mut conn = pool.get().await.unwrap();
        let emails: Vec<String> =
            with_conn!(&mut conn, |c| users::table.select(users::email).load(c).await).unwrap();
        assert_eq!(emails, vec!["after@example.com".to_owned()], "{b}");

        // Marked idempotent, the same failure is retried and the work lands once.
        proxy.fault_next_commit(CommitFault::DropBeforeCommit);
        via.transaction_with(TxOptions::new().idempotent(true), insert("idem@example.com")).await.unwrap();
        assert_eq!(proxy.faults_injected(), 3);
        assert_eq!(count_users(&pool).await, 2, "{b}");
        assert_eq!(via.stats().commits_unknown, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_then_recovers() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let small =
            keel_test::pool_with(&pool, |c| c.max_size(2).acquire_timeout(Duration::from_millis(200))).await;
        let max = small.state().max_size as usize;
        let held: Vec<Conn> =
            futures_util::future::try_join_all((0..max).map(|_| small.get())).await.unwrap();
        let err = small.get().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AcquireTimeout, "{err}");
        assert!(err.to_string().contains("all connections busy"), "{err}");
        assert_eq!(small.stats().acquire_timeouts, 1);
        drop(held);
        let mut conn = small.get().await.unwrap();
        exec(&mut conn, "SELECT 1").await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_pooled_connection_is_replaced() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        let one = keel_test::pool_with(&pool, |c| c.max_size(1)).await;
        // Behind PgBouncer there is no server session of ours to terminate.
        let Some(first_id) = one.get().await.unwrap().server_id() else {
            assert!(pool.config().is_pgbouncer(), "a server connection has a server id");
            return;
        };
        let side = keel_test::side_pool(&pool).await;
        keel_test::terminate(&side, first_id).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        one.transaction(|conn| async move { add_user(conn, "after-kill@example.com").await }.scope_boxed())
            .await
            .unwrap();
        let now_id = one.get().await.unwrap().server_id().unwrap();
        assert_ne!(now_id, first_id, "{b}");
        let stats = one.stats();
        assert!(stats.connections_created >= 1 && stats.total_retries() >= 1, "{b}: {stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_transiently_while_the_server_is_away_and_recover() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        let url = pool.config().url().expose_secret().to_owned();
        let proxy = Proxy::start(server_addr(&url)).await;
        let via = Pool::connect(
            Config::new(&proxy.url_for(&url))
                .unwrap()
                .max_size(4)
                .acquire_timeout(Duration::from_millis(300))
                .connect_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        exec(&mut via.get().await.unwrap(), "SELECT 1").await.unwrap();
        // "Restart": every connection dies, new ones are refused for a while.
        proxy.set_accepting(false);
        proxy.cut_all();
        let quick = TxOptions::new().retry(RetryPolicy::none());
        let err = via
            .transaction_with(quick.clone(), |conn| {
                async move { add_user(conn, "down@example.com").await }.scope_boxed()
            })
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{b}: {err}");
        // Checkouts now ping (the pool saw a connection fail), find every connection dead, cannot
        // open new ones, and time out saying why.
        let err = via.get().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AcquireTimeout, "{b}: {err}");
        assert!(err.to_string().contains("last connection attempt failed"), "{b}: {err}");
        let back = {
            let proxy_state = &proxy;
            async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                proxy_state.set_accepting(true);
            }
        };
        // With the default policy the transaction rides out the outage.
        let (result, ()) = tokio::join!(
            via.transaction(|conn| async move { add_user(conn, "up@example.com").await }.scope_boxed()),
            back
        );
        result.unwrap();
        assert_eq!(count_users(&pool).await, 1, "{b}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_health_and_close() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        let p = keel_test::pool_with(&pool, |c| c.slow_query_threshold(Some(Duration::ZERO))).await;
        let health = p.health().await.unwrap();
        assert_eq!(health.backend, b);
        assert!(!health.server_version.is_empty());
        for i in 0..5 {
            let mut conn = p.get().await.unwrap();
            add_user(&mut conn, &format!("s{i}@example.com")).await.unwrap();
        }
        let stats = p.stats();
        assert!(stats.queries >= 6, "{stats:?}");
        assert!(stats.slow_queries >= 6, "threshold zero: every query is slow: {stats:?}");
        assert!(stats.acquires >= 6 && stats.acquire_p99_us >= stats.acquire_p50_us, "{stats:?}");
        assert!(stats.size >= 1 && stats.in_use == 0, "{stats:?}");

        let held = p.get().await.unwrap();
        let still_out = p.close(Duration::from_millis(100)).await;
        assert_eq!(still_out, 1);
        assert_eq!(p.get().await.unwrap_err().kind(), ErrorKind::PoolClosed);
        drop(held);
        assert!(p.is_closed());
    })
    .await;
}

/// A full pool is reported once: the transaction does not wait out a second acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_not_retried_inside_a_transaction() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let url = pool.config().url().expose_secret().to_owned();
        let small =
            Pool::connect(Config::new(&url).unwrap().max_size(1).acquire_timeout(Duration::from_millis(200)))
                .await
                .unwrap();
        let held = small.get().await.unwrap();
        let attempts = AtomicUsize::new(0);
        let err = small
            .transaction(|conn| {
                let attempts = &attempts;
                async move {
                    attempts.fetch_add(1, SeqCst);
                    add_user(conn, "never@example.com").await
                }
                .scope_boxed()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AcquireTimeout, "{err}");
        assert_eq!(AtomicUsize::load(&attempts, SeqCst), 0, "the body never ran");
        let stats = small.stats();
        assert_eq!(stats.acquire_timeouts, 1, "{stats:?}");
        assert!(stats.retries.is_empty(), "{stats:?}");
        drop(held);
    })
    .await;
}
