//! Read replicas on a real local cluster (`keel_test::cluster`: a primary and one streaming
//! replica under `target/cluster/`, started once and shared by the cluster tests, which run one
//! at a time in their nextest group): reads go to the replica, a read in a causality session
//! never misses the session's writes, a stopped replica costs the caller nothing, and the HTTP
//! service carries the token in the `Keel-Causality` header.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use keel_pool::{Causality, Config, Pool, Session};
use keel_repo::Repo;
use keel_schema::{MIGRATIONS, NewUser};
use keel_test::cluster::{self, Member};
use tower::ServiceExt as _;

/// A fresh database on the cluster's primary, visible on the replica, migrated; the pool
/// routes reads to the replica.
async fn cluster_pool(name: &str) -> (Pool, cluster::Urls) {
    let dir = cluster::default_target_dir();
    let urls = cluster::up(&dir, Member::PgReplica).expect("the local cluster starts");
    let replica = urls.replica.clone().expect("a replica URL");
    let db = format!("keel_rr_{name}_{}", std::process::id());
    let admin = Pool::connect(Config::new(&urls.primary).expect("primary URL").max_size(1))
        .await
        .expect("the primary answers");
    let mut conn = admin.get().await.expect("a primary connection");
    keel_test::exec(&mut conn, &format!("DROP DATABASE IF EXISTS {db}")).await.expect("drop");
    keel_test::exec(&mut conn, &format!("CREATE DATABASE {db}")).await.expect("create");
    drop(conn);
    admin.close(Duration::from_secs(1)).await;
    let on = |url: &str| format!("{}/{db}", url.rsplit_once('/').map_or(url, |(base, _)| base));
    // The database reaches the replica through the WAL; wait for it.
    let started = Instant::now();
    loop {
        if let Ok(p) = Pool::connect(Config::new(&on(&replica)).expect("replica URL").max_size(1)).await {
            p.close(Duration::ZERO).await;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the new database never reached the replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = Config::new(&on(&urls.primary))
        .expect("primary URL")
        .replica(&on(&replica))
        .expect("replica URL")
        .read_your_writes_wait(Duration::from_millis(20));
    let pool = Pool::connect(config).await.expect("the pool opens");
    pool.migrate(&MIGRATIONS).await.expect("migrations apply");
    // The prober marks the replica usable once it has caught up with the migrations.
    let started = Instant::now();
    while !pool.routing_stats().expect("routing").replicas[0].usable {
        assert!(started.elapsed() < Duration::from_secs(20), "the replica never became usable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (pool, urls)
}

/// Waits until the prober saw the replica replay past `token`.
async fn wait_for_replay(pool: &Pool, token: Causality) {
    let started = Instant::now();
    while pool.routing_stats().expect("routing").replicas[0].replayed < Some(token) {
        assert!(started.elapsed() < Duration::from_secs(20), "the replica never replayed {token}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn replica_reads(pool: &Pool) -> u64 {
    pool.routing_stats().expect("routing").replicas[0].reads
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_in_a_session_see_its_writes_and_reads_without_one_use_the_replica() {
    let (pool, _) = cluster_pool("ryw").await;
    let repo = Repo::new(pool.clone());
    let n = 300;
    let before = replica_reads(&pool);
    let stats_before = pool.routing_stats().expect("routing");
    for i in 0..n {
        let session = Session::new(None);
        let found = session
            .run(async {
                let user = repo
                    .create_user(&NewUser::new("Ryw", format!("ryw{i}@example.com")))
                    .await
                    .expect("insert");
                repo.get_user(user.id).await
            })
            .await;
        assert!(found.is_ok(), "read {i} in a session missed its own write: {found:?}");
        let token = session.settle(&pool).await.expect("settle").expect("a write yields a token");
        // Tokens round-trip through their text form.
        assert_eq!(token.to_string().parse::<Causality>().expect("parse"), token);
    }
    let stats = pool.routing_stats().expect("routing");
    assert_eq!(
        stats.token_reads - stats_before.token_reads,
        n,
        "every read in a session carried its token: {stats:?}"
    );
    let by_replica = replica_reads(&pool) - before;
    // Without a token the same pairs can read before the replica has the row: the figure
    // shows the replica is really used (printed, not asserted: it depends on timing).
    let mut stale = 0;
    for i in 0..n {
        let user =
            repo.create_user(&NewUser::new("NoToken", format!("nt{i}@example.com"))).await.expect("insert");
        stale += u64::from(repo.get_user(user.id).await.is_err());
    }
    eprintln!(
        "read-your-writes: {n} pairs with a token, 0 stale, {by_replica} served by the replica, {} waited, {} by the primary; \
         {n} pairs without a token: {stale} stale",
        stats.token_waits, stats.token_primary
    );
    let before = replica_reads(&pool);
    // Reads without a session go to the replica.
    let session = Session::new(None);
    let user =
        session.run(repo.create_user(&NewUser::new("Plain", "plain@example.com"))).await.expect("insert");
    wait_for_replay(&pool, session.settle(&pool).await.expect("settle").expect("a token")).await;
    for _ in 0..50 {
        repo.get_user(user.id).await.expect("a replica read");
    }
    assert!(
        replica_reads(&pool) >= before + 50,
        "the replica served no plain reads: {:?}",
        pool.routing_stats()
    );
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_replica_costs_callers_nothing_and_is_used_again_when_back() {
    let (pool, _) = cluster_pool("stop").await;
    let repo = Repo::new(pool.clone());
    let session = Session::new(None);
    let user =
        session.run(repo.create_user(&NewUser::new("Stop", "stop@example.com"))).await.expect("insert");
    let token = session.settle(&pool).await.expect("settle").expect("a token");
    // Wait until the replica has the user, so the readers below are served there.
    wait_for_replay(&pool, token).await;
    let before = replica_reads(&pool);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            let session = Session::new(Some(token));
            tokio::spawn(async move {
                session
                    .run(async {
                        let until = Instant::now() + Duration::from_secs(4);
                        let mut errors = Vec::new();
                        while Instant::now() < until {
                            if let Err(e) = repo.get_user(user.id).await {
                                errors.push(e.to_string());
                            }
                        }
                        errors
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(replica_reads(&pool) > before, "the replica served none of the reads before it stopped");
    let dir = cluster::default_target_dir();
    cluster::down(&dir, Some(Member::PgReplica)).expect("the replica stops");
    let mut errors = Vec::new();
    for r in readers {
        errors.extend(r.await.expect("a reader task"));
    }
    let restarted = cluster::up(&dir, Member::PgReplica);
    assert!(
        errors.is_empty(),
        "callers saw {} errors while the replica stopped: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    restarted.expect("the replica starts again");
    let stats = pool.routing_stats().expect("routing");
    assert!(stats.replicas[0].failures <= 8, "at most one retried read per reader in flight: {stats:?}");
    let before = replica_reads(&pool);
    let started = Instant::now();
    while replica_reads(&pool) == before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replica was not used again: {:?}",
            pool.routing_stats()
        );
        repo.get_user(user.id).await.expect("a read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_service_returns_the_token_after_a_write_and_honours_it_on_reads() {
    let (pool, _) = cluster_pool("http").await;
    let app = keel_demo::serve::router(keel_demo::serve::AppState::new(
        Repo::new(pool.clone()),
        keel_demo::serve::Settings::default(),
    ));
    for i in 0..100 {
        let body = serde_json::json!({"name": "Http", "email": format!("http{i}@example.com")}).to_string();
        let req = Request::post("/users").header("content-type", "application/json").body(Body::from(body));
        let res = app.clone().oneshot(req.expect("request")).await.expect("infallible");
        assert_eq!(res.status().as_u16(), 201);
        let token = res
            .headers()
            .get("keel-causality")
            .expect("a token after a write")
            .to_str()
            .expect("text")
            .to_owned();
        token.parse::<Causality>().expect("a valid token");
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("body");
        let created: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let id = created["id"].as_str().expect("an id");
        let req = Request::get(format!("/users/{id}")).header("keel-causality", &token).body(Body::empty());
        let res = app.clone().oneshot(req.expect("request")).await.expect("infallible");
        assert_eq!(res.status().as_u16(), 200, "GET after POST with its token must find the user ({i})");
    }
    let req = Request::get("/users?limit=1").header("keel-causality", "not a token").body(Body::empty());
    let res = app.clone().oneshot(req.expect("request")).await.expect("infallible");
    assert_eq!(res.status().as_u16(), 400, "a malformed token is the client's error");
    pool.close(Duration::from_secs(1)).await;
}

/// Brings the cluster back as it was (primary started, the promoted replica rebuilt from it)
/// when the failover test ends, passed or not.
struct RebuildAfterFailover;

impl Drop for RebuildAfterFailover {
    fn drop(&mut self) {
        if let Err(e) = cluster::up(&cluster::default_target_dir(), Member::PgReplica) {
            eprintln!("rebuilding the cluster after the failover test failed: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_refuses_writes_as_read_only_and_a_promotion_is_detected() {
    let (pool, urls) = cluster_pool("failover").await;
    let repo = Repo::new(pool.clone());
    let replica = urls.replica.as_deref().expect("a replica URL");
    let db = format!("keel_rr_failover_{}", std::process::id()); // as cluster_pool names it
    let replica_url = format!("{}/{db}", replica.rsplit_once('/').map_or(replica, |(base, _)| base));

    // A configuration whose "primary" is a hot standby: a write fails as read_only (transient:
    // a failover), once, not retried, and the message says why.
    let standby = Pool::connect(Config::new(&replica_url).expect("URL").max_size(2)).await.expect("opens");
    let err = Repo::new(standby.clone())
        .create_user(&NewUser::new("Standby", "standby@example.com"))
        .await
        .expect_err("a standby takes no writes");
    assert_eq!(err.kind(), Some(keel_pool::ErrorKind::ReadOnly), "{err}");
    assert!(err.is_transient(), "{err}");
    assert_eq!(standby.stats().retries.values().sum::<u64>(), 0, "a read-only refusal is not retried");
    standby.close(Duration::ZERO).await;

    // Fail over: the primary stops, the replica is promoted.
    let session = Session::new(None);
    let before =
        session.run(repo.create_user(&NewUser::new("Before", "before@example.com"))).await.expect("insert");
    let _rebuild = RebuildAfterFailover;
    wait_for_replay(&pool, session.settle(&pool).await.expect("settle").expect("a token")).await;
    cluster::failover(&cluster::default_target_dir()).expect("the replica is promoted");
    let started = Instant::now();
    while !pool.routing_stats().expect("routing").replicas[0].promoted {
        assert!(started.elapsed() < Duration::from_secs(10), "the promotion was not detected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = pool.routing_stats().expect("routing");
    assert!(!stats.replicas[0].usable, "a promoted replica takes no reads: {stats:?}");

    // Writes through the old configuration fail with a clear transient error.
    let short = Pool::connect(
        pool.config()
            .clone()
            .acquire_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500)),
    )
    .await;
    match short {
        Ok(short) => {
            let err = Repo::new(short.clone())
                .create_user(&NewUser::new("Lost", "lost@example.com"))
                .await
                .expect_err("the old primary is down");
            assert!(err.is_transient(), "a write during a failover is transient: {err}");
            short.close(Duration::ZERO).await;
        }
        Err(e) => assert!(e.is_transient(), "opening a pool during a failover fails transiently: {e}"),
    }

    // Pointed at the new primary, writes succeed and the data written before is there.
    let promoted = Pool::connect(Config::new(&replica_url).expect("URL").max_size(2)).await.expect("opens");
    let promoted_repo = Repo::new(promoted.clone());
    promoted_repo.get_user(before.id).await.expect("the promoted server has the earlier write");
    promoted_repo
        .create_user(&NewUser::new("After", "after@example.com"))
        .await
        .expect("the new primary takes writes");
    promoted.close(Duration::ZERO).await;
    pool.close(Duration::ZERO).await;
}
