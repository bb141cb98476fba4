//! The schema, as numbered migrations shared by SQLite and PostgreSQL.
//!
//! Entry i brings the schema from version i to i+1. Append only; never edit one that has shipped. The SQL is the
//! common ground of both databases: TEXT, BIGINT (milliseconds since the epoch) and INTEGER, partial indexes, and
//! `$n` parameters. A row of `runs` is read the same way on both (`StoredRun`).

use chrono::{DateTime, Utc};

use crate::run::{Pipeline, Reason, RunState};

pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        schedule        TEXT    NOT NULL,
        slot            BIGINT  NOT NULL,
        reason          TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        started_at      BIGINT,
        finished_at     BIGINT,
        http_status     INTEGER,
        pipeline_id     BIGINT,
        pipeline_iid    BIGINT,
        pipeline_status TEXT,
        web_url         TEXT,
        error           TEXT,
        PRIMARY KEY (schedule, slot)
    );
    CREATE INDEX runs_by_slot ON runs (slot);",
    // Claim leases: each row names the replica that owns it, and `sending` tells a request that may have gone out
    // from one that provably did not. Before this, `claimed` meant both, so such rows can only be `unknown`.
    "ALTER TABLE runs ADD COLUMN owner TEXT;
    UPDATE runs SET state = 'unknown',
        error = 'pipecron stopped before it recorded an answer; a pipeline may have been created'
        WHERE state = 'claimed';
    CREATE INDEX runs_unfinished ON runs (owner, schedule, slot) WHERE state IN ('claimed', 'sending');
    CREATE TABLE replicas (
        id        TEXT   PRIMARY KEY,
        host      TEXT   NOT NULL,
        pid       BIGINT NOT NULL,
        pid_ns    TEXT   NOT NULL,
        version   TEXT   NOT NULL,
        started   BIGINT NOT NULL,
        heartbeat BIGINT NOT NULL,
        lease     BIGINT NOT NULL
    );",
];

/// The columns of a run, in the order `Run` is read.
pub const COLUMNS: &str = "schedule, slot, reason, state, attempts, started_at, finished_at, http_status, \
                           pipeline_id, pipeline_iid, pipeline_status, web_url, error, owner";

/// What a replica that died while sending leaves behind.
pub fn died_while_sending(owner: &str) -> String {
    format!("replica {} died while sending; a pipeline may have been created", super::owner_name(owner))
}

/// A row of `runs` as stored, before it is read: each store fills one from its driver's row (`column` names a
/// value of the wrong type), and `read` makes a `Run` of it.
pub struct StoredRun {
    pub schedule: String,
    pub slot: i64,
    pub reason: String,
    pub state: String,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub http_status: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub pipeline_iid: Option<i64>,
    pub pipeline_status: Option<String>,
    pub web_url: Option<String>,
    pub error: Option<String>,
    pub owner: Option<String>,
}

impl StoredRun {
    /// Reads the row. A value this pipecron does not know (a state or reason of a newer version, a time out of
    /// range) is an error that names the row and the value, never a default: a row must not be taken for something
    /// it is not, nor written back changed.
    pub fn read(self) -> Result<crate::store::Run, String> {
        let slot = time(self.slot, 1, &format!("row ({}, slot {})", self.schedule, self.slot))?;
        let at = format!("row ({}, {})", self.schedule, slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        let known = |index: usize, value: &str| {
            let value: String = value.chars().take(60).collect();
            format!(
                "{at} has {} {value:?}, which this pipecron does not know; was it written by a newer version?",
                column_name(index)
            )
        };
        Ok(crate::store::Run {
            reason: Reason::parse(&self.reason).ok_or_else(|| known(2, &self.reason))?,
            state: RunState::parse(&self.state).ok_or_else(|| known(3, &self.state))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| format!("{at} has attempts {}, which is not a count", self.attempts))?,
            started_at: self.started_at.map(|ms| time(ms, 5, &at)).transpose()?,
            finished_at: self.finished_at.map(|ms| time(ms, 6, &at)).transpose()?,
            http_status: self
                .http_status
                .map(|s| u16::try_from(s).map_err(|_| format!("{at} has http_status {s}, which is not an HTTP status")))
                .transpose()?,
            // Stored `as i64` and read back `as u64`: the same id, whatever its size.
            pipeline: self.pipeline_id.map(|id| Pipeline {
                id: id as u64,
                iid: self.pipeline_iid.map(|i| i as u64),
                status: self.pipeline_status.unwrap_or_default(),
                web_url: self.web_url,
            }),
            error: self.error,
            owner: self.owner,
            schedule: self.schedule,
            slot,
        })
    }
}

/// The name of column `index` of `COLUMNS`.
pub fn column_name(index: usize) -> &'static str {
    COLUMNS.split(',').nth(index).map_or("column", str::trim)
}

/// What to say of a value of column `index`, of the row `at` names, that the driver cannot read.
pub fn unreadable_column(index: usize, at: &str, error: impl std::fmt::Display) -> String {
    format!("{at} has a {} this pipecron cannot read: {error}", column_name(index))
}

/// A time stored as milliseconds since 1970, in column `index` of the row `at` names.
fn time(ms: i64, index: usize, at: &str) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("{at} has {} {ms}, which is not a time (milliseconds since 1970)", column_name(index)))
}
