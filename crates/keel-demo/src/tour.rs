//! `keel-demo tour`: a walk through what keel does, each step under a heading with a line of
//! explanation and a small table of real results. Runs on every backend, and again on the
//! same database (every run uses fresh emails and keys).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};
use futures_util::TryStreamExt as _;
use keel_pool::{Backend, Isolation, Pool, ScopedFutureExt as _, TxOptions, with_conn};
use keel_repo::{Params, Repo, UserFilter, UserPatch};
use keel_schema::schema::{accounts, users};
use keel_schema::{Id, NewJob, NewUser, User};

use crate::table::{self, money, per_second, thousands};

fn heading(title: &str, why: &str) {
    println!("\n== {title}\n   {why}");
}

fn user_row(u: &User) -> Vec<String> {
    vec![u.id.to_string()[..13].to_owned() + "…", u.name.clone(), u.email.clone()]
}

/// Runs the tour on `pool` (already migrated by the caller's first step).
pub async fn run(pool: Pool) -> Result<()> {
    let repo = Repo::new(pool.clone());
    // Fresh emails and keys on every run, so a second run on the same database works.
    let run = &Id::new().to_string()[24..];

    heading("Connect", "The backend is chosen at run time from the URL; the password is never shown.");
    let health = pool.health().await.context("checking the database")?;
    let stats = pool.stats();
    table::print(
        &["backend", "server version", "round trip", "pool size", "idle", "max"],
        &[vec![
            pool.backend().to_string(),
            health.server_version.clone(),
            format!("{} µs", health.latency.as_micros()),
            stats.size.to_string(),
            stats.idle.to_string(),
            stats.max_size.to_string(),
        ]],
    );
    println!("   url: {}", pool.config().url());

    heading("Migrate", "Embedded migrations for this backend; a second run applies nothing.");
    let applied = pool.migrate(&keel_schema::MIGRATIONS).await.context("running migrations")?;
    if applied.is_empty() {
        println!("   up to date");
    }
    for v in &applied {
        println!("   applied  {v}");
    }

    crud(&repo, run).await?;
    search(&repo, run).await?;
    joins(&repo, run).await?;
    batch(&repo, run).await?;
    failed_transaction(&repo, run).await?;
    concurrency(&pool).await?;
    retried_conflict(&repo, run).await?;
    streaming(&repo).await?;
    raw_sql(&repo, run).await?;
    caching(&pool, run).await?;

    heading("Pool numbers", "What the pool saw during the tour (also on GET /metrics in `serve`).");
    let s = pool.stats();
    let retries = if s.retries.is_empty() {
        "none".to_owned()
    } else {
        s.retries.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    };
    table::print(
        &["connections opened", "checkouts", "queries", "query p50", "query p99", "transactions", "retries"],
        &[vec![
            s.connections_created.to_string(),
            thousands(s.acquires),
            thousands(s.queries),
            format!("{} µs", s.query_p50_us),
            format!("{} µs", s.query_p99_us),
            thousands(s.transactions),
            retries,
        ]],
    );
    println!();
    Ok(())
}

async fn crud(repo: &Repo, run: &str) -> Result<()> {
    heading(
        "Create, read, update, delete",
        "Ids are UUIDv7 made client-side; the stored row is read back in the same transaction.",
    );
    let ada = repo.create_user(&NewUser::new("Ada Lovelace", format!("ada.{run}@example.com"))).await?;
    let read = repo.get_user(ada.id).await?;
    let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta Ada King")).await?;
    repo.delete_user(ada.id).await?;
    let gone = repo.get_user(ada.id).await.err().map(|e| e.as_str()).unwrap_or("still there!");
    table::print(
        &["step", "id", "name", "email"],
        &[
            [vec!["create".into()], user_row(&ada)].concat(),
            [vec!["read".into()], user_row(&read)].concat(),
            [vec!["update name".into()], user_row(&renamed)].concat(),
            vec!["delete, then read".into(), gone.into(), String::new(), String::new()],
        ],
    );
    Ok(())
}

