//! The leak scan: after the whole suite, every artifact it kept (`tests/common/artifacts.rs`: each command's stdout
//! and stderr, each daemon log and state database, each PostgreSQL dump, HTTP body and page) and every snapshot is
//! searched for every token and database password the tests use. None may appear, except as the masked first four
//! characters of a token.
//!
//! `.ci/run` runs this test again once the rest of the suite has finished (`PIPECRON_LEAK_SCAN=1`); run alone, or
//! before the others, it scans what the last run kept. The self-check plants a secret and must see it caught.

mod common;

use std::path::{Path, PathBuf};

use common::fake_gitlab::{API_TOKEN, CANCEL_TOKEN, DEVELOPER_TOKEN, NO_SCOPE_TOKEN, OTHER_TOKEN, TOKEN};

/// Secrets the tests use besides the fake's tokens: admin tokens, database passwords, a webhook's secret path.
const OTHERS: &[&str] =
    &["s3cret-admin-token-for-tests", "hunter2", "pg-test-password-4711", "s3cret-pw", "T0SECRETPATH"];

/// What of a secret must never be seen: a GitLab token (`glptt-`, `glpat-`) may show its prefix and 4 characters,
/// so the rest is searched for; any other secret is searched for whole.
fn needle(secret: &str) -> &str {
    match ["glptt-", "glpat-"].iter().find_map(|prefix| secret.strip_prefix(prefix)) {
        Some(rest) if rest.len() > 8 => &rest[4..],
        _ => secret,
    }
}

/// Every secret: the known ones, and every `glptt-` token written in the tests' sources.
fn secrets() -> Vec<String> {
    let tokens = [TOKEN, OTHER_TOKEN, API_TOKEN, CANCEL_TOKEN, NO_SCOPE_TOKEN, DEVELOPER_TOKEN];
    let mut all: Vec<String> = tokens.iter().chain(OTHERS).map(|s| s.to_string()).collect();
    for file in files(&common::repo_path("tests")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (at, _) in text.match_indices("glptt-") {
            let token: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if token.len() >= 26 && !all.contains(&token) {
                all.push(token);
            }
        }
    }
    all
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => out.extend(files(&path)),
            false => out.push(path),
        }
    }
    out
}

/// Each (file, secret) where the secret shows.
fn scan(paths: &[PathBuf], secrets: &[String]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else { continue };
        for secret in secrets {
            let needle = needle(secret).as_bytes();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push((path.clone(), secret.clone()));
            }
        }
    }
    found
}

#[test]
fn the_scan_catches_a_planted_secret() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let clean = dir.path().join("clean.log");
    std::fs::write(&clean, format!("token {}… masked, as pipecron shows it\n", &TOKEN[..10])).expect("writes");
    let planted = dir.path().join("planted.log");
    std::fs::write(&planted, format!("oops: token={TOKEN}\n")).expect("writes");
    let password = dir.path().join("dump.sql");
    std::fs::write(&password, b"\x00binary\x00postgres://u:hunter2@db\x00").expect("writes");
    let found = scan(&[clean, planted.clone(), password.clone()], &secrets());
    let files: Vec<&PathBuf> = found.iter().map(|(p, _)| p).collect();
    assert_eq!(files, [&planted, &password], "{found:?}");
}

#[test]
fn no_artifact_of_the_suite_holds_a_secret() {
    let mut paths = files(&common::artifacts::dir());
    let kept = paths.len();
    paths.extend(files(&common::repo_path("tests/snapshots")));
    paths.extend(
        files(&common::repo_path("target/screenshots"))
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "png")),
    );
    if std::env::var_os("PIPECRON_LEAK_SCAN").is_some() {
        assert!(kept > 100, "the suite kept only {kept} artifacts: is the scan looking in the right place?");
    }
    let secrets = secrets();
    let found = scan(&paths, &secrets);
    eprintln!(
        "leak scan: {} files ({kept} kept by the suite), {} secrets, {} found",
        paths.len(),
        secrets.len(),
        found.len()
    );
    assert!(found.is_empty(), "secrets in the suite's artifacts: {found:#?}");
}
