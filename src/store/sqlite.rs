//! The run history in a SQLite file, shared by every pipecron process on the machine.
//!
//! WAL mode lets readers (`status`, `history`) and a writer work at once, and the busy timeout lets `run-now` and
//! the daemon take turns writing. With `synchronous=NORMAL` a committed transaction survives kill -9 (WAL keeps it
//! consistent; only a power loss may drop the last commits). rusqlite is blocking, so each call runs on tokio's
//! blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, params};

use super::{Run, RunState, RunStore, StoreError};
use crate::trigger::{Pipeline, Reason, RunResult};

/// Each entry brings the schema from version i to i+1. Append only; never edit one that has shipped.
const MIGRATIONS: &[&str] = &["CREATE TABLE runs (
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
    CREATE INDEX runs_by_slot ON runs (slot);"];

const COLUMNS: &str = "schedule, slot, reason, state, attempts, started_at, finished_at, http_status, \
                       pipeline_id, pipeline_iid, pipeline_status, web_url, error";

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    /// Results to record, written by one task in group commits: under a burst, one transaction records many runs,
    /// and each `finish` still returns only once its row is committed. Started by the first `finish`, on the
    /// runtime that calls it.
    finishes: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Finish>>>,
}

/// A run's result on its way to the writer thread.
struct Finish {
    schedule: String,
    slot: DateTime<Utc>,
    result: RunResult,
    now: DateTime<Utc>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// At most this many results share one transaction.
const GROUP_COMMIT: usize = 1000;
/// How long the writer gathers results before it commits them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// Takes results as they come and commits whatever has queued up meanwhile in one transaction.
fn spawn_writer(connection: Arc<Mutex<Connection>>) -> tokio::sync::mpsc::UnboundedSender<Finish> {
    let (finishes, mut queue) = tokio::sync::mpsc::unbounded_channel::<Finish>();
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            // More results follow under a burst: gathering them a moment makes one transaction, and one wake of a
            // blocking thread, where there would be dozens, each taking the CPU from the slots still to be sent.
            tokio::time::sleep(GATHER).await;
            let mut batch = vec![first];
            while batch.len() < GROUP_COMMIT
                && let Ok(next) = queue.try_recv()
            {
                batch.push(next);
            }
            let connection = connection.clone();
            let written = tokio::task::spawn_blocking(move || {
                let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
                let written = update_many(&mut connection, &batch).map_err(|e| StoreError::Query(e.to_string()));
                (batch, written)
            })
            .await;
            let Ok((batch, written)) = written else { continue };
            for finish in batch {
                let _ = finish.done.send(written.clone());
            }
        }
    });
    finishes
}

fn update_many(c: &mut Connection, batch: &[Finish]) -> rusqlite::Result<()> {
    let transaction = c.transaction()?;
    {
        let mut statement = transaction.prepare_cached(
            "UPDATE runs SET state = $1, attempts = $2, finished_at = $3, http_status = $4, pipeline_id = $5,
                    pipeline_iid = $6, pipeline_status = $7, web_url = $8, error = $9
             WHERE schedule = $10 AND slot = $11",
        )?;
        for Finish { schedule, slot, result, now, .. } in batch {
            let pipeline = result.pipeline.as_ref();
            statement.execute(params![
                RunState::from(result.ending).as_str(),
                result.attempts,
                millis(*now),
                result.http_status,
                pipeline.map(|p| p.id as i64),
                pipeline.and_then(|p| p.iid).map(|i| i as i64),
                pipeline.map(|p| p.status.clone()),
                pipeline.and_then(|p| p.web_url.clone()),
                result.error,
                schedule,
                millis(*slot),
            ])?;
        }
    }
    transaction.commit()
}

