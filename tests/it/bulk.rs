//! `keel_pool::bulk` on a table of the test's own (its own migrations, `tests/migrations`) with a
//! column of every supported type: `#[derive(BulkRow)]` rows round-trip through COPY and
//! multi-row INSERT on every backend, the validation hook and the server's refusals name the
//! row, chunking stays under the bind limit, and a field that does not fit its column is named.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::{Insertable, QueryDsl as _, Queryable, Selectable, SelectableHelper as _};
use diesel_async::RunQueryDsl as _;
use keel_pool::bulk::{self, Method, Options};
use keel_pool::{Backend, BulkRow, Error, ErrorKind, Id, Migrations, Pool, Timestamp, with_conn};
use keel_test::{count_rows, for_each_backend};

/// The test's own migration set: one table, `bulk_items`.
const BULK: Migrations = keel_pool::embed_migrations!("migrations");

diesel::table! {
    use diesel::sql_types::*;
    use keel_pool::sql_types::{Uuid, UtcTimestamp};

    bulk_items (id) {
        id -> Uuid,
        label -> Varchar,
        small -> SmallInt,
        medium -> Integer,
        big -> BigInt,
        flag -> Bool,
        ratio -> Double,
        note -> Nullable<Text>,
        day -> Date,
        local_at -> Timestamp,
        created_at -> UtcTimestamp,
        doc -> Json,
    }
}

#[derive(Debug, Clone, PartialEq, Insertable, Queryable, Selectable, keel_pool::BulkRow)]
#[diesel(table_name = bulk_items)]
#[bulk(validate = check_item)]
struct Item {
    id: Id,
    label: String,
    small: i16,
    medium: i32,
    big: i64,
    flag: bool,
    ratio: f64,
    note: Option<String>,
    day: NaiveDate,
    local_at: NaiveDateTime,
    created_at: Timestamp,
    doc: serde_json::Value,
}

/// The row's own rule: labels are never empty.
fn check_item(item: &Item) -> Result<(), Error> {
    if item.label.is_empty() {
        return Err(Error::invalid_input("label must not be empty"));
    }
    Ok(())
}

fn items(tag: &str, n: usize) -> Vec<Item> {
    let day = NaiveDate::from_ymd_opt(2026, 12, 2).expect("a date");
    (0..n)
        .map(|i| Item {
            id: Id::new(),
            label: format!("{tag}-{i} 'quoted' \"twice\" ; --"),
            small: (i % 30_000) as i16 - 15_000,
            medium: i as i32 * 7 - 1_000,
            big: i as i64 * 1_000_000_007,
            flag: i % 2 == 0,
            ratio: i as f64 / 8.0,
            note: (i % 3 != 0).then(|| format!("note é {i}")),
            day: day + chrono::Days::new(i as u64 % 400),
            local_at: day.and_hms_micro_opt(12, 30, 15, (i % 1_000_000) as u32).expect("a time"),
            created_at: keel_pool::now(),
            doc: serde_json::json!({ "i": i, "tags": ["a", tag], "nested": { "ok": i % 2 == 0 } }),
        })
        .collect()
}

/// The methods worth trying on `pool`'s backend.
fn methods(pool: &Pool) -> Vec<Method> {
    match pool.backend() {
        Backend::Postgres => vec![Method::Auto, Method::Copy, Method::MultiRow],
        _ => vec![Method::Auto, Method::MultiRow],
    }
}

