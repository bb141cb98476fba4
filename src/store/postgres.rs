//! The run history in PostgreSQL, shared by several replicas on several machines.
//!
//! The unique key (schedule, slot) is the fence, as on SQLite. Heartbeats and leases are stamped with the
//! database's clock, never a replica's. A small pool of connections (deadpool) serves the loop, the results writer
//! and the heartbeat; each batch is one statement over `unnest` arrays, so a burst of slots costs one round trip.
//! The schema is migrated under an advisory lock, so that replicas starting together do not race.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::location::{PostgresUrl, SslMode};
use super::schema::{self, COLUMNS, MIGRATIONS, StoredRun, died_while_sending, unreadable_column};
use super::{
    Finish, Key, Replica, ReplicaRow, Run, RunState, RunStore, StoreError, TakenOver, WriteBatches, Writers,
    first_poll, instant, lease_millis, millis,
};
use crate::run::{Followed, Pipeline, Reason, RunResult};

/// The database's clock, in milliseconds since the epoch.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
/// Connections per replica: the loop's claims, the lease, and four batches each of results and of moves to
/// `sending` (`WriteBatches::PARALLEL`).
const POOL: usize = 10;
/// Advisory lock keys: one for migrations, one for takeovers.
const MIGRATION_LOCK: i64 = 0x7069_7065_6372_6f6e;
const TAKEOVER_LOCK: i64 = 0x7069_7065_6372_6f6f;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The URL, masked, for messages.
    location: Arc<str>,
    writers: Writers,
}

