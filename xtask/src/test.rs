//! `cargo xtask test`: the whole suite on every backend it can reach, and a per-backend count
//! of what ran, was skipped (with why) or failed, read from the results file the test helpers
//! write (`keel_test::report`, the format's one definition).
//!
//! Order: the PostgreSQL template of the demo migrations is made if missing (other sets, such
//! as examples/orders' or the tests' own, get theirs on first use, behind keel-test's lock); then every test except the `serial_` ones,
//! in parallel; then the `serial_` tests (server restarts, server-wide counters) one at a time,
//! so they neither disturb nor are disturbed by other tests; then the doctests. The cluster
//! tests (modules `cluster` and `cluster_*`: a local primary, replica and PgBouncer) run one at
//! a time in their own nextest group beside the rest; the cluster they start is stopped at the end unless it was running before. An unfiltered
//! run fails when its serial phase runs no test (a renamed module must not drop them silently).

use std::path::Path;

use anyhow::{Context, Result, bail};
use keel_pool::Backend;
use keel_test::{TestDbError, report, servers};

use crate::{cargo, run, runtime};

/// The tests that must run alone: a `serial_` name at the top level or inside any module.
const SERIAL: &str = "test(/(^|::)serial_/)";

/// The suite's second run, on PostgreSQL through PgBouncer in transaction mode
/// (`?pgbouncer=true`): the repository, transactions, raw SQL, bulk loads, migrations and the
/// HTTP service. Left out are the tests that act on a server session of their own (terminate
/// it, signal it, hold a session lock, open a transaction with a raw `BEGIN` across statements,
/// count prepared statements or shared read sessions, need TLS): behind a transaction pooler
/// there is no such session, which is what `Config::pgbouncer` documents.
const PGBOUNCER: &str = "test(/^(repo|transactions|raw_sql|bulk|foundation|contention|serve|errors|statements)::/) \
    & not test(/serial_|terminated|connection_lost|deadlocks|lock_timeouts|serialization_failures|held_migration_lock|stops_the_statement|stops_its_statement|reuse_their_prepared/)";

/// Runs the suite; `extra` goes to `cargo nextest run` (e.g. a name filter), `env` to every
/// test process. With `KEEL_REQUIRE_BACKENDS` in `env`, a backend named there that skipped or
/// ran nothing fails the run.
pub fn test(root: &Path, extra: &[String], env: &[(&str, &str)]) -> Result<()> {
    let report_dir = root.join("target").join("keel-test-report");
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).with_context(|| format!("creating {}", report_dir.display()))?;
    let required: Vec<Backend> = match env.iter().find(|(k, _)| *k == "KEEL_REQUIRE_BACKENDS") {
        Some((_, v)) => servers::parse_backends(v),
        None => servers::required_backends(),
    };

    // Make sure the demo set's PostgreSQL template exists; every test database is a copy. It is
    // named after the migrations' fingerprint, so it is never rebuilt under another checkout's
    // running tests (a different set gets a template of its own).
    let migrations = &keel_schema::MIGRATIONS;
    eprintln!("preparing the PostgreSQL test template ({})", keel_test::template_name(migrations));
    match runtime()?.block_on(keel_test::prepare_postgres_template(migrations, false)) {
        Ok(()) => {}
        Err(TestDbError::Unavailable { reason, .. }) if !required.contains(&Backend::Postgres) => {
            eprintln!("PostgreSQL unreachable, its tests will be skipped: {reason}");
        }
        Err(e) => return Err(e).context("preparing the PostgreSQL template"),
    }

    // The cluster tests start the local cluster (keel_test::cluster) on first use; a run that
    // found none running stops it at the end, and leaves a developer's own alone.
    let target = keel_test::cluster::default_target_dir();
    let cluster_was_running =
        keel_test::cluster::status(&target).map(|s| !s.members.is_empty()).unwrap_or(true);

    let nextest = has_nextest();
    let suite = if nextest {
        let not_serial = format!("not {SERIAL}");
        let phases = [(not_serial.as_str(), false), (SERIAL, true)];
        let mut result = Ok(());
        for (filter, serial) in phases {
            let mut cmd = cargo();
            cmd.args(["nextest", "run", "--workspace", "--all-features", "--no-fail-fast"]);
            // A filtered run may select no serial test; an unfiltered one must.
            let none_ok = !serial || !extra.is_empty();
            cmd.arg(if none_ok { "--no-tests=pass" } else { "--no-tests=fail" });
            cmd.args(["-E", filter]).args(extra).env(report::DIR_ENV, &report_dir);
            if serial {
                cmd.args(["--test-threads", "1"]);
            }
            cmd.envs(env.iter().copied());
            if let Err(e) = run(&mut cmd) {
                result = Err(e);
            }
        }
        result
    } else {
        eprintln!(
            "cargo-nextest not found; falling back to cargo test (serial_ tests run in parallel with the rest)"
        );
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
        cmd.args(extra).env(report::DIR_ENV, &report_dir).envs(env.iter().copied());
        run(&mut cmd)
    };
    let docs = if extra.is_empty() && nextest {
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--all-features", "--doc"]).envs(env.iter().copied());
        run(&mut doc)
    } else {
        Ok(())
    };

    // The second run: PostgreSQL through PgBouncer (started once for the run), unfiltered runs only.
    let pgbouncer = if extra.is_empty() && nextest {
        pgbouncer_run(root, &target, env, required.contains(&Backend::Postgres))
    } else {
        Ok(())
    };

    if !cluster_was_running && let Err(e) = keel_test::cluster::down(&target, None) {
        eprintln!("stopping the local cluster after the run failed: {e}");
    }

    let tallies = report::read(&report_dir.join(report::FILE));
    println!("\nper-backend results (tests that use a database):");
    println!("  {:<9} {:>5} {:>8} {:>7}", "backend", "ran", "skipped", "failed");
    for (backend, t) in &tallies {
        println!("  {backend:<9} {:>5} {:>8} {:>7}", t.ran, t.skipped, t.failed);
        for (reason, n) in &t.reasons {
            println!("            skipped {n}×: {reason}");
        }
    }
    suite?;
    docs?;
    pgbouncer?;
    for backend in &required {
        let t = tallies.get(backend.as_str());
        if t.is_none_or(|t| t.ran == 0 || t.skipped > 0) {
            bail!("{backend} is required but its tests were skipped or did not run: {t:?}");
        }
    }
    Ok(())
}

