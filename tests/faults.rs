//! The fault matrix, end to end: the real daemon (`pipecron run`) against GitLabs that misbehave.
//!
//! Each fault is a schedule of its own, pointing at a server of its own: the fake GitLab told to fail, or a raw TCP
//! "hostile" server (`common::hostile`) that never answers, resets, trickles, floods or is not TLS. All of them run
//! in ONE daemon and are due at the same second, beside `healthy`, which fires every second on a healthy fake. Each
//! test case reads its own fault's run from the daemon's API and asserts four things: the state, the attempts, the
//! message, and that `healthy` fired every second, on time, from the fault's slot until its run ended. Where the
//! fault's server answers every request alike, `run-now` is run against it as well, meanwhile, for its exit status.
//!
//! The daemon runs once for the whole file (`outcome()`, shared by every case); each case's assertions are its own.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use common::daemon::{Daemon, http, setup, slots_by_schedule};
use common::fake_gitlab::{FakeGitlab, Scripted, TOKEN};
use common::hostile::{Fault, Hostile, http_answer, pki_for, refused_port, serve_tls};
use common::{Pipecron, Run, in_background};
use serde_json::Value;

/// One fault: its schedule's name and keys (`gitlab:` and the rest, as YAML lines under the schedule).
struct Case {
    name: &'static str,
    keys: String,
    /// Its server answers every request alike, so `run-now` can be run against it too.
    run_now: bool,
}

/// What the daemon did, for every case to read its own part of.
struct Outcome {
    /// The slot every fault was due at.
    slot: DateTime<Utc>,
    /// Each fault's run with reason `schedule`, from `GET /api/v1/schedules/NAME/runs`.
    runs: BTreeMap<String, Value>,
    /// The daemon's log, one JSON object a line.
    log: Vec<Value>,
    /// `run-now NAME` for the cases that have it.
    run_now: BTreeMap<String, Run>,
    healthy: FakeGitlab,
    fakes: BTreeMap<&'static str, FakeGitlab>,
    hostiles: BTreeMap<&'static str, Hostile>,
    /// The daemon's peak resident memory (VmHWM), read before it stopped.
    peak_rss_kib: u64,
}

const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway\
                         </h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";

const CREATED_BUT: &str = "GitLab answered 201 Created but";
const CANNOT_TELL: &str = "; a pipeline may have been created, and pipecron cannot tell which, so it does not retry; \
                           look for it among the project's pipelines, and check that `gitlab` is GitLab's address";

fn outcome() -> &'static Outcome {
    static OUTCOME: OnceLock<Result<Outcome, String>> = OnceLock::new();
    let outcome = OUTCOME.get_or_init(|| {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(scenario).map_err(|panic| {
            let text = panic.downcast_ref::<String>().cloned();
            text.or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
        });
        eprintln!("the fault scenario took {:.1}s", started.elapsed().as_secs_f64());
        outcome
    });
    match outcome {
        Ok(outcome) => outcome,
        Err(panic) => panic!("the shared daemon run failed: {panic}"),
    }
}

