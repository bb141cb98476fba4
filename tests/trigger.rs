//! The real HTTP client against the fake GitLab: the wire format, and every outcome class with its message.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::fake_gitlab::{FakeGitlab, OTHER_TOKEN, Project, Scripted, TOKEN};
use common::hostile::{Fault, Hostile, blackhole, http_answer};
use pipecron::schedule::Schedule;
use pipecron::trigger::{Backoff, Ending, GitlabClient, Overrides, Reason, RunResult, TriggerRequest, fire};
use serde_json::json;

/// Loads one schedule from YAML, with `${TOKEN}` and `${OTHER}` set.
fn schedule(gitlab: &str, body: &str) -> std::sync::Arc<Schedule> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = format!("defaults:\n  gitlab: {gitlab}\n  token: ${{TOKEN}}\nschedules:\n  nightly:\n{body}");
    std::fs::write(dir.path().join("s.yaml"), text).expect("writes");
    let env = |name: &str| match name {
        "TOKEN" => Some(TOKEN.to_string()),
        "OTHER" => Some(OTHER_TOKEN.to_string()),
        _ => None,
    };
    let loaded = pipecron::config::load(dir.path(), Some(&env));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.schedules.into_iter().next().expect("one schedule")
}

const NIGHTLY: &str = "    cron: \"30 0 * * *\"\n    project: 9\n    ref: master\n";

fn slot() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 23, 30, 0).single().expect("valid")
}

async fn run(schedule: &Schedule, retries: u32) -> RunResult {
    let request = TriggerRequest::new(schedule, slot(), Reason::Schedule, &Overrides::default()).expect("a request");
    let client = GitlabClient::new().expect("a client");
    let backoff = Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(5) };
    fire(&client, &request, retries, backoff, |_, _, _| {}).await
}

fn error_of(result: &RunResult) -> &str {
    result.error.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn a_numeric_project_is_triggered_with_a_form_body_and_the_token_out_of_the_url() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    let body = format!("{NIGHTLY}    variables:\n      UPLOAD_TO_S3: \"true\"\n      COUNT: 3\n");
    let result = run(&schedule(&url, &body), 0).await;
    assert_eq!(result.ending, Ending::Succeeded, "{result:?}");
    let pipeline = result.pipeline.expect("a pipeline");
    assert_eq!((pipeline.id, pipeline.iid, pipeline.status.as_str()), (1001, Some(1), "created"));
    assert_eq!(pipeline.web_url.as_deref(), Some("https://gitlab.example.com/group/sub/project/-/pipelines/1001"));

    let [request] = fake.requests().try_into().expect("one request");
    assert_eq!(request.raw_path, "/api/v4/projects/9/trigger/pipeline");
    assert_eq!(request.query, None);
    assert_eq!(request.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert!(request.user_agent.as_deref().is_some_and(|ua| ua.starts_with("pipecron/")), "{request:?}");
    assert_eq!(request.params["token"], json!(TOKEN));
    assert_eq!(request.params["ref"], json!("master"));
    assert_eq!(
        request.params["variables"],
        json!({
            "UPLOAD_TO_S3": "true",
            "COUNT": "3",
            "PIPECRON_SCHEDULE": "nightly",
            "PIPECRON_SLOT": "2026-11-24T23:30:00Z",
            "PIPECRON_REASON": "schedule",
        })
    );
}

#[tokio::test]
async fn a_path_project_is_one_encoded_segment_and_refs_may_hold_slashes() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    let body = "    cron: \"30 0 * * *\"\n    project: group/sub/project\n    ref: feature/x\n";
    let result = run(&schedule(&url, body), 0).await;
    assert_eq!(result.ending, Ending::Succeeded, "{result:?}");
    let request = &fake.requests()[0];
    assert_eq!(request.raw_path, "/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline");
    assert_eq!(request.params["ref"], json!("feature/x"));
}