/// Runs [`PGBOUNCER`] with test databases made on the cluster's primary and reached through
/// its PgBouncer; fails when PgBouncer cannot be started and PostgreSQL is required, or when a
/// test failed or none ran.
fn pgbouncer_run(root: &Path, target: &Path, env: &[(&str, &str)], required: bool) -> Result<()> {
    use keel_test::cluster::Member;
    eprintln!("\nsecond run: PostgreSQL through PgBouncer in transaction mode");
    let urls = match keel_test::cluster::up(target, Member::PgBouncer) {
        Ok(urls) => urls,
        Err(e) if !required => {
            eprintln!("PgBouncer could not be started, its run is skipped: {e}");
            return Ok(());
        }
        Err(e) => return Err(e).context("starting PgBouncer for the second run"),
    };
    let bouncer = urls.pgbouncer.context("the cluster started without a PgBouncer URL")?;
    let report_dir = root.join("target").join("keel-test-report-pgbouncer");
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).with_context(|| format!("creating {}", report_dir.display()))?;
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "-p", "keel-tests", "--all-features", "--no-fail-fast", "--no-tests=fail"]);
    cmd.args(["-E", PGBOUNCER]).envs(env.iter().copied());
    cmd.env(report::DIR_ENV, &report_dir)
        .env("KEEL_TEST_POSTGRES_URL", &urls.primary)
        .env("KEEL_TEST_POSTGRES_POOLER_URL", format!("{bouncer}?pgbouncer=true"))
        .env("KEEL_TEST_BACKENDS", "postgres")
        .env("KEEL_REQUIRE_BACKENDS", "postgres");
    let ran = run(&mut cmd);
    let tallies = report::read(&report_dir.join(report::FILE));
    let t = tallies.get(Backend::Postgres.as_str());
    println!("\nthrough PgBouncer (transaction mode): {t:?}");
    ran?;
    if t.is_none_or(|t| t.ran == 0 || t.skipped > 0 || t.failed > 0) {
        bail!("the PgBouncer run ran no PostgreSQL test, or skipped or failed some: {t:?}");
    }
    Ok(())
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}
