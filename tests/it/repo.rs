//! The repository on every backend: CRUD, search, ranges, joins, aggregates, pagination,
//! streaming, batch inserts and transfers, including the bad inputs.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use keel_pool::{Backend, ErrorKind};
use keel_repo::{BatchMethod, BatchOptions, Error, Repo, UserFilter, UserPatch};
use keel_schema::MIGRATIONS;
use keel_schema::{Id, NewJob, NewUser, Timestamp};
use keel_test::{count_rows, for_each_backend};

fn user(name: &str, email: &str) -> NewUser {
    NewUser::new(name, email)
}

/// `n` users whose creation times are one second apart from `base`.
fn users_from(base: Timestamp, n: usize, tag: &str) -> Vec<NewUser> {
    (0..n)
        .map(|i| {
            let mut u = NewUser::new(format!("{tag} {i}"), format!("{tag}{i}@example.com"));
            u.created_at = Timestamp(base.0 + chrono::Duration::seconds(i as i64));
            u
        })
        .collect()
}

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
    r.expect_err("expected an error").kind().expect("a classified error, not a domain refusal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_crud_and_bad_input() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let new = user("Ada Lovelace", "ada@example.com");
        let ada = repo.create_user(&new).await.unwrap();
        assert_eq!(
            (ada.id, &ada.name, &ada.email, ada.created_at),
            (new.id, &new.name, &new.email, new.created_at)
        );
        assert_eq!(repo.get_user(ada.id).await.unwrap(), ada);

        let grace = repo.create_user(&user("Grace Hopper", "grace@example.com")).await.unwrap();
        let missing = Id::new();
        let got = repo.get_users(&[grace.id, missing, ada.id]).await.unwrap();
        assert_eq!(got, vec![ada.clone(), grace.clone()]);
        assert_eq!(kind(repo.get_user(missing).await), ErrorKind::NotFound);

        // Partial update: the email stays.
        let renamed = repo.update_user(ada.id, &UserPatch::new().name("Augusta Ada King")).await.unwrap();
        assert_eq!((renamed.name.as_str(), renamed.email.as_str()), ("Augusta Ada King", "ada@example.com"));
        assert_eq!(kind(repo.update_user(missing, &UserPatch::new().name("x")).await), ErrorKind::NotFound);
        assert_eq!(
            kind(repo.update_user(grace.id, &UserPatch::new().email("ada@example.com")).await),
            ErrorKind::UniqueViolation
        );
        assert_eq!(
            kind(repo.create_user(&user("Other Ada", "ada@example.com")).await),
            ErrorKind::UniqueViolation
        );

        // Bad input: refused the same way everywhere, nothing written.
        let before = count_rows(&pool, "users").await.unwrap();
        for bad in [
            user("nul\0byte", "nul@example.com"),
            user(&"x".repeat(101), "long@example.com"),
            user("Long Email", &format!("{}@example.com", "e".repeat(250))),
            user("", "empty@example.com"),
        ] {
            let err = repo.create_user(&bad).await.unwrap_err();
            assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
        }
        let err = repo.update_user(grace.id, &UserPatch::new().name("a\0b")).await.unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::InvalidInput));
        assert_eq!(count_rows(&pool, "users").await.unwrap(), before);

        // Characters that mean something to SQL or to LIKE are stored as they are.
        for name in ["'; DROP TABLE users; --", "%_\\", "emoji 🦀🎉 名前", &"é".repeat(100)] {
            let u = repo.create_user(&user(name, &format!("{}@example.com", Id::new()))).await.unwrap();
            assert_eq!(repo.get_user(u.id).await.unwrap().name, name);
        }

        // Deleting a user deletes their jobs; deleting twice is not found.
        let job = repo.create_job(&NewJob::new(grace.id, "Rear Admiral", 1_000_000)).await.unwrap();
        assert_eq!(repo.get_job(job.id).await.unwrap(), job);
        assert_eq!(
            kind(repo.create_job(&NewJob::new(missing, "Ghost", 1)).await),
            ErrorKind::ForeignKeyViolation
        );
        assert_eq!(
            kind(repo.create_job(&NewJob::new(grace.id, "Negative", -1)).await),
            ErrorKind::InvalidInput
        );
        repo.delete_user(grace.id).await.unwrap();
        assert_eq!(kind(repo.get_job(job.id).await), ErrorKind::NotFound);
        assert_eq!(kind(repo.delete_user(grace.id).await), ErrorKind::NotFound);
        assert_eq!(kind(repo.delete_job(job.id).await), ErrorKind::NotFound);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_treats_input_as_literal_text() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let names =
            ["100% real", "a_b", "axb", "back\\slash", "O'Brien", "'; DROP TABLE users; --", "Plain Name"];
        for (i, name) in names.iter().enumerate() {
            repo.create_user(&user(name, &format!("s{i}@example.com"))).await.unwrap();
        }
        let search = |text: &'static str| {
            let repo = repo.clone();
            async move {
                let mut found: Vec<String> =
                    repo.search_users(text, 100).await.unwrap().into_iter().map(|u| u.name).collect();
                found.sort();
                found
            }
        };
        assert_eq!(search("%").await, ["100% real"]);
        assert_eq!(search("_").await, ["a_b"]);
        assert_eq!(search("\\").await, ["back\\slash"]);
        assert_eq!(search("'").await, ["'; DROP TABLE users; --", "O'Brien"]);
        assert_eq!(search("'; DROP TABLE users; --").await, ["'; DROP TABLE users; --"]);
        assert_eq!(search("PLAIN name").await, ["Plain Name"]);
        assert_eq!(search("!").await, Vec::<String>::new());
        assert_eq!(search("").await.len(), names.len());
        assert_eq!(count_rows(&pool, "users").await.unwrap(), names.len() as i64);
        assert_eq!(kind(repo.search_users("a\0", 10).await), ErrorKind::InvalidInput);
        assert_eq!(kind(repo.search_users("a", 0).await), ErrorKind::InvalidInput);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_joins_and_aggregates() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let base = keel_schema::now();
        let people = users_from(base, 5, "Person");
        assert_eq!(repo.insert_users(&people).await.unwrap(), 5);
        let (a, b, c) = (&people[0], &people[1], &people[2]);
        let jobs = vec![
            NewJob::new(a.id, "Engineer", 10_000_000),
            NewJob::new(a.id, "Author", 2_000_000),
            NewJob::new(b.id, "Pilot", 15_000_000),
            NewJob::new(c.id, "Intern", 1_000_000),
        ];
        assert_eq!(repo.insert_jobs(&jobs).await.unwrap(), 4);

        let between =
            repo.users_created_between(people[1].created_at, people[3].created_at, 100).await.unwrap();
        assert_eq!(
            between.iter().map(|u| u.id).collect::<Vec<_>>(),
            [people[1].id, people[2].id, people[3].id]
        );

        let paid = repo.jobs_by_salary(2_000_000, 10_000_000, 100).await.unwrap();
        assert_eq!(paid.iter().map(|j| j.title.as_str()).collect::<Vec<_>>(), ["Engineer", "Author"]);
        assert_eq!(kind(repo.jobs_by_salary(10, 1, 10).await), ErrorKind::InvalidInput);

        let inner = repo.users_with_jobs(100).await.unwrap();
        let shape: Vec<(Id, Vec<&str>)> =
            inner.iter().map(|(u, js)| (u.id, js.iter().map(|j| j.title.as_str()).collect())).collect();
        assert_eq!(
            shape,
            [(a.id, vec!["Engineer", "Author"]), (b.id, vec!["Pilot"]), (c.id, vec!["Intern"])]
        );
        let left = repo.users_with_jobs_left(100).await.unwrap();
        assert_eq!(left.len(), 5);
        assert!(left[3].1.is_empty() && left[4].1.is_empty());
        assert!(left.iter().all(|(u, js)| js.iter().all(|j| j.user_id == u.id)));

        let (who, theirs) = repo.user_with_jobs(a.id).await.unwrap();
        assert_eq!((who.id, theirs.len()), (a.id, 2));
        let (_, none) = repo.user_with_jobs(people[4].id).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(kind(repo.user_with_jobs(Id::new()).await), ErrorKind::NotFound);

        let stats = repo.job_stats(100).await.unwrap();
        let sa = stats.iter().find(|s| s.user_id == a.id).unwrap();
        assert_eq!((sa.job_count, sa.total_salary_cents, sa.avg_salary_cents), (2, 12_000_000, 6_000_000));
        assert_eq!(stats.len(), 3);
        let top = repo.top_earners(2).await.unwrap();
        assert_eq!(top.iter().map(|s| s.user_id).collect::<Vec<_>>(), [b.id, a.id]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_are_stable_under_concurrent_inserts() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let base = Timestamp(keel_schema::now().0 - chrono::Duration::hours(1));
        let originals = users_from(base, 25, "Page");
        repo.insert_users(&originals).await.unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = repo.page_users(&UserFilter::new(), cursor.as_deref(), 10).await.unwrap();
            pages += 1;
            seen.extend(page.items.iter().map(|u| u.id));
            // Someone inserts while we page.
            repo.create_user(&user("Late", &format!("late{pages}@example.com"))).await.unwrap();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let unique: HashSet<Id> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a row was repeated");
        assert!(originals.iter().all(|u| unique.contains(&u.id)), "a row was skipped");
        assert_eq!(&seen[..25], &originals.iter().map(|u| u.id).collect::<Vec<_>>()[..]);

        for bad in ["garbage", "djEuMTIz", "", "AAAA"] {
            assert_eq!(
                kind(repo.page_users(&UserFilter::new(), Some(bad), 10).await),
                ErrorKind::InvalidInput
            );
        }
        let filtered = repo.page_users(&UserFilter::new().name_contains("page 1"), None, 100).await.unwrap();
        assert_eq!(filtered.items.len(), 11); // Page 1, Page 10..19
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_read_every_row_in_order() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let rows = users_from(keel_schema::now(), 2_345, "Stream");
        repo.insert_users(&rows).await.unwrap();
        let streamed: Vec<Id> =
            repo.stream_users(UserFilter::new()).map_ok(|u| u.id).try_collect().await.unwrap();
        assert_eq!(streamed, rows.iter().map(|u| u.id).collect::<Vec<_>>());
        let some: Vec<_> =
            repo.stream_users(UserFilter::new().name_contains("stream 12")).try_collect().await.unwrap();
        assert_eq!(some.len(), 1 + 10 + 100); // 12, 120..129, 1200..1299
        let bad: Result<Vec<_>, _> =
            repo.stream_users(UserFilter::new().name_contains("\0")).try_collect().await;
        assert_eq!(kind(bad), ErrorKind::InvalidInput);
    })
    .await;
}

