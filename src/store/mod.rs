//! The run history: one row per (schedule, slot), like GitLab's triggers overview, and the fence that keeps a slot
//! from being fired twice.
//!
//! A slot is claimed by an INSERT that fails when the row exists, before any request is sent; whoever inserts it
//! owns it, whether that is a daemon, `run-now`, or another replica on the same database. A row then moves, only
//! by its owner, from `claimed` to `sending` (just before the request goes out) to how it ended. Each process
//! registers as a replica and heartbeats; a live replica takes over the unfinished rows of a dead one: `claimed`
//! rows were provably never sent and are fired again, `sending` rows may have reached GitLab and become `unknown`.
//! No token is ever stored.

/// Runs the same call on whichever store this is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call.await,
            Store::Postgres($store) => $call.await,
        }
    };
}

mod follows;
mod location;
mod notices;
mod postgres;
mod postgres_tls;
mod schema;
mod tokens;

pub use schema::hot_queries;
mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use follows::{Follow, Follows, Look, Previous};
pub use location::StateLocation;
pub use notices::Notices;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use tokens::{TokenNote, TokenNotes};

use crate::batch::Batcher;
pub use crate::run::RunState;
use crate::run::{Pipeline, Reason, RunResult};

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
    /// The replica that claimed it (a replica id; `owner_name` shows it as HOST:PID).
    pub owner: Option<String>,
}

/// A process that claims slots: a daemon, or a `run-now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `HOST:PID:NONCE`: unique even when a container restarts as PID 1 on the same host name.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// The PID namespace the pid means something in: two containers on one host name each have a PID 1.
    pub pid_ns: String,
    /// Dead once its heartbeat is older than this. Each replica says its own, so that replicas (and `run-now`) with
    /// different leases judge each other right.
    pub lease: Duration,
}

impl Replica {
    pub fn this_process(lease: Duration) -> Replica {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let pid = std::process::id();
        let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
        let nonce: u32 = rand::random();
        Replica { id: format!("{host}:{pid}:{nonce:08x}"), host, pid, pid_ns, lease }
    }
}

/// A replica id as people read it: HOST:PID.
pub fn owner_name(id: &str) -> &str {
    id.rsplit_once(':').map_or(id, |(name, _)| name)
}

/// A registered replica, as `status` and `migrate-state` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaRow {
    pub id: String,
    pub version: String,
    pub started: DateTime<Utc>,
    pub heartbeat: DateTime<Utc>,
}

/// What a takeover of one dead replica found.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenOver {
    /// The dead replica's id.
    pub from: String,
    /// Its `claimed` rows, never sent, now owned by the replica that took them over.
    pub claimed: Vec<Run>,
    /// How many of its `sending` rows were recorded `unknown`.
    pub unknown: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the state database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the state database: {0}")]
    Query(String),
    #[error("the state database {location} is unreachable: {reason}")]
    Unreachable { location: String, reason: String },
    /// It answers, but cannot write: a full disk, an I/O error. Like an outage, it lasts until it is fixed.
    #[error("the state database cannot be written: {0}")]
    Unwritable(String),
    #[error(
        "the state database was written by a newer pipecron (schema {found}, this one knows {known}); upgrade pipecron"
    )]
    TooNew { found: i64, known: i64 },
}

/// A slot's key: (schedule, slot).
pub type Key = (String, DateTime<Utc>);

/// The run history. Each call is one committed transaction.
pub trait RunStore: Send + Sync {
    /// Claims many slots in one transaction for `owner`; `true` for each slot `owner` now holds `claimed`. Calling
    /// it again after an answer was lost is safe: what the first call won, the second reports won.
    fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Claims one slot. `Ok(false)`: someone already has it, so it must not be fired.
    fn claim(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        reason: Reason,
        owner: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let claimed = self.claim_many(vec![(schedule.to_string(), slot, reason)], owner, now);
        async move { Ok(claimed.await?.first().copied().unwrap_or(false)) }
    }

    /// Moves `owner`'s `claimed` rows to `sending`, in one statement; `false` for a row it no longer owns (taken
    /// over), whose request must then not be sent. A row `owner` already moved answers `true` again, so a call
    /// whose answer was lost can be repeated: the caller makes sure one process fires a slot once.
    fn start_sending(&self, keys: Vec<Key>, owner: &str) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Records how a run ended; `Ok(false)` if `owner` no longer owns it (it was taken over).
    fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        owner: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes the results gathered so far without waiting out the gathering time: a slot waits for a place in the
    /// pool that recording them will free.
    fn hurry(&self) {}

