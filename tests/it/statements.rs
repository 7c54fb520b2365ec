//! Hot write statements are prepared once per connection and then only executed (diesel does
//! not cache `UPDATE`s by itself; keel wraps them in `keel_pool::Reuse`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, with_conn};
use keel_repo::Repo;
use keel_schema::MIGRATIONS;
use keel_schema::NewUser;
use keel_test::for_each_backend;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// PostgreSQL: named statements the session holds that match `pattern`; MySQL: statements
/// prepared by the session so far.
async fn prepared(pool: &keel_pool::Pool, pattern: &str) -> i64 {
    let sql = match pool.backend() {
        Backend::Postgres => {
            format!("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE '{pattern}'")
        }
        _ => "SELECT CAST(VARIABLE_VALUE AS SIGNED) AS n FROM information_schema.SESSION_STATUS \
              WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'"
            .to_owned(),
    };
    let mut conn = pool.get().await.unwrap();
    let row: Count = with_conn!(&mut conn, |c| diesel::sql_query(&sql).get_result(c).await).unwrap();
    row.n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_reuse_their_prepared_statements() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        if pool.backend() == Backend::Sqlite {
            return; // no server-side statements to count
        }
        // One connection, so every statement runs on the session we inspect.
        let pool = keel_test::pool_with(&pool, |c| c.max_size(1)).await;
        let repo = Repo::new(pool.clone());
        let owner = repo.create_user(&NewUser::new("Owner", "owner@example.com")).await.unwrap();
        let a = repo.create_account(owner.id, 1_000_000).await.unwrap().id;
        let b = repo.create_account(owner.id, 1_000_000).await.unwrap().id;
        repo.transfer(a, b, 1, "warm-up").await.unwrap();
        let before = prepared(&pool, "UPDATE%accounts%").await;
        for i in 0..40 {
            let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
            repo.transfer(from, to, 1, &format!("k{i}")).await.unwrap();
        }
        let after = prepared(&pool, "UPDATE%accounts%").await;
        match pool.backend() {
            // The one UPDATE (debit and credit share it) stays prepared on the session.
            Backend::Postgres => {
                assert_eq!((before, after), (1, 1));
                assert_eq!(prepared(&pool, "INSERT%transfers%").await, 1);
            }
            // 40 transfers × (select, 2 updates, insert): nothing new to prepare (the counting
            // query itself is the one prepare).
            _ => assert!(after - before <= 2, "{} statements prepared for 40 transfers", after - before),
        }
    })
    .await;
}