/// A stream returns the table as it was when the stream started, across pages: a row
/// committed meanwhile behind the cursor (an earlier `created_at`) or ahead of it is not
/// returned, a row deleted ahead of the cursor still is, and nothing is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_read_one_snapshot_across_pages() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let base = Timestamp(keel_schema::now().0 - chrono::Duration::hours(1));
        let originals = users_from(base, 2_500, "Snap"); // three pages of 1,000
        repo.insert_users(&originals).await.unwrap();

        let mut stream = std::pin::pin!(repo.stream_users(UserFilter::new()));
        let mut streamed = vec![stream.try_next().await.unwrap().expect("a first user").id];

        // On other connections, while the stream is open: one row behind the cursor, one
        // after every row, and one original deleted before its page was read.
        let mut early = user("Early", "early@example.com");
        early.created_at = Timestamp(originals[500].created_at.0 + chrono::Duration::milliseconds(500));
        let early = repo.create_user(&early).await.unwrap();
        let mut late = user("Late", "late@example.com");
        late.created_at = Timestamp(base.0 + chrono::Duration::seconds(10_000));
        let late = repo.create_user(&late).await.unwrap();
        repo.delete_user(originals[2_400].id).await.unwrap();

        while let Some(u) = stream.try_next().await.unwrap() {
            streamed.push(u.id);
        }
        assert_eq!(streamed.len(), originals.len(), "rows missed or added");
        assert_eq!(streamed, originals.iter().map(|u| u.id).collect::<Vec<_>>());

        // The changes were committed: a new stream sees them.
        let now: Vec<Id> = repo.stream_users(UserFilter::new()).map_ok(|u| u.id).try_collect().await.unwrap();
        assert_eq!(now.len(), originals.len() + 1);
        assert!(now.contains(&early.id) && now.contains(&late.id) && !now.contains(&originals[2_400].id));
    })
    .await;
}

