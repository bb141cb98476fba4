//! A fake GitLab on loopback that answers as GitLab does, for the two APIs pipecron talks to.
//!
//! The trigger API: 201 with the pipeline, 400 for a missing token or ref and for a ref that is no branch or tag, 404
//! for an unknown project or token alike, 410 for API v3. It reads parameters from the query string and from form,
//! multipart and JSON bodies, checks them in GitLab's order, and records every request so that tests can assert the
//! wire format. `script` forces the next answers (503, 429 with Retry-After, the pipeline rate limit, ...) for retry
//! tests.
//!
//! The pipelines API, for following a pipeline after the trigger (the last section of
//! /work/shared/gitlab-trigger-api.md): every pipeline the trigger route creates is remembered, and its status moves
//! along a plan by real elapsed time (created → pending → running → success by default). Those routes want an API
//! token (personal or project access token) in the `PRIVATE-TOKEN` header, with the scope and the role GitLab asks for;
//! they are recorded apart from the trigger requests (`api_requests`), and have a rate limit and a script of their own.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

pub const TOKEN: &str = "glptt-a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
pub const OTHER_TOKEN: &str = "glptt-ffffffffffffffffffffffffffffffffffffffff";

/// An API token with the `read_api` scope, of a Maintainer: it may read pipelines and list the trigger tokens.
pub const API_TOKEN: &str = "glpat-readapi-4f7b2c9e1d0a";
/// An API token with the `api` scope, of a Maintainer: it may also cancel.
pub const CANCEL_TOKEN: &str = "glpat-api-8e3d5a1c7b9f0e2d";
/// An API token with only the `read_repository` scope: every pipelines route answers 403 `insufficient_scope`.
pub const NO_SCOPE_TOKEN: &str = "glpat-readrepo-6c2a9e4f1b3";
/// An API token with the `api` scope, of a Developer: it may read and cancel pipelines, but not list the trigger tokens
/// (403 Forbidden, that needs a Maintainer).
pub const DEVELOPER_TOKEN: &str = "glpat-developer-0d9c8b7a65";

/// The default plan of a pipeline: pending at once, running after a second, success after two.
pub const DEFAULT_PLAN: [(&str, Duration); 3] =
    [("pending", Duration::ZERO), ("running", Duration::from_secs(1)), ("success", Duration::from_secs(2))];

/// The statuses after which a pipeline does not change (`manual` may wait forever, but is not final).
pub const FINAL_STATUSES: [&str; 4] = ["success", "failed", "canceled", "skipped"];

/// Every status GitLab's API knows (`Ci::HasStatus::AVAILABLE_STATUSES`); the list's `status` must be one.
const AVAILABLE_STATUSES: &[&str] = &[
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
];

/// `Ci::Pipeline.sources`; the list's `source` must be one. Every pipeline of the fake has source `trigger`.
const SOURCES: &[&str] = &[
    "unknown",
    "push",
    "web",
    "trigger",
    "schedule",
    "api",
    "external",
    "pipeline",
    "chat",
    "webide",
    "merge_request_event",
    "external_pull_request_event",
    "parent_pipeline",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
    "security_orchestration_policy",
    "container_registry_push",
    "duo_workflow",
    "pipeline_execution_policy_schedule",
];

const SCOPES: &[&str] = &["running", "pending", "finished", "branches", "tags"];
const ORDER_BY: &[&str] = &["id", "status", "ref", "updated_at", "user_id"];
const SORTS: &[&str] = &["asc", "desc"];

/// A GitLab user: the owner of a trigger token, or the user behind an API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub name: String,
    /// "active" or "blocked".
    pub state: String,
}

impl User {
    pub fn new(id: u64, username: &str, name: &str) -> Self {
        User { id, username: username.into(), name: name.into(), state: "active".into() }
    }

    /// The owner of the trigger tokens the fake makes by default.
    pub fn alice() -> Self {
        User::new(2, "alice", "Alice Liddell")
    }

    /// The user behind the default API tokens: not the owner of the trigger tokens, so their list shows them masked.
    pub fn bot() -> Self {
        User::new(7, "pipecron-bot", "pipecron bot")
    }

    /// The same user, blocked by an administrator.
    pub fn blocked(mut self) -> Self {
        self.state = "blocked".into();
        self
    }

    /// GitLab's `UserBasic`, as in a trigger's `owner` and a pipeline's `user`.
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "state": self.state,
            "locked": false,
            "avatar_url": format!("https://www.gravatar.com/avatar/{:032x}?s=80&d=identicon", self.id),
            "web_url": format!("https://gitlab.example.com/{}", self.username),
        })
    }
}

/// A project's role for a member; GitLab asks Reporter to read pipelines, Developer to cancel, Maintainer to list the
/// trigger tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Guest,
    Reporter,
    Developer,
    Maintainer,
    Owner,
}

/// A personal or project access token, as a member of the project that lists it. A token that no project lists is
/// unknown (401); one listed by another project only does not see this one (404).
#[derive(Clone, Debug)]
pub struct ApiToken {
    pub token: String,
    /// "api", "read_api", "read_repository", ...
    pub scopes: Vec<String>,
    pub user: User,
    pub role: Role,
    /// Expired from this day on (UTC), as GitLab's tokens are: 401 `Token has expired.`
    pub expires_at: Option<NaiveDate>,
    /// 401 `Token was revoked. ...`
    pub revoked: bool,
}

