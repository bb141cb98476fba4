//! GitLab's pipelines API, as the follower asks it: one pipeline's status, with the schedule's `api_token` sent as
//! the `PRIVATE-TOKEN` header to the schedule's own `gitlab`, and never anywhere else.
//!
//! Requests go through the trigger's HTTP client (proxies from the environment, `ca_file`, no redirects, the
//! User-Agent) and, per GitLab host, through a budget of requests a second, so that ten thousand followed pipelines
//! never flood a GitLab: past the budget, looks wait their turn.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use url::Url;

use crate::schedule::Schedule;
use crate::trigger::GitlabClient;
use crate::trigger::client::{read_body, root_cause};

/// What GitLab said of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Pipeline(State),
    /// 401 or 403: the token is unknown, expired, revoked, or lacks the scope; asking again will not help.
    Refused(String),
    /// 404: the pipeline or its project does not exist, or the token cannot see it.
    Gone(String),
    /// No usable answer this time (a rate limit, a server error, a network error): ask again later, after `wait`
    /// if GitLab said how long.
    Later {
        why: String,
        wait: Option<Duration>,
    },
}

/// A pipeline as GitLab describes it; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct State {
    pub status: String,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds; GitLab sends an integer, older versions a float.
    #[serde(default)]
    pub duration: Option<f64>,
}

/// Asks GitLab about one pipeline of a schedule's project, and cancels one.
pub trait PipelineApi: Send + Sync + 'static {
    fn pipeline(&self, schedule: &Schedule, id: u64) -> impl Future<Output = Answer> + Send;

    /// Cancels a pipeline (`overlap: cancel_previous`); why not, if it was not.
    fn cancel(&self, schedule: &Schedule, id: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// The longest answer read: a pipeline's JSON is about 1 KB.
const READ_LIMIT: usize = 64 * 1024;

/// The API over HTTP.
pub struct GitlabApi {
    client: std::sync::Arc<GitlabClient>,
    budget: DefaultKeyedRateLimiter<String>,
}

impl GitlabApi {
    /// `per_second` requests a second at most to each GitLab host.
    pub fn new(client: std::sync::Arc<GitlabClient>, per_second: NonZeroU32) -> GitlabApi {
        GitlabApi { client, budget: RateLimiter::keyed(Quota::per_second(per_second)) }
    }

    /// Waits until the host's budget has room for one more request.
    async fn wait_turn(&self, host: &str) {
        let host = host.to_string();
        while let Err(not_until) = self.budget.check_key(&host) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// `{gitlab}/api/v4/projects/{project}/pipelines/{id}`, the project path percent-encoded as one segment.
pub fn pipeline_url(schedule: &Schedule, id: u64) -> Url {
    project_url(schedule, &["pipelines", &id.to_string()])
}

/// `{gitlab}/api/v4/projects/{project}/…`, the project path percent-encoded as one segment.
fn project_url(schedule: &Schedule, tail: &[&str]) -> Url {
    let mut url = (*schedule.gitlab).clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        let project = schedule.project.to_string();
        segments.pop_if_empty().extend(["api", "v4", "projects", &project]).extend(tail);
    }
    url
}

impl GitlabApi {
    /// Sends `method` to `url` with the schedule's `api_token`, within its budget and `timeout`.
    async fn send(&self, schedule: &Schedule, method: reqwest::Method, url: Url) -> Result<reqwest::Response, String> {
        let Some(token) = schedule.api_token.as_ref().and_then(|t| t.secret.as_ref()) else {
            return Err(format!("schedule {} has no api_token", schedule.name));
        };
        self.wait_turn(url.host_str().unwrap_or_default()).await;
        let client =
            self.client.client_for(schedule.ca_file.as_deref(), schedule.timeout).map_err(|e| e.to_string())?;
        let sent = client.request(method, url).timeout(schedule.timeout).header("PRIVATE-TOKEN", token.expose());
        sent.send().await.map_err(|error| format!("cannot reach {}: {}", host(schedule), root_cause(&error)))
    }
}

impl GitlabApi {
    /// One page of the project's trigger tokens, and whether there are more.
    pub(super) async fn triggers_page(
        &self,
        schedule: &Schedule,
        page: u32,
    ) -> Result<(Vec<super::tokens::TriggerInfo>, bool), String> {
        let mut url = project_url(schedule, &["triggers"]);
        url.query_pairs_mut().append_pair("per_page", "100").append_pair("page", &page.to_string());
        let mut response = self.send(schedule, reqwest::Method::GET, url).await?;
        let next = response.headers().get("x-next-page").and_then(|v| v.to_str().ok()).map(str::trim);
        let more = next.is_some_and(|n| !n.is_empty());
        match response.status().as_u16() {
            200 => {}
            401 => return Err(format!("GitLab refused schedule {}'s api_token (401)", schedule.name)),
            403 => {
                return Err(format!(
                    "schedule {}'s api_token may not list the project's trigger tokens (403): that needs the \
                     Maintainer role",
                    schedule.name
                ));
            }
            status => return Err(format!("GitLab answered {status} for the trigger tokens")),
        }
        let (body, cut) = read_body(&mut response, TRIGGERS_LIMIT, schedule.timeout).await;
        if cut.is_some() {
            return Err("GitLab's list of trigger tokens was cut short".into());
        }
        let triggers = serde_json::from_slice(&body).map_err(|e| format!("GitLab's list of triggers: {e}"))?;
        Ok((triggers, more))
    }

    /// Whether the user is still a member of the schedule's project (directly or through a group); `None` if
    /// GitLab did not say.
    pub(super) async fn is_member(&self, schedule: &Schedule, user: u64) -> Option<bool> {
        let url = project_url(schedule, &["members", "all", &user.to_string()]);
        match self.send(schedule, reqwest::Method::GET, url).await.ok()?.status().as_u16() {
            200 => Some(true),
            404 => Some(false),
            _ => None,
        }
    }
}

/// The longest page of trigger tokens read: 100 of them are about 60 KB.
const TRIGGERS_LIMIT: usize = 1024 * 1024;

impl PipelineApi for GitlabApi {
    async fn cancel(&self, schedule: &Schedule, id: u64) -> Result<(), String> {
        let mut url = pipeline_url(schedule, id);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("cancel");
        }
        let response = self.send(schedule, reqwest::Method::POST, url).await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(format!("GitLab refused schedule {}'s api_token (401)", schedule.name)),
            403 => Err(format!(
                "schedule {}'s api_token may not cancel pipelines (403): overlap: cancel_previous needs a token \
                 with the api scope, and at least the Developer role",
                schedule.name
            )),
            404 => Err(format!("GitLab answers 404 for pipeline {id}: it is gone, or the token cannot see it")),
            status => Err(format!("GitLab answered {status}")),
        }
    }

    async fn pipeline(&self, schedule: &Schedule, id: u64) -> Answer {
        let sent = self.send(schedule, reqwest::Method::GET, pipeline_url(schedule, id)).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(why) => return Answer::Later { why, wait: None },
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
        let wait = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let (body, cut) = read_body(&mut response, READ_LIMIT, schedule.timeout).await;
        classify(schedule, id, status, wait, cut.is_some(), &body)
    }
}

