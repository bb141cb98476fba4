//! Every route of the daemon's HTTP server, in process (tower's `oneshot`): status codes, content types, 404s, the
//! admin endpoint's 401 and 404, a hostile description escaped, and no token in any body. The state behind it is
//! real: a SQLite file, and the fake GitLab on loopback for the admin endpoint's fires.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use pipecron::events::{Event, Events, Listener};
use pipecron::metrics::Metrics;
use pipecron::schedule::Schedule;
use pipecron::secret::Secret;
use pipecron::server::{Admin, ConfigHealth, Live, router};
use pipecron::store::{Replica, StateLocation};
use pipecron::trigger::{GitlabClient, Sender};
use tower::ServiceExt;

use common::fake_gitlab::{FakeGitlab, TOKEN};
use common::metrics::{prometheus, value};

const ADMIN: &str = "s3cret-admin-token-for-tests";

/// A daemon's server state on the fake, without the daemon: the schedules of `yaml` (under `schedules:`).
struct App {
    live: Live,
    fake: FakeGitlab,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new(yaml: &str, admin: Option<&str>) -> App {
        let fake = FakeGitlab::new();
        let url = fake.start().await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let schedules = load(&dir, &url, yaml);
        let state = StateLocation::Sqlite(dir.path().join("state.db"));
        let store = Arc::new(pipecron::store::open(&state).await.expect("opens"));
        let metrics = Arc::new(Metrics::new());
        let config = Arc::new(ConfigHealth::default());
        let events = Events::new(vec![metrics.clone(), config.clone()]);
        events.publish(Event::Loaded { schedules: &schedules });
        let replica = Arc::new(Replica::this_process(pipecron::store::DEFAULT_LEASE));
        let client = GitlabClient::new().expect("a client");
        let admin = admin.map(|token| {
            let trigger = Arc::new(Sender::Gitlab(Arc::new(client)));
            Arc::new(Admin { token: Secret::new(token.into()), trigger, replica, events })
        });
        let now = chrono::Utc::now().timestamp_millis();
        let live = Live {
            store,
            schedules: tokio::sync::watch::channel(schedules).1,
            loop_woke: Arc::new(AtomicI64::new(now)),
            metrics,
            config,
            admin,
            state: state.to_string(),
        };
        App { live, fake, _dir: dir }
    }

    async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: &str) -> (StatusCode, String, String) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Body::from(body.to_string())).expect("a request");
        let response = router(self.live.clone()).oneshot(request).await.expect("an answer");
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.expect("a body");
        common::artifacts::keep("http", &bytes);
        let body = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        assert!(!body.contains(&TOKEN[6..]), "{method} {path} shows the trigger token:\n{body}");
        assert!(!body.contains(ADMIN), "{method} {path} shows the admin token:\n{body}");
        (status, kind, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, String, String) {
        self.call("GET", path, None, "").await
    }
}

fn load(dir: &tempfile::TempDir, url: &str, yaml: &str) -> Vec<Arc<Schedule>> {
    let files = dir.path().join("schedules");
    std::fs::create_dir_all(&files).expect("creates");
    let text = format!(
        "defaults:\n  gitlab: {url}\n  token: ${{TRIGGER_TOKEN}}\n  project: 9\n  ref: master\n  retries: 0\nschedules:\n{yaml}"
    );
    std::fs::write(files.join("s.yaml"), text).expect("writes");
    let env = |name: &str| (name == "TRIGGER_TOKEN").then(|| TOKEN.to_string());
    let loaded = pipecron::config::load(&files, Some(&env));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.schedules
}

const HOSTILE: &str = "  nightly:\n    cron: \"30 0 * * *\"\n    timezone: Europe/Berlin\n    description: \"<script>alert(1)</script>\"\n  paused:\n    cron: \"0 * * * *\"\n    enabled: false\n";

#[tokio::test]
async fn health_checks_answer_with_text() {
    let app = App::new(HOSTILE, None).await;
    let (status, kind, body) = app.get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);

    app.live.loop_woke.store(0, std::sync::atomic::Ordering::Relaxed);
    let (status, _, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a loop that has not woken is stuck");
    assert!(body.contains("has not woken"), "{body}");

    app.live.config.on(&Event::ReloadFailed { error: "s.yaml:3:5: schedule 'x': unknown key 'crn'" });
    let (status, _, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "the older configuration is valid and runs");
    assert!(body.contains("the last reload was refused") && body.contains("unknown key 'crn'"), "{body}");
    app.live.config.on(&Event::Reloaded);
    assert_eq!(app.get("/readyz").await.2, "ready\n");
}

