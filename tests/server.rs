//! The daemon's HTTP server, end to end: health checks and the JSON API of a running `pipecron run`.

mod common;

use std::time::Duration;

use common::daemon::{Daemon, http, setup};
use common::fake_gitlab::{FakeGitlab, TOKEN};
use common::metrics::{prometheus, promtool_lint, value};

#[test]
fn health_checks_and_the_json_api_serve_the_daemons_live_state() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  every-second:\n    cron: \"* * * * * *\"\n    description: <b>nightly</b>\n");
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    let addr = daemon.listening();
    while fake.requests().len() < 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http(&addr, "GET", "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http(&addr, "GET", "/readyz"), (200, "ready\n".to_string()));

    // The newest slot may still be on its way (`sending`) when the fake has seen it: wait for a recorded one.
    let rows = wait_for(|| {
        let (status, body) = http(&addr, "GET", "/api/v1/schedules");
        assert_eq!(status, 200, "{body}");
        let rows: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        (rows[0]["last_run"]["state"] == "succeeded").then_some(rows)
    });
    assert_eq!(rows[0]["name"], "every-second");
    assert_eq!(rows[0]["description"], "<b>nightly</b>");
    assert_eq!(rows[0]["token"], format!("glptt-{}…", &TOKEN[6..10]));
    assert_eq!(rows[0]["last_run"]["state"], "succeeded");

    let (status, body) = http(&addr, "GET", "/api/v1/schedules/every-second");
    assert_eq!(status, 200, "{body}");
    let one: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(one["name"], "every-second");
    assert!(one["next_run"].is_string(), "{one}");

    let (status, body) = http(&addr, "GET", "/api/v1/schedules/every-second/runs?limit=2");
    assert_eq!(status, 200, "{body}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
    assert_eq!(runs.len(), 2);
    assert!(runs[0]["slot"].as_str() > runs[1]["slot"].as_str(), "newest first: {runs:?}");
    let before = runs[0]["slot"].as_str().expect("a slot");
    let (status, body) = http(&addr, "GET", &format!("/api/v1/schedules/every-second/runs?limit=1&before={before}"));
    assert_eq!(status, 200, "{body}");
    let older: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
    assert_eq!(older[0]["slot"], runs[1]["slot"], "the next page starts where the last one ended");
    assert_eq!(http(&addr, "GET", "/api/v1/schedules/every-second/runs?before=yesterday").0, 400);

    let (status, body) = http(&addr, "GET", "/api/v1/schedules/nightly-typo");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no schedule named 'nightly-typo'"), "{body}");
    assert_eq!(http(&addr, "GET", "/api/v1/schedules/nightly-typo/runs").0, 404);

    for path in ["/api/v1/schedules", "/api/v1/schedules/every-second", "/api/v1/schedules/every-second/runs"] {
        assert!(!http(&addr, "GET", path).1.contains(&TOKEN[10..]), "{path} shows the token");
    }
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(std::net::TcpStream::connect(&addr).is_err(), "the server stops with the daemon");
}

#[test]
fn metrics_count_what_a_running_daemon_fired() {
    let fake = FakeGitlab::new();
    let schedules = "  every-second:\n    cron: \"* * * * * *\"\n  nightly:\n    cron: \"30 0 * * *\"\n";
    let (dir, _) = setup(&fake, schedules);
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    let addr = daemon.listening();
    while fake.requests().len() < 3 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, text) = http(&addr, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(&TOKEN[6..]), "the token is in the metrics");
    promtool_lint(&text);
    let samples = prometheus(&text);
    let get = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels).unwrap_or(f64::NAN);
    let ok = [("schedule", "every-second"), ("reason", "schedule"), ("outcome", "succeeded")];
    let fires = get("pipecron_fires_total", &ok);
    assert!(fires >= 2.0, "{fires} fires counted of {} sent:\n{text}", fake.requests().len());
    assert!(get("pipecron_fire_lateness_seconds_count", &[]) >= fires, "{text}");
    assert!(get("pipecron_trigger_request_duration_seconds_count", &[]) >= fires, "{text}");
    let now = chrono::Utc::now().timestamp() as f64;
    let one = [("schedule", "every-second")];
    let last_success = get("pipecron_schedule_last_success_timestamp_seconds", &one);
    assert!((now - 10.0..=now).contains(&last_success), "last success {last_success}, now {now}");
    assert_eq!(get("pipecron_schedule_period_seconds", &one), 1.0);
    let next = get("pipecron_schedule_next_fire_timestamp_seconds", &[("schedule", "nightly")]);
    assert!(next > now && next <= now + 86_400.0, "nightly next fires at {next}");
    assert_eq!(get("pipecron_schedule_period_seconds", &[("schedule", "nightly")]), 86_400.0);
    assert_eq!(get("pipecron_schedules", &[("state", "active")]), 2.0);
    assert_eq!(get("pipecron_replicas_alive", &[]), 1.0);
    assert!(get("pipecron_scheduler_last_wake_timestamp_seconds", &[]) > now - 60.0);
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
}

#[test]
fn a_port_in_use_is_a_clear_start_up_error_and_off_serves_nothing() {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, "  nightly:\n    cron: \"30 0 * * *\"\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = taken.local_addr().expect("an address").to_string();
    let daemon = Daemon::spawn(dir.path(), &["--listen", &addr], &[]);
    let (code, logs) = daemon.exits_within(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains(&format!("cannot listen on {addr}")), "{logs}");

    let daemon = Daemon::spawn(dir.path(), &["--listen", "off"], &[]);
    std::thread::sleep(Duration::from_millis(800));
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains("\"listening\""), "{logs}");
}

/// Polls `probe` every 50 ms until it returns something, for at most 10 s.
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}
