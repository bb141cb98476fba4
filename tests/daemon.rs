//! `pipecron run` end to end: the real binary, seconds-field schedules, the fake GitLab, and real signals.
//! These take a few seconds of real time each; the loop's logic is tested on paused time in `src/scheduler`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{setup, slots_by_schedule, write_schedules};
use common::fake_gitlab::{FakeGitlab, TOKEN};

struct Daemon;

impl Daemon {
    fn start(dir: &Path) -> common::daemon::Daemon {
        Daemon::start_with(dir, &["--shutdown-grace", "2s"])
    }

    fn start_with(dir: &Path, args: &[&str]) -> common::daemon::Daemon {
        common::daemon::Daemon::spawn(dir, args, &[])
    }
}

fn wait_with_timeout(child: &mut Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut logs = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut logs);
            }
            return (status.code(), logs);
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn seconds_apart(slots: &[String]) -> bool {
    let times: Vec<chrono::DateTime<chrono::Utc>> = slots.iter().filter_map(|s| s.parse().ok()).collect();
    times.windows(2).all(|w| w[1] - w[0] == chrono::Duration::seconds(1))
}

#[test]
fn every_slot_fires_exactly_once_and_sigterm_exits_0() {
    let fake = FakeGitlab::new();
    let (dir, _) =
        setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n  every-other:\n    cron: \"*/2 * * * * *\"\n");
    let daemon = Daemon::start(dir.path());
    sleep(4500);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let each = log_lines(&logs, "scheduled");
    assert!(each.iter().any(|l| l["schedule"] == "every-other" && l["next"].is_string()), "each is logged: {logs}");
    let slots = slots_by_schedule(&fake);
    let every = &slots["every-second"];
    assert!(every.len() >= 3, "{slots:?}");
    assert!(seconds_apart(every), "a slot was skipped or fired twice: {every:?}");
    assert!(!slots["every-other"].is_empty(), "{slots:?}");
    assert!(logs.contains("\"message\":\"fired\""), "{logs}");
    assert!(logs.contains("\"lateness_ms\""), "{logs}");
    assert!(!logs.contains(&TOKEN[6..]), "the token was logged");
}

#[test]
fn many_schedules_are_logged_as_one_line_at_start() {
    let fake = FakeGitlab::new();
    let body: String = (0..101).map(|i| format!("  s{i}:\n    cron: \"0 0 1 1 *\"\n")).collect();
    let (dir, _) = setup(&fake, &format!("{body}  off:\n    cron: \"0 0 1 1 *\"\n    enabled: false\n"));
    let daemon = Daemon::start(dir.path());
    sleep(1500);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let summary = log_lines(&logs, "scheduled (each schedule's next slot is logged at debug level)");
    assert!(summary.iter().any(|l| l["schedules"] == 102 && l["paused"] == 1), "{logs}");
    assert_eq!(log_lines(&logs, "scheduled"), Vec::<serde_json::Value>::new(), "none is logged on its own");
}

/// The daemon's JSON log lines with this message.
fn log_lines(logs: &str, message: &str) -> Vec<serde_json::Value> {
    let lines = logs.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    lines.filter(|line| line["message"] == message).collect()
}

#[test]
fn kill_9_and_restart_fires_nothing_twice_and_catches_up() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n    catch_up: 1h\n");
    let daemon = Daemon::start(dir.path());
    sleep(2500);
    daemon.kill9();
    sleep(2500);
    let daemon = Daemon::start(dir.path());
    sleep(2500);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let slots = &slots_by_schedule(&fake)["every-second"];
    let mut unique = slots.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot was fired twice: {slots:?}");
    let reasons: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.params["variables"]["PIPECRON_REASON"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(reasons.iter().filter(|r| *r == "catch-up").count(), 1, "{reasons:?}");

    let db = dir.path().join("pipecron.db");
    let connection = rusqlite::Connection::open(&db).expect("opens");
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("checks");
    assert_eq!(integrity, "ok");
    let missed: i64 =
        connection.query_row("SELECT COUNT(*) FROM runs WHERE state = 'missed'", [], |r| r.get(0)).expect("counts");
    assert!(missed >= 1, "the slots missed while down are recorded");
    // Fired twice is sent twice: the fake sees it, where the history (one row per slot) never could.
    let sent: Vec<(String, String)> = slots_by_schedule(&fake)
        .into_iter()
        .flat_map(|(name, slots)| slots.into_iter().map(move |slot| (name.clone(), slot)))
        .collect();
    let once: std::collections::HashSet<&(String, String)> = sent.iter().collect();
    assert_eq!(once.len(), sent.len(), "a slot was sent twice: {sent:?}");
}