/// A stream dropped mid-way gives its connection back to the pool, out of its transaction:
/// on a pool of one, the next call gets that same connection and can write, and no
/// connection was closed or opened for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_returns_its_connection_clean() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        Repo::new(pool.clone()).insert_users(&users_from(keel_schema::now(), 2_500, "Drop")).await.unwrap();
        let pool = keel_test::pool_with(&pool, |c| c.max_size(1)).await;
        let repo = Repo::new(pool.clone());
        assert_eq!(pool.state().idle, 1);

        let mut stream = Box::pin(repo.stream_users(UserFilter::new()));
        stream.try_next().await.unwrap().expect("a first user");
        assert_eq!(pool.state().idle, 0, "the stream holds the connection");
        let before = pool.stats();
        drop(stream);

        let until = std::time::Instant::now() + Duration::from_secs(5);
        while pool.state().idle != 1 {
            assert!(
                std::time::Instant::now() < until,
                "the connection did not come back: {:?}",
                pool.state()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A write on it works: the read-only transaction was ended.
        repo.create_user(&user("After", "after@example.com")).await.unwrap();
        let streamed = repo.stream_users(UserFilter::new()).try_collect::<Vec<_>>().await.unwrap();
        assert_eq!(streamed.len(), 2_501);
        let after = pool.stats();
        assert_eq!(after.connections_created, before.connections_created, "a connection was opened");
        assert_eq!(
            after.connections_closed_broken, before.connections_closed_broken,
            "a connection was closed"
        );
        assert_eq!(pool.state().connections, 1);
    })
    .await;
}

