//! A schedule as pipecron runs it: every key checked, defaults applied, secrets resolved.
//!
//! `config` builds these from the YAML files; everything after it (the scheduler, the store, the trigger) works on
//! this type only, so it never needs to know how a schedule was written.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use url::Url;

use crate::config::yaml::Pos;
use crate::cron::CronExpr;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Unique across all files, `[A-Za-z0-9._-]+`.
    pub name: Arc<str>,
    /// The file and place the schedule was defined.
    pub file: Arc<Path>,
    pub pos: Pos,
    pub description: Option<Box<str>>,
    pub cron: CronExpr,
    pub timezone: Tz,
    /// The GitLab base URL, without `/api`.
    pub gitlab: Arc<Url>,
    pub token_source: TokenSource,
    /// `None` only when the configuration was loaded without resolving secrets (`check --skip-secrets`, `next`).
    pub token: Option<Secret>,
    pub project: Project,
    pub git_ref: Box<str>,
    /// Sent as text.
    pub variables: Variables,
    /// Pipeline inputs; they keep their YAML types.
    pub inputs: BTreeMap<String, serde_json::Value>,
    pub enabled: bool,
    pub catch_up: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub api: Api,
    pub ca_file: Option<Arc<Path>>,
    pub allow_http: bool,
    /// How much of its history is kept.
    pub history: Retention,
    /// The read-only API token its pipelines are followed with (`api_token`); `None`: they are not followed.
    /// Boxed: most schedules have none, and 100,000 schedules each pay for the field.
    pub api_token: Option<Box<ApiToken>>,
    /// What a slot does while the schedule's previous pipeline still runs.
    pub overlap: Overlap,
    /// Where to send notices of its failures and recoveries; shared with the other schedules of its file when
    /// written in `defaults`.
    pub notify: Arc<[Webhook]>,
}

/// A webhook that hears of a schedule's failures and recoveries (`notify`).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// The URL, which may hold a secret (Slack's does); `None` when secrets were not resolved.
    pub url: Option<Secret>,
    /// The URL as it may be shown: its scheme and host.
    pub shown: Box<str>,
    /// The outcomes it is told of.
    pub on: Box<[Outcome]>,
    pub format: NoticeFormat,
}

/// An outcome a webhook may be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Failed,
    Unknown,
    Missed,
    Skipped,
    PipelineFailed,
    PipelineTimedOut,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Failed,
        Outcome::Unknown,
        Outcome::Missed,
        Outcome::Skipped,
        Outcome::PipelineFailed,
        Outcome::PipelineTimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::Missed => "missed",
            Outcome::Skipped => "skipped",
            Outcome::PipelineFailed => "pipeline_failed",
            Outcome::PipelineTimedOut => "pipeline_timed_out",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// How a notice is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeFormat {
    /// `{"text": …}`, which Slack, Mattermost and Microsoft Teams incoming webhooks take.
    Text,
    /// Every field, for a receiver of one's own.
    Json,
}

/// What a slot does while the schedule's previous pipeline still runs (`overlap`); all but `Allow` need an
/// `api_token`, to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Trigger anyway: pipelines may run side by side.
    #[default]
    Allow,
    /// Send nothing; the slot is recorded `skipped`, with the running pipeline's id.
    Skip,
    /// Cancel the running pipeline, then trigger the new one.
    CancelPrevious,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::CancelPrevious => "cancel_previous",
        }
    }
}

/// A GitLab token with the `read_api` scope, sent only as the `PRIVATE-TOKEN` header to the schedule's `gitlab`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub source: TokenSource,
    /// `None` only when the configuration was loaded without resolving secrets.
    pub secret: Option<Secret>,
    /// How long a pipeline is followed before it is recorded `timed out` (`follow_timeout`).
    pub follow_timeout: Duration,
}

impl ApiToken {
    /// A day: a nightly pipeline that has not ended by the next night is stuck.
    pub const DEFAULT_FOLLOW_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
}

/// A schedule's variables in name order, each name once.
///
/// Held as one boxed slice: a `BTreeMap` takes a node of 540 bytes for even one pair, and for 100,000 schedules
/// with a few variables each that was half the memory they took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables(Box<[(Box<str>, Box<str>)]>);

impl Variables {
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (&**name, &**value))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(&self.0[found].1)
    }
}

impl From<BTreeMap<String, String>> for Variables {
    fn from(map: BTreeMap<String, String>) -> Self {
        Variables(map.into_iter().map(|(name, value)| (name.into(), value.into())).collect())
    }
}

/// How much of a schedule's history is kept: runs younger than `keep_for`, at most `max_runs` of them, and always
/// the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_for: Duration,
    pub max_runs: u64,
}

impl Retention {
    /// 90 days, and at most 10,000 runs: a per-minute schedule keeps a week, a nightly one a quarter.
    pub const DEFAULT: Retention = Retention { keep_for: Duration::from_secs(90 * 24 * 3600), max_runs: 10_000 };
}

impl Schedule {
    /// The first slot strictly after `after`, in the schedule's zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron.next_after(self.timezone, after)
    }
}

/// Where the token comes from, for display: the value itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Written in the file (check warns about it).
    Inline,
    /// From `${VAR}` references, by name.
    Env(Box<[String]>),
    File(Box<Path>),
}

/// A GitLab project: a numeric id, or a full path such as `group/sub/project`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    Id(u64),
    Path(String),
}

impl fmt::Display for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Project::Id(id) => write!(f, "{id}"),
            Project::Path(path) => f.write_str(path),
        }
    }
}

/// Which trigger endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/v4/projects/:id/trigger/pipeline`, GitLab 9.0 and later.
    V4,
    /// `POST /api/v3/projects/:id/trigger/builds`, GitLab before 11.
    V3,
}
