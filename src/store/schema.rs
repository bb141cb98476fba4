//! The schema, as numbered migrations shared by SQLite and PostgreSQL.
//!
//! Entry i brings the schema from version i to i+1. Append only; never edit one that has shipped. The SQL is the
//! common ground of both databases: TEXT, BIGINT (milliseconds since the epoch) and INTEGER, partial indexes, and
//! `$n` parameters.

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
