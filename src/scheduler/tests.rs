//! The loop on paused tokio time, with an injected clock and trigger and a real SQLite file. Nothing sleeps for real.

use std::sync::Mutex;

use chrono::TimeZone;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::clock::TokioClock;
use crate::store::{Key, RunState, SqliteStore};
use crate::trigger::{Attempt, Pipeline, TriggerRequest};

/// Answers every request with a new pipeline (or hangs), noting what was sent and when.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String, tokio::time::Instant)>>,
    hang: bool,
}

impl Trigger for Recorder {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        let slot = request.variables.get("PIPECRON_SLOT").cloned().unwrap_or_default();
        let id = {
            let mut sent = self.sent.lock().expect("not poisoned");
            sent.push((request.schedule.clone(), slot, tokio::time::Instant::now()));
            sent.len() as u64
        };
        if self.hang {
            std::future::pending::<()>().await;
        }
        Attempt::Created(Pipeline::created(id, None, "created", None))
    }
}

impl Recorder {
    fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().expect("not poisoned").iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
    }
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("valid")
}

/// Schedules from a YAML body under `schedules:`, all on one fake GitLab.
fn schedules(body: &str) -> Vec<Arc<Schedule>> {
    crate::config::tests::schedules(body)
}

/// A store that can be made unreachable, as a database that goes away, or unwritable, as one on a full disk.
struct Flaky {
    store: SqliteStore,
    down: std::sync::atomic::AtomicBool,
    full: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }

    fn set_full(&self, full: bool) {
        self.full.store(full, std::sync::atomic::Ordering::Relaxed);
    }

    fn check(&self, writes: bool) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unreachable { location: "test".into(), reason: "down".into() });
        }
        match writes && self.full.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(StoreError::Unwritable("database or disk is full".into())),
            false => Ok(()),
        }
    }
}

/// Each call fails while the store is down (a write, also while it is full), and goes through to SQLite otherwise.
macro_rules! through {
    ($self:ident . $call:ident ( $($arg:expr),* )) => {{
        $self.check(true)?;
        $self.store.$call($($arg),*).await
    }};
    (read $self:ident . $call:ident ( $($arg:expr),* )) => {{
        $self.check(false)?;
        $self.store.$call($($arg),*).await
    }};
}

impl RunStore for Flaky {
    async fn claim_many(
        &self,
        slots: Vec<(String, DateTime<Utc>, Reason)>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        through!(self.claim_many(slots, owner, now))
    }
    async fn start_sending(&self, keys: Vec<Key>, owner: &str) -> Result<Vec<bool>, StoreError> {
        through!(self.start_sending(keys, owner))
    }
    async fn finish(
        &self,
        schedule: &str,
        slot: DateTime<Utc>,
        result: &RunResult,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        through!(self.finish(schedule, slot, result, owner, now))
    }
    async fn release_missed(
        &self,
        keys: Vec<Key>,
        owner: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        through!(self.release_missed(keys, owner, why, now))
    }
    async fn record_missed(&self, slots: Vec<Key>, now: DateTime<Utc>) -> Result<(), StoreError> {
        through!(self.record_missed(slots, now))
    }
    async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        through!(read self.last_slots())
    }
    async fn last_runs(&self) -> Result<Vec<Run>, StoreError> {
        through!(read self.last_runs())
    }
    async fn history(&self, schedule: Option<&str>, limit: usize) -> Result<Vec<Run>, StoreError> {
        through!(read self.history(schedule, limit))
    }
    async fn runs_before(
        &self,
        schedule: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        through!(read self.runs_before(schedule, before, limit))
    }
    async fn schedule_names(&self) -> Result<Vec<String>, StoreError> {
        through!(read self.schedule_names())
    }
    async fn nth_newest(&self, schedule: &str, n: u64) -> Result<Option<DateTime<Utc>>, StoreError> {
        through!(read self.nth_newest(schedule, n))
    }
    async fn prune(&self, schedule: &str, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        through!(self.prune(schedule, before, limit))
    }
    async fn register(&self, replica: &Replica) -> Result<(), StoreError> {
        through!(self.register(replica))
    }
    async fn heartbeat(&self, replica: &Replica) -> Result<bool, StoreError> {
        through!(self.heartbeat(replica))
    }
    async fn deregister(&self, replica: &Replica) -> Result<(), StoreError> {
        through!(self.deregister(replica))
    }
    async fn take_over(&self, me: &Replica) -> Result<Vec<TakenOver>, StoreError> {
        through!(self.take_over(me))
    }
    async fn live_replicas(&self) -> Result<Vec<crate::store::ReplicaRow>, StoreError> {
        through!(read self.live_replicas())
    }
    fn hurry(&self) {
        self.store.hurry()
    }
    async fn clock(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        through!(read self.clock())
    }
    async fn export(&self, after: Option<Key>, limit: usize) -> Result<Vec<Run>, StoreError> {
        through!(read self.export(after, limit))
    }
    async fn import(&self, runs: Vec<Run>) -> Result<usize, StoreError> {
        through!(self.import(runs))
    }
    async fn count(&self) -> Result<u64, StoreError> {
        through!(read self.count())
    }
}