#[tokio::test]
async fn inputs_are_sent_as_json_and_keep_their_types() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    let body = format!("{NIGHTLY}    inputs:\n      level: 3\n      strict: true\n      tags: [a, b]\n      name: x\n");
    let result = run(&schedule(&url, &body), 0).await;
    assert_eq!(result.ending, Ending::Succeeded, "{result:?}");
    let request = &fake.requests()[0];
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.params["inputs"], json!({"level": 3, "strict": true, "tags": ["a", "b"], "name": "x"}));
    assert_eq!(request.params["variables"]["PIPECRON_REASON"], json!("schedule"));
}

#[tokio::test]
async fn v3_uses_trigger_builds_and_a_new_gitlab_says_410() {
    let fake = FakeGitlab::new().with_v3();
    let url = fake.start().await;
    let body = format!("{NIGHTLY}    api: v3\n");
    let result = run(&schedule(&url, &body), 0).await;
    assert_eq!(result.ending, Ending::Succeeded, "{result:?}");
    assert_eq!(fake.requests()[0].raw_path, "/api/v3/projects/9/trigger/builds");

    let modern = FakeGitlab::new();
    let url = modern.start().await;
    let result = run(&schedule(&url, &body), 3).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(410)));
    assert_eq!(error_of(&result), "this GitLab no longer serves API v3: set `api: v4`");
}

#[tokio::test]
async fn permanent_failures_carry_their_message_and_are_not_retried() {
    let fake = FakeGitlab::new();
    fake.add_project(Project { ci_error: true, ..Project::new(10, "group/broken-ci") });
    fake.add_project(Project { legacy_yaml_errors: true, ..Project::new(11, "group/old") });
    let url = fake.start().await;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "    cron: \"@daily\"\n    project: 9\n    ref: master\n    token: ${OTHER}\n".into(),
            404,
            "GitLab answered 404: the project does not exist, or the trigger token is wrong, revoked or belongs to \
             another project (a personal access token does not work here)",
        ),
        (
            "    cron: \"@daily\"\n    project: 9\n    ref: nope\n".into(),
            400,
            "ref 'nope' is not a branch or tag of project 9",
        ),
        (
            "    cron: \"@daily\"\n    project: 10\n    ref: main\n".into(),
            422,
            "GitLab refused the pipeline configuration: jobs:build config contains unknown keys: scriptt",
        ),
        (
            "    cron: \"@daily\"\n    project: 11\n    ref: main\n".into(),
            201,
            "GitLab created pipeline 1001 but it failed at once: jobs:build script can't be blank",
        ),
    ];
    for (body, status, message) in cases {
        let result = run(&schedule(&url, &body), 3).await;
        assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(status)), "{body}");
        assert_eq!(error_of(&result), message);
    }
}

#[tokio::test]
async fn other_refusals_are_shown_as_gitlab_wrote_them() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    fake.script([
        Scripted::Status(400, r#"{"message":{"base":["Pipelines are disabled!"]}}"#.into()),
        Scripted::Status(401, r#"{"message":"401 Unauthorized"}"#.into()),
        Scripted::Status(403, r#"{"message":"403 Forbidden"}"#.into()),
    ]);
    let schedule = schedule(&url, NIGHTLY);
    let expected = [
        (400, "GitLab refused the trigger: Pipelines are disabled!"),
        (401, "GitLab answered 401, unauthorized: 401 Unauthorized"),
        (403, "GitLab answered 403, forbidden: 403 Forbidden"),
    ];
    for (status, message) in expected {
        let result = run(&schedule, 3).await;
        assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(status)));
        assert_eq!(error_of(&result), message);
    }
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_token_goes_nowhere_else() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    // Back to the endpoint itself: following the 308 would create a pipeline.
    let elsewhere = format!("{url}/api/v4/projects/9/trigger/pipeline");
    fake.script([Scripted::Redirect(308, elsewhere.clone()), Scripted::Redirect(301, elsewhere.clone())]);
    let schedule = schedule(&url, NIGHTLY);
    for status in [308, 301] {
        let result = run(&schedule, 3).await;
        assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(status)));
        let error = error_of(&result);
        assert!(error.starts_with(&format!("GitLab answered {status}, a redirect to {elsewhere};")), "{error}");
        assert!(error.ends_with("set `gitlab` to the address GitLab is served at"), "{error}");
    }
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn transient_failures_are_retried_until_a_pipeline_is_created() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    fake.script([
        Scripted::Status(502, "<html><body>Bad Gateway</body></html>".into()),
        Scripted::Status(503, "".into()),
        Scripted::Status(500, "oops".into()),
        Scripted::Status(504, "".into()),
        Scripted::Status(408, "".into()),
        Scripted::TooManyRequests { retry_after: 0 },
    ]);
    let result = run(&schedule(&url, NIGHTLY), 6).await;
    assert_eq!((result.ending, result.attempts), (Ending::Succeeded, 7), "{result:?}");
    assert_eq!(fake.requests().len(), 7);
}

