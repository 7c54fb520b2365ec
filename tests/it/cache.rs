//! The Redis read-through cache (keel-cache, keel-repo's `cache` feature) on the real Redis and
//! every database backend: hits and misses, invalidation after commit, negative caching, the
//! stale-set race (deterministic and randomized), single-flight, and Redis trouble.
//!
//! Each test uses a key prefix of its own, so tests running side by side never see each
//! other's keys. An unreachable Redis skips these tests with the reason, unless
//! `KEEL_REQUIRE_BACKENDS` names `redis` (CI): then they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keel_cache::{BreakerState, Cache, CacheConfig, Cached};
use keel_pool::{ErrorKind, Pool};
use keel_repo::cache::keys;
use keel_repo::{Repo, UserPatch};
use keel_schema::{Id, MIGRATIONS, NewJob, NewUser, User};
use keel_test::for_each_backend;
use keel_test::servers::{redis_required, redis_url};
use tokio::sync::Notify;

/// A config with a prefix no other test uses, and a timeout that suits a busy test machine.
fn config(tag: &str) -> CacheConfig {
    CacheConfig::new().prefix(format!("keel-test:{tag}:{}", Id::new()), 1).timeout(Duration::from_millis(250))
}

/// A cache on the test Redis, or `None` (skipped, with the reason) when it is unreachable and
/// not required.
async fn cache_or_skip(config: CacheConfig) -> Option<Cache> {
    let url = redis_url();
    let cache = Cache::connect(&url, config).await.expect("the Redis URL is valid");
    match cache.ping().await {
        Ok(_) => Some(cache),
        Err(e) if redis_required() => {
            panic!("Redis is required (KEEL_REQUIRE_BACKENDS) but unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {}: Redis unavailable: {e}", keel_test::db::current_test());
            None
        }
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T, keel_repo::Error>) -> ErrorKind {
    r.expect_err("expected an error").kind().expect("a classified error")
}

/// Queries the pool ran so far.
fn queries(pool: &Pool) -> u64 {
    pool.stats().queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_hits_misses_and_negative_caching() {
    let Some(cache) = cache_or_skip(config("hits")).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool.clone()).with_cache(cache.clone());
            let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
            let job = repo.create_job(&NewJob::new(ada.id, "Engineer", 100)).await.unwrap();
            let account = repo.create_account(ada.id, 500).await.unwrap();
            assert_eq!(cache.peek::<User>(&keys::user(ada.id)).await.unwrap(), Cached::Absent);

            let before = (cache.stats(), queries(&pool));
            assert_eq!(repo.get_user(ada.id).await.unwrap(), ada);
            let after_miss = (cache.stats(), queries(&pool));
            assert_eq!(after_miss.0.misses - before.0.misses, 1);
            assert_eq!(after_miss.0.fills - before.0.fills, 1);
            assert_eq!(after_miss.1 - before.1, 1, "the miss read the database once");
            assert_eq!(cache.peek::<User>(&keys::user(ada.id)).await.unwrap(), Cached::Value(ada.clone()));

            assert_eq!(repo.get_user(ada.id).await.unwrap(), ada);
            let after_hit = (cache.stats(), queries(&pool));
            assert_eq!(after_hit.0.hits - after_miss.0.hits, 1);
            assert_eq!(after_hit.1, after_miss.1, "the hit did not touch the database");

            // The other read-through calls: a miss then a hit each, same answer.
            for _ in 0..2 {
                assert_eq!(repo.get_job(job.id).await.unwrap(), job);
                assert_eq!(repo.get_account(account.id).await.unwrap(), account);
                assert_eq!(repo.user_with_jobs(ada.id).await.unwrap(), (ada.clone(), vec![job.clone()]));
            }
            assert_eq!(cache.stats().hits - after_hit.0.hits, 3);

            // not_found is cached briefly, and a create of that id invalidates it.
            let mut later = NewUser::new("Later", "later@example.com");
            let missing = later.id;
            assert_eq!(kind(repo.get_user(missing).await), ErrorKind::NotFound);
            let n = cache.stats().negative_hits;
            assert_eq!(kind(repo.get_user(missing).await), ErrorKind::NotFound);
            assert_eq!(cache.stats().negative_hits, n + 1);
            assert_eq!(cache.peek::<User>(&keys::user(missing)).await.unwrap(), Cached::NotFound);
            later.id = missing;
            let created = repo.create_user(&later).await.unwrap();
            assert_eq!(repo.get_user(missing).await.unwrap(), created);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_entries_expire_after_their_ttl() {
    let Some(cache) = cache_or_skip(config("negttl").negative_ttl(Duration::from_millis(200))).await else {
        return;
    };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool).with_cache(cache.clone());
            let missing = Id::new();
            assert_eq!(kind(repo.get_user(missing).await), ErrorKind::NotFound);
            assert_eq!(cache.peek::<User>(&keys::user(missing)).await.unwrap(), Cached::NotFound);
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(cache.peek::<User>(&keys::user(missing)).await.unwrap(), Cached::Absent);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_invalidate_after_commit() {
    let Some(cache) = cache_or_skip(config("invalidate")).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool).with_cache(cache.clone());
            let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
            let bob = repo.create_user(&NewUser::new("Bob", "bob@example.com")).await.unwrap();
            let job = repo.create_job(&NewJob::new(ada.id, "Engineer", 100)).await.unwrap();
            let a = repo.create_account(ada.id, 1_000).await.unwrap();
            let b = repo.create_account(bob.id, 0).await.unwrap();
            // Warm every entry.
            let warm = async || {
                repo.get_user(ada.id).await.unwrap();
                repo.user_with_jobs(ada.id).await.unwrap();
                repo.get_job(job.id).await.unwrap();
                repo.get_account(a.id).await.unwrap();
                repo.get_account(b.id).await.unwrap();
            };
            warm().await;

            // Update: the next read sees the new row.
            let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta")).await.unwrap();
            assert_eq!(cache.peek::<User>(&keys::user(ada.id)).await.unwrap(), Cached::Absent);
            assert_eq!(repo.get_user(ada.id).await.unwrap(), renamed);
            assert_eq!(repo.user_with_jobs(ada.id).await.unwrap().0, renamed);

            // Job changes invalidate the user's listing.
            let job2 = repo.create_job(&NewJob::new(ada.id, "Manager", 200)).await.unwrap();
            assert_eq!(repo.user_with_jobs(ada.id).await.unwrap().1, vec![job.clone(), job2.clone()]);
            repo.delete_job(job2.id).await.unwrap();
            assert_eq!(kind(repo.get_job(job2.id).await), ErrorKind::NotFound);
            assert_eq!(repo.user_with_jobs(ada.id).await.unwrap().1, vec![job.clone()]);
            let batch = vec![NewJob::new(ada.id, "Batch", 300)];
            repo.insert_jobs(&batch).await.unwrap();
            assert_eq!(repo.user_with_jobs(ada.id).await.unwrap().1.len(), 2);

            // Transfer: both balances are new on the next read.
            warm().await;
            repo.transfer(a.id, b.id, 250, &format!("t-{}", Id::new())).await.unwrap();
            assert_eq!(repo.get_account(a.id).await.unwrap().balance_cents, 750);
            assert_eq!(repo.get_account(b.id).await.unwrap().balance_cents, 250);

            // Delete: the user, their listing, and what the cascade removed are gone. (Ada has
            // transfers, which keep her accounts; Carol has none.)
            let carol = repo.create_user(&NewUser::new("Carol", "carol@example.com")).await.unwrap();
            let carol_job = repo.create_job(&NewJob::new(carol.id, "Pilot", 100)).await.unwrap();
            let carol_account = repo.create_account(carol.id, 10).await.unwrap();
            repo.get_user(carol.id).await.unwrap();
            repo.user_with_jobs(carol.id).await.unwrap();
            repo.get_job(carol_job.id).await.unwrap();
            repo.get_account(carol_account.id).await.unwrap();
            repo.delete_user(carol.id).await.unwrap();
            assert_eq!(kind(repo.get_user(carol.id).await), ErrorKind::NotFound);
            assert_eq!(kind(repo.user_with_jobs(carol.id).await), ErrorKind::NotFound);
            assert_eq!(kind(repo.get_job(carol_job.id).await), ErrorKind::NotFound);
            assert_eq!(kind(repo.get_account(carol_account.id).await), ErrorKind::NotFound);
            assert_eq!(kind(repo.delete_user(carol.id).await), ErrorKind::NotFound);
            // A delete that fails changes nothing: the cached row is still right.
            assert!(repo.delete_user(ada.id).await.is_err());
            assert_eq!(repo.get_user(ada.id).await.unwrap(), renamed);
            assert_eq!(cache.stats().invalidations_pending, 0);
        }
    })
    .await;
}

