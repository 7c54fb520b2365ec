//! `cargo xtask ci`: what `.ci/run` runs — formatting, clippy with `-D warnings`, the tidy
//! checks, the whole suite with every backend required (a skipped backend fails), and a load
//! smoke run so the benchmark path does not rot.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{cargo, run};

/// The backends CI requires (and Redis, for the cache tests).
pub const REQUIRED: &str = "postgres,mysql,sqlite,redis";

/// Runs every CI step; stops at the first that fails.
pub fn ci(root: &Path) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    eprintln!("$ cargo xtask tidy");
    crate::tidy::check(root)?;
    crate::test::test(root, &[], &[("KEEL_REQUIRE_BACKENDS", REQUIRED)])?;
    load_smoke(root)
}

/// Benchmarks do not run in CI as timings; this keeps the load path from rotting: seed a
/// small SQLite database and run `keel-demo load point-select --duration 1` (it fails on any
/// wrong result).
fn load_smoke(root: &Path) -> Result<()> {
    let dir = root.join("target/ci-smoke");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("creating target/ci-smoke")?;
    let url = format!("sqlite://{}", dir.join("smoke.db").display());
    let demo = |args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(["run", "--quiet", "-p", "keel-demo", "--", "--database-url", &url]).args(args);
        run(&mut cmd)
    };
    demo(&["seed", "--users", "500", "--jobs-per-user", "2", "--accounts", "10"])?;
    demo(&["load", "point-select", "--duration", "1", "--concurrency", "4"])
}
