//! Fingerprints the migration files so test templates built from older migrations are rebuilt,
//! and makes cargo re-embed the migrations when any of them changes.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    // FNV-1a over relative paths and contents: stable across builds and toolchains.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file.strip_prefix(&root).unwrap_or(file).to_string_lossy().into_owned();
        let content = std::fs::read(file).unwrap_or_default();
        for byte in rel.as_bytes().iter().chain(&[0u8]).chain(&content) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=KEEL_MIGRATIONS_FINGERPRINT={hash:016x}");
}