/// Through the HTTP API with a cache: write-then-read pairs never read stale, and `/metrics`
/// shows the cache's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_writes_then_reads_are_never_stale_and_metrics_show_the_cache() {
    let Some(cache) = cache_or_skip(config("http")).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool).with_cache(cache.clone());
            let api = crate::serve::Api::over(repo, keel_demo::serve::Settings::default());
            let created =
                api.post("/users", &serde_json::json!({"name": "Ada", "email": "ada@example.com"})).await;
            let id = created.expect(201, None).json()["id"].as_str().expect("an id").to_owned();
            let path = format!("/users/{id}");
            let mut stale = 0;
            for i in 0..200 {
                let name = format!("name {i}");
                api.patch(&path, &serde_json::json!({ "name": name })).await.expect(200, None);
                let read = api.get(&path).await;
                stale += usize::from(read.expect(200, None).json()["name"] != name.as_str());
                api.get(&path).await.expect(200, None); // a hit
            }
            assert_eq!(stale, 0, "stale reads after a write");
            let text = api.metrics().await;
            let hits = cache.stats().hits;
            assert!(hits >= 200, "{:?}", cache.stats());
            for needle in [
                "# TYPE keel_cache_hits_total counter".to_owned(),
                "keel_cache_breaker_state{state=\"closed\"} 1".to_owned(),
                "# TYPE keel_cache_redis_duration_seconds histogram".to_owned(),
                "keel_cache_stale_set_refusals_total".to_owned(),
            ] {
                assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
            }
        }
    })
    .await;
}

