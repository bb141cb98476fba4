//! GitLab's answer to a trigger request (status, headers, body, how much of it was read), classified as the
//! daemon classifies it, then passed through `trigger::fire` as the daemon's runs are. Must never panic, and no
//! message that leaves the trigger module may hold the token, whatever the answer echoed back; each is one line
//! of bounded length.
//!
//! The input: the status (2 bytes, little-endian), a byte of flags, then a line for each header the flags
//! include (Retry-After, Location, Content-Type), then the body.

#![no_main]

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll, Waker};

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use pipecron::config::diag::{Reporter, Scope};
use pipecron::config::load_file;
use pipecron::trigger::outcome::{Answer, Cut, classify};
use pipecron::trigger::{Attempt, Backoff, Overrides, Reason, RunResult, Trigger, TriggerRequest, fire};

const TOKEN: &str = "glptt-Fz9qT3xW7mK2pL5vR8nB";

/// Requests built as the daemon builds them, from a schedule file: one on API v4 and one on v3.
static REQUESTS: LazyLock<[TriggerRequest; 2]> = LazyLock::new(|| {
    let text = "defaults:\n  gitlab: https://gitlab.example.com\n  token: ${FUZZ_TOKEN}\n  project: group/app\n  \
                ref: main\nschedules:\n  nightly:\n    cron: \"30 2 * * *\"\n    variables:\n      MODE: full\n  \
                legacy:\n    cron: \"@hourly\"\n    api: v3\n";
    let env = |name: &str| (name == "FUZZ_TOKEN").then(|| TOKEN.to_string());
    let file = Path::new("/nonexistent-pipecron-fuzz/schedules/fuzz.yaml");
    let mut diagnostics = Vec::new();
    let mut rep = Reporter { file, scope: Scope::File, out: &mut diagnostics };
    let schedules = load_file(text, file, Some(&env), &mut rep);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let slot = Utc.with_ymd_and_hms(2026, 3, 29, 2, 30, 0).unwrap();
    let request = |i: usize| {
        TriggerRequest::new(&schedules[i], slot, Reason::Schedule, &Overrides::default()).expect("a request")
    };
    [request(0), request(1)]
});

/// Answers with one attempt, as the HTTP client would have classified GitLab's answer.
struct Answered(Mutex<Option<Attempt>>);

impl Trigger for Answered {
    async fn send(&self, _request: &TriggerRequest) -> Attempt {
        self.0.lock().unwrap().take().expect("one attempt")
    }
}

/// Runs `fire` without retries: it never waits, so one poll finishes it.
fn fire_once(request: &TriggerRequest, attempt: Attempt) -> RunResult {
    let trigger = Answered(Mutex::new(Some(attempt)));
    let mut future = pin!(fire(&trigger, request, 0, Backoff::default(), |_, _, _| {}));
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("fire waited without retries"),
    }
}

/// Splits off one line (without its `\n`) if it is UTF-8.
fn header(data: &mut &[u8]) -> Option<String> {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = std::str::from_utf8(&data[..end]).ok().map(str::to_string);
    *data = data.get(end + 1..).unwrap_or_default();
    line
}

fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first_chunk::<2>() else { return };
    let Some((&flags, mut rest)) = rest.split_first() else { return };
    let status = u16::from_le_bytes(*status);
    let retry_after = if flags & 1 != 0 { header(&mut rest) } else { None };
    let location = if flags & 2 != 0 { header(&mut rest) } else { None };
    let content_type = if flags & 4 != 0 { header(&mut rest) } else { None };
    let body = rest;
    let cut = match (flags >> 3) & 3 {
        0 => None,
        1 => Some(Cut::TooLong { read: body.len(), length: Some(body.len() as u64 * 7 + 1) }),
        2 => Some(Cut::TooLong { read: body.len(), length: None }),
        _ => Some(Cut::BrokeOff { read: body.len(), why: "operation timed out".into() }),
    };
    let request = &REQUESTS[usize::from(flags >> 7)];
    let answer = Answer {
        status,
        retry_after: retry_after.as_deref(),
        location: location.as_deref(),
        content_type: content_type.as_deref(),
        body,
        cut: cut.as_ref(),
    };
    let attempt = classify(request, answer);
    let result = fire_once(request, attempt);
    if let Some(error) = &result.error {
        assert!(!error.contains(TOKEN), "the token is in the message: {error}");
        assert!(!error.contains(char::is_control), "the message is not one line of text: {error:?}");
        assert!(error.chars().count() <= 1100, "the message is {} characters long", error.chars().count());
    }
});