    /// Records `owner`'s `claimed` rows as `missed`, with why: slots taken over too late to fire.
    fn release_missed(
        &self,
        keys: Vec<Key>,
        owner: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records slots that passed while pipecron was down and were too old to catch up. A slot that already has a
    /// row keeps it: another replica may have fired it.
    fn record_missed(&self, slots: Vec<Key>, now: DateTime<Utc>)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest slot the schedule itself produced (fired, caught up or missed; not `run-now`), per schedule:
    /// where catch-up starts counting.
    fn last_slots(&self) -> impl Future<Output = Result<HashMap<String, DateTime<Utc>>, StoreError>> + Send;

    /// The newest run of each schedule.
    fn last_runs(&self) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;

    /// One schedule's runs older than `before` (all, without it), newest first: a page of its history.
    fn runs_before(
        &self,
        schedule: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;

    /// Past runs, newest first, of one schedule or of all.
    fn history(
        &self,
        schedule: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;

    /// The name of every schedule the history holds runs of, configured or not.
    fn schedule_names(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The slot of the schedule's run that has `n` newer runs, if it has that many: the newest run a cap of `n`
    /// runs would delete.
    fn nth_newest(
        &self,
        schedule: &str,
        n: u64,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Deletes up to `limit` of the schedule's finished runs older than `before`, oldest first; how many it did.
    /// The schedule's newest run is always kept.
    fn prune(
        &self,
        schedule: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Registers a replica, or renews it; its heartbeat is the database's now.
    fn register(&self, replica: &Replica) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Renews a replica's heartbeat. `Ok(false)`: others had presumed it dead and removed it; it is registered
    /// anew, and its unfinished rows are no longer its own.
    fn heartbeat(&self, replica: &Replica) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One beat of the lease: renews it and, if `take_over`, takes over dead replicas' rows; what `heartbeat` and
    /// `take_over` answer. A store may do both in one go, so that an idle replica wakes once a beat.
    fn beat(
        &self,
        replica: &Replica,
        take_over: bool,
    ) -> impl Future<Output = Result<(bool, Vec<TakenOver>), StoreError>> + Send {
        async move {
            let renewed = self.heartbeat(replica).await?;
            let taken = if take_over { self.take_over(replica).await? } else { Vec::new() };
            Ok((renewed, taken))
        }
    }

    /// Removes a replica that stops: its `claimed` rows are taken over at once by the next live replica.
    fn deregister(&self, replica: &Replica) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes over the unfinished rows of every replica whose heartbeat is older than its lease (or, on SQLite,
    /// whose process has gone from this host), and of owners no longer registered: `claimed` rows become `me`'s,
    /// `sending` rows become `unknown`.
    fn take_over(&self, me: &Replica) -> impl Future<Output = Result<Vec<TakenOver>, StoreError>> + Send;

    /// The replicas whose heartbeat is within their lease.
    fn live_replicas(&self) -> impl Future<Output = Result<Vec<ReplicaRow>, StoreError>> + Send;

    /// The database's own clock, read as close to the call as can be; `None` when it is this host's clock.
    fn clock(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Up to `limit` rows after `after` in (slot, schedule) order, as they are: for copying a history.
    fn export(&self, after: Option<Key>, limit: usize) -> impl Future<Output = Result<Vec<Run>, StoreError>> + Send;

    /// Inserts rows as they are, keeping any existing row; the number inserted.
    fn import(&self, runs: Vec<Run>) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// How many rows the history holds.
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// A store of either kind, as `--state` names it.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Opens the store `--state` names: a file path is SQLite, a `postgres://` URL is PostgreSQL. The schema is created
/// or migrated.
pub async fn open(location: &StateLocation) -> Result<Store, StoreError> {
    match location {
        StateLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path)?)),
        StateLocation::Postgres(url) => Ok(Store::Postgres(PostgresStore::open(url).await?)),
    }
}

impl RunStore for Store {
    async fn schedule_names(&self) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.schedule_names())
    }

    async fn nth_newest(&self, schedule: &str, n: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        each!(self, s => s.nth_newest(schedule, n))
    }

    async fn prune(&self, schedule: &str, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        each!(self, s => s.prune(schedule, before, limit))
    }

    fn hurry(&self) {
        match self {
            Store::Sqlite(s) => s.hurry(),
            Store::Postgres(s) => s.hurry(),
        }
    }

    async fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        each!(self, s => s.claim_many(slots, owner, now))
    }

    async fn start_sending(&self, keys: Vec<Key>, owner: &str) -> Result<Vec<bool>, StoreError> {
        each!(self, s => s.start_sending(keys, owner))
    }

    async fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.finish(schedule, slot, result, owner, now))
    }

    async fn release_missed(
        &self,
        keys: Vec<Key>,
        owner: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.release_missed(keys, owner, why, now))
    }

    async fn record_missed(&self, slots: Vec<Key>, now: DateTime<Utc>) -> Result<(), StoreError> {
        each!(self, s => s.record_missed(slots, now))
    }