#[test]
fn reloads_on_sighup_and_on_edits_and_keeps_the_old_config_on_errors() {
    let fake = FakeGitlab::new();
    let (dir, file) = setup(&fake, "  first:\n    cron: \"* * * * * *\"\n");
    let url = {
        let text = std::fs::read_to_string(&file).expect("reads");
        text.lines().find_map(|l| l.strip_prefix("  gitlab: ")).expect("a url").to_string()
    };
    let daemon = Daemon::start(dir.path());
    sleep(1500);
    // An invalid edit is refused and `first` keeps firing.
    std::fs::write(&file, "schedules:\n  broken:\n    cron: \"61 * * * *\"\n").expect("writes");
    sleep(1500);
    // A valid edit replaces `first` with `second`.
    write_schedules(&file, &url, "  second:\n    cron: \"* * * * * *\"\n");
    sleep(1500);
    let before_hup = slots_by_schedule(&fake);
    // SIGHUP reloads too (the directory is unchanged, so nothing changes).
    daemon.signal("HUP");
    sleep(1500);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("invalid schedule file"), "{logs}");
    assert!(logs.contains("61 is out of range"), "{logs}");
    assert!(logs.contains("reloaded the schedules"), "{logs}");
    assert!(logs.contains("\"reason\":\"SIGHUP\""), "{logs}");
    let after = slots_by_schedule(&fake);
    assert!(before_hup["first"].len() >= 2, "first kept firing through the invalid edit: {before_hup:?}");
    assert!(after.contains_key("second"), "{after:?}");
    let first_last = before_hup["first"].last().cloned().unwrap_or_default();
    assert_eq!(after["first"].last().cloned().unwrap_or_default(), first_last, "first stopped after the reload");
}

#[test]
fn an_invalid_config_fails_fast_with_located_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    std::fs::write(dir.path().join("schedules/bad.yaml"), "schedules:\n  x:\n    cron: \"61 * * * *\"\n")
        .expect("writes");
    let run = common::Pipecron::new().current_dir(dir.path()).args(["run"]).run();
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(run.stderr.contains("bad.yaml:3:11"), "{run:#?}");
}

#[test]
fn as_pid_1_in_a_new_pid_namespace_sigterm_exits_cleanly() {
    if Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(std::env::var("CI").is_err(), "unshare --pid must work in CI");
        eprintln!("skipped: this machine cannot create PID namespaces");
        return;
    }
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n");
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_clear()
        .env("TRIGGER_TOKEN", TOKEN)
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare starts");
    sleep(2000);
    // The daemon is PID 1 inside; signal it from outside through its PID in our namespace.
    let inner = Command::new("pgrep").args(["-P", &child.id().to_string()]).output().expect("pgrep runs");
    let pid = String::from_utf8_lossy(&inner.stdout).trim().to_string();
    assert!(!pid.is_empty(), "pipecron runs under unshare");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success()));
    let (code, logs) = wait_with_timeout(&mut child);
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(!slots_by_schedule(&fake).is_empty());
}

