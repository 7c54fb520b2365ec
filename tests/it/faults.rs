//! Tests that read server-wide counters or restart a server. Their names start with `serial_`:
//! `cargo xtask test` runs them after every other test, one at a time (nextest group `serial`),
//! so they neither disturb nor are disturbed by other tests' connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Config, Pool, ScopedFutureExt, with_conn};
use keel_schema::MIGRATIONS;
use keel_test::for_each_backend;
use rand::Rng;

#[derive(Debug, diesel::QueryableByName)]
struct V {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

/// New server sessions so far: PostgreSQL counts per database (`pg_stat_database.sessions`),
/// MariaDB only server-wide (`Connections`), which is why this test runs alone.
async fn server_connections(side: &Pool) -> i64 {
    let sql = match side.backend() {
        Backend::Postgres => {
            "SELECT CAST(sessions AS BIGINT) AS v FROM pg_stat_database WHERE datname = current_database()"
        }
        _ => {
            "SELECT CAST(VARIABLE_VALUE AS SIGNED) AS v FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'CONNECTIONS'"
        }
    };
    let mut conn = side.get().await.unwrap();
    let row: V = with_conn!(&mut conn, |c| diesel::sql_query(sql).get_result(c).await).unwrap();
    row.v
}

/// Reads a counter (`load` would resolve to diesel's `RunQueryDsl::load`).
fn get(a: &AtomicU64) -> u64 {
    AtomicU64::load(a, SeqCst)
}

#[derive(Default, Debug)]
struct Tally {
    completed: AtomicU64,
    wrong: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
}

/// 32 tasks each run `SELECT <their own value>` (with a 1 ms server-side sleep) through
/// `Pool::run`; with `cancel`, a third of the calls get a deadline of 0.2–1.5 ms, which drops
/// them mid-flight.
async fn hammer(pool: &Pool, secs: f64, cancel: bool) -> Tally {
    let sql = match pool.backend() {
        Backend::Postgres => "SELECT CAST($1 AS BIGINT) AS v FROM pg_sleep(0.001)",
        _ => "SELECT CAST(? AS SIGNED) AS v FROM (SELECT SLEEP(0.001) AS s) AS t",
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (pool, tally, stop) = (pool.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !AtomicBool::load(&stop, SeqCst) {
                let (value, deadline) = {
                    let mut rng = rand::rng();
                    let value: i64 = rng.random();
                    let short = cancel && rng.random_range(0..3) == 0;
                    let deadline = if short {
                        Duration::from_micros(rng.random_range(200..1500))
                    } else {
                        Duration::from_secs(5)
                    };
                    (value, deadline)
                };
                let call = pool.run(move |conn| {
                    async move {
                        with_conn!(conn, |c| diesel::sql_query(sql)
                            .bind::<BigInt, _>(value)
                            .get_result::<V>(c)
                            .await)
                    }
                    .scope_boxed()
                });
                match tokio::time::timeout(deadline, call).await {
                    Ok(Ok(row)) if row.v == value => tally.completed.fetch_add(1, SeqCst),
                    Ok(Ok(_)) => tally.wrong.fetch_add(1, SeqCst),
                    Ok(Err(_)) => tally.errors.fetch_add(1, SeqCst),
                    Err(_) => tally.cancelled.fetch_add(1, SeqCst),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(tally).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serial_cancellation_is_safe_and_costs_no_reconnect() {
    let secs: f64 = std::env::var("KEEL_CANCEL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // nothing to cancel on a server; a dropped SQLite call finishes on its thread
        }
        let side = keel_test::side_pool(&pool).await;
        let work = keel_test::pool_with(&pool, |c| c.max_size(8)).await;
        // Warm: open the pool's connections and the side connection used for KILL QUERY.
        let _ = hammer(&work, 0.3, true).await;
        let before = server_connections(&side).await;
        let started = Instant::now();
        let with = hammer(&work, secs, true).await;
        let elapsed = started.elapsed().as_secs_f64();
        let after = server_connections(&side).await;
        let new_connections = after - before;
        let cancelled = get(&with.cancelled);

        let base_secs = (secs / 3.0).max(1.0);
        let without = hammer(&work, base_secs, false).await;
        let stats = work.stats();
        eprintln!(
            "cancellation on {b}: {secs}s with cancellations: {} completed ({:.0}/s), {cancelled} cancelled, {} errors, \
             {} wrong, {new_connections} new server connections; {base_secs}s without: {} completed ({:.0}/s); \
             pool: {} created, {} closed broken, {} cancel requests",
            get(&with.completed),
            get(&with.completed) as f64 / elapsed,
            get(&with.errors),
            get(&with.wrong),
            get(&without.completed),
            get(&without.completed) as f64 / base_secs,
            stats.connections_created,
            stats.connections_closed_broken,
            stats.cancellations,
        );
        assert_eq!(get(&with.wrong) + get(&without.wrong), 0, "{b}: wrong results");
        assert!(cancelled > 100, "{b}: only {cancelled} calls were cancelled");
        assert!(
            (new_connections as f64) < 0.01 * cancelled as f64,
            "{b}: {new_connections} new server connections for {cancelled} cancellations"
        );
        // The pool is healthy afterwards.
        let seven = match b {
            Backend::Postgres => "SELECT CAST(7 AS BIGINT) AS v",
            _ => "SELECT CAST(7 AS SIGNED) AS v",
        };
        let v = work
            .run(move |conn| {
                async move { with_conn!(conn, |c| diesel::sql_query(seven).get_result::<V>(c).await) }.scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(v.v, 7);
    })
    .await;
}

/// Starts the local PostgreSQL cluster again when dropped, whatever happened.
struct BringBack {
    version: String,
}

impl BringBack {
    fn ctl(&self, action: &str) -> std::io::Result<std::process::ExitStatus> {
        std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", action])
            .status()
    }
}

impl Drop for BringBack {
    fn drop(&mut self) {
        let _ = self.ctl("start"); // fails harmlessly when it is already running
    }
}

/// The local cluster's version, when this machine runs the PostgreSQL the tests use.
fn local_cluster() -> Option<String> {
    let url = keel_test::server_url(Backend::Postgres)?;
    let host = url::Url::parse(&url).ok()?.host_str()?.to_owned();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        return None;
    }
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_postgres_restart_is_ridden_out() {
    let Some(version) = local_cluster() else {
        eprintln!("SKIPPED serial_a_postgres_restart_is_ridden_out: no local PostgreSQL cluster to restart");
        return;
    };
    let Some(db) = keel_test::test_db(Backend::Postgres, &MIGRATIONS).await else { return };
    keel_test::run_on(db, |pool| async move {
        let bring_back = BringBack { version };
        keel_test::exec_on(&pool, "CREATE TABLE pings (n BIGINT NOT NULL)").await.unwrap();
        let ping = |pool: Pool, n: i64, policy: Option<keel_pool::RetryPolicy>| async move {
            let mut options = keel_pool::TxOptions::new();
            if let Some(p) = policy {
                options = options.retry(p);
            }
            pool.transaction_with(options, move |conn| {
                async move { keel_test::exec(conn, &format!("INSERT INTO pings VALUES ({n})")).await }
                    .scope_boxed()
            })
            .await
        };
        ping(pool.clone(), 0, None).await.unwrap();

        let restarting = tokio::task::spawn_blocking({
            let version = bring_back.version.clone();
            move || {
                std::process::Command::new("pg_ctlcluster")
                    .args(["--skip-systemctl-redirect", &version, "main", "restart"])
                    .status()
            }
        });
        // Probe without retries while it restarts: failures must be classified transient.
        let (mut failures, mut n) = (Vec::new(), 1);
        while !restarting.is_finished() {
            if let Err(e) = ping(pool.clone(), n, Some(keel_pool::RetryPolicy::none())).await {
                failures.push(e);
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(restarting.await.unwrap().unwrap().success(), "pg_ctlcluster restart failed");
        // The same pool, never rebuilt, works again (riding out the last moments with retries).
        ping(pool.clone(), -1, None).await.unwrap();
        eprintln!(
            "postgres restart: {} probes failed while down, kinds {:?}; stats {:?}",
            failures.len(),
            failures.iter().map(|e| e.kind().as_str()).collect::<std::collections::BTreeSet<_>>(),
            pool.stats().retries
        );
        assert!(!failures.is_empty(), "the restart was not observed");
        assert!(failures.iter().all(|e| e.is_transient()), "{failures:?}");
        drop(bring_back);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_too_many_connections_is_classified_and_transient() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        // A login of this test's own, limited to one session (roles and users are server-wide,
        // hence a serial test; it is dropped at the end).
        let login = format!("keel_t_limited_{}", &uuid_tail());
        let (create, drop_sql) = match b {
            Backend::Postgres => (
                format!("CREATE ROLE {login} LOGIN CONNECTION LIMIT 1"),
                format!("DROP ROLE IF EXISTS {login}"),
            ),
            _ => (
                format!(
                    "CREATE USER '{login}'@'%' WITH MAX_USER_CONNECTIONS 1; GRANT ALL ON *.* TO '{login}'@'%'"
                ),
                format!("DROP USER IF EXISTS '{login}'@'%'"),
            ),
        };
        keel_test::exec_on(&pool, &create).await.unwrap();
        let mut url = url::Url::parse(pool.config().url().expose_secret()).unwrap();
        url.set_username(&login).unwrap();
        let first = Pool::connect(Config::new(url.as_str()).unwrap().max_size(1)).await.unwrap();
        let err = Pool::connect(Config::new(url.as_str()).unwrap()).await.unwrap_err();
        drop(first);
        let result = keel_test::exec_on(&pool, &drop_sql).await;
        eprintln!("too many connections on {b}: {err}");
        assert_eq!(err.kind(), keel_pool::ErrorKind::TooManyConnections, "{b}: {err}");
        assert!(err.is_transient());
        result.unwrap();
    })
    .await;
}

fn uuid_tail() -> String {
    let s = keel_schema::Id::new().to_string().replace('-', "");
    s[s.len() - 10..].to_owned()
}

/// A connection-level error seen through `with_conn!` (outside any transaction) makes the
/// pool ping its other idle connections before handing them out, as a transaction's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_seen_by_with_conn_makes_idle_ones_suspect() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        if pool.backend() == Backend::Sqlite {
            return; // no server session to lose
        }
        let lazy = keel_test::pool_with(&pool, |c| {
            c.max_size(2).ping_idle_after(Duration::from_secs(3600)).read_connections(0)
        })
        .await;
        let (mut a, b) = (lazy.get().await.unwrap(), lazy.get().await.unwrap());
        drop(b);
        let side = keel_test::side_pool(&pool).await;
        keel_test::terminate(&side, a.server_id().expect("a server session")).await;
        let lost = with_conn!(&mut a, |c| diesel::sql_query("SELECT COUNT(*) AS v FROM users")
            .get_result::<V>(c)
            .await);
        let kind = lost.expect_err("the session was ended").kind();
        assert!(
            matches!(kind, keel_pool::ErrorKind::ConnectionLost | keel_pool::ErrorKind::ServerShutdown),
            "{kind:?}"
        );
        drop(a);
        let pings = lazy.stats().pings;
        let mut c = lazy.get().await.unwrap();
        let v = with_conn!(&mut c, |c| diesel::sql_query("SELECT COUNT(*) AS v FROM users")
            .get_result::<V>(c)
            .await)
        .unwrap();
        assert_eq!(v.v, 0);
        assert_eq!(lazy.stats().pings, pings + 1, "the idle connection was pinged first");
    })
    .await;
}

/// A dropped query leaves no start behind in the instrumentation: the next query on the same
/// connection is timed from its own start, so it is not reported as slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_query_does_not_make_the_next_one_look_slow() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        if pool.backend() != Backend::Postgres {
            return; // MySQL closes such a connection; SQLite's finish arrives by itself
        }
        let one = keel_test::pool_with(&pool, |c| {
            c.max_size(1).read_connections(0).slow_query_threshold(Some(Duration::from_millis(300)))
        })
        .await;
        let mut conn = one.get().await.unwrap();
        let dropped = tokio::time::timeout(Duration::from_millis(50), async {
            with_conn!(&mut conn, |c| diesel::sql_query("SELECT pg_sleep(0.6)").execute(c).await)
        })
        .await;
        assert!(dropped.is_err(), "the sleep was cut short by the timeout");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(900)).await;
        let before = one.stats();
        let mut conn = one.get().await.unwrap();
        let v = with_conn!(&mut conn, |c| diesel::sql_query("SELECT COUNT(*) AS v FROM users")
            .get_result::<V>(c)
            .await)
        .unwrap();
        assert_eq!(v.v, 0);
        let after = one.stats();
        assert_eq!(after.queries, before.queries + 1, "{after:?}");
        assert_eq!(
            after.slow_queries, before.slow_queries,
            "the count was timed from the sleep's start: {after:?}"
        );
    })
    .await;
}
