//! What one trigger attempt came to, classified as GitLab's answers mean it (../shared/gitlab-trigger-api.md):
//! a pipeline, a transient failure worth retrying, or a permanent one with the message a user needs.

use std::time::Duration;

use serde::Deserialize;

use super::{Pipeline, TriggerRequest};
use crate::schedule::Api;

/// One attempt's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Created(Pipeline),
    /// Worth retrying, after at least `wait` if GitLab said so. `maybe_sent`: the request may have reached GitLab
    /// (a timeout after sending), so a pipeline may exist.
    Transient {
        http_status: Option<u16>,
        message: String,
        wait: Option<Duration>,
        maybe_sent: bool,
    },
    /// Retrying would not help. A 201 whose pipeline failed at once carries it in `pipeline`.
    Permanent {
        http_status: Option<u16>,
        message: String,
        pipeline: Option<Pipeline>,
    },
}

const NOT_FOUND: &str = "GitLab answered 404: the project does not exist, or the trigger token is wrong, revoked or \
                         belongs to another project (a personal access token does not work here)";
const RATE_LIMITED: &str = "Too many pipelines created in the last minute";

/// The parts of GitLab's answer that `classify` reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub location: Option<&'a str>,
    pub body: &'a str,
}

/// Classifies GitLab's answer to `request`.
pub fn classify(request: &TriggerRequest, answer: Answer) -> Attempt {
    let Answer { status, retry_after, location, body } = answer;
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = json.as_ref().map(gitlab_message).unwrap_or_else(|| snippet(body));
    let transient =
        |message: String, wait| Attempt::Transient { http_status: Some(status), message, wait, maybe_sent: true };
    let permanent = |message: String| Attempt::Permanent { http_status: Some(status), message, pipeline: None };
    match status {
        201 => created(json),
        300..=399 => permanent(redirected(status, location)),
        408 | 500 | 502 | 503 | 504 => transient(format!("GitLab answered {status}: {message}"), None),
        429 => transient(
            format!("GitLab answered 429, too many requests: {message}"),
            Some(retry_after.and_then(parse_retry_after).unwrap_or(Duration::from_secs(1))),
        ),
        400 if message.contains(RATE_LIMITED) => {
            transient(format!("GitLab's pipeline rate limit: {message}"), Some(Duration::from_secs(60)))
        }
        400 if message.contains("Reference not found") => {
            permanent(format!("ref '{}' is not a branch or tag of project {}", request.git_ref, request.project))
        }
        400 => permanent(format!("GitLab refused the trigger: {message}")),
        401 => permanent(format!("GitLab answered 401, unauthorized: {message}")),
        403 => permanent(format!("GitLab answered 403, forbidden: {message}")),
        404 => permanent(NOT_FOUND.to_string()),
        410 if request.api == Api::V3 => permanent("this GitLab no longer serves API v3: set `api: v4`".into()),
        422 => permanent(format!("GitLab refused the pipeline configuration: {message}")),
        _ => permanent(format!("GitLab answered {status}: {message}")),
    }
}

fn created(json: Option<serde_json::Value>) -> Attempt {
    let Some(pipeline) = json.as_ref().and_then(|j| Pipeline::deserialize(j).ok()) else {
        return Attempt::Permanent {
            http_status: Some(201),
            message: "GitLab answered 201 but not with a pipeline; is `gitlab` really a GitLab?".into(),
            pipeline: None,
        };
    };
    let yaml_errors = json.as_ref().and_then(|j| j.get("yaml_errors")).filter(|e| !e.is_null());
    match yaml_errors {
        Some(errors) if pipeline.status == "failed" => Attempt::Permanent {
            http_status: Some(201),
            message: format!("GitLab created pipeline {} but it failed at once: {}", pipeline.id, text_of(errors)),
            pipeline: Some(pipeline),
        },
        _ => Attempt::Created(pipeline),
    }
}

/// pipecron does not follow redirects: a 301 or 302 would turn the POST into a GET and drop the token, and a 307
/// or 308 would send the token wherever the redirect points.
fn redirected(status: u16, location: Option<&str>) -> String {
    let target = location.map(|l| format!(" to {l}")).unwrap_or_default();
    format!(
        "GitLab answered {status}, a redirect{target}; pipecron does not follow redirects, as they would drop the \
         token or send it elsewhere: set `gitlab` to the address GitLab is served at"
    )
}

/// GitLab's message, from `{"message": …}` (a string, or `{"base": [...]}`) or `{"error": …}`.
fn gitlab_message(json: &serde_json::Value) -> String {
    let message = json.get("message").or_else(|| json.get("error"));
    match message {
        Some(serde_json::Value::Object(fields)) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(key, value)| match key.as_str() {
                    "base" => text_of(value),
                    _ => format!("{key}: {}", text_of(value)),
                })
                .collect();
            parts.join("; ")
        }
        Some(other) => text_of(other),
        None => snippet(&json.to_string()),
    }
}

fn text_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// The start of a body that is not JSON (often a proxy's HTML page), on one line.
fn snippet(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.chars().count() {
        0 => "(empty body)".into(),
        n if n > 200 => format!("{}…", flat.chars().take(200).collect::<String>()),
        _ => flat,
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (date.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TriggerRequest {
        crate::trigger::request::sample()
    }

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer { status, body, ..Answer::default() }
    }

    fn wait_of(attempt: Attempt) -> Option<Duration> {
        match attempt {
            Attempt::Transient { wait, .. } => wait,
            other => panic!("not transient: {other:?}"),
        }
    }

    #[test]
    fn gitlab_says_how_long_to_wait() {
        let limit = r#"{"message":{"base":["Too many pipelines created in the last minute. Try again later."]}}"#;
        assert_eq!(wait_of(classify(&request(), answer(400, limit))), Some(Duration::from_secs(60)));
        assert_eq!(
            wait_of(classify(&request(), Answer { retry_after: Some("30"), ..answer(429, "Retry later") })),
            Some(Duration::from_secs(30))
        );
        let in_a_while = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = wait_of(classify(&request(), Answer { retry_after: Some(&in_a_while), ..answer(429, "") }))
            .expect("a wait");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
        assert_eq!(wait_of(classify(&request(), answer(503, ""))), None);
    }

    #[test]
    fn a_201_that_is_not_a_pipeline_is_not_success() {
        assert!(matches!(classify(&request(), answer(201, "<html>")), Attempt::Permanent { .. }));
    }
}
