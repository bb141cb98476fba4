//! Notices to webhooks through the real binary: a schedule failing slot after slot is told once, its recovery once,
//! in the text form chats take and in the JSON form, a refused notice is sent again, and neither the token nor the
//! webhook's secret path shows in the log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use common::daemon::{Daemon, setup};
use common::fake_gitlab::{FakeGitlab, Scripted, TOKEN};
use serde_json::Value;

type Heard = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver on loopback: every POST's path and JSON body, in order.
fn receiver() -> (String, Heard) {
    let heard: Heard = Arc::default();
    let kept = heard.clone();
    let url = common::in_background(move || async move {
        // The first notice to `own` is refused with a 503, as a webhook that is restarting would: it must be
        // sent again. It is heard as ("refused", …).
        async fn hook(State(heard): State<Heard>, Path(path): Path<String>, body: Bytes) -> (StatusCode, &'static str) {
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut heard = heard.lock().unwrap_or_else(|p| p.into_inner());
            if path == "own" && !heard.iter().any(|(p, _)| p == "refused") {
                heard.push(("refused".into(), json));
                return (StatusCode::SERVICE_UNAVAILABLE, "restarting");
            }
            heard.push((path, json));
            (StatusCode::OK, "ok")
        }
        let app = Router::new().route("/hooks/{path}", post(hook)).with_state(kept);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    (url, heard)
}

fn heard(heard: &Heard) -> Vec<(String, Value)> {
    heard.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[test]
fn a_schedule_failing_slot_after_slot_is_told_once_and_its_recovery_once() {
    let fake = FakeGitlab::new();
    // Three slots fail (no retries in these tests), then GitLab answers again.
    fake.script((0..3).map(|_| Scripted::Status(503, "Service Unavailable".into())));
    let (hooks, received) = receiver();
    let schedule = "  flaky:\n    cron: \"* * * * * *\"\n    notify:\n      - url: ${CHAT_HOOK}\n        on: [failed, missed]\n      \
                    - url: ${OWN_HOOK}\n        format: json\n      - url: ${QUIET_HOOK}\n        on: [pipeline_failed]\n";
    let (dir, _) = setup(&fake, schedule);
    let chat = format!("{hooks}/hooks/chat-T0SECRETPATH");
    let own = format!("{hooks}/hooks/own");
    let quiet = format!("{hooks}/hooks/quiet");
    let daemon = Daemon::spawn(dir.path(), &[], &[("CHAT_HOOK", &chat), ("OWN_HOOK", &own), ("QUIET_HOOK", &quiet)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while heard(&received).len() < 5 {
        assert!(Instant::now() < deadline, "four notices and one refusal: {:#?}\n{}", heard(&received), daemon.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // More slots succeed meanwhile; none is told.
    std::thread::sleep(Duration::from_secs(2));
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    let got = heard(&received);
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got.iter().filter(|(path, _)| path == "refused").count(), 1, "refused once, then sent again");
    assert!(got.iter().all(|(path, _)| path != "quiet"), "a webhook is told only of its outcomes");

    let chat: Vec<&str> =
        got.iter().filter(|(p, _)| p == "chat-T0SECRETPATH").filter_map(|(_, b)| b["text"].as_str()).collect();
    let [failing, recovered] = chat.as_slice() else { panic!("two chat notices: {got:#?}") };
    assert!(
        failing.starts_with("pipecron: schedule flaky (9 on master) is failing since ")
            && failing.contains(": failed: "),
        "{failing}"
    );
    assert!(failing.contains("503"), "it says why: {failing}");
    assert!(recovered.contains("flaky (9 on master) recovered") && recovered.contains("(failed)"), "{recovered}");

    let own: Vec<&Value> = got.iter().filter(|(p, _)| p == "own").map(|(_, b)| b).collect();
    let [failing, recovered] = own.as_slice() else { panic!("two JSON notices: {got:#?}") };
    assert_eq!((failing["event"].as_str(), failing["outcome"].as_str()), (Some("failing"), Some("failed")));
    assert_eq!((recovered["event"].as_str(), recovered["outcome"].as_str()), (Some("recovered"), Some("failed")));
    assert_eq!(failing["since"], recovered["since"], "{own:#?}");
    assert_eq!((failing["schedule"].as_str(), failing["track"].as_str()), (Some("flaky"), Some("fires")));

    let everything = format!("{logs}{got:?}");
    assert!(!everything.contains(&TOKEN[6..]), "the token shows");
    assert!(!logs.contains("T0SECRETPATH"), "the webhook's path shows in the log");
    assert!(logs.contains("notice sent"), "{logs}");
}