impl PostgresStore {
    /// Connects, and creates or migrates the schema.
    pub async fn open(url: &PostgresUrl) -> Result<Self, StoreError> {
        let location: Arc<str> = url.to_string().into();
        let open_error = |reason: String| StoreError::Open { path: location.to_string(), reason };
        let mut config: tokio_postgres::Config =
            url.expose().parse().map_err(|e: tokio_postgres::Error| open_error(e.to_string()))?;
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(30))
            .application_name("pipecron")
            .ssl_mode(match url.ssl_mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match url.ssl_mode {
            SslMode::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            _ => {
                let tls = super::postgres_tls::client_config(url).map_err(open_error)?;
                Manager::from_config(config, tokio_postgres_rustls::MakeRustlsConnect::new(tls), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let store = PostgresStore { pool, location, writers: Writers::default() };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unreachable { location: self.location.to_string(), reason: pool_error(&e) })
    }

    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.as_db_error().is_none() && e.code().is_none() {
            return StoreError::Unreachable { location: self.location.to_string(), reason: db_error(&e) };
        }
        StoreError::Query(db_error(&e))
    }

    /// Brings the schema up to date in one transaction, under an advisory lock that other replicas wait on.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        let steps = async {
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            transaction.batch_execute("CREATE TABLE IF NOT EXISTS pipecron_schema (version INTEGER NOT NULL)").await?;
            let found = transaction.query_opt("SELECT version FROM pipecron_schema", &[]).await?;
            let found = i64::from(found.map_or(0, |row| row.get::<_, i32>(0)));
            Ok::<_, tokio_postgres::Error>(found)
        };
        let found = steps.await.map_err(|e| self.error(e))?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        if found == known {
            return Ok(());
        }
        let steps = async {
            for sql in MIGRATIONS.iter().skip(found as usize) {
                transaction.batch_execute(sql).await?;
            }
            transaction.execute("DELETE FROM pipecron_schema", &[]).await?;
            transaction.execute("INSERT INTO pipecron_schema (version) VALUES ($1)", &[&(known as i32)]).await?;
            transaction.commit().await
        };
        steps.await.map_err(|e| self.error(e))
    }

    pub(super) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        // A connection the pool still holds may have died with a restart of the server: the first use finds out,
        // and one more try on a fresh connection tells a dead connection from a dead server.
        for _ in 0..2 {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await;
            match statement {
                Ok(statement) => match client.query(&statement, params).await {
                    Err(e) if e.is_closed() => continue,
                    other => return other.map_err(|e| self.error(e)),
                },
                Err(e) if e.is_closed() => continue,
                Err(e) => return Err(self.error(e)),
            }
        }
        let reason = "the connection closed, twice".to_string();
        Err(StoreError::Unreachable { location: self.location.to_string(), reason })
    }

    /// Runs an INSERT, UPDATE or DELETE through `query`, with its retry, and counts the rows it touched.
    pub(super) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let sql = format!("WITH done AS ({sql} RETURNING 1) SELECT COUNT(*) FROM done");
        let rows = self.query(&sql, params).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn sending_many(&self, batch: Vec<(Vec<Key>, String)>) -> Result<Vec<Vec<bool>>, StoreError> {
        let (mut names, mut slots, mut owners) = (Vec::new(), Vec::new(), Vec::new());
        for (keys, owner) in &batch {
            for (name, slot) in keys {
                names.push(name.as_str());
                slots.push(millis(*slot));
                owners.push(owner.as_str());
            }
        }
        let rows = self
            .query(
                "UPDATE runs r SET state = 'sending' FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(s, t, o)
                 WHERE r.schedule = k.s AND r.slot = k.t AND r.owner = k.o AND r.state IN ('claimed', 'sending')
                 RETURNING r.schedule, r.slot",
                &[&names, &slots, &owners],
            )
            .await?;
        let moved = keys_of(&rows);
        Ok(batch
            .iter()
            .map(|(keys, _)| keys.iter().map(|(n, s)| moved.contains(&(n.clone(), millis(*s)))).collect())
            .collect())
    }

    async fn finishes_many(&self, batch: Vec<Finish>) -> Result<Vec<bool>, StoreError> {
        let mut columns = FinishColumns::default();
        for finish in &batch {
            columns.push(finish);
        }
        let c = &columns;
        let rows = self
            .query(
                "UPDATE runs r SET state = k.state, attempts = k.attempts, finished_at = k.finished_at,
                        http_status = k.http_status, pipeline_id = k.pipeline_id, pipeline_iid = k.pipeline_iid,
                        pipeline_status = k.pipeline_status, web_url = k.web_url, error = k.error,
                        followed = k.followed, follow_at = k.follow_at
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::int[],
                             $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[],
                             $14::bigint[])
                      AS k(schedule, slot, owner, state, attempts, finished_at, http_status, pipeline_id,
                           pipeline_iid, pipeline_status, web_url, error, followed, follow_at)
                 WHERE r.schedule = k.schedule AND r.slot = k.slot AND r.owner = k.owner
                   AND r.state IN ('claimed', 'sending')
                 RETURNING r.schedule, r.slot",
                &[
                    &c.schedule,
                    &c.slot,
                    &c.owner,
                    &c.state,
                    &c.attempts,
                    &c.finished_at,
                    &c.http_status,
                    &c.pipeline.id,
                    &c.pipeline.iid,
                    &c.pipeline.status,
                    &c.pipeline.web_url,
                    &c.error,
                    &c.pipeline.followed,
                    &c.pipeline.follow_at,
                ],
            )
            .await?;
        let recorded = keys_of(&rows);
        Ok(batch.iter().map(|f| recorded.contains(&(f.key.0.clone(), millis(f.key.1)))).collect())
    }

    async fn take_over_in(&self, me: &Replica) -> Result<Vec<TakenOver>, StoreError> {
        let mut client = self.client().await?;
        let steps = async {
            let transaction = client.transaction().await?;
            // One takeover at a time: two survivors would otherwise lock the same rows in different orders. A
            // replica frozen inside its takeover must not hold the others up: they skip a round rather than wait,
            // and the server ends its transaction once it idles.
            transaction
                .batch_execute("SET LOCAL lock_timeout = '2s'; SET LOCAL idle_in_transaction_session_timeout = '10s'")
                .await?;
            let locked: bool =
                transaction.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&TAKEOVER_LOCK]).await?.get(0);
            if !locked {
                return Ok(Ok(Vec::new()));
            }
            let now: i64 = transaction.query_one(&format!("SELECT {DB_NOW}"), &[]).await?.get(0);
            let owners = transaction
                .query(
                    "SELECT DISTINCT owner FROM runs WHERE state IN ('claimed', 'sending') AND owner <> $1
                     AND owner NOT IN (SELECT id FROM replicas WHERE heartbeat >= $2 - lease)",
                    &[&me.id, &now],
                )
                .await?;
            let mut taken = Vec::new();
            for owner in owners.iter().map(|r| r.get::<_, String>(0)) {
                let unknown = transaction
                    .execute(
                        "UPDATE runs SET state = 'unknown', finished_at = $1, error = $2
                         WHERE owner = $3 AND state = 'sending'",
                        &[&now, &died_while_sending(&owner), &owner],
                    )
                    .await?;
                let sql =
                    format!("UPDATE runs SET owner = $1 WHERE owner = $2 AND state = 'claimed' RETURNING {COLUMNS}");
                // A row it cannot read ends the takeover uncommitted: nothing is taken over half.
                let claimed = match read_runs(&transaction.query(&sql, &[&me.id, &owner]).await?) {
                    Ok(claimed) => claimed,
                    Err(unreadable) => return Ok(Err(unreadable)),
                };
                taken.push(TakenOver { from: owner, claimed, unknown: unknown as usize });
            }
            let stale = "DELETE FROM replicas WHERE heartbeat < $1 - lease AND id <> $2";
            transaction.execute(stale, &[&now, &me.id]).await?;
            transaction.commit().await?;
            Ok::<_, tokio_postgres::Error>(Ok(taken))
        };
        steps.await.map_err(|e| self.error(e))?
    }
}

