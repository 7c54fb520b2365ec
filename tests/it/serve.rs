//! `keel-demo serve`'s router in process (axum's `examples/testing` shape): every route and
//! error status on every backend, driven through `tower::ServiceExt::oneshot` — no port, no
//! process. What needs a real process (signals, exit codes, logs, an outage through a proxy)
//! is tested in `crates/keel-demo/tests/cli`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use keel_demo::serve::{AppState, Settings, router};
use keel_pool::{Backend, Pool};
use keel_repo::Repo;
use keel_schema::Id;
use keel_schema::MIGRATIONS;
use keel_test::http::Response as Resp;
use keel_test::{count_rows, for_each_backend, run_on, test_db};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The application in process; every body is checked for SQL and panics.
pub(crate) struct Api {
    app: Router,
}

/// A request to `path`, with a body of `content_type` when given.
fn request(method: &str, path: &str, body: Option<String>, content_type: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("a valid request")
}

impl Api {
    fn new(pool: &Pool, settings: Settings) -> Api {
        Api::over(Repo::new(pool.clone()), settings)
    }

    /// The application over `repo` (say, one reading through a cache).
    pub(crate) fn over(repo: Repo, settings: Settings) -> Api {
        Api { app: router(AppState::new(repo, settings)) }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.expect("the router is infallible");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("a whole body");
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 bodies");
        Resp::new(status, headers, text, None)
    }

    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.send(request("GET", path, None, None)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(request("DELETE", path, None, None)).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(request("POST", path, Some(body.to_string()), Some("application/json"))).await
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(request("PATCH", path, Some(body.to_string()), Some("application/json"))).await
    }

    async fn post_raw(&self, path: &str, body: &str, content_type: Option<&str>) -> Resp {
        self.send(request("POST", path, Some(body.to_owned()), content_type)).await
    }

    async fn transfer(&self, key: Option<&str>, body: &Value) -> Resp {
        let mut req = request("POST", "/transfers", Some(body.to_string()), Some("application/json"));
        if let Some(key) = key {
            req.headers_mut().insert("idempotency-key", key.parse().expect("a header value"));
        }
        self.send(req).await
    }

