//! The run vocabulary: why a slot is fired (`Reason`), how a run ended (`Ending`, `RunResult`, the `Pipeline`
//! GitLab created), and where a run stands in the history (`RunState`). The trigger client produces these and the
//! store records them; neither needs to know the other.

use serde::{Deserialize, Serialize};

/// Why a slot is fired; sent as `PIPECRON_REASON` and kept in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Schedule,
    CatchUp,
    RunNow,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Schedule => "schedule",
            Reason::CatchUp => "catch-up",
            Reason::RunNow => "run-now",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        [Reason::Schedule, Reason::CatchUp, Reason::RunNow].into_iter().find(|r| r.as_str() == text)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    /// GitLab refused, or every attempt failed before reaching it.
    Failed,
    /// The last attempt may have reached GitLab (a timeout, a reset after sending), or GitLab answered 201 with
    /// something that is not a pipeline: a pipeline may or may not exist.
    Unknown,
    /// Nothing was sent: the schedule's previous pipeline was still running (`overlap: skip`).
    Skipped,
}

/// The result of firing a slot, with retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub ending: Ending,
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub pipeline: Option<Pipeline>,
    /// The classified message, for a failure.
    pub error: Option<String>,
    /// True when the failure was transient and retries ran out.
    pub retries_exhausted: bool,
}

impl RunResult {
    /// A run that ended without an answer from GitLab: not sent, only printed, or cut short.
    pub fn unanswered(ending: Ending, error: Option<String>) -> Self {
        RunResult { ending, attempts: 0, http_status: None, pipeline: None, error, retries_exhausted: false }
    }
}

/// The pipeline GitLab created, and, when its schedule has an `api_token`, how it went on (see `crate::follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    pub iid: Option<u64>,
    /// GitLab's own word (`created`, `running`, `success`, …), as last seen.
    pub status: String,
    pub web_url: Option<String>,
    /// When GitLab says it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How long its jobs ran, in seconds, as GitLab counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Whether it is followed, and how that stands; `None`: its schedule has no `api_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<Followed>,
    /// Why following stopped short (`refused`, `gone`), for a person to act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Pipeline {
    /// A pipeline as the trigger's answer describes it, not yet followed.
    pub fn created(id: u64, iid: Option<u64>, status: &str, web_url: Option<String>) -> Pipeline {
        Pipeline {
            id,
            iid,
            status: status.to_string(),
            web_url,
            finished_at: None,
            duration: None,
            followed: None,
            note: None,
        }
    }

    /// As GitLab's pipeline badge says it: `passed 12m`, `failed`, `running`; and `timed out` or `not followed:
    /// …` when following stopped short.
    pub fn badge(&self) -> String {
        let word = match self.status.as_str() {
            "success" => "passed",
            "manual" => "manual, waiting for a person",
            other => other,
        };
        let took = self.duration.filter(|_| is_final(&self.status)).map(|s| {
            let d = std::time::Duration::from_secs(s);
            format!(" {}", crate::status::span(d).split(' ').next().unwrap_or_default())
        });
        let stopped = match self.followed {
            Some(Followed::TimedOut) => ", timed out following it",
            Some(Followed::Refused) => ", cannot follow it",
            Some(Followed::Gone) => ", gone from GitLab",
            Some(Followed::Dropped) => ", no longer followed",
            _ => "",
        };
        format!("#{} {word}{}{stopped}", self.id, took.unwrap_or_default())
    }
}

/// How long after the trigger a followed pipeline is first asked about; each look after waits twice as long as
/// the one before, up to `LONGEST_POLL`.
pub const FIRST_POLL: std::time::Duration = std::time::Duration::from_secs(10);
pub const LONGEST_POLL: std::time::Duration = std::time::Duration::from_secs(300);

/// GitLab's final pipeline statuses: nothing changes after these. `manual` waits for a person, perhaps forever,
/// and is treated as final too (`Followed::Ended`); any status GitLab adds later is taken as not final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "success" | "failed" | "canceled" | "skipped" | "manual")
}

/// How following a pipeline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Followed {
    /// It is not final yet and is polled.
    Following,
    /// It reached a final status.
    Ended,
    /// It was still not final after `follow_timeout`.
    TimedOut,
    /// GitLab refused the `api_token` (401 or 403): no use asking again until the configuration changes.
    Refused,
    /// GitLab says the pipeline (or its project) does not exist, or the token cannot see it (404).
    Gone,
    /// Its schedule was removed, or lost its `api_token`.
    Dropped,
}

impl Followed {
    pub const ALL: [Followed; 6] = [
        Followed::Following,
        Followed::Ended,
        Followed::TimedOut,
        Followed::Refused,
        Followed::Gone,
        Followed::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Followed::Following => "following",
            Followed::Ended => "ended",
            Followed::TimedOut => "timed-out",
            Followed::Refused => "refused",
            Followed::Gone => "gone",
            Followed::Dropped => "dropped",
        }
    }

    pub fn parse(text: &str) -> Option<Followed> {
        Followed::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Claimed; its request has not gone out.
    Claimed,
    /// Its request is going out, or has: only the owner may record how it ended.
    Sending,
    Succeeded,
    Failed,
    /// A request may have reached GitLab, but no answer came.
    Unknown,
    /// The slot passed while pipecron was down, and was too late to catch up.
    Missed,
    /// The schedule's previous pipeline was still running, and its `overlap: skip` says to send nothing.
    Skipped,
}

impl RunState {
    pub const ALL: [RunState; 7] = [
        RunState::Claimed,
        RunState::Sending,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Unknown,
        RunState::Missed,
        RunState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Claimed => "claimed",
            RunState::Sending => "sending",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Unknown => "unknown",
            RunState::Missed => "missed",
            RunState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl From<Ending> for RunState {
    fn from(ending: Ending) -> Self {
        match ending {
            Ending::Succeeded => RunState::Succeeded,
            Ending::Failed => RunState::Failed,
            Ending::Unknown => RunState::Unknown,
            Ending::Skipped => RunState::Skipped,
        }
    }
}