async fn search(repo: &Repo, run: &str) -> Result<()> {
    const EVIL: &str = "'; DROP TABLE users; --";
    heading("Search", "User text is bound, never spliced into SQL, and LIKE wildcards in it are escaped.");
    repo.create_user(&NewUser::new(EVIL, format!("bobby.{run}@example.com"))).await?;
    repo.create_user(&NewUser::new("100% Real Name", format!("pct.{run}@example.com"))).await?;
    let before = repo.table_counts().await?.users;
    let mut rows = Vec::new();
    for text in [EVIL, "%", "_", "real"] {
        let found = repo.search_users(text, 1_000).await?;
        let sample = <[User]>::first(&found).map(|u| u.name.clone()).unwrap_or_default();
        rows.push(vec![format!("{text:?}"), found.len().to_string(), sample]);
    }
    table::print(&["search text", "matches", "first match"], &rows);
    let after = repo.table_counts().await?.users;
    println!("   users table still there: {before} rows before, {after} after");
    Ok(())
}

async fn joins(repo: &Repo, run: &str) -> Result<()> {
    heading("Joins", "Users with their jobs: two queries (belonging_to + grouped_by), never one per user.");
    let people: Vec<NewUser> = ["Grace Hopper", "Alan Turing", "Edsger Dijkstra"]
        .iter()
        .enumerate()
        .map(|(i, n)| NewUser::new(*n, format!("join{i}.{run}@example.com")))
        .collect();
    repo.insert_users(&people).await?;
    let jobs = vec![
        NewJob::new(people[0].id, "Rear Admiral", 18_000_000),
        NewJob::new(people[0].id, "Compiler Writer", 12_000_000),
        NewJob::new(people[1].id, "Cryptanalyst", 15_000_000),
    ];
    repo.insert_jobs(&jobs).await?;
    let mut rows = Vec::new();
    for person in &people {
        let (user, jobs) = repo.user_with_jobs(person.id).await?;
        let titles = jobs.iter().map(|j| j.title.as_str()).collect::<Vec<_>>().join(", ");
        let inner = if jobs.is_empty() { "no (LEFT JOIN only)" } else { "yes" };
        rows.push(vec![user.name, jobs.len().to_string(), titles, inner.into()]);
    }
    table::print(&["user", "jobs", "titles", "in INNER JOIN"], &rows);
    let inner = repo.users_with_jobs(1_000).await?.len();
    let left = repo.users_with_jobs_left(1_000).await?.len();
    println!("   first 1,000 users: {inner} have jobs (INNER JOIN), {left} listed with LEFT JOIN");

    heading("Aggregates", "GROUP BY per user: job count, total and average salary; the top earners.");
    let top = repo.top_earners(3).await?;
    table::print(
        &["user", "jobs", "total salary", "average"],
        &top.iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.job_count.to_string(),
                    money(s.total_salary_cents),
                    money(s.avg_salary_cents),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

async fn batch(repo: &Repo, run: &str) -> Result<()> {
    let how = match repo.pool().backend() {
        Backend::Postgres => "binary COPY",
        Backend::Mysql => "multi-row INSERTs",
        Backend::Sqlite => "multi-row INSERTs in one IMMEDIATE transaction",
    };
    heading("Batch insert", &format!("10,000 users in one all-or-nothing call ({how})."));
    let rows: Vec<NewUser> = (0..10_000)
        .map(|i| NewUser::new(format!("Batch User {i}"), format!("batch{i}.{run}@example.com")))
        .collect();
    let started = Instant::now();
    let n = repo.insert_users(&rows).await?;
    let elapsed = started.elapsed();
    let mut dup = rows[..100].to_vec();
    dup.iter_mut().for_each(|u| u.id = Id::new());
    let refused = match repo.insert_users(&dup[..]).await {
        Err(keel_repo::Error::BatchRow { index, source }) => {
            format!("row {index}: {}", source.kind().as_str())
        }
        other => bail!("re-inserting the same emails should fail, got {other:?}"),
    };
    table::print(
        &["rows", "time", "rows/s", "same 100 emails again"],
        &[vec![
            thousands(n as u64),
            format!("{} ms", elapsed.as_millis()),
            per_second(n as u64, elapsed),
            refused,
        ]],
    );
    Ok(())
}

async fn failed_transaction(repo: &Repo, run: &str) -> Result<()> {
    heading(
        "A transaction that fails half-way",
        "The first insert succeeds, the second breaks a rule: both are gone.",
    );
    let first = NewUser::new("Half Way", format!("halfway.{run}@example.com"));
    let second = NewUser::new("Half Way Twin", first.email.clone());
    let outcome: Result<(), keel_repo::Error> = repo
        .pool()
        .transaction(|conn| {
            let (first, second) = (&first, &second);
            async move {
                with_conn!(conn, |c| diesel::insert_into(users::table).values(first).execute(c).await)?;
                with_conn!(conn, |c| diesel::insert_into(users::table).values(second).execute(c).await)?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    let err = outcome.err().map(|e| e.as_str()).unwrap_or("no error?");
    let after = repo.get_user(first.id).await.err().map(|e| e.as_str()).unwrap_or("still there!");
    table::print(&["transaction result", "first row afterwards"], &[vec![err.into(), after.into()]]);
    Ok(())
}

async fn concurrency(pool: &Pool) -> Result<()> {
    heading(
        "Concurrent queries",
        "Four tasks at once, each on its own pooled connection (server session id, or keel's number on SQLite).",
    );
    let sleep_sql = match pool.backend() {
        Backend::Postgres => "SELECT pg_sleep(0.1)",
        Backend::Mysql => "DO SLEEP(0.1)",
        Backend::Sqlite => "SELECT 1",
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await?;
                let t0 = Instant::now();
                with_conn!(&mut conn, |c| c.batch_execute(sleep_sql).await)?;
                if pool.backend() == Backend::Sqlite {
                    tokio::time::sleep(Duration::from_millis(100)).await; // hold it, as a slow query would
                }
                let who = match conn.server_id() {
                    Some(id) => format!("server session {id}"),
                    None => format!("keel connection #{}", conn.local_id()),
                };
                Ok::<_, keel_pool::Error>(vec![
                    task.to_string(),
                    who,
                    format!("{} ms", t0.elapsed().as_millis()),
                ])
            })
        })
        .collect();
    let mut rows = Vec::new();
    for t in tasks {
        rows.push(t.await.context("task panicked")??);
    }
    table::print(&["task", "connection", "query time"], &rows);
    println!(
        "   all four in {} ms wall time (one after another would take ~400 ms)",
        started.elapsed().as_millis()
    );
    Ok(())
}

async fn retried_conflict(repo: &Repo, run: &str) -> Result<()> {
    let pool = repo.pool();
    let owner = repo.create_user(&NewUser::new("Retry Owner", format!("retry.{run}@example.com"))).await?;
    let account = repo.create_account(owner.id, 10_000).await?.id;
    let (what, attempts, retries) = match pool.backend() {
        Backend::Sqlite => {
            let (attempts, retries) = busy_writer(pool, account).await?;
            ("a busy writer holds the database for 300 ms", attempts, retries)
        }
        backend => {
            let why = if backend == Backend::Postgres {
                "two SERIALIZABLE transactions read, then update the same row"
            } else {
                "two transactions share-lock, then update the same row (a deadlock)"
            };
            let before = pool.stats().retries;
            let attempts = conflicting_pair(pool, account).await?;
            let after = pool.stats().retries;
            let delta = after.into_iter().map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0)));
            (why, attempts, delta.filter(|(_, v)| *v > 0).collect())
        }
    };
    heading("A transaction retried after a real conflict", &format!("{what}; keel retries the loser."));
    let balance = repo.get_account(account).await?.balance_cents;
    let kinds: Vec<String> = retries.iter().map(|(k, v)| format!("{k}={v}")).collect();
    table::print(
        &["transactions", "attempts", "retries by kind", "balance: 100.00 + 0.01 + 0.01 ="],
        &[vec!["2".into(), attempts.to_string(), kinds.join(", "), money(balance)]],
    );
    Ok(())
}

