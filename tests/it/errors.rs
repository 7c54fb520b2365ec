//! Every error kind is provoked for real on the server and classified the same way on every
//! backend where it exists.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use keel_pool::{Backend, ErrorKind, Pool, with_conn};
use keel_schema::MIGRATIONS;
use keel_schema::schema::users;
use keel_schema::{Id, NewUser};
use keel_test::for_each_backend;
use keel_test::{exec, exec_on, pool_with, side_pool, terminate};

/// An id as a SQL literal for `backend`.
fn id_sql(backend: Backend, id: Id) -> String {
    let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    match backend {
        Backend::Postgres => format!("'{id}'"),
        Backend::Mysql => format!("UNHEX('{hex}')"),
        Backend::Sqlite => format!("X'{hex}'"),
    }
}

/// Two users with an account each (balance 100); returns the account ids.
async fn two_accounts(pool: &Pool) -> (Id, Id) {
    let b = pool.backend();
    let (u1, u2, a1, a2) = (Id::new(), Id::new(), Id::new(), Id::new());
    let sql = format!(
        "INSERT INTO users (id, name, email) VALUES ({}, 'One', 'one@example.com'), ({}, 'Two', 'two@example.com');
         INSERT INTO accounts (id, owner_id, balance_cents) VALUES ({}, {}, 100), ({}, {}, 100);",
        id_sql(b, u1),
        id_sql(b, u2),
        id_sql(b, a1),
        id_sql(b, u1),
        id_sql(b, a2),
        id_sql(b, u2)
    );
    exec_on(pool, &sql).await.unwrap();
    (a1, a2)
}

fn begin(backend: Backend) -> &'static str {
    match backend {
        Backend::Mysql => "START TRANSACTION",
        _ => "BEGIN",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocks_are_classified_and_transient() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // one writer at a time: SQLite cannot deadlock
        }
        let (x, y) = two_accounts(&pool).await;
        let upd = |id| {
            format!("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE id = {}", id_sql(b, id))
        };
        let (mut c1, mut c2) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        exec(&mut c1, &format!("{}; {}", begin(b), upd(x))).await.unwrap();
        exec(&mut c2, &format!("{}; {}", begin(b), upd(y))).await.unwrap();
        let (uy, ux) = (upd(y), upd(x));
        let (r1, r2) = tokio::join!(exec(&mut c1, &uy), exec(&mut c2, &ux));
        let err = r1.err().or(r2.err()).expect("one of the two is the deadlock victim");
        assert_eq!(err.kind(), ErrorKind::Deadlock, "{b}: {err}");
        assert!(err.is_transient());
        let _ = exec(&mut c1, "ROLLBACK").await;
        let _ = exec(&mut c2, "ROLLBACK").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeouts_are_classified_and_transient() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        let pool = pool_with(&pool, |c| c.sqlite_busy_timeout(Duration::from_millis(100))).await;
        let (x, _) = two_accounts(&pool).await;
        let upd = format!("UPDATE accounts SET balance_cents = 1 WHERE id = {}", id_sql(b, x));
        let (mut c1, mut c2) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let (hold, wait) = match b {
            Backend::Postgres => (format!("BEGIN; {upd}"), format!("SET lock_timeout = '200ms'; {upd}")),
            Backend::Mysql => (
                format!("START TRANSACTION; {upd}"),
                format!("SET SESSION innodb_lock_wait_timeout = 1; {upd}"),
            ),
            Backend::Sqlite => ("BEGIN IMMEDIATE".to_owned(), "BEGIN IMMEDIATE".to_owned()),
        };
        exec(&mut c1, &hold).await.unwrap();
        let err = exec(&mut c2, &wait).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockTimeout, "{b}: {err}");
        assert!(err.is_transient());
        exec(&mut c1, "ROLLBACK").await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeouts_are_enforced_by_the_server() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // no server to stop the statement
        }
        let limited = pool_with(&pool, |c| c.statement_timeout(Some(Duration::from_millis(300)))).await;
        let sleep = match b {
            Backend::Postgres => "SELECT pg_sleep(5)",
            _ => "SELECT SLEEP(5)",
        };
        let started = std::time::Instant::now();
        let mut conn = limited.get().await.unwrap();
        let err = exec(&mut conn, sleep).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StatementTimeout, "{b}: {err}");
        assert!(started.elapsed() < Duration::from_secs(4), "the server stopped it");
        // The connection is still usable afterwards.
        exec(&mut conn, "SELECT 1").await.unwrap();
        // Pools without the setting are not limited.
        exec_on(
            &pool,
            match b {
                Backend::Postgres => "SELECT pg_sleep(0.4)",
                _ => "SELECT SLEEP(0.4)",
            },
        )
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_classified_and_transient() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b != Backend::Postgres {
            return; // MySQL reports these conflicts as deadlocks or lock waits (tested above)
        }
        let (x, y) = two_accounts(&pool).await;
        let (mut c1, mut c2) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let read = "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT SUM(balance_cents) FROM accounts";
        exec(&mut c1, read).await.unwrap();
        exec(&mut c2, read).await.unwrap();
        exec(&mut c1, &format!("UPDATE accounts SET balance_cents = 0 WHERE id = {}", id_sql(b, x)))
            .await
            .unwrap();
        exec(&mut c2, &format!("UPDATE accounts SET balance_cents = 0 WHERE id = {}", id_sql(b, y)))
            .await
            .unwrap();
        exec(&mut c1, "COMMIT").await.unwrap();
        let err = exec(&mut c2, "COMMIT").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SerializationFailure, "{err}");
        assert!(err.is_transient());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_is_connection_lost() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        let side = side_pool(&pool).await;
        let mut conn = pool.get().await.unwrap();
        terminate(&side, conn.server_id().unwrap()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = exec(&mut conn, "SELECT 1").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::ServerShutdown), "{b}: {err}");
        assert!(err.is_transient());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_null_too_long_and_nul_bytes() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        let sql = format!(
            "INSERT INTO users (id, name, email) VALUES ({}, NULL, 'n@example.com')",
            id_sql(b, Id::new())
        );
        let err = exec_on(&pool, &sql).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotNullViolation, "{b}: {err}");

        let long = NewUser::new("x".repeat(101), "long@example.com");
        let mut conn = pool.get().await.unwrap();
        let err = with_conn!(&mut conn, |c| diesel::insert_into(users::table).values(&long).execute(c).await)
            .unwrap_err();
        // SQLite has no VARCHAR lengths; the migration's CHECK enforces them.
        let expected = if b == Backend::Sqlite { ErrorKind::CheckViolation } else { ErrorKind::InvalidInput };
        assert_eq!(err.kind(), expected, "{b}: {err}");
        assert!(!err.is_transient());

        if b == Backend::Postgres {
            let nul = NewUser::new("a\0b", "nul@example.com");
            let err =
                with_conn!(&mut conn, |c| diesel::insert_into(users::table).values(&nul).execute(c).await)
                    .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
        assert_eq!(keel_test::count_rows(&pool, "users").await.unwrap(), 0);

        let missing = with_conn!(&mut conn, |c| {
            use diesel::QueryDsl;
            users::table.find(Id::new()).select(users::name).first::<String>(c).await
        })
        .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{b}: {missing}");
    })
    .await;
}