#[test]
fn after_kill_9_the_slots_claimed_and_not_yet_sent_are_fired_by_the_restart() {
    let fake = FakeGitlab::new();
    // The jitter keeps each claimed slot waiting up to 4 s before it is sent.
    let (dir, _) = setup(&fake, "  spread:\n    cron: \"* * * * * *\"\n    jitter: 4s\n    catch_up: 1h\n");
    let daemon = Daemon::start(dir.path());
    let db = dir.path().join("pipecron.db");
    let waiting = |state: &str| -> Vec<(String, i64)> {
        let Ok(connection) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return Vec::new();
        };
        let Ok(mut statement) = connection.prepare("SELECT schedule, slot FROM runs WHERE state = ?1 ORDER BY slot")
        else {
            return Vec::new();
        };
        statement
            .query_map([state], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("reads")
            .map(|r| r.expect("a row"))
            .collect()
    };
    // A loaded CI machine may take a while to start the debug binary: wait for slots on their jitter, then kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting("claimed").len() < 2 && Instant::now() < deadline {
        sleep(200);
    }
    daemon.kill9();
    let claimed = waiting("claimed");
    assert!(!claimed.is_empty(), "slots were waiting on their jitter when the daemon died");
    let sent_before = fake.requests().len();

    let daemon = Daemon::start_with(dir.path(), &["--shutdown-grace", "10s"]);
    sleep(2000);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("took over"), "{logs}");
    let slots = &slots_by_schedule(&fake)["spread"];
    let mut unique = slots.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot was fired twice: {slots:?}");
    for (_, slot) in &claimed {
        let text = chrono::DateTime::from_timestamp_millis(*slot)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        assert_eq!(slots.iter().filter(|s| **s == text).count(), 1, "{text} was claimed and not sent: {slots:?}");
    }
    assert!(fake.requests().len() > sent_before);
    assert!(waiting("claimed").is_empty() && waiting("sending").is_empty(), "nothing is left unfinished");
}

#[test]
fn a_dry_run_prints_each_request_with_the_token_masked_and_sends_and_records_nothing() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--dry-run", "--log-format", "json", "--listen", "off"])
        .current_dir(dir.path())
        .env_clear()
        .env("TRIGGER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    sleep(2500);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().is_ok_and(|s| s.success()));
    let (code, logs) = wait_with_timeout(&mut child);
    assert_eq!(code, Some(0), "{logs}");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut printed).expect("reads");
    assert!(printed.matches("POST ").count() >= 2, "each request is printed:\n{printed}");
    assert!(printed.contains("PIPECRON_SCHEDULE") && printed.contains("every-second"), "{printed}");
    assert!(printed.contains(&format!("glptt-{}…", &TOKEN[6..10])), "the token, masked:\n{printed}");
    assert!(!printed.contains(&TOKEN[6..]) && !logs.contains(&TOKEN[6..]), "the token is shown");
    assert!(logs.contains("\"outcome\":\"dry-run\""), "the log says what it did:\n{logs}");
    assert!(fake.requests().is_empty(), "nothing is sent");
    assert!(!dir.path().join("pipecron.db").exists(), "nothing is recorded");
}

#[test]
fn the_history_is_pruned_to_each_schedules_rule_and_keeps_each_newest_run() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n    history_max_runs: 100\n");
    // A first start makes the state file.
    let first = Daemon::start(dir.path());
    first.listening();
    let (code, logs) = first.stop();
    assert_eq!(code, Some(0), "{logs}");
    let db = dir.path().join("pipecron.db");
    let connection = rusqlite::Connection::open(&db).expect("opens");
    let insert =
        "INSERT INTO runs (schedule, slot, reason, state, attempts) VALUES ($1, $2, 'schedule', 'succeeded', 1)";
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    for i in 1..=2_000 {
        connection.execute(insert, rusqlite::params!["nightly", now - i * day / 10]).expect("inserts");
    }
    for i in 100..150 {
        connection.execute(insert, rusqlite::params!["removed", now - i * day]).expect("inserts");
    }
    drop(connection);

    let daemon = Daemon::start(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !daemon.logs().contains("pruned the history") {
        assert!(std::time::Instant::now() < deadline, "no pruning:\n{}", daemon.logs());
        sleep(200);
    }
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("\"runs\":1949"),
        "1,900 over the cap (however often the schedule fires now) and 49 past 90 days:\n{logs}"
    );
    let connection = rusqlite::Connection::open(&db).expect("opens");
    let count = |name: &str| -> (i64, i64) {
        let sql = "SELECT COUNT(*), MAX(slot) FROM runs WHERE schedule = $1";
        connection.query_row(sql, [name], |r| Ok((r.get(0)?, r.get(1)?))).expect("counts")
    };
    assert_eq!(count("nightly"), (100, now - day / 10), "the newest 100");
    assert_eq!(count("removed"), (1, now - 100 * day), "only the newest, 100 days old");
}