fn host(schedule: &Schedule) -> &str {
    schedule.gitlab.host_str().unwrap_or("GitLab")
}

/// What an answer means. Nothing of the body is quoted: it is GitLab's (or a proxy's) and needs no repeating.
pub fn classify(schedule: &Schedule, id: u64, status: u16, wait: Option<Duration>, cut: bool, body: &[u8]) -> Answer {
    let name = &schedule.name;
    let project = &schedule.project;
    match status {
        200 if !cut => match serde_json::from_slice::<State>(body) {
            Ok(state) => Answer::Pipeline(state),
            Err(error) => Answer::Later { why: format!("GitLab's answer is not a pipeline: {error}"), wait: None },
        },
        401 => Answer::Refused(format!(
            "GitLab refused schedule {name}'s api_token (401): it is unknown, expired or revoked; give it a token \
             with the read_api scope"
        )),
        403 => Answer::Refused(format!(
            "schedule {name}'s api_token may not read pipelines of project {project} (403): it needs the read_api \
             scope, and at least the Reporter role in the project"
        )),
        404 => Answer::Gone(format!(
            "GitLab answers 404 for pipeline {id} of project {project}: it was deleted, or schedule {name}'s \
             api_token cannot see the project"
        )),
        429 => {
            Answer::Later { why: "GitLab's API rate limit (429)".into(), wait: wait.or(Some(Duration::from_secs(60))) }
        }
        _ => Answer::Later { why: format!("GitLab answered {status}"), wait: None },
    }
}