impl SqliteStore {
    /// Opens the database, creating it (and its directory) if missing, and migrates its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let connection = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|_| connection.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(|e| open_error(e.to_string()))?;
        migrate(&connection)?;
        Ok(SqliteStore { connection: Arc::new(Mutex::new(connection)), finishes: Arc::default() })
    }

    /// Runs `work` on the blocking pool with the connection.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection).map_err(|e| StoreError::Query(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Query(e.to_string()))?
    }
}

fn migrate(connection: &Connection) -> Result<(), StoreError> {
    let query = |e: rusqlite::Error| StoreError::Query(e.to_string());
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(query)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew { found: version, known });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        // One transaction per step: a crash leaves the schema at a version, never between two.
        let step = format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;", index + 1);
        connection.execute_batch(&step).map_err(query)?;
    }
    Ok(())
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn read_run(row: &rusqlite::Row) -> rusqlite::Result<Run> {
    let pipeline_id: Option<i64> = row.get(8)?;
    let reason: String = row.get(2)?;
    let state: String = row.get(3)?;
    Ok(Run {
        schedule: row.get(0)?,
        slot: instant(row.get(1)?),
        reason: Reason::parse(&reason).unwrap_or(Reason::Schedule),
        state: RunState::parse(&state).unwrap_or(RunState::Unknown),
        attempts: row.get(4)?,
        started_at: row.get::<_, Option<i64>>(5)?.map(instant),
        finished_at: row.get::<_, Option<i64>>(6)?.map(instant),
        http_status: row.get(7)?,
        pipeline: match pipeline_id {
            Some(id) => Some(Pipeline {
                id: id as u64,
                iid: row.get::<_, Option<i64>>(9)?.map(|i| i as u64),
                status: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
                web_url: row.get(11)?,
            }),
            None => None,
        },
        error: row.get(12)?,
    })
}

