//! The JSON Schema of a schedule file, for editors (`# yaml-language-server: $schema=…`).
//!
//! The files are read key by key (see `fields`), not through serde, so these types exist only to describe them.
//! A test keeps their keys equal to `fields::KEYS`, so the schema cannot drift from what `check` accepts.

use std::collections::BTreeMap;

use schemars::JsonSchema;

/// A pipecron schedule file.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ScheduleFile {
    /// Any schedule key except `cron`, for every schedule in this file.
    defaults: Option<Defaults>,
    /// Schedules by name: unique across all files, [A-Za-z0-9._-]+.
    schedules: Option<BTreeMap<String, ScheduleKeys>>,
}

/// One schedule.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ScheduleKeys {
    /// A 5-field crontab expression, a nickname such as @daily, or 6 fields with a leading seconds field. `H`
    /// stands for a value hashed from the schedule's name: H, H(0-29), H/15.
    #[schemars(length(max = 1000))]
    cron: String,
    #[serde(flatten)]
    common: Defaults,
}

/// The keys a schedule and `defaults` share.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct Defaults {
    /// IANA zone name, such as Europe/Berlin. Default UTC.
    timezone: Option<String>,
    /// Base URL of the GitLab instance, without /api.
    gitlab: Option<String>,
    /// The trigger token, normally written ${VAR}. Exactly one of token and token_file.
    token: Option<String>,
    /// A file that holds the trigger token (Docker or Kubernetes secrets).
    token_file: Option<String>,
    /// A numeric project id, or the full path: group/sub/project.
    project: Option<ProjectId>,
    /// A branch or tag.
    #[serde(rename = "ref")]
    #[schemars(length(max = 1000))]
    git_ref: Option<String>,
    /// Variables, sent as text; at most 1,000, each value at most 10,000 characters.
    variables: Option<BTreeMap<String, Scalar>>,
    /// Pipeline inputs (GitLab 17.11+); values keep their types. At most 20.
    inputs: Option<BTreeMap<String, serde_json::Value>>,
    /// Free text, shown in status.
    #[schemars(length(max = 1000))]
    description: Option<String>,
    /// false pauses the schedule. Default true.
    enabled: Option<bool>,
    /// How late a missed slot may still be fired, once, such as 1h; 0 turns catch-up off. Default 1h.
    catch_up: Option<Duration>,
    /// Upper bound of a random delay added to each slot, such as 30s. Default 0s.
    jitter: Option<Duration>,
    /// Timeout of one request, such as 30s. Default 30s.
    timeout: Option<Duration>,
    /// How many times a transient failure is retried, at most 100. Default 5.
    #[schemars(range(max = 100))]
    retries: Option<u32>,
    /// v4, or v3 for /trigger/builds on GitLab older than 11. Default v4.
    api: Option<ApiVersion>,
    /// A PEM bundle added to the system roots.
    ca_file: Option<String>,
    /// Allow http:// to a host that is not loopback. Default false.
    allow_http: Option<bool>,
    /// How long runs are kept in the history, from 1d to 36500d; the newest run is always kept. Default 90d.
    history_retention: Option<Duration>,
    /// How many runs of the schedule the history keeps at most. Default 10000.
    #[schemars(range(min = 1, max = 1_000_000_000))]
    history_max_runs: Option<u64>,
    /// A GitLab token with the read_api scope (a project access token, usually), normally written ${VAR}: with
    /// it, each pipeline is followed to its end. Sent only as the PRIVATE-TOKEN header to this schedule's gitlab.
    api_token: Option<String>,
    /// A file that holds the api_token.
    api_token_file: Option<String>,
    /// How long a pipeline is followed before it is recorded as timed out, such as 6h. Default 24h.
    follow_timeout: Option<Duration>,
    /// While the previous pipeline still runs: allow (trigger anyway, the default), skip (send nothing), or
    /// cancel_previous (cancel it first; needs the api scope). Needs api_token.
    overlap: Option<OverlapRule>,
    /// Webhooks told once when the schedule starts failing and once when it recovers.
    notify: Option<Vec<NotifyWebhook>>,
}

/// A webhook of `notify`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct NotifyWebhook {
    /// The incoming webhook's URL, normally ${VAR}; shown only as its scheme and host.
    url: String,
    /// The outcomes to tell of. Default all six.
    on: Option<Vec<NoticeOutcome>>,
    /// text ({"text": …}, for Slack, Mattermost and Teams; the default) or json (every field).
    format: Option<NoticeFormatName>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum NoticeOutcome {
    Failed,
    Unknown,
    Missed,
    Skipped,
    PipelineFailed,
    PipelineTimedOut,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum NoticeFormatName {
    Text,
    Json,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum OverlapRule {
    Allow,
    Skip,
    CancelPrevious,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ProjectId {
    Id(u64),
    Path(String),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// A duration such as 90s, 15m, 1h or 2h30m, or 0.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Duration {
    Text(#[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$|^0$"))] String),
    Zero(u8),
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ApiVersion {
    V4,
    V3,
}

/// The schema, as pretty-printed JSON.
pub fn json() -> String {
    let schema = schemars::schema_for!(ScheduleFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_exactly_the_keys_check_accepts() {
        let schema: serde_json::Value = serde_json::from_str(&json()).expect("valid JSON");
        let defs = &schema["$defs"];
        let mut keys: Vec<String> =
            defs["Defaults"]["properties"].as_object().expect("properties").keys().cloned().collect();
        keys.extend(defs["ScheduleKeys"]["properties"].as_object().expect("properties").keys().cloned());
        keys.sort();
        keys.dedup();
        let mut known: Vec<String> = super::super::fields::KEYS.iter().map(|k| k.to_string()).collect();
        known.sort();
        assert_eq!(keys, known);
        assert_eq!(defs["ScheduleKeys"]["required"], serde_json::json!(["cron"]));
    }

    #[test]
    fn the_schema_states_the_limits_check_enforces() {
        let schema: serde_json::Value = serde_json::from_str(&json()).expect("valid JSON");
        let defs = &schema["$defs"];
        assert_eq!(defs["Defaults"]["properties"]["retries"]["maximum"], 100, "{}", defs["Defaults"]);
        assert_eq!(defs["Defaults"]["properties"]["description"]["maxLength"], 1000);
        assert_eq!(defs["ScheduleKeys"]["properties"]["cron"]["maxLength"], super::super::fields::MAX_TEXT);
    }
}