#[tokio::test]
async fn the_json_api_answers_json_and_404s_for_unknown_names() {
    let app = App::new(HOSTILE, None).await;
    let (status, kind, body) = app.get("/api/v1/schedules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "application/json");
    let rows: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    assert_eq!(rows[0]["description"], "<script>alert(1)</script>", "JSON carries the text as it is");
    assert_eq!(rows[0]["token"], format!("glptt-{}…", &TOKEN[6..10]));

    let (status, kind, _) = app.get("/api/v1/schedules/nightly").await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/json"));
    let (status, kind, body) = app.get("/api/v1/schedules/nope").await;
    assert_eq!((status, kind.as_str()), (StatusCode::NOT_FOUND, "application/json"));
    assert!(body.contains("no schedule named 'nope'"), "{body}");
    assert_eq!(app.get("/api/v1/schedules/nope/runs").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/schedules/nightly/runs").await.2, "[]");
    assert_eq!(app.get("/api/v1/schedules/nightly/runs?before=soon").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/no/such/route").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_an_admin_token_the_admin_endpoint_does_not_exist() {
    let app = App::new(HOSTILE, None).await;
    let bearer = format!("Bearer {ADMIN}");
    let (status, _, _) = app.call("POST", "/api/v1/schedules/nightly/run", Some(&bearer), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(app.fake.requests().is_empty());
}

#[tokio::test]
async fn the_admin_endpoint_wants_the_bearer_token_and_fires_like_run_now() {
    let app = App::new(HOSTILE, Some(ADMIN)).await;
    let path = "/api/v1/schedules/nightly/run";
    for auth in [None, Some("Bearer wrong"), Some(ADMIN), Some(&format!("Basic {ADMIN}")[..]), Some("Bearer ")] {
        let (status, _, body) = app.call("POST", path, auth, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
    }
    assert!(app.fake.requests().is_empty(), "nothing is sent without the token");

    let bearer = format!("Bearer {ADMIN}");
    let auth = Some(bearer.as_str());
    let body = r#"{"ref": "main", "variables": {"DEPLOY": "yes"}}"#;
    let (status, kind, answer) = app.call("POST", path, auth, body).await;
    assert_eq!((status, kind.as_str()), (StatusCode::CREATED, "application/json"), "{answer}");
    let run: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(run["reason"], "run-now");
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["pipeline"]["id"], 1001);
    let sent = &app.fake.requests()[0].params;
    assert_eq!(sent["ref"], "main");
    assert_eq!(sent["variables"]["DEPLOY"], "yes");
    let (_, _, runs) = app.get("/api/v1/schedules/nightly/runs").await;
    assert!(runs.contains("run-now"), "the history has it: {runs}");

    let (status, _, answer) = app.call("POST", path, auth, r#"{"ref": "no-such-branch"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "GitLab refused it: {answer}");
    assert!(answer.contains("failed"), "{answer}");
    let (status, _, answer) = app.call("POST", path, auth, r#"{"variables": {"PIPECRON_SLOT": "x"}}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.contains("reserves"), "{answer}");
    app.fake.script([common::fake_gitlab::Scripted::Status(201, "<html>a proxy's page</html>".into())]);
    let (status, _, answer) = app.call("POST", path, auth, "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "an answer, but no pipeline: {answer}");
    assert!(answer.contains("unknown"), "{answer}");
    assert_eq!(app.call("POST", path, auth, "{not json").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.call("POST", "/api/v1/schedules/nope/run", auth, "").await.0, StatusCode::NOT_FOUND);

    let metrics = prometheus(&app.get("/metrics").await.2);
    let fires = |outcome: &str| {
        let labels = [("schedule", "nightly"), ("reason", "run-now"), ("outcome", outcome)];
        value(&metrics, "pipecron_fires_total", &labels)
    };
    assert_eq!((fires("succeeded"), fires("failed")), (Some(1.0), Some(1.0)), "run-now fires are counted");
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_follow_reloads() {
    let app = App::new(HOSTILE, None).await;
    let (status, kind, text) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    let samples = prometheus(&text);
    let info = [
        ("schedule", "nightly"),
        ("project", "9"),
        ("ref", "master"),
        ("cron", "30 0 * * *"),
        ("timezone", "Europe/Berlin"),
    ];
    assert_eq!(value(&samples, "pipecron_schedule_info", &info), Some(1.0));
    assert_eq!(value(&samples, "pipecron_schedule_paused", &[("schedule", "paused")]), Some(1.0));
    assert_eq!(value(&samples, "pipecron_schedules", &[("state", "active")]), Some(1.0));
    assert_eq!(value(&samples, "pipecron_schedules", &[("state", "paused")]), Some(1.0));
    assert_eq!(value(&samples, "pipecron_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(value(&samples, "pipecron_config_last_reload_successful", &[]), Some(1.0));
    assert_eq!(value(&samples, "pipecron_store_up", &[]), Some(1.0));
    let scheduled = [("schedule", "nightly"), ("reason", "schedule"), ("outcome", "failed")];
    assert_eq!(value(&samples, "pipecron_fires_total", &scheduled), Some(0.0), "zero before the first failure");

    // A reload that renames `nightly`: its series go, the new name starts from nothing.
    let renamed = load(&app._dir, "http://127.0.0.1:9", &HOSTILE.replace("nightly", "nightly-v2"));
    app.live.metrics.on(&Event::Reloaded);
    app.live.metrics.on(&Event::Loaded { schedules: &renamed });
    let text = app.get("/metrics").await.2;
    assert!(!text.contains("schedule=\"nightly\""), "a removed schedule's series are gone:\n{text}");
    let samples = prometheus(&text);
    assert_eq!(value(&samples, "pipecron_schedule_paused", &[("schedule", "nightly-v2")]), Some(0.0));
    assert_eq!(value(&samples, "pipecron_config_reloads_total", &[("result", "success")]), Some(1.0));

    app.live.metrics.on(&Event::ReloadFailed { error: "bad" });
    let samples = prometheus(&app.get("/metrics").await.2);
    assert_eq!(value(&samples, "pipecron_config_last_reload_successful", &[]), Some(0.0));
    assert_eq!(value(&samples, "pipecron_config_reloads_total", &[("result", "failure")]), Some(1.0));
}

#[tokio::test]
async fn the_pages_are_html_escape_what_they_show_and_404_with_a_page() {
    let app = App::new(HOSTILE, None).await;
    let (status, kind, page) = app.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/html; charset=utf-8");
    assert!(page.contains("href=\"/schedules/nightly\""), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the description, escaped:\n{page}");
    assert!(!page.contains("<script>alert"), "a hostile description is not markup:\n{page}");
    assert!(page.contains("paused"), "{page}");
    assert!(page.contains(&format!("glptt-{}…", &TOKEN[6..10])), "the token, masked:\n{page}");
    assert!(page.contains("http-equiv=\"refresh\""), "it refreshes itself");

    let (status, kind, page) = app.get("/?q=PAUSED").await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert!(page.contains("/schedules/paused") && !page.contains("/schedules/nightly\""), "filtered:\n{page}");

    let (status, _, page) = app.get("/schedules/nightly").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Europe/Berlin") && page.contains("&lt;script&gt;"), "{page}");
    assert!(page.matches("00:30:00").count() >= 10, "its next 10 fire times:\n{page}");

    let (status, kind, page) = app.get("/schedules/%3Cb%3Enope").await;
    assert_eq!((status, kind.as_str()), (StatusCode::NOT_FOUND, "text/html; charset=utf-8"));
    assert!(page.contains("&lt;b&gt;nope") && !page.contains("<b>nope"), "{page}");
}

#[tokio::test]
async fn the_overview_pages_through_many_schedules() {
    let many: String = (0..250).map(|i| format!("  s{i:03}:\n    cron: \"0 * * * *\"\n")).collect();
    let app = App::new(&many, None).await;
    let (_, _, first) = app.get("/").await;
    assert_eq!(first.matches("href=\"/schedules/").count(), 100, "100 rows a page");
    assert!(first.contains("page=2"), "a link to the next page");
    let (_, _, last) = app.get("/?page=3").await;
    assert_eq!(last.matches("href=\"/schedules/").count(), 50);
    assert!(last.contains("/schedules/s249") && !last.contains("/schedules/s000"), "{last}");
}
