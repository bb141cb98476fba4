//! `pipecron next` through the real binary: exactly the fire times, and nothing else on stdout.

mod common;

use common::{Pipecron, repo_path};

fn next(args: &[&str]) -> common::Run {
    Pipecron::new().current_dir(repo_path("")).args(["next"]).args(args).run()
}

#[test]
fn prints_a_configured_schedules_times_in_its_zone() {
    next(&["nightly-master", "--after", "2026-11-24T12:00:00Z", "--count", "3"])
        .success()
        .stdout_is("2026-11-25T00:30:00+01:00\n2026-11-26T00:30:00+01:00\n2026-11-27T00:30:00+01:00\n");
}

#[test]
fn needs_no_secrets_to_preview() {
    // The example schedules read example.token; a schedule that names an unset ${VAR} previews just as well.
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("s.yaml"),
        "schedules:\n  x:\n    cron: \"0 12 * * *\"\n    gitlab: https://gitlab.example.com\n    token: ${UNSET}\n    project: 9\n    ref: main\n",
    )
    .expect("writes");
    Pipecron::new()
        .args(["next", "x", "--count", "1", "--after", "2026-11-24T00:00:00Z", "--schedules"])
        .args([dir.path()])
        .run()
        .success()
        .stdout_is("2026-11-24T12:00:00+00:00\n");
}

#[test]
fn after_is_exclusive_and_count_and_json_work() {
    next(&["--cron", "30 0 * * *", "--after", "2026-11-25T00:30:00Z", "--count", "1"])
        .success()
        .stdout_is("2026-11-26T00:30:00+00:00\n");
    next(&[
        "--cron",
        "0 0 1 * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-11-24T00:00:00Z",
        "--count",
        "2",
        "--json",
    ])
    .success()
    .stdout_is("[\"2026-12-01T00:00:00+01:00\",\"2027-01-01T00:00:00+01:00\"]\n");
    let five = next(&["--cron", "@hourly"]).success();
    assert_eq!(five.stdout.lines().count(), 5, "{}", five.stdout);
}

#[test]
fn spring_forward_in_berlin_fires_once_at_the_end_of_the_gap() {
    next(&[
        "--cron",
        "15 1-3 * * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-03-28T23:00:00+01:00",
        "--count",
        "4",
    ])
    .success()
    .stdout_is(
        "2026-03-29T01:15:00+01:00\n2026-03-29T03:00:00+02:00\n2026-03-29T03:15:00+02:00\n2026-03-30T01:15:00+02:00\n",
    );
}

#[test]
fn hash_comes_from_name_which_defaults_to_the_expression() {
    let with_name = |name: &str| {
        next(&["--cron", "H H * * *", "--name", name, "--after", "2026-11-24T00:00:00Z", "--count", "1"])
            .success()
            .stdout
    };
    let default = next(&["--cron", "H H * * *", "--after", "2026-11-24T00:00:00Z", "--count", "1"]).success().stdout;
    assert_eq!(default, with_name("H H * * *"));
    assert_eq!(with_name("a"), with_name("a"));
    let distinct: std::collections::HashSet<String> = (0..10).map(|i| with_name(&format!("job-{i}"))).collect();
    assert!(distinct.len() > 5, "{distinct:?}");
}

#[test]
fn mistakes_are_explained() {
    next(&["no-such-schedule"]).failure().stderr_has("no schedule named 'no-such-schedule'");
    next(&["nightly-mastr"]).failure().stderr_has("did you mean 'nightly-master'?");
    // A bad --cron or --timezone is a usage error.
    let bad_cron = next(&["--cron", "61 * * * *"]);
    assert_eq!(bad_cron.status, 2, "{bad_cron:#?}");
    assert!(bad_cron.stderr.contains("the minute field '61'"), "{bad_cron:#?}");
    let bad_zone = next(&["--cron", "* * * * *", "--timezone", "Europe/Berln"]);
    assert_eq!(bad_zone.status, 2, "{bad_zone:#?}");
    assert!(bad_zone.stderr.contains("Europe/Berlin"), "{bad_zone:#?}");
    let bad_after = next(&["--cron", "* * * * *", "--after", "yesterday"]);
    assert_eq!(bad_after.status, 2, "{bad_after:#?}");
    assert!(bad_after.stderr.contains("RFC 3339"), "{}", bad_after.stderr);
}