/// Pauses the first fill of `key` between its database read and its conditional set, until
/// released.
struct Pause {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

fn pausing(tag: &str, pause: &Arc<Pause>) -> CacheConfig {
    let p = Arc::clone(pause);
    config(tag).fill_barrier(Arc::new(move |_key: &str| {
        let p = Arc::clone(&p);
        Box::pin(async move {
            if p.armed.swap(false, Ordering::SeqCst) {
                let released = p.release.notified();
                p.reached.notify_one();
                released.await;
            }
        })
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_commit_never_lands_after_it() {
    let pause =
        Arc::new(Pause { armed: AtomicBool::new(false), reached: Notify::new(), release: Notify::new() });
    let Some(cache) = cache_or_skip(pausing("race", &pause)).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let (cache, pause) = (cache.clone(), Arc::clone(&pause));
        async move {
            let repo = Repo::new(pool).with_cache(cache.clone());
            let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
            let refusals = cache.stats().stale_set_refusals;

            // The reader reads the old row from the database, then stops before its fill.
            pause.armed.store(true, Ordering::SeqCst);
            let reached = pause.reached.notified();
            let reader = tokio::spawn({
                let repo = repo.clone();
                async move { repo.get_user(ada.id).await.unwrap() }
            });
            reached.await;
            // The writer commits and invalidates while the reader is paused.
            let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta")).await.unwrap();
            pause.release.notify_one();
            // The reader answers with what it read (it started before the write) ...
            assert_eq!(reader.await.unwrap(), ada);
            // ... but its fill was refused: the cache holds nothing or the new row, never the old.
            let cached = cache.peek::<User>(&keys::user(ada.id)).await.unwrap();
            assert!(
                matches!(&cached, Cached::Absent | Cached::Lease) || cached == Cached::Value(renamed.clone()),
                "{cached:?}"
            );
            assert_eq!(cache.stats().stale_set_refusals, refusals + 1);
            assert_eq!(repo.get_user(ada.id).await.unwrap(), renamed);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_reads_and_writes_never_leave_a_stale_entry() {
    // Fills pause a random 0–3 ms between their read and their set, so writes fall into the gap.
    let cfg = config("random").fill_barrier(Arc::new(|_key: &str| {
        Box::pin(async {
            let us = rand::random_range(0..3_000u64);
            tokio::time::sleep(Duration::from_micros(us)).await;
        })
    }));
    let Some(cache) = cache_or_skip(cfg).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool.clone()).with_cache(cache.clone());
            let users: Vec<User> = {
                let mut v = Vec::new();
                for i in 0..4 {
                    v.push(
                        repo.create_user(&NewUser::new(format!("u{i}"), format!("u{i}@x.com")))
                            .await
                            .unwrap(),
                    );
                }
                v
            };
            for round in 0..20 {
                let mut tasks = Vec::new();
                for t in 0..6 {
                    let repo = repo.clone();
                    let id = users[(round + t) % users.len()].id;
                    tasks.push(tokio::spawn(async move {
                        for k in 0..5 {
                            if rand::random_range(0..3) == 0 {
                                let name = format!("r{round}t{t}k{k}");
                                repo.update_user(id, &UserPatch::new().name(name)).await.unwrap();
                            } else {
                                repo.get_user(id).await.unwrap();
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                // Every write has returned: each entry is absent, a lease, or the row as stored.
                let plain = Repo::new(pool.clone());
                for u in &users {
                    let stored = plain.get_user(u.id).await.unwrap();
                    match cache.peek::<User>(&keys::user(u.id)).await.unwrap() {
                        Cached::Value(v) => assert_eq!(v, stored, "round {round}: stale entry"),
                        Cached::Absent | Cached::Lease => {}
                        other => panic!("round {round}: unexpected {other:?}"),
                    }
                    assert_eq!(repo.get_user(u.id).await.unwrap(), stored, "round {round}: stale read");
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_reads_run_one_query() {
    let Some(cache) = cache_or_skip(config("flight")).await else { return };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool.clone()).with_cache(cache.clone());
            let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
            let before = queries(&pool);
            let gate = Arc::new(tokio::sync::Barrier::new(1_000));
            let reads: Vec<_> = (0..1_000)
                .map(|_| {
                    let (repo, gate) = (repo.clone(), Arc::clone(&gate));
                    tokio::spawn(async move {
                        gate.wait().await;
                        repo.get_user(ada.id).await
                    })
                })
                .collect();
            for r in reads {
                assert_eq!(r.await.unwrap().unwrap(), ada);
            }
            assert_eq!(queries(&pool) - before, 1, "1,000 concurrent cold reads, one database query");
        }
    })
    .await;
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_costs_nothing_but_the_cache() {
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", closed_port());
    let cache = Cache::connect(&url, config("down").breaker(3, Duration::from_millis(200))).await.unwrap();
    assert!(!format!("{cache:?}").contains("s3cret"), "credentials in Debug");
    let err = cache.ping().await.unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "credentials in an error: {err}");
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool).with_cache(cache.clone());
            let ada = repo.create_user(&NewUser::new("Ada", "ada@example.com")).await.unwrap();
            for _ in 0..20 {
                assert_eq!(repo.get_user(ada.id).await.unwrap(), ada);
            }
            let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta")).await.unwrap();
            assert_eq!(repo.get_user(ada.id).await.unwrap(), renamed);
            let stats = cache.stats();
            assert_ne!(stats.breaker_state, BreakerState::Closed);
            assert!(stats.breaker_opens >= 1);
            assert!(stats.bypassed > 0, "{stats:?}");
            assert_eq!(stats.hits, 0);
            assert!(stats.invalidations_pending > 0, "the owed invalidations wait for Redis");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_outlive_their_callers() {
    let Some(cache) = cache_or_skip(config("detached")).await else { return };
    let load = || async { Ok::<_, std::convert::Infallible>(Some(7_i64)) };
    let gone = async |key: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.peek::<i64>(key).await.unwrap() != Cached::Absent {
            assert!(Instant::now() < deadline, "{key} was never invalidated");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // A dropped `invalidate` future: the spawned DEL still runs.
    cache.get_or_load("a", load).await.unwrap();
    assert_eq!(cache.peek::<i64>("a").await.unwrap(), Cached::Value(7));
    let _ = tokio::time::timeout(Duration::ZERO, cache.invalidate(["a".to_owned()])).await;
    gone("a").await;
    // An `Owed` dropped without settling (a writer dropped mid-commit): sent anyway.
    cache.get_or_load("b", load).await.unwrap();
    drop(cache.owe(["b".to_owned()]));
    gone("b").await;
}

/// Two caches on one prefix stand for two processes: while the first holds a key's lease (its
/// fill paused), the second waits for its value instead of reading the database; a lease holder
/// that never fills costs the second one `lease_wait`, then it reads for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_waits_for_the_lease_holder() {
    let pause =
        Arc::new(Pause { armed: AtomicBool::new(true), reached: Notify::new(), release: Notify::new() });
    let first_config = pausing("lease", &pause);
    let prefix = first_config.prefix.clone();
    let Some(first) = cache_or_skip(first_config).await else { return };
    let second = Cache::connect(&redis_url(), config("unused").prefix(prefix, 1)).await.unwrap();
    let reached = pause.reached.notified();
    let filler = tokio::spawn({
        let first = first.clone();
        async move { first.get_or_load("k", || async { Ok::<_, std::convert::Infallible>(Some(1_i64)) }).await }
    });
    reached.await;
    let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let waiter = tokio::spawn({
        let (second, loads) = (second.clone(), Arc::clone(&loads));
        async move {
            second
                .get_or_load("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(Some(2_i64))
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    pause.release.notify_one();
    assert_eq!(filler.await.unwrap().unwrap(), Some(1));
    assert_eq!(waiter.await.unwrap().unwrap(), Some(1), "the waiter got the lease holder's value");
    assert_eq!(loads.load(Ordering::SeqCst), 0, "the waiter did not read the database");
    assert_eq!(second.stats().lease_waits, 1);

    // A lease whose holder never fills: the waiter reads for itself after `lease_wait`.
    pause.armed.store(true, Ordering::SeqCst);
    let stuck = tokio::spawn({
        let first = first.clone();
        async move {
            first.get_or_load("stuck", || async { Ok::<_, std::convert::Infallible>(Some(1_i64)) }).await
        }
    });
    pause.reached.notified().await;
    let got = second.get_or_load("stuck", || async { Ok::<_, std::convert::Infallible>(Some(3_i64)) }).await;
    assert_eq!(got.unwrap(), Some(3));
    assert_eq!(second.stats().lease_wait_timeouts, 1);
    pause.release.notify_one();
    stuck.await.unwrap().unwrap();
}

/// Restarts the machine's Redis when dropped (the command in the project brief), so a failing
/// test does not leave it down.
struct RedisBack;

impl Drop for RedisBack {
    fn drop(&mut self) {
        start_redis();
    }
}

fn start_redis() {
    let status = std::process::Command::new("redis-server")
        .args(["--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", ""])
        .args(["--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("could not restart redis-server: {status:?}");
    }
}

/// Stops the real Redis for a while under load: no caller sees an error, the breaker opens,
/// and the cache serves again by itself once Redis is back, with nothing stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_redis_stopped_and_restarted_mid_load() {
    if redis_url() != keel_test::servers::REDIS_URL {
        eprintln!("SKIPPED: KEEL_TEST_REDIS_URL points elsewhere; this test restarts the local Redis only");
        return;
    }
    let Some(cache) = cache_or_skip(config("restart").timeout(Duration::from_millis(20))).await else {
        return;
    };
    for_each_backend(&MIGRATIONS, |pool| {
        let cache = cache.clone();
        async move {
            let repo = Repo::new(pool.clone()).with_cache(cache.clone());
            let mut users = Vec::new();
            for i in 0..10 {
                users.push(
                    repo.create_user(&NewUser::new(format!("u{i}"), format!("u{i}@x.com"))).await.unwrap(),
                );
            }
            let ids: Arc<Vec<Id>> = Arc::new(users.iter().map(|u| u.id).collect());
            let stop = Arc::new(AtomicBool::new(false));
            let load: Vec<_> = (0..4)
                .map(|t| {
                    let (repo, ids, stop) = (repo.clone(), Arc::clone(&ids), Arc::clone(&stop));
                    tokio::spawn(async move {
                        let (mut ops, mut errors) = (0u64, 0u64);
                        while !stop.load(Ordering::Relaxed) {
                            let id = ids[rand::random_range(0..ids.len())];
                            let ok = if t == 0 && ops % 10 == 0 {
                                repo.update_user(id, &UserPatch::new().name(format!("n{ops}"))).await.is_ok()
                            } else {
                                repo.get_user(id).await.is_ok()
                            };
                            ops += 1;
                            errors += u64::from(!ok);
                        }
                        (ops, errors)
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let back = RedisBack;
            let down =
                std::process::Command::new("redis-cli").args(["-p", "6379", "shutdown", "nosave"]).status();
            assert!(down.is_ok(), "redis-cli runs: {down:?}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let during = cache.stats();
            assert!(during.breaker_opens >= 1, "the breaker opened while Redis was down: {during:?}");
            drop(back); // Redis starts again.
            let restarted = Instant::now();
            let hits_before = cache.stats().hits;
            let deadline = restarted + Duration::from_secs(10);
            while cache.stats().hits == hits_before || cache.stats().invalidations_pending > 0 {
                assert!(Instant::now() < deadline, "the cache never served again: {:?}", cache.stats());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            eprintln!("cache serving again {} ms after Redis restarted", restarted.elapsed().as_millis());
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.store(true, Ordering::Relaxed);
            let (mut ops, mut errors) = (0, 0);
            for l in load {
                let (o, e) = l.await.unwrap();
                ops += o;
                errors += e;
            }
            assert_eq!(errors, 0, "callers saw errors ({ops} operations)");
            let plain = Repo::new(pool.clone());
            for &id in ids.iter() {
                assert_eq!(
                    repo.get_user(id).await.unwrap(),
                    plain.get_user(id).await.unwrap(),
                    "stale after restart"
                );
            }
        }
    })
    .await;
}
