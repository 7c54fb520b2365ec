//! keel-frames on every backend: a query read as Arrow batches, written as Parquet, Arrow IPC,
//! CSV and JSON Lines, and the Parquet and IPC files read back with arrow-rs's own readers.

use arrow_array::cast::AsArray as _;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use futures_util::TryStreamExt as _;
use keel_frames::{Format, Options};
use keel_pool::{Backend, ErrorKind, Pool};
use keel_repo::Repo;
use keel_repo::raw::{Params, Value};
use keel_schema::{Id, MIGRATIONS};
use keel_test::{exec_on, for_each_backend};

const ROWS: i64 = 300;

fn ddl(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "CREATE TABLE frame_types (id uuid, n integer, big bigint, f double precision, t text, b boolean, \
             bin bytea, at timestamptz, d date, amount numeric(12,2), doc jsonb)"
        }
        Backend::Mysql => {
            "CREATE TABLE frame_types (id BINARY(16), n INT, big BIGINT, f DOUBLE, t VARCHAR(100), b BOOLEAN, \
             bin VARBINARY(100), at DATETIME(6), d DATE, amount DECIMAL(12,2), doc JSON)"
        }
        Backend::Sqlite => {
            "CREATE TABLE frame_types (id BLOB, n INTEGER, big INTEGER, f REAL, t TEXT, b INTEGER, bin BLOB, \
             at TEXT, d TEXT, amount TEXT, doc TEXT)"
        }
    }
}

fn base_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600, 123_456_000).expect("a valid time")
}

fn date(i: i64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date") + chrono::Duration::days(i)
}

/// `ROWS` rows with every type, and one of NULLs last; the ids in order.
async fn fill(pool: &Pool) -> Vec<Id> {
    let backend = pool.backend();
    exec_on(pool, ddl(backend)).await.unwrap();
    let doc = if backend == Backend::Postgres { ":doc::jsonb" } else { ":doc" };
    let insert = format!(
        "INSERT INTO frame_types (id, n, big, f, t, b, bin, at, d, amount, doc) \
         VALUES (:id, :n, :big, :f, :t, :b, :bin, :at, :d, :amount, {doc})"
    );
    let repo = Repo::new(pool.clone());
    let mut ids = Vec::new();
    for i in 0..ROWS {
        let id = Id::new();
        ids.push(id);
        let params = Params::new()
            .set("id", id)
            .set("n", i)
            .set("big", i * 1_000_000_000)
            .set("f", i as f64 / 4.0)
            .set("t", format!("row {i} 'q'"))
            .set("b", i % 2 == 0)
            .set("bin", vec![i as u8, 0, 255])
            .set("at", base_time() + chrono::Duration::seconds(i))
            .set("d", date(i))
            .set("amount", Value::Decimal(format!("{i}.50")))
            .set("doc", format!("{{\"i\": {i}}}"));
        repo.execute(&insert, &params).await.unwrap();
    }
    let nulls = "INSERT INTO frame_types (id, n) VALUES (:id, :n)";
    let id = Id::new();
    ids.push(id);
    repo.execute(nulls, &Params::new().set("id", id).set("n", ROWS)).await.unwrap();
    ids
}

fn expected_types(backend: Backend) -> Vec<DataType> {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    match backend {
        Backend::Postgres | Backend::Mysql => vec![
            DataType::FixedSizeBinary(16),
            DataType::Int32,
            DataType::Int64,
            DataType::Float64,
            DataType::Utf8,
            DataType::Boolean,
            DataType::Binary,
            utc,
            DataType::Date32,
            DataType::Decimal128(12, 2),
            DataType::Utf8,
        ],
        Backend::Sqlite => vec![
            DataType::Binary,
            DataType::Int64,
            DataType::Int64,
            DataType::Float64,
            DataType::Utf8,
            DataType::Int64,
            DataType::Binary,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
        ],
    }
}

