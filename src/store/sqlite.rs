//! The run history in a SQLite file, shared by every pipecron process on the machine.
//!
//! WAL mode lets readers (`status`, `history`) and a writer work at once, and the busy timeout lets `run-now` and
//! the daemon take turns writing. With `synchronous=NORMAL` a committed transaction survives kill -9 (WAL keeps it
//! consistent; only a power loss may drop the last commits). rusqlite is blocking, so each call runs on tokio's
//! blocking pool. All processes share this host's clock, and a replica whose process has gone from this host is
//! dead at once: a restart after kill -9 takes over its rows without waiting out the lease.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema::{self, COLUMNS, MIGRATIONS, StoredRun, died_while_sending, unreadable_column};
use super::{
    Finish, Key, Replica, ReplicaRow, Run, RunState, RunStore, StoreError, TakenOver, WriteBatches, Writers,
    first_poll, instant, lease_millis, millis,
};
use crate::run::{Followed, Reason, RunResult};

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    /// Moves to `sending` and results, in batches: under a burst one transaction records many runs, and each
    /// `finish` still returns only once its row is committed.
    writers: Writers,
}

fn query_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, cause) = &e
        && let Some(Unreadable(message)) = cause.downcast_ref::<Unreadable>()
    {
        return StoreError::Query(message.clone());
    }
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::ReadOnly) => {
            StoreError::Unwritable(e.to_string())
        }
        _ => StoreError::Query(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens the database, creating it (and its directory) if missing, and migrates its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let mut connection = Connection::open(path).map_err(|e| open_error(explain(path, e)))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .and_then(|_| wal(&connection))
            .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(|e| open_error(explain(path, e)))?;
        migrate(&mut connection)?;
        Ok(SqliteStore { connection: Arc::new(Mutex::new(connection)), writers: Writers::default() })
    }

    /// Runs `work` on the blocking pool with the connection.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_blocking(self.connection.clone(), work).await
    }
}

async fn run_blocking<T: Send + 'static>(
    connection: Arc<Mutex<Connection>>,
    work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut connection).map_err(query_error)
    })
    .await
    .map_err(|e| StoreError::Query(e.to_string()))?
}

/// SQLite's reason, with what it means for a state file and what to do about it.
fn explain(path: &Path, error: rusqlite::Error) -> String {
    let code = error.sqlite_error_code();
    match code {
        Some(rusqlite::ErrorCode::NotADatabase) => "it is not a SQLite database, so not a pipecron state file; it was \
            left as it is: move it away, or point --state (PIPECRON_STATE) at another file"
            .into(),
        Some(
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied,
        ) => may_not_write(path).unwrap_or_else(|| error.to_string()),
        _ => error.to_string(),
    }
}

/// Why this process may not write the state file or its directory (SQLite keeps its journal beside the file), if
/// that is the trouble: the error names the user, so that the fix (a chown, a volume's owner) is plain.
fn may_not_write(path: &Path) -> Option<String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(format!(".pipecron-probe-{}", std::process::id()));
    let denied = match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            let file = std::fs::OpenOptions::new().write(true).open(path);
            file.err().filter(|e| e.kind() == std::io::ErrorKind::PermissionDenied).map(|_| path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(dir),
        Err(_) => None,
    }?;
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| format!("{} ({uid})", u.name));
    Some(format!(
        "permission denied: user {user} may not write to {}, where the state file and its journal live; give it \
         write access (chown, or the volume's owner), or point --state (PIPECRON_STATE) elsewhere",
        denied.display()
    ))
}

/// Turns on WAL. Several processes opening a new file at once may find it locked for a moment, which the busy
/// handler does not cover for this pragma.
fn wal(connection: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Brings the schema up to date in one write transaction, reading the version again inside it: of several
/// processes starting on a new file at once, the first migrates and the others find it done.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let version = |c: &Connection| c.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0));
    let found = version(connection).map_err(query_error)?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    if found == known {
        return Ok(());
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(query_error)?;
    let found = version(&transaction).map_err(query_error)?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        transaction.execute_batch(sql).map_err(query_error)?;
    }
    transaction.pragma_update(None, "user_version", known).map_err(query_error)?;
    transaction.commit().map_err(query_error)
}

