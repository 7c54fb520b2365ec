//! The frames section of `cargo xtask bench`: the seeded `jobs` and `users` tables read whole into
//! Arrow in memory and written to Parquet on disk, by keel (`keel-demo export --format memory` /
//! `--format parquet`, release build) beside ConnectorX (`cx.read_sql(url, query,
//! return_type="arrow")`: one partition, its default, and for `jobs` two partitions on
//! `salary_cents`), ADBC (`adbc-driver-postgresql`, PostgreSQL only) and `pandas.read_sql` over
//! SQLAlchemy (the tutorials' baseline), interleaved run by run.
//!
//! Every process runs under GNU time (`/usr/bin/time -f '%M %e'`, installed with apt-get when
//! missing), whose `%M` is the kernel's `ru_maxrss` for the finished child: the same peak-RSS
//! measure for a Rust binary and a Python interpreter. Rows/s come from each process's own clock
//! around connect + read (+ write), so Python's interpreter start and imports are not counted
//! against it; the wall time of the whole process is reported beside.
//!
//! The Python packages are installed by this section into `target/bench/venv` (created with
//! `python3 -m venv`, kept between runs; a package group is installed only when its import
//! fails). A group pip cannot install makes its tool's rows "unavailable" with pip's reason;
//! the rest runs. The keel-written Parquet and Arrow IPC files are read back with pyarrow
//! (`frames.py readback`) and their row counts and schemas printed. All PostgreSQL clients use
//! `sslmode=disable`, so every tool moves the same bytes over the same plain socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use keel_pool::Backend;
use serde_json::{Value, json};

use super::{Bins, Plan, ratio};

/// pip packages by tool: (group, packages, the import that proves them installed).
const GROUPS: &[(&str, &[&str], &str)] = &[
    ("pyarrow", &["pyarrow"], "import pyarrow, pyarrow.parquet"),
    ("connectorx", &["connectorx"], "import connectorx"),
    ("adbc", &["adbc-driver-manager", "adbc-driver-postgresql"], "import adbc_driver_postgresql.dbapi"),
    (
        "pandas",
        &["pandas", "sqlalchemy", "psycopg2-binary", "pymysql"],
        "import pandas, sqlalchemy, psycopg2, pymysql",
    ),
];

const GNU_TIME: &str = "/usr/bin/time";

/// The virtual environment and which package groups work in it (else why not).
pub(super) struct Python {
    python: PathBuf,
    script: PathBuf,
    groups: BTreeMap<&'static str, Result<(), String>>,
    /// `python3 x.y.z; pyarrow a.b.c; …` as installed, for the report.
    versions: String,
}

impl Python {
    /// Why `group` (and pyarrow, which every tool needs) cannot be used, if it cannot.
    fn unavailable(&self, group: &str) -> Option<String> {
        for g in ["pyarrow", group] {
            match self.groups.get(g) {
                Some(Ok(())) => {}
                Some(Err(why)) => return Some(format!("{g}: {why}")),
                None => return Some(format!("{g}: not set up")),
            }
        }
        None
    }
}

/// The last non-empty line of a process's output, for a one-line reason.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").trim().to_owned()
}

/// Runs `cmd` (echoed), returning Err(its last output line) when it fails.
fn quiet(cmd: &mut Command) -> Result<(), String> {
    crate::echo(cmd);
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(last_line(if out.stderr.is_empty() { &out.stdout } else { &out.stderr })),
        Err(e) => Err(format!("cannot start {}: {e}", cmd.get_program().to_string_lossy())),
    }
}

/// Creates `target/bench/venv` unless present and installs each package group whose import
/// fails. Never fails: what cannot be set up is recorded as the reason its rows are unavailable.
pub(super) fn python(root: &Path, out_dir: &Path) -> Python {
    let venv = out_dir.join("venv");
    let python = venv.join("bin/python");
    let script = root.join("xtask/src/bench/frames.py");
    let mut groups = BTreeMap::new();
    let created = if python.is_file() {
        Ok(())
    } else {
        quiet(Command::new("python3").arg("-m").arg("venv").arg(&venv))
    };
    for (group, packages, import) in GROUPS {
        let ready = created.clone().and_then(|()| {
            if quiet(Command::new(&python).args(["-c", import])).is_ok() {
                return Ok(());
            }
            eprintln!("bench: installing {} into {}", packages.join(" "), venv.display());
            quiet(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .args(*packages),
            )?;
            quiet(Command::new(&python).args(["-c", import]))
        });
        if let Err(why) = &ready {
            eprintln!("bench: {group} unavailable: {why}");
        }
        groups.insert(*group, ready);
    }
    let dists: Vec<&str> = GROUPS.iter().flat_map(|(_, packages, _)| packages.iter().copied()).collect();
    let probe = format!(
        "import sys, importlib.metadata as m\nout = ['python ' + sys.version.split()[0]]\n\
         for d in {dists:?}:\n    try: out.append(d + ' ' + m.version(d))\n    except Exception: pass\nprint('; '.join(out))"
    );
    let versions = Command::new(&python)
        .args(["-c", &probe])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| last_line(&o.stdout))
        .unwrap_or_else(|| "no Python environment".to_owned());
    Python { python, script, groups, versions }
}