/// Starts every server, the daemon with `healthy`, then adds every fault's schedule, due at one slot, and waits
/// until each has its ending.
fn scenario() -> Outcome {
    let healthy = FakeGitlab::new();
    let (dir, _) = setup(&healthy, "  healthy:\n    cron: \"* * * * * *\"\n");
    let mut fakes = BTreeMap::new();
    let mut hostiles = BTreeMap::new();
    let mut cases = Vec::new();
    let mut case = |name: &'static str, keys: String, run_now: bool| cases.push(Case { name, keys, run_now });

    // The fake GitLab, failing once and then creating the pipeline.
    let once = [
        ("http-500", Scripted::Status(500, r#"{"message":"500 Internal Server Error"}"#.into())),
        ("http-502", Scripted::Status(502, String::new())),
        ("http-503", Scripted::Status(503, String::new())),
        ("http-504", Scripted::Status(504, String::new())),
        ("retry-after-seconds", Scripted::TooManyRequests { retry_after: 2 }),
        ("retry-after-date", Scripted::TooManyRequestsUntil(Duration::from_secs(3))),
        ("pipeline-rate-limit", Scripted::RateLimited),
    ];
    for (name, answer) in once {
        let fake = FakeGitlab::new();
        fake.script([answer]);
        let retries = if name == "pipeline-rate-limit" { 0 } else { 2 };
        case(name, format!("gitlab: {}\nretries: {retries}", fake.start_in_background()), false);
        fakes.insert(name, fake);
    }

    let mut hostile = |name: &'static str, fault: Fault| {
        let server = Hostile::start(fault);
        let url = server.url.clone();
        hostiles.insert(name, server);
        url
    };
    let url = hostile("silent", Fault::Silent);
    case("silent", format!("gitlab: {url}\ntimeout: 1s\nretries: 1"), true);
    let url = hostile("reset", Fault::Reset);
    case("reset", format!("gitlab: {url}\nretries: 1"), true);
    let url = hostile("proxy-html-502", Fault::Answer(http_answer("502 Bad Gateway", "text/html", NGINX_502)));
    case("proxy-html-502", format!("gitlab: {url}\nretries: 2"), true);
    let page = "<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome</h1></body></html>";
    let url = hostile("created-not-json", Fault::Answer(http_answer("201 Created", "text/html", page)));
    case("created-not-json", format!("gitlab: {url}\nretries: 2"), true);
    let no_id = r#"{"status":"created","web_url":"https://gitlab.example.com/p/-/pipelines"}"#;
    let url = hostile("created-without-id", Fault::Answer(http_answer("201 Created", "application/json", no_id)));
    case("created-without-id", format!("gitlab: {url}\nretries: 2"), false);
    let head = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n".to_string();
    let flood = Fault::Flood { head, start: "[".into(), filler: b"1,".repeat(5000), length: 10_000_000 };
    let url = hostile("created-10-mb", flood);
    case("created-10-mb", format!("gitlab: {url}\nretries: 2"), false);
    let head = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n".to_string();
    let start = "<html><head><title>Bad Gateway</title></head><body>".to_string();
    let flood = Fault::Flood { head, start, filler: b"<p>padding</p>\n".repeat(4096), length: 200 << 20 };
    let url = hostile("huge-answer", flood);
    case("huge-answer", format!("gitlab: {url}\nretries: 0"), false);
    // A slow loris from the first byte on, a byte a second: a timeout that counted only the gaps between bytes
    // would never pass.
    let answer = http_answer("201 Created", "application/json", r#"{"id":1,"status":"created"}"#);
    let url = hostile("slow-loris", Fault::Trickle { head: Vec::new(), bytes: answer, every: Duration::from_secs(1) });
    case("slow-loris", format!("gitlab: {url}\ntimeout: 2s\nretries: 0"), false);
    let port = hostile("tls-handshake", Fault::PlainToTls).rsplit(':').next().unwrap_or_default().to_string();
    case("tls-handshake", format!("gitlab: https://localhost:{port}\nretries: 0"), true);

    case("refused", format!("gitlab: http://127.0.0.1:{}\nretries: 1", refused_port()), true);
    case("unresolvable", "gitlab: https://gitlab.invalid\ntimeout: 2s\nretries: 0".into(), true);
    let wrong_host = FakeGitlab::new();
    let pki = pki_for("gitlab.other.example");
    std::fs::write(dir.path().join("schedules/other-ca.pem"), &pki.ca).expect("writes the CA");
    let url = in_background({
        let router = wrong_host.router();
        move || async move { format!("https://localhost:{}", serve_tls(router, &pki).await) }
    });
    case("tls-wrong-host", format!("gitlab: {url}\nca_file: other-ca.pem\nretries: 0"), true);
    fakes.insert("tls-wrong-host", wrong_host);

    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "5s"], &[]);
    let addr = daemon.listening();
    // Two to three seconds ahead: time for the reload, which counts added schedules from the moment it happens.
    let slot = (Utc::now() + chrono::Duration::seconds(3)).with_nanosecond(0).expect("a whole second");
    let cron = format!("\"{} {} {} * * *\"", slot.second(), slot.minute(), slot.hour());
    let mut yaml = "defaults:\n  token: ${TRIGGER_TOKEN}\n  project: 9\n  ref: master\nschedules:\n".to_string();
    for case in &cases {
        yaml.push_str(&format!("  {}:\n    cron: {cron}\n", case.name));
        yaml.extend(case.keys.lines().map(|line| format!("    {line}\n")));
    }
    // Written whole, then renamed: the daemon never reads half a file (files starting with `.` are skipped).
    let schedules = dir.path().join("schedules");
    std::fs::write(schedules.join(".faults.yaml"), yaml).expect("writes");
    std::fs::rename(schedules.join(".faults.yaml"), schedules.join("faults.yaml")).expect("renames");
    wait_for(&daemon, "\"message\":\"reloaded the schedules\"", Duration::from_secs(10));
    assert!(Utc::now() < slot, "the daemon reloaded after the faults' slot {slot}:\n{}", daemon.logs());

    std::thread::sleep((slot - Utc::now()).to_std().unwrap_or_default());
    let run_now: Vec<_> = cases
        .iter()
        .filter(|case| case.run_now)
        .map(|case| {
            let (name, dir) = (case.name, dir.path().to_path_buf());
            let run =
                move || Pipecron::new().current_dir(dir).env("TRIGGER_TOKEN", TOKEN).args(["run-now", name]).run();
            (name.to_string(), std::thread::spawn(run))
        })
        .collect();

    let mut runs = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs.len() < cases.len() {
        assert!(Instant::now() < deadline, "not every fault ended: {:?}\n{}", runs.keys(), daemon.logs());
        std::thread::sleep(Duration::from_millis(200));
        for case in &cases {
            if runs.contains_key(case.name) {
                continue;
            }
            let ended = |run: &Value| ["succeeded", "failed", "unknown", "missed"].iter().any(|s| run["state"] == *s);
            if let Some(run) = scheduled_run(&addr, case.name).filter(ended) {
                runs.insert(case.name.to_string(), run);
            }
        }
    }
    let run_now: BTreeMap<String, Run> =
        run_now.into_iter().map(|(name, thread)| (name, thread.join().expect("run-now ran"))).collect();
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).expect("the daemon's status");
    let peak_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    // A second more, so that `healthy`'s slot in the second the last fault ended is logged too.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains(&TOKEN[6..]), "the token was logged");
    let log = logs.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    Outcome { slot, runs, log, run_now, healthy, fakes, hostiles, peak_rss_kib }
}

