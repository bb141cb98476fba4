//! The fake GitLab answers as GitLab's trigger API does (see `common::fake_gitlab`), for every way of sending the
//! parameters: query string, urlencoded or multipart form, JSON; and as its pipelines API does, for following a
//! pipeline after the trigger. The client tests rely on it, so it is tested on its own, with plain HTTP requests.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::fake_gitlab::{
    API_TOKEN, ApiToken, CANCEL_TOKEN, DEVELOPER_TOKEN, FakeGitlab, NO_SCOPE_TOKEN, OTHER_TOKEN, Project, Role,
    Scripted, TOKEN, TriggerInfo, User,
};
use serde_json::{Value, json};

async fn post(url: &str, content_type: &str, body: String) -> (u16, Value) {
    let client = reqwest::Client::new();
    let response =
        client.post(url).header("content-type", content_type).body(body).send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn form(url: &str, body: &str) -> (u16, Value) {
    post(url, "application/x-www-form-urlencoded", body.to_string()).await
}

#[tokio::test]
async fn accepts_form_multipart_json_and_query_parameters() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let url = format!("{base}/api/v4/projects/9/trigger/pipeline");

    let (status, body) = form(&url, &format!("token={TOKEN}&ref=master&variables%5BA%5D=1")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], json!("created"));
    assert_eq!(fake.requests()[0].params["variables"], json!({"A": "1"}));

    let boundary = "XyZ";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{TOKEN}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"ref\"\r\n\r\nmain\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"variables[UPLOAD_TO_S3]\"\r\n\r\ntrue\r\n\
         --{boundary}--\r\n"
    );
    let (status, body) = post(&url, &format!("multipart/form-data; boundary={boundary}"), multipart).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(fake.requests()[1].params["variables"], json!({"UPLOAD_TO_S3": "true"}));

    let json_body = json!({"token": TOKEN, "ref": "main", "variables": {"B": "2"}, "inputs": {"n": 1}}).to_string();
    let (status, _) = post(&url, "application/json", json_body).await;
    assert_eq!(status, 201);
    assert_eq!(fake.requests()[2].params["inputs"], json!({"n": 1}));

    let (status, _) = form(&format!("{url}?token={TOKEN}&ref=master"), "").await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn knows_projects_by_path_and_takes_the_ref_from_the_webhook_path() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let by_path = format!("{base}/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline");
    assert_eq!(form(&by_path, &format!("token={TOKEN}&ref=feature%2Fx")).await.0, 201);
    let webhook = format!("{base}/api/v4/projects/9/ref/feature%2Fx/trigger/pipeline?token={TOKEN}");
    let (status, body) = form(&webhook, "ref=ignored").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ref"], json!("feature/x"));
}

#[tokio::test]
async fn answers_every_case_in_the_sheet() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let url = format!("{base}/api/v4/projects/9/trigger/pipeline");
    let cases: Vec<(String, u16, Value)> = vec![
        ("ref=master".into(), 400, json!({"error": "token is missing"})),
        (format!("token={TOKEN}"), 400, json!({"error": "ref is missing"})),
        (format!("token={TOKEN}&ref=%20"), 400, json!({"error": "ref is empty"})),
        (format!("token={TOKEN}&ref=nope"), 400, json!({"message": {"base": ["Reference not found"]}})),
        (
            format!("token={TOKEN}&ref=a91957a858320c0e17f3a0eca7cfacbff50ea29a"),
            400,
            json!({"message": {"base": ["Reference not found"]}}),
        ),
        ("token=glptt-wrong&ref=master".into(), 404, json!({"message": "404 Not Found"})),
    ];
    for (body, status, answer) in cases {
        assert_eq!(form(&url, &body).await, (status, answer), "{body}");
    }
    let not_a_map = json!({"token": TOKEN, "ref": "master", "variables": ["x"]}).to_string();
    assert_eq!(post(&url, "application/json", not_a_map).await, (400, json!({"error": "variables is invalid"})));
    let not_strings = json!({"token": TOKEN, "ref": "master", "variables": {"N": 1}}).to_string();
    assert_eq!(
        post(&url, "application/json", not_strings).await,
        (400, json!({"message": "variables needs to be a map of key-valued strings"}))
    );
    let hook = reqwest::Client::new()
        .post(&url)
        .header("X-Gitlab-Event", "Pipeline Hook")
        .form(&[("token", TOKEN), ("ref", "master")])
        .send()
        .await
        .expect("answers");
    assert_eq!(hook.status().as_u16(), 403);
    let v3 = form(&format!("{base}/api/v3/projects/9/trigger/builds"), &format!("token={TOKEN}&ref=master")).await;
    assert_eq!(v3, (410, json!({"error": "API V3 is no longer supported. Use API V4 instead."})));
}