async fn read_back(pool: &Pool) -> Vec<Item> {
    let mut conn = pool.get().await.expect("a connection");
    with_conn!(&mut conn, |c| bulk_items::table.select(Item::as_select()).order(bulk_items::id).load(c).await)
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_round_trips_by_every_method() {
    for_each_backend(&BULK, |pool| async move {
        for method in methods(&pool) {
            let rows = items(&format!("{method:?}"), 3_000);
            let n = bulk::insert(&pool, &rows, &Options::new().method(method)).await.expect("inserted");
            assert_eq!(n, rows.len(), "{method:?}");
            let mut want = rows.clone();
            want.sort_by_key(|r| r.id);
            assert_eq!(read_back(&pool).await, want, "{method:?}: what was read back differs");
            keel_test::exec_on(&pool, "DELETE FROM bulk_items").await.expect("cleared");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_named_and_nothing_is_written() {
    for_each_backend(&BULK, |pool| async move {
        // The validation hook runs before anything is sent.
        let mut rows = items("hook", 50);
        rows[17].label.clear();
        match bulk::insert(&pool, &rows, &Options::new()).await {
            Err(Error::BulkRow { index: 17, source }) => assert_eq!(source.kind(), ErrorKind::InvalidInput),
            other => panic!("expected row 17 refused by the hook, got {other:?}"),
        }

        for method in methods(&pool) {
            // A duplicate label (the server's unique key) deep in the batch, past a chunk
            // boundary; and a CHECK violation.
            let mut rows = items(&format!("dup-{method:?}"), 12_000);
            rows[9_001].label = rows[3].label.clone();
            let got = bulk::insert(&pool, &rows, &Options::new().method(method)).await;
            match &got {
                Err(Error::BulkRow { index: 9_001, source }) => {
                    assert_eq!(source.kind(), ErrorKind::UniqueViolation, "{method:?}: {source}")
                }
                other => panic!("{method:?}: expected row 9001 unique violation, got {other:?}"),
            }
            assert_eq!(got.expect_err("refused").kind(), ErrorKind::UniqueViolation);
            let mut rows = items(&format!("check-{method:?}"), 40);
            rows[33].big = -1;
            match bulk::insert(&pool, &rows, &Options::new().method(method)).await {
                Err(Error::BulkRow { index: 33, source }) => {
                    assert_eq!(source.kind(), ErrorKind::CheckViolation, "{method:?}: {source}")
                }
                other => panic!("{method:?}: expected row 33 check violation, got {other:?}"),
            }
            assert_eq!(count_rows(&pool, "bulk_items").await.expect("count"), 0, "{method:?}");
        }
    })
    .await;
}

/// Chunks are cut under the backend's bind-parameter limit whatever `chunk_rows` asks, and
/// skipping conflicts counts only the rows really inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_stay_under_the_bind_limit_and_conflicts_are_counted() {
    for_each_backend(&BULK, |pool| async move {
        let per_row = Item::COLUMNS.len();
        assert_eq!(per_row, 12);
        let n = bulk::bind_limit(pool.backend()) / per_row * 2 + 7;
        let rows = items("wide", n);
        let opts = Options::new().method(Method::MultiRow).chunk_rows(1_000_000);
        assert_eq!(bulk::insert(&pool, &rows, &opts).await.expect("inserted"), n);

        let mut more = items("more", 10);
        more[2].label = rows[0].label.clone();
        more[7].id = rows[1].id;
        let skip = Options::new().on_conflict_do_nothing(true);
        assert_eq!(bulk::insert(&pool, &more, &skip).await.expect("inserted"), 8);
        assert_eq!(bulk::insert(&pool, &more, &skip).await.expect("inserted"), 0);
        assert_eq!(count_rows(&pool, "bulk_items").await.expect("count"), (n + 8) as i64);
        assert_eq!(bulk::insert::<Item>(&pool, &[], &Options::new()).await.expect("nothing"), 0);
    })
    .await;
}

/// The same table described wrongly (`medium` as BigInt, an `int4` column on PostgreSQL):
/// binary COPY refuses the value before sending it, naming the row and the column.
mod wrong {
    diesel::table! {
        use diesel::sql_types::*;
        use keel_pool::sql_types::Uuid;

        bulk_items (id) {
            id -> Uuid,
            label -> Varchar,
            medium -> BigInt,
        }
    }

    #[derive(Debug, Clone, diesel::Insertable, keel_pool::BulkRow)]
    #[diesel(table_name = bulk_items)]
    pub struct Misfit {
        pub id: keel_pool::Id,
        pub label: String,
        pub medium: i64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_that_does_not_fit_its_column_is_named() {
    for_each_backend(&BULK, |pool| async move {
        if pool.backend() != Backend::Postgres {
            // COPY is PostgreSQL's; elsewhere Method::Copy is refused as invalid input.
            let rows = vec![wrong::Misfit { id: Id::new(), label: "x".into(), medium: 1 }];
            let got = bulk::insert(&pool, &rows, &Options::new().method(Method::Copy)).await;
            assert_eq!(got.expect_err("refused").kind(), ErrorKind::InvalidInput);
            return;
        }
        let rows: Vec<wrong::Misfit> =
            (0..5).map(|i| wrong::Misfit { id: Id::new(), label: format!("m{i}"), medium: i }).collect();
        match bulk::insert(&pool, &rows, &Options::new().method(Method::Copy)).await {
            Err(Error::BulkRow { index: 0, source }) => {
                assert_eq!(source.kind(), ErrorKind::InvalidInput);
                let text = source.to_string();
                assert!(text.contains("medium") && text.contains("int4"), "{text}");
            }
            other => panic!("expected row 0 refused naming the column, got {other:?}"),
        }
        assert_eq!(count_rows(&pool, "bulk_items").await.expect("count"), 0);
    })
    .await;
}
