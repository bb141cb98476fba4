//! What the binary showed, kept for the leak scan (`tests/leak_scan.rs`). Every stdout and stderr of a command, every
//! daemon log and state database, every PostgreSQL dump, HTTP body and page the tests saw is written under
//! `target/tmp/artifacts/`, so that the scan can look for secrets in all of it once the suite has run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static KEPT: AtomicUsize = AtomicUsize::new(0);

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

/// Keeps `bytes` as one artifact of `kind` (a file extension: `stderr`, `log`, `db`, `html`, ...).
pub fn keep(kind: &str, bytes: &[u8]) {
    let dir = dir();
    let _ = std::fs::create_dir_all(&dir);
    let test = std::env::current_exe().ok().and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    let n = KEPT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}-{}-{n}.{kind}", test.unwrap_or_default(), std::process::id());
    let _ = std::fs::write(dir.join(name), bytes);
}

/// Keeps the files of `dir` whose names start with `prefix` (a SQLite database with its `-wal` and `-journal`).
pub fn keep_files(dir: &Path, prefix: &str, kind: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && let Ok(bytes) = std::fs::read(entry.path())
        {
            keep(kind, &bytes);
        }
    }
}