// ---- The pipelines API: following a pipeline after the trigger ----

/// An answer of the fake, its headers kept.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().expect("a text header")).unwrap_or_else(|| panic!("no {name} header"))
    }

    fn ids(&self) -> Vec<u64> {
        self.body.as_array().expect("a list").iter().map(|p| p["id"].as_u64().expect("an id")).collect()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// A request with the API token in the PRIVATE-TOKEN header, as pipecron sends it.
async fn api(method: &str, url: &str, token: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().request(method.parse().expect("a method"), url);
    if let Some(token) = token {
        request = request.header("PRIVATE-TOKEN", token);
    }
    send(request).await
}

/// Triggers a pipeline of project 9 on `git_ref`; returns its id.
async fn trigger(base: &str, git_ref: &str) -> u64 {
    let (status, body) =
        form(&format!("{base}/api/v4/projects/9/trigger/pipeline"), &format!("token={TOKEN}&ref={git_ref}")).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_u64().expect("a pipeline id")
}

/// A time as GitLab writes it ("2026-11-25T00:30:00.123Z"), read.
fn time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is no time"));
    let shape_ok =
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.' && text.as_bytes()[10] == b'T';
    assert!(shape_ok, "{text} is not written as GitLab writes times");
    DateTime::parse_from_rfc3339(text).expect("RFC 3339").with_timezone(&Utc)
}

/// Polls `url` until `done` holds of the pipeline (5 s at most); returns it and every status seen on the way.
async fn poll_until(url: &str, done: impl Fn(&Value) -> bool) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let answer = api("GET", url, Some(API_TOKEN)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let status = answer.body["status"].as_str().expect("a status").to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if done(&answer.body) {
            return (answer.body, seen);
        }
        assert!(Instant::now() < deadline, "the pipeline got no further than {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn a_pipeline_moves_along_its_plan_by_elapsed_time() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let before = Instant::now();
    let first = trigger(&base, "master").await;
    let fresh = fake.pipeline(first).expect("the fake remembers the pipeline");
    if before.elapsed() < ms(900) {
        assert_eq!((&fresh["status"], &fresh["started_at"]), (&json!("pending"), &Value::Null), "{fresh:#}");
    }

    fake.pipeline_plan([("pending", ms(0)), ("running", ms(40)), ("success", ms(120))]);
    let second = trigger(&base, "main").await;
    let url = format!("{base}/api/v4/projects/9/pipelines/{second}");
    let (done, seen) = poll_until(&url, |p| p["status"] == "success").await;
    let plan = ["created", "pending", "running", "success"];
    let ranks: Vec<usize> =
        seen.iter().map(|s| plan.iter().position(|p| p == s).expect("a status of the plan")).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "the status went back: {seen:?}");

    // The times are the creation plus the plan's offsets, to the millisecond.
    let created = time(&done["created_at"]);
    assert!((Utc::now() - created).num_seconds().abs() < 60, "created_at {created} is not now");
    assert_eq!(time(&done["started_at"]) - created, chrono::Duration::milliseconds(40));
    assert_eq!(time(&done["finished_at"]) - created, chrono::Duration::milliseconds(120));
    assert_eq!(done["updated_at"], done["finished_at"]);
    assert_eq!((&done["duration"], &done["queued_duration"]), (&json!(0), &json!(0.04)));
    assert_eq!(
        (&done["id"], &done["iid"], &done["project_id"], &done["ref"], &done["source"]),
        (&json!(second), &json!(2), &json!(9), &json!("main"), &json!("trigger"))
    );
    assert_eq!(done["web_url"], json!(format!("https://gitlab.example.com/group/sub/project/-/pipelines/{second}")));
    assert_eq!(done["user"]["username"], json!("alice"), "GitLab runs it as the trigger's owner");
    assert_eq!(done["some_future_field"], json!({"ignored": true}));
    assert_eq!(fake.pipeline(second), Some(done.clone()));

    // The first pipeline keeps the default plan: running after 1 s, finished after 2 s, if at all by now.
    let first_now = fake.pipeline(first).expect("still there");
    let first_created = time(&first_now["created_at"]);
    if !first_now["finished_at"].is_null() {
        assert_eq!(time(&first_now["finished_at"]) - first_created, chrono::Duration::seconds(2), "{first_now:#}");
    }
    if !first_now["started_at"].is_null() {
        assert_eq!(time(&first_now["started_at"]) - first_created, chrono::Duration::seconds(1), "{first_now:#}");
    }
    assert_eq!(fake.pipelines().iter().map(|p| p["id"].clone()).collect::<Vec<_>>(), [json!(first), json!(second)]);
}