    async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        each!(self, s => s.last_slots())
    }

    async fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        each!(self, s => s.last_runs())
    }

    async fn history(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<Run>, StoreError> {
        each!(self, s => s.history(schedule, limit))
    }

    async fn runs_before(
        &self,
        schedule: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        each!(self, s => s.runs_before(schedule, before, limit))
    }

    async fn register(&self, replica: &Replica) -> Result<(), StoreError> {
        each!(self, s => s.register(replica))
    }

    async fn heartbeat(&self, replica: &Replica) -> Result<bool, StoreError> {
        each!(self, s => s.heartbeat(replica))
    }

    async fn beat(&self, replica: &Replica, take_over: bool) -> Result<(bool, Vec<TakenOver>), StoreError> {
        each!(self, s => s.beat(replica, take_over))
    }

    async fn deregister(&self, replica: &Replica) -> Result<(), StoreError> {
        each!(self, s => s.deregister(replica))
    }

    async fn take_over(&self, me: &Replica) -> Result<Vec<TakenOver>, StoreError> {
        each!(self, s => s.take_over(me))
    }

    async fn live_replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        each!(self, s => s.live_replicas())
    }

    async fn clock(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        each!(self, s => s.clock())
    }

    async fn export(&self, after: Option<Key>, limit: usize) -> Result<Vec<Run>, StoreError> {
        each!(self, s => s.export(after, limit))
    }

    async fn import(&self, runs: Vec<Run>) -> Result<usize, StoreError> {
        each!(self, s => s.import(runs))
    }

    async fn count(&self) -> Result<u64, StoreError> {
        each!(self, s => s.count())
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// When a pipeline recorded at `now` is first polled: for one being followed, `FIRST_POLL` later; else never.
fn first_poll(pipeline: Option<&crate::run::Pipeline>, now: DateTime<Utc>) -> Option<i64> {
    let following = pipeline.and_then(|p| p.followed) == Some(crate::run::Followed::Following);
    following.then(|| millis(now) + lease_millis(crate::run::FIRST_POLL))
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// The lease of a replica unless `--lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// How long the result batches gather before they are written.
const GATHER: Duration = Duration::from_millis(10);
/// At most this many rows share one statement or transaction.
const BATCH: usize = 1000;

/// Moves slots to `sending`, a batch per statement: (keys, owner) → whether each moved.
type SendingBatcher = Batcher<(Vec<Key>, String), Result<Vec<bool>, StoreError>>;
/// Records results, a batch per transaction.
type FinishBatcher = Batcher<Finish, Result<bool, StoreError>>;

/// A run's result on its way to a store's writer.
struct Finish {
    key: Key,
    result: RunResult,
    owner: String,
    now: DateTime<Utc>,
}

/// What a store does with a batch of moves to `sending`, and with a batch of results.
trait WriteBatches: Clone + Send + Sync + 'static {
    /// How many batches of each kind may be written at once.
    const PARALLEL: usize;

    fn start_sending_many(
        &self,
        batch: Vec<(Vec<Key>, String)>,
    ) -> impl Future<Output = Result<Vec<Vec<bool>>, StoreError>> + Send;

    fn finish_many(&self, batch: Vec<Finish>) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;
}

/// A store's two writers, each gathering calls into batches (see `batch`): moves to `sending`, taken as they come,
/// and results, gathered for `GATHER` unless someone waits on them. Each starts on first use, on the runtime that
/// uses it.
#[derive(Clone, Default)]
struct Writers {
    sending: Arc<OnceLock<SendingBatcher>>,
    finishes: Arc<OnceLock<FinishBatcher>>,
}

impl Writers {
    async fn start_sending<W: WriteBatches>(
        &self,
        store: &W,
        keys: Vec<Key>,
        owner: &str,
    ) -> Result<Vec<bool>, StoreError> {
        let sending = self.sending.get_or_init(|| {
            let store = store.clone();
            Batcher::spawn(Duration::ZERO, BATCH, W::PARALLEL, move |batch: Vec<(Vec<Key>, String)>| {
                let (store, len) = (store.clone(), batch.len());
                async move { each_answer(store.start_sending_many(batch).await, len) }
            })
        });
        submit(sending, (keys, owner.to_string())).await
    }

    async fn finish<W: WriteBatches>(&self, store: &W, finish: Finish) -> Result<bool, StoreError> {
        let finishes = self.finishes.get_or_init(|| {
            let store = store.clone();
            Batcher::spawn(GATHER, BATCH, W::PARALLEL, move |batch: Vec<Finish>| {
                let (store, len) = (store.clone(), batch.len());
                async move { each_answer(store.finish_many(batch).await, len) }
            })
        });
        submit(finishes, finish).await
    }

    fn hurry(&self) {
        if let Some(finishes) = self.finishes.get() {
            finishes.hurry();
        }
    }
}

impl Finish {
    fn new(schedule: &str, slot: DateTime<Utc>, result: &RunResult, owner: &str, now: DateTime<Utc>) -> Finish {
        Finish { key: (schedule.to_string(), slot), result: result.clone(), owner: owner.to_string(), now }
    }
}

/// Hands an item to a store's batcher and waits for its answer.
async fn submit<I: Send + 'static, O: Send + 'static>(
    batcher: &Batcher<I, Result<O, StoreError>>,
    item: I,
) -> Result<O, StoreError> {
    batcher.submit(item).await.unwrap_or_else(|| Err(StoreError::Query("the store's writer has stopped".into())))
}

/// Answers every item of a batch: its own answer, or the batch's one error.
fn each_answer<T: Clone>(written: Result<Vec<T>, StoreError>, len: usize) -> Vec<Result<T, StoreError>> {
    match written {
        Ok(each) => each.into_iter().map(Ok).collect(),
        Err(error) => vec![Err(error); len],
    }
}