/// Row count, column types and a sample of values, against what [`fill`] wrote.
fn check(backend: Backend, batches: &[RecordBatch], ids: &[Id]) {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(total, ids.len(), "{backend}: rows");
    let schema = batches[0].schema();
    let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(types, expected_types(backend), "{backend}: column types");
    let batch = arrow_select::concat::concat_batches(&schema, batches).unwrap();
    for i in [0usize, 7, ROWS as usize - 1] {
        let row = i as i64;
        let id = batch.column(0);
        let id_bytes = match backend {
            Backend::Sqlite => id.as_binary::<i32>().value(i).to_vec(),
            _ => id.as_fixed_size_binary().value(i).to_vec(),
        };
        assert_eq!(id_bytes, ids[i].0.as_bytes().to_vec(), "{backend}: id of row {i}");
        match backend {
            Backend::Sqlite => assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(i), row),
            _ => assert_eq!(i64::from(batch.column(1).as_primitive::<Int32Type>().value(i)), row),
        }
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(i), row * 1_000_000_000);
        assert_eq!(batch.column(3).as_primitive::<Float64Type>().value(i), row as f64 / 4.0);
        assert_eq!(batch.column(4).as_string::<i32>().value(i), format!("row {i} 'q'"));
        assert_eq!(batch.column(6).as_binary::<i32>().value(i), [i as u8, 0, 255]);
        let at = base_time() + chrono::Duration::seconds(row);
        if backend == Backend::Sqlite {
            assert_eq!(batch.column(5).as_primitive::<Int64Type>().value(i), i64::from(i % 2 == 0));
            assert_eq!(
                batch.column(7).as_string::<i32>().value(i),
                at.format(keel_schema::timestamp::SQLITE_FORMAT).to_string()
            );
            assert_eq!(batch.column(9).as_string::<i32>().value(i), format!("{i}.50"));
            continue;
        }
        assert_eq!(batch.column(5).as_boolean().value(i), i % 2 == 0, "{backend}: bool");
        assert_eq!(
            batch.column(7).as_primitive::<TimestampMicrosecondType>().value(i),
            at.timestamp_micros()
        );
        let days = (date(row) - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days();
        assert_eq!(i64::from(batch.column(8).as_primitive::<Date32Type>().value(i)), days);
        assert_eq!(batch.column(9).as_primitive::<Decimal128Type>().value(i), i128::from(row) * 100 + 50);
        let doc: serde_json::Value =
            serde_json::from_str(batch.column(10).as_string::<i32>().value(i)).unwrap();
        assert_eq!(doc, serde_json::json!({ "i": row }), "{backend}: json");
    }
    let last = ids.len() - 1;
    for c in 2..batch.num_columns() {
        assert!(batch.column(c).is_null(last), "{backend}: column {c} of the NULL row");
    }
}