struct Harness {
    dir: tempfile::TempDir,
    store: Arc<Flaky>,
    trigger: Arc<Recorder>,
    clock: Arc<TokioClock>,
    reloads: mpsc::Sender<Vec<Arc<Schedule>>>,
    shutdown: Option<oneshot::Sender<()>>,
    fired: mpsc::UnboundedReceiver<Fired>,
    /// A listener of every event, as the daemon's metrics listen.
    metrics: Arc<crate::metrics::Metrics>,
    task: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
}

impl Harness {
    async fn start(
        list: Vec<Arc<Schedule>>,
        options: Options,
        trigger: Recorder,
        seed: &[(&str, DateTime<Utc>)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("opens");
        let store = Arc::new(Flaky { store, down: Default::default(), full: Default::default() });
        for (name, slot) in seed {
            assert!(store.claim(name, *slot, Reason::Schedule, "seed", *slot).await.expect("claims"));
            let done = RunResult { ending: Ending::Succeeded, ..RunResult::unanswered(Ending::Succeeded, None) };
            assert!(store.finish(name, *slot, &done, "seed", *slot).await.expect("finishes"));
        }
        let clock = Arc::new(TokioClock::starting_at(start_time()));
        let trigger = Arc::new(trigger);
        let mut scheduler = Scheduler::new(store.clone(), trigger.clone(), clock.clone(), options);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        scheduler.publish_to(crate::events::Events::new(vec![metrics.clone()]));
        let (fired_tx, fired) = mpsc::unbounded_channel();
        scheduler.report_to(fired_tx);
        let (reloads, reload_rx) = mpsc::channel(4);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let task = tokio::spawn(scheduler.run(list, reload_rx, async move {
            let _ = shutdown_rx.await;
        }));
        Harness { dir, store, trigger, clock, reloads, shutdown: Some(shutdown), fired, metrics, task }
    }

    /// Waits for `n` fired slots.
    async fn next(&mut self, n: usize) -> Vec<Fired> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.fired.recv().await.expect("the scheduler runs"));
        }
        out
    }

    /// The value of one series of the metrics, as `/metrics` renders it: `name{labels}`.
    fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics.render();
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.await.expect("joins").expect("runs cleanly");
        self.dir
    }
}

fn slot(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, m, s).single().expect("valid")
}

