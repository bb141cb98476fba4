//! Following pipelines to their end, through the real binary against the fake GitLab: each final status as GitLab
//! shows it, a refused token and a timeout, and resuming after kill -9. Each test waits for the first look, 10 s
//! after its trigger: the backoff is the product's, not shortened for tests.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use common::Pipecron;
use common::daemon::{Daemon, http, setup};
use common::fake_gitlab::{API_TOKEN, FakeGitlab, NO_SCOPE_TOKEN, TOKEN};
use common::metrics::{prometheus, value};
use serde_json::Value;

/// A cron expression for the second `seconds` from now, in UTC.
fn soon(seconds: i64) -> String {
    let at = Utc::now() + chrono::Duration::seconds(seconds);
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// A schedule firing at `cron` on `git_ref`, followed with the token in `$api_var`.
fn followed(name: &str, cron: &str, git_ref: &str, api_var: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    cron: \"{cron}\"\n    ref: {git_ref}\n    api_token: ${{{api_var}}}\n    catch_up: 0\n{extra}"
    )
}

const ENV: [(&str, &str); 2] = [("API_TOKEN", API_TOKEN), ("NO_SCOPE_TOKEN", NO_SCOPE_TOKEN)];

/// (schedule, pipeline status, followed, note) of every run with a pipeline, by schedule.
fn pipelines(db: &Path) -> Vec<(String, String, Option<String>, Option<String>)> {
    let Ok(connection) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let sql = "SELECT schedule, pipeline_status, followed, follow_note FROM runs WHERE pipeline_id IS NOT NULL
               ORDER BY schedule";
    let Ok(mut statement) = connection.prepare(sql) else { return Vec::new() };
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Polls until `done` holds, for at most `seconds`.
fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The fake's pipelines: (id, ref).
fn created(fake: &FakeGitlab) -> Vec<(u64, String)> {
    fake.pipelines()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap_or(0), p["ref"].as_str().unwrap_or_default().to_string()))
        .collect()
}

fn cli(dir: &Path, args: &[&str]) -> common::Run {
    let mut command = Pipecron::new().current_dir(dir).env("TRIGGER_TOKEN", TOKEN);
    for (name, value) in ENV {
        command = command.env(name, value);
    }
    let run = command.args(args).run();
    assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
    run
}

/// The looks at pipelines the fake was asked: not the daemon's look at the trigger token, 5 s after it starts.
fn looks(fake: &FakeGitlab) -> Vec<common::fake_gitlab::ApiRecorded> {
    fake.api_requests().into_iter().filter(|r| r.method == "GET" && r.raw_path.contains("/pipelines/")).collect()
}

/// Neither token, past its first 4 characters, in `text`.
fn assert_no_token(what: &str, text: &str) {
    for token in [TOKEN, API_TOKEN, NO_SCOPE_TOKEN] {
        let (prefix, rest) = token.split_at(token.find('-').map_or(0, |i| i + 1));
        let tail = &rest[4..];
        assert!(!text.contains(tail), "{what} holds a token ({prefix}…):\n{text}");
    }
}

