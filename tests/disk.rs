//! The state file's disk under abuse: a file that is not a database, a state directory pipecron may not write,
//! and a state file another process holds locked. Each is refused with a message that says what is wrong and
//! what to do, or waited out, and no file is changed that pipecron did not create.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Pipecron;
use common::daemon::{Daemon, setup, slots_by_schedule};
use common::fake_gitlab::{FakeGitlab, TOKEN};

#[test]
fn a_state_file_that_is_not_a_database_is_refused_and_left_as_it_is() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n");
    let db = dir.path().join("pipecron.db");
    let noise: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&db, &noise).expect("writes");
    for command in [&["run", "--listen", "off"][..], &["status"], &["history"]] {
        let run = Pipecron::new().current_dir(dir.path()).env("TRIGGER_TOKEN", TOKEN).args(command).run();
        assert_eq!(run.status, 1, "{command:?}: {run:#?}");
        assert!(run.stderr.contains("pipecron.db") && run.stderr.contains("not a SQLite database"), "{run:#?}");
        assert!(run.stderr.contains("--state"), "says what to do: {run:#?}");
    }
    assert_eq!(std::fs::read(&db).expect("reads"), noise, "the file is left as it was");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("lists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with("-wal") || n.ends_with("-shm")),
        "nothing was created beside it: {names:?}"
    );
}

#[test]
fn a_state_directory_pipecron_may_not_write_says_permission_denied_and_who() {
    // Root writes anywhere: pipecron runs as nobody, as a hardened service would.
    if !Pipecron::new().args(["--version"]).run().stdout.contains("pipecron")
        || std::process::Command::new("setpriv").arg("--version").output().is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing; .ci/run installs util-linux");
        return eprintln!("skipped: setpriv is missing");
    }
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n");
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod")
    };
    mode(dir.path(), 0o755);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("creates");
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--listen", "off", "--state"])
        .arg(state.join("pipecron.db"))
        .current_dir(dir.path())
        .env_clear()
        .env("TRIGGER_TOKEN", TOKEN)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    common::artifacts::keep("stderr", stderr.as_bytes());
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ermission denied"), "{stderr}");
    assert!(stderr.contains(&state.display().to_string()), "names the directory: {stderr}");
    assert!(stderr.contains("65534") || stderr.contains("nobody"), "names who may not write: {stderr}");
}

#[test]
fn a_state_file_locked_by_another_process_for_10_s_is_waited_out_and_nothing_is_lost() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n");
    let db = dir.path().join("pipecron.db");
    let daemon = Daemon::spawn(dir.path(), &["--listen", "off", "--shutdown-grace", "5s"], &[]);
    while slots_by_schedule(&fake).get("every-second").is_none_or(|s| s.len() < 2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another process takes the write lock and holds it for 10 s.
    let locker = rusqlite::Connection::open(&db).expect("opens");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("locks");
    std::thread::sleep(Duration::from_secs(10));
    locker.execute_batch("COMMIT").expect("unlocks");
    std::thread::sleep(Duration::from_secs(3));
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let connection = rusqlite::Connection::open(&db).expect("opens");
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("checks");
    assert_eq!(integrity, "ok");
    let (count, first, last, unfinished): (i64, i64, i64, i64) = connection
        .query_row("SELECT COUNT(*), MIN(slot), MAX(slot), SUM(state IN ('claimed', 'sending')) FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("counts");
    assert_eq!(count, (last - first) / 1000 + 1, "every second has its row, fired or missed:\n{logs}");
    assert_eq!(unfinished, 0, "{logs}");
    let sent = &slots_by_schedule(&fake)["every-second"];
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "nothing reached GitLab twice");
}

