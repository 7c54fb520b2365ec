//! The results file: one line per test outcome per backend, appended by the test helpers to
//! `$KEEL_TEST_REPORT_DIR/results.tsv` and read back by `cargo xtask test`, which prints how
//! many tests ran, were skipped or failed on each backend. This module is the format's one
//! definition: a line is `backend \t outcome \t test \t reason`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use keel_pool::Backend;

/// The environment variable naming the directory of the results file.
pub const DIR_ENV: &str = "KEEL_TEST_REPORT_DIR";

/// The results file's name inside that directory.
pub const FILE: &str = "results.tsv";

/// What happened to one test on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The test body ran and passed.
    Ran,
    /// The backend's server was unreachable and not required.
    Skipped,
    /// The body panicked, or its database could not be prepared.
    Failed,
}

impl Outcome {
    /// The word written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "ran" => Outcome::Ran,
            "skipped" => Outcome::Skipped,
            _ => Outcome::Failed,
        }
    }
}

/// Appends one outcome line to `$KEEL_TEST_REPORT_DIR/results.tsv`, if that variable is set.
pub fn record(backend: Backend, outcome: Outcome, test: &str, reason: &str) {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let line = line(backend, outcome, test, reason);
    let path = PathBuf::from(dir).join(FILE);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        // One write of one short line: appends from parallel test processes do not interleave.
        let _ = f.write_all(line.as_bytes());
    }
}

/// One line of the file, tabs and newlines in `test` and `reason` replaced by spaces.
pub fn line(backend: Backend, outcome: Outcome, test: &str, reason: &str) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!("{backend}\t{}\t{}\t{}\n", outcome.as_str(), clean(test), clean(reason))
}

/// Outcomes of one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// Test bodies that ran and passed.
    pub ran: usize,
    /// Tests skipped because the server was unreachable.
    pub skipped: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Skip reasons, with how often each occurred.
    pub reasons: BTreeMap<String, usize>,
}

/// Reads a results file into one [`Tally`] per backend (every backend present, possibly
/// empty). A missing file reads as no outcomes.
pub fn read(path: &Path) -> BTreeMap<String, Tally> {
    parse(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Parses the text of a results file; see [`read`].
pub fn parse(text: &str) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> =
        Backend::ALL.iter().map(|b| (b.to_string(), Tally::default())).collect();
    for line in text.lines() {
        let mut parts = line.splitn(4, '\t');
        let (Some(backend), Some(outcome)) = (parts.next(), parts.next()) else { continue };
        let reason = parts.nth(1).unwrap_or("").to_owned();
        let t = tallies.entry(backend.to_owned()).or_default();
        match Outcome::parse(outcome) {
            Outcome::Ran => t.ran += 1,
            Outcome::Skipped => {
                t.skipped += 1;
                *t.reasons.entry(reason).or_default() += 1;
            }
            Outcome::Failed => t.failed += 1,
        }
    }
    tallies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_record_writes_read_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let lines = [
            (Backend::Postgres, Outcome::Ran, "a::b", ""),
            (Backend::Postgres, Outcome::Ran, "a::c", ""),
            (Backend::Mysql, Outcome::Skipped, "a::b", "mysql server unreachable:\tno"),
            (Backend::Sqlite, Outcome::Failed, "a::b", ""),
        ];
        let text: String = lines.iter().map(|&(b, o, t, r)| line(b, o, t, r)).collect();
        std::fs::write(&path, text).unwrap();
        let t = read(&path);
        assert_eq!((t["postgres"].ran, t["postgres"].skipped), (2, 0));
        assert_eq!(t["mysql"].skipped, 1);
        assert_eq!(
            t["mysql"].reasons.keys().next().map(String::as_str),
            Some("mysql server unreachable: no")
        );
        assert_eq!(t["sqlite"].failed, 1);
        assert_eq!(read(&dir.path().join("missing")).len(), 3);
    }
}