fn wait_for(daemon: &Daemon, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !daemon.logs().contains(needle) {
        assert!(Instant::now() < deadline, "the daemon did not log {needle}:\n{}", daemon.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The schedule's newest run with reason `schedule`, from the daemon's API.
fn scheduled_run(addr: &str, name: &str) -> Option<Value> {
    let (status, body) = http(addr, "GET", &format!("/api/v1/schedules/{name}/runs"));
    assert_eq!(status, 200, "{body}");
    let runs: Value = serde_json::from_str(&body).expect("JSON");
    runs.as_array()?.iter().find(|run| run["reason"] == "schedule").cloned()
}

/// The fault's run: asserts its state, attempts and message (`message` is told the error, or "" for none), and
/// that `healthy` kept firing meanwhile.
fn assert_fault(name: &str, state: &str, attempts: u64, message: impl FnOnce(&str)) -> &'static Value {
    let outcome = outcome();
    let run = &outcome.runs[name];
    assert_eq!((run["state"].as_str(), run["attempts"].as_u64()), (Some(state), Some(attempts)), "{run:#}");
    message(run["error"].as_str().unwrap_or_default());
    healthy_kept_firing(outcome, run);
    run
}

/// `healthy` fired every second from the faults' slot to the second this run ended, each once, each on time
/// (lateness under a second, a generous bound: the point is that no fault held it up), and GitLab got each.
fn healthy_kept_firing(outcome: &Outcome, run: &Value) {
    let finished: DateTime<Utc> = run["finished_at"].as_str().and_then(|t| t.parse().ok()).expect("finished_at");
    let mut fired: BTreeMap<DateTime<Utc>, Vec<(i64, String)>> = BTreeMap::new();
    for line in outcome.log.iter().filter(|l| l["message"] == "fired" && l["schedule"] == "healthy") {
        let slot = line["slot"].as_str().and_then(|s| s.parse().ok()).expect("a slot");
        let outcome = line["outcome"].as_str().unwrap_or_default().to_string();
        fired.entry(slot).or_default().push((line["lateness_ms"].as_i64().unwrap_or(i64::MAX), outcome));
    }
    let received = slots_by_schedule(&outcome.healthy).remove("healthy").unwrap_or_default();
    let mut second = outcome.slot;
    let last = finished.with_nanosecond(0).expect("a whole second");
    assert!(second <= last, "the run ended before its slot: {run:#}");
    while second <= last {
        let text = pipecron::trigger::request::slot_text(second);
        match fired.get(&second).map(Vec::as_slice) {
            Some([(lateness, outcome)]) => {
                assert!(*lateness < 1000, "healthy's slot {text} was {lateness} ms late, meanwhile: {run:#}");
                assert_eq!(outcome, "succeeded", "healthy's slot {text}");
            }
            other => panic!("healthy's slot {text} fired {other:?} while the fault ran: {run:#}"),
        }
        assert_eq!(received.iter().filter(|s| **s == text).count(), 1, "GitLab got healthy's slot {text} once");
        second += chrono::Duration::seconds(1);
    }
}

/// The daemon's `retrying` log lines for `name`: (error, retry_in).
fn retries_logged(name: &str) -> Vec<(String, String)> {
    let lines = outcome().log.iter().filter(|l| l["message"] == "retrying" && l["schedule"] == name);
    lines
        .map(|l| (l["error"].as_str().unwrap_or_default().into(), l["retry_in"].as_str().unwrap_or_default().into()))
        .collect()
}

/// `run-now NAME` exited with `status` and printed `message` as its error.
fn run_now_says(name: &str, status: i32, message: &str) {
    let run = &outcome().run_now[name];
    assert_eq!(run.status, status, "{run:#?}");
    assert!(run.stderr.contains(&format!("error: {message}\n")), "{run:#?}");
    assert!(!run.stderr.contains(&TOKEN[6..]) && !run.stdout.contains(&TOKEN[6..]), "the token was printed");
}

/// Requests for the scheduled slot (not run-now's) that the fake got.
fn scheduled_requests(fake: &FakeGitlab) -> Vec<common::fake_gitlab::Recorded> {
    fake.requests().into_iter().filter(|r| r.params["variables"]["PIPECRON_REASON"] == "schedule").collect()
}

fn scheduled_hostile_requests(name: &str) -> usize {
    outcome().hostiles[name].requests().iter().filter(|r| r.contains("PIPECRON_REASON%5D=schedule")).count()
}

fn once_then_created(name: &str, retry_message: &str) {
    let run = assert_fault(name, "succeeded", 2, |error| assert_eq!(error, ""));
    assert_eq!(run["http_status"], 201, "{run:#}");
    assert_eq!(run["pipeline"]["id"], 1001, "{run:#}");
    let retries = retries_logged(name);
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].0, retry_message);
    assert_eq!(scheduled_requests(&outcome().fakes[name]).len(), 2);
}