#[tokio::test]
async fn a_forced_status_stays_whatever_the_plan() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    fake.pipeline_plan([("pending", ms(0)), ("running", ms(20)), ("success", ms(50))]);
    let failing = trigger(&base, "master").await;
    let waiting = trigger(&base, "master").await;
    fake.set_pipeline_status(failing, "failed");
    fake.set_pipeline_status(waiting, "manual");
    tokio::time::sleep(ms(120)).await;

    let failed = api("GET", &format!("{base}/api/v4/projects/9/pipelines/{failing}"), Some(API_TOKEN)).await;
    assert_eq!((failed.status, &failed.body["status"]), (200, &json!("failed")), "{}", failed.body);
    assert!(time(&failed.body["finished_at"]) <= Utc::now(), "a final pipeline has finished");
    assert_eq!(failed.body["updated_at"], failed.body["finished_at"]);
    let manual = fake.pipeline(waiting).expect("remembered");
    assert_eq!((&manual["status"], &manual["finished_at"]), (&json!("manual"), &Value::Null), "manual is not final");
}

#[tokio::test]
async fn the_api_wants_a_known_token_with_the_scope_and_the_access() {
    let fake = FakeGitlab::new();
    fake.add_project(Project { api_tokens: vec![], refs: vec!["main".into()], ..Project::new(10, "group/hidden") });
    let guest = ApiToken { role: Role::Guest, ..ApiToken::new("glpat-guest-00000000000000", &["read_api"]) };
    fake.add_project(Project { api_tokens: vec![guest], ..Project::new(11, "group/guarded") });
    let base = fake.start().await;
    let id = trigger(&base, "master").await;
    let (status, hidden) =
        form(&format!("{base}/api/v4/projects/10/trigger/pipeline"), &format!("token={TOKEN}&ref=main")).await;
    assert_eq!(status, 201);
    let hidden = hidden["id"].as_u64().expect("an id");

    let one = format!("{base}/api/v4/projects/9/pipelines/{id}");
    let cancel = format!("{one}/cancel");
    let triggers = format!("{base}/api/v4/projects/9/triggers");
    let unauthorized = json!({"message": "401 Unauthorized"});
    let no_project = json!({"message": "404 Project Not Found"});
    let scope = json!({
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
        "scope": "api read_api",
    });
    let cases: Vec<(&str, String, Option<&str>, u16, Value)> = vec![
        // Anonymous: a private project does not exist for a GET; a POST and the triggers API want a user.
        ("GET", one.clone(), None, 404, no_project.clone()),
        ("POST", cancel.clone(), None, 401, unauthorized.clone()),
        ("GET", triggers.clone(), None, 401, unauthorized.clone()),
        ("GET", one.clone(), Some("glpat-nobodyknowsthis0000"), 401, unauthorized.clone()),
        ("GET", one.clone(), Some(TOKEN), 401, unauthorized.clone()),
        ("GET", one.clone(), Some(NO_SCOPE_TOKEN), 403, scope.clone()),
        ("POST", cancel.clone(), Some(API_TOKEN), 403, scope.clone()),
        ("GET", triggers.clone(), Some(NO_SCOPE_TOKEN), 403, scope.clone()),
        ("GET", format!("{base}/api/v4/projects/10/pipelines/{hidden}"), Some(API_TOKEN), 404, no_project.clone()),
        ("GET", format!("{base}/api/v4/projects/12/pipelines/{id}"), Some(API_TOKEN), 404, no_project.clone()),
        (
            "GET",
            format!("{base}/api/v4/projects/9/pipelines/4242"),
            Some(API_TOKEN),
            404,
            json!({"message": "404 Not found"}),
        ),
        // Another project's pipeline is not found in this one.
        (
            "GET",
            format!("{base}/api/v4/projects/9/pipelines/{hidden}"),
            Some(API_TOKEN),
            404,
            json!({"message": "404 Not found"}),
        ),
        (
            "GET",
            format!("{base}/api/v4/projects/11/pipelines"),
            Some("glpat-guest-00000000000000"),
            403,
            json!({"message": "403 Forbidden"}),
        ),
        (
            "GET",
            format!("{base}/api/v4/projects/9/pipelines/abc"),
            Some(API_TOKEN),
            400,
            json!({"error": "pipeline_id is invalid"}),
        ),
    ];
    for (method, url, token, status, body) in cases {
        let answer = api(method, &url, token).await;
        assert_eq!((answer.status, &answer.body), (status, &body), "{method} {url} with {token:?}");
        if status == 403 && body == scope {
            assert!(answer.header("www-authenticate").contains(r#"error="insufficient_scope""#));
        }
    }
    for url in [&one, &format!("{base}/api/v4/projects/group%2Fsub%2Fproject/pipelines/{id}")] {
        let answer = api("GET", url, Some(API_TOKEN)).await;
        assert_eq!((answer.status, &answer.body["id"]), (200, &json!(id)), "{url}");
    }

    // Only the PRIVATE-TOKEN header counts, or (as GitLab allows, and pipecron must not do) the URL.
    let bearer = reqwest::Client::new().get(&one).header("Authorization", format!("Bearer {API_TOKEN}"));
    assert_eq!(send(bearer).await.status, 404, "a Bearer header is no PRIVATE-TOKEN");
    let in_url = api("GET", &format!("{one}?private_token={API_TOKEN}"), None).await;
    assert_eq!(in_url.status, 200, "{}", in_url.body);
    let last = fake.api_requests().pop().expect("recorded");
    assert_eq!((last.token_in_url.as_deref(), last.private_token), (Some(API_TOKEN), None));
    assert!(fake.api_requests().iter().rev().skip(1).all(|r| r.token_in_url.is_none()));

    // Expired and revoked tokens are 401s of their own.
    let today = Utc::now().date_naive();
    fake.edit_api_token(CANCEL_TOKEN, |t| t.expires_at = Some(today));
    fake.edit_api_token(DEVELOPER_TOKEN, |t| t.revoked = true);
    let expired = api("GET", &one, Some(CANCEL_TOKEN)).await;
    assert_eq!(
        (expired.status, expired.body),
        (401, json!({"error": "invalid_token", "error_description": "Token has expired."}))
    );
    let revoked = api("GET", &one, Some(DEVELOPER_TOKEN)).await;
    assert_eq!((revoked.status, &revoked.body["error"]), (401, &json!("invalid_token")));
    fake.edit_api_token(API_TOKEN, |t| t.user = User::bot().blocked());
    assert_eq!(api("GET", &one, Some(API_TOKEN)).await.status, 401, "a blocked user's token");
}

#[tokio::test]
async fn cancel_ends_a_pipeline_for_good_and_leaves_a_final_one_alone() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    fake.pipeline_plan([("pending", ms(0)), ("running", ms(30)), ("success", ms(400))]);
    let running = trigger(&base, "master").await;
    let done = trigger(&base, "master").await;
    fake.set_pipeline_status(done, "success");

    let url = format!("{base}/api/v4/projects/group%2Fsub%2Fproject/pipelines/{running}/cancel");
    let canceled = api("POST", &url, Some(DEVELOPER_TOKEN)).await;
    assert_eq!((canceled.status, &canceled.body["status"]), (200, &json!("canceled")), "{}", canceled.body);
    let created = time(&canceled.body["created_at"]);
    let finished = time(&canceled.body["finished_at"]);
    assert!(finished - created < chrono::Duration::milliseconds(400), "canceled before the plan ended");
    assert_eq!(canceled.body["updated_at"], canceled.body["finished_at"]);

    // It stays canceled after the plan's end.
    let (after, _) = poll_until(&format!("{base}/api/v4/projects/9/pipelines/{running}"), |_| {
        Utc::now() - created > chrono::Duration::milliseconds(450)
    })
    .await;
    assert_eq!((&after["status"], &after["finished_at"]), (&json!("canceled"), &canceled.body["finished_at"]));

    let before = fake.pipeline(done).expect("remembered");
    let again = api("POST", &format!("{base}/api/v4/projects/9/pipelines/{done}/cancel"), Some(CANCEL_TOKEN)).await;
    assert_eq!((again.status, &again.body), (200, &before), "a final pipeline is answered as it is");
}

#[tokio::test]
async fn the_pipeline_list_pages_filters_and_sorts() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let mut ids = Vec::new();
    for git_ref in ["master", "main", "master", "main", "master"] {
        ids.push(trigger(&base, git_ref).await);
    }
    fake.set_pipeline_status(ids[1], "failed");
    let list = |query: &str| {
        let url = format!("{base}/api/v4/projects/9/pipelines?{query}");
        async move { api("GET", &url, Some(API_TOKEN)).await }
    };

    let first = list("per_page=2").await;
    assert_eq!((first.status, first.ids()), (200, vec![ids[4], ids[3]]), "newest first");
    let headers: Vec<&str> = ["x-page", "x-per-page", "x-next-page", "x-prev-page", "x-total", "x-total-pages"]
        .map(|h| first.header(h))
        .to_vec();
    assert_eq!(headers, ["1", "2", "2", "", "5", "3"]);
    let last = list("per_page=2&page=3").await;
    assert_eq!((last.ids(), last.header("x-next-page"), last.header("x-prev-page")), (vec![ids[0]], "", "2"));
    assert_eq!(list("per_page=2&page=4").await.ids(), Vec::<u64>::new());
    assert_eq!(list("").await.header("x-per-page"), "20");

    assert_eq!(list("sort=asc&per_page=2").await.ids(), [ids[0], ids[1]]);
    assert_eq!(list("ref=main").await.ids(), [ids[3], ids[1]]);
    assert_eq!(list("status=failed").await.ids(), [ids[1]]);
    assert_eq!(list("ref=master&status=failed").await.ids(), Vec::<u64>::new());
    assert_eq!(list("scope=finished").await.ids(), [ids[1]]);
    assert_eq!(list("source=trigger&order_by=id&sort=desc&per_page=100").await.ids().len(), 5);
    assert_eq!(list("source=push").await.ids(), Vec::<u64>::new());

    let by_path = api("GET", &format!("{base}/api/v4/projects/group%2Fsub%2Fproject/pipelines"), Some(API_TOKEN)).await;
    assert_eq!(by_path.ids().len(), 5);
    let item = &by_path.body[0];
    assert_eq!(
        (&item["status"], &item["source"], &item["ref"]),
        (&json!("pending"), &json!("trigger"), &json!("master"))
    );
    assert!(item.get("started_at").is_none(), "the list shows GitLab's PipelineBasic, without run times: {item}");
    time(&item["updated_at"]);

    for (query, error) in [
        ("status=bogus", "status does not have a valid value"),
        ("sort=up", "sort does not have a valid value"),
        ("order_by=name", "order_by does not have a valid value"),
        ("per_page=many", "per_page is invalid"),
    ] {
        let answer = list(query).await;
        assert_eq!((answer.status, answer.body), (400, json!({"error": error})), "{query}");
    }
}