const SELECT: &str =
    "SELECT id, n, big, f, t, b, bin, at, d, amount, doc FROM frame_types WHERE n >= :min ORDER BY n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_round_trip_through_parquet_and_arrow_ipc() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let ids = fill(&pool).await;
        let params = Params::new().set("min", 0);
        // Small batches: many batches, and a last partial one.
        let options = Options::new().batch_rows(64);

        let batches: Vec<RecordBatch> =
            keel_frames::query(&pool, SELECT, &params, &options).await.unwrap().try_collect().await.unwrap();
        assert!(batches.len() > 4, "{backend}: {} batches", batches.len());
        assert!(batches.iter().all(|b| b.num_rows() <= 64));
        check(backend, &batches, &ids);

        let dir = tempfile::tempdir().unwrap();
        let parquet_path = dir.path().join("frame.parquet");
        let file = std::io::BufWriter::new(std::fs::File::create(&parquet_path).unwrap());
        let q = keel_frames::query(&pool, SELECT, &params, &options).await.unwrap();
        let written = keel_frames::write(q, Format::Parquet, file).await.unwrap();
        assert_eq!(written.rows, ids.len() as u64);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&parquet_path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        check(backend, &back, &ids);

        for format in [Format::ArrowFile, Format::ArrowStream] {
            let q = keel_frames::query(&pool, SELECT, &params, &options).await.unwrap();
            let bytes = keel_frames::write::write_with(q, format, Vec::new(), |_| {}).await.unwrap().1;
            let back: Vec<RecordBatch> = if format == Format::ArrowFile {
                let r = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
                r.collect::<Result<_, _>>().unwrap()
            } else {
                let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
                r.collect::<Result<_, _>>().unwrap()
            };
            check(backend, &back, &ids);
        }

        // CSV: a header and a line per row; JSON Lines: an object per row, NULLs kept.
        let q = keel_frames::query(&pool, SELECT, &params, &options).await.unwrap();
        let csv = String::from_utf8(
            keel_frames::write::write_with(q, Format::Csv, Vec::new(), |_| {}).await.unwrap().1,
        )
        .unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("id,n,big,f,t,b,bin,at,d,amount,doc"), "{backend}");
        assert_eq!(lines.count(), ids.len(), "{backend}: CSV lines");
        let q = keel_frames::query(&pool, SELECT, &Params::new().set("min", ROWS), &options).await.unwrap();
        let jsonl = String::from_utf8(
            keel_frames::write::write_with(q, Format::JsonLines, Vec::new(), |_| {}).await.unwrap().1,
        )
        .unwrap();
        let row: serde_json::Value = serde_json::from_str(jsonl.trim()).unwrap();
        assert_eq!(row["n"], serde_json::json!(ROWS), "{backend}: {jsonl}");
        assert_eq!(row["t"], serde_json::Value::Null, "{backend}: {jsonl}");

        // The parameter filters (inlined as a literal on PostgreSQL's COPY).
        let q =
            keel_frames::query(&pool, SELECT, &Params::new().set("min", ROWS - 9), &options).await.unwrap();
        let n: usize = q.try_collect::<Vec<_>>().await.unwrap().iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n, 10, "{backend}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_name_bad_parameters_and_unsupported_types() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let options = Options::new();
        let err =
            keel_frames::query(&pool, "SELECT name FROM users WHERE name = :nmae", &Params::new(), &options)
                .await
                .err()
                .expect("a missing parameter fails");
        assert!(err.to_string().contains("missing parameter :nmae"), "{backend}: {err}");
        let err = keel_frames::query(&pool, "SELECT name FROM users", &Params::new().set("x", 1), &options)
            .await
            .err()
            .expect("an unused parameter fails");
        assert!(err.to_string().contains(":x"), "{backend}: {err}");
        assert!(
            matches!(&err, keel_frames::Error::Db(e) if e.kind() == ErrorKind::InvalidInput),
            "{backend}: {err:?}"
        );
        let odd = match backend {
            Backend::Postgres => "SELECT interval '1 day' AS gap",
            Backend::Mysql => "SELECT CAST('10:00:00' AS TIME) AS gap",
            Backend::Sqlite => return,
        };
        let err = keel_frames::query(&pool, odd, &Params::new(), &options)
            .await
            .err()
            .expect("an unknown type fails");
        match &err {
            keel_frames::Error::UnsupportedType { column, db_type } => {
                assert_eq!(column, "gap");
                assert!(!db_type.is_empty());
            }
            other => panic!("{backend}: {other:?}"),
        }
        assert!(err.to_string().contains("column gap"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_stream_stops_the_query_when_dropped() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let big = match backend {
            Backend::Postgres => "SELECT g AS n FROM generate_series(1, 50000000) AS g",
            Backend::Mysql => {
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 50000000) SELECT n FROM s"
            }
            Backend::Sqlite => {
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 50000000) SELECT n FROM s"
            }
        };
        let started = std::time::Instant::now();
        let mut q = keel_frames::query(&pool, big, &Params::new(), &Options::new().batch_rows(1000)).await.unwrap();
        let first = q.try_next().await.unwrap().expect("a first batch");
        assert_eq!(first.num_rows(), 1000);
        drop(q);
        // Bounded memory: the reader stopped; the pool still serves.
        assert_eq!(keel_test::count_rows(&pool, "users").await.unwrap(), 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{backend}: {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_http_export_streams_jobs() {
    use tower::ServiceExt as _;
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let repo = Repo::new(pool.clone());
        jobs_of_one_user(&repo, 25).await;
        let app = keel_demo::serve::router(keel_demo::serve::AppState::new(
            repo,
            keel_demo::serve::Settings::default(),
        ));
        for (format, content_type) in [
            ("csv", "text/csv; charset=utf-8"),
            ("parquet", "application/vnd.apache.parquet"),
            ("arrow", "application/vnd.apache.arrow.stream"),
        ] {
            let req = axum::http::Request::get(format!("/export/jobs?format={format}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200, "{backend} {format}");
            assert_eq!(res.headers()["content-type"], content_type, "{backend}");
            let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            let rows: usize = match format {
                "csv" => String::from_utf8(body.to_vec()).unwrap().lines().count() - 1,
                "parquet" => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap().num_rows())
                    .sum(),
                _ => arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
                    .unwrap()
                    .map(|b| b.unwrap().num_rows())
                    .sum(),
            };
            assert_eq!(rows, 25, "{backend} {format}");
        }
        let req =
            axum::http::Request::get("/export/jobs?format=xls").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), 400);
    })
    .await;
}

