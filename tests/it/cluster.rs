//! The local cluster itself (`keel_test::cluster`): the replica streams the primary's writes and
//! refuses its own, PgBouncer answers in front of the primary, `status` lists what runs, and
//! stopping the replica leaves the rest running and it comes back at the same URL. Runs in the
//! `cluster` nextest group (one cluster test at a time), beside the other tests.

use std::time::{Duration, Instant};

use keel_test::cluster::{self, Member};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(url: &str) -> Client {
    let (client, conn) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The first column of the first row of `sql`'s result.
async fn one(client: &Client, sql: &str) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .flatten())
}

/// Polls `sql` on `url` until it returns `want` or 10 s pass.
async fn sees(url: &str, sql: &str, want: &str) -> bool {
    let client = connect(url).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if one(&client, sql).await.ok().flatten().as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_and_pgbouncer_follow_the_primary() {
    let dir = cluster::default_target_dir();
    cluster::up(&dir, Member::PgReplica).expect("the replica (and primary) start");
    let urls = cluster::up(&dir, Member::PgBouncer).expect("PgBouncer starts");
    let replica = urls.replica.clone().expect("a replica URL after up(PgReplica)");
    let pgbouncer = urls.pgbouncer.clone().expect("a PgBouncer URL after up(PgBouncer)");
    for url in [&urls.primary, &replica, &pgbouncer] {
        assert!(url.starts_with("postgres://root@127.0.0.1:") && url.ends_with("/keel"), "{url}");
    }

    // A write on the primary reaches the replica.
    let table = format!("cluster_probe_{}", std::process::id());
    let token = uuid::Uuid::now_v7().to_string();
    let primary = connect(&urls.primary).await;
    primary
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v text); INSERT INTO {table} VALUES ('{token}')"
        ))
        .await
        .expect("writing on the primary");
    let read = format!("SELECT v FROM {table}");
    assert!(sees(&replica, &read, &token).await, "the primary's row did not reach the replica within 10 s");

    // The replica is a read-only hot standby.
    let err = connect(&replica)
        .await
        .simple_query(&format!("INSERT INTO {table} VALUES ('x')"))
        .await
        .expect_err("the replica must refuse a write");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION), "{err}");

    // PgBouncer answers, is PgBouncer (its admin console knows SHOW VERSION), and reaches the
    // primary's data.
    let through = connect(&pgbouncer).await;
    assert_eq!(one(&through, "SELECT 1").await.expect("SELECT 1 through PgBouncer").as_deref(), Some("1"));
    assert_eq!(
        one(&through, &read).await.expect("the row through PgBouncer").as_deref(),
        Some(token.as_str())
    );
    let admin = pgbouncer.replace("root@", "postgres@").replace("/keel", "/pgbouncer");
    let version = one(&connect(&admin).await, "SHOW VERSION").await.expect("PgBouncer's admin console");
    assert!(version.is_some_and(|v| v.contains("PgBouncer")), "the pgbouncer URL does not lead to PgBouncer");

    let status = cluster::status(&dir).expect("status");
    assert_eq!(status.url(Member::PgPrimary), Some(urls.primary.as_str()));
    assert_eq!(status.url(Member::PgReplica), Some(replica.as_str()));
    assert_eq!(status.url(Member::PgBouncer), Some(pgbouncer.as_str()));
    assert!(status.lag.is_some(), "the primary must see its replica in pg_stat_replication");

    // Stopping the replica stops only the replica.
    cluster::down(&dir, Some(Member::PgReplica)).expect("the replica stops");
    let status = cluster::status(&dir).expect("status");
    assert_eq!(status.url(Member::PgReplica), None, "the replica still runs after down(pg-replica)");
    assert!(status.url(Member::PgPrimary).is_some() && status.url(Member::PgBouncer).is_some(), "{status:?}");
    assert_eq!(one(&primary, "SELECT 1").await.expect("the primary still answers").as_deref(), Some("1"));
    assert!(
        tokio_postgres::connect(&replica, NoTls).await.is_err(),
        "the stopped replica still accepts connections"
    );

    // ... and up brings it back at the same URL, caught up.
    let back = cluster::up(&dir, Member::PgReplica).expect("the replica starts again");
    assert_eq!(back.replica.as_deref(), Some(replica.as_str()), "the replica came back at another URL");
    primary.batch_execute(&format!("UPDATE {table} SET v = 'after'")).await.expect("update");
    assert!(sees(&replica, &read, "after").await, "the restarted replica does not follow the primary");

    primary.batch_execute(&format!("DROP TABLE {table}")).await.expect("drop");
}