/// Reads a row of `runs` (see `StoredRun::read`): a row it cannot read is an error that names it.
fn read_run(row: &rusqlite::Row) -> rusqlite::Result<Run> {
    let schedule: String = column(row, 0, "a row")?;
    let at = format!("row ({schedule}, …)");
    let stored = StoredRun {
        slot: column(row, 1, &at)?,
        reason: column(row, 2, &at)?,
        state: column(row, 3, &at)?,
        attempts: column(row, 4, &at)?,
        started_at: column(row, 5, &at)?,
        finished_at: column(row, 6, &at)?,
        http_status: column(row, 7, &at)?,
        pipeline_id: column(row, 8, &at)?,
        pipeline_iid: column(row, 9, &at)?,
        pipeline_status: column(row, 10, &at)?,
        web_url: column(row, 11, &at)?,
        error: column(row, 12, &at)?,
        owner: column(row, 13, &at)?,
        pipeline_finished_at: column(row, 14, &at)?,
        pipeline_duration: column(row, 15, &at)?,
        followed: column(row, 16, &at)?,
        follow_note: column(row, 17, &at)?,
        schedule,
    };
    stored.read().map_err(|message| unreadable(0, message))
}

/// A row `read_run` cannot read, carried through rusqlite's error to `query_error`.
#[derive(Debug)]
struct Unreadable(String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreadable {}

fn unreadable(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Null, Box::new(Unreadable(message)))
}

/// Column `index` of the row `at` names, as a `T`.
fn column<T: rusqlite::types::FromSql>(row: &rusqlite::Row, index: usize, at: &str) -> rusqlite::Result<T> {
    row.get(index).map_err(|e| unreadable(index, unreadable_column(index, at, e)))
}

