//! `pipecron check` on the example schedules and on a corpus of broken files, through the real binary.

mod common;

use common::{Pipecron, repo_path};

const TOKEN: &str = "glptt-1234567890abcdefplaintext";

fn check_case(case: &str) -> common::Run {
    Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .env("TRIGGER_TOKEN", "glptt-fedcba9876543210fedcba9876543210fedcba98")
        .env("EMPTY_TRIGGER_TOKEN", "")
        .args(["check", "--schedules", case])
        .run()
}

#[test]
fn the_example_schedules_pass() {
    let run = Pipecron::new().current_dir(repo_path("")).args(["check"]).run().success();
    assert!(run.stdout.contains("nightly-master"), "{}", run.stdout);
    assert!(run.stdout.contains("ok: 5 schedules in 2 files, 1 paused"), "{}", run.stdout);
}

#[test]
fn every_broken_file_fails_with_located_messages() {
    let cases = std::fs::read_dir(repo_path("tests/corpus/broken")).expect("the corpus exists");
    let mut names: Vec<String> = cases
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 15, "the corpus has only {names:?}");
    for case in names {
        let run = check_case(&case);
        let expect_success = case == "warnings-only" || case == "empty-file";
        assert_eq!(run.status, if expect_success { 0 } else { 1 }, "{case}: {run:#?}");
        for line in run.stderr.lines().filter(|l| !l.starts_with("error: ") || l.contains(".y")) {
            // Every diagnostic starts with file:line:column.
            let mut parts = line.splitn(4, ':');
            let (file, line_no, column) = (parts.next(), parts.next(), parts.next());
            assert!(file.is_some_and(|f| f.starts_with(&case)), "{case}: {line}");
            assert!(line_no.and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 0), "{case}: {line}");
            assert!(column.and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 0), "{case}: {line}");
        }
        assert!(!run.stderr.contains("9876543210"), "{case} printed a token");
        assert!(!run.stdout.contains("9876543210"), "{case} printed a token");
        // The next fire time depends on today; `next` is tested with a fixed --after elsewhere.
        insta::with_settings!({ filters => vec![(r"next \d{4}-\d\d-\d\dT[0-9:]+[+-]\d\d:\d\d", "next [time]")] }, {
            insta::assert_snapshot!(case.clone(), format!("exit {}\n--- stdout\n{}--- stderr\n{}", run.status, run.stdout, run.stderr));
        });
    }
}

#[test]
fn warnings_never_show_the_token() {
    let run = check_case("warnings-only").success();
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN));
    assert!(!run.stderr.contains("567890"), "more than 4 characters shown: {}", run.stderr);
}

#[test]
fn skip_secrets_lints_without_the_environment() {
    let run = Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .args(["check", "--skip-secrets", "--schedules", "env-vars"])
        .run();
    // Only the unclosed reference is a syntax error; unset variables are not looked at.
    assert_eq!(run.status, 1, "{run:#?}");
    assert_eq!(run.stderr.matches(": error: ").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("not closed"), "{}", run.stderr);
}

#[test]
fn the_schedules_directory_comes_from_the_environment() {
    Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .env("PIPECRON_SCHEDULES", "warnings-only")
        .env("TRIGGER_TOKEN", "glptt-x")
        .args(["check"])
        .run()
        .success();
    Pipecron::new()
        .current_dir(repo_path("tests"))
        .args(["check", "--schedules", "no-such-dir"])
        .run()
        .failure()
        .stderr_has("cannot read the schedules directory");
}