/// GNU time, installed with apt-get when missing (as `cargo xtask cluster` installs PgBouncer).
pub(super) fn ensure_gnu_time() -> Result<()> {
    if Path::new(GNU_TIME).is_file() {
        return Ok(());
    }
    eprintln!("bench: {GNU_TIME} is missing; installing the `time` package to measure peak RSS");
    crate::run(Command::new("apt-get").arg("update"))?;
    crate::run(Command::new("apt-get").args(["install", "-y", "time"]))?;
    if !Path::new(GNU_TIME).is_file() {
        bail!("apt-get installed `time` but {GNU_TIME} is still missing");
    }
    Ok(())
}

/// One measured run of one tool.
#[derive(Debug, Clone, Copy)]
struct Run {
    rows: u64,
    /// The process's own clock around connect + read (+ write).
    seconds: f64,
    /// The whole process, start to exit.
    wall: f64,
    peak_rss_kib: u64,
}

impl Run {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }

    fn json(&self) -> Value {
        json!({"rows": self.rows, "seconds": self.seconds, "wall_seconds": self.wall,
               "rows_per_s": self.rows_per_s(), "peak_rss_kib": self.peak_rss_kib})
    }
}

/// Runs `program args` under GNU time; parses the last stdout line's `rows` and `seconds`.
fn measure(program: &Path, args: &[String], shown: &str, scratch: &Path) -> Result<Run, String> {
    eprintln!("$ {shown}");
    let timing = scratch.join("time.txt");
    let out = Command::new(GNU_TIME)
        .arg("-f")
        .arg("%M %e")
        .arg("-o")
        .arg(&timing)
        .arg(program)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .map_err(|e| format!("cannot start {GNU_TIME}: {e}"))?;
    if !out.status.success() {
        return Err(last_line(&out.stderr));
    }
    let report: Value = serde_json::from_str(&last_line(&out.stdout))
        .map_err(|e| format!("unreadable output {:?}: {e}", last_line(&out.stdout)))?;
    let timing = std::fs::read_to_string(&timing).map_err(|e| format!("reading GNU time's output: {e}"))?;
    let mut fields = timing.lines().last().unwrap_or_default().split_whitespace();
    let peak_rss_kib = fields.next().and_then(|f| f.parse().ok()).ok_or("GNU time gave no %M")?;
    let wall = fields.next().and_then(|f| f.parse().ok()).ok_or("GNU time gave no %e")?;
    Ok(Run {
        rows: report["rows"].as_u64().ok_or("no rows in the output")?,
        seconds: report["seconds"].as_f64().ok_or("no seconds in the output")?,
        wall,
        peak_rss_kib,
    })
}

/// Memory (Arrow batches held by the process) or a Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Memory,
    Parquet,
}

impl Dest {
    fn as_str(self) -> &'static str {
        match self {
            Dest::Memory => "memory",
            Dest::Parquet => "parquet",
        }
    }
}

/// A tool as the report names it and how it runs.
#[derive(Debug, Clone, Copy)]
enum Tool {
    Keel,
    /// (frames.py tool, its pip group, partitions on salary_cents)
    Py(&'static str, &'static str, Option<u32>),
}

impl Tool {
    fn label(self) -> String {
        match self {
            Tool::Keel => "keel".to_owned(),
            Tool::Py("connectorx", _, None) => "connectorx (1 partition, default)".to_owned(),
            Tool::Py("connectorx", _, Some(n)) => format!("connectorx ({n} partitions on salary_cents)"),
            Tool::Py("pandas", ..) => "pandas.read_sql (SQLAlchemy)".to_owned(),
            Tool::Py(name, ..) => name.to_owned(),
        }
    }
}

fn tools(backend: Backend, table: &str) -> Vec<Tool> {
    let mut t = vec![Tool::Keel, Tool::Py("connectorx", "connectorx", None)];
    if table == "jobs" {
        t.push(Tool::Py("connectorx", "connectorx", Some(2)));
    }
    if backend == Backend::Postgres {
        t.push(Tool::Py("adbc", "adbc", None));
    }
    t.push(Tool::Py("pandas", "pandas", None));
    t
}

/// What the frames section needs from the bench around it.
pub(super) struct Ctx<'a> {
    pub bins: &'a Bins,
    pub python: &'a Python,
    pub out_dir: &'a Path,
    pub plan: &'a Plan,
}

