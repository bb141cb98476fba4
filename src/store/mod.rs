//! The run history: one row per (schedule, slot), like GitLab's triggers overview, and the fence that keeps a slot
//! from being fired twice.
//!
//! A slot is claimed by an INSERT that fails when the row exists, before any request is sent; whoever inserts it
//! owns it, whether that is the daemon, `run-now`, or another process on the same database. The SQL is plain enough
//! to run on SQLite and PostgreSQL alike. No token is ever stored.

mod sqlite;

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

pub use sqlite::SqliteStore;

use crate::trigger::{Ending, Pipeline, Reason, RunResult};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Claimed and being fired.
    Claimed,
    Succeeded,
    Failed,
    /// A request may have reached GitLab, but no answer came.
    Unknown,
    /// The slot passed while pipecron was down, and was too late to catch up.
    Missed,
}

impl RunState {
    pub const ALL: [RunState; 5] =
        [RunState::Claimed, RunState::Succeeded, RunState::Failed, RunState::Unknown, RunState::Missed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Claimed => "claimed",
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

/// One row of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub schedule: String,
    pub slot: DateTime<Utc>,
    pub reason: Reason,
    pub state: RunState,
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub http_status: Option<u16>,
    pub pipeline: Option<Pipeline>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the state database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the state database: {0}")]
    Query(String),
    #[error(
        "the state database was written by a newer pipecron (schema {found}, this one knows {known}); upgrade pipecron"
    )]
    TooNew { found: i64, known: i64 },
}

/// The run history. Each call is one committed transaction.
pub trait RunStore: Send + Sync {
    /// Claims a slot. `Ok(false)`: someone already has it, so it must not be fired.
    fn claim(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims many slots in one transaction; `true` for each slot this call now owns.
    fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Records slots that passed while pipecron was down and were too old to catch up. A slot that already has a
    /// row keeps it.
    fn record_missed(
        &self,
        slots: Vec<(String, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest slot the schedule itself produced (fired, caught up or missed; not `run-now`), per schedule:
    /// where catch-up starts counting.
    fn last_slots(&self) -> impl Future<Output = Result<HashMap<String, DateTime<Utc>>, StoreError>> + Send;

    /// Records how a claimed run ended.
    fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest run of each schedule.
    fn last_runs(&self) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;

    /// Past runs, newest first, of one schedule or of all.
    fn history(
        &self,
        schedule: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;
}
