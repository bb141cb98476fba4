//! One trigger request, fully resolved: endpoint, token, ref, variables and inputs.
//!
//! Built once from a `Schedule` and a slot, then sent (perhaps several times) by a `Trigger`. The token goes in
//! the body, never in the URL: URLs end up in proxy and server logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use url::Url;

use super::Reason;
use crate::schedule::{Api, Project, Schedule};
use crate::secret::Secret;

/// Changes `run-now` may make to a schedule's request.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub git_ref: Option<String>,
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub schedule: String,
    pub url: Url,
    pub token: Secret,
    pub git_ref: String,
    pub project: Project,
    pub api: Api,
    /// The schedule's variables, any overrides, and pipecron's own `PIPECRON_*`.
    pub variables: BTreeMap<String, String>,
    pub inputs: BTreeMap<String, serde_json::Value>,
    pub timeout: Duration,
    pub ca_file: Option<Arc<Path>>,
    /// The body, encoded once when the request is built: the daemon builds a slot's request before the slot comes,
    /// so that sending it is all that is left to do on time.
    pub payload: Payload,
}

/// An encoded body. It holds the token, so its `Debug` shows only its type and length.
#[derive(Clone, Default)]
pub struct Payload {
    pub content_type: &'static str,
    pub bytes: bytes::Bytes,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({}, {} bytes)", self.content_type, self.bytes.len())
    }
}

/// How the request body is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `application/x-www-form-urlencoded`: `token`, `ref`, `variables[KEY]`.
    Form(Vec<(String, String)>),
    /// `application/json`, used when inputs are set so that they keep their types.
    Json(serde_json::Value),
}

/// Why a request cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("schedule '{0}' has no token: it was loaded without resolving secrets")]
    NoToken(String),
    #[error("v3 triggers do not support inputs; remove inputs or set api: v4")]
    InputsOnV3,
}

impl TriggerRequest {
    pub fn new(
        schedule: &Schedule,
        slot: DateTime<Utc>,
        reason: Reason,
        overrides: &Overrides,
    ) -> Result<Self, RequestError> {
        let token = schedule.token.clone().ok_or_else(|| RequestError::NoToken(schedule.name.to_string()))?;
        if schedule.api == Api::V3 && !schedule.inputs.is_empty() {
            return Err(RequestError::InputsOnV3);
        }
        let mut variables: BTreeMap<String, String> =
            schedule.variables.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        variables.extend(overrides.variables.clone());
        variables.insert("PIPECRON_SCHEDULE".into(), schedule.name.to_string());
        variables.insert("PIPECRON_SLOT".into(), slot_text(slot));
        variables.insert("PIPECRON_REASON".into(), reason.as_str().into());
        let request = TriggerRequest {
            schedule: schedule.name.to_string(),
            url: endpoint(&schedule.gitlab, &schedule.project, schedule.api),
            token,
            git_ref: overrides.git_ref.clone().unwrap_or_else(|| schedule.git_ref.to_string()),
            project: schedule.project.clone(),
            api: schedule.api,
            variables,
            inputs: schedule.inputs.clone(),
            timeout: schedule.timeout,
            ca_file: schedule.ca_file.clone(),
            payload: Payload::default(),
        };
        Ok(request.encoded())
    }

    /// Fills in `payload` from the other fields.
    fn encoded(mut self) -> Self {
        self.payload = match self.body() {
            Body::Form(fields) => Payload {
                content_type: "application/x-www-form-urlencoded",
                bytes: url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish().into(),
            },
            Body::Json(json) => Payload {
                content_type: "application/json",
                bytes: serde_json::to_vec(&json).unwrap_or_default().into(),
            },
        };
        self
    }

    pub fn body(&self) -> Body {
        if self.inputs.is_empty() {
            let mut fields =
                vec![("token".to_string(), self.token.expose().to_string()), ("ref".into(), self.git_ref.clone())];
            fields.extend(self.variables.iter().map(|(k, v)| (format!("variables[{k}]"), v.clone())));
            return Body::Form(fields);
        }
        Body::Json(serde_json::json!({
            "token": self.token.expose(),
            "ref": self.git_ref,
            "variables": self.variables,
            "inputs": self.inputs,
        }))
    }

    /// The request as `--dry-run` prints it, with the token masked.
    pub fn describe(&self) -> String {
        let mut out = format!("POST {}\n", self.url);
        let masked = self.token.masked();
        match self.body() {
            Body::Form(fields) => {
                out.push_str("Content-Type: application/x-www-form-urlencoded\n");
                for (key, value) in fields {
                    let value = if key == "token" { masked.clone() } else { value };
                    let _ = writeln!(out, "  {key}={value}");
                }
            }
            Body::Json(mut json) => {
                json["token"] = serde_json::Value::String(masked);
                out.push_str("Content-Type: application/json\n");
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default());
            }
        }
        out
    }
}

/// A slot as pipecron's variables and history write it: RFC 3339 in UTC.
pub fn slot_text(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `{gitlab}/api/v4/projects/{id}/trigger/pipeline`, the project path percent-encoded as one segment.
pub fn endpoint(gitlab: &Url, project: &Project, api: Api) -> Url {
    let mut url = gitlab.clone();
    let (version, action) = match api {
        Api::V4 => ("v4", "pipeline"),
        Api::V3 => ("v3", "builds"),
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["api", version, "projects", &project.to_string(), "trigger", action]);
    }
    url
}

/// A request to project 9 with a made-up token, for unit tests.
#[cfg(test)]
pub(crate) fn sample() -> TriggerRequest {
    TriggerRequest {
        schedule: "nightly".into(),
        url: Url::parse("https://gitlab.example.com/api/v4/projects/9/trigger/pipeline").expect("valid"),
        token: Secret::new("glptt-secrettoken0123".into()),
        git_ref: "main".into(),
        project: Project::Id(9),
        api: Api::V4,
        variables: BTreeMap::new(),
        inputs: BTreeMap::new(),
        timeout: Duration::from_secs(30),
        ca_file: None,
        payload: Payload::default(),
    }
    .encoded()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_one_segment_and_base_paths_are_kept() {
        let gitlab = Url::parse("https://gitlab.example.com").expect("valid");
        let path = Project::Path("group/sub/project".into());
        assert_eq!(
            endpoint(&gitlab, &path, Api::V4).as_str(),
            "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline"
        );
        let under = Url::parse("https://example.com/gitlab/").expect("valid");
        assert_eq!(
            endpoint(&under, &Project::Id(9), Api::V3).as_str(),
            "https://example.com/gitlab/api/v3/projects/9/trigger/builds"
        );
    }
}
