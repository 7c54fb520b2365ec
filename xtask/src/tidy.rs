//! `cargo xtask tidy`: checks that guard the repository's own shape (rust-analyzer's
//! `tidy.rs`), run by `cargo xtask ci` and as a plain `#[test]`, so `cargo test` keeps them
//! honest too:
//! - every `.rs` file opens with a `//!` comment saying what it is;
//! - every `pub mod` a file declares is named in that file's `//!` opening (the crate map of a
//!   `lib.rs`, the module map of a `mod.rs`), as `` `name` `` or ``[`name`]``;
//! - no debugging or placeholder macros are left in (`dbg!`, `todo!`, `unimplemented!`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The trees tidy reads, relative to the repository root.
const TREES: &[&str] = &["crates", "xtask", "tests"];

/// Macros that must not be committed (spelled in two parts so this file does not match).
const BANNED: &[(&str, &str)] = &[("dbg", "!("), ("todo", "!("), ("unimplemented", "!(")];

/// Checks every `.rs` file under the trees; fails listing every problem found.
pub fn check(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    for tree in TREES {
        collect(&root.join(tree), &mut files)?;
    }
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        problems.extend(check_file(&shown, &text));
    }
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!("tidy: {} files checked, all fine", files.len());
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The problems of one file (`shown` is its path for messages).
fn check_file(shown: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let opening: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.starts_with("#!["))
        .take_while(|l| l.starts_with("//!"))
        .collect();
    if opening.is_empty() {
        problems.push(format!("{shown}: does not open with a `//!` comment saying what it is"));
    }
    let map = opening.join("\n");
    for line in text.lines() {
        let declared = line.trim_start().strip_prefix("pub mod ").and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = declared {
            let name = name.trim();
            if !map.contains(&format!("`{name}`")) {
                problems.push(format!("{shown}: `pub mod {name}` is not named in the file's `//!` map"));
            }
        }
    }
    for (n, line) in text.lines().enumerate() {
        for (name, bang) in BANNED {
            let needle = format!("{name}{bang}");
            let at_word = line
                .match_indices(&needle)
                .any(|(i, _)| !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            if at_word && !line.trim_start().starts_with("//") {
                problems.push(format!("{shown}:{}: `{name}!` left in", n + 1));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository passes its own checks.
    #[test]
    fn tidy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the repo root");
        check(root).unwrap();
    }

    #[test]
    fn each_rule_catches_what_it_names() {
        let good = "//! A module.\n//! - [`a`]: one.\n\npub mod a;\nfn f() {}\n";
        assert!(check_file("good.rs", good).is_empty());
        let bad = format!("use x;\npub mod b;\nfn f() {{ {}(1); }}\n", "dbg!");
        let problems = check_file("bad.rs", &bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("does not open with"), "{problems:?}");
        assert!(problems[1].contains("`pub mod b`"), "{problems:?}");
        assert!(problems[2].contains("bad.rs:3: `dbg!`"), "{problems:?}");
    }
}