    pub(crate) async fn metrics(&self) -> String {
        self.get("/metrics").await.into_prometheus_text()
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

async fn balance(api: &Api, account: Id) -> i64 {
    let res = api.get(&format!("/accounts/{account}")).await;
    res.expect(200, None);
    res.json()["balance_cents"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_error_status_on_every_backend() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let api = Api::new(&pool, Settings::default());

        // Health.
        let res = api.get("/health").await;
        res.expect(200, None);
        assert_eq!(res.json()["backend"], pool.backend().as_str());

        // Create, read, update.
        let res = api.post("/users", &json!({ "name": "Ada Lovelace", "email": "ada@example.com" })).await;
        res.expect(201, None);
        let ada = res.json();
        let ada_id = id_of(&ada);
        assert_eq!(ada["name"], "Ada Lovelace");
        assert_eq!(res.headers["location"].to_str().unwrap(), format!("/users/{ada_id}"));
        let res = api.get(&format!("/users/{ada_id}")).await;
        res.expect(200, None);
        assert_eq!(res.json(), ada);
        let res = api.patch(&format!("/users/{ada_id}"), &json!({ "name": "Ada King" })).await;
        res.expect(200, None);
        assert_eq!(res.json()["name"], "Ada King");
        assert_eq!(res.json()["email"], "ada@example.com");

        // 409: duplicate email, on create and on update.
        api.post("/users", &json!({ "name": "Other", "email": "ada@example.com" }))
            .await
            .expect(409, Some("unique_violation"));
        let res = api.post("/users", &json!({ "name": "Grace", "email": "grace@example.com" })).await;
        res.expect(201, None);
        let grace_id = id_of(&res.json());
        api.patch(&format!("/users/{grace_id}"), &json!({ "email": "ada@example.com" }))
            .await
            .expect(409, Some("unique_violation"));

        // Listing: search, keyset pages, cursor round trip.
        for i in 0..3 {
            api.post(
                "/users",
                &json!({ "name": format!("Page Person {i}"), "email": format!("p{i}@example.com") }),
            )
            .await
            .expect(201, None);
        }
        let res = api.get("/users?search=ada").await;
        res.expect(200, None);
        let page = res.json();
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["next_cursor"], Value::Null);
        let mut names = Vec::new();
        let mut path = "/users?search=page%20person&limit=2".to_owned();
        loop {
            let res = api.get(&path).await;
            res.expect(200, None);
            let page = res.json();
            names.extend(
                page["items"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/users?search=page%20person&limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(names, ["Page Person 0", "Page Person 1", "Page Person 2"]);
        let res = api.get("/users").await;
        res.expect(200, None);
        assert_eq!(res.json()["items"].as_array().unwrap().len(), 5);

        // 400s: malformed JSON, wrong content type, unknown field, bad UUID, bad cursor, bad
        // limit, too-long values.
        api.post_raw("/users", "{\"name\": \"x\", ", Some("application/json"))
            .await
            .expect(400, Some("invalid_input"));
        api.post_raw("/users", "{\"name\":\"x\",\"email\":\"y@z\"}", Some("text/plain"))
            .await
            .expect(400, Some("invalid_input"));
        api.post_raw("/users", "{\"name\":\"x\",\"email\":\"y@z\"}", None)
            .await
            .expect(400, Some("invalid_input"));
        api.post("/users", &json!({ "name": "x", "email": "y@z", "admin": true }))
            .await
            .expect(400, Some("invalid_input"));
        api.post("/users", &json!({ "name": "x" })).await.expect(400, Some("invalid_input"));
        api.get("/users/not-a-uuid").await.expect(400, Some("invalid_input"));
        api.delete("/users/1234").await.expect(400, Some("invalid_input"));
        api.get("/accounts/zzz").await.expect(400, Some("invalid_input"));
        api.get("/users?cursor=not-a-cursor").await.expect(400, Some("invalid_input"));
        api.get("/users?limit=0").await.expect(400, Some("invalid_input"));
        api.get("/users?limit=lots").await.expect(400, Some("invalid_input"));
        let long = "x".repeat(101);
        api.get(&format!("/users?search={long}")).await.expect(400, Some("invalid_input"));
        api.post("/users", &json!({ "name": long, "email": "long@example.com" }))
            .await
            .expect(400, Some("invalid_input"));
        api.post("/users", &json!({ "name": "", "email": "empty@example.com" }))
            .await
            .expect(400, Some("invalid_input"));
        api.post("/users", &json!({ "name": "nul\u{0}byte", "email": "nul@example.com" }))
            .await
            .expect(400, Some("invalid_input"));
        api.patch(&format!("/users/{ada_id}"), &json!({ "name": long }))
            .await
            .expect(400, Some("invalid_input"));

        // 413: a body over the limit, in the same JSON shape.
        let huge = json!({ "name": "x".repeat(100 * 1024), "email": "huge@example.com" });
        api.post("/users", &huge).await.expect(413, Some("invalid_input"));

        // 404s.
        let missing = Id::new();
        api.get(&format!("/users/{missing}")).await.expect(404, Some("not_found"));
        api.patch(&format!("/users/{missing}"), &json!({ "name": "x" })).await.expect(404, Some("not_found"));
        api.delete(&format!("/users/{missing}")).await.expect(404, Some("not_found"));
        api.get(&format!("/users/{missing}/jobs")).await.expect(404, Some("not_found"));
        api.post(&format!("/users/{missing}/jobs"), &json!({ "title": "Ghost", "salary_cents": 1 }))
            .await
            .expect(404, Some("not_found"));
        api.get(&format!("/accounts/{missing}")).await.expect(404, Some("not_found"));
        api.get("/no/such/route").await.expect(404, Some("not_found"));
        let res = api.send(request("PUT", "/users", None, None)).await;
        res.expect(405, Some("invalid_input"));

        // Jobs.
        let res = api.get(&format!("/users/{ada_id}/jobs")).await;
        res.expect(200, None);
        assert_eq!(res.json()["items"], json!([]));
        let res = api
            .post(&format!("/users/{ada_id}/jobs"), &json!({ "title": "Analyst", "salary_cents": 120_000 }))
            .await;
        res.expect(201, None);
        let job = res.json();
        assert_eq!(job["user_id"], ada_id.as_str());
        api.post(&format!("/users/{ada_id}/jobs"), &json!({ "title": "Analyst", "salary_cents": -1 }))
            .await
            .expect(400, Some("invalid_input"));
        api.post(&format!("/users/{ada_id}/jobs"), &json!({ "title": "x".repeat(201), "salary_cents": 1 }))
            .await
            .expect(400, Some("invalid_input"));
        let res = api.get(&format!("/users/{ada_id}/jobs")).await;
        res.expect(200, None);
        assert_eq!(res.json()["items"], json!([job]));

        // Accounts and transfers (accounts are opened through the repository: no route).
        let repo = Repo::new(pool.clone());
        let owner: Id = ada_id.parse().unwrap();
        let a = repo.create_account(owner, 1_000).await.unwrap().id;
        let b = repo.create_account(owner, 0).await.unwrap().id;
        let res = api.get(&format!("/accounts/{a}")).await;
        res.expect(200, None);
        assert_eq!(res.json()["owner_id"], ada_id.as_str());
        let body = json!({ "from_account": a, "to_account": b, "amount_cents": 300 });
        api.transfer(None, &body).await.expect(400, Some("invalid_input"));
        api.transfer(Some(&"k".repeat(101)), &body).await.expect(400, Some("invalid_input"));
        let first = api.transfer(Some("order-1"), &body).await;
        first.expect(201, None);
        assert_eq!(first.json()["applied_now"], true);
        assert_eq!(first.json()["amount_cents"], 300);
        let again = api.transfer(Some("order-1"), &body).await;
        again.expect(200, None);
        assert_eq!(again.json()["applied_now"], false);
        assert_eq!(again.json()["id"], first.json()["id"]);
        assert_eq!((balance(&api, a).await, balance(&api, b).await), (700, 300));
        assert_eq!(count_rows(&pool, "transfers").await.unwrap(), 1);
        // The same key for another transfer is refused, and moves nothing.
        let other = json!({ "from_account": a, "to_account": b, "amount_cents": 1 });
        api.transfer(Some("order-1"), &other).await.expect(400, Some("invalid_input"));
        // 422: not enough money; nothing changes.
        let too_much = json!({ "from_account": a, "to_account": b, "amount_cents": 5_000 });
        api.transfer(Some("order-2"), &too_much).await.expect(422, Some("insufficient_funds"));
        assert_eq!((balance(&api, a).await, balance(&api, b).await), (700, 300));
        let to_nowhere = json!({ "from_account": a, "to_account": missing, "amount_cents": 1 });
        api.transfer(Some("order-3"), &to_nowhere).await.expect(404, Some("not_found"));
        let zero = json!({ "from_account": a, "to_account": b, "amount_cents": 0 });
        api.transfer(Some("order-4"), &zero).await.expect(400, Some("invalid_input"));
        let bad_id = json!({ "from_account": "nope", "to_account": b, "amount_cents": 1 });
        api.transfer(Some("order-5"), &bad_id).await.expect(400, Some("invalid_input"));
        assert_eq!(count_rows(&pool, "transfers").await.unwrap(), 1);
        assert_eq!((balance(&api, a).await, balance(&api, b).await), (700, 300));

        // Delete: 204, then gone (with its jobs).
        let res = api.delete(&format!("/users/{grace_id}")).await;
        res.expect(204, None);
        assert!(res.text.is_empty());
        api.get(&format!("/users/{grace_id}")).await.expect(404, Some("not_found"));

        // Metrics: the families, route templates (never raw ids) as labels.
        let text = api.metrics().await;
        for family in [
            "keel_pool_connections ",
            "keel_pool_idle_connections ",
            "keel_pool_in_use_connections ",
            "keel_pool_waiters ",
            "keel_pool_connections_created_total ",
            "keel_pool_acquires_total ",
            "keel_pool_acquire_timeouts_total ",
            "keel_queries_total ",
            "keel_query_errors_total ",
            "keel_transactions_total ",
            "keel_retries_total{kind=\"deadlock\"} ",
            "keel_query_duration_seconds_bucket{le=\"0.001\"} ",
            "keel_query_duration_seconds_bucket{le=\"+Inf\"} ",
            "keel_query_duration_seconds_sum ",
            "keel_query_duration_seconds_count ",
            "# TYPE keel_query_duration_seconds histogram",
            "http_requests_total{route=\"/users/{id}\",method=\"GET\",status=\"200\"} ",
            "http_requests_total{route=\"/users/{id}\",method=\"GET\",status=\"404\"} ",
            "http_requests_total{route=\"/users\",method=\"POST\",status=\"409\"} ",
            "http_requests_total{route=\"/transfers\",method=\"POST\",status=\"422\"} ",
            "http_requests_total{route=\"/users\",method=\"POST\",status=\"413\"} ",
        ] {
            assert!(text.contains(family), "missing {family:?} in\n{text}");
        }
        assert!(
            !text.contains(&ada_id) && !text.contains(&missing.to_string()),
            "raw ids as labels:\n{text}"
        );
        let queries: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("keel_queries_total "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(queries > 0, "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_is_stopped_with_504() {
    let Some(db) = test_db(Backend::Sqlite, &MIGRATIONS).await else { return };
    run_on(db, |pool| async move {
        let settings = Settings::default().request_timeout(Duration::from_secs(1)).test_routes(true);
        let api = Api::new(&pool, settings);
        api.get("/debug/sleep?ms=30000").await.expect(504, Some("statement_timeout"));
        // The connection it held went back to the pool: the server still answers.
        api.get("/health").await.expect(200, None);
    })
    .await;
}

/// Statements of this database's sessions sleeping on the server right now (`GET
/// /debug/db-sleep`), not counting the session that asks.
async fn sleeping_statements(side: &Pool) -> i64 {
    let sql = match side.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND query LIKE '%pg_sleep(%' AND pid <> pg_backend_pid()"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = DATABASE() \
             AND INFO LIKE '%SLEEP(%' AND ID <> CONNECTION_ID()"
        }
    };
    keel_test::query_count(side, sql).await.unwrap()
}

/// Waits `at_least`, then (at most 2 s more) for the sleeping statements to go; how many are left.
async fn sleeping_after(side: &Pool, at_least: Duration) -> i64 {
    tokio::time::sleep(at_least).await;
    keel_test::settles_to_zero(|| sleeping_statements(side)).await
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn user_reads(api: &Api, path: &str) -> Vec<Duration> {
    let mut took = Vec::new();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        api.get(path).await.expect(200, None);
        took.push(t.elapsed());
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_stops_the_statement_on_the_server() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return; // no server-side sleep, nothing left running on a server
        }
        let settings = Settings::default().request_timeout(Duration::from_millis(50)).test_routes(true);
        let api = Api::new(&pool, settings);
        let side = keel_test::side_pool(&pool).await;
        let ada = api.post("/users", &json!({"name": "Ada", "email": "ada@example.com"})).await;
        let path = format!("/users/{}", id_of(&ada.expect(201, None).json()));
        let quiet = median(user_reads(&api, &path).await);

        api.get("/debug/db-sleep?ms=5000").await.expect(504, Some("statement_timeout"));
        let meanwhile = median(user_reads(&api, &path).await);
        let left = sleeping_after(&side, Duration::from_millis(200)).await;
        eprintln!("{b}: GET {path} median {quiet:?} before, {meanwhile:?} right after a 504 of a slow read");
        assert_eq!(left, 0, "{b}: the timed-out request's statement still runs on the server");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_stops_its_statement_on_the_server() {
    use tokio::io::AsyncWriteExt as _;
    for_each_backend(&MIGRATIONS, |pool| async move {
        let b = pool.backend();
        if b == Backend::Sqlite {
            return;
        }
        // A real socket, with the default 30 s request timeout: only the hang-up can stop it.
        let app = router(AppState::new(Repo::new(pool.clone()), Settings::default().test_routes(true)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let side = keel_test::side_pool(&pool).await;

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /debug/db-sleep?ms=10000 HTTP/1.1\r\nhost: keel\r\n\r\n").await.unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while sleeping_statements(&side).await == 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sleeping_statements(&side).await, 1, "{b}: the slow read never started");
        drop(client);
        let left = sleeping_after(&side, Duration::from_millis(100)).await;
        server.abort();
        assert_eq!(left, 0, "{b}: the statement of a request whose client hung up still runs on the server");
    })
    .await;
}