#[tokio::test]
async fn the_trigger_list_masks_tokens_and_shows_owner_use_and_expiry() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let url = format!("{base}/api/v4/projects/9/triggers");

    let fresh = api("GET", &url, Some(API_TOKEN)).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.header("x-total"), "1");
    let trigger_json = &fresh.body[0];
    assert_eq!(trigger_json["token"], json!("a1b2"), "only the first 4 characters after glptt-, to a non-owner");
    assert_eq!(
        trigger_json["owner"].as_object().map(|o| (o["id"].clone(), o["username"].clone(), o["state"].clone())),
        Some((json!(2), json!("alice"), json!("active")))
    );
    assert_eq!((&trigger_json["last_used"], &trigger_json["expires_at"]), (&Value::Null, &Value::Null));
    assert!(trigger_json["id"].is_u64() && trigger_json["description"].is_string());
    assert!(time(&trigger_json["created_at"]) <= time(&trigger_json["updated_at"]));

    // last_used is when the token last created a pipeline; a refused trigger does not count.
    let id = trigger(&base, "master").await;
    let made = fake.pipeline(id).expect("remembered")["created_at"].clone();
    let (status, _) =
        form(&format!("{base}/api/v4/projects/9/trigger/pipeline"), &format!("token={TOKEN}&ref=nope")).await;
    assert_eq!(status, 400);
    assert_eq!(api("GET", &url, Some(API_TOKEN)).await.body[0]["last_used"], made);
    assert_eq!(fake.triggers(9)[0].last_used.map(|at| at.timestamp_millis()), Some(time(&made).timestamp_millis()));

    let expiry = Utc::now() + chrono::Duration::days(7);
    fake.set_trigger_expiry(TOKEN, Some(expiry));
    fake.set_trigger_owner(TOKEN, Some(User::alice().blocked()));
    fake.add_trigger(9, TriggerInfo { owner: None, description: "legacy".into(), ..TriggerInfo::new(OTHER_TOKEN) });
    let changed = api("GET", &url, Some(API_TOKEN)).await;
    assert_eq!(time(&changed.body[0]["expires_at"]).timestamp_millis(), expiry.timestamp_millis());
    assert_eq!(changed.body[0]["owner"]["state"], json!("blocked"));
    assert_eq!((&changed.body[1]["token"], &changed.body[1]["owner"]), (&json!("ffff"), &Value::Null));

    // The owner sees the whole token.
    fake.edit_api_token(CANCEL_TOKEN, |t| t.user = User::alice());
    assert_eq!(api("GET", &url, Some(CANCEL_TOKEN)).await.body[0]["token"], json!(TOKEN));

    let developer = api("GET", &url, Some(DEVELOPER_TOKEN)).await;
    assert_eq!((developer.status, developer.body), (403, json!({"message": "403 Forbidden"})), "a Maintainer's list");
}

