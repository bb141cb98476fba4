//! Retries, on paused tokio time with a scripted trigger: how many attempts, and how long between them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// Answers with the attempts it was given, in order, and notes when each request came.
struct Script {
    answers: Mutex<VecDeque<Attempt>>,
    sent_at: Mutex<Vec<Instant>>,
}

impl Script {
    fn new(answers: Vec<Attempt>) -> Self {
        Script { answers: Mutex::new(answers.into()), sent_at: Mutex::default() }
    }

    fn gaps(&self) -> Vec<Duration> {
        let sent = self.sent_at.lock().expect("not poisoned");
        sent.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Trigger for Script {
    async fn send(&self, _request: &TriggerRequest) -> Attempt {
        self.sent_at.lock().expect("not poisoned").push(Instant::now());
        self.answers.lock().expect("not poisoned").pop_front().expect("the script has an answer left")
    }
}

fn request() -> TriggerRequest {
    request::sample()
}

fn unavailable() -> Attempt {
    Attempt::Transient { http_status: Some(503), message: "GitLab answered 503".into(), wait: None, maybe_sent: true }
}

fn created() -> Attempt {
    Attempt::Created(Pipeline { id: 7, iid: Some(3), status: "created".into(), web_url: None })
}

async fn fire_script(script: &Script, retries: u32) -> RunResult {
    fire(script, &request(), retries, Backoff::default(), |_, _, _| {}).await
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_capped_waits() {
    let script = Script::new(vec![unavailable(), unavailable(), unavailable(), created()]);
    let result = fire_script(&script, 5).await;
    assert_eq!(result.ending, Ending::Succeeded);
    assert_eq!(result.attempts, 4);
    assert_eq!(result.pipeline.map(|p| p.id), Some(7));
    let gaps = script.gaps();
    assert_eq!(gaps.len(), 3);
    for (retry, gap) in gaps.iter().enumerate() {
        assert!(*gap <= Duration::from_secs(1 << retry), "retry {retry} waited {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_run_out() {
    let script = Script::new(vec![unavailable(), unavailable(), unavailable()]);
    let result = fire_script(&script, 2).await;
    assert_eq!((result.ending, result.attempts, result.retries_exhausted), (Ending::Failed, 3, true));
    assert_eq!(result.http_status, Some(503));
    assert!(result.error.as_deref().is_some_and(|e| e.contains("gave up after 3 attempts")), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_the_rate_limit_set_a_minimum_wait() {
    let throttled = Attempt::Transient {
        http_status: Some(429),
        message: "429".into(),
        wait: Some(Duration::from_secs(30)),
        maybe_sent: true,
    };
    let limited = Attempt::Transient {
        http_status: Some(400),
        message: "limit".into(),
        wait: Some(Duration::from_secs(60)),
        maybe_sent: true,
    };
    let script = Script::new(vec![throttled, limited, created()]);
    assert_eq!(fire_script(&script, 5).await.ending, Ending::Succeeded);
    let gaps = script.gaps();
    assert!(gaps[0] >= Duration::from_secs(30) && gaps[0] < Duration::from_secs(31), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_secs(60) && gaps[1] < Duration::from_secs(61), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_retried_and_never_show_the_token() {
    let refused = Attempt::Permanent {
        http_status: Some(400),
        message: "proxy echoed token=glptt-secrettoken0123".into(),
        pipeline: None,
    };
    let script = Script::new(vec![refused]);
    let result = fire_script(&script, 5).await;
    assert_eq!((result.ending, result.attempts), (Ending::Failed, 1));
    let error = result.error.expect("an error");
    assert!(!error.contains("secrettoken0123") && error.contains("glptt-secr…"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_final_timeout_leaves_the_outcome_unknown() {
    let timeout = Attempt::Transient { http_status: None, message: "no answer".into(), wait: None, maybe_sent: true };
    let refused_connection =
        Attempt::Transient { http_status: None, message: "cannot connect".into(), wait: None, maybe_sent: false };
    let script = Script::new(vec![refused_connection.clone(), timeout]);
    assert_eq!(fire_script(&script, 1).await.ending, Ending::Unknown);
    let script = Script::new(vec![refused_connection.clone(), refused_connection]);
    assert_eq!(fire_script(&script, 1).await.ending, Ending::Failed);
}

#[test]
fn backoff_is_capped_at_five_minutes() {
    let backoff = Backoff::default();
    for retry in [0, 5, 9, 20, 40] {
        let wait = backoff.wait(retry, None);
        assert!(wait <= Duration::from_secs(300), "{wait:?}");
    }
    assert_eq!(backoff.wait(3, Some(Duration::from_secs(400))), Duration::from_secs(400));
    assert_eq!(backoff.wait(3, Some(Duration::from_secs(99_999_999_999))), Duration::from_secs(3600), "at most 1 h");
}

#[tokio::test(start_paused = true)]
async fn a_body_cut_short_inside_the_token_shows_no_more_than_the_masked_token() {
    let token = request().token.expose().to_string();
    let message = format!("proxy echoed token={}…", &token[..token.len() - 3]);
    let refused = Attempt::Permanent { http_status: Some(400), message, pipeline: None };
    let result = fire_script(&Script::new(vec![refused]), 0).await;
    let error = result.error.expect("an error");
    assert_eq!(error, format!("proxy echoed token={}", request().token.masked()));
}

#[test]
fn a_request_never_shows_its_token_when_debugged() {
    let request = request();
    let shown = format!("{request:?}");
    assert!(!shown.contains(request.token.expose()), "{shown}");
    assert!(shown.contains("Payload(application/x-www-form-urlencoded, "), "{shown}");
    let body = String::from_utf8_lossy(&request.payload.bytes).into_owned();
    assert!(body.starts_with(&format!("token={}&ref=main", request.token.expose())), "{body}");
}