#[test]
fn http_500_then_success() {
    once_then_created("http-500", "GitLab answered 500: 500 Internal Server Error");
}

#[test]
fn http_502_then_success() {
    once_then_created(
        "http-502",
        "GitLab (or a proxy in front of it) answered 502: (empty body); a pipeline may have been created",
    );
}

#[test]
fn http_503_then_success() {
    once_then_created("http-503", "GitLab answered 503: (empty body)");
}

#[test]
fn http_504_then_success() {
    once_then_created(
        "http-504",
        "GitLab (or a proxy in front of it) answered 504: (empty body); a pipeline may have been created",
    );
}

/// The arrival of the fake's requests for the scheduled slot.
fn arrivals(name: &str) -> Vec<DateTime<Utc>> {
    scheduled_requests(&outcome().fakes[name]).iter().map(|r| r.at).collect()
}

#[test]
fn http_429_with_retry_after_in_seconds_waits_that_long() {
    once_then_created(
        "retry-after-seconds",
        "GitLab answered 429, too many requests: Retry later; it asked to wait 2s",
    );
    let at = arrivals("retry-after-seconds");
    assert!(at[1] - at[0] >= chrono::Duration::seconds(2), "the retry came after {:?}", at[1] - at[0]);
}

#[test]
fn http_429_with_retry_after_as_an_http_date_waits_until_then() {
    let name = "retry-after-date";
    let run = assert_fault(name, "succeeded", 2, |error| assert_eq!(error, ""));
    assert_eq!(run["pipeline"]["id"], 1001, "{run:#}");
    let retries = retries_logged(name);
    assert_eq!(retries.len(), 1, "{retries:?}");
    let asked = retries[0].0.strip_prefix("GitLab answered 429, too many requests: Retry later; it asked to wait ");
    assert!(asked.is_some_and(|s| ["1s", "2s", "3s"].contains(&s)), "{retries:?}");
    let date = outcome().fakes[name].retry_after_dates()[0];
    let at = arrivals(name);
    // HTTP dates count whole seconds; a few milliseconds either way are the two clocks' reading of the same one.
    assert!(at[1] >= date - chrono::Duration::milliseconds(20), "the retry came at {}, before {date}", at[1]);
}

