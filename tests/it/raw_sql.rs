//! Raw SQL with named parameters on every backend: binds, value types, JSON, bad input.

use keel_pool::ScopedFutureExt as _;
use keel_pool::{Backend, ErrorKind};
use keel_repo::Repo;
use keel_repo::raw::{Params, Value};
use keel_schema::MIGRATIONS;
use keel_schema::{Id, NewJob, NewUser};
use keel_test::{count_rows, exec_on, for_each_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parameters_bind_and_rows_come_back_typed() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let repo = Repo::new(pool.clone());
        let insert = "INSERT INTO users (id, name, email, created_at) VALUES (:id, :name, :email, :at)";
        let now = keel_schema::now();
        let mut ids = Vec::new();
        for (i, name) in ["'; DROP TABLE users; --", "%_\\", "emoji 🦀 名前", "it's :name"].iter().enumerate()
        {
            let id = Id::new();
            ids.push(id);
            let params = Params::new()
                .set("id", id)
                .set("name", *name)
                .set("email", format!("r{i}@example.com"))
                .set("at", now);
            assert_eq!(repo.execute(insert, &params).await.unwrap(), 1);
        }
        assert_eq!(count_rows(&pool, "users").await.unwrap(), 4);

        // Repeated names, a literal with a colon, a cast-free query: the same SQL on every backend.
        let rows = repo
            .query(
                "SELECT id, name, email, created_at, ':not_a_param' AS lit FROM users \
                 WHERE name = :name OR email = :email OR name = :name ORDER BY email",
                &Params::new().set("name", "'; DROP TABLE users; --").set("email", "r2@example.com"),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        let first = &rows[0];
        assert_eq!(first.columns().collect::<Vec<_>>(), ["id", "name", "email", "created_at", "lit"]);
        assert_eq!(first.get("name").and_then(Value::as_str), Some("'; DROP TABLE users; --"));
        assert_eq!(first.get("id").and_then(Value::as_uuid), Some(ids[0].0));
        assert_eq!(rows[1].get("name").and_then(Value::as_str), Some("emoji 🦀 名前"));
        assert_eq!(first.get("lit").and_then(Value::as_str), Some(":not_a_param"));
        match (backend, first.get("created_at")) {
            (Backend::Postgres, Some(Value::Timestamp(t))) => assert_eq!(*t, now.0),
            (Backend::Mysql, Some(Value::DateTime(t))) => assert_eq!(*t, now.0.naive_utc()),
            (Backend::Sqlite, Some(Value::Text(t))) => {
                assert_eq!(*t, now.0.format(keel_schema::timestamp::SQLITE_FORMAT).to_string())
            }
            (b, other) => panic!("{b}: unexpected created_at {other:?}"),
        }
        // JSON keeps the column order.
        let json = serde_json::to_string(first).unwrap();
        assert!(json.starts_with("{\"id\":"), "{json}");
        assert!(json.find("\"name\"").unwrap() < json.find("\"email\"").unwrap(), "{json}");

        // Value types: integer, float, decimal, NULL, text, booleans where the backend has them.
        let decimal = match backend {
            Backend::Sqlite => "'12.50'",
            _ => "CAST(12.50 AS DECIMAL(10,2))",
        };
        let float = match backend {
            Backend::Postgres => "CAST(1.5 AS DOUBLE PRECISION)",
            _ => "1.5e0",
        };
        let sql = format!("SELECT 42 AS i, {float} AS f, {decimal} AS d, NULL AS n, :t AS t, :b AS b");
        let rows = repo.query(&sql, &Params::new().set("t", "text").set("b", true)).await.unwrap();
        let row = &rows[0];
        assert_eq!(row.get("i"), Some(&Value::Int(42)));
        assert_eq!(row.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(row.get("d").and_then(Value::as_str), Some("12.50"));
        assert_eq!(row.get("n"), Some(&Value::Null));
        assert_eq!(row.get("t").and_then(Value::as_str), Some("text"));
        let b = row.get("b").unwrap();
        assert!(matches!(b, Value::Bool(true) | Value::Int(1)), "{backend}: {b:?}");

        // execute counts affected rows.
        let n = repo
            .execute(
                "UPDATE users SET name = :new WHERE email LIKE :pattern",
                &Params::new().set("new", "Renamed").set("pattern", "r%"),
            )
            .await
            .unwrap();
        assert_eq!(n, 4);

        // Bad input: clear, classified, nothing written.
        let nul = Params::new()
            .set("id", Id::new())
            .set("name", "nul\0")
            .set("email", "nul@example.com")
            .set("at", now);
        assert_eq!(repo.execute(insert, &nul).await.unwrap_err().kind(), Some(ErrorKind::InvalidInput));
        let err = repo.query("SELECT :a, :b", &Params::new().set("a", 1)).await.unwrap_err();
        assert!(err.to_string().contains(":b"), "{err}");
        let err = repo.query("SELECT :a", &Params::new().set("a", 1).set("zz", 2)).await.unwrap_err();
        assert!(err.to_string().contains(":zz"), "{err}");
        let err = repo.query("SELEC nonsense", &Params::new()).await.unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::Database), "{err}");
        let dup = Params::new()
            .set("id", Id::new())
            .set("name", "Dup")
            .set("email", "r0@example.com")
            .set("at", now);
        assert_eq!(repo.execute(insert, &dup).await.unwrap_err().kind(), Some(ErrorKind::UniqueViolation));
        assert_eq!(count_rows(&pool, "users").await.unwrap(), 4);

        // Inside a transaction, through the same connection.
        let user = NewUser::new("Tx", "tx@example.com");
        let got: Result<i64, keel_repo::Error> = pool
            .transaction(|conn| {
                let user = &user;
                async move {
                    let p = Params::new()
                        .set("id", user.id)
                        .set("name", user.name.as_str())
                        .set("email", user.email.as_str())
                        .set("at", user.created_at);
                    keel_repo::raw::execute_on(conn, insert, &p).await?;
                    let rows =
                        keel_repo::raw::query_on(conn, "SELECT COUNT(*) AS n FROM users", &Params::new())
                            .await?;
                    Ok(rows[0].get("n").and_then(Value::as_i64).unwrap_or(-1))
                }
                .scope_boxed()
            })
            .await;
        assert_eq!(got.unwrap(), 5);
    })
    .await;
}