/// The columns of a batch of results, as arrays for `unnest`.
#[derive(Default)]
struct FinishColumns {
    schedule: Vec<String>,
    slot: Vec<i64>,
    owner: Vec<String>,
    state: Vec<&'static str>,
    attempts: Vec<i32>,
    finished_at: Vec<i64>,
    http_status: Vec<Option<i32>>,
    pipeline: PipelineColumns,
    error: Vec<Option<String>>,
}

/// A pipeline's columns, as arrays for `unnest`.
#[derive(Default)]
struct PipelineColumns {
    id: Vec<Option<i64>>,
    iid: Vec<Option<i64>>,
    status: Vec<Option<String>>,
    web_url: Vec<Option<String>>,
    finished_at: Vec<Option<i64>>,
    duration: Vec<Option<i64>>,
    followed: Vec<Option<&'static str>>,
    note: Vec<Option<String>>,
    follow_at: Vec<Option<i64>>,
}

impl PipelineColumns {
    /// A pipeline recorded at `now`.
    fn push(&mut self, pipeline: Option<&Pipeline>, now: DateTime<Utc>) {
        self.id.push(pipeline.map(|p| p.id as i64));
        self.iid.push(pipeline.and_then(|p| p.iid).map(|i| i as i64));
        self.status.push(pipeline.map(|p| storable(&p.status)));
        self.web_url.push(pipeline.and_then(|p| p.web_url.as_deref().map(storable)));
        self.finished_at.push(pipeline.and_then(|p| p.finished_at).map(millis));
        self.duration.push(pipeline.and_then(|p| p.duration).map(|d| d as i64));
        self.followed.push(pipeline.and_then(|p| p.followed).map(Followed::as_str));
        self.note.push(pipeline.and_then(|p| p.note.as_deref().map(storable)));
        self.follow_at.push(first_poll(pipeline, now));
    }
}

impl FinishColumns {
    fn push(&mut self, Finish { key: (schedule, slot), result, owner, now }: &Finish) {
        self.schedule.push(schedule.clone());
        self.slot.push(millis(*slot));
        self.owner.push(owner.clone());
        self.state.push(RunState::from(result.ending).as_str());
        self.attempts.push(i32::try_from(result.attempts).unwrap_or(i32::MAX));
        self.finished_at.push(millis(*now));
        self.http_status.push(result.http_status.map(i32::from));
        self.pipeline.push(result.pipeline.as_ref(), *now);
        self.error.push(result.error.as_deref().map(storable));
    }
}

/// Text as PostgreSQL takes it: GitLab's answer (or a proxy's) may hold NUL characters, which a TEXT column refuses,
/// and a result that can never be written would leave its row `sending` for ever.
fn storable(text: &str) -> String {
    text.replace('\0', "")
}

fn keys_of(rows: &[Row]) -> HashSet<(String, i64)> {
    rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect()
}

/// Reads a row of `runs` (see `StoredRun::read`): a row it cannot read is an error that names it.
fn read_run(row: &Row) -> Result<Run, StoreError> {
    let schedule: String = column(row, 0, "a row")?;
    let at = format!("row ({schedule}, …)");
    let stored = StoredRun {
        slot: column(row, 1, &at)?,
        reason: column(row, 2, &at)?,
        state: column(row, 3, &at)?,
        attempts: column::<i32>(row, 4, &at)?.into(),
        started_at: column(row, 5, &at)?,
        finished_at: column(row, 6, &at)?,
        http_status: column::<Option<i32>>(row, 7, &at)?.map(i64::from),
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
    stored.read().map_err(StoreError::Query)
}

/// Rows of `runs`, each read by `read_run`; the first that cannot be read is the error.
fn read_runs(rows: &[Row]) -> Result<Vec<Run>, StoreError> {
    rows.iter().map(read_run).collect()
}

/// Column `index` of the row `at` names, as a `T`.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize, at: &str) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| StoreError::Query(unreadable_column(index, at, e)))
}

