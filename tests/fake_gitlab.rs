//! The fake GitLab answers as GitLab's trigger API does (see `common::fake_gitlab`), for every way of sending the
//! parameters: query string, urlencoded or multipart form, JSON. The client tests rely on it, so it is tested on its
//! own, with plain HTTP requests.

mod common;

use common::fake_gitlab::{FakeGitlab, TOKEN};
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