#[test]
fn http_400_pipeline_rate_limit_is_transient() {
    let run = assert_fault("pipeline-rate-limit", "failed", 1, |error| {
        assert_eq!(
            error,
            "GitLab's pipeline rate limit: Too many pipelines created in the last minute. Try again later."
        )
    });
    assert_eq!(run["http_status"], 400);
}

#[test]
fn connection_refused_fails_and_nothing_may_exist() {
    let message = "cannot connect to 127.0.0.1: Connection refused (os error 111) (gave up after 2 attempts)";
    let run = assert_fault("refused", "failed", 2, |error| assert_eq!(error, message));
    assert_eq!(run["http_status"], Value::Null);
    run_now_says("refused", 4, message);
}

#[test]
fn a_connection_accepted_that_never_answers_is_unknown_after_the_timeout() {
    let message = "no answer from 127.0.0.1 within 1s; a pipeline may have been created (gave up after 2 attempts)";
    assert_fault("silent", "unknown", 2, |error| assert_eq!(error, message));
    assert_eq!(scheduled_hostile_requests("silent"), 2, "each attempt's request was read in full");
    run_now_says("silent", 5, message);
}

#[test]
fn a_connection_reset_after_the_request_was_read_is_unknown_and_says_so() {
    let message = "the request to 127.0.0.1 failed: Connection reset by peer (os error 104); a pipeline may have been \
                   created (gave up after 2 attempts)";
    assert_fault("reset", "unknown", 2, |error| assert_eq!(error, message));
    assert_eq!(scheduled_hostile_requests("reset"), 2, "each attempt's request was read in full");
    run_now_says("reset", 5, message);
}

#[test]
fn a_tls_handshake_failure_fails_and_sends_nothing() {
    let message = "cannot connect to localhost: received corrupt message of type InvalidContentType; the server there \
                   did not answer in TLS: does it serve plain http:// on that port?";
    assert_fault("tls-handshake", "failed", 1, |error| assert_eq!(error, message));
    assert!(outcome().hostiles["tls-handshake"].requests().is_empty());
    run_now_says("tls-handshake", 4, message);
}

#[test]
fn a_certificate_for_the_wrong_host_fails_with_a_hint_and_sends_nothing() {
    let hint = "; set `gitlab` to a name GitLab's certificate is valid for";
    let run = assert_fault("tls-wrong-host", "failed", 1, |error| {
        assert!(error.starts_with("cannot connect to localhost: invalid peer certificate: "), "{error}");
        assert!(error.contains("not valid for name") && error.ends_with(hint), "{error}");
    });
    assert!(outcome().fakes["tls-wrong-host"].requests().is_empty(), "no request got through");
    run_now_says("tls-wrong-host", 4, run["error"].as_str().unwrap_or_default());
}