/// The URL every tool is given: on PostgreSQL with `sslmode=disable` (see the module docs).
fn plain_url(url: &str, backend: Backend) -> String {
    if backend == Backend::Postgres { super::with_sslmode(url, "disable") } else { url.to_owned() }
}

impl Ctx<'_> {
    /// One run of `tool` reading `table` to `dest`.
    fn run(&self, tool: Tool, backend: Backend, url: &str, table: &str, dest: Dest) -> Result<Run, String> {
        let dir = self.out_dir.join("frames");
        let file =
            dir.join(format!("{backend}-{table}-{}.parquet", tool.label().split(' ').next().unwrap_or("x")));
        let file_arg = file.display().to_string();
        match tool {
            Tool::Keel => {
                let mut args = vec!["--database-url".to_owned(), url.to_owned(), "export".into()];
                args.extend([
                    "--table".into(),
                    table.to_owned(),
                    "--format".into(),
                    dest.as_str().to_owned(),
                ]);
                if dest == Dest::Parquet {
                    args.extend(["--output".into(), file_arg]);
                }
                let shown = format!("keel-demo --database-url <test database> {}", args[2..].join(" "));
                measure(&self.bins.demo, &args, &shown, &dir)
            }
            Tool::Py(name, group, partitions) => {
                if let Some(why) = self.python.unavailable(group) {
                    return Err(format!("unavailable ({why})"));
                }
                let mut args = vec![self.python.script.display().to_string(), "read".into()];
                args.extend(["--tool".into(), name.to_owned(), "--backend".into(), backend.to_string()]);
                args.extend([
                    "--url".into(),
                    url.to_owned(),
                    "--query".into(),
                    format!("SELECT * FROM {table}"),
                ]);
                args.extend(["--to".into(), dest.as_str().to_owned()]);
                if dest == Dest::Parquet {
                    args.extend(["--output".into(), file_arg]);
                }
                if let Some(n) = partitions {
                    args.extend(["--partition-on".into(), "salary_cents".into()]);
                    args.extend(["--partitions".into(), n.to_string()]);
                }
                let shown = format!(
                    "python frames.py read --tool {name} --url <test database> {}",
                    args[6..].join(" ")
                );
                measure(&self.python.python, &args, &shown, &dir)
            }
        }
    }
}

/// Keeps a row's runs, or why it has none.
struct Outcome {
    tool: Tool,
    runs: Vec<Run>,
    failed: Option<String>,
}

impl Outcome {
    /// The fastest run (runs are interleaved; the best of them is the least disturbed).
    fn best(&self) -> Option<Run> {
        self.runs.iter().copied().max_by(|a, b| a.rows_per_s().total_cmp(&b.rows_per_s()))
    }

    /// The highest peak RSS over the runs.
    fn peak_kib(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.peak_rss_kib).max()
    }
}

/// Runs the frames section on one seeded database, appending to the report and results.
pub(super) fn section(
    ctx: &Ctx,
    url: &str,
    backend: Backend,
    report: &mut String,
    results: &mut Vec<Value>,
) -> Result<()> {
    let url = plain_url(url, backend);
    let dir = ctx.out_dir.join("frames");
    std::fs::create_dir_all(&dir).context("creating target/bench/frames")?;
    let plan = ctx.plan;
    let expected = [("jobs", plan.users * plan.jobs_per_user), ("users", plan.users)];
    writeln!(
        report,
        "### Frames: whole tables to Arrow in memory and to Parquet on disk\n\n\
         Best of {} interleaved runs (pandas: {}); peak RSS is the highest of the runs (GNU time's \
         ru_maxrss of the process); rows/s by each process's clock around connect + read (+ \
         write); wall = the whole process. Ratios: keel rows/s ÷ this (above 1: keel faster) and \
         keel peak RSS ÷ this (below 1: keel smaller).\n",
        plan.frames_reps, plan.frames_pandas_reps
    )?;
    writeln!(report, "Python side: {}.\n", ctx.python.versions)?;
    let mut table = "| table | to | tool | rows | rows/s | peak RSS MiB | wall s | keel rows/s ÷ this | keel RSS ÷ this |\n|---|---|---|---|---|---|---|---|---|\n".to_owned();
    for (name, rows) in expected {
        for dest in [Dest::Memory, Dest::Parquet] {
            let mut outcomes: Vec<Outcome> = tools(backend, name)
                .into_iter()
                .map(|tool| Outcome { tool, runs: vec![], failed: None })
                .collect();
            for rep in 0..plan.frames_reps {
                for o in &mut outcomes {
                    let is_pandas = matches!(o.tool, Tool::Py("pandas", ..));
                    if o.failed.is_some() || (is_pandas && rep >= plan.frames_pandas_reps) {
                        continue;
                    }
                    match ctx.run(o.tool, backend, &url, name, dest) {
                        Ok(run) if run.rows == rows => o.runs.push(run),
                        Ok(run) => o.failed = Some(format!("read {} rows, expected {rows}", run.rows)),
                        Err(why) => o.failed = Some(why),
                    }
                }
            }
            let keel = &outcomes[0];
            if let Some(why) = &keel.failed {
                bail!("keel failed reading {name} to {} on {backend}: {why}", dest.as_str());
            }
            let (keel_best, keel_peak) = (keel.best(), keel.peak_kib());
            for o in &outcomes {
                let label = o.tool.label();
                results.push(json!({"backend": backend.as_str(), "kind": "frames", "table": name,
                    "to": dest.as_str(), "tool": label, "runs": o.runs.iter().map(Run::json).collect::<Vec<_>>(),
                    "unavailable": o.failed}));
                let (Some(best), Some(peak)) = (o.best(), o.peak_kib()) else {
                    let why = o.failed.clone().unwrap_or_default().replace('|', "/");
                    writeln!(
                        table,
                        "| {name} | {} | {label} | – | unavailable: {why} | | | | |",
                        dest.as_str()
                    )?;
                    continue;
                };
                writeln!(
                    table,
                    "| {name} | {} | {label} | {} | {:.0} | {:.0} | {:.1} | {} | {} |",
                    dest.as_str(),
                    best.rows,
                    best.rows_per_s(),
                    peak as f64 / 1024.0,
                    best.wall,
                    ratio(keel_best.map_or(0.0, |k| k.rows_per_s()), best.rows_per_s()),
                    ratio(keel_peak.unwrap_or(0) as f64, peak as f64),
                )?;
            }
        }
    }
    writeln!(report, "{table}")?;
    readback(ctx, &url, backend, &expected, report, results)
}