/// Two transactions that conflict for real; returns the attempts both made together.
async fn conflicting_pair(pool: &Pool, account: Id) -> Result<u32> {
    let attempts = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let read_sql = match pool.backend() {
        Backend::Mysql => "SELECT balance_cents FROM accounts WHERE id = ? LOCK IN SHARE MODE",
        _ => "SELECT balance_cents FROM accounts WHERE id = $1",
    };
    let options = TxOptions::new().isolation(Isolation::Serializable);
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (pool, attempts, barrier, options) =
                (pool.clone(), attempts.clone(), barrier.clone(), options.clone());
            tokio::spawn(async move {
                pool.transaction_with(options, |conn| {
                    let (attempts, barrier) = (attempts.clone(), barrier.clone());
                    async move {
                        let first = attempts.fetch_add(1, SeqCst) < 2;
                        #[derive(QueryableByName)]
                        struct Balance {
                            #[diesel(sql_type = diesel::sql_types::BigInt)]
                            #[allow(dead_code)]
                            balance_cents: i64,
                        }
                        let _: Balance = with_conn!(conn, |c| diesel::sql_query(read_sql)
                            .bind::<keel_schema::sql_types::Uuid, _>(account)
                            .get_result(c)
                            .await)?;
                        if first {
                            // Both have read before either writes: a real conflict.
                            barrier.wait().await;
                        }
                        with_conn!(conn, |c| diesel::update(accounts::table.find(account))
                            .set(accounts::balance_cents.eq(accounts::balance_cents + 1))
                            .execute(c)
                            .await)?;
                        Ok::<_, keel_pool::Error>(())
                    }
                    .scope_boxed()
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.context("task panicked")?.context("a conflicting transaction failed after its retries")?;
    }
    Ok(AtomicU32::load(&attempts, SeqCst))
}

/// SQLite: another connection holds the write lock for 300 ms; a writer with a 50 ms busy
/// timeout gets `database is locked`, and keel retries until the lock is gone. Returns the
/// attempts of both transactions and the writer's retries by kind.
async fn busy_writer(pool: &Pool, account: Id) -> Result<(u32, std::collections::BTreeMap<String, u64>)> {
    let impatient =
        Pool::connect(pool.config().clone().sqlite_busy_timeout(Duration::from_millis(50)).max_size(1))
            .await
            .context("opening a second SQLite pool")?;
    let mut holder = pool.get().await?;
    with_conn!(&mut holder, |c| c.batch_execute("BEGIN IMMEDIATE").await)?;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        with_conn!(&mut holder, |c| c
            .batch_execute("UPDATE accounts SET balance_cents = balance_cents + 1; COMMIT")
            .await)
    });
    impatient
        .transaction(|conn| {
            async move {
                with_conn!(conn, |c| diesel::update(accounts::table.find(account))
                    .set(accounts::balance_cents.eq(accounts::balance_cents + 1))
                    .execute(c)
                    .await)
            }
            .scope_boxed()
        })
        .await
        .context("the writer failed after its retries")?;
    release.await.context("the lock holder panicked")??;
    let retries = impatient.stats().retries;
    impatient.close(Duration::from_secs(1)).await;
    // BEGIN IMMEDIATE is where the writer waits, so every retry is a whole attempt.
    Ok((1 + 1 + retries.values().sum::<u64>() as u32, retries))
}

async fn streaming(repo: &Repo) -> Result<()> {
    heading(
        "Streaming",
        "Every user, read in keyset pages of 1,000 as the consumer asks: flat memory at any size.",
    );
    let started = Instant::now();
    let mut stream = std::pin::pin!(repo.stream_users(UserFilter::new()));
    let mut first = Vec::new();
    let mut n = 0u64;
    while let Some(user) = stream.try_next().await? {
        if first.len() < 3 {
            first.push(user_row(&user));
        }
        n += 1;
    }
    let elapsed = started.elapsed();
    table::print(&["id", "name", "email"], &first);
    println!(
        "   streamed {} users in {} ms ({} rows/s)",
        thousands(n),
        elapsed.as_millis(),
        per_second(n, elapsed)
    );
    Ok(())
}

async fn raw_sql(repo: &Repo, run: &str) -> Result<()> {
    heading(
        "Raw SQL with named parameters",
        "`:name` placeholders become $1 or ? per backend; values are always bound.",
    );
    let sql = "SELECT u.name, COUNT(j.id) AS jobs, MAX(j.title) AS a_title, ':literal' AS untouched \
               FROM users u LEFT JOIN jobs j ON j.user_id = u.id \
               WHERE u.email LIKE :pattern GROUP BY u.id, u.name ORDER BY u.name";
    println!("   {sql}");
    let params = Params::new().set("pattern", format!("join%.{run}@example.com"));
    let rows = repo.query(sql, &params).await?;
    let headers: Vec<String> = <[keel_repo::Row]>::first(&rows)
        .map(|r| r.columns().map(str::to_owned).collect())
        .unwrap_or_default();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|(_, v)| serde_json::to_string(v).unwrap_or_default()).collect())
        .collect();
    table::print(&headers.iter().map(String::as_str).collect::<Vec<_>>(), &cells);
    if let Some(first) = <[keel_repo::Row]>::first(&rows) {
        println!("   as JSON: {}", serde_json::to_string(first).context("encoding a row")?);
    }
    Ok(())
}