#[tokio::test]
async fn the_trigger_route_refuses_unowned_blocked_and_expired_triggers() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let url = format!("{base}/api/v4/projects/9/trigger/pipeline");
    let fire = |git_ref: &str| {
        let (url, body) = (url.clone(), format!("token={TOKEN}&ref={git_ref}"));
        async move { form(&url, &body).await }
    };

    fake.set_trigger_owner(TOKEN, None);
    let unowned = json!({"message": {"base": ["Trigger token is invalid because is not owned by any user"]}});
    assert_eq!(fire("master").await, (400, unowned.clone()));
    assert_eq!(fire("nope").await, (400, unowned), "GitLab checks the owner before the ref");

    fake.set_trigger_owner(TOKEN, Some(User::alice().blocked()));
    let blocked = json!({"message": {"base": ["Insufficient permissions to create a new pipeline"]}});
    assert_eq!(fire("master").await, (400, blocked));

    fake.set_trigger_owner(TOKEN, Some(User::alice()));
    fake.set_trigger_expiry(TOKEN, Some(Utc::now() - chrono::Duration::seconds(1)));
    assert_eq!(fire("master").await, (404, json!({"message": "404 Not Found"})), "expired is revoked");

    fake.set_trigger_expiry(TOKEN, Some(Utc::now() + chrono::Duration::days(1)));
    assert_eq!(fire("master").await.0, 201);
    assert_eq!((fake.pipelines().len(), fake.requests().len()), (1, 5), "only the last one made a pipeline");
    assert!(fake.api_requests().is_empty(), "trigger requests are not API requests");
}

