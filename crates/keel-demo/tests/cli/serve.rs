//! `keel-demo serve` as a process, for what needs one: signals, exit codes, the one line on
//! stdout, logs on stderr. The binary is started on `127.0.0.1:0` and the port read from its
//! first line of stdout. The PostgreSQL outage runs through a TCP proxy the test controls (the
//! shared server is never touched). Every route and error status is tested in process, in
//! `tests/it/serve.rs`. No assertion depends on timing; deadlines only stop a hung test.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use keel_pool::{Backend, Pool};
use keel_repo::Repo;
use keel_schema::MIGRATIONS;
use keel_schema::{Id, NewUser};
use keel_test::http::Response as Resp;
use keel_test::{Proxy, for_each_backend, run_on, server_addr, test_db};
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
        Resp::new(status, headers, text, self.secret.as_deref())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    async fn transfer(&self, key: Option<&str>, body: &Value) -> Resp {
        let mut req = self.http.post(self.url("/transfers")).json(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        self.send(req).await
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.into_prometheus_text()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_server_cleanly() {
    let Some(db) = test_db(Backend::Sqlite, &MIGRATIONS).await else { return };
    run_on(db, |pool| async move {
        let server = Server::start(&url_of(&pool), &[], &[]);
        let api = Api::new(&server, None);
        api.get("/health").await.expect(200, None);
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
    let Some(db) = test_db(Backend::Postgres, &MIGRATIONS).await else { return };
    run_on(db, |pool| async move {
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
    for_each_backend(&MIGRATIONS, |pool| async move {
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
async fn a_request_still_running_at_the_shutdown_deadline_does_not_keep_the_process_alive() {
    let Some(db) = test_db(Backend::Sqlite, &MIGRATIONS).await else { return };
    run_on(db, |pool| async move {
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