/// The Redis read-through cache: a miss, a hit, an invalidation on update, and the after-commit
/// rule (a fill that read before a commit is refused). Skipped, with the reason, when Redis is
/// unreachable (`REDIS_URL`, default redis://127.0.0.1:6379).
async fn caching(pool: &Pool, run: &str) -> Result<()> {
    use keel_cache::{Cache, CacheConfig, Cached};
    heading(
        "Read-through cache (Redis)",
        "Point reads come from Redis; writes invalidate after their commit, and a fill that read the \
         database before a commit can never land after it.",
    );
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| crate::load::DEFAULT_REDIS_URL.to_owned());
    // The tour's own keys; a pause between one read and its fill shows the after-commit rule.
    let pause = Arc::new((std::sync::atomic::AtomicBool::new(false), tokio::sync::Notify::new()));
    let config = {
        let pause = Arc::clone(&pause);
        CacheConfig::new()
            .prefix(format!("keel-tour:{run}"), 1)
            .timeout(Duration::from_millis(50))
            .fill_barrier(Arc::new(move |_key: &str| {
                let pause = Arc::clone(&pause);
                Box::pin(async move {
                    if pause.0.swap(false, SeqCst) {
                        pause.1.notified().await;
                    }
                })
            }))
    };
    let cache = match Cache::connect(&url, config).await {
        Ok(cache) => cache,
        Err(e) => {
            println!("   skipped: {e}");
            return Ok(());
        }
    };
    if let Err(e) = cache.ping().await {
        println!("   skipped: Redis is unreachable ({e}); without it every read simply goes to the database");
        return Ok(());
    }
    let repo = Repo::new(pool.clone()).with_cache(cache.clone());
    let ada = repo.create_user(&NewUser::new("Ada Lovelace", format!("ada.cache.{run}@example.com"))).await?;
    let key = keel_repo::cache::keys::user(ada.id);
    let entry = async || match cache.peek::<User>(&key).await {
        Ok(Cached::Value(u)) => format!("value: {}", u.name),
        Ok(Cached::Absent) => "absent".to_owned(),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("unreadable: {e}"),
    };
    let mut rows = Vec::new();
    let mut step = async |what: &str, name: String| {
        let s = cache.stats();
        rows.push(vec![what.to_owned(), name, thousands(s.hits), thousands(s.misses), entry().await]);
    };
    let read = repo.get_user(ada.id).await?;
    step("get_user (cold: miss, fill)", read.name).await;
    let read = repo.get_user(ada.id).await?;
    step("get_user (hit)", read.name).await;
    let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta Ada King")).await?;
    step("update_user: commit, then invalidate", renamed.name).await;
    let read = repo.get_user(ada.id).await?;
    step("get_user (miss, fill)", read.name).await;

    // A reader reads the row, then stalls before its fill; meanwhile a write commits.
    repo.update_user(ada.id, &UserPatch::new().name("A. A. King")).await?; // cold again
    pause.0.store(true, SeqCst);
    let reader = tokio::spawn({
        let repo = repo.clone();
        async move { repo.get_user(ada.id).await }
    });
    while std::sync::atomic::AtomicBool::load(&pause.0, SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let newer = repo.update_user(ada.id, &UserPatch::new().name("Countess of Lovelace")).await?;
    pause.1.notify_one();
    let stale = reader.await.context("the paused reader")??;
    step("slow reader: read before a write, fill refused", stale.name).await;
    let read = repo.get_user(ada.id).await?;
    if read != newer {
        bail!("the cache served {:?} after a write committed {:?}", read.name, newer.name);
    }
    step("get_user after that write (miss, fill)", read.name).await;
    table::print(&["step", "name returned", "hits", "misses", "Redis entry after"], &rows);
    println!(
        "   stale sets refused: {}; a Redis outage only costs the cache (timeout {} ms, then a circuit breaker)",
        cache.stats().stale_set_refusals,
        cache.config().timeout.as_millis()
    );
    Ok(())
}