#[tokio::test(start_paused = true)]
async fn slots_fire_in_due_order_and_on_time() {
    let list = schedules("  late:\n    cron: \"10 * * * * *\"\n  early:\n    cron: \"5 * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    let fired = h.next(4).await;
    let order: Vec<(&str, DateTime<Utc>)> = fired.iter().map(|f| (f.schedule.as_str(), f.slot)).collect();
    assert_eq!(
        order,
        [("early", slot(12, 0, 5)), ("late", slot(12, 0, 10)), ("early", slot(12, 1, 5)), ("late", slot(12, 1, 10))]
    );
    assert!(fired.iter().all(|f| f.lateness_ms == 0 && f.reason == Reason::Schedule), "{fired:?}");
    assert!(fired.iter().all(|f| f.result.ending == Ending::Succeeded));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn thousands_due_at_one_instant_each_fire_exactly_once() {
    let body: String = (0..3000).map(|i| format!("  job-{i}:\n    cron: \"0 * * * * *\"\n")).collect();
    let mut h = Harness::start(schedules(&body), Options::default(), Recorder::default(), &[]).await;
    let fired = h.next(3000).await;
    assert!(fired.iter().all(|f| f.slot == slot(12, 1, 0)));
    let mut names: Vec<&str> = fired.iter().map(|f| f.schedule.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3000);
    let trigger = h.trigger.clone();
    let store = h.store.clone();
    h.stop().await;
    assert_eq!(trigger.sent().len(), 3000);
    let runs = store.history(None, 5000).await.expect("reads");
    assert_eq!(runs.len(), 3000);
    assert!(runs.iter().all(|r| r.state == RunState::Succeeded));
}

#[tokio::test(start_paused = true)]
async fn the_newest_missed_slot_is_caught_up_once_and_the_rest_recorded_missed() {
    let list = schedules(
        "  hourly:\n    cron: \"30 * * * *\"\n    catch_up: 1h\n  strict:\n    cron: \"30 * * * *\"\n    catch_up: 0\n  new:\n    cron: \"30 * * * *\"\n",
    );
    // Both ran at 08:30, then pipecron was down until 12:00: 09:30, 10:30 and 11:30 were missed.
    let seed = [("hourly", slot(8, 30, 0)), ("strict", slot(8, 30, 0))];
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &seed).await;
    let fired = h.next(1).await;
    assert_eq!(
        (fired[0].schedule.as_str(), fired[0].slot, fired[0].reason),
        ("hourly", slot(11, 30, 0), Reason::CatchUp)
    );
    let store = h.store.clone();
    let trigger = h.trigger.clone();
    h.stop().await;
    assert_eq!(trigger.sent(), [("hourly".to_string(), "2026-11-24T11:30:00Z".to_string())]);
    let missed = |name: &str| {
        let store = store.clone();
        let name = name.to_string();
        async move {
            let runs = store.history(Some(&name), 10).await.expect("reads");
            runs.iter().filter(|r| r.state == RunState::Missed).map(|r| r.slot).collect::<Vec<_>>()
        }
    };
    assert_eq!(missed("hourly").await, [slot(10, 30, 0), slot(9, 30, 0)]);
    assert_eq!(missed("strict").await, [slot(11, 30, 0), slot(10, 30, 0), slot(9, 30, 0)]);
    assert!(
        store.history(Some("new"), 10).await.expect("reads").is_empty(),
        "a schedule that never ran is not caught up"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_within_its_bound_and_history_keeps_the_slot() {
    let list = schedules("  spread:\n    cron: \"0 * * * * *\"\n    jitter: 20s\n");
    let t0 = tokio::time::Instant::now();
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    let fired = h.next(20).await;
    let sent = h.trigger.sent.lock().expect("not poisoned").clone();
    let mut delays = Vec::new();
    for (f, (_, slot_text, at)) in fired.iter().zip(&sent) {
        let wall = start_time() + chrono::Duration::from_std(*at - t0).expect("small");
        assert_eq!(
            slot_text,
            &crate::trigger::request::slot_text(f.slot),
            "the request carries the slot, not the delay"
        );
        let delay = wall - f.slot;
        assert!(delay >= chrono::Duration::zero() && delay <= chrono::Duration::seconds(20), "{delay}");
        delays.push(delay);
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 10, "the delays are random: {delays:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_swaps_schedules_without_backfilling() {
    let list = schedules(
        "  keep:\n    cron: \"0 * * * * *\"\n  drop:\n    cron: \"0 * * * * *\"\n  change:\n    cron: \"0 0 * * *\"\n",
    );
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    assert_eq!(h.next(2).await.len(), 2);
    // At 12:01:00: `drop` goes, `change` becomes every minute (from now: no backfill of 00:00), `added` comes.
    let new = schedules(
        "  keep:\n    cron: \"0 * * * * *\"\n  change:\n    cron: \"30 * * * * *\"\n  added:\n    cron: \"45 * * * * *\"\n",
    );
    h.reloads.send(new).await.expect("the scheduler listens");
    let fired = h.next(4).await;
    let order: Vec<(&str, DateTime<Utc>)> = fired.iter().map(|f| (f.schedule.as_str(), f.slot)).collect();
    assert_eq!(
        order,
        [
            ("change", slot(12, 1, 30)),
            ("added", slot(12, 1, 45)),
            ("keep", slot(12, 2, 0)),
            ("change", slot(12, 2, 30))
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_grace_period_then_records_unknown() {
    let list = schedules("  stuck:\n    cron: \"0 * * * * *\"\n");
    let options = Options { shutdown_grace: Duration::from_secs(25), ..Options::default() };
    let h = Harness::start(list, options, Recorder { hang: true, ..Recorder::default() }, &[]).await;
    while h.trigger.sent().is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stopping = tokio::time::Instant::now();
    let store = h.store.clone();
    let dir = h.stop().await;
    assert!(
        stopping.elapsed() >= Duration::from_secs(25) && stopping.elapsed() < Duration::from_secs(27),
        "{:?}",
        stopping.elapsed()
    );
    let runs = store.history(Some("stuck"), 5).await.expect("reads");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Unknown);
    assert!(runs[0].error.as_deref().is_some_and(|e| e.contains("stopped before GitLab answered")));
    drop(dir);
}

#[tokio::test(start_paused = true)]
async fn a_clock_step_fires_the_newest_slot_once_and_records_the_skipped_ones() {
    let list = schedules("  minutely:\n    cron: \"0 * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    assert_eq!(h.next(1).await[0].slot, slot(12, 1, 0));
    // NTP steps the clock 10 minutes ahead at 12:01:30; the loop, asleep until 12:02:00 by the old reading, wakes
    // 30 s later at 12:12:00 by the new one.
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.clock.step(chrono::Duration::minutes(10));
    let fired = h.next(2).await;
    let slots: Vec<DateTime<Utc>> = fired.iter().map(|f| f.slot).collect();
    assert_eq!(slots, [slot(12, 12, 0), slot(12, 13, 0)]);
    let (store, trigger) = (h.store.clone(), h.trigger.clone());
    h.stop().await;
    let runs = store.history(Some("minutely"), 50).await.expect("reads");
    let missed = runs.iter().filter(|r| r.state == RunState::Missed).count();
    assert_eq!(missed, 10, "12:02 to 12:11 were skipped by the step: {runs:?}");
    // Each slot was sent once, as GitLab would count them: the history cannot show a second send, since it holds
    // one row per slot.
    let sent: Vec<String> = trigger.sent().into_iter().map(|(_, slot)| slot).collect();
    assert_eq!(sent, ["2026-11-24T12:01:00Z", "2026-11-24T12:12:00Z", "2026-11-24T12:13:00Z"]);
}

#[tokio::test(start_paused = true)]
async fn a_step_back_fires_nothing_twice() {
    let list = schedules("  minutely:\n    cron: \"0 * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    assert_eq!(h.next(1).await[0].slot, slot(12, 1, 0));
    h.clock.step(chrono::Duration::minutes(-5));
    let fired = h.next(2).await;
    let slots: Vec<DateTime<Utc>> = fired.iter().map(|f| f.slot).collect();
    assert_eq!(slots, [slot(12, 2, 0), slot(12, 3, 0)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn while_the_store_is_away_nothing_is_fired_and_then_the_newest_slot_is_caught_up() {
    let list = schedules("  minutely:\n    cron: \"0 * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    assert_eq!(h.next(1).await[0].slot, slot(12, 1, 0));
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.store.set_down(true);
    // 12:02, 12:03 and 12:04 pass without a claim.
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(h.trigger.sent().len(), 1, "nothing is fired without a claim");
    h.store.set_down(false);
    let fired = h.next(2).await;
    let slots: Vec<DateTime<Utc>> = fired.iter().map(|f| f.slot).collect();
    assert_eq!(slots, [slot(12, 4, 0), slot(12, 5, 0)]);
    let store = h.store.clone();
    h.stop().await;
    let runs = store.history(Some("minutely"), 10).await.expect("reads");
    let states: Vec<(DateTime<Utc>, RunState)> = runs.iter().map(|r| (r.slot, r.state)).collect();
    assert_eq!(
        states,
        [
            (slot(12, 5, 0), RunState::Succeeded),
            (slot(12, 4, 0), RunState::Succeeded),
            (slot(12, 3, 0), RunState::Missed),
            (slot(12, 2, 0), RunState::Missed),
            (slot(12, 1, 0), RunState::Succeeded)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_replicas_unsent_slots_are_fired_and_its_sending_ones_left_unknown() {
    let list = schedules("  five:\n    cron: \"5 * * * * *\"\n    catch_up: 1h\n");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).expect("opens");
    let dead = "gone-host:42:0";
    for at in [slot(11, 59, 5), slot(11, 58, 5), slot(10, 0, 5)] {
        assert!(store.claim("five", at, Reason::Schedule, dead, at).await.expect("claims"));
    }
    store.start_sending(vec![("five".into(), slot(11, 58, 5))], dead).await.expect("moves");
    drop(store);

    let store = Arc::new(SqliteStore::open(&path).expect("opens"));
    let trigger = Arc::new(Recorder::default());
    let clock = Arc::new(TokioClock::starting_at(start_time()));
    let mut scheduler = Scheduler::new(store.clone(), trigger.clone(), clock, Options::default());
    let (fired_tx, mut fired) = mpsc::unbounded_channel();
    scheduler.report_to(fired_tx);
    let (_reloads, reload_rx) = mpsc::channel(4);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(list, reload_rx, async move {
        let _ = stop_rx.await;
    }));
    let first = fired.recv().await.expect("fires");
    assert_eq!((first.slot, first.reason), (slot(11, 59, 5), Reason::Schedule), "the unsent slot, on time");
    assert_eq!(fired.recv().await.expect("fires").slot, slot(12, 0, 5));
    let _ = stop.send(());
    task.await.expect("joins").expect("runs");
    let sent: Vec<String> = trigger.sent().into_iter().map(|(_, s)| s).collect();
    assert_eq!(sent, ["2026-11-24T11:59:05Z", "2026-11-24T12:00:05Z"], "the sending one is never sent again");
    let runs = store.history(Some("five"), 10).await.expect("reads");
    let state = |at: DateTime<Utc>| runs.iter().find(|r| r.slot == at).map(|r| (r.state, r.error.clone()));
    assert_eq!(state(slot(11, 59, 5)).map(|s| s.0), Some(RunState::Succeeded));
    let (unknown, why) = state(slot(11, 58, 5)).expect("a row");
    assert_eq!(unknown, RunState::Unknown);
    assert!(why.is_some_and(|w| w.contains("replica gone-host:42 died while sending")));
    let (missed, why) = state(slot(10, 0, 5)).expect("a row");
    assert_eq!(missed, RunState::Missed);
    assert!(why.is_some_and(|w| w.contains("past its catch-up window")), "too old to fire");
}

#[tokio::test(start_paused = true)]
async fn a_slot_still_waiting_on_its_jitter_at_shutdown_is_left_for_the_next_replica() {
    let list = schedules("  spread:\n    cron: \"0 0 * * *\"\n    jitter: 1h\n");
    let options = Options { shutdown_grace: Duration::from_secs(1), ..Options::default() };
    let h = Harness::start(list, options, Recorder::default(), &[]).await;
    // 00:00 tomorrow is claimed; its request waits up to an hour.
    h.clock.step(chrono::Duration::hours(12) - chrono::Duration::seconds(1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = h.store.clone();
    let trigger = h.trigger.clone();
    h.stop().await;
    let runs = store.history(Some("spread"), 5).await.expect("reads");
    if trigger.sent().is_empty() {
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].state, RunState::Claimed, "never sent, so not unknown: another replica fires it");
    } else {
        assert_eq!(runs[0].state, RunState::Succeeded, "the jitter happened to be under 2 s (1 in 1,800)");
    }
}

#[tokio::test(start_paused = true)]
async fn a_jitter_longer_than_the_catch_up_window_is_not_lateness() {
    let list = schedules("  spread:\n    cron: \"0 * * * * *\"\n    jitter: 5m\n    catch_up: 0\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    let fired = h.next(15).await;
    assert!(fired.iter().all(|f| f.result.ending == Ending::Succeeded), "{fired:?}");
    let store = h.store.clone();
    h.stop().await;
    let runs = store.history(Some("spread"), 100).await.expect("reads");
    assert!(runs.iter().all(|r| r.state != RunState::Missed), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn the_metrics_hear_fires_missed_slots_and_a_store_outage() {
    let list = schedules("  minutely:\n    cron: \"0 * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    h.next(1).await;
    let ok = "pipecron_fires_total{schedule=\"minutely\",reason=\"schedule\",outcome=\"succeeded\"}";
    assert_eq!(h.metric(ok), Some(1.0));
    let next = slot(12, 2, 0).timestamp() as f64;
    assert_eq!(h.metric("pipecron_schedule_next_fire_timestamp_seconds{schedule=\"minutely\"}"), Some(next));
    assert_eq!(h.metric("pipecron_schedule_period_seconds{schedule=\"minutely\"}"), Some(60.0));
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.store.set_down(true);
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(h.metric("pipecron_store_up"), Some(0.0), "the outage is seen");
    h.store.set_down(false);
    h.next(2).await;
    assert_eq!(h.metric("pipecron_store_up"), Some(1.0));
    assert_eq!(h.metric("pipecron_missed_slots_total{schedule=\"minutely\"}"), Some(2.0));
    // 12:04 is fired within a minute of its time: on time, not a catch-up.
    let caught_up = "pipecron_fires_total{schedule=\"minutely\",reason=\"catch-up\",outcome=\"succeeded\"}";
    assert_eq!((h.metric(ok), h.metric(caught_up)), (Some(3.0), None));
    assert_eq!(h.metric("pipecron_fire_lateness_seconds_count"), Some(3.0));
    let last = slot(12, 5, 0).timestamp() as f64;
    assert_eq!(h.metric("pipecron_schedule_last_success_timestamp_seconds{schedule=\"minutely\"}"), Some(last));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_store_away_for_seconds_leaves_every_per_second_slot_fired_or_missed() {
    let list = schedules("  every-second:\n    cron: \"* * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    h.next(2).await;
    h.store.set_down(true);
    tokio::time::sleep(Duration::from_millis(4300)).await;
    h.store.set_down(false);
    // A stop soon after: the slots the store did not take are claimed at once, not after the back-off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = h.store.clone();
    h.stop().await;
    let runs = store.history(Some("every-second"), 100).await.expect("reads");
    let slots: Vec<(DateTime<Utc>, RunState)> = runs.iter().rev().map(|r| (r.slot, r.state)).collect();
    let (first, last) = (slots[0].0, slots[slots.len() - 1].0);
    assert_eq!(slots.len() as i64, (last - first).num_seconds() + 1, "a second is missing: {slots:?}");
}

#[tokio::test(start_paused = true)]
async fn on_a_full_disk_a_lone_replica_fires_on_and_records_the_runs_once_it_can() {
    let list = schedules("  every-second:\n    cron: \"* * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    h.next(2).await;
    h.store.set_full(true);
    let during = tokio::time::timeout(Duration::from_secs(10), h.next(5)).await.expect("fires on a full disk");
    assert!(during.iter().all(|f| f.result.ending == Ending::Succeeded), "{during:?}");
    assert!(h.store.history(Some("every-second"), 100).await.expect("reads").len() <= 3, "nothing written meanwhile");
    h.store.set_full(false);
    // The held runs are written at the writer's next try, within its back-off.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let store = h.store.clone();
    let trigger = h.trigger.clone();
    h.stop().await;
    let sent = trigger.sent();
    let runs = store.history(Some("every-second"), 100).await.expect("reads");
    let slots: Vec<(DateTime<Utc>, RunState)> = runs.iter().rev().map(|r| (r.slot, r.state)).collect();
    let (first, last) = (slots[0].0, slots[slots.len() - 1].0);
    assert_eq!(slots.len() as i64, (last - first).num_seconds() + 1, "a second is missing: {slots:?}");
    assert!(slots.iter().all(|(_, state)| *state == RunState::Succeeded), "{slots:?}");
    assert_eq!(sent.len(), slots.len(), "each slot reached GitLab once, and each has its row");
    assert!(runs.iter().all(|r| r.owner.as_deref().is_some_and(|o| o != "seed")));
}

#[tokio::test(start_paused = true)]
async fn on_a_full_disk_nothing_is_fired_while_another_replica_lives() {
    let list = schedules("  every-second:\n    cron: \"* * * * * *\"\n");
    let mut h = Harness::start(list, Options::default(), Recorder::default(), &[]).await;
    h.next(1).await;
    let other = Replica::this_process(Duration::from_secs(3600));
    h.store.register(&other).await.expect("registers");
    // The lease counts the replicas once a minute.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let before = h.trigger.sent().len();
    h.store.set_full(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.trigger.sent().len(), before, "the other replica could fire the same slots");
    h.store.set_full(false);
    h.next(1).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slot_fired_on_a_full_disk_and_cut_short_by_a_stop_is_recorded_unknown() {
    let list = schedules("  stuck:\n    cron: \"0 * * * * *\"\n");
    let options = Options { shutdown_grace: Duration::from_secs(5), ..Options::default() };
    let h = Harness::start(list, options, Recorder { hang: true, ..Recorder::default() }, &[]).await;
    // Once it has started (registered, and counted the replicas: it is alone), the disk fills.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.store.set_full(true);
    let fired = tokio::time::timeout(Duration::from_secs(120), async {
        while h.trigger.sent().is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    fired.await.expect("fires on the full disk");
    assert!(h.store.history(Some("stuck"), 5).await.expect("reads").is_empty(), "no claim was written");
    h.store.set_full(false);
    let store = h.store.clone();
    h.stop().await;
    let runs = store.history(Some("stuck"), 5).await.expect("reads");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, RunState::Unknown);
    assert!(runs[0].error.as_deref().is_some_and(|e| e.contains("stopped before GitLab answered")));
}