/// Inserts rows in one transaction; `true` for each row that was new. `state` is `claimed` or `missed`.
fn insert_many(
    c: &mut Connection,
    rows: &[(String, DateTime<Utc>, Reason)],
    state: RunState,
    owner: Option<&str>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<bool>> {
    let transaction = c.transaction()?;
    let mut inserted = Vec::with_capacity(rows.len());
    {
        let mut statement = transaction.prepare_cached(
            "INSERT INTO runs (schedule, slot, reason, state, attempts, started_at, finished_at, owner)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7) ON CONFLICT DO NOTHING",
        )?;
        let claimed = state == RunState::Claimed;
        let (started, finished) = (claimed.then(|| millis(now)), (!claimed).then(|| millis(now)));
        let mut ours = transaction.prepare_cached(
            "SELECT COUNT(*) FROM runs WHERE schedule = $1 AND slot = $2 AND owner = $3 AND state = 'claimed'",
        )?;
        for (schedule, slot, reason) in rows {
            let row = params![schedule, millis(*slot), reason.as_str(), state.as_str(), started, finished, owner];
            let new = statement.execute(row)? == 1;
            // Claimed by this owner already: an earlier try committed, though its answer was lost.
            let again = !new
                && owner.is_some()
                && ours.query_row(params![schedule, millis(*slot), owner], |r| r.get::<_, i64>(0))? == 1;
            inserted.push(new || again);
        }
    }
    transaction.commit()?;
    Ok(inserted)
}

fn start_sending(c: &mut Connection, batch: &[(Vec<Key>, String)]) -> rusqlite::Result<Vec<Vec<bool>>> {
    let transaction = c.transaction()?;
    let mut moved = Vec::with_capacity(batch.len());
    {
        let mut statement = transaction.prepare_cached(
            "UPDATE runs SET state = 'sending'
             WHERE schedule = $1 AND slot = $2 AND owner = $3 AND state IN ('claimed', 'sending')",
        )?;
        for (keys, owner) in batch {
            let mut each = Vec::with_capacity(keys.len());
            for (schedule, slot) in keys {
                each.push(statement.execute(params![schedule, millis(*slot), owner])? == 1);
            }
            moved.push(each);
        }
    }
    transaction.commit()?;
    Ok(moved)
}

fn finish_many(c: &mut Connection, batch: &[Finish]) -> rusqlite::Result<Vec<bool>> {
    let transaction = c.transaction()?;
    let mut recorded = Vec::with_capacity(batch.len());
    {
        // SQLite numbers `$N` parameters in the order they first appear, whatever N says: keep them in order.
        let mut statement = transaction.prepare_cached(
            "UPDATE runs SET state = $1, attempts = $2, finished_at = $3, http_status = $4, pipeline_id = $5,
                    pipeline_iid = $6, pipeline_status = $7, web_url = $8, error = $9, followed = $10,
                    follow_at = $11
             WHERE schedule = $12 AND slot = $13 AND owner = $14 AND state IN ('claimed', 'sending')",
        )?;
        for Finish { key: (schedule, slot), result, owner, now } in batch {
            let pipeline = result.pipeline.as_ref();
            let changed = statement.execute(params![
                RunState::from(result.ending).as_str(),
                result.attempts,
                millis(*now),
                result.http_status,
                pipeline.map(|p| p.id as i64),
                pipeline.and_then(|p| p.iid).map(|i| i as i64),
                pipeline.map(|p| p.status.clone()),
                pipeline.and_then(|p| p.web_url.clone()),
                result.error,
                pipeline.and_then(|p| p.followed).map(Followed::as_str),
                first_poll(pipeline, *now),
                schedule,
                millis(*slot),
                owner,
            ])?;
            recorded.push(changed == 1);
        }
    }
    transaction.commit()?;
    Ok(recorded)
}

/// True unless the process is certainly gone from this host.
fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// True if some replica may be dead: a row unfinished by another owner that is not live, or another process of
/// this host's that is gone. Read without the write lock, which a takeover takes only when there is one to do.
fn anyone_to_take_over(c: &Connection, me: &Replica, now: i64) -> rusqlite::Result<bool> {
    let orphans: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE state IN ('claimed', 'sending') AND owner <> $1
         AND owner NOT IN (SELECT id FROM replicas WHERE heartbeat >= $2 - lease) LIMIT 1)",
        )?
        .query_row(params![me.id, now], |r| r.get(0))?;
    let mut neighbours =
        c.prepare_cached("SELECT pid FROM replicas WHERE host = $1 AND pid_ns = $2 AND pid_ns <> '' AND id <> $3")?;
    let pids: Vec<i64> =
        neighbours.query_map(params![me.host, me.pid_ns, me.id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let stale: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM replicas WHERE heartbeat < $1 - lease AND id <> $2")?
        .query_row(params![now, me.id], |r| r.get(0))?;
    Ok(orphans > 0 || stale > 0 || pids.into_iter().any(|pid| !pid_alive(pid)))
}

fn take_over(c: &mut Connection, me: &Replica) -> rusqlite::Result<Vec<TakenOver>> {
    let now = millis(Utc::now());
    if !anyone_to_take_over(c, me, now)? {
        return Ok(Vec::new());
    }
    let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Only a process of this host and PID namespace can be seen to be gone.
    let gone: Vec<String> = {
        let mut statement = transaction.prepare_cached(
            "SELECT id, pid FROM replicas WHERE host = $1 AND pid_ns = $2 AND pid_ns <> '' AND id <> $3",
        )?;
        let found = params![me.host, me.pid_ns, me.id];
        let rows = statement.query_map(found, |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.filter_map(Result::ok).filter(|(_, pid)| !pid_alive(*pid)).map(|(id, _)| id).collect()
    };
    for id in gone {
        transaction.execute("DELETE FROM replicas WHERE id = $1", params![id])?;
    }
    let owners: Vec<String> = {
        let mut statement = transaction.prepare_cached(
            "SELECT DISTINCT owner FROM runs WHERE state IN ('claimed', 'sending') AND owner <> $1
             AND owner NOT IN (SELECT id FROM replicas WHERE heartbeat >= $2 - lease)",
        )?;
        statement.query_map(params![me.id, now], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut taken = Vec::new();
    for owner in owners {
        let unknown = transaction.execute(
            "UPDATE runs SET state = 'unknown', finished_at = $1, error = $2 WHERE owner = $3 AND state = 'sending'",
            params![now, died_while_sending(&owner), owner],
        )?;
        let sql = format!("UPDATE runs SET owner = $1 WHERE owner = $2 AND state = 'claimed' RETURNING {COLUMNS}");
        let claimed =
            transaction.prepare(&sql)?.query_map(params![me.id, owner], read_run)?.collect::<Result<_, _>>()?;
        taken.push(TakenOver { from: owner, claimed, unknown });
    }
    transaction.execute("DELETE FROM replicas WHERE heartbeat < $1 - lease AND id <> $2", params![now, me.id])?;
    transaction.commit()?;
    Ok(taken)
}

fn register(c: &mut Connection, replica: &Replica) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO replicas (id, host, pid, pid_ns, version, started, heartbeat, lease)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
        params![
            replica.id,
            replica.host,
            replica.pid,
            replica.pid_ns,
            env!("CARGO_PKG_VERSION"),
            millis(Utc::now()),
            lease_millis(replica.lease)
        ],
    )
    .map(drop)
}

/// Renews a replica's heartbeat; false (and registered anew) if others had removed it as dead.
fn heartbeat(c: &mut Connection, replica: &Replica) -> rusqlite::Result<bool> {
    let renewed =
        c.execute("UPDATE replicas SET heartbeat = $1 WHERE id = $2", params![millis(Utc::now()), replica.id])?;
    if renewed == 0 {
        register(c, replica)?;
    }
    Ok(renewed == 1)
}

fn import(c: &mut Connection, runs: &[Run]) -> rusqlite::Result<usize> {
    let transaction = c.transaction()?;
    let mut inserted = 0;
    {
        let mut statement = transaction.prepare_cached(&format!(
            "INSERT INTO runs ({COLUMNS}, follow_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT DO NOTHING"
        ))?;
        for run in runs {
            let pipeline = run.pipeline.as_ref();
            inserted += statement.execute(params![
                run.schedule,
                millis(run.slot),
                run.reason.as_str(),
                run.state.as_str(),
                run.attempts,
                run.started_at.map(millis),
                run.finished_at.map(millis),
                run.http_status,
                pipeline.map(|p| p.id as i64),
                pipeline.and_then(|p| p.iid).map(|i| i as i64),
                pipeline.map(|p| p.status.clone()),
                pipeline.and_then(|p| p.web_url.clone()),
                run.error,
                run.owner,
                pipeline.and_then(|p| p.finished_at).map(millis),
                pipeline.and_then(|p| p.duration).map(|d| d as i64),
                pipeline.and_then(|p| p.followed).map(Followed::as_str),
                pipeline.and_then(|p| p.note.clone()),
                first_poll(pipeline, Utc::now()),
            ])?;
        }
    }
    transaction.commit()?;
    Ok(inserted)
}

/// One connection: one batch at a time.
impl WriteBatches for SqliteStore {
    const PARALLEL: usize = 1;

    async fn start_sending_many(&self, batch: Vec<(Vec<Key>, String)>) -> Result<Vec<Vec<bool>>, StoreError> {
        self.with(move |c| start_sending(c, &batch)).await
    }

    async fn finish_many(&self, batch: Vec<Finish>) -> Result<Vec<bool>, StoreError> {
        self.with(move |c| finish_many(c, &batch)).await
    }
}

impl RunStore for SqliteStore {
    async fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let owner = owner.to_string();
        self.with(move |c| insert_many(c, &slots, RunState::Claimed, Some(&owner), now)).await
    }

    async fn start_sending(&self, keys: Vec<Key>, owner: &str) -> Result<Vec<bool>, StoreError> {
        self.writers.start_sending(self, keys, owner).await
    }

    async fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.writers.finish(self, Finish::new(schedule, slot, result, owner, now)).await
    }

    fn hurry(&self) {
        self.writers.hurry();
    }

    async fn release_missed(
        &self,
        keys: Vec<Key>,
        owner: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (owner, why) = (owner.to_string(), why.to_string());
        self.with(move |c| {
            let transaction = c.transaction()?;
            for (schedule, slot) in keys {
                transaction.execute(
                    "UPDATE runs SET state = 'missed', finished_at = $1, error = $2
                     WHERE schedule = $3 AND slot = $4 AND owner = $5 AND state = 'claimed'",
                    params![millis(now), why, schedule, millis(slot), owner],
                )?;
            }
            transaction.commit()
        })
        .await
    }

    async fn record_missed(&self, slots: Vec<Key>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let rows: Vec<_> = slots.into_iter().map(|(name, slot)| (name, slot, Reason::Schedule)).collect();
        self.with(move |c| insert_many(c, &rows, RunState::Missed, None, now).map(drop)).await
    }

    async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&schema::last_slots())?;
            statement.query_map([], |row| Ok((row.get::<_, String>(0)?, instant(row.get(1)?))))?.collect()
        })
        .await
    }

    async fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.with(|c| c.prepare(&schema::last_runs())?.query_map([], read_run)?.collect()).await
    }

    async fn schedule_names(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| c.prepare(&schema::schedule_names())?.query_map([], |row| row.get(0))?.collect()).await
    }

    async fn nth_newest(&self, schedule: &str, n: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (name, n) = (schedule.to_string(), i64::try_from(n).unwrap_or(i64::MAX));
        self.with(move |c| {
            let mut statement = c.prepare_cached(schema::NTH_NEWEST)?;
            statement.query_row(params![name, n], |row| row.get(0)).optional().map(|slot| slot.map(instant))
        })
        .await
    }

    async fn prune(&self, schedule: &str, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let (name, before, limit) = (schedule.to_string(), millis(before), i64::try_from(limit).unwrap_or(i64::MAX));
        self.with(move |c| c.prepare_cached(schema::PRUNE)?.execute(params![name, before, limit])).await
    }

    async fn history(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<Run>, StoreError> {
        // Two statements, not one with an OR: each then walks an index.
        if let Some(name) = schedule {
            return self.runs_before(name, None, limit).await;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let sql = schema::history();
            c.prepare(&sql)?.query_map(params![limit], read_run)?.collect()
        })
        .await
    }

    async fn runs_before(
        &self,
        schedule: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let (name, before) = (schedule.to_string(), before.map_or(i64::MAX, millis));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let sql = schema::runs_before();
            c.prepare_cached(&sql)?.query_map(params![name, before, limit], read_run)?.collect()
        })
        .await
    }

    async fn register(&self, replica: &Replica) -> Result<(), StoreError> {
        let replica = replica.clone();
        self.with(move |c| register(c, &replica)).await
    }

    async fn heartbeat(&self, replica: &Replica) -> Result<bool, StoreError> {
        let replica = replica.clone();
        self.with(move |c| heartbeat(c, &replica)).await
    }

    /// Both in one blocking call: an idle daemon wakes a blocking thread once a beat, not twice.
    async fn beat(&self, replica: &Replica, may_take_over: bool) -> Result<(bool, Vec<TakenOver>), StoreError> {
        let replica = replica.clone();
        self.with(move |c| {
            let renewed = heartbeat(c, &replica)?;
            let taken = if may_take_over { take_over(c, &replica)? } else { Vec::new() };
            Ok((renewed, taken))
        })
        .await
    }

    async fn deregister(&self, replica: &Replica) -> Result<(), StoreError> {
        let id = replica.id.clone();
        self.with(move |c| c.execute("DELETE FROM replicas WHERE id = $1", params![id]).map(drop)).await
    }

    async fn take_over(&self, me: &Replica) -> Result<Vec<TakenOver>, StoreError> {
        let me = me.clone();
        self.with(move |c| take_over(c, &me)).await
    }

    async fn live_replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT id, version, started, heartbeat FROM replicas WHERE heartbeat >= $1 - lease ORDER BY started",
            )?;
            let rows = statement.query_map(params![millis(Utc::now())], |r| {
                Ok(ReplicaRow {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    started: instant(r.get(2)?),
                    heartbeat: instant(r.get(3)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn clock(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }

    async fn export(&self, after: Option<Key>, limit: usize) -> Result<Vec<Run>, StoreError> {
        let (schedule, slot) = after.map_or((String::new(), i64::MIN), |(s, t)| (s, millis(t)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| c.prepare(&schema::export())?.query_map(params![slot, schedule, limit], read_run)?.collect())
            .await
    }

    async fn import(&self, runs: Vec<Run>) -> Result<usize, StoreError> {
        self.with(move |c| import(c, &runs)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as u64))
            .await
    }
}

/// The schema version of a SQLite file, for tests of migrations.
#[cfg(test)]
fn schema_version(path: &Path) -> Option<i64> {
    let connection = Connection::open(path).ok()?;
    connection.pragma_query_value(None, "user_version", |r| r.get(0)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_the_schema_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pipecron.db");
        drop(SqliteStore::open(&path).expect("creates"));
        drop(SqliteStore::open(&path).expect("reopens"));
        assert_eq!(schema_version(&path), Some(MIGRATIONS.len() as i64));
        let connection = Connection::open(&path).expect("opens");
        connection.pragma_update(None, "user_version", 99).expect("sets");
        drop(connection);
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }

    #[test]
    fn threads_opening_a_new_file_at_once_all_succeed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("new.db");
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(drop))
            })
            .collect();
        for open in opened {
            open.join().expect("joins").expect("opens");
        }
    }

    #[test]
    fn a_process_that_is_gone_is_not_alive() {
        assert!(pid_alive(i64::from(std::process::id())));
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let pid = i64::from(child.id());
        child.wait().expect("waits");
        assert!(!pid_alive(pid));
    }
}