/// A user (Ada) with `n` jobs `job 0` … titled, paid 0, 100, 200 … cents; the user's id.
async fn jobs_of_one_user(repo: &Repo, n: i64) -> Id {
    let user = Id::new();
    let insert_user = "INSERT INTO users (id, name, email, created_at) VALUES (:id, 'Ada', :email, :at)";
    let params =
        Params::new().set("id", user).set("email", format!("ada.{user}@x.org")).set("at", keel_schema::now());
    repo.execute(insert_user, &params).await.unwrap();
    for i in 0..n {
        let sql =
            "INSERT INTO jobs (id, user_id, title, salary_cents, created_at) VALUES (:id, :u, :t, :s, :at)";
        let p = Params::new()
            .set("id", Id::new())
            .set("u", user)
            .set("t", format!("job {i}"))
            .set("s", i * 100)
            .set("at", keel_schema::now());
        repo.execute(sql, &p).await.unwrap();
    }
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_read_typed_diesel_queries() {
    use diesel::prelude::*;
    use keel_schema::schema::{jobs, users};
    for_each_backend(&MIGRATIONS, |pool| async move {
        let backend = pool.backend();
        let repo = Repo::new(pool.clone());
        let before = keel_schema::Timestamp::now();
        let user = jobs_of_one_user(&repo, 25).await;
        jobs_of_one_user(&repo, 3).await; // another user's jobs, filtered out below
        // Binds of every kind the schema has: a uuid (a type PostgreSQL looks up by name), a
        // bigint, a UTC timestamp (MySQL's MYSQL_TIME encoding) and text.
        let query = jobs::table
            .filter(jobs::user_id.eq(user))
            .filter(jobs::salary_cents.ge(1_000i64))
            .filter(jobs::created_at.gt(before))
            .filter(jobs::title.ne("job 12"))
            .order(jobs::salary_cents)
            .select((jobs::id, jobs::title, jobs::salary_cents));
        let batches: Vec<RecordBatch> =
            keel_frames::query_diesel(&pool, query, &Options::new().batch_rows(4))
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
        assert!(batches.len() > 1, "{backend}: {} batches", batches.len());
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "title", "salary_cents"], "{backend}");
        let id_type =
            if backend == Backend::Sqlite { DataType::Binary } else { DataType::FixedSizeBinary(16) };
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, [id_type, DataType::Utf8, DataType::Int64], "{backend}");
        let batch = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
        let expected: Vec<i64> = (10..25).filter(|i| *i != 12).collect();
        let titles: Vec<String> =
            (0..batch.num_rows()).map(|i| batch.column(1).as_string::<i32>().value(i).to_owned()).collect();
        assert_eq!(titles, expected.iter().map(|i| format!("job {i}")).collect::<Vec<_>>(), "{backend}");
        let salaries: Vec<i64> = batch.column(2).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(salaries, expected.iter().map(|i| i * 100).collect::<Vec<_>>(), "{backend}");

        // The same rows as the raw-SQL path reads (ids included).
        let raw = "SELECT id, title, salary_cents FROM jobs WHERE user_id = :u AND salary_cents >= 1000 \
                   AND title <> 'job 12' ORDER BY salary_cents";
        let by_raw: Vec<RecordBatch> =
            keel_frames::query(&pool, raw, &Params::new().set("u", user), &Options::new())
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
        let by_raw = arrow_select::concat::concat_batches(&by_raw[0].schema(), &by_raw).unwrap();
        assert_eq!(by_raw.columns(), batch.columns(), "{backend}: typed and raw agree");

        // A whole table, and an empty result (still a schema, no batch).
        let all: Vec<RecordBatch> = keel_frames::query_diesel(&pool, users::table, &Options::new())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.iter().map(RecordBatch::num_rows).sum::<usize>(), 2, "{backend}");
        assert_eq!(all[0].num_columns(), 4, "{backend}");
        let none =
            keel_frames::query_diesel(&pool, users::table.filter(users::name.eq("nobody")), &Options::new())
                .await
                .unwrap();
        // SQLite types values, not columns: an empty result has no column to read (see the
        // sqlite reader's docs), on the raw path as here.
        let columns = if backend == Backend::Sqlite { 0 } else { 4 };
        assert_eq!(none.schema().fields().len(), columns, "{backend}");
        assert_eq!(none.try_collect::<Vec<_>>().await.unwrap().len(), 0, "{backend}");
    })
    .await;
}