#[tokio::test]
async fn exhausted_retries_report_the_last_answer() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    fake.script([Scripted::Status(503, "<h1>down</h1>".into()), Scripted::Status(503, "<h1>down</h1>".into())]);
    let result = run(&schedule(&url, NIGHTLY), 1).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 2, Some(503)));
    assert_eq!(
        error_of(&result),
        "GitLab (or a proxy in front of it) answered 503 with an HTML page: down (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn the_pipeline_rate_limit_is_transient() {
    // It waits at least a minute before the retry: `outcome`'s unit tests check that without the wait.
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    fake.script([Scripted::RateLimited]);
    let result = run(&schedule(&url, NIGHTLY), 0).await;
    assert_eq!((result.ending, result.retries_exhausted, result.http_status), (Ending::Failed, true, Some(400)));
    assert!(error_of(&result).contains("Too many pipelines created in the last minute"), "{result:?}");
}

#[tokio::test]
async fn a_timeout_leaves_the_outcome_unknown_and_a_refused_connection_fails() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    fake.script([Scripted::Delay(Duration::from_secs(3))]);
    let body = format!("{NIGHTLY}    timeout: 200ms\n");
    let result = run(&schedule(&url, &body), 0).await;
    assert_eq!(result.ending, Ending::Unknown, "{result:?}");
    assert!(error_of(&result).contains("a pipeline may have been created"), "{result:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = closed.local_addr().expect("an address").port();
    drop(closed);
    let result = run(&schedule(&format!("http://127.0.0.1:{port}"), NIGHTLY), 1).await;
    assert_eq!((result.ending, result.attempts), (Ending::Failed, 2), "{result:?}");
    assert!(error_of(&result).starts_with("cannot connect to 127.0.0.1"), "{result:?}");
    assert!(!error_of(&result).contains(TOKEN));
}

/// A schedule on a hostile server, with `extra` keys.
fn on(hostile: &Hostile, extra: &str) -> std::sync::Arc<Schedule> {
    schedule(&hostile.url, &format!("{NIGHTLY}{extra}"))
}

#[tokio::test]
async fn a_200_mb_answer_is_not_read_past_64_kib_and_the_message_says_so() {
    let head = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n".to_string();
    let start = "<html><head><title>Bad Gateway</title></head><body>".to_string();
    let filler = b"<p>padding</p>\n".repeat(4096);
    let hostile = Hostile::start(Fault::Flood { head, start, filler, length: 200 << 20 });
    let result = run(&on(&hostile, ""), 0).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(502)), "{result:?}");
    assert_eq!(
        error_of(&result),
        "GitLab (or a proxy in front of it) answered 502 with an HTML page: Bad Gateway… (only the first 64 KiB of its \
         200 MiB answer were read); a pipeline may have been created"
    );
    // The client stopped reading and closed: what the server got out is what the sockets' buffers took, not 200 MB.
    let written = hostile.written();
    assert!(written < 50 << 20, "the server wrote {written} bytes: the client read the answer whole");
}

