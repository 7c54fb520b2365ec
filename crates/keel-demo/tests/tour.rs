//! The tour runs to completion on every backend, twice on the same database.

use std::process::Command;

use keel_pool::testing::for_each_backend;

fn run_demo(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-demo"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("keel-demo starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel-demo {args:?} failed on {url}:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_runs_twice_on_every_backend() {
    for_each_backend("demo_tour", |pool| async move {
        let url = pool.config().url().expose_secret().to_owned();
        drop(pool);
        let first = run_demo(&url, &[]);
        assert!(first.contains("== Row counts"), "{first}");
        let second = run_demo(&url, &["tour"]);
        assert!(second.contains("up to date"), "the second run applies no migrations:\n{second}");
    })
    .await;
}

#[test]
fn migrate_on_a_fresh_sqlite_file_lists_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let out = run_demo(&url, &["migrate"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("applied ")).count(), 2, "{out}");
    assert!(run_demo(&url, &["migrate"]).contains("up to date"));
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-demo"))
        .args(["--database-url", &format!("postgres://app:topsecret@127.0.0.1:{port}/app")])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("topsecret"), "{stderr}");
}
