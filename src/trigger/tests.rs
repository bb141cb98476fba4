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
    Attempt::Transient { http_status: Some(503), message: "GitLab answered 503".into(), wait: None, maybe_sent: false }
}

fn created() -> Attempt {
    Attempt::Created(Pipeline::created(7, Some(3), "created", None))
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

// The classifier's answers to hostile or broken answers, through `fire` as the daemon and run-now see them.

use super::outcome::{Answer, Cut, READ_LIMIT, classify};

fn answer(status: u16, body: &str) -> Answer<'_> {
    Answer { status, body: body.as_bytes(), ..Answer::default() }
}

/// Fires `request()` once against a script of this one answer, with retries to spare.
async fn fire_answer(answer: Answer<'_>) -> RunResult {
    let attempt = classify(&request(), answer);
    fire_script(&Script::new(vec![attempt.clone(), attempt.clone(), attempt]), 2).await
}

const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>\
                         </center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";

#[tokio::test(start_paused = true)]
async fn a_proxys_html_page_is_named_as_such_and_shown_by_its_title() {
    let result = fire_answer(answer(502, NGINX_502)).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 3, Some(502)));
    assert_eq!(
        result.error.as_deref(),
        Some(
            "GitLab (or a proxy in front of it) answered 502 with an HTML page: 502 Bad Gateway; a pipeline may have \
             been created (gave up after 3 attempts)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_page_without_a_title_is_shown_as_a_short_text_without_tags() {
    let words = "Our servers are busy right now and cannot take your request. ".repeat(20);
    let page = format!(
        "<!DOCTYPE html><html><head><style>body {{ color: red }}</style></head><body><div>\n<p>{words}</p></div></body></html>"
    );
    let result = fire_answer(Answer { content_type: Some("text/html; charset=utf-8"), ..answer(503, &page) }).await;
    let error = result.error.expect("an error");
    let shown = error
        .strip_prefix(
            "GitLab (or a proxy in front of it) answered 503 with an HTML page: Our servers are busy right now",
        )
        .and_then(|rest| rest.strip_suffix("… (gave up after 3 attempts)"))
        .unwrap_or_else(|| panic!("{error}"));
    assert!(!error.contains(['<', '>', '{', '\n']), "{error}");
    assert!(shown.chars().count() < 200, "{error}");
    assert!(!error.contains(MAYBE_CREATED), "a 503 is a refusal: {error}");
}

#[tokio::test(start_paused = true)]
async fn gitlabs_own_words_are_cut_when_long_and_so_is_a_plain_body() {
    let long = format!(r#"{{"message":{{"base":["{}"]}}}}"#, "Insufficient permissions ".repeat(40));
    let result = fire_answer(answer(400, &long)).await;
    let error = result.error.expect("an error");
    assert!(error.starts_with("GitLab refused the trigger: Insufficient permissions Insufficient"), "{error}");
    assert!(error.ends_with('…') && error.chars().count() < 340, "{error}");

    let result = fire_answer(answer(500, &"trace line\n".repeat(1000))).await;
    let error = result.error.expect("an error");
    assert!(error.starts_with("GitLab answered 500: trace line trace line"), "{error}");
    assert!(error.ends_with("… (gave up after 3 attempts)") && error.chars().count() < 260, "{error}");
}

#[tokio::test(start_paused = true)]
async fn an_answer_read_only_in_part_says_what_was_cut() {
    let start = "<html><head><title>Bad Gateway</title>";
    let cut = Cut::TooLong { read: READ_LIMIT, length: Some(200 << 20) };
    let result = fire_answer(Answer { cut: Some(&cut), ..answer(502, start) }).await;
    assert_eq!(
        result.error.as_deref(),
        Some(
            "GitLab (or a proxy in front of it) answered 502 with an HTML page: Bad Gateway… (only the first 64 KiB \
             of its 200 MiB answer were read); a pipeline may have been created (gave up after 3 attempts)"
        )
    );
    let unknown_size = Cut::TooLong { read: READ_LIMIT, length: None };
    let attempt =
        classify(&request(), Answer { cut: Some(&unknown_size), ..answer(404, r#"{"message":"404 Not Fou"#) });
    let Attempt::Permanent { message, .. } = attempt else { panic!("{attempt:?}") };
    assert!(message.ends_with("(only the first 64 KiB of its answer were read; it was longer)"), "{message}");

    let broke = Cut::BrokeOff { read: 12, why: "the timeout (1s) passed".into() };
    let attempt = classify(&request(), Answer { cut: Some(&broke), ..answer(503, "Service Unav") });
    let Attempt::Transient { message, maybe_sent: false, .. } = attempt else { panic!("{attempt:?}") };
    assert_eq!(
        message,
        "GitLab answered 503: Service Unav… (its answer broke off after 12 bytes: the timeout (1s) passed)"
    );
}

/// A 201 means GitLab created a pipeline: whatever its body, it is never retried, and when the body is not a
/// pipeline the run is `unknown` with a message that says where to look.
#[tokio::test(start_paused = true)]
async fn a_201_that_cannot_be_read_as_a_pipeline_is_unknown_and_never_retried() {
    let too_long = Cut::TooLong { read: 1 << 20, length: Some(10_000_000) };
    let broke = Cut::BrokeOff { read: 1, why: "the timeout (1s) passed".into() };
    let cases: [(Answer, &str); 5] = [
        (
            answer(201, "<html><title>Welcome to nginx!</title></html>"),
            "its answer is an HTML page, not a pipeline: Welcome to nginx!",
        ),
        (answer(201, "OK"), "its answer is not JSON, not a pipeline: OK"),
        (
            Answer { cut: Some(&too_long), ..answer(201, "[[[[") },
            "its answer is longer than 1 MiB (9.5 MiB), too long to be a pipeline",
        ),
        (
            answer(201, r#"{"status":"created","web_url":"https://x/1"}"#),
            r#"its answer has no pipeline `id`: {"status":"created","web_url":"https://x/1"}"#,
        ),
        (
            Answer { cut: Some(&broke), ..answer(201, "{") },
            "its answer broke off after 1 byte: the timeout (1s) passed",
        ),
    ];
    for (answer, why) in cases {
        let result = fire_answer(answer).await;
        assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Unknown, 1, Some(201)), "{why}");
        assert_eq!(result.pipeline, None);
        assert_eq!(
            result.error.as_deref(),
            Some(&*format!(
                "GitLab answered 201 Created but {why}; a pipeline may have been created, and pipecron cannot tell \
                 which, so it does not retry; look for it among the project's pipelines, and check that `gitlab` \
                 is GitLab's address"
            ))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_201_with_an_id_is_a_pipeline_even_without_the_other_fields() {
    let result = fire_answer(answer(201, r#"{"id": 42, "future": [1, 2]}"#)).await;
    assert_eq!(result.ending, Ending::Succeeded);
    let pipeline = result.pipeline.expect("a pipeline");
    assert_eq!((pipeline.id, pipeline.iid, pipeline.status.as_str(), pipeline.web_url), (42, None, "created", None));
    let absurd = format!(r#"{{"id": 43, "web_url": "https://x/{}"}}"#, "a".repeat(5000));
    let pipeline = fire_answer(answer(201, &absurd)).await.pipeline.expect("a pipeline");
    assert_eq!((pipeline.id, pipeline.web_url), (43, None), "a 5 KB URL is not kept");
}

/// Every answer that may have reached GitLab without pipecron learning what became of it says so; refusals do not.
#[tokio::test(start_paused = true)]
async fn every_failure_that_may_have_reached_gitlab_says_a_pipeline_may_exist() {
    for status in (300..600).filter(|s| *s != 201) {
        for body in ["", "<html><title>x</title></html>", r#"{"message":"x"}"#] {
            let attempt = classify(&request(), answer(status, body));
            let maybe_sent = matches!(attempt, Attempt::Transient { maybe_sent: true, .. });
            assert_eq!(maybe_sent, matches!(status, 502 | 504), "{status}");
            let result = fire_script(&Script::new(vec![attempt]), 0).await;
            let error = result.error.expect("an error");
            assert_eq!(error.contains(MAYBE_CREATED), maybe_sent, "{status}: {error}");
        }
    }
    let reset = Attempt::Transient {
        http_status: None,
        message: "the request to gitlab.example.com failed: connection reset by peer".into(),
        wait: None,
        maybe_sent: true,
    };
    let result = fire_script(&Script::new(vec![reset]), 0).await;
    assert_eq!(result.ending, Ending::Unknown);
    assert_eq!(
        result.error.as_deref(),
        Some("the request to gitlab.example.com failed: connection reset by peer; a pipeline may have been created")
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_failure_says_when_an_earlier_attempt_may_have_created_a_pipeline() {
    let timeout = Attempt::Transient { http_status: None, message: "no answer".into(), wait: None, maybe_sent: true };
    let script = Script::new(vec![timeout, unavailable()]);
    let result = fire_script(&script, 1).await;
    assert_eq!((result.ending, result.attempts), (Ending::Failed, 2));
    assert_eq!(
        result.error.as_deref(),
        Some("GitLab answered 503; an earlier attempt may have created a pipeline (gave up after 2 attempts)")
    );
}

#[tokio::test(start_paused = true)]
async fn a_404_page_points_at_the_address_rather_than_the_token() {
    let page = "<html><head><title>The page you're looking for could not be found (404)</title></head></html>";
    let result = fire_answer(answer(404, page)).await;
    assert_eq!(
        result.error.as_deref(),
        Some(
            "GitLab (or a proxy in front of it) answered 404 with an HTML page: The page you're looking for could not \
             be found (404); that is not GitLab's API: is `gitlab` GitLab's address (with its path, if it is served \
             under one)?"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn no_message_is_longer_than_a_thousand_characters() {
    let long = Attempt::Permanent { http_status: None, message: "é".repeat(5000), pipeline: None };
    let error = fire_script(&Script::new(vec![long]), 0).await.error.expect("an error");
    assert_eq!(error, format!("{}…", "é".repeat(1000)));
}

#[tokio::test(start_paused = true)]
async fn a_token_echoed_in_a_page_cut_inside_it_shows_no_more_than_the_masked_token() {
    let token = request().token.expose().to_string();
    // The excerpt's cut at 200 characters falls inside the token, and a note follows it: the "…" is mid-message.
    let page = format!("<html><body><p>{} token={token}&ref=main</p></body></html>", "x".repeat(186));
    let cut = Cut::TooLong { read: READ_LIMIT, length: None };
    let result = fire_answer(Answer { cut: Some(&cut), ..answer(400, &page) }).await;
    let error = result.error.expect("an error");
    assert!(error.contains(&format!("token={} (only the first 64 KiB", request().token.masked())), "{error}");
    assert!(!error.contains(&token[..token.len() - 8]) && !error.contains("secre"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_token_echoed_in_a_pipelines_fields_is_not_kept() {
    let token = request().token.expose().to_string();
    let echoed = Pipeline::created(
        7,
        None,
        &format!("created by {token}"),
        Some(format!("https://gitlab.example.com/p/-/pipelines/7?token={token}")),
    );
    let result = fire_script(&Script::new(vec![Attempt::Created(echoed)]), 0).await;
    let pipeline = result.pipeline.expect("a pipeline");
    let kept = format!("{} {}", pipeline.status, pipeline.web_url.unwrap_or_default());
    assert!(!kept.contains(&token), "{kept}");
    assert!(kept.contains(&request().token.masked()), "{kept}");
}
