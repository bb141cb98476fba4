use std::time::Duration;

use chrono::{DateTime, Utc};

use super::api::{Answer, State, classify, pipeline_url};
use super::{backoff, decide};
use crate::run::Followed;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("a time").with_timezone(&Utc)
}

const DAY: Duration = Duration::from_secs(86_400);

fn pipeline(status: &str) -> Answer {
    Answer::Pipeline(State { status: status.into(), finished_at: None, duration: None })
}

#[test]
fn looks_back_off_from_10_s_doubling_to_5_min() {
    let waits: Vec<u64> = (0..8).map(|polls| backoff(polls).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
}

#[test]
fn a_running_pipeline_is_looked_at_again_later_and_a_final_one_ends_following() {
    let triggered = at("2026-12-07T00:30:00Z");
    let now = at("2026-12-07T00:30:10Z");
    let running = decide(triggered, 0, pipeline("running"), DAY, now);
    assert_eq!((running.followed, running.status.as_deref()), (Followed::Following, Some("running")));
    assert_eq!(running.next, Some(at("2026-12-07T00:30:30Z")), "the second look waits 20 s");
    assert_eq!(running.polls, 1);

    let finished = Answer::Pipeline(State {
        status: "failed".into(),
        finished_at: Some(at("2026-12-07T00:42:00Z")),
        duration: Some(701.6),
    });
    let ended = decide(triggered, 5, finished, DAY, at("2026-12-07T00:45:00Z"));
    assert_eq!((ended.followed, ended.next, ended.duration), (Followed::Ended, None, Some(702)));
    assert_eq!(ended.finished_at, Some(at("2026-12-07T00:42:00Z")));
    for status in ["success", "canceled", "skipped", "manual"] {
        assert_eq!(decide(triggered, 1, pipeline(status), DAY, now).followed, Followed::Ended, "{status}");
    }
    for status in ["created", "pending", "waiting_for_resource", "canceling", "something_new"] {
        assert_eq!(decide(triggered, 1, pipeline(status), DAY, now).followed, Followed::Following, "{status}");
    }
}

#[test]
fn following_gives_up_at_the_timeout_and_on_a_refused_token_or_a_vanished_pipeline() {
    let triggered = at("2026-12-07T00:30:00Z");
    let late = at("2026-12-08T00:30:00Z");
    let timed_out = decide(triggered, 40, pipeline("running"), DAY, late);
    assert_eq!((timed_out.followed, timed_out.next), (Followed::TimedOut, None));
    assert_eq!(timed_out.status.as_deref(), Some("running"), "the last status seen is kept");
    let unanswered = Answer::Later { why: "GitLab answered 503".into(), wait: None };
    assert_eq!(decide(triggered, 40, unanswered, DAY, late).followed, Followed::TimedOut);

    let now = at("2026-12-07T00:31:00Z");
    let refused = decide(triggered, 1, Answer::Refused("no scope".into()), DAY, now);
    assert_eq!((refused.followed, refused.next, refused.note.as_deref()), (Followed::Refused, None, Some("no scope")));
    assert_eq!(decide(triggered, 1, Answer::Gone("404".into()), DAY, now).followed, Followed::Gone);
}

#[test]
fn a_rate_limit_waits_as_long_as_gitlab_says_and_an_outage_backs_off() {
    let triggered = at("2026-12-07T00:30:00Z");
    let now = at("2026-12-07T00:31:00Z");
    let limited = Answer::Later { why: "429".into(), wait: Some(Duration::from_secs(90)) };
    let look = decide(triggered, 0, limited, DAY, now);
    assert_eq!((look.followed, look.next), (Followed::Following, Some(at("2026-12-07T00:32:30Z"))));
    assert_eq!(look.status, None, "nothing new is known of the pipeline");
    let outage = Answer::Later { why: "503".into(), wait: None };
    assert_eq!(decide(triggered, 2, outage, DAY, now).next, Some(at("2026-12-07T00:32:20Z")));
}

fn schedule() -> crate::schedule::Schedule {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("s.yaml");
    let yaml = "schedules:\n  nightly:\n    cron: \"30 0 * * *\"\n    gitlab: https://gitlab.example.com/\n    \
                project: group/sub/project\n    ref: main\n    token: glptt-0123456789abcdef0123\n    \
                api_token: glpat-0123456789abcdef0123\n";
    std::fs::write(&file, yaml).expect("writes");
    let env = |_: &str| None;
    let loaded = crate::config::load(dir.path(), Some(&env));
    assert!(loaded.errors().next().is_none(), "{:?}", loaded.diagnostics);
    (*loaded.schedules[0]).clone()
}

#[test]
fn answers_are_classified_without_quoting_them() {
    let schedule = schedule();
    assert_eq!(
        pipeline_url(&schedule, 1001).as_str(),
        "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/pipelines/1001"
    );
    let body = br#"{"id":1001,"status":"success","finished_at":"2026-12-07T00:42:00.123Z","duration":702,"x":{}}"#;
    let Answer::Pipeline(state) = classify(&schedule, 1001, 200, None, false, body) else { panic!("a pipeline") };
    assert_eq!((state.status.as_str(), state.duration), ("success", Some(702.0)));
    assert!(matches!(classify(&schedule, 1, 200, None, true, body), Answer::Later { .. }), "a cut answer");
    assert!(matches!(classify(&schedule, 1, 200, None, false, b"<html>"), Answer::Later { .. }));
    let Answer::Refused(why) = classify(&schedule, 1, 403, None, false, b"glpat-0123456789abcdef0123") else {
        panic!("refused")
    };
    assert!(why.contains("read_api") && why.contains("nightly") && !why.contains("glpat-0123"), "{why}");
    assert!(matches!(classify(&schedule, 1, 401, None, false, b""), Answer::Refused(_)));
    assert!(matches!(classify(&schedule, 1, 404, None, false, b""), Answer::Gone(_)));
    let limited = classify(&schedule, 1, 429, Some(Duration::from_secs(7)), false, b"Retry later");
    assert_eq!(
        limited,
        Answer::Later { why: "GitLab's API rate limit (429)".into(), wait: Some(Duration::from_secs(7)) }
    );
    assert!(matches!(classify(&schedule, 1, 502, None, false, b""), Answer::Later { wait: None, .. }));
}
