//! The tour, seed and load commands as a user runs them: the binary on every backend, its
//! stdout, its exit status; the tour twice on the same database.

use std::process::Command;

use keel_schema::MIGRATIONS;
use keel_test::for_each_backend;

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
    for_each_backend(&MIGRATIONS, |pool| async move {
        let url = pool.config().url().expose_secret().to_owned();
        drop(pool);
        let first = run_demo(&url, &[]);
        for heading in [
            "== Connect",
            "== Create, read, update, delete",
            "== Search",
            "== Joins",
            "== Aggregates",
            "== Batch insert",
            "== A transaction that fails half-way",
            "== Concurrent queries",
            "== A transaction retried after a real conflict",
            "== Streaming",
            "== Raw SQL with named parameters",
            "== Pool numbers",
        ] {
            assert!(first.contains(heading), "missing {heading:?}:\n{first}");
        }
        // The failed transaction left nothing; the retried one applied both increments.
        assert!(first.contains("unique_violation    not_found"), "{first}");
        assert!(first.contains("100.02"), "{first}");
        assert!(
            first.contains(
                r#"as JSON: {"name":"Alan Turing","jobs":1,"a_title":"Cryptanalyst","untouched":":literal"}"#
            ),
            "{first}"
        );
        let second = run_demo(&url, &["tour"]);
        assert!(second.contains("up to date"), "the second run applies no migrations:\n{second}");
        assert!(second.contains("100.02"), "{second}");
    })
    .await;
}

#[test]
fn migrate_on_a_fresh_sqlite_file_lists_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let out = run_demo(&url, &["migrate"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("applied ")).count(), 3, "{out}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_inserts_what_it_says_on_every_backend() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let url = pool.config().url().expose_secret().to_owned();
        let args = ["seed", "--users", "1200", "--jobs-per-user", "3", "--accounts", "50", "--batch", "500"];
        let out = run_demo(&url, &args);
        assert!(out.contains("seeded 1,200 users, 3,600 jobs, 50 accounts in"), "{out}");
        assert!(out.contains("rows/s"), "{out}");
        // Twice on the same database: fresh emails each run.
        run_demo(&url, &args);
        let counts = keel_repo::Repo::new(pool.clone()).table_counts().await.unwrap();
        assert_eq!((counts.users, counts.jobs, counts.accounts), (2_400, 7_200, 100));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_checks_every_result_and_prints_one_json_object() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let url = pool.config().url().expose_secret().to_owned();
        run_demo(&url, &["seed", "--users", "300", "--jobs-per-user", "5", "--accounts", "20"]);
        for workload in ["point-select", "join", "insert", "transfer"] {
            let out =
                run_demo(&url, &["load", workload, "--duration", "0.5", "--concurrency", "4", "--json"]);
            assert_eq!(out.lines().count(), 1, "exactly one line of JSON on stdout:\n{out}");
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(report["workload"], workload);
            assert_eq!(report["backend"], pool.backend().as_str());
            assert_eq!(report["wrong_results"], 0, "{report}");
            assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
            if workload == "transfer" {
                assert_eq!(report["balance_before"], report["balance_after"], "{report}");
            }
        }
        // A real cancellation: operations cut at 1 ms are counted, and nothing goes wrong.
        let out =
            run_demo(&url, &["load", "join", "--duration", "0.5", "--client-timeout-ms", "1", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["wrong_results"], 0, "{report}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_migrate_processes_at_once_apply_each_migration_once() {
    for backend in keel_pool::Backend::ALL {
        let db = match keel_test::TestDb::create_empty(backend, &keel_test::current_test()).await {
            Ok(db) => db,
            Err(e) => {
                assert!(keel_test::test_db(backend, &MIGRATIONS).await.is_none(), "{e}");
                continue;
            }
        };
        keel_test::run_on(db, |pool| async move {
            let url = pool.config().url().expose_secret().to_owned();
            let children: Vec<_> = (0..8)
                .map(|_| {
                    Command::new(env!("CARGO_BIN_EXE_keel-demo"))
                        .args(["migrate"])
                        .env("DATABASE_URL", &url)
                        .env("RUST_BACKTRACE", "0")
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("keel-demo starts")
                })
                .collect();
            let mut applied = 0;
            for child in children {
                let out = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{backend}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
                applied += stdout.lines().filter(|l| l.starts_with("applied ")).count();
            }
            assert_eq!(applied, 3, "{backend}: each of the three migrations applied by exactly one process");
        })
        .await;
    }
}
