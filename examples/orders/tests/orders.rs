//! The order service's tests, each on PostgreSQL, MySQL/MariaDB and SQLite, in a database of the
//! test's own migrated with the service's own migrations (`keel_test::for_each_backend`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{ErrorKind, Id, Pool, ScopedFutureExt as _, bulk, with_conn};
use keel_test::{count_rows, for_each_backend, pool_with};
use orders::schema::{order_lines, orders as orders_table};
use orders::{
    Error, LineItem, MIGRATIONS, NewOrder, NewOrderLine, Order, OrderLine, OrderRequest, cancel_order,
    order_with_lines, place_order,
};

async fn counts(pool: &Pool) -> (i64, i64) {
    let orders = count_rows(pool, "orders").await.expect("count orders");
    let lines = count_rows(pool, "order_lines").await.expect("count order lines");
    (orders, lines)
}

fn two_lines() -> Vec<LineItem> {
    vec![LineItem::new("tea-1kg", 2, 1_250), LineItem::new("mug", 1, 900)]
}

fn new_order(customer: &str) -> NewOrder {
    NewOrder {
        id: Id::new(),
        customer: customer.to_owned(),
        total_cents: 0,
        placed_at: keel_pool::now(),
        note: None,
        attributes: serde_json::json!({}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_even_when_ten_instances_start_together() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let versions: Vec<String> = MIGRATIONS
            .for_backend(pool.backend())
            .expect("every backend has migrations")
            .iter()
            .map(|m| m.name().split('_').next().unwrap_or_default().replace('-', ""))
            .collect();
        assert_eq!(versions, ["20261202000001"]);
        assert!(pool.migrate(&MIGRATIONS).await.expect("migrate again").is_empty(), "nothing pending");
        let status = pool.migration_status(&MIGRATIONS).await.expect("status");
        assert_eq!((status.applied.clone(), status.pending.len()), (versions.clone(), 0));

        // From an empty schema, ten pools (ten instances of the service) migrate at once: the
        // migration runs once, the others wait for the lock and find nothing to do.
        pool.revert_all_migrations(&MIGRATIONS).await.expect("revert");
        assert_eq!(pool.migration_status(&MIGRATIONS).await.expect("status").pending, versions);
        let mut instances = Vec::new();
        for _ in 0..10 {
            let instance = pool_with(&pool, |c| c.max_size(1)).await;
            instances.push(tokio::spawn(async move { instance.migrate(&MIGRATIONS).await }));
        }
        let mut applied = Vec::new();
        for instance in instances {
            applied.extend(instance.await.expect("join").expect("a concurrent migrate succeeds"));
        }
        assert_eq!(applied, versions, "applied exactly once across the ten");
        let status = pool.migration_status(&MIGRATIONS).await.expect("status");
        assert_eq!((status.applied, status.pending.len()), (versions, 0));
        place_order(&pool, &OrderRequest::new("ada", two_lines())).await.expect("tables usable");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_round_trips_with_its_json_and_a_null_note() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let attributes = serde_json::json!({
            "channel": "web",
            "gift": { "wrap": true, "message": "Grüße — 🎁" },
            "tags": ["first", "priority"],
            "coupon": null,
            "weight_kg": 1.5
        });
        let request = OrderRequest::new("ada", two_lines()).attributes(attributes.clone());
        let before = keel_pool::now();
        let id = place_order(&pool, &request).await.expect("place");
        let (order, lines) = order_with_lines(&pool, id).await.expect("read back");
        assert_eq!((order.id, order.customer.as_str(), order.total_cents), (id, "ada", 3_400));
        assert_eq!(order.note, None);
        assert_eq!(order.attributes, attributes);
        assert!(order.placed_at.0 >= before.0 && order.placed_at.0 <= keel_pool::now().0);
        let got: Vec<(&str, i32, i64)> =
            lines.iter().map(|l| (l.sku.as_str(), l.quantity, l.unit_cents)).collect();
        assert_eq!(got, [("tea-1kg", 2, 1_250), ("mug", 1, 900)], "lines in the order placed");
        assert!(lines.iter().all(|l| l.order_id == id));

        let noted = OrderRequest::new("grace", vec![LineItem::new("pen", 3, 100)]).note("ring twice");
        let noted = place_order(&pool, &noted).await.expect("place with a note");
        let (order, _) = order_with_lines(&pool, noted).await.expect("read back");
        assert_eq!((order.note.as_deref(), order.total_cents), (Some("ring twice"), 300));
        assert_eq!(order.attributes, serde_json::json!({}));

        // The missing note is a real NULL in the database, not an empty string.
        let mut conn = pool.get().await.expect("conn");
        let null_notes: Vec<Id> = with_conn!(&mut conn, |c| orders_table::table
            .filter(orders_table::note.is_null())
            .select(orders_table::id)
            .load(c)
            .await)
        .expect("query");
        assert_eq!(null_notes, [id]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_classified_and_write_nothing() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        // The service's own refusals, before the database.
        let empty = place_order(&pool, &OrderRequest::new("ada", vec![])).await;
        assert!(matches!(empty, Err(Error::EmptyOrder)), "{empty:?}");
        let zero = vec![LineItem::new("tea-1kg", 1, 100), LineItem::new("mug", 0, 900)];
        let zero = place_order(&pool, &OrderRequest::new("ada", zero)).await;
        assert!(matches!(&zero, Err(Error::InvalidLine { index: 1, .. })), "{zero:?}");
        assert_eq!(zero.as_ref().err().and_then(Error::kind), None);
        // Texts are checked as the strictest backend would, so all three refuse them alike
        // (SQLite would store an over-long SKU, only PostgreSQL refuses a NUL byte).
        let long_sku = vec![LineItem::new("x".repeat(orders::schema::SKU_MAX_CHARS + 1), 1, 100)];
        let long_sku = place_order(&pool, &OrderRequest::new("ada", long_sku)).await;
        assert!(matches!(&long_sku, Err(Error::InvalidLine { index: 0, .. })), "{long_sku:?}");
        for customer in ["", "a\0b", &"é".repeat(orders::schema::CUSTOMER_MAX_CHARS + 1)] {
            let refused = place_order(&pool, &OrderRequest::new(customer, two_lines())).await;
            assert!(matches!(&refused, Err(Error::InvalidField { field: "customer", .. })), "{refused:?}");
        }
        let at_limit = "é".repeat(orders::schema::CUSTOMER_MAX_CHARS);
        let at_limit =
            place_order(&pool, &OrderRequest::new(at_limit, two_lines())).await.expect("200 characters fit");
        cancel_order(&pool, at_limit).await.expect("cancel");
        assert_eq!(counts(&pool).await, (0, 0));

        // The database's: the same SKU twice fails on the second line, after the order row was
        // written in the same transaction — which is rolled back, so nothing remains.
        let twice = vec![LineItem::new("mug", 1, 900), LineItem::new("mug", 2, 900)];
        let twice = place_order(&pool, &OrderRequest::new("ada", twice)).await;
        assert_eq!(twice.as_ref().err().and_then(Error::kind), Some(ErrorKind::UniqueViolation), "{twice:?}");
        assert_eq!(counts(&pool).await, (0, 0), "the order row was rolled back with the failed line");

        // The CHECK constraint and the foreign key, reached past the service's validation.
        let order = new_order("ada");
        let order = &order;
        let line = |order_id: Id, quantity: i32| NewOrderLine {
            id: Id::new(),
            order_id,
            sku: "mug".to_owned(),
            quantity,
            unit_cents: 900,
        };
        let (zero_line, orphan) = (line(order.id, 0), line(Id::new(), 1));
        for (bad, expected) in
            [(&zero_line, ErrorKind::CheckViolation), (&orphan, ErrorKind::ForeignKeyViolation)]
        {
            let result: Result<(), keel_pool::Error> = pool
                .transaction(|conn| {
                    async move {
                        with_conn!(conn, |c| diesel::insert_into(orders_table::table)
                            .values(order)
                            .execute(c)
                            .await)?;
                        with_conn!(conn, |c| diesel::insert_into(order_lines::table)
                            .values(bad)
                            .execute(c)
                            .await)?;
                        Ok(())
                    }
                    .scope_boxed()
                })
                .await;
            let err = result.expect_err("the database refuses the line");
            assert_eq!(err.kind(), expected, "{err}");
            assert_eq!(counts(&pool).await, (0, 0), "nothing written after {expected}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_removes_the_order_and_its_lines() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let keep = place_order(&pool, &OrderRequest::new("ada", two_lines())).await.expect("place");
        let gone = place_order(&pool, &OrderRequest::new("grace", two_lines())).await.expect("place");
        assert_eq!(counts(&pool).await, (2, 4));
        cancel_order(&pool, gone).await.expect("cancel");
        assert_eq!(counts(&pool).await, (1, 2), "its lines went with it");
        let again = cancel_order(&pool, gone).await;
        assert_eq!(again.as_ref().err().and_then(Error::kind), Some(ErrorKind::NotFound), "{again:?}");
        let read = order_with_lines(&pool, gone).await;
        assert_eq!(read.as_ref().err().and_then(Error::kind), Some(ErrorKind::NotFound), "{read:?}");
        let (order, lines) = order_with_lines(&pool, keep).await.expect("the other order stays");
        assert_eq!((order.customer.as_str(), lines.len()), ("ada", 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_orders_all_commit() {
    const TASKS: i64 = 8;
    const EACH: i64 = 5;
    for_each_backend(&MIGRATIONS, |pool| async move {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..EACH {
                    let lines =
                        vec![LineItem::new("tea-1kg", 1, 1_000 + task), LineItem::new("mug", 2, 100 + n)];
                    let request = OrderRequest::new(format!("customer-{task}"), lines);
                    place_order(&pool, &request).await?;
                }
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await.expect("join").expect("every order is placed");
        }
        assert_eq!(counts(&pool).await, (TASKS * EACH, TASKS * EACH * 2));
        let mut conn = pool.get().await.expect("conn");
        let totals: Vec<i64> =
            with_conn!(&mut conn, |c| orders_table::table.select(orders_table::total_cents).load(c).await)
                .expect("totals");
        let expected: i64 = (0..TASKS).flat_map(|t| (0..EACH).map(move |n| 1_000 + t + 2 * (100 + n))).sum();
        assert_eq!(totals.iter().sum::<i64>(), expected);
    })
    .await;
}

/// `n` orders of one line each, as a bulk load would bring them: every other one with a note,
/// each with its own JSON attributes.
fn bulk_rows(n: usize) -> (Vec<NewOrder>, Vec<NewOrderLine>) {
    let placed_at = keel_pool::now();
    let mut orders = Vec::with_capacity(n);
    let mut lines = Vec::with_capacity(n);
    for i in 0..n {
        let (quantity, unit_cents) = (1 + (i % 5) as i32, 100 + (i % 1_000) as i64);
        let order = NewOrder {
            id: Id::new(),
            customer: format!("customer-{}", i % 1_000),
            total_cents: i64::from(quantity) * unit_cents,
            placed_at,
            note: (i % 2 == 1).then(|| format!("note {i}")),
            attributes: serde_json::json!({ "import": "2026-12", "n": i }),
        };
        lines.push(NewOrderLine {
            id: Id::new(),
            order_id: order.id,
            sku: format!("sku-{}", i % 50),
            quantity,
            unit_cents,
        });
        orders.push(order);
    }
    (orders, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_load_of_100_000_orders_and_their_lines() {
    const ROWS: usize = 100_000;
    for_each_backend(&MIGRATIONS, |pool| async move {
        let (orders, lines) = bulk_rows(ROWS);
        let options = bulk::Options::new();
        assert_eq!(bulk::insert(&pool, &orders, &options).await.expect("load the orders"), ROWS);
        assert_eq!(bulk::insert(&pool, &lines, &options).await.expect("load the lines"), ROWS);
        assert_eq!(counts(&pool).await, (ROWS as i64, ROWS as i64));
        // Samples with and without a note read back exactly as loaded, JSON and microseconds included.
        for i in [0, 54_321, ROWS - 1] {
            let (new, line) = (&orders[i], &lines[i]);
            let (order, got) = order_with_lines(&pool, new.id).await.expect("read a loaded order");
            let expected = Order {
                id: new.id,
                customer: new.customer.clone(),
                total_cents: new.total_cents,
                placed_at: new.placed_at,
                note: new.note.clone(),
                attributes: new.attributes.clone(),
            };
            assert_eq!(order, expected, "order {i}");
            let expected = OrderLine {
                id: line.id,
                order_id: new.id,
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_cents: line.unit_cents,
            };
            assert_eq!(got, [expected], "line {i}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_bulk_row_is_named_by_its_index_and_nothing_is_written() {
    const ROWS: usize = 10_000;
    fn refused_at<T: std::fmt::Debug>(result: Result<T, keel_pool::Error>) -> (usize, ErrorKind) {
        match result {
            Err(keel_pool::Error::BulkRow { index, source }) => (index, source.kind()),
            other => panic!("expected a refused row, got {other:?}"),
        }
    }
    for_each_backend(&MIGRATIONS, |pool| async move {
        let options = bulk::Options::new();
        let (mut orders, mut lines) = bulk_rows(ROWS);

        // The validation hook: the same check place_order makes, before anything is sent.
        let customer = std::mem::replace(&mut orders[7_777].customer, "x".repeat(201));
        let refused = bulk::insert(&pool, &orders, &options).await;
        assert_eq!(refused_at(refused), (7_777, ErrorKind::InvalidInput));
        assert_eq!(counts(&pool).await, (0, 0), "nothing of the batch was written");
        orders[7_777].customer = customer;
        assert_eq!(bulk::insert(&pool, &orders, &options).await.expect("load the orders"), ROWS);

        // The database's refusals: a line of an order that does not exist (foreign key, checked
        // at the end of PostgreSQL's COPY), then one SKU twice in an order (unique).
        let order_id = std::mem::replace(&mut lines[4_321].order_id, Id::new());
        let refused = bulk::insert(&pool, &lines, &options).await;
        assert_eq!(refused_at(refused), (4_321, ErrorKind::ForeignKeyViolation));
        assert_eq!(counts(&pool).await, (ROWS as i64, 0), "no line was written");
        lines[4_321].order_id = order_id;
        (lines[9_999].order_id, lines[9_999].sku) = (lines[9_998].order_id, lines[9_998].sku.clone());
        let refused = bulk::insert(&pool, &lines, &options).await;
        assert_eq!(refused_at(refused), (9_999, ErrorKind::UniqueViolation));
        assert_eq!(counts(&pool).await, (ROWS as i64, 0), "no line was written");
        lines[9_999].quantity = 0;
        let refused = bulk::insert(&pool, &lines, &options).await;
        assert_eq!(refused_at(refused), (9_999, ErrorKind::InvalidInput), "the hook refuses first");
    })
    .await;
}