/// 100,000 users with a duplicate email at position 73,000: the error names that index and
/// the table stays empty; without the duplicate, exactly 100,000 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_insert_is_all_or_nothing_and_names_the_bad_row() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let mut methods = vec![BatchMethod::MultiRow];
        if pool.backend() == Backend::Postgres {
            methods.push(BatchMethod::Copy);
        }
        for method in methods {
            let opts = BatchOptions::new().method(method);
            let mut rows = users_from(keel_schema::now(), 100_000, &format!("{method:?}"));
            let duplicate = rows[10].email.clone();
            let original = std::mem::replace(&mut rows[73_000].email, duplicate);
            match repo.insert_users_with(&rows, &opts).await {
                Err(Error::BatchRow { index, source }) => {
                    assert_eq!(index, 73_000, "{method:?}: {source}");
                    assert_eq!(source.kind(), ErrorKind::UniqueViolation, "{method:?}: {source}");
                }
                other => panic!("{method:?}: expected a batch row error, got {other:?}"),
            }
            assert_eq!(count_rows(&pool, "users").await.unwrap(), 0, "{method:?}");

            rows[73_000].email = original;
            assert_eq!(repo.insert_users_with(&rows, &opts).await.unwrap(), 100_000, "{method:?}");
            assert_eq!(count_rows(&pool, "users").await.unwrap(), 100_000, "{method:?}");
            keel_test::exec_on(&pool, "DELETE FROM users").await.unwrap();
        }

        // A bad value is found before anything is sent.
        let mut rows = users_from(keel_schema::now(), 50, "Val");
        rows[42].name = "nul\0".into();
        match repo.insert_users(&rows).await {
            Err(Error::BatchRow { index: 42, source }) => assert_eq!(source.kind(), ErrorKind::InvalidInput),
            other => panic!("expected row 42 invalid, got {other:?}"),
        }

        // Jobs: a missing user fails the batch with its index.
        let owners = users_from(keel_schema::now(), 3, "Owner");
        repo.insert_users(&owners).await.unwrap();
        let mut jobs: Vec<NewJob> =
            (0..20).map(|i| NewJob::new(owners[i % 3].id, format!("Job {i}"), 1_000)).collect();
        jobs[5].user_id = Id::new();
        match repo.insert_jobs(&jobs).await {
            Err(Error::BatchRow { index: 5, source }) => {
                assert_eq!(source.kind(), ErrorKind::ForeignKeyViolation)
            }
            other => panic!("expected row 5 foreign key violation, got {other:?}"),
        }
        assert_eq!(count_rows(&pool, "jobs").await.unwrap(), 0);

        // Skipping conflicts reports what was really inserted.
        let mut more = users_from(keel_schema::now(), 10, "More");
        more[2].email = owners[0].email.clone();
        more[7].email = owners[1].email.clone();
        let opts = BatchOptions::new().on_conflict_do_nothing(true);
        assert_eq!(repo.insert_users_with(&more, &opts).await.unwrap(), 8);
        assert_eq!(repo.insert_users_with(&more, &opts).await.unwrap(), 0);
        assert_eq!(count_rows(&pool, "users").await.unwrap(), 3 + 8);
        if pool.backend() != Backend::Postgres {
            assert_eq!(
                kind(repo.insert_users_with(&more, &BatchOptions::new().method(BatchMethod::Copy)).await),
                ErrorKind::InvalidInput
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_apply_once_per_key_and_refuse_bad_input() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let owner = repo.create_user(&user("Owner", "owner@example.com")).await.unwrap();
        let a = repo.create_account(owner.id, 10_000).await.unwrap();
        let b = repo.create_account(owner.id, 0).await.unwrap();

        let first = repo.transfer(a.id, b.id, 2_500, "key-1").await.unwrap();
        assert!(first.applied_now);
        let again = repo.transfer(a.id, b.id, 2_500, "key-1").await.unwrap();
        assert!(!again.applied_now);
        assert_eq!(again.transfer.id, first.transfer.id);
        assert_eq!(repo.get_account(a.id).await.unwrap().balance_cents, 7_500);
        assert_eq!(repo.get_account(b.id).await.unwrap().balance_cents, 2_500);
        assert_eq!(kind(repo.transfer(a.id, b.id, 1, "key-1").await), ErrorKind::InvalidInput);

        match repo.transfer(b.id, a.id, 2_501, "key-2").await {
            Err(Error::InsufficientFunds { account, balance_cents: 2_500, amount_cents: 2_501 }) => {
                assert_eq!(account, b.id)
            }
            other => panic!("expected insufficient funds, got {other:?}"),
        }
        assert_eq!(kind(repo.transfer(a.id, b.id, 0, "key-3").await), ErrorKind::InvalidInput);
        assert_eq!(kind(repo.transfer(a.id, b.id, -5, "key-3").await), ErrorKind::InvalidInput);
        assert_eq!(kind(repo.transfer(a.id, a.id, 5, "key-3").await), ErrorKind::InvalidInput);
        assert_eq!(kind(repo.transfer(a.id, Id::new(), 5, "key-3").await), ErrorKind::NotFound);
        assert_eq!(kind(repo.transfer(Id::new(), a.id, 5, "key-3").await), ErrorKind::NotFound);
        assert_eq!(
            kind(repo.transfer(a.id, b.id, 5, "'; DROP TABLE transfers; --\0").await),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(repo.transfer(a.id, b.id, 5, &"k".repeat(101)).await), ErrorKind::InvalidInput);
        assert_eq!(kind(repo.create_account(owner.id, -1).await), ErrorKind::InvalidInput);

        // Nothing moved by the refused ones.
        assert_eq!(repo.total_balance().await.unwrap(), 10_000);
        assert_eq!(count_rows(&pool, "transfers").await.unwrap(), 1);
        let quoted = repo.transfer(b.id, a.id, 500, "'; DROP TABLE transfers; --").await.unwrap();
        assert_eq!(repo.transfer_by_key("'; DROP TABLE transfers; --").await.unwrap(), Some(quoted.transfer));
        assert_eq!(repo.get_account(a.id).await.unwrap().balance_cents, 8_000);
        assert_eq!(kind(repo.get_account(Id::new()).await), ErrorKind::NotFound);
    })
    .await;
}

