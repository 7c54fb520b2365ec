//! `keel-demo serve` tested over real HTTP: the binary is started on `127.0.0.1:0`, the port
//! read from its one line of stdout, and every route and error status exercised with reqwest.
//! The PostgreSQL outage runs through a TCP proxy the test controls (the shared server is never
//! touched). No assertion depends on timing; deadlines only stop a hung test.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use keel_pool::testing::{count_rows, for_each_backend, run_on, test_db};
use keel_pool::{Backend, Pool};
use keel_repo::Repo;
use keel_schema::{Id, NewUser};
use keel_tests::{Proxy, server_addr};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// How long any wait in these tests may last before the test is declared hung.
const HANG: Duration = Duration::from_secs(60);

/// A running `keel-demo serve`; killed on drop (a failing test leaves no process behind).
struct Server {
    child: Child,
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server on `url` with extra flags and environment, and waits for its
    /// `listening on http://…` line.
    fn start(url: &str, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel-demo"));
        cmd.args(["--database-url", url, "serve", "--addr", "127.0.0.1:0"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .env("KEEL_DEMO_TEST_ROUTES", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("keel-demo starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let (first_tx, first_rx) = mpsc::channel();
        let mut out_pipe = BufReader::new(child.stdout.take().unwrap());
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = out_pipe.read_line(&mut line);
            sink.lock().unwrap().push_str(&line);
            let _ = first_tx.send(line);
            let mut rest = String::new();
            let _ = out_pipe.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        let mut server = Server { child, base: String::new(), stdout, stderr };
        let line = match first_rx.recv_timeout(HANG) {
            Ok(line) => line,
            Err(e) => panic!("no `listening on` line ({e}); stderr:\n{}", server.stderr()),
        };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            panic!("unexpected first line {line:?}; stderr:\n{}", server.stderr());
        };
        server.base = addr.to_owned();
        server
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name} failed");
    }

    /// Waits for the process to exit (panics after [`HANG`]).
    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the server did not exit; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then: exit status 0, exactly one line on stdout, no secret in the logs.
    fn stop_cleanly(mut self, signal: &str, secret: Option<&str>) {
        self.signal(signal);
        let status = self.wait_exit();
        let stderr = self.stderr();
        assert!(status.success(), "exit status {status:?}; stderr:\n{stderr}");
        // The reader thread finishes once the pipe closes.
        let until = Instant::now() + HANG;
        while Arc::strong_count(&self.stdout) > 1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stdout = self.stdout.lock().unwrap().clone();
        assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout:\n{stdout}");
        if let Some(secret) = secret {
            assert!(!stderr.contains(secret), "the password is in the logs:\n{stderr}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One response, its body already checked for leaks.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error kind of an error response (and a check of its shape).
    fn kind(&self) -> String {
        let v = self.json();
        let err = &v["error"];
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {v}");
        err["kind"].as_str().unwrap_or_else(|| panic!("not an error body: {v}")).to_owned()
    }

    /// Asserts the status and, for errors, the kind.
    #[track_caller]
    fn expect(&self, status: u16, kind: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        if let Some(kind) = kind {
            assert_eq!(self.kind(), kind, "{}", self.text);
        }
        self
    }

    fn retry_after(&self) -> Option<&str> {
        self.headers.get("retry-after").and_then(|v| v.to_str().ok())
    }
}

/// A client for one server; every body is checked for SQL and for the database password.
struct Api {
    http: reqwest::Client,
    base: String,
    secret: Option<String>,
}

impl Api {
    fn new(server: &Server, secret: Option<&str>) -> Api {
        let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
        Api { http, base: server.base.clone(), secret: secret.map(str::to_owned) }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let res = req.send().await.expect("the server answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        for leak in ["SELECT", "INSERT", "UPDATE ", "DELETE FROM", "stack backtrace", "panicked"] {
            assert!(!text.contains(leak), "{leak:?} leaked into a response: {text}");
        }
        if let Some(secret) = &self.secret {
            assert!(!text.contains(secret.as_str()), "the password leaked into a response: {text}");
        }
        Resp { status, headers, text }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

    async fn post_raw(&self, path: &str, body: &str, content_type: Option<&str>) -> Resp {
        let mut req = self.http.post(self.url(path)).body(body.to_owned());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }

    async fn transfer(&self, key: Option<&str>, body: &Value) -> Resp {
        let mut req = self.http.post(self.url("/transfers")).json(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        self.send(req).await
    }

    async fn metrics(&self) -> String {
        let res = self.get("/metrics").await;
        res.expect(200, None);
        let ct = res.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        res.text
    }

    /// Polls `/metrics` until it has `line`.
    async fn wait_for_metric(&self, line: &str) {
        let until = Instant::now() + HANG;
        loop {
            let text = self.metrics().await;
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(Instant::now() < until, "never saw {line:?} in\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn url_of(pool: &Pool) -> String {
    pool.config().url().expose_secret().to_owned()
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
    for_each_backend("serve_routes", |pool| async move {
        let server = Server::start(&url_of(&pool), &[], &[]);
        let api = Api::new(&server, None);

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
        let res = api.send(api.http.put(api.url("/users"))).await;
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

        server.stop_cleanly("-INT", None);
    })
    .await;
}

/// The URL with a password (added if it has none) and the password, so leaks can be detected.
fn with_password(url: &str) -> (String, String) {
    const SECRET: &str = "serve-test-s3cret-pw";
    let (scheme, rest) = url.split_once("://").unwrap();
    let Some((userinfo, host)) = rest.split_once('@') else {
        return (format!("{scheme}://root:{SECRET}@{rest}"), SECRET.to_owned());
    };
    match userinfo.split_once(':') {
        Some((_, pw)) if !pw.is_empty() => (url.to_owned(), pw.to_owned()),
        _ => {
            let user = userinfo.split(':').next().unwrap();
            (format!("{scheme}://{user}:{SECRET}@{host}"), SECRET.to_owned())
        }
    }
}

/// Polls `path` until it answers 200.
async fn until_ok(api: &Api, path: &str) -> Resp {
    let until = Instant::now() + HANG;
    loop {
        let res = api.get(path).await;
        if res.status == 200 {
            return res;
        }
        assert_eq!(res.status, 503, "{}", res.text);
        assert!(Instant::now() < until, "{path} never recovered: {}", res.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_gives_503_with_retry_after_then_recovers() {
    const TEST: &str = "serve_pg_outage";
    let Some(db) = test_db(Backend::Postgres, TEST).await else { return };
    run_on(db, TEST, |pool| async move {
        let url = url_of(&pool);
        let proxy = Proxy::start(server_addr(&url)).await;
        // Trust authentication ignores the password; it is only there to prove it never leaks.
        let (proxied, secret) = with_password(&proxy.url_for(&url));
        let env = [
            ("KEEL_ACQUIRE_TIMEOUT_MS", "500"),
            ("KEEL_CONNECT_TIMEOUT_MS", "1000"),
            ("KEEL_RETRY_DEADLINE_MS", "1000"),
            ("RUST_LOG", "info"),
        ];
        let server = Server::start(&proxied, &[], &env);
        let api = Api::new(&server, Some(&secret));

        api.get("/health").await.expect(200, None);
        let res = api.post("/users", &json!({ "name": "Outage", "email": "outage@example.com" })).await;
        res.expect(201, None);
        let user = id_of(&res.json());

        // The database goes away: open connections are cut and new ones refused.
        proxy.set_accepting(false);
        proxy.cut_all();
        let transient =
            ["connect", "acquire_timeout", "connection_lost", "server_shutdown", "too_many_connections"];
        // The proxy's pipes notice the cut asynchronously: wait for the first 503, after which
        // every request fails until the proxy accepts again.
        let until = Instant::now() + HANG;
        while api.get("/health").await.status == 200 {
            assert!(Instant::now() < until, "/health never noticed the outage");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for path in
            ["/health".to_owned(), format!("/users/{user}"), format!("/users/{user}"), "/health".to_owned()]
        {
            let res = api.get(&path).await;
            res.expect(503, None);
            assert!(transient.contains(&res.kind().as_str()), "{}", res.text);
            assert_eq!(res.retry_after(), Some("1"), "{res:?}");
        }
        let res = api.post("/users", &json!({ "name": "Down", "email": "down@example.com" })).await;
        res.expect(503, None);
        assert_eq!(res.retry_after(), Some("1"));
        let body = json!({ "from_account": Id::new(), "to_account": Id::new(), "amount_cents": 1 });
        let res = api.transfer(Some("while-down"), &body).await;
        res.expect(503, None);
        assert!(transient.contains(&res.kind().as_str()), "{}", res.text);
        let text = api.metrics().await;
        for route in ["/health", "/users/{id}"] {
            let series = format!("http_requests_total{{route=\"{route}\",method=\"GET\",status=\"503\"}}");
            assert!(text.contains(&series), "no {series} in\n{text}");
        }

        // It comes back: the same server answers again without a restart.
        proxy.set_accepting(true);
        until_ok(&api, "/health").await;
        let res = until_ok(&api, &format!("/users/{user}")).await;
        assert_eq!(res.json()["name"], "Outage");
        api.post("/users", &json!({ "name": "Back", "email": "back@example.com" })).await.expect(201, None);

        let stderr = server.stderr();
        assert!(stderr.contains("database unavailable"), "the outage is logged:\n{stderr}");
        server.stop_cleanly("-TERM", Some(&secret));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_gives_503_and_shutdown_finishes_the_in_flight_request() {
    for_each_backend("serve_shutdown", |pool| async move {
        let env = [("KEEL_POOL_MAX_SIZE", "1"), ("KEEL_ACQUIRE_TIMEOUT_MS", "300")];
        let mut server = Server::start(&url_of(&pool), &["--shutdown-timeout-secs", "120"], &env);
        let api = Api::new(&server, None);
        let user =
            Repo::new(pool.clone()).create_user(&NewUser::new("Slow", "slow@example.com")).await.unwrap();

        // A slow request holds the only connection.
        let slow_url = api.url("/debug/sleep?ms=4000");
        let http = api.http.clone();
        let slow = tokio::spawn(async move {
            let res = http.get(slow_url).send().await?;
            let status = res.status().as_u16();
            Ok::<_, reqwest::Error>((status, res.text().await?))
        });
        api.wait_for_metric("keel_pool_in_use_connections 1").await;
        api.wait_for_metric("http_requests_in_flight{route=\"/debug/sleep\"} 1").await;

        // Nothing left to check out: 503 with Retry-After, not a hang.
        let res = api.get(&format!("/users/{}", user.id)).await;
        res.expect(503, Some("acquire_timeout"));
        assert_eq!(res.retry_after(), Some("1"));

        // SIGTERM while the slow request is in flight: it completes (its last query runs on the
        // still-open pool), then the process exits 0.
        server.signal("-TERM");
        let (status, body) =
            tokio::time::timeout(HANG, slow).await.expect("the slow request ends").unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["slept_ms"], 4000);
        let exit = server.wait_exit();
        assert!(exit.success(), "exit status {exit:?}; stderr:\n{}", server.stderr());
        assert!(reqwest::get(api.url("/health")).await.is_err(), "nothing listens after exit");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_is_stopped_with_504() {
    const TEST: &str = "serve_timeout";
    let Some(db) = test_db(Backend::Sqlite, TEST).await else { return };
    run_on(db, TEST, |pool| async move {
        let server = Server::start(&url_of(&pool), &["--request-timeout-secs", "1"], &[]);
        let api = Api::new(&server, None);
        api.get("/debug/sleep?ms=30000").await.expect(504, Some("statement_timeout"));
        // The connection it held went back to the pool: the server still answers.
        api.get("/health").await.expect(200, None);
        server.stop_cleanly("-TERM", None);

        // A request still running at the shutdown deadline does not keep the process alive.
        let mut server = Server::start(&url_of(&pool), &["--shutdown-timeout-secs", "1"], &[]);
        let api = Api::new(&server, None);
        let stuck = tokio::spawn(api.http.get(api.url("/debug/sleep?ms=60000")).send());
        api.wait_for_metric("http_requests_in_flight{route=\"/debug/sleep\"} 1").await;
        server.signal("-TERM");
        let exit = server.wait_exit();
        assert!(exit.success(), "exit status {exit:?}; stderr:\n{}", server.stderr());
        assert!(server.stderr().contains("shutdown deadline"), "{}", server.stderr());
        assert!(stuck.await.unwrap().is_err(), "the abandoned request gets no response");
    })
    .await;
}

#[test]
fn an_unreachable_database_at_startup_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-demo"))
        .args(["--database-url", &format!("postgres://app:topsecret@127.0.0.1:{port}/app")])
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing listens, nothing is announced");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("topsecret"), "{stderr}");
}