#[tokio::test]
async fn a_201_of_10_mb_of_json_is_not_parsed_and_not_retried() {
    let head = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n".to_string();
    let flood = Fault::Flood { head, start: "[".into(), filler: b"1,".repeat(5000), length: 10_000_000 };
    let hostile = Hostile::start(flood);
    let result = run(&on(&hostile, ""), 3).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Unknown, 1, Some(201)), "{result:?}");
    assert_eq!(result.pipeline, None);
    assert!(
        error_of(&result).starts_with(
            "GitLab answered 201 Created but its answer is longer than 1 MiB (9.5 MiB), too long to be a pipeline; \
             a pipeline may have been created, and pipecron cannot tell which, so it does not retry;"
        ),
        "{result:?}"
    );
    assert_eq!(hostile.requests().len(), 1, "a 201 is never retried");
}

#[tokio::test]
async fn a_201_that_is_not_json_or_has_no_id_is_unknown_and_not_retried() {
    let cases = [
        (
            http_answer("201 Created", "text/plain", "pipeline created"),
            "its answer is not JSON, not a pipeline: pipeline created",
        ),
        (
            http_answer("201 Created", "application/json", r#"{"status":"created"}"#),
            r#"its answer has no pipeline `id`: {"status":"created"}"#,
        ),
    ];
    for (bytes, why) in cases {
        let hostile = Hostile::start(Fault::Answer(bytes));
        let result = run(&on(&hostile, ""), 3).await;
        assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Unknown, 1, Some(201)), "{why}");
        assert!(
            error_of(&result).starts_with(&format!("GitLab answered 201 Created but {why}; a pipeline may")),
            "{result:?}"
        );
        assert!(error_of(&result).ends_with("check that `gitlab` is GitLab's address"), "{result:?}");
        assert_eq!(hostile.requests().len(), 1, "a 201 is never retried");
    }
}

#[tokio::test]
async fn a_201_whose_body_trickles_past_the_timeout_is_unknown_and_not_retried() {
    let head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 32\r\n\r\n".to_vec();
    let bytes = br#"{"id": 1001, "status": "created"}"#.to_vec();
    // The head at once, then the body a byte every 100 ms: the timeout passes within it.
    let hostile = Hostile::start(Fault::Trickle { head, bytes, every: Duration::from_millis(100) });
    let result = run(&on(&hostile, "    timeout: 300ms\n"), 3).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Unknown, 1, Some(201)), "{result:?}");
    let error = error_of(&result);
    assert!(error.starts_with("GitLab answered 201 Created but its answer broke off after "), "{error}");
    assert!(error.contains(": the timeout (300ms) passed; a pipeline may have been created"), "{error}");
    assert_eq!(hostile.requests().len(), 1, "a 201 is never retried");
}

#[tokio::test]
async fn a_connection_reset_after_the_request_was_read_is_unknown_and_says_a_pipeline_may_exist() {
    let hostile = Hostile::start(Fault::Reset);
    let result = run(&on(&hostile, ""), 1).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Unknown, 2, None), "{result:?}");
    let error = error_of(&result);
    assert!(error.starts_with("the request to 127.0.0.1 failed: "), "{error}");
    assert!(error.ends_with("; a pipeline may have been created (gave up after 2 attempts)"), "{error}");
    assert_eq!(hostile.requests().len(), 2, "both attempts were read in full");
}

#[tokio::test]
async fn a_proxys_502_page_is_named_and_shown_without_its_html() {
    let fake = FakeGitlab::new();
    let url = fake.start().await;
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>\
                </center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    fake.script([Scripted::Status(502, page.into())]);
    let result = run(&schedule(&url, NIGHTLY), 0).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, Some(502)), "{result:?}");
    assert_eq!(
        error_of(&result),
        "GitLab (or a proxy in front of it) answered 502 with an HTML page: 502 Bad Gateway; a pipeline may have been \
         created"
    );
}

/// Nothing was sent when no connection could be made in time: the run fails, and is not `unknown`.
#[tokio::test]
async fn a_connection_that_hangs_past_the_timeout_is_a_failure_not_an_unknown() {
    let hole = blackhole();
    let body = format!("{NIGHTLY}    timeout: 1s\n");
    let result = run(&schedule(&format!("http://127.0.0.1:{}", hole.port), &body), 1).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 2, None), "{result:?}");
    assert_eq!(error_of(&result), "cannot connect to 127.0.0.1: no connection within 750ms (gave up after 2 attempts)");
}
