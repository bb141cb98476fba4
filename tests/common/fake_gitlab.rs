//! A fake GitLab trigger API on loopback that answers as GitLab's does: 201 with the pipeline, 400 for a missing
//! token or ref and for a ref that is no branch or tag, 404 for an unknown project or token alike, 410 for API v3.
//!
//! It reads parameters from the query string and from form, multipart and JSON bodies, checks them in GitLab's
//! order, and records every request so that tests can assert the wire format. `script` forces the next answers
//! (503, 429 with Retry-After, the pipeline rate limit, ...) for retry tests.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const TOKEN: &str = "glptt-a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
pub const OTHER_TOKEN: &str = "glptt-ffffffffffffffffffffffffffffffffffffffff";

/// A project the fake knows.
#[derive(Clone)]
pub struct Project {
    pub id: u64,
    pub path: String,
    pub refs: Vec<String>,
    pub tokens: Vec<String>,
    /// Answer 422 with a configuration error.
    pub ci_error: bool,
    /// Answer like GitLab before 13: 201 with status "failed" and yaml_errors.
    pub legacy_yaml_errors: bool,
}

impl Project {
    /// A project with one branch, `main`, and TOKEN.
    pub fn new(id: u64, path: &str) -> Self {
        Project {
            id,
            path: path.into(),
            refs: vec!["main".into()],
            tokens: vec![TOKEN.into()],
            ci_error: false,
            legacy_yaml_errors: false,
        }
    }
}

/// An answer forced on the next request.
#[derive(Clone, Debug)]
pub enum Scripted {
    Status(u16, String),
    TooManyRequests {
        retry_after: u64,
    },
    RateLimited,
    /// A redirect (301, 302, 307, 308) to `location`.
    Redirect(u16, String),
    /// Wait this long before answering normally (for timeouts).
    Delay(std::time::Duration),
    /// 429 with `Retry-After` as an HTTP date this long after the answer (rounded down to the second, as HTTP
    /// dates are); the date sent is recorded in `retry_after_dates`.
    TooManyRequestsUntil(std::time::Duration),
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The path as sent, percent-encoding intact.
    pub raw_path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// Every parameter, from wherever it came; `variables` and `inputs` as JSON objects.
    pub params: BTreeMap<String, Value>,
    /// When the request arrived, by this host's clock.
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct Inner {
    projects: Vec<Project>,
    script: VecDeque<Scripted>,
    requests: Vec<Recorded>,
    next_pipeline: u64,
    v3: bool,
    /// How long every answer takes.
    slow: std::time::Duration,
    /// The dates sent as `Retry-After` by `Scripted::TooManyRequestsUntil`.
    retry_after_dates: Vec<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Default)]
pub struct FakeGitlab {
    inner: Arc<Mutex<Inner>>,
}

impl FakeGitlab {
    /// Project 9 (`group/sub/project`) with branches `master`, `main`, `feature/x` and tag `v1.0`, and TOKEN.
    pub fn new() -> Self {
        let fake = FakeGitlab::default();
        fake.add_project(Project {
            id: 9,
            path: "group/sub/project".into(),
            refs: ["master", "main", "feature/x", "v1.0"].map(String::from).to_vec(),
            tokens: vec![TOKEN.into()],
            ci_error: false,
            legacy_yaml_errors: false,
        });
        fake.lock().next_pipeline = 1000;
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_project(&self, project: Project) {
        self.lock().projects.push(project);
    }

    /// Serve legacy API v3 (GitLab before 11) instead of answering 410.
    pub fn with_v3(self) -> Self {
        self.lock().v3 = true;
        self
    }

    /// Makes every answer take `by` (a slow GitLab).
    pub fn slow(&self, by: std::time::Duration) {
        self.lock().slow = by;
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.lock().script.extend(answers);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The dates sent as `Retry-After` by `Scripted::TooManyRequestsUntil`, in order.
    pub fn retry_after_dates(&self) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.lock().retry_after_dates.clone()
    }

    /// GitLab's trigger routes, for a server of the test's own making (TLS).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v4/projects/{id}/trigger/pipeline", post(v4))
            .route("/api/v4/projects/{id}/ref/{git_ref}/trigger/pipeline", post(v4_webhook))
            .route("/api/v3/projects/{id}/trigger/builds", post(v3))
            .with_state(self.clone())
    }