#[tokio::test]
async fn the_api_rate_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    let id = trigger(&base, "master").await;
    let url = format!("{base}/api/v4/projects/9/pipelines/{id}");
    fake.api_rate_limit(2);

    assert_eq!(api("GET", &url, Some(API_TOKEN)).await.status, 200);
    assert_eq!(api("GET", &url, Some(API_TOKEN)).await.status, 200);
    let throttled = api("GET", &url, Some(API_TOKEN)).await;
    assert_eq!((throttled.status, &throttled.body), (429, &json!("Retry later\n")));
    assert!(throttled.header("content-type").starts_with("text/plain"));
    assert_eq!(["retry-after", "ratelimit-limit", "ratelimit-remaining"].map(|h| throttled.header(h)), ["1", "2", "0"]);
    let reset: i64 = throttled.header("ratelimit-reset").parse().expect("a Unix time");
    let now = Utc::now().timestamp();
    assert!((now..=now + 2).contains(&reset), "RateLimit-Reset {reset} is within a second of {now}");

    // The trigger route is not limited; the window rolls on.
    assert_eq!(trigger(&base, "master").await, id + 1);
    tokio::time::sleep(ms(1050)).await;
    assert_eq!(api("GET", &url, Some(API_TOKEN)).await.status, 200, "a second later");
    assert_eq!(fake.api_requests().len(), 4, "throttled requests are recorded too");
}

