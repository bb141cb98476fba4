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

/// The pipeline GitLab created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    pub iid: Option<u64>,
    pub status: String,
    pub web_url: Option<String>,
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
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Claimed,
        RunState::Sending,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Unknown,
        RunState::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Claimed => "claimed",
            RunState::Sending => "sending",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Unknown => "unknown",
            RunState::Missed => "missed",
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
        }
    }
}