#[test]
fn a_name_that_does_not_resolve_fails_and_sends_nothing() {
    let run = assert_fault("unresolvable", "failed", 1, |error| {
        assert!(error.starts_with("cannot connect to gitlab.invalid: "), "{error}");
        assert!(error.ends_with("; is the host name in `gitlab` right, and can this machine resolve it?"), "{error}");
        assert!(!error.contains("may have been created"), "{error}");
    });
    run_now_says("unresolvable", 4, run["error"].as_str().unwrap_or_default());
}

#[test]
fn a_201_that_is_not_json_is_unknown_and_not_retried() {
    let message = format!("{CREATED_BUT} its answer is an HTML page, not a pipeline: Welcome to nginx!{CANNOT_TELL}");
    let run = assert_fault("created-not-json", "unknown", 1, |error| assert_eq!(error, message));
    assert_eq!((run["http_status"].as_u64(), &run["pipeline"]), (Some(201), &Value::Null), "{run:#}");
    assert_eq!(scheduled_hostile_requests("created-not-json"), 1, "a 201 is never retried");
    run_now_says("created-not-json", 5, &message);
}

#[test]
fn a_201_of_10_mb_of_json_is_unknown_not_parsed_and_not_retried() {
    let message =
        format!("{CREATED_BUT} its answer is longer than 1 MiB (9.5 MiB), too long to be a pipeline{CANNOT_TELL}");
    assert_fault("created-10-mb", "unknown", 1, |error| assert_eq!(error, message));
    assert_eq!(scheduled_hostile_requests("created-10-mb"), 1, "a 201 is never retried");
}

#[test]
fn a_201_without_an_id_is_unknown_and_not_retried() {
    let message = format!(
        "{CREATED_BUT} its answer has no pipeline `id`: \
         {{\"status\":\"created\",\"web_url\":\"https://gitlab.example.com/p/-/pipelines\"}}{CANNOT_TELL}"
    );
    assert_fault("created-without-id", "unknown", 1, |error| assert_eq!(error, message));
    assert_eq!(scheduled_hostile_requests("created-without-id"), 1, "a 201 is never retried");
}

#[test]
fn a_slow_loris_answer_is_cut_off_by_the_timeout() {
    let message = "no answer from 127.0.0.1 within 2s; a pipeline may have been created";
    assert_fault("slow-loris", "unknown", 1, |error| assert_eq!(error, message));
    // A byte a second, and the connection closed after two: not the hundred-odd bytes of the whole answer.
    let written = outcome().hostiles["slow-loris"].written();
    assert!(written < 10, "the server got {written} bytes out");
}

#[test]
fn a_proxys_html_error_page_is_named_and_shown_without_its_html() {
    let message = "GitLab (or a proxy in front of it) answered 502 with an HTML page: 502 Bad Gateway; a pipeline may \
                   have been created (gave up after 3 attempts)";
    let run = assert_fault("proxy-html-502", "failed", 3, |error| assert_eq!(error, message));
    assert_eq!(run["http_status"], 502);
    let retries = retries_logged("proxy-html-502");
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries.iter().all(|(error, _)| !error.contains('<')), "{retries:?}");
    run_now_says("proxy-html-502", 4, message);
}

#[test]
fn a_200_mb_answer_is_read_no_further_than_64_kib() {
    let message = "GitLab (or a proxy in front of it) answered 502 with an HTML page: Bad Gateway… (only the first 64 \
                   KiB of its 200 MiB answer were read); a pipeline may have been created";
    assert_fault("huge-answer", "failed", 1, |error| assert_eq!(error, message));
    let written = outcome().hostiles["huge-answer"].written();
    assert!(written < 50 << 20, "the server got {written} bytes out: the daemon read the answer whole");
    // Every fault ran in this daemon, the 200 MB and the 10 MB answers among them.
    let peak = outcome().peak_rss_kib;
    assert!(peak < 100 * 1024, "the daemon's peak memory was {peak} KiB");
}
