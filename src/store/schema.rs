//! The schema, as numbered migrations shared by SQLite and PostgreSQL.
//!
//! Entry i brings the schema from version i to i+1. Append only; never edit one that has shipped. The SQL is the
//! common ground of both databases: TEXT, BIGINT (milliseconds since the epoch) and INTEGER, partial indexes, and
//! `$n` parameters. A row of `runs` is read the same way on both (`StoredRun`).

use chrono::{DateTime, Utc};

use crate::run::{Followed, Pipeline, Reason, RunState};

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
    // The newest runs of all schedules, and a copy's keyset, are both in (slot, schedule) order: with the slot alone
    // indexed, the 100,000 schedules of one slot were sorted at every read.
    "DROP INDEX runs_by_slot;
    CREATE INDEX runs_by_slot ON runs (slot, schedule);",
    // Following pipelines to their end: how the pipeline ended, and when it is next asked about. `follow_at` is
    // also a lease: a replica that takes a pipeline to poll pushes it ahead, and writes back only while it is still
    // the value it set, so that one replica at a time polls each pipeline and a dead one's are taken up again.
    // `notices` holds each schedule that is failing, since when: one notice per change, whichever replica sees it.
    // `trigger_tokens` holds what the daily look at each schedule's trigger token found, for `status`.
    "ALTER TABLE runs ADD COLUMN pipeline_finished_at BIGINT;
    ALTER TABLE runs ADD COLUMN pipeline_duration BIGINT;
    ALTER TABLE runs ADD COLUMN followed TEXT;
    ALTER TABLE runs ADD COLUMN follow_note TEXT;
    ALTER TABLE runs ADD COLUMN follow_at BIGINT;
    ALTER TABLE runs ADD COLUMN follow_polls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN polled_at BIGINT;
    CREATE INDEX runs_following ON runs (follow_at) WHERE follow_at IS NOT NULL;
    CREATE INDEX runs_followed ON runs (schedule, slot) WHERE follow_at IS NOT NULL;
    CREATE TABLE notices (
        schedule TEXT   NOT NULL,
        track    TEXT   NOT NULL,
        outcome  TEXT   NOT NULL,
        since    BIGINT NOT NULL,
        PRIMARY KEY (schedule, track)
    );
    CREATE TABLE trigger_tokens (
        schedule   TEXT   PRIMARY KEY,
        checked_at BIGINT NOT NULL,
        expires_at BIGINT,
        summary    TEXT   NOT NULL,
        warning    TEXT
    );",
];

/// The columns of a run, in the order `Run` is read.
pub const COLUMNS: &str = "schedule, slot, reason, state, attempts, started_at, finished_at, http_status, \
                           pipeline_id, pipeline_iid, pipeline_status, web_url, error, owner, \
                           pipeline_finished_at, pipeline_duration, followed, follow_note";

/// The names of the schedules in the history, each found by one seek in the primary key (a "loose index scan"):
/// `GROUP BY schedule` would read every row, and a history holds millions.
const NAMES: &str = "WITH RECURSIVE names(name) AS (
        SELECT MIN(schedule) FROM runs
        UNION ALL
        SELECT (SELECT MIN(schedule) FROM runs WHERE schedule > names.name) FROM names WHERE names.name IS NOT NULL
    )";

/// Every schedule in the history, by name.
pub fn schedule_names() -> String {
    format!("{NAMES} SELECT name FROM names WHERE name IS NOT NULL ORDER BY name")
}

/// The newest run of each schedule: two seeks a schedule.
pub fn last_runs() -> String {
    format!(
        "{NAMES} SELECT {COLUMNS} FROM names JOIN runs
             ON runs.schedule = names.name AND runs.slot = (SELECT MAX(slot) FROM runs WHERE schedule = names.name)
         ORDER BY schedule"
    )
}

/// The newest slot each schedule itself produced (not a `run-now`): where catch-up starts counting.
pub fn last_slots() -> String {
    format!(
        "{NAMES} SELECT name, last FROM (
             SELECT name, (SELECT slot FROM runs WHERE schedule = names.name AND reason <> 'run-now'
                           ORDER BY slot DESC LIMIT 1) AS last
             FROM names WHERE name IS NOT NULL
         ) AS found WHERE last IS NOT NULL"
    )
}

