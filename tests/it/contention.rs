//! The ledger holds under contention and chaos: 16 tasks move money between 10 accounts through
//! `pool.transaction` while a side task terminates random pooled sessions of this test every
//! 200 ms. Afterwards the sum of balances is unchanged, every committed transfer has its row
//! (and unknown outcomes are bounded), and nothing failed for a reason other than insufficient
//! funds, an unknown commit outcome, or retries running out on a transient error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{
    Backend, Conn, Error, ErrorKind, Isolation, Pool, ScopedFutureExt, TxError, TxOptions, with_conn,
};
use keel_schema::MIGRATIONS;
use keel_schema::schema::{accounts, transfers};
use keel_schema::{Id, NewAccount, NewTransfer, NewUser, Timestamp};
use keel_test::for_each_backend;
use rand::Rng;

#[derive(Debug)]
enum TransferError {
    Insufficient,
    Db(Error),
}
impl From<Error> for TransferError {
    fn from(e: Error) -> Self {
        TransferError::Db(e)
    }
}
impl TxError for TransferError {
    fn as_keel_error(&self) -> Option<&Error> {
        match self {
            TransferError::Db(e) => Some(e),
            TransferError::Insufficient => None,
        }
    }
}

async fn transfer(conn: &mut Conn, from: Id, to: Id, amount: i64, key: String) -> Result<(), TransferError> {
    // MariaDB: lock both rows, in id order (no deadlock between transfers in opposite
    // directions). PostgreSQL: plain reads; SERIALIZABLE detects the conflicts.
    let mut ids = [from, to];
    ids.sort();
    let balances: Vec<(Id, i64)> = match conn {
        Conn::Mysql(c) => accounts::table
            .filter(accounts::id.eq_any(ids))
            .select((accounts::id, accounts::balance_cents))
            .order(accounts::id)
            .for_update()
            .load(&mut ***c)
            .await
            .map_err(|e| {
                let err = keel_pool::classify(Backend::Mysql, e);
                conn.observe(&err);
                err
            })?,
        _ => with_conn!(conn, |c| accounts::table
            .filter(accounts::id.eq_any(ids))
            .select((accounts::id, accounts::balance_cents))
            .load(c)
            .await)?,
    };
    let from_balance = balances.iter().find(|(id, _)| *id == from).map(|(_, b)| *b).unwrap_or(0);
    if from_balance < amount {
        return Err(TransferError::Insufficient);
    }
    let row = NewTransfer {
        id: Id::new(),
        from_account: from,
        to_account: to,
        amount_cents: amount,
        idempotency_key: key,
        created_at: Timestamp::now(),
    };
    with_conn!(conn, |c| async {
        diesel::update(accounts::table.find(from))
            .set(accounts::balance_cents.eq(accounts::balance_cents - amount))
            .execute(c)
            .await?;
        diesel::update(accounts::table.find(to))
            .set(accounts::balance_cents.eq(accounts::balance_cents + amount))
            .execute(c)
            .await?;
        diesel::insert_into(transfers::table).values(&row).execute(c).await
    }
    .await)?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Victim {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Terminates one random session of `app` on this database; returns whether one was found.
async fn kill_one(side: &Pool, app: &str) -> bool {
    let Ok(mut conn) = side.get().await else { return false };
    let sql = match side.backend() {
        Backend::Postgres => format!(
            "SELECT CAST(pid AS BIGINT) AS id FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = '{app}' ORDER BY random() LIMIT 1"
        ),
        // Sessions of this test's database only; the side pool's own session is excluded.
        _ => "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
              WHERE db = DATABASE() AND id <> CONNECTION_ID() ORDER BY RAND() LIMIT 1"
            .to_owned(),
    };
    let victim: Option<Victim> =
        with_conn!(&mut conn, |c| diesel::sql_query(&sql).get_result(c).await.optional()).ok().flatten();
    let Some(v) = victim else { return false };
    keel_test::terminate(side, v.id as u64).await;
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ledger_survives_contention_and_terminated_sessions() {
    let secs: u64 = std::env::var("KEEL_CONTENTION_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // one writer at a time, and no sessions to terminate
        }
        let app = "keel-contention";
        let work = keel_test::pool_with(&pool, |c| c.max_size(16).application_name(app)).await;
        let side = keel_test::side_pool(&pool).await;

        let mut conn = pool.get().await.unwrap();
        let owner = NewUser::new("Ledger", "ledger@example.com");
        with_conn!(&mut conn, |c| diesel::insert_into(keel_schema::schema::users::table).values(&owner).execute(c).await)
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..10 {
            let a = NewAccount::new(owner.id, 10_000);
            with_conn!(&mut conn, |c| diesel::insert_into(accounts::table).values(&a).execute(c).await).unwrap();
            ids.push(a.id);
        }
        drop(conn);
        let ids = Arc::new(ids);

        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let unknown = Arc::new(AtomicU64::new(0));
        let insufficient = Arc::new(AtomicU64::new(0));
        let exhausted = Arc::new(AtomicU64::new(0));
        let other = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let options = match b {
            Backend::Postgres => TxOptions::new().isolation(Isolation::Serializable),
            _ => TxOptions::new(),
        };

        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (work, ids, stop, options) = (work.clone(), ids.clone(), stop.clone(), options.clone());
            let (committed, unknown, insufficient, exhausted, other) =
                (committed.clone(), unknown.clone(), insufficient.clone(), exhausted.clone(), other.clone());
            tasks.push(tokio::spawn(async move {
                while !AtomicBool::load(&stop, SeqCst) {
                    let (from, to, amount) = {
                        let mut rng = rand::rng();
                        let f = rng.random_range(0..ids.len());
                        let t = (f + rng.random_range(1..ids.len())) % ids.len();
                        (ids[f], ids[t], rng.random_range(1..=3_000))
                    };
                    let key = Id::new().to_string();
                    let result = work
                        .transaction_with(options.clone(), |conn| {
                            transfer(conn, from, to, amount, key.clone()).scope_boxed()
                        })
                        .await;
                    match result {
                        Ok(()) => committed.fetch_add(1, SeqCst),
                        Err(TransferError::Insufficient) => insufficient.fetch_add(1, SeqCst),
                        Err(TransferError::Db(e)) if e.kind() == ErrorKind::CommitOutcomeUnknown => {
                            unknown.fetch_add(1, SeqCst)
                        }
                        Err(TransferError::Db(e)) if e.is_transient() => exhausted.fetch_add(1, SeqCst),
                        Err(TransferError::Db(e)) => {
                            other.lock().unwrap().push(e.to_string());
                            0
                        }
                    };
                }
            }));
        }
        let chaos = {
            let (side, stop) = (side.clone(), stop.clone());
            tokio::spawn(async move {
                let mut kills = 0u64;
                while !AtomicBool::load(&stop, SeqCst) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if kill_one(&side, app).await {
                        kills += 1;
                    }
                }
                kills
            })
        };
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        let kills = chaos.await.unwrap();

        let mut conn = pool.get().await.unwrap();
        let balances: Vec<i64> =
            with_conn!(&mut conn, |c| accounts::table.select(accounts::balance_cents).load(c).await).unwrap();
        let rows: i64 = with_conn!(&mut conn, |c| transfers::table.count().get_result(c).await).unwrap();
        let stats = work.stats();
        let (committed, unknown) = (AtomicU64::load(&committed, SeqCst), AtomicU64::load(&unknown, SeqCst));
        eprintln!(
            "contention on {b}: {:.1}s, committed {committed}, unknown {unknown}, insufficient {}, retries exhausted {}, \
             transfer rows {rows}, sessions terminated {kills}, retries {:?}, connections created {}",
            started.elapsed().as_secs_f64(),
            AtomicU64::load(&insufficient, SeqCst),
            AtomicU64::load(&exhausted, SeqCst),
            stats.retries,
            stats.connections_created
        );
        assert_eq!(balances.iter().sum::<i64>(), 100_000, "{b}: money was created or destroyed");
        assert!(balances.iter().all(|b| *b >= 0));
        assert!(committed as i64 <= rows && rows <= (committed + unknown) as i64, "{b}: {committed} {unknown} {rows}");
        assert!(other.lock().unwrap().is_empty(), "{b}: non-transient errors: {:?}", other.lock().unwrap());
        assert!(committed > 100, "{b}: too little work got through: {committed}");
        assert!(kills > 10, "{b}: the chaos task terminated only {kills} sessions");
        assert!(stats.total_retries() > 0, "{b}: {stats:?}");
    })
    .await;
}