/// 16 tasks move money between 10 accounts for a few seconds: the sum is unchanged, the
/// ledger has one row per applied transfer, and no balance is ever negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_the_books_balanced() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        if pool.backend() == Backend::Sqlite {
            return; // one writer at a time: nothing to contend on
        }
        let pool = keel_test::pool_with(&pool, |c| c.max_size(16)).await;
        let repo = Repo::new(pool.clone());
        let owner = repo.create_user(&user("Bank", "bank@example.com")).await.unwrap();
        let mut accounts = Vec::new();
        for _ in 0..10 {
            accounts.push(repo.create_account(owner.id, 1_000).await.unwrap().id);
        }
        let total = repo.total_balance().await.unwrap();
        let stop = std::time::Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (repo, accounts) = (repo.clone(), accounts.clone());
            tasks.push(tokio::spawn(async move {
                let (mut applied, mut refused, mut n) = (0u64, 0u64, 0u64);
                while std::time::Instant::now() < stop {
                    n += 1;
                    let from = accounts[((t * 7 + n * 3) % 10) as usize];
                    let to = accounts[((t * 3 + n * 7 + 1) % 10) as usize];
                    if from == to {
                        continue;
                    }
                    let amount = (n % 300 + 1) as i64;
                    match repo.transfer(from, to, amount, &format!("t{t}-{n}")).await {
                        Ok(o) => applied += o.applied_now as u64,
                        Err(Error::InsufficientFunds { .. }) => refused += 1,
                        Err(e) => panic!("transfer failed: {e}"),
                    }
                }
                (applied, refused)
            }));
        }
        let watcher = {
            let repo = repo.clone();
            tokio::spawn(async move {
                let mut lowest = i64::MAX;
                while std::time::Instant::now() < stop {
                    let mut conn = repo.pool().get().await.unwrap();
                    use diesel::prelude::*;
                    use diesel_async::RunQueryDsl;
                    use keel_schema::schema::accounts;
                    let min: Option<i64> = keel_pool::with_conn!(&mut conn, |c| accounts::table
                        .select(diesel::dsl::min(accounts::balance_cents))
                        .get_result(c)
                        .await)
                    .unwrap();
                    lowest = lowest.min(min.unwrap_or(0));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                lowest
            })
        };
        let (mut applied, mut refused) = (0, 0);
        for task in tasks {
            let (a, r) = task.await.unwrap();
            applied += a;
            refused += r;
        }
        assert!(watcher.await.unwrap() >= 0, "a balance went negative");
        assert_eq!(repo.total_balance().await.unwrap(), total);
        assert_eq!(count_rows(&pool, "transfers").await.unwrap() as u64, applied);
        assert!(applied > 100, "only {applied} transfers applied ({refused} refused)");
        eprintln!(
            "{}: {applied} transfers applied, {refused} refused, retries {:?}",
            pool.backend(),
            pool.stats().retries
        );
    })
    .await;
}

/// Unique text compares byte-exactly on every backend: an email or a transfer key that differs
/// only by a trailing space is another one (MariaDB's PAD SPACE collations made them equal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_spaces_make_different_unique_values_everywhere() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let repo = Repo::new(pool.clone());
        let plain = repo.create_user(&user("Pad", "pad@example.com")).await.unwrap();
        let spaced = repo.create_user(&user("Pad", "pad@example.com ")).await.unwrap();
        assert_ne!(plain.id, spaced.id);
        assert_eq!(
            kind(repo.create_user(&user("Pad", "pad@example.com ")).await),
            ErrorKind::UniqueViolation
        );

        let a = repo.create_account(plain.id, 1_000).await.unwrap();
        let b = repo.create_account(spaced.id, 0).await.unwrap();
        assert!(repo.transfer(a.id, b.id, 100, "pad-key").await.unwrap().applied_now);
        assert!(repo.transfer(a.id, b.id, 100, "pad-key ").await.unwrap().applied_now, "another key");
        assert!(!repo.transfer(a.id, b.id, 100, "pad-key ").await.unwrap().applied_now, "the same key");
        assert_eq!(repo.get_account(b.id).await.unwrap().balance_cents, 200);
    })
    .await;
}