/// A table of the test's own database with a nullable integer and an exact decimal:
/// `DECIMAL(30,4)` on PostgreSQL and MySQL, `TEXT` on SQLite, which has no exact decimal type
/// (`NUMERIC` affinity would store `12345678901234567.0001` as the integer 12345678901234568).
async fn create_pay_table(pool: &keel_pool::Pool) {
    let decimal = match pool.backend() {
        Backend::Sqlite => "TEXT",
        _ => "DECIMAL(30,4)",
    };
    let sql =
        format!("CREATE TABLE pay (id BIGINT PRIMARY KEY, salary_cents BIGINT NULL, rate {decimal} NULL)");
    exec_on(pool, &sql).await.unwrap();
}

/// No ids.
const NONE: [i64; 0] = [];

/// The ids `sql` returns (a column named `id`), in order.
async fn ids(repo: &Repo, sql: &str, params: &Params) -> Vec<i64> {
    let rows = repo.query(sql, params).await.unwrap();
    rows.iter().map(|r| r.get("id").and_then(Value::as_i64).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_parameters_take_their_type_from_the_statement() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let repo = Repo::new(pool.clone());
        create_pay_table(&pool).await;
        let insert = "INSERT INTO pay (id, salary_cents, rate) VALUES (:id, :s, :r)";
        for (id, cents) in [(1, 100), (2, 200)] {
            let p = Params::new().set("id", id).set("s", cents).set("r", Value::Null);
            assert_eq!(repo.execute(insert, &p).await.unwrap(), 1, "{backend}");
        }

        // PostgreSQL refused a NULL bound as text here: "column "salary_cents" is of type bigint
        // but expression is of type text".
        let set = "UPDATE pay SET salary_cents = :s WHERE id = :id";
        let n = repo.execute(set, &Params::new().set("s", Value::Null).set("id", 1)).await.unwrap();
        assert_eq!(n, 1, "{backend}");
        let rows =
            repo.query("SELECT id, salary_cents, rate FROM pay ORDER BY id", &Params::new()).await.unwrap();
        assert_eq!(rows[0].get("salary_cents"), Some(&Value::Null), "{backend}");
        assert_eq!(rows[0].get("rate"), Some(&Value::Null), "{backend}");
        assert_eq!(rows[1].get("salary_cents"), Some(&Value::Int(200)), "{backend}");

        // In a WHERE clause a NULL matches nothing, not even the NULL row; the optional-filter
        // idiom (`:s IS NULL OR …`) and a bare `SELECT :s` work too.
        let null = Params::new().set("s", Value::Null);
        assert_eq!(ids(&repo, "SELECT id FROM pay WHERE salary_cents = :s", &null).await, NONE, "{backend}");
        assert_eq!(ids(&repo, "SELECT id FROM pay WHERE salary_cents <> :s", &null).await, NONE, "{backend}");
        let optional = "SELECT id FROM pay WHERE :s IS NULL OR salary_cents = :s ORDER BY id";
        assert_eq!(ids(&repo, optional, &null).await, [1, 2], "{backend}");
        assert_eq!(ids(&repo, optional, &Params::new().set("s", 200)).await, [2], "{backend}");
        let rows = repo.query("SELECT :s AS v", &null).await.unwrap();
        assert_eq!(rows[0].get("v"), Some(&Value::Null), "{backend}");

        // The same statement on the demo schema, whose salary_cents is NOT NULL: the same
        // not-null violation everywhere.
        let user = repo.create_user(&NewUser::new("Nul", "nul@example.com")).await.unwrap();
        let job = repo.create_job(&NewJob::new(user.id, "Tester", 100)).await.unwrap();
        let jobs = "UPDATE jobs SET salary_cents = :s WHERE id = :id";
        let err =
            repo.execute(jobs, &Params::new().set("s", Value::Null).set("id", job.id)).await.unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::NotNullViolation), "{backend}: {err}");
        assert_eq!(repo.get_job(job.id).await.unwrap().salary_cents, 100, "{backend}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_parameters_are_exact_numbers() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let repo = Repo::new(pool.clone());
        create_pay_table(&pool).await;
        // 21 significant digits: an f64 holds about 16, and would call .0001 and .0002 equal.
        let big = "12345678901234567.0001";
        let insert = "INSERT INTO pay (id, rate) VALUES (:id, :r)";
        for (id, rate) in [(1, big), (2, "-0.0042")] {
            let p = Params::new().set("id", id).set("r", Value::Decimal(rate.into()));
            assert_eq!(repo.execute(insert, &p).await.unwrap(), 1, "{backend}");
        }

        let rows = repo.query("SELECT id, rate FROM pay ORDER BY id", &Params::new()).await.unwrap();
        let rates: Vec<_> = rows.iter().map(|r| r.get("rate").and_then(Value::as_str).unwrap()).collect();
        assert_eq!(rates, [big, "-0.0042"], "{backend}");
        let r = rows[0].get("rate").unwrap();
        match backend {
            Backend::Sqlite => assert!(matches!(r, Value::Text(_)), "{r:?}"),
            _ => assert!(matches!(r, Value::Decimal(_)), "{backend}: {r:?}"),
        }

        // PostgreSQL refused decimal text compared with numeric: "operator does not exist:
        // numeric = text".
        let eq = "SELECT id FROM pay WHERE rate = :r";
        let dec = |t: &str| Params::new().set("r", Value::Decimal(t.into()));
        assert_eq!(ids(&repo, eq, &dec(big)).await, [1], "{backend}");
        assert_eq!(ids(&repo, eq, &dec("12345678901234567.0002")).await, NONE, "{backend}");
        assert_eq!(ids(&repo, eq, &dec("-0.0042")).await, [2], "{backend}");

        // Into an integer column, and back out of a bare SELECT with its scale.
        let set = "UPDATE pay SET salary_cents = :d WHERE id = :id";
        let p = Params::new().set("d", Value::Decimal("150000".into())).set("id", 2);
        assert_eq!(repo.execute(set, &p).await.unwrap(), 1, "{backend}");
        let rows = repo.query("SELECT salary_cents FROM pay WHERE id = 2", &Params::new()).await.unwrap();
        assert_eq!(rows[0].get("salary_cents"), Some(&Value::Int(150000)), "{backend}");
        let rows = repo
            .query("SELECT :d AS d", &Params::new().set("d", Value::Decimal("12.50".into())))
            .await
            .unwrap();
        assert_eq!(rows[0].get("d").and_then(Value::as_str), Some("12.50"), "{backend}");

        // Text that is not a decimal: refused before the server sees it, nothing written.
        let p = Params::new().set("id", 3).set("r", Value::Decimal("12,50".into()));
        let err = repo.execute(insert, &p).await.unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{backend}: {err}");
        assert!(err.to_string().contains(":r is not a decimal"), "{err}");
        assert_eq!(count_rows(&pool, "pay").await.unwrap(), 2, "{backend}");
    })
    .await;
}