/// A page of one schedule's history: its runs before `$2`, newest first.
pub fn runs_before() -> String {
    format!("SELECT {COLUMNS} FROM runs WHERE schedule = $1 AND slot < $2 ORDER BY slot DESC LIMIT $3")
}

/// The newest runs of every schedule: a walk back along the slot index (runs of one slot in the reverse order of
/// their names, the index's order read backwards; any other order sorts every run of that slot first).
pub fn history() -> String {
    format!("SELECT {COLUMNS} FROM runs ORDER BY slot DESC, schedule DESC LIMIT $1")
}

/// A batch of a history being copied: the runs after (`$1`, `$2`) in (slot, schedule) order. The row-value
/// comparison is one range of the slot index on both databases, where an `OR` would not be.
pub fn export() -> String {
    format!("SELECT {COLUMNS} FROM runs WHERE (slot, schedule) > ($1, $2) ORDER BY slot, schedule LIMIT $3")
}

/// The queries that read or prune a long history, by what makes them, with example values of their parameters as
/// SQL literals: each must find its rows through an index, never by reading the table. Tests check their plans on
/// both databases.
pub fn hot_queries() -> Vec<(&'static str, String, &'static [&'static str])> {
    const NAME: &str = "'nightly'";
    const SLOT: &str = "1764000000000";
    const LIMIT: &str = "20";
    vec![
        ("status: the last run of each schedule", last_runs(), &[]),
        ("catch-up: the last slot of each schedule", last_slots(), &[]),
        ("retention: the schedules in the history", schedule_names(), &[]),
        ("history NAME", runs_before(), &[NAME, SLOT, LIMIT]),
        ("history", history(), &[LIMIT]),
        ("migrate-state: a batch", export(), &[SLOT, NAME, LIMIT]),
        ("retention: the cap", NTH_NEWEST.to_string(), &[NAME, LIMIT]),
        ("retention: pruning", PRUNE.to_string(), &[NAME, SLOT, LIMIT]),
        ("follow: the pipelines due", super::follows::PICK.to_string(), &["0", SLOT, LIMIT]),
        ("follow: the next due", super::follows::NEXT.to_string(), &[]),
        ("overlap: the pipeline still followed", super::follows::PREVIOUS.to_string(), &[NAME]),
    ]
}

/// The slot of one schedule's run that has `$2` newer runs: it and every older one are past a cap of `$2` runs.
pub const NTH_NEWEST: &str = "SELECT slot FROM runs WHERE schedule = $1 ORDER BY slot DESC LIMIT 1 OFFSET $2";

/// Deletes up to `$3` of one schedule's finished runs older than `$2`, oldest first. The newest run is never
/// deleted, so that catch-up and `status` still know the schedule's last slot; nor is a run still under way, nor
/// one whose pipeline is still followed (its end is yet to be recorded, and `overlap` looks at it).
pub const PRUNE: &str = "DELETE FROM runs WHERE schedule = $1 AND slot IN (
        SELECT slot FROM runs
        WHERE schedule = $1 AND slot < $2 AND state NOT IN ('claimed', 'sending') AND follow_at IS NULL
          AND slot < (SELECT MAX(slot) FROM runs WHERE schedule = $1)
        ORDER BY slot LIMIT $3
    )";

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
    pub pipeline_finished_at: Option<i64>,
    pub pipeline_duration: Option<i64>,
    pub followed: Option<String>,
    pub follow_note: Option<String>,
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
            pipeline: match self.pipeline_id {
                None => None,
                Some(id) => Some(Pipeline {
                    id: id as u64,
                    iid: self.pipeline_iid.map(|i| i as u64),
                    status: self.pipeline_status.unwrap_or_default(),
                    web_url: self.web_url,
                    finished_at: self.pipeline_finished_at.map(|ms| time(ms, 14, &at)).transpose()?,
                    duration: self.pipeline_duration.and_then(|s| u64::try_from(s).ok()),
                    followed: self
                        .followed
                        .as_deref()
                        .map(|f| Followed::parse(f).ok_or_else(|| known(16, f)))
                        .transpose()?,
                    note: self.follow_note,
                }),
            },
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