#[test]
fn each_pipeline_is_followed_to_its_final_status_and_shown_as_gitlab_shows_it() {
    let fake = FakeGitlab::new();
    // Never final by itself: the test decides how each ends.
    fake.pipeline_plan([("pending", Duration::ZERO), ("running", Duration::from_millis(300))]);
    let cron = soon(3);
    let schedules = [("passes", "master"), ("fails", "main"), ("canceled", "feature/x"), ("manual", "v1.0")]
        .map(|(name, git_ref)| followed(name, &cron, git_ref, "API_TOKEN", ""))
        .concat();
    let (dir, _) = setup(&fake, &schedules);
    let check = cli(dir.path(), &["check"]);
    assert!(check.stdout.contains("4 following their pipelines"), "{}", check.stdout);
    assert!(check.stdout.contains("follows its pipelines (api_token glpat-read…)"), "{}", check.stdout);

    let daemon = Daemon::spawn(dir.path(), &[], &ENV);
    let addr = daemon.listening();
    wait_for("four pipelines", 20, || created(&fake).len() == 4);
    std::thread::sleep(Duration::from_millis(1500));
    for (id, git_ref) in created(&fake) {
        let status = match git_ref.as_str() {
            "master" => "success",
            "main" => "failed",
            "feature/x" => "canceled",
            _ => "manual",
        };
        fake.set_pipeline_status(id, status);
    }
    let db = dir.path().join("pipecron.db");
    wait_for("every pipeline's end", 40, || {
        let found = pipelines(&db);
        found.len() == 4 && found.iter().all(|(_, _, followed, _)| followed.as_deref() == Some("ended"))
    });
    let ended: Vec<(String, String)> = pipelines(&db).into_iter().map(|(name, status, ..)| (name, status)).collect();
    assert_eq!(
        ended,
        [("canceled", "canceled"), ("fails", "failed"), ("manual", "manual"), ("passes", "success")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // One look each: the first, 10 s after its trigger, found the end; the token only ever in the header.
    let asked = looks(&fake);
    assert_eq!(asked.len(), 4, "{asked:#?}");
    for request in &asked {
        assert_eq!(request.private_token.as_deref(), Some(API_TOKEN));
        assert_eq!(request.token_in_url, None);
        assert!(request.raw_path.starts_with("/api/v4/projects/9/pipelines/"), "{}", request.raw_path);
        assert!(request.user_agent.as_deref().is_some_and(|ua| ua.starts_with("pipecron/")));
    }

    let status = cli(dir.path(), &["status"]).stdout;
    let line = |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(line("passes").contains("succeeded #") && line("passes").contains(" passed 1s"), "{status}");
    assert!(line("fails").contains(" failed"), "{status}");
    assert!(line("canceled").contains(" canceled"), "{status}");
    assert!(line("manual").contains(" manual, waiting for a person"), "{status}");
    let history = cli(dir.path(), &["history", "passes", "--json"]).stdout;
    let runs: Value = serde_json::from_str(&history).expect("JSON");
    let pipeline = &runs[0]["pipeline"];
    assert_eq!((pipeline["status"].as_str(), pipeline["followed"].as_str()), (Some("success"), Some("ended")));
    assert_eq!(pipeline["duration"].as_u64(), Some(1), "{pipeline}");
    assert!(pipeline["finished_at"].as_str().is_some(), "{pipeline}");

    let (code, metrics) = http(&addr, "GET", "/metrics");
    assert_eq!(code, 200);
    let samples = prometheus(&metrics);
    let total = |schedule: &str, status: &str| {
        value(&samples, "pipecron_pipelines_total", &[("schedule", schedule), ("status", status)])
    };
    assert_eq!(
        [
            total("passes", "success"),
            total("fails", "failed"),
            total("canceled", "canceled"),
            total("passes", "failed")
        ],
        [Some(1.0), Some(1.0), Some(1.0), Some(0.0)]
    );
    let passed =
        value(&samples, "pipecron_schedule_last_pipeline_success_timestamp_seconds", &[("schedule", "passes")]);
    assert!(passed.is_some_and(|t| (t - Utc::now().timestamp() as f64).abs() < 60.0), "{passed:?}");
    assert_eq!(
        value(&samples, "pipecron_schedule_last_pipeline_success_timestamp_seconds", &[("schedule", "fails")]),
        None
    );

    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(logs.matches("\"message\":\"pipeline ended\"").count(), 4, "{logs}");
    let db_bytes = String::from_utf8_lossy(&std::fs::read(&db).expect("reads")).into_owned();
    for (what, text) in [("the log", &logs), ("status", &status), ("history", &history), ("metrics", &metrics)] {
        assert_no_token(what, text);
    }
    assert_no_token("the state file", &db_bytes);
}

#[test]
fn a_refused_token_and_a_timeout_stop_following_with_a_clear_note() {
    let fake = FakeGitlab::new();
    fake.pipeline_plan([("pending", Duration::ZERO), ("running", Duration::from_millis(300))]);
    let cron = soon(3);
    let schedules = followed("unscoped", &cron, "master", "NO_SCOPE_TOKEN", "")
        + &followed("slow", &cron, "main", "API_TOKEN", "    follow_timeout: 5s\n");
    let (dir, _) = setup(&fake, &schedules);
    let daemon = Daemon::spawn(dir.path(), &[], &ENV);
    let addr = daemon.listening();
    let db = dir.path().join("pipecron.db");
    wait_for("both stop being followed", 40, || {
        let found = pipelines(&db);
        found.len() == 2 && found.iter().all(|(_, _, followed, _)| followed.as_deref() != Some("following"))
    });
    let found = pipelines(&db);
    let (_, status, followed, note) = &found[0];
    assert_eq!((status.as_str(), followed.as_deref()), ("running", Some("timed-out")), "{found:?}");
    assert!(note.as_deref().is_some_and(|n| n.contains("after follow_timeout (5s)")), "{note:?}");
    let (_, status, followed, note) = &found[1];
    assert_eq!((status.as_str(), followed.as_deref()), ("created", Some("refused")), "{found:?}");
    let note = note.as_deref().unwrap_or_default();
    assert!(note.contains("unscoped") && note.contains("read_api") && note.contains("403"), "{note}");

    // Refused once is refused: GitLab is not asked again.
    std::thread::sleep(Duration::from_secs(2));
    let unscoped = looks(&fake).iter().filter(|r| r.private_token.as_deref() == Some(NO_SCOPE_TOKEN)).count();
    assert_eq!(unscoped, 1);

    let status = cli(dir.path(), &["status"]).stdout;
    assert!(status.contains("running, timed out following it"), "{status}");
    assert!(status.contains("created, cannot follow it"), "{status}");
    let history = cli(dir.path(), &["history", "unscoped"]).stdout;
    assert!(
        history.contains("1001 created, cannot follow it") || history.contains("1002 created, cannot follow it"),
        "{history}"
    );
    assert!(history.contains("needs the read_api scope"), "the detail says why: {history}");
    let (_, metrics) = http(&addr, "GET", "/metrics");
    let samples = prometheus(&metrics);
    let timed_out = value(&samples, "pipecron_pipelines_total", &[("schedule", "slow"), ("status", "timed_out")]);
    assert_eq!(timed_out, Some(1.0));
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(logs.matches("stopped following the pipeline").count(), 2, "{logs}");
    assert!(logs.contains("the read_api"), "the log says why: {logs}");
    assert_no_token("the log", &logs);
}

#[test]
fn following_resumes_after_kill_9() {
    let fake = FakeGitlab::new();
    fake.pipeline_plan([("pending", Duration::ZERO), ("running", Duration::from_millis(300))]);
    let (dir, _) = setup(&fake, &followed("nightly", &soon(3), "master", "API_TOKEN", ""));
    let daemon = Daemon::spawn(dir.path(), &[], &ENV);
    let db = dir.path().join("pipecron.db");
    wait_for("the trigger is recorded", 20, || pipelines(&db).len() == 1);
    // Killed before its first look, 10 s after the trigger.
    daemon.kill9();
    assert!(looks(&fake).is_empty());
    let (id, _) = created(&fake)[0];
    fake.set_pipeline_status(id, "success");

    let restarted = Daemon::spawn(dir.path(), &[], &ENV);
    wait_for("the restart follows it", 40, || {
        pipelines(&db)
            .first()
            .is_some_and(|(_, status, followed, _)| status == "success" && followed.as_deref() == Some("ended"))
    });
    assert_eq!(looks(&fake).len(), 1, "one look found the end");
    assert_eq!(fake.requests().len(), 1, "the slot was not fired again");
    let (code, logs) = restarted.stop();
    assert_eq!(code, Some(0), "{logs}");
}

/// Runs of a schedule: (state, pipeline id, error), oldest first.
fn runs_of(db: &Path, schedule: &str) -> Vec<(String, Option<i64>, Option<String>)> {
    let Ok(connection) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let sql = "SELECT state, pipeline_id, error FROM runs WHERE schedule = ?1 ORDER BY slot";
    let Ok(mut statement) = connection.prepare(sql) else { return Vec::new() };
    statement
        .query_map([schedule], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[test]
fn overlap_skip_sends_nothing_while_the_previous_pipeline_runs_and_cancel_previous_cancels_it() {
    let fake = FakeGitlab::new();
    fake.pipeline_plan([("pending", Duration::ZERO), ("running", Duration::from_millis(300))]);
    let every_2s = "*/2 * * * * *";
    let schedules = followed("skipper", every_2s, "master", "API_TOKEN", "    overlap: skip\n")
        + &followed("canceller", every_2s, "main", "CANCEL_TOKEN", "    overlap: cancel_previous\n");
    let (dir, _) = setup(&fake, &schedules);
    let env = [ENV[0], ENV[1], ("CANCEL_TOKEN", common::fake_gitlab::CANCEL_TOKEN)];
    let daemon = Daemon::spawn(dir.path(), &[], &env);
    let db = dir.path().join("pipecron.db");
    let skipped = |runs: &[(String, Option<i64>, Option<String>)]| runs.iter().filter(|r| r.0 == "skipped").count();
    wait_for("two slots skipped", 20, || skipped(&runs_of(&db, "skipper")) >= 2);
    let of_ref =
        |git_ref: &str| -> Vec<Value> { fake.pipelines().into_iter().filter(|p| p["ref"] == git_ref).collect() };
    let first = of_ref("master");
    assert_eq!(first.len(), 1, "one pipeline while it runs: {first:?}");
    let first_id = first[0]["id"].as_i64();
    let runs = runs_of(&db, "skipper");
    assert_eq!((runs[0].0.as_str(), runs[0].1), ("succeeded", first_id), "{runs:?}");
    for (state, pipeline, error) in runs.iter().skip(1).filter(|r| r.0 == "skipped") {
        assert_eq!(*pipeline, first_id, "a skipped slot names the running pipeline");
        let error = error.as_deref().unwrap_or_default();
        assert!(error.contains("is still running (overlap: skip)"), "{state}: {error}");
    }

    // Once the previous pipeline has ended, the next slot fires again.
    fake.set_pipeline_status(first_id.unwrap_or_default() as u64, "success");
    wait_for("a second pipeline", 20, || of_ref("master").len() == 2);

    wait_for("three pipelines of the canceller", 20, || of_ref("main").len() >= 3);
    let cancelled = of_ref("main");
    let (newest, older) = cancelled.split_last().expect("some");
    assert!(older.iter().all(|p| p["status"] == "canceled"), "each was cancelled by the next slot: {cancelled:#?}");
    assert_ne!(newest["status"], "canceled");
    let cancels: Vec<_> = fake.api_requests().into_iter().filter(|r| r.raw_path.ends_with("/cancel")).collect();
    assert!(cancels.len() >= 2, "{cancels:?}");
    assert!(
        cancels
            .iter()
            .all(|r| r.method == "POST" && r.private_token.as_deref() == Some(common::fake_gitlab::CANCEL_TOKEN))
    );

    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("cancelled the previous pipeline"), "{logs}");
    assert_no_token("the log", &logs);
}

#[test]
fn an_overlap_rule_without_an_api_token_is_refused_by_check() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n    overlap: skip\n");
    let run = Pipecron::new().current_dir(dir.path()).env("TRIGGER_TOKEN", TOKEN).args(["check"]).run();
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("s.yaml:10:14: error: schedule 'nightly', key 'overlap': overlap: skip needs api_token"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_trigger_token_about_to_stop_working_is_warned_of_by_check_online_and_by_the_daemon() {
    let fake = FakeGitlab::new();
    let expires = Utc::now() + chrono::Duration::days(8);
    fake.set_trigger_expiry(TOKEN, Some(expires));
    let (dir, _) = setup(&fake, &followed("nightly", "30 0 * * *", "master", "API_TOKEN", ""));
    let day = expires.format("%Y-%m-%d").to_string();

    let check = cli(dir.path(), &["check", "--online"]);
    assert!(
        check.stdout.contains(&format!("trigger token owned by alice, never used, expires {day}")),
        "{}",
        check.stdout
    );
    assert!(
        check.stderr.contains(&format!("warning: schedule 'nightly': the trigger token expires on {day} (in 7d")),
        "{}",
        check.stderr
    );

    // Its owner leaves the project: the daemon's look soon after start says so too, and `status` shows it.
    fake.remove_member(2);
    let daemon = Daemon::spawn(dir.path(), &[], &ENV);
    wait_for("the daemon's look", 20, || daemon.logs().matches("the trigger token needs attention").count() >= 2);
    let status = cli(dir.path(), &["status"]);
    let line = status.stdout.lines().find(|l| l.starts_with("nightly")).unwrap_or_default().to_string();
    assert!(line.contains(&format!("glptt-a1b2… expires {day} (!)")), "{}", status.stdout);
    assert!(status.stderr.contains("alice is no longer a member of the project"), "{}", status.stderr);
    let json: Value = serde_json::from_str(&cli(dir.path(), &["status", "--json"]).stdout).expect("JSON");
    assert!(json[0]["token_expires_at"].as_str().is_some_and(|t| t.starts_with(&day)), "{json}");
    assert!(json[0]["token_warning"].as_str().is_some_and(|w| w.contains("expires on")), "{json}");
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let triggers_asked = fake.api_requests().iter().filter(|r| r.raw_path.ends_with("/triggers")).count();
    assert_eq!(triggers_asked, 2, "once by check, once by the daemon");
    assert_no_token("the log", &logs);
    assert_no_token("check", &format!("{}{}", check.stdout, check.stderr));
}

#[test]
fn of_three_replicas_on_postgresql_one_follows_each_pipeline() {
    let Some(db) = common::pg::TempDatabase::create() else { return };
    let fake = FakeGitlab::new();
    fake.pipeline_plan([
        ("pending", Duration::ZERO),
        ("running", Duration::from_millis(300)),
        ("success", Duration::from_secs(1)),
    ]);
    let cron = soon(3);
    let schedules: String = (0..6).map(|i| followed(&format!("s{i}"), &cron, "master", "API_TOKEN", "")).collect();
    let (dir, _) = setup(&fake, &schedules);
    let url = db.url();
    let replicas: Vec<Daemon> =
        (0..3).map(|_| Daemon::spawn(dir.path(), &["--state", &url, "--lease", "3s"], &ENV)).collect();
    for replica in &replicas {
        replica.listening();
    }
    wait_for("six pipelines followed to their end", 40, || {
        db.psql("SELECT count(*) FROM runs WHERE followed = 'ended' AND pipeline_status = 'success'").trim() == "6"
    });
    let mut ended = 0;
    for replica in replicas {
        let (code, logs) = replica.stop();
        assert_eq!(code, Some(0), "{logs}");
        ended += logs.matches("\"message\":\"pipeline ended\"").count();
    }
    assert_eq!(fake.requests().len(), 6, "each slot fired once");
    assert_eq!(looks(&fake).len(), 6, "each pipeline asked about once, by one replica");
    assert_eq!(ended, 6, "each end told once");
}

/// `n` followed schedules, all due at the same second, soon.
fn burst(n: usize) -> String {
    let cron = soon(3);
    (0..n).map(|i| followed(&format!("s{i}"), &cron, "master", "API_TOKEN", "")).collect()
}

/// Waits until `n` pipelines have passed and are followed no more.
fn wait_all_passed(db: &Path, n: usize) {
    wait_for(&format!("{n} pipelines followed to their end"), 40, || {
        let found = pipelines(db);
        found.len() == n
            && found.iter().all(|(_, status, followed, _)| status == "success" && followed.as_deref() == Some("ended"))
    });
}

#[test]
fn looks_keep_to_the_per_host_budget() {
    let fake = FakeGitlab::new();
    fake.pipeline_plan([("pending", Duration::ZERO), ("success", Duration::from_millis(500))]);
    // GitLab allows 3 API requests a second; pipecron is told to send 2.
    fake.api_rate_limit(3);
    let (dir, _) = setup(&fake, &burst(8));
    let daemon = Daemon::spawn(dir.path(), &["--api-rate", "2"], &ENV);
    wait_all_passed(&dir.path().join("pipecron.db"), 8);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    // All eight were due at once; at 2 a second (a burst of 2, then one every 500 ms) they spread over 3 s, and
    // no second holds more than 3, so GitLab never had to refuse one.
    let at: Vec<_> = looks(&fake).iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 8, "one look each, none refused and asked again: {at:?}");
    let spread = *at.iter().max().expect("some") - *at.iter().min().expect("some");
    assert!(spread >= chrono::Duration::milliseconds(2500), "{spread}");
    for first in &at {
        let within = at.iter().filter(|t| **t >= *first && **t - *first < chrono::Duration::seconds(1)).count();
        assert!(within <= 3, "{within} looks within a second of {first}");
    }
}

#[test]
fn a_rate_limited_gitlab_is_asked_again_after_its_retry_after() {
    let fake = FakeGitlab::new();
    fake.pipeline_plan([("pending", Duration::ZERO), ("success", Duration::from_millis(500))]);
    // GitLab takes one API request a second; pipecron's own budget (10 a second) is not the limit here.
    fake.api_rate_limit(1);
    let (dir, _) = setup(&fake, &burst(4));
    let daemon = Daemon::spawn(dir.path(), &[], &ENV);
    wait_all_passed(&dir.path().join("pipecron.db"), 4);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    // The four were due at once: GitLab refused all but one (429, Retry-After: 1), and each was asked again a
    // second or more later, not given up on.
    let asked = looks(&fake).len();
    assert!(asked > 4, "some looks were refused and asked again: {asked}");
    assert!(!logs.contains("stopped following"), "{logs}");
}