/// A driver error as a person reads it: the server's own message where there is one.
fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        deadpool_postgres::PoolError::Timeout(_) => "no connection within the time allowed".into(),
        other => other.to_string(),
    }
}

/// A pool of connections: several batches at once, which the server commits together.
impl WriteBatches for PostgresStore {
    const PARALLEL: usize = 4;

    async fn start_sending_many(&self, batch: Vec<(Vec<Key>, String)>) -> Result<Vec<Vec<bool>>, StoreError> {
        self.sending_many(batch).await
    }

    async fn finish_many(&self, batch: Vec<Finish>) -> Result<Vec<bool>, StoreError> {
        self.finishes_many(batch).await
    }
}

impl RunStore for PostgresStore {
    async fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let names: Vec<&str> = slots.iter().map(|(n, _, _)| n.as_str()).collect();
        let times: Vec<i64> = slots.iter().map(|(_, t, _)| millis(*t)).collect();
        let reasons: Vec<&str> = slots.iter().map(|(_, _, r)| r.as_str()).collect();
        let rows = self
            .query(
                "WITH k AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(s, t, r)),
                 won AS (INSERT INTO runs (schedule, slot, reason, state, attempts, started_at, owner)
                         SELECT s, t, r, 'claimed', 0, $4, $5 FROM k ORDER BY s, t
                         ON CONFLICT DO NOTHING RETURNING schedule, slot)
                 SELECT schedule, slot FROM won
                 UNION ALL
                 SELECT r.schedule, r.slot FROM runs r JOIN k ON r.schedule = k.s AND r.slot = k.t
                 WHERE r.owner = $5 AND r.state = 'claimed'",
                &[&names, &times, &reasons, &millis(now), &owner],
            )
            .await?;
        let won = keys_of(&rows);
        Ok(slots.iter().map(|(n, t, _)| won.contains(&(n.clone(), millis(*t)))).collect())
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
        let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
        let slots: Vec<i64> = keys.iter().map(|(_, t)| millis(*t)).collect();
        self.execute(
            "UPDATE runs r SET state = 'missed', finished_at = $3, error = $4
             FROM unnest($1::text[], $2::bigint[]) AS k(s, t)
             WHERE r.schedule = k.s AND r.slot = k.t AND r.owner = $5 AND r.state = 'claimed'",
            &[&names, &slots, &millis(now), &why, &owner],
        )
        .await
        .map(drop)
    }

    async fn record_missed(&self, slots: Vec<Key>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let names: Vec<&str> = slots.iter().map(|(n, _)| n.as_str()).collect();
        let times: Vec<i64> = slots.iter().map(|(_, t)| millis(*t)).collect();
        self.execute(
            "INSERT INTO runs (schedule, slot, reason, state, attempts, finished_at)
             SELECT s, t, 'schedule', 'missed', 0, $3 FROM unnest($1::text[], $2::bigint[]) AS k(s, t)
             ORDER BY s, t
             ON CONFLICT DO NOTHING",
            &[&names, &times, &millis(now)],
        )
        .await
        .map(drop)
    }

    async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows = self.query(&schema::last_slots(), &[]).await?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), instant(r.get(1)))).collect())
    }

    async fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        read_runs(&self.query(&schema::last_runs(), &[]).await?)
    }

    async fn schedule_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.query(&schema::schedule_names(), &[]).await?.iter().map(|r| r.get(0)).collect())
    }

    async fn nth_newest(&self, schedule: &str, n: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self.query(schema::NTH_NEWEST, &[&schedule, &n]).await?;
        Ok(rows.first().map(|r| instant(r.get(0))))
    }

    async fn prune(&self, schedule: &str, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let (before, limit) = (millis(before), i64::try_from(limit).unwrap_or(i64::MAX));
        let deleted = self.execute(schema::PRUNE, &[&schedule, &before, &limit]).await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn history(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<Run>, StoreError> {
        // Two statements, not one with an OR: each then walks an index.
        if let Some(name) = schedule {
            return self.runs_before(name, None, limit).await;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = schema::history();
        read_runs(&self.query(&sql, &[&limit]).await?)
    }

    async fn runs_before(
        &self,
        schedule: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let (before, limit) = (before.map_or(i64::MAX, millis), i64::try_from(limit).unwrap_or(i64::MAX));
        let sql = schema::runs_before();
        read_runs(&self.query(&sql, &[&schedule, &before, &limit]).await?)
    }

    async fn register(&self, replica: &Replica) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO replicas (id, host, pid, pid_ns, version, started, heartbeat, lease)
             VALUES ($1, $2, $3, $4, $5, {DB_NOW}, {DB_NOW}, $6) ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat"
        );
        let (pid, lease) = (i64::from(replica.pid), lease_millis(replica.lease));
        let version = env!("CARGO_PKG_VERSION");
        self.execute(&sql, &[&replica.id, &replica.host, &pid, &replica.pid_ns, &version, &lease]).await.map(drop)
    }

    async fn heartbeat(&self, replica: &Replica) -> Result<bool, StoreError> {
        let renewed =
            self.execute(&format!("UPDATE replicas SET heartbeat = {DB_NOW} WHERE id = $1"), &[&replica.id]).await?;
        if renewed == 0 {
            self.register(replica).await?;
        }
        Ok(renewed == 1)
    }

    async fn deregister(&self, replica: &Replica) -> Result<(), StoreError> {
        self.execute("DELETE FROM replicas WHERE id = $1", &[&replica.id]).await.map(drop)
    }

    async fn take_over(&self, me: &Replica) -> Result<Vec<TakenOver>, StoreError> {
        self.take_over_in(me).await
    }

    async fn live_replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        let sql = format!(
            "SELECT id, version, started, heartbeat FROM replicas WHERE heartbeat >= {DB_NOW} - lease ORDER BY started"
        );
        let rows = self.query(&sql, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| ReplicaRow {
                id: r.get(0),
                version: r.get(1),
                started: instant(r.get(2)),
                heartbeat: instant(r.get(3)),
            })
            .collect())
    }

    async fn clock(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self.query("SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint", &[]).await?;
        let micros: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
        Ok(DateTime::from_timestamp_micros(micros))
    }

    async fn export(&self, after: Option<Key>, limit: usize) -> Result<Vec<Run>, StoreError> {
        let (schedule, slot) = after.map_or((String::new(), i64::MIN), |(s, t)| (s, millis(t)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        read_runs(&self.query(&schema::export(), &[&slot, &schedule, &limit]).await?)
    }

    async fn import(&self, runs: Vec<Run>) -> Result<usize, StoreError> {
        let mut c = ImportColumns::default();
        for run in &runs {
            c.push(run);
        }
        let inserted = self
            .execute(
                &format!(
                    "INSERT INTO runs ({COLUMNS}, follow_at)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[],
                                          $7::bigint[], $8::int[], $9::bigint[], $10::bigint[], $11::text[],
                                          $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[],
                                          $17::text[], $18::text[], $19::bigint[])
                     ON CONFLICT DO NOTHING"
                ),
                &[
                    &c.schedule,
                    &c.slot,
                    &c.reason,
                    &c.state,
                    &c.attempts,
                    &c.started_at,
                    &c.finished_at,
                    &c.http_status,
                    &c.pipeline.id,
                    &c.pipeline.iid,
                    &c.pipeline.status,
                    &c.pipeline.web_url,
                    &c.error,
                    &c.owner,
                    &c.pipeline.finished_at,
                    &c.pipeline.duration,
                    &c.pipeline.followed,
                    &c.pipeline.note,
                    &c.pipeline.follow_at,
                ],
            )
            .await?;
        Ok(inserted as usize)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT COUNT(*) FROM runs", &[]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }
}

/// Whole runs as arrays for `unnest`, for copying a history.
#[derive(Default)]
struct ImportColumns {
    schedule: Vec<String>,
    slot: Vec<i64>,
    reason: Vec<&'static str>,
    state: Vec<&'static str>,
    attempts: Vec<i32>,
    started_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
    http_status: Vec<Option<i32>>,
    pipeline: PipelineColumns,
    error: Vec<Option<String>>,
    owner: Vec<Option<String>>,
}

impl ImportColumns {
    fn push(&mut self, run: &Run) {
        self.schedule.push(run.schedule.clone());
        self.slot.push(millis(run.slot));
        self.reason.push(run.reason.as_str());
        self.state.push(run.state.as_str());
        self.attempts.push(i32::try_from(run.attempts).unwrap_or(i32::MAX));
        self.started_at.push(run.started_at.map(millis));
        self.finished_at.push(run.finished_at.map(millis));
        self.http_status.push(run.http_status.map(i32::from));
        self.pipeline.push(run.pipeline.as_ref(), Utc::now());
        self.error.push(run.error.as_deref().map(storable));
        self.owner.push(run.owner.clone());
    }
}