    /// Serves on 127.0.0.1 on a free port until the test's runtime ends; returns the base URL.
    pub async fn start(&self) -> String {
        let app = self.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds loopback");
        let addr: SocketAddr = listener.local_addr().expect("has an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Serves from a thread of its own, for tests that run the real binary (which block the test's thread).
    pub fn start_in_background(&self) -> String {
        let fake = self.clone();
        super::in_background(move || async move { fake.start().await })
    }
}

async fn v4(State(fake): State<FakeGitlab>, Path(id): Path<String>, request: Request) -> Response {
    fake.handle(&id, None, request, false).await
}

async fn v4_webhook(
    State(fake): State<FakeGitlab>,
    Path((id, git_ref)): Path<(String, String)>,
    request: Request,
) -> Response {
    fake.handle(&id, Some(git_ref), request, false).await
}

async fn v3(State(fake): State<FakeGitlab>, Path(id): Path<String>, request: Request) -> Response {
    if !fake.lock().v3 {
        return (StatusCode::GONE, axum::Json(json!({"error": "API V3 is no longer supported. Use API V4 instead."})))
            .into_response();
    }
    fake.handle(&id, None, request, true).await
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn base(message: &str) -> Value {
    json!({"message": {"base": [message]}})
}

impl FakeGitlab {
    async fn handle(&self, id: &str, path_ref: Option<String>, request: Request, v3: bool) -> Response {
        let (recorded, headers) = match record(request).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        let (scripted, slow) = {
            let mut inner = self.lock();
            inner.requests.push(recorded.clone());
            (inner.script.pop_front(), inner.slow)
        };
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        match scripted {
            Some(Scripted::Status(status, body)) => {
                return (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
                    .into_response();
            }
            Some(Scripted::TooManyRequests { retry_after }) => {
                return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", retry_after.to_string())], "Retry later\n")
                    .into_response();
            }
            Some(Scripted::Redirect(status, location)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
                return (status, [("Location", location)], "").into_response();
            }
            Some(Scripted::RateLimited) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    base("Too many pipelines created in the last minute. Try again later."),
                );
            }
            Some(Scripted::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(Scripted::TooManyRequestsUntil(after)) => {
                let now = chrono::Utc::now();
                let exact = now + chrono::Duration::from_std(after).unwrap_or_default();
                let date = exact - chrono::Duration::nanoseconds(i64::from(exact.timestamp_subsec_nanos()));
                self.lock().retry_after_dates.push(date);
                let header = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", header)], "Retry later\n").into_response();
            }
            None => {}
        }
        self.answer(id, path_ref, &recorded.params, &headers, v3)
    }

    fn answer(
        &self,
        id: &str,
        path_ref: Option<String>,
        params: &BTreeMap<String, Value>,
        headers: &HeaderMap,
        v3: bool,
    ) -> Response {
        let Some(token) = params.get("token").and_then(Value::as_str) else {
            return error(StatusCode::BAD_REQUEST, json!({"error": "token is missing"}));
        };
        let git_ref = match path_ref.or_else(|| params.get("ref").and_then(Value::as_str).map(String::from)) {
            None => return error(StatusCode::BAD_REQUEST, json!({"error": "ref is missing"})),
            Some(r) if r.trim().is_empty() => return error(StatusCode::BAD_REQUEST, json!({"error": "ref is empty"})),
            Some(r) => r,
        };
        match params.get("variables") {
            None | Some(Value::Object(_)) => {}
            Some(_) => return error(StatusCode::BAD_REQUEST, json!({"error": "variables is invalid"})),
        }
        if let Some(Value::Object(vars)) = params.get("variables")
            && vars.values().any(|v| !v.is_string())
        {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"message": "variables needs to be a map of key-valued strings"}),
            );
        }
        if headers.get("X-Gitlab-Event").and_then(|v| v.to_str().ok()) == Some("Pipeline Hook") {
            return error(StatusCode::FORBIDDEN, json!({"message": "403 Forbidden"}));
        }
        let mut inner = self.lock();
        let Some(project) = inner
            .projects
            .iter()
            .find(|p| (p.id.to_string() == id || p.path == id) && p.tokens.iter().any(|t| t == token))
            .cloned()
        else {
            return error(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"}));
        };
        if !project.refs.contains(&git_ref) {
            return error(StatusCode::BAD_REQUEST, base("Reference not found"));
        }
        if let Some(Value::Object(inputs)) = params.get("inputs")
            && inputs.len() > 20
        {
            return error(StatusCode::BAD_REQUEST, base("Too many inputs"));
        }
        if project.ci_error {
            return error(StatusCode::UNPROCESSABLE_ENTITY, base("jobs:build config contains unknown keys: scriptt"));
        }
        inner.next_pipeline += 1;
        let id = inner.next_pipeline;
        let failed = project.legacy_yaml_errors;
        let body = json!({
            "id": id,
            "iid": id - 1000,
            "project_id": project.id,
            "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
            "ref": git_ref,
            "status": if failed { "failed" } else if v3 { "pending" } else { "created" },
            "source": "trigger",
            "created_at": "2026-11-25T00:30:00.123Z",
            "web_url": format!("https://gitlab.example.com/{}/-/pipelines/{id}", project.path),
            "yaml_errors": if failed { json!("jobs:build script can't be blank") } else { Value::Null },
            "some_future_field": {"ignored": true},
        });
        (StatusCode::CREATED, axum::Json(body)).into_response()
    }
}

/// Reads every parameter of a request: query string, then the body by its content type.
async fn record(request: Request) -> Result<(Recorded, HeaderMap), Response> {
    let headers = request.headers().clone();
    let uri: Uri = request.uri().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    let mut params = BTreeMap::new();
    if let Some(query) = uri.query() {
        add_pairs(&mut params, url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let kind = content_type.as_deref().unwrap_or("");
    if kind.starts_with("multipart/form-data") {
        let mut multipart = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| error(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})))?;
        let mut pairs = Vec::new();
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            pairs.push((name, field.text().await.unwrap_or_default()));
        }
        add_pairs(&mut params, pairs);
    } else {
        let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
        if kind.starts_with("application/json") {
            let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
                return Err(error(StatusCode::BAD_REQUEST, json!({"error": "invalid JSON"})));
            };
            params.extend(fields);
        } else {
            add_pairs(&mut params, url::form_urlencoded::parse(&body).into_owned());
        }
    }
    let recorded = Recorded {
        raw_path: uri.path().to_string(),
        query: uri.query().map(String::from),
        content_type,
        user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()).map(String::from),
        params,
        at: chrono::Utc::now(),
    };
    Ok((recorded, headers))
}

/// Form fields into parameters: `variables[KEY]=v` and `inputs[name]=v` collect into objects, as Rails does.
fn add_pairs(params: &mut BTreeMap<String, Value>, pairs: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in pairs {
        let nested = ["variables", "inputs"].into_iter().find_map(|outer| {
            key.strip_prefix(outer)
                .and_then(|rest| rest.strip_prefix('['))
                .and_then(|rest| rest.strip_suffix(']'))
                .map(|inner| (outer, inner.to_string()))
        });
        match nested {
            Some((outer, inner)) => {
                let entry = params.entry(outer.to_string()).or_insert_with(|| json!({}));
                if let Value::Object(map) = entry {
                    map.insert(inner, Value::String(value));
                }
            }
            None => {
                params.insert(key, Value::String(value));
            }
        }
    }
}
