//! The foundation on every backend: migrations, the portable schema types, joins and
//! constraint errors, connection errors.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Config, ErrorKind, Pool, with_conn};
use keel_schema::MIGRATIONS;
use keel_schema::schema::{jobs, users};
use keel_schema::{Id, Job, NewJob, NewUser, Timestamp, User};
use keel_test::{TestDb, for_each_backend, run_on, test_db};

async fn insert_user(pool: &Pool, user: &NewUser) -> Result<(), keel_pool::Error> {
    let mut conn = pool.get().await?;
    with_conn!(&mut conn, |c| diesel::insert_into(users::table).values(user).execute(c).await).map(|_| ())
}

async fn insert_job(pool: &Pool, job: &NewJob) -> Result<(), keel_pool::Error> {
    let mut conn = pool.get().await?;
    with_conn!(&mut conn, |c| diesel::insert_into(jobs::table).values(job).execute(c).await).map(|_| ())
}

async fn table_names(pool: &Pool) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let sql = match pool.backend() {
        Backend::Postgres => "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        Backend::Mysql => {
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
    };
    let mut conn = pool.get().await.unwrap();
    let rows: Vec<Name> = with_conn!(&mut conn, |c| diesel::sql_query(sql).load(c).await).unwrap();
    rows.into_iter().map(|r| r.name).filter(|n| n != "__diesel_schema_migrations").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_go_up_down_and_up_again() {
    for backend in Backend::ALL {
        let db = match TestDb::create_empty(backend, &keel_test::current_test()).await {
            Ok(db) => db,
            Err(e) => {
                // Same skip/require rules as every other test.
                assert!(test_db(backend, &MIGRATIONS).await.is_none(), "{e}");
                continue;
            }
        };
        run_on(db, |pool| async move {
            let all = vec!["accounts", "jobs", "transfers", "users"];
            let status = pool.migration_status(&keel_schema::MIGRATIONS).await.unwrap();
            assert!(status.applied.is_empty(), "{status:?}");
            assert_eq!(status.pending.len(), 3, "{status:?}");

            let ran = pool.migrate(&keel_schema::MIGRATIONS).await.unwrap();
            assert_eq!(ran.len(), 3);
            assert_eq!(table_names(&pool).await, all);
            assert!(
                pool.migrate(&keel_schema::MIGRATIONS).await.unwrap().is_empty(),
                "a second migrate applies nothing"
            );

            let reverted = pool.revert_all_migrations(&keel_schema::MIGRATIONS).await.unwrap();
            assert_eq!(reverted.len(), 3);
            assert!(table_names(&pool).await.is_empty(), "down.sql must drop everything up.sql made");
            assert_eq!(pool.migration_status(&keel_schema::MIGRATIONS).await.unwrap().pending.len(), 3);

            assert_eq!(pool.migrate(&keel_schema::MIGRATIONS).await.unwrap().len(), 3);
            assert_eq!(table_names(&pool).await, all);
            let status = pool.migration_status(&keel_schema::MIGRATIONS).await.unwrap();
            assert_eq!((status.applied.len(), status.pending.len()), (3, 0));
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_jobs_read_back_through_an_inner_join() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let alice = NewUser::new("Alice", "alice@example.com");
        let bob = NewUser::new("Bob", "bob@example.com");
        let carol = NewUser::new("Carol (no jobs)", "carol@example.com");
        for u in [&alice, &bob, &carol] {
            insert_user(&pool, u).await.unwrap();
        }
        let jobs_in = [
            NewJob::new(alice.id, "Engineer", 12_000_000),
            NewJob::new(alice.id, "Mentor", 1_000_000),
            NewJob::new(bob.id, "Designer", 9_500_050),
        ];
        for j in &jobs_in {
            insert_job(&pool, j).await.unwrap();
        }

        let mut conn = pool.get().await.unwrap();
        let rows: Vec<(User, Job)> = with_conn!(&mut conn, |c| {
            users::table
                .inner_join(jobs::table)
                .select((User::as_select(), Job::as_select()))
                .order((users::name, jobs::title))
                .load(c)
                .await
        })
        .unwrap();
        let got: Vec<(&str, &str, i64)> =
            rows.iter().map(|(u, j)| (u.name.as_str(), j.title.as_str(), j.salary_cents)).collect();
        assert_eq!(
            got,
            vec![
                ("Alice", "Engineer", 12_000_000),
                ("Alice", "Mentor", 1_000_000),
                ("Bob", "Designer", 9_500_050)
            ]
        );
        for (u, j) in &rows {
            assert_eq!(j.user_id, u.id);
        }
        let (alice_row, _) = &rows[0];
        assert_eq!(alice_row.id, alice.id);
        assert_eq!(alice_row.email, alice.email);
        assert_eq!(alice_row.created_at, alice.created_at);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_violations_are_distinguishable() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let first = NewUser::new("First", "same@example.com");
        insert_user(&pool, &first).await.unwrap();

        let dup = NewUser::new("Second", "same@example.com");
        let err = insert_user(&pool, &dup).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UniqueViolation, "{backend}: {err}");
        assert!(!err.is_transient());
        let constraint = err.constraint().unwrap_or_default();
        assert!(constraint.contains("email"), "{backend}: constraint {constraint:?} in {err}");

        let orphan = NewJob::new(Id::new(), "Ghost", 1);
        let err = insert_job(&pool, &orphan).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ForeignKeyViolation, "{backend}: {err}");

        let negative = NewJob::new(first.id, "Negative salary", -1);
        let err = insert_job(&pool, &negative).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CheckViolation, "{backend}: {err}");

        // Nothing of the failed inserts was written.
        assert_eq!(keel_test::count_rows(&pool, "users").await.unwrap(), 1);
        assert_eq!(keel_test::count_rows(&pool, "jobs").await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_microsecond_timestamps_round_trip() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        // Edge values: all-zero and all-ones bytes, a v4 and a v7 id; a time with 6 significant
        // fractional digits.
        let ids = [
            Id(uuid::Uuid::nil()),
            Id(uuid::Uuid::max()),
            Id(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)),
            Id::new(),
        ];
        let at = Timestamp::from(
            chrono::DateTime::parse_from_rfc3339("2024-02-29T23:59:58.123456Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
        );
        for (i, id) in ids.iter().enumerate() {
            let user = NewUser {
                id: *id,
                name: format!("u{i}"),
                email: format!("u{i}@example.com"),
                created_at: at,
            };
            insert_user(&pool, &user).await.unwrap();
            let mut conn = pool.get().await.unwrap();
            let back: User =
                with_conn!(&mut conn, |c| users::table.find(*id).select(User::as_select()).first(c).await)
                    .unwrap();
            assert_eq!(back.id, *id, "{backend}");
            assert_eq!(back.created_at, at, "{backend}: microseconds lost");
            assert_eq!(back.created_at.timestamp_subsec_micros(), 123_456);
        }
        // Range comparisons on the timestamp column order by time on every backend (SQLite
        // compares the fixed-width text).
        let later = Timestamp::from(*at + chrono::Duration::microseconds(1));
        let mut conn = pool.get().await.unwrap();
        let n: i64 = with_conn!(&mut conn, |c| users::table
            .filter(users::created_at.lt(later))
            .count()
            .get_result(c)
            .await)
        .unwrap();
        assert_eq!(n, ids.len() as i64, "{backend}");
        let n: i64 = with_conn!(&mut conn, |c| users::table
            .filter(users::created_at.gt(at))
            .count()
            .get_result(c)
            .await)
        .unwrap();
        assert_eq!(n, 0, "{backend}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_clear_configuration_errors() {
    for url in ["oracle://scott:tiger@db:1521/orcl", "not a url", "postgres://", "sqlite://"] {
        let err = Config::new(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        let text = err.to_string();
        assert!(!text.contains("tiger"), "{text}");
    }
    let err = Config::new("oracle://scott:tiger@db:1521/orcl").unwrap_err().to_string();
    assert!(err.contains("postgres://") && err.contains("mysql://") && err.contains("sqlite://"), "{err}");
}

/// A port nothing listens on: bind one, note it, close it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_fail_fast_with_host_port_and_no_password() {
    for scheme in ["postgres", "mysql"] {
        let port = closed_port();
        let url = format!("{scheme}://app:hunter2secret@127.0.0.1:{port}/app");
        let started = Instant::now();
        let err = Pool::connect(Config::new(&url).unwrap().connect_timeout(Duration::from_secs(5)))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Connect, "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2secret") && !format!("{err:?}").contains("hunter2secret"), "{text}");
        assert!(text.contains("is the server running"), "says what to check: {text}");
        assert!(!text.to_lowercase().contains("timed out in bb8"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "fails within the connect timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_within_the_connect_timeout() {
    // Accepts TCP connections but never speaks: the driver waits for a greeting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    for scheme in ["postgres", "mysql"] {
        let url = format!("{scheme}://app:pw_s3cret@127.0.0.1:{port}/app");
        let config = Config::new(&url).unwrap().connect_timeout(Duration::from_millis(300));
        let err = Pool::connect(config).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Connect, "{text}");
        assert!(text.contains("timed out after 300ms"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")) && !text.contains("pw_s3cret"), "{text}");
    }
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_is_one_shared_connection() {
    let pool = Pool::connect(Config::new("sqlite::memory:").unwrap().max_size(8)).await.unwrap();
    assert_eq!(pool.state().max_size, 1);
    pool.migrate(&keel_schema::MIGRATIONS).await.unwrap();
    insert_user(&pool, &NewUser::new("Mem", "mem@example.com")).await.unwrap();
    assert_eq!(keel_test::count_rows(&pool, "users").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_listing_finds_kept_databases_but_not_the_template() {
    for backend in [Backend::Postgres, Backend::Mysql] {
        let Some(db) = test_db(backend, &MIGRATIONS).await else { continue };
        let name = db.name().to_owned();
        let listed = keel_test::leftover_databases(backend).await.unwrap();
        assert!(listed.contains(&name), "{backend}: {name} not in {listed:?}");
        assert!(!listed.iter().any(|n| *n == keel_test::template_name(&MIGRATIONS)), "{backend}: {listed:?}");
        db.drop_database().await;
        let listed = keel_test::leftover_databases(backend).await.unwrap();
        assert!(!listed.contains(&name), "{backend}: dropped database still listed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_without_this_backends_folder_is_a_clear_migration_error() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let none = keel_pool::Migrations::embedded("db/migrations", None, None, None);
        let err = pool.migrate(&none).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Migration, "{err}");
        let folder = format!("db/migrations/{}", pool.backend().as_str());
        assert!(err.to_string().contains(&folder), "{err}");
        // The demo set's tables are untouched.
        assert!(pool.migration_status(&MIGRATIONS).await.unwrap().pending.is_empty());
    })
    .await;
}

/// A fresh, empty database on `backend`, or `None` when its server is skipped.
async fn empty_db(backend: Backend) -> Option<TestDb> {
    match TestDb::create_empty(backend, &keel_test::current_test()).await {
        Ok(db) => Some(db),
        Err(e) => {
            // Same skip/require rules as every other test.
            assert!(test_db(backend, &MIGRATIONS).await.is_none(), "{e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_migrators_at_once_apply_each_migration_exactly_once() {
    for backend in Backend::ALL {
        let Some(db) = empty_db(backend).await else { continue };
        run_on(db, |pool| async move {
            let url = pool.config().url().expose_secret().to_owned();
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (url, barrier) = (url.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    // Each migrator has connections of its own, as separate instances would.
                    let own = Pool::connect(Config::new(&url).unwrap().max_size(1)).await.unwrap();
                    barrier.wait().await;
                    own.migrate(&MIGRATIONS).await
                }));
            }
            let mut applied = Vec::new();
            for t in tasks {
                applied.extend(t.await.unwrap().unwrap_or_else(|e| panic!("a migrator failed: {e}")));
            }
            applied.sort();
            let mut distinct = applied.clone();
            distinct.dedup();
            assert_eq!(applied, distinct, "{backend}: a migration was applied twice: {applied:?}");
            assert_eq!(applied.len(), 3, "{backend}: {applied:?}");
            assert!(pool.migration_status(&MIGRATIONS).await.unwrap().pending.is_empty());
        })
        .await;
    }
}

/// A migrator that cannot get the lock within `migration_lock_timeout` fails with a migration
/// error naming who holds it, and applies nothing; once the holder lets go, migrating works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_migration_lock_times_out_naming_the_holder() {
    for backend in [Backend::Postgres, Backend::Mysql] {
        let Some(db) = empty_db(backend).await else { continue };
        run_on(db, |pool| async move {
            let (take, give, holder) = match backend {
                Backend::Postgres => (
                    "SELECT pg_advisory_lock(740213556)",
                    "SELECT pg_advisory_unlock(740213556)",
                    "held by pid",
                ),
                _ => (
                    "DO GET_LOCK(LEFT(CONCAT('keel_migrate:', DATABASE()), 64), 0)",
                    "DO RELEASE_LOCK(LEFT(CONCAT('keel_migrate:', DATABASE()), 64))",
                    "held by connection",
                ),
            };
            let mut held = pool.get().await.unwrap();
            with_conn!(&mut held, |c| diesel_async::SimpleAsyncConnection::batch_execute(c, take).await)
                .unwrap();
            let url = pool.config().url().expose_secret().to_owned();
            let impatient =
                Pool::connect(Config::new(&url).unwrap().migration_lock_timeout(Duration::from_secs(1)))
                    .await
                    .unwrap();
            let started = Instant::now();
            let err = impatient.migrate(&MIGRATIONS).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Migration, "{backend}: {err}");
            let text = err.to_string();
            assert!(text.contains("migration lock") && text.contains(holder), "{backend}: {text}");
            assert!(started.elapsed() < Duration::from_secs(30), "{backend}: waited {:?}", started.elapsed());
            assert_eq!(impatient.migration_status(&MIGRATIONS).await.unwrap().applied.len(), 0);

            with_conn!(&mut held, |c| diesel_async::SimpleAsyncConnection::batch_execute(c, give).await)
                .unwrap();
            assert_eq!(impatient.migrate(&MIGRATIONS).await.unwrap().len(), 3, "{backend}");
        })
        .await;
    }
}