#[tokio::test]
async fn api_scripts_and_records_are_apart_from_the_trigger_route() {
    let fake = FakeGitlab::new();
    let base = fake.start().await;
    fake.script_api([Scripted::Status(503, "<html>bad gateway</html>".into()), Scripted::Delay(ms(150))]);
    let id = trigger(&base, "master").await;
    let url = format!("{base}/api/v4/projects/group%2Fsub%2Fproject/pipelines/{id}?x=1");
    let get = || {
        send(
            reqwest::Client::new().get(&url).header("PRIVATE-TOKEN", API_TOKEN).header("User-Agent", "pipecron-test/1"),
        )
    };

    let unavailable = get().await;
    assert_eq!((unavailable.status, unavailable.body), (503, json!("<html>bad gateway</html>")));
    let started = Instant::now();
    assert_eq!(get().await.status, 200);
    assert!(started.elapsed() >= ms(150), "the scripted delay");
    assert_eq!(get().await.status, 200);

    assert_eq!(fake.requests().len(), 1, "requests() holds the trigger requests only");
    let recorded = fake.api_requests();
    assert_eq!(recorded.len(), 3);
    let first = &recorded[0];
    assert_eq!(
        (first.method.as_str(), first.raw_path.as_str(), first.query.as_deref()),
        ("GET", format!("/api/v4/projects/group%2Fsub%2Fproject/pipelines/{id}").as_str(), Some("x=1"))
    );
    assert_eq!((first.private_token.as_deref(), first.token_in_url.as_deref()), (Some(API_TOKEN), None));
    assert_eq!(first.user_agent.as_deref(), Some("pipecron-test/1"));
    assert!(recorded.windows(2).all(|w| w[0].at <= w[1].at));
}