/// Inserts rows in one transaction; `true` for each row that was new. `state` is `claimed` or `missed`.
fn insert_many(
    c: &mut Connection,
    rows: &[(String, DateTime<Utc>, Reason)],
    state: RunState,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<bool>> {
    let transaction = c.transaction()?;
    let mut inserted = Vec::with_capacity(rows.len());
    {
        let mut statement = transaction.prepare_cached(
            "INSERT INTO runs (schedule, slot, reason, state, attempts, started_at)
             VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING",
        )?;
        for (schedule, slot, reason) in rows {
            let started = (state == RunState::Claimed).then(|| millis(now));
            let row = params![schedule, millis(*slot), reason.as_str(), state.as_str(), started];
            inserted.push(statement.execute(row)? == 1);
        }
    }
    transaction.commit()?;
    Ok(inserted)
}

impl RunStore for SqliteStore {
    async fn claim(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let claimed = self.claim_many(vec![(schedule.to_string(), slot, reason)], now).await?;
        Ok(claimed.first().copied().unwrap_or(false))
    }

    async fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.with(move |c| insert_many(c, &slots, RunState::Claimed, now)).await
    }

    async fn record_missed(&self, slots: Vec<(String, DateTime<Utc>)>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let rows: Vec<_> = slots.into_iter().map(|(name, slot)| (name, slot, Reason::Schedule)).collect();
        self.with(move |c| insert_many(c, &rows, RunState::Missed, now).map(drop)).await
    }

    async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        self.with(|c| {
            let sql = "SELECT schedule, MAX(slot) FROM runs WHERE reason <> 'run-now' GROUP BY schedule";
            let mut statement = c.prepare(sql)?;
            statement.query_map([], |row| Ok((row.get::<_, String>(0)?, instant(row.get(1)?))))?.collect()
        })
        .await
    }

    async fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let finish = Finish { schedule: schedule.to_string(), slot, result: result.clone(), now, done };
        let finishes = self.finishes.get_or_init(|| spawn_writer(self.connection.clone()));
        finishes.send(finish).map_err(|_| StoreError::Query("the history writer has stopped".into()))?;
        committed.await.map_err(|_| StoreError::Query("the history writer has stopped".into()))?
    }

    async fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs r WHERE slot = (SELECT MAX(slot) FROM runs WHERE schedule = r.schedule)
                 ORDER BY schedule"
            );
            let mut statement = c.prepare(&sql)?;
            statement.query_map([], read_run)?.collect()
        })
        .await
    }

    async fn history(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<Run>, StoreError> {
        let schedule = schedule.map(str::to_string);
        self.with(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR schedule = $1) ORDER BY slot DESC, schedule LIMIT $2"
            );
            let mut statement = c.prepare(&sql)?;
            statement.query_map(params![schedule, limit as i64], read_run)?.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::trigger::{Ending, RunResult};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 30, 0).single().expect("valid")
    }

    fn succeeded(id: u64) -> RunResult {
        RunResult {
            ending: Ending::Succeeded,
            attempts: 2,
            http_status: Some(201),
            pipeline: Some(Pipeline {
                id,
                iid: Some(4),
                status: "created".into(),
                web_url: Some("https://x/p".into()),
            }),
            error: None,
            retries_exhausted: false,
        }
    }

    #[tokio::test]
    async fn a_slot_is_claimed_once_even_across_connections() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("state/pipecron.db");
        let (first, second) = (SqliteStore::open(&path).expect("opens"), SqliteStore::open(&path).expect("opens"));
        assert!(first.claim("nightly", at(0), Reason::Schedule, at(0)).await.expect("claims"));
        assert!(!second.claim("nightly", at(0), Reason::RunNow, at(0)).await.expect("answers"));
        assert!(second.claim("nightly", at(1), Reason::RunNow, at(1)).await.expect("claims"));
        assert!(second.claim("other", at(0), Reason::Schedule, at(0)).await.expect("claims"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_claimants_race_and_exactly_one_wins() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pipecron.db");
        let stores: Vec<SqliteStore> = (0..8).map(|_| SqliteStore::open(&path).expect("opens")).collect();
        let claims: Vec<_> = stores
            .into_iter()
            .map(|store| tokio::spawn(async move { store.claim("nightly", at(3), Reason::Schedule, at(3)).await }))
            .collect();
        let mut won = 0;
        for claim in claims {
            won += usize::from(claim.await.expect("joins").expect("answers"));
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn finished_runs_are_listed_newest_first() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("pipecron.db")).expect("opens");
        for (hour, name) in [(0, "nightly"), (1, "other"), (2, "nightly")] {
            assert!(store.claim(name, at(hour), Reason::Schedule, at(hour)).await.expect("claims"));
            store.finish(name, at(hour), &succeeded(100 + u64::from(hour)), at(hour)).await.expect("finishes");
        }
        let all = store.history(None, 10).await.expect("reads");
        let order: Vec<(&str, u64)> =
            all.iter().map(|r| (r.schedule.as_str(), r.pipeline.as_ref().map_or(0, |p| p.id))).collect();
        assert_eq!(order, [("nightly", 102), ("other", 101), ("nightly", 100)]);
        assert_eq!(all[0].state, RunState::Succeeded);
        assert_eq!(all[0].attempts, 2);
        assert_eq!(all[0].http_status, Some(201));
        assert_eq!(store.history(Some("nightly"), 1).await.expect("reads").len(), 1);
        let last = store.last_runs().await.expect("reads");
        let last: Vec<(&str, DateTime<Utc>)> = last.iter().map(|r| (r.schedule.as_str(), r.slot)).collect();
        assert_eq!(last, [("nightly", at(2)), ("other", at(1))]);
    }

    #[test]
    fn reopening_keeps_the_schema_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pipecron.db");
        drop(SqliteStore::open(&path).expect("creates"));
        drop(SqliteStore::open(&path).expect("reopens"));
        let connection = Connection::open(&path).expect("opens");
        connection.pragma_update(None, "user_version", 99).expect("sets");
        drop(connection);
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }
}