/// keel writes each table as Parquet (already, in the timed runs) and as an Arrow IPC file; pyarrow
/// reads both back: row count and schema go to the report.
fn readback(
    ctx: &Ctx,
    url: &str,
    backend: Backend,
    expected: &[(&str, u64)],
    report: &mut String,
    results: &mut Vec<Value>,
) -> Result<()> {
    let dir = ctx.out_dir.join("frames");
    writeln!(report, "keel's files read back with pyarrow:\n")?;
    for (table, rows) in expected {
        let ipc = dir.join(format!("{backend}-{table}-keel.arrow"));
        let args: Vec<String> = vec![
            "--database-url".into(),
            url.to_owned(),
            "export".into(),
            "--table".into(),
            (*table).to_owned(),
            "--format".into(),
            "arrow".into(),
            "--output".into(),
            ipc.display().to_string(),
        ];
        let shown = format!("keel-demo --database-url <test database> {}", args[2..].join(" "));
        measure(&ctx.bins.demo, &args, &shown, &dir)
            .map_err(|why| anyhow::anyhow!("keel export of {table} as Arrow IPC failed: {why}"))?;
        for file in [dir.join(format!("{backend}-{table}-keel.parquet")), ipc] {
            // Shown from the repository root (out_dir is <root>/target/bench).
            let root = ctx.out_dir.parent().and_then(Path::parent).unwrap_or(ctx.out_dir);
            let shown = file.strip_prefix(root).unwrap_or(&file).display().to_string();
            if let Some(why) = ctx.python.unavailable("pyarrow") {
                writeln!(report, "- `{shown}`: not read back ({why})")?;
                continue;
            }
            let mut cmd = Command::new(&ctx.python.python);
            cmd.arg(&ctx.python.script).arg("readback").arg(&file);
            crate::echo(&cmd);
            let out = cmd.output().context("running frames.py readback")?;
            if !out.status.success() {
                writeln!(report, "- `{shown}`: pyarrow FAILED to read it: {}", last_line(&out.stderr))?;
                results.push(json!({"backend": backend.as_str(), "kind": "frames-readback", "file": shown, "error": last_line(&out.stderr)}));
                continue;
            }
            let got: Value =
                serde_json::from_str(&last_line(&out.stdout)).context("parsing frames.py readback")?;
            let columns: Vec<String> = got["columns"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            format!("{}: {}", c[0].as_str().unwrap_or("?"), c[1].as_str().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let n = got["rows"].as_u64().unwrap_or(0);
            let verdict = if n == *rows {
                "as in the database".to_owned()
            } else {
                format!("MISMATCH: the table has {rows}")
            };
            writeln!(report, "- `{shown}`: {n} rows ({verdict}); schema {}", columns.join(", "))?;
            results.push(json!({"backend": backend.as_str(), "kind": "frames-readback", "file": shown, "rows": n, "expected": rows, "columns": got["columns"]}));
        }
    }
    writeln!(report)?;
    Ok(())
}