#[test]
fn on_a_full_disk_it_fires_on_says_so_once_and_records_the_runs_when_space_returns() {
    // A small tmpfs of its own, in a mount namespace of its own: nothing of the machine's disk is filled.
    let namespace = std::process::Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success());
    if !namespace {
        assert!(std::env::var_os("CI").is_none(), "unshare -m must work in CI (it runs as root)");
        return eprintln!("skipped: cannot make a mount namespace here");
    }
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n    catch_up: 1h\n");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("creates");
    let log = dir.path().join("daemon.log");
    let mut shell = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=4m tmpfs "$0" && "$@"; sleep 60"#)
        .arg(&state)
        .arg(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--log-format", "json", "--listen", "127.0.0.1:0", "--shutdown-grace", "5s", "--state"])
        .arg(state.join("pipecron.db"))
        .current_dir(dir.path())
        .env_clear()
        .env("TRIGGER_TOKEN", TOKEN)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stderr(std::fs::File::create(&log).expect("a log"))
        .spawn()
        .expect("starts");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let inside = |command: &str| {
        let status = std::process::Command::new("nsenter")
            .args(["-t", &shell.id().to_string(), "-m", "--", "sh", "-c", command])
            .status()
            .expect("nsenter runs");
        status.success()
    };
    let sent = || slots_by_schedule(&fake).get("every-second").map_or(0, Vec::len);
    wait("it fires", || sent() >= 2);
    let addr = listening(&logs);

    let filler = state.join("filler");
    inside(&format!("cat /dev/zero > {} 2>/dev/null", filler.display()));
    wait("readyz says the disk is full", || {
        let (status, body) = common::daemon::http(&addr, "GET", "/readyz");
        status == 503 && body.contains("cannot be written")
    });
    let full = sent();
    std::thread::sleep(Duration::from_secs(3));
    assert!(sent() >= full + 2, "it keeps firing while the disk is full:\n{}", logs());
    assert_eq!(common::daemon::http(&addr, "GET", "/healthz").0, 200, "the timer loop lives on");
    // `status` reads the history, and says that the disk is full; `--quiet` (a health check) fails on it.
    let status = |quiet: &str| {
        let command = format!(
            "cd {} && {} status {quiet} --state {}/pipecron.db",
            dir.path().display(),
            env!("CARGO_BIN_EXE_pipecron"),
            state.display()
        );
        let output = std::process::Command::new("nsenter")
            .args(["-t", &shell.id().to_string(), "-m", "--", "sh", "-c", &command])
            .env("TRIGGER_TOKEN", TOKEN)
            .output()
            .expect("nsenter runs");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, said) = status("");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("KiB free: the daemon cannot record runs"), "{said}");
    let (code, said) = status("--quiet");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("unhealthy"), "{said}");
    assert!(inside(&format!("rm {}", filler.display())), "frees the space");
    wait("the writes resume", || logs().contains("can be written again"));
    let resumed = sent();
    wait("it fires again", || sent() >= resumed + 2);
    wait("readyz is ready again", || common::daemon::http(&addr, "GET", "/readyz").0 == 200);

    let pid = String::from_utf8_lossy(
        &std::process::Command::new("pgrep").args(["-P", &shell.id().to_string()]).output().expect("pgrep").stdout,
    )
    .trim()
    .to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success()));
    wait("it stops", || logs().contains("pipecron stopped"));
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).expect("creates");
    assert!(inside(&format!("cp {}/pipecron.db* {}", state.display(), copy.display())), "copies the store out");
    let _ = shell.kill();
    let _ = shell.wait();

    let logs = logs();
    common::artifacts::keep("log", logs.as_bytes());
    assert_eq!(logs.matches("the state database cannot be written;").count(), 1, "logged once:\n{logs}");
    assert_eq!(logs.matches("firing without a claim").count(), 1, "logged once:\n{logs}");
    assert!(logs.contains("recorded the runs fired while the state database could not be written"), "{logs}");
    let connection = rusqlite::Connection::open(copy.join("pipecron.db")).expect("opens");
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("checks");
    assert_eq!(integrity, "ok", "the store is intact");
    let (count, first, last, unfinished): (i64, i64, i64, i64) = connection
        .query_row("SELECT COUNT(*), MIN(slot), MAX(slot), SUM(state IN ('claimed', 'sending')) FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("counts");
    let mut rows = connection.prepare("SELECT slot, state, reason FROM runs ORDER BY slot").expect("prepares");
    let rows: Vec<(i64, String, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("reads")
        .collect::<Result<_, _>>()
        .expect("reads");
    assert_eq!(count, (last - first) / 1000 + 1, "every second of the outage is recorded: {rows:?}");
    assert_eq!(unfinished, 0, "{logs}");
    let fired: Vec<i64> = rows.iter().filter(|(_, state, _)| state == "succeeded").map(|(slot, ..)| *slot).collect();
    let sent = &slots_by_schedule(&fake)["every-second"];
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "nothing reached GitLab twice");
    assert_eq!(fired.len(), sent.len(), "each slot that reached GitLab has its row: {rows:?}");
}

fn wait(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address the daemon bound, from its log.
fn listening(logs: &dyn Fn() -> String) -> String {
    let mut found = None;
    wait("it says where it listens", || {
        found = logs().lines().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "listening").then(|| event["addr"].as_str().map(String::from)).flatten()
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn status_without_a_state_file_shows_no_runs_and_makes_none() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n");
    let run = Pipecron::new().current_dir(dir.path()).env("TRIGGER_TOKEN", TOKEN).args(["status", "--json"]).run();
    assert_eq!(run.status, 0, "{run:#?}");
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(rows[0]["name"], "nightly");
    assert!(rows[0]["last_run"].is_null(), "{rows}");
    assert!(!dir.path().join("pipecron.db").exists(), "status made a state file");
}