impl ApiToken {
    /// A token of `User::bot()`, a Maintainer, that neither expires nor is revoked.
    pub fn new(token: &str, scopes: &[&str]) -> Self {
        ApiToken {
            token: token.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            user: User::bot(),
            role: Role::Maintainer,
            expires_at: None,
            revoked: false,
        }
    }

    /// API_TOKEN, CANCEL_TOKEN, NO_SCOPE_TOKEN and DEVELOPER_TOKEN, which every `Project::new` accepts.
    pub fn defaults() -> Vec<ApiToken> {
        vec![
            ApiToken::new(API_TOKEN, &["read_api"]),
            ApiToken::new(CANCEL_TOKEN, &["api"]),
            ApiToken::new(NO_SCOPE_TOKEN, &["read_repository"]),
            ApiToken { role: Role::Developer, ..ApiToken::new(DEVELOPER_TOKEN, &["api"]) },
        ]
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A pipeline trigger token of a project, as `GET /projects/:id/triggers` shows it.
#[derive(Clone, Debug)]
pub struct TriggerInfo {
    /// 0: the fake gives it one when the project is added.
    pub id: u64,
    pub token: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the token last created a pipeline (GitLab derives it from the newest pipeline the trigger made, so a
    /// refused trigger request does not count); the fake sets it.
    pub last_used: Option<DateTime<Utc>>,
    /// None: the trigger endpoint answers 400 "not owned by any user"; a blocked owner: 400 "Insufficient permissions".
    pub owner: Option<User>,
    /// From then on the token is as good as revoked (GitLab revokes a trigger token by setting it to now): 404.
    pub expires_at: Option<DateTime<Utc>>,
}

impl TriggerInfo {
    /// A trigger made a month ago by `User::alice()`, never used, that does not expire.
    pub fn new(token: &str) -> Self {
        let made = Utc::now() - chrono::Duration::days(30);
        TriggerInfo {
            id: 0,
            token: token.into(),
            description: "pipecron".into(),
            created_at: made,
            updated_at: made,
            last_used: None,
            owner: Some(User::alice()),
            expires_at: None,
        }
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
    }

    /// GitLab shows the whole token only to the trigger's owner (who made it), and to everyone else the first 4
    /// characters after the `glptt-` prefix.
    fn json(&self, viewer: &User) -> Value {
        let token = if self.owner.as_ref().is_some_and(|owner| owner.id == viewer.id) {
            self.token.clone()
        } else {
            self.token.strip_prefix("glptt-").unwrap_or(&self.token).chars().take(4).collect()
        };
        json!({
            "id": self.id,
            "description": self.description,
            "created_at": gitlab_time(self.created_at),
            "updated_at": gitlab_time(self.updated_at),
            "last_used": self.last_used.map(gitlab_time),
            "token": token,
            "owner": self.owner.as_ref().map(User::json),
            "expires_at": self.expires_at.map(gitlab_time),
        })
    }
}

/// A project the fake knows.
#[derive(Clone)]
pub struct Project {
    pub id: u64,
    pub path: String,
    pub refs: Vec<String>,
    /// The trigger tokens it accepts. Each gets a `TriggerInfo` (owned by `User::alice()`) when the project is added,
    /// unless `triggers` has one for it; a token of `triggers` is accepted too.
    pub tokens: Vec<String>,
    /// The details of its trigger tokens.
    pub triggers: Vec<TriggerInfo>,
    /// The API tokens of its members.
    pub api_tokens: Vec<ApiToken>,
    /// Answer 422 with a configuration error.
    pub ci_error: bool,
    /// Answer like GitLab before 13: 201 with status "failed" and yaml_errors.
    pub legacy_yaml_errors: bool,
}

impl Project {
    /// A project with one branch, `main`, TOKEN, and the default API tokens (`ApiToken::defaults`).
    pub fn new(id: u64, path: &str) -> Self {
        Project {
            id,
            path: path.into(),
            refs: vec!["main".into()],
            tokens: vec![TOKEN.into()],
            triggers: Vec::new(),
            api_tokens: ApiToken::defaults(),
            ci_error: false,
            legacy_yaml_errors: false,
        }
    }

    fn is(&self, id: &str) -> bool {
        self.id.to_string() == id || self.path == id
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

/// One request to the pipelines API (not the trigger route) as the fake saw it.
#[derive(Clone, Debug)]
pub struct ApiRecorded {
    pub method: String,
    /// The path as sent, percent-encoding intact.
    pub raw_path: String,
    pub query: Option<String>,
    /// The `PRIVATE-TOKEN` header.
    pub private_token: Option<String>,
    /// A token in the URL (`private_token=` or `access_token=`): GitLab takes it, but URLs end up in logs, so tests
    /// assert this stays None.
    pub token_in_url: Option<String>,
    pub user_agent: Option<String>,
    /// When the request arrived, by this host's clock.
    pub at: DateTime<Utc>,
}

/// A pipeline the trigger route created.
struct Pipeline {
    id: u64,
    iid: u64,
    project_id: u64,
    project_path: String,
    git_ref: String,
    sha: String,
    /// The trigger's owner, whom GitLab runs the pipeline as.
    user: Option<User>,
    yaml_errors: Option<String>,
    /// Elapsed time is measured on the monotonic clock; the times shown are `created_at` plus an offset, so they agree
    /// with each other to the millisecond.
    created: Instant,
    created_at: DateTime<Utc>,
    /// Its statuses and when each begins, counted from its creation: the plan in force when it was created, cut short
    /// where a status was forced on it (`set_pipeline_status`, cancel).
    timeline: Vec<(String, Duration)>,
}

/// What a pipeline looks like at some moment.
struct Moment {
    status: String,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl Pipeline {
    fn at(&self, offset: Duration) -> DateTime<Utc> {
        self.created_at + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    fn now(&self) -> Moment {
        self.moment(self.created.elapsed())
    }

    /// The pipeline `elapsed` after its creation: the last status of the timeline begun by then (`created` before the
    /// first), running since the first `running`, finished when the status is final.
    fn moment(&self, elapsed: Duration) -> Moment {
        let reached: Vec<&(String, Duration)> = self.timeline.iter().filter(|(_, at)| *at <= elapsed).collect();
        let (status, since) =
            reached.last().map(|(s, at)| (s.clone(), *at)).unwrap_or(("created".into(), Duration::ZERO));
        let started = reached.iter().find(|(s, _)| s == "running").map(|(_, at)| self.at(*at));
        let finished = FINAL_STATUSES.contains(&status.as_str()).then(|| self.at(since));
        Moment { status, updated_at: self.at(since), started_at: started, finished_at: finished }
    }

    fn is_final(&self) -> bool {
        FINAL_STATUSES.contains(&self.now().status.as_str())
    }

    /// From now on the pipeline has `status`, whatever its plan said.
    fn force(&mut self, status: &str) {
        let now = self.created.elapsed();
        self.timeline.retain(|(_, at)| *at <= now);
        self.timeline.push((status.into(), now));
    }

    fn web_url(&self) -> String {
        format!("https://gitlab.example.com/{}/-/pipelines/{}", self.project_path, self.id)
    }

    /// GitLab's `PipelineBasic`, as the list shows each pipeline: no times but created and updated.
    fn basic_json(&self, moment: &Moment) -> Value {
        json!({
            "id": self.id,
            "iid": self.iid,
            "project_id": self.project_id,
            "sha": self.sha,
            "ref": self.git_ref,
            "status": moment.status,
            "source": "trigger",
            "created_at": gitlab_time(self.created_at),
            "updated_at": gitlab_time(moment.updated_at),
            "web_url": self.web_url(),
            "name": null,
        })
    }

    /// GitLab's `Pipeline`, as the trigger route, the single pipeline and cancel answer it; plus a field GitLab may add
    /// one day, which clients must ignore.
    fn json(&self, moment: &Moment) -> Value {
        // GitLab's duration counts the seconds spent running, whole; queued_duration the time before, as a float.
        let duration = match (moment.started_at, moment.finished_at) {
            (Some(started), Some(finished)) => json!((finished - started).num_seconds()),
            _ => Value::Null,
        };
        let queued = moment.started_at.map(|started| (started - self.created_at).num_milliseconds() as f64 / 1000.0);
        let label = match moment.status.as_str() {
            "success" => "passed",
            "waiting_for_resource" => "waiting",
            other => other,
        };
        let mut text: Vec<char> = label.chars().collect();
        if let Some(first) = text.first_mut() {
            first.make_ascii_uppercase();
        }
        let text: String = text.into_iter().collect();
        json!({
            "id": self.id,
            "iid": self.iid,
            "project_id": self.project_id,
            "sha": self.sha,
            "ref": self.git_ref,
            "status": moment.status,
            "source": "trigger",
            "created_at": gitlab_time(self.created_at),
            "updated_at": gitlab_time(moment.updated_at),
            "started_at": moment.started_at.map(gitlab_time),
            "finished_at": moment.finished_at.map(gitlab_time),
            "committed_at": null,
            "duration": duration,
            "queued_duration": queued,
            "coverage": null,
            "web_url": self.web_url(),
            "yaml_errors": self.yaml_errors,
            "user": self.user.as_ref().map(User::json),
            "detailed_status": {
                "icon": format!("status_{}", moment.status),
                "text": text,
                "label": label,
                "group": moment.status,
                "tooltip": label,
                "has_details": true,
                "details_path": format!("/{}/-/pipelines/{}", self.project_path, self.id),
            },
            "some_future_field": {"ignored": true},
        })
    }
}

#[derive(Default)]
struct Inner {
    projects: Vec<Project>,
    script: VecDeque<Scripted>,
    requests: Vec<Recorded>,
    next_pipeline: u64,
    next_trigger: u64,
    v3: bool,
    /// How long every answer takes.
    slow: std::time::Duration,
    /// The dates sent as `Retry-After` by `Scripted::TooManyRequestsUntil`.
    retry_after_dates: Vec<chrono::DateTime<chrono::Utc>>,
    /// Every pipeline created, by id.
    pipelines: Vec<Pipeline>,
    /// The plan of pipelines created from now on; None: `DEFAULT_PLAN`.
    plan: Option<Vec<(String, Duration)>>,
    api_script: VecDeque<Scripted>,
    api_requests: Vec<ApiRecorded>,
    /// API requests allowed per rolling second; None: no limit.
    api_rate_limit: Option<usize>,
    /// When the API requests of the last second arrived, refused ones included (GitLab's throttle counts them too).
    api_arrivals: VecDeque<Instant>,
    /// Users who left every project (`remove_member`).
    left: Vec<u64>,
}

#[derive(Clone, Default)]
pub struct FakeGitlab {
    inner: Arc<Mutex<Inner>>,
}

impl FakeGitlab {
    /// Project 9 (`group/sub/project`) with branches `master`, `main`, `feature/x` and tag `v1.0`, TOKEN (a trigger owned
    /// by `User::alice()`, no expiry), and the API tokens API_TOKEN, CANCEL_TOKEN, NO_SCOPE_TOKEN and DEVELOPER_TOKEN.
    pub fn new() -> Self {
        let fake = FakeGitlab::default();
        fake.add_project(Project {
            refs: ["master", "main", "feature/x", "v1.0"].map(String::from).to_vec(),
            ..Project::new(9, "group/sub/project")
        });
        fake.lock().next_pipeline = 1000;
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a project; its `tokens` and `triggers` are made to agree (see `Project::tokens`), and its triggers get ids.
    pub fn add_project(&self, mut project: Project) {
        let mut inner = self.lock();
        for token in &project.tokens {
            if !project.triggers.iter().any(|t| &t.token == token) {
                project.triggers.push(TriggerInfo::new(token));
            }
        }
        for trigger in &mut project.triggers {
            if trigger.id == 0 {
                inner.next_trigger += 1;
                trigger.id = inner.next_trigger;
            }
        }
        project.tokens = project.triggers.iter().map(|t| t.token.clone()).collect();
        inner.projects.push(project);
    }

    /// Serve legacy API v3 (GitLab before 11) instead of answering 410.
    pub fn with_v3(self) -> Self {
        self.lock().v3 = true;
        self
    }

    /// Makes every answer take `by` (a slow GitLab), the pipelines API's too.
    pub fn slow(&self, by: std::time::Duration) {
        self.lock().slow = by;
    }

    /// Forces the next answers of the trigger routes.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.lock().script.extend(answers);
    }

    /// The trigger requests (not the pipelines API's), in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The dates sent as `Retry-After` by `Scripted::TooManyRequestsUntil`, in order.
    pub fn retry_after_dates(&self) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.lock().retry_after_dates.clone()
    }

    /// The plan of the pipelines created from now on: each status and when it begins, counted from the pipeline's
    /// creation (a pipeline is `created` until the first). Pipelines created before keep theirs.
    pub fn pipeline_plan<S: Into<String>>(&self, plan: impl IntoIterator<Item = (S, Duration)>) {
        let mut plan: Vec<(String, Duration)> = plan.into_iter().map(|(s, at)| (s.into(), at)).collect();
        plan.sort_by_key(|(_, at)| *at);
        self.lock().plan = Some(plan);
    }

    /// Gives pipeline `id` `status` from now on, whatever its plan said (it then stays so).
    pub fn set_pipeline_status(&self, id: u64, status: &str) {
        let mut inner = self.lock();
        let pipeline = inner.pipelines.iter_mut().find(|p| p.id == id);
        pipeline.unwrap_or_else(|| panic!("the fake has no pipeline {id}")).force(status);
    }

    /// Pipeline `id` as `GET /projects/:id/pipelines/:pipeline_id` shows it now.
    pub fn pipeline(&self, id: u64) -> Option<Value> {
        self.lock().pipelines.iter().find(|p| p.id == id).map(|p| p.json(&p.now()))
    }

    /// Every pipeline created, oldest first, as `pipeline` shows it.
    pub fn pipelines(&self) -> Vec<Value> {
        self.lock().pipelines.iter().map(|p| p.json(&p.now())).collect()
    }

    /// Allows `per_second` requests to the pipelines API per rolling second (the trigger route is not limited); beyond,
    /// 429 as GitLab's throttle answers. Refused requests count too, as GitLab's do.
    pub fn api_rate_limit(&self, per_second: usize) {
        let mut inner = self.lock();
        inner.api_rate_limit = Some(per_second);
        inner.api_arrivals.clear();
    }

    pub fn lift_api_rate_limit(&self) {
        self.lock().api_rate_limit = None;
    }

    /// Forces the next answers of the pipelines API (not the trigger routes').
    pub fn script_api(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.lock().api_script.extend(answers);
    }

    /// The requests to the pipelines API, in order.
    pub fn api_requests(&self) -> Vec<ApiRecorded> {
        self.lock().api_requests.clone()
    }

    /// The trigger tokens of project `project_id`, as the fake holds them now (`last_used` included).
    pub fn triggers(&self, project_id: u64) -> Vec<TriggerInfo> {
        let inner = self.lock();
        inner.projects.iter().filter(|p| p.id == project_id).flat_map(|p| p.triggers.clone()).collect()
    }

    /// Gives project `project_id` one more trigger token (an id of 0 gets a fresh one).
    pub fn add_trigger(&self, project_id: u64, mut trigger: TriggerInfo) {
        let mut inner = self.lock();
        if trigger.id == 0 {
            inner.next_trigger += 1;
            trigger.id = inner.next_trigger;
        }
        let project = inner.projects.iter_mut().find(|p| p.id == project_id);
        let project = project.unwrap_or_else(|| panic!("the fake has no project {project_id}"));
        project.tokens.push(trigger.token.clone());
        project.triggers.push(trigger);
    }

    /// Changes every trigger whose token is `token` (a token in several projects is in each).
    pub fn edit_trigger(&self, token: &str, edit: impl Fn(&mut TriggerInfo)) {
        let mut inner = self.lock();
        let mut found = false;
        for trigger in inner.projects.iter_mut().flat_map(|p| p.triggers.iter_mut()).filter(|t| t.token == token) {
            edit(trigger);
            found = true;
        }
        assert!(found, "the fake has no trigger {token}");
    }

    /// None: the trigger endpoint answers 400 "not owned by any user"; `User::alice().blocked()`: 400 "Insufficient
    /// permissions to create a new pipeline".
    pub fn set_trigger_owner(&self, token: &str, owner: Option<User>) {
        self.edit_trigger(token, |t| t.owner = owner.clone());
    }

    /// A time in the past: the trigger endpoint answers 404, as for a revoked token.
    /// The user leaves every project (a trigger they own stays theirs, and GitLab refuses it).
    pub fn remove_member(&self, user_id: u64) {
        self.lock().left.push(user_id);
    }

    pub fn set_trigger_expiry(&self, token: &str, expires_at: Option<DateTime<Utc>>) {
        self.edit_trigger(token, |t| t.expires_at = expires_at);
    }

    /// Changes the API token `token` in every project that lists it (to revoke it, expire it, block its user, ...).
    pub fn edit_api_token(&self, token: &str, edit: impl Fn(&mut ApiToken)) {
        let mut inner = self.lock();
        let mut found = false;
        for api_token in inner.projects.iter_mut().flat_map(|p| p.api_tokens.iter_mut()).filter(|t| t.token == token) {
            edit(api_token);
            found = true;
        }
        assert!(found, "the fake has no API token {token}");
    }

    /// GitLab's trigger and pipelines routes, for a server of the test's own making (TLS).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v4/projects/{id}/trigger/pipeline", post(v4))
            .route("/api/v4/projects/{id}/ref/{git_ref}/trigger/pipeline", post(v4_webhook))
            .route("/api/v3/projects/{id}/trigger/builds", post(v3))
            .route("/api/v4/projects/{id}/pipelines", get(list_pipelines))
            .route("/api/v4/projects/{id}/pipelines/{pipeline_id}", get(show_pipeline))
            .route("/api/v4/projects/{id}/pipelines/{pipeline_id}/cancel", post(cancel_pipeline))
            .route("/api/v4/projects/{id}/triggers", get(list_triggers))
            .route("/api/v4/projects/{id}/members/all/{user_id}", get(show_member))
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

/// GitLab's way of writing a time: UTC, milliseconds, `Z`.
fn gitlab_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
        if let Some(response) = self.scripted(scripted).await {
            return response;
        }
        self.answer(id, path_ref, &recorded.params, &headers, v3)
    }

    /// The answer `scripted` forces, if any; a `Delay` waits, then lets the request be answered normally.
    async fn scripted(&self, scripted: Option<Scripted>) -> Option<Response> {
        match scripted? {
            Scripted::Status(status, body) => {
                Some((StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body).into_response())
            }
            Scripted::TooManyRequests { retry_after } => Some(
                (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", retry_after.to_string())], "Retry later\n")
                    .into_response(),
            ),
            Scripted::Redirect(status, location) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
                Some((status, [("Location", location)], "").into_response())
            }
            Scripted::RateLimited => Some(error(
                StatusCode::BAD_REQUEST,
                base("Too many pipelines created in the last minute. Try again later."),
            )),
            Scripted::Delay(delay) => {
                tokio::time::sleep(delay).await;
                None
            }
            Scripted::TooManyRequestsUntil(after) => {
                let now = chrono::Utc::now();
                let exact = now + chrono::Duration::from_std(after).unwrap_or_default();
                let date = exact - chrono::Duration::nanoseconds(i64::from(exact.timestamp_subsec_nanos()));
                self.lock().retry_after_dates.push(date);
                let header = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                Some((StatusCode::TOO_MANY_REQUESTS, [("Retry-After", header)], "Retry later\n").into_response())
            }
        }
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
        let found = inner.projects.iter().enumerate().find_map(|(at, p)| {
            let trigger = p.triggers.iter().find(|t| t.token == token).filter(|_| p.is(id))?;
            Some((at, p.clone(), trigger.clone()))
        });
        // GitLab no longer finds an expired trigger token: it revokes one by making it expire now.
        let Some((at, project, trigger)) = found.filter(|(_, _, trigger)| !trigger.expired()) else {
            return error(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"}));
        };
        // GitLab runs the pipeline as the trigger's owner, and checks that user before the ref
        // (Chain::Validate::Abilities comes before Chain::Validate::Repository): a trigger without an owner is a legacy
        // one it refuses; a blocked owner may no longer create pipelines.
        match &trigger.owner {
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    base("Trigger token is invalid because is not owned by any user"),
                );
            }
            Some(owner) if owner.state != "active" => {
                return error(StatusCode::BAD_REQUEST, base("Insufficient permissions to create a new pipeline"));
            }
            Some(_) => {}
        }
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
        let failed = project.legacy_yaml_errors;
        let created_at = Utc::now();
        let pipeline = Pipeline {
            id: inner.next_pipeline,
            iid: inner.pipelines.iter().filter(|p| p.project_id == project.id).count() as u64 + 1,
            project_id: project.id,
            project_path: project.path.clone(),
            git_ref,
            sha: "a91957a858320c0e17f3a0eca7cfacbff50ea29a".into(),
            user: trigger.owner.clone(),
            yaml_errors: failed.then(|| "jobs:build script can't be blank".into()),
            created: Instant::now(),
            created_at,
            // GitLab before 13 made the pipeline and failed it at once.
            timeline: if failed {
                vec![("failed".into(), Duration::ZERO)]
            } else {
                inner.plan.clone().unwrap_or_else(|| DEFAULT_PLAN.map(|(s, at)| (String::from(s), at)).to_vec())
            },
        };
        // The answer shows the pipeline as it was made, before GitLab processed it: "created" (API v3: "pending").
        let status = if failed {
            "failed"
        } else if v3 {
            "pending"
        } else {
            "created"
        };
        let made = Moment {
            status: status.into(),
            updated_at: created_at,
            started_at: None,
            finished_at: failed.then_some(created_at),
        };
        let body = pipeline.json(&made);
        inner.pipelines.push(pipeline);
        if let Some(used) = inner.projects[at].triggers.iter_mut().find(|t| t.token == token) {
            used.last_used = Some(created_at);
        }
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

// ---- The pipelines API ----

async fn show_pipeline(
    State(fake): State<FakeGitlab>,
    Path((id, pipeline_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    fake.api(request, |fake, call| fake.show(&id, &pipeline_id, call)).await
}

async fn cancel_pipeline(
    State(fake): State<FakeGitlab>,
    Path((id, pipeline_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    fake.api(request, |fake, call| fake.cancel(&id, &pipeline_id, call)).await
}

async fn list_pipelines(State(fake): State<FakeGitlab>, Path(id): Path<String>, request: Request) -> Response {
    fake.api(request, |fake, call| fake.list(&id, call)).await
}

async fn list_triggers(State(fake): State<FakeGitlab>, Path(id): Path<String>, request: Request) -> Response {
    fake.api(request, |fake, call| fake.list_triggers(&id, call)).await
}

async fn show_member(
    State(fake): State<FakeGitlab>,
    Path((id, user_id)): Path<(String, u64)>,
    request: Request,
) -> Response {
    fake.api(request, |fake, call| fake.show_member(&id, user_id, call)).await
}

/// What a pipelines API request asks, once read.
struct Call {
    params: BTreeMap<String, String>,
    /// The API token it authenticates with, if any.
    token: Option<String>,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// What a request needs: each route asks its scope (reading takes `read_api` or `api`; cancelling `api`) and its role.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    ReadPipelines,
    Cancel,
    ListTriggers,
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, json!({"message": "401 Unauthorized"}))
}

/// A token GitLab knows but no longer takes: expired or revoked.
fn invalid_token(description: &str) -> Response {
    let header =
        format!(r#"Bearer realm="Protected by OAuth 2.0", error="invalid_token", error_description="{description}""#);
    (
        StatusCode::UNAUTHORIZED,
        [("WWW-Authenticate", header)],
        axum::Json(json!({"error": "invalid_token", "error_description": description})),
    )
        .into_response()
}

fn insufficient_scope() -> Response {
    let description = "The request requires higher privileges than provided by the access token.";
    let header = format!(
        r#"Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", error_description="{description}", scope="api read_api""#
    );
    let body = json!({"error": "insufficient_scope", "error_description": description, "scope": "api read_api"});
    (StatusCode::FORBIDDEN, [("WWW-Authenticate", header)], axum::Json(body)).into_response()
}

fn project_not_found() -> Response {
    error(StatusCode::NOT_FOUND, json!({"message": "404 Project Not Found"}))
}

fn forbidden() -> Response {
    error(StatusCode::FORBIDDEN, json!({"message": "403 Forbidden"}))
}

fn invalid(param: &str) -> Response {
    error(StatusCode::BAD_REQUEST, json!({"error": format!("{param} is invalid")}))
}

/// A refusal, boxed: a `Response` is too big to travel in a `Result` as is.
type Refused = Box<Response>;

/// GitLab's checks, in its order: who the token is (401), its scope (403 insufficient_scope), whether it sees the
/// project (404), its role there (403). Returns the project and the caller's membership.
fn authorize(inner: &Inner, id: &str, token: Option<&str>, need: Need) -> Result<(Project, ApiToken), Refused> {
    let Some(token) = token else {
        // Without a token the caller is anonymous. GitLab's pipeline GETs then see public projects only (the fake's
        // are private, so they do not exist for it); a POST, and the triggers API, want a user first.
        return Err(Box::new(if need == Need::ReadPipelines { project_not_found() } else { unauthorized() }));
    };
    let project = inner.projects.iter().find(|p| p.is(id));
    let member = project.and_then(|p| p.api_tokens.iter().find(|t| t.token == token));
    let known = member.or_else(|| inner.projects.iter().flat_map(|p| &p.api_tokens).find(|t| t.token == token));
    let Some(known) = known else { return Err(Box::new(unauthorized())) };
    if known.revoked {
        return Err(Box::new(invalid_token("Token was revoked. You have to re-authorize from the user.")));
    }
    if known.expires_at.is_some_and(|day| day <= Utc::now().date_naive()) {
        return Err(Box::new(invalid_token("Token has expired.")));
    }
    if known.user.state != "active" {
        return Err(Box::new(unauthorized()));
    }
    let scoped = match need {
        Need::Cancel => known.has_scope("api"),
        Need::ReadPipelines | Need::ListTriggers => known.has_scope("api") || known.has_scope("read_api"),
    };
    if !scoped {
        return Err(Box::new(insufficient_scope()));
    }
    let (Some(project), Some(member)) = (project, member) else { return Err(Box::new(project_not_found())) };
    let role = match need {
        Need::ReadPipelines => Role::Reporter,
        Need::Cancel => Role::Developer,
        Need::ListTriggers => Role::Maintainer,
    };
    if member.role < role {
        return Err(Box::new(forbidden()));
    }
    Ok((project.clone(), member.clone()))
}

/// A page of a list, as GitLab's offset pagination asks: `page` from 1, `per_page` 20 by default and at most 100.
struct Page {
    page: usize,
    per_page: usize,
}

fn page_of(call: &Call) -> Result<Page, Refused> {
    let number = |name: &str, default: usize| match call.param(name) {
        None => Ok(default),
        Some(text) => text.parse::<i64>().map(|n| usize::try_from(n).unwrap_or(0)).map_err(|_| Box::new(invalid(name))),
    };
    let page = number("page", 1)?.max(1);
    let per_page = match number("per_page", 20)? {
        0 => 20,
        n => n.min(100),
    };
    Ok(Page { page, per_page })
}

/// One page of `items`, with GitLab's pagination headers (`X-Next-Page` is empty on the last page).
fn paged(items: Vec<Value>, page: Page) -> Response {
    let total = items.len();
    let total_pages = total.div_ceil(page.per_page);
    let next = if page.page < total_pages { (page.page + 1).to_string() } else { String::new() };
    let prev = if page.page > 1 { (page.page - 1).to_string() } else { String::new() };
    let body: Vec<Value> = items.into_iter().skip((page.page - 1) * page.per_page).take(page.per_page).collect();
    let headers = [
        ("X-Page", page.page.to_string()),
        ("X-Per-Page", page.per_page.to_string()),
        ("X-Next-Page", next),
        ("X-Prev-Page", prev),
        ("X-Total", total.to_string()),
        ("X-Total-Pages", total_pages.to_string()),
    ];
    (StatusCode::OK, headers, axum::Json(Value::Array(body))).into_response()
}

impl FakeGitlab {
    /// Records an API request, then answers as scripted, throttled, or by `answer`.
    async fn api(&self, request: Request, answer: impl FnOnce(&FakeGitlab, &Call) -> Response) -> Response {
        // Only the head is kept: the body (which the pipelines API does not read) may not be held across an await.
        let (head, _) = request.into_parts();
        let uri = head.uri.clone();
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
        let params: BTreeMap<String, String> =
            uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let private_token = header("private-token");
        let token_in_url = params.get("private_token").or_else(|| params.get("access_token")).cloned();
        let recorded = ApiRecorded {
            method: head.method.to_string(),
            raw_path: uri.path().to_string(),
            query: uri.query().map(String::from),
            private_token: private_token.clone(),
            token_in_url: token_in_url.clone(),
            user_agent: header("user-agent"),
            at: Utc::now(),
        };
        // GitLab reads the `private_token` parameter before the header. Only these two count here: pipecron sends the
        // header, as the sheet says.
        let token = params.get("private_token").cloned().filter(|t| !t.is_empty()).or(private_token);
        let call = Call { params, token: token.filter(|t| !t.is_empty()) };
        let (scripted, slow, throttled) = {
            let mut inner = self.lock();
            inner.api_requests.push(recorded);
            let throttled = inner.throttle();
            (inner.api_script.pop_front(), inner.slow, throttled)
        };
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        if let Some(response) = self.scripted(scripted).await {
            return response;
        }
        if let Some(response) = throttled {
            return response;
        }
        answer(self, &call)
    }

    fn show(&self, id: &str, pipeline_id: &str, call: &Call) -> Response {
        let Ok(pipeline_id) = pipeline_id.parse::<u64>() else { return invalid("pipeline_id") };
        let inner = self.lock();
        let (project, _) = match authorize(&inner, id, call.token.as_deref(), Need::ReadPipelines) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        // A pipeline of another project is not found either: GitLab looks it up among the project's own.
        match inner.pipelines.iter().find(|p| p.id == pipeline_id && p.project_id == project.id) {
            Some(pipeline) => (StatusCode::OK, axum::Json(pipeline.json(&pipeline.now()))).into_response(),
            None => error(StatusCode::NOT_FOUND, json!({"message": "404 Not found"})),
        }
    }

    /// A pipeline not final yet becomes `canceled` for good; a final one is left as it is. 200 both ways: GitLab
    /// answers the pipeline as it is after the attempt, and says nothing of a cancel that did nothing.
    fn cancel(&self, id: &str, pipeline_id: &str, call: &Call) -> Response {
        let mut inner = self.lock();
        // A POST asks for a user before its parameters are checked.
        if call.token.is_none() {
            return unauthorized();
        }
        let Ok(pipeline_id) = pipeline_id.parse::<u64>() else { return invalid("pipeline_id") };
        let (project, _) = match authorize(&inner, id, call.token.as_deref(), Need::Cancel) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let Some(pipeline) = inner.pipelines.iter_mut().find(|p| p.id == pipeline_id && p.project_id == project.id)
        else {
            return error(StatusCode::NOT_FOUND, json!({"message": "404 Not found"}));
        };
        if !pipeline.is_final() {
            pipeline.force("canceled");
        }
        (StatusCode::OK, axum::Json(pipeline.json(&pipeline.now()))).into_response()
    }

    /// `GET /projects/:id/pipelines`: filters `ref`, `sha`, `status`, `scope` (running, pending, finished; branches and
    /// tags filter nothing, the fake not knowing which refs are tags), `source`, `username`; `order_by` and `sort`
    /// (id, newest first, by default); paged.
    fn list(&self, id: &str, call: &Call) -> Response {
        let page = match page_of(call) {
            Ok(page) => page,
            Err(response) => return *response,
        };
        let checked = [
            ("scope", SCOPES),
            ("status", AVAILABLE_STATUSES),
            ("source", SOURCES),
            ("order_by", ORDER_BY),
            ("sort", SORTS),
        ];
        for (name, allowed) in checked {
            if let Some(value) = call.param(name)
                && !allowed.contains(&value)
            {
                return error(StatusCode::BAD_REQUEST, json!({"error": format!("{name} does not have a valid value")}));
            }
        }
        let inner = self.lock();
        let (project, _) = match authorize(&inner, id, call.token.as_deref(), Need::ReadPipelines) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let wanted = |pipeline: &Pipeline, moment: &Moment| {
            let status = moment.status.as_str();
            call.param("ref").is_none_or(|r| r == pipeline.git_ref)
                && call.param("sha").is_none_or(|sha| sha == pipeline.sha)
                && call.param("status").is_none_or(|s| s == status)
                && call.param("source").is_none_or(|source| source == "trigger")
                && call.param("username").is_none_or(|name| pipeline.user.as_ref().is_some_and(|u| u.username == name))
                && match call.param("scope") {
                    Some("running") => status == "running",
                    Some("pending") => status == "pending",
                    Some("finished") => FINAL_STATUSES.contains(&status),
                    _ => true,
                }
        };
        let mut rows: Vec<(&Pipeline, Moment)> = inner
            .pipelines
            .iter()
            .filter(|p| p.project_id == project.id)
            .map(|p| (p, p.now()))
            .filter(|(p, moment)| wanted(p, moment))
            .collect();
        let order_by = call.param("order_by").unwrap_or("id");
        rows.sort_by(|(a, at_a), (b, at_b)| {
            let by = match order_by {
                "status" => at_a.status.cmp(&at_b.status),
                "ref" => a.git_ref.cmp(&b.git_ref),
                "updated_at" => at_a.updated_at.cmp(&at_b.updated_at),
                "user_id" => a.user.as_ref().map(|u| u.id).cmp(&b.user.as_ref().map(|u| u.id)),
                _ => std::cmp::Ordering::Equal,
            };
            by.then(a.id.cmp(&b.id))
        });
        if call.param("sort") != Some("asc") {
            rows.reverse();
        }
        paged(rows.iter().map(|(p, moment)| p.basic_json(moment)).collect(), page)
    }

    /// `GET /projects/:id/triggers`: a Maintainer's, paged like every GitLab list.
    fn list_triggers(&self, id: &str, call: &Call) -> Response {
        let page = match page_of(call) {
            Ok(page) => page,
            Err(response) => return *response,
        };
        let inner = self.lock();
        let (project, member) = match authorize(&inner, id, call.token.as_deref(), Need::ListTriggers) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        paged(project.triggers.iter().map(|t| t.json(&member.user)).collect(), page)
    }

    /// `GET /projects/:id/members/all/:user_id`: the project's members are the owners of its triggers and the users
    /// of its API tokens, but for those who left; anyone else is 404.
    fn show_member(&self, id: &str, user_id: u64, call: &Call) -> Response {
        let inner = self.lock();
        let (project, _) = match authorize(&inner, id, call.token.as_deref(), Need::ReadPipelines) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let users = project
            .triggers
            .iter()
            .filter_map(|t| t.owner.clone())
            .chain(project.api_tokens.iter().map(|t| t.user.clone()));
        match users.filter(|u| !inner.left.contains(&u.id)).find(|u| u.id == user_id) {
            Some(user) => {
                let mut json = user.json();
                json["access_level"] = json!(40);
                (StatusCode::OK, axum::Json(json)).into_response()
            }
            None => error(StatusCode::NOT_FOUND, json!({"message": "404 Not found"})),
        }
    }
}

impl Inner {
    /// Counts an API request in the rolling second; beyond the limit, GitLab's throttle answer (Rack::Attack's): 429,
    /// text/plain "Retry later", `Retry-After` and the `RateLimit-*` headers.
    fn throttle(&mut self) -> Option<Response> {
        let limit = self.api_rate_limit?;
        let now = Instant::now();
        let second = Duration::from_secs(1);
        while self.api_arrivals.front().is_some_and(|at| now.duration_since(*at) >= second) {
            self.api_arrivals.pop_front();
        }
        self.api_arrivals.push_back(now);
        let observed = self.api_arrivals.len();
        if observed <= limit {
            return None;
        }
        // The window frees a place when its oldest request is a second old.
        let oldest = *self.api_arrivals.front().expect("holds this request");
        let reset = Utc::now() + chrono::Duration::from_std(second - now.duration_since(oldest)).unwrap_or_default();
        let reset_epoch = reset.timestamp() + i64::from(reset.timestamp_subsec_nanos() > 0);
        let headers = [
            ("Retry-After", "1".to_string()),
            ("RateLimit-Name", "throttle_authenticated_api".to_string()),
            ("RateLimit-Limit", limit.to_string()),
            ("RateLimit-Observed", observed.to_string()),
            ("RateLimit-Remaining", "0".to_string()),
            ("RateLimit-Reset", reset_epoch.to_string()),
            ("RateLimit-ResetTime", reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
            ("Content-Type", "text/plain".to_string()),
        ];
        Some((StatusCode::TOO_MANY_REQUESTS, headers, "Retry later\n").into_response())
    }
}
