//! The timer loop: sleep until the earliest due slot, claim it, fire it on a bounded pool, repeat.
//!
//! The loop never polls. It sleeps until the next due slot, or at most a minute, because tokio's timers stand still
//! while a machine is suspended and an NTP step must be noticed; a reload, a takeover or a shutdown wakes it early.
//! Every wake handles each slot at or before the wall clock's now, so a clock step neither fires a slot twice nor
//! skips one silently. Claiming is one transaction per wake and firing runs on spawned tasks, so neither a slow
//! database nor a slow GitLab delays another schedule's slot. Beside the loop, the lease (`lease`) heartbeats and
//! hands over the slots of dead replicas; the wall clock is the database's (`Corrected`).

mod fire;
mod health;
mod lease;
mod queue;
mod unrecorded;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};

pub use crate::events::Fired;
use crate::events::{Event, Events};
pub use fire::follow_if_asked;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Corrected};
use crate::schedule::Schedule;
use crate::store::{Replica, Run, RunStore, StoreError, TakenOver, owner_name};
use crate::trigger::{Backoff, Ending, Reason, RunResult, Trigger};
use fire::{FireContext, Slot};
use lease::Lease;
use queue::{Due, Queue};

/// The longest the loop sleeps: the wall clock is re-read at least this often.
const RECHECK: Duration = Duration::from_secs(60);
/// A slot fired within this long of its time counts as on time; later than that, it is a catch-up.
const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Slots due this soon are claimed and marked `sending` ahead, so that the database's work is done when the slot
/// comes.
const LEAD: Duration = Duration::from_millis(10);
/// At most this many missed slots are recorded per schedule at once; older ones are counted in the log only.
const MAX_MISSED: usize = 10_000;
/// How long the loop waits at most before it tries again to claim slots the store did not take.
const CLAIM_RETRY_CAP: Duration = Duration::from_secs(5);

/// Up to this many schedules, each one's next slot is logged at start; beyond, only at debug level: 100,000 lines
/// at each start took a tenth of the start-up and buried the rest of the log.
const LOG_EACH_UP_TO: usize = 100;

#[derive(Debug, Clone)]
pub struct Options {
    /// How many triggers may be in flight at once.
    pub concurrency: usize,
    /// How long in-flight triggers may take to finish after a shutdown starts.
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    /// A replica whose heartbeat is older than this is dead; it heartbeats every third of it.
    pub lease: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 32,
            shutdown_grace: Duration::from_secs(25),
            backoff: Backoff::default(),
            lease: Duration::from_secs(15),
        }
    }
}

/// A slot to claim and fire: its schedule, its time, and why.
type ToFire = (Arc<Schedule>, DateTime<Utc>, Reason);

/// Slots the store could not take while it was away, to be claimed once it answers.
#[derive(Default)]
struct Unclaimed {
    slots: Vec<ToFire>,
    /// When to try again, and how long to wait after that.
    retry_at: Option<DateTime<Utc>>,
    wait: Duration,
}

pub struct Scheduler<S, T, C> {
    /// What the loop shares with every fire task: the store, the trigger, the clock, the pool, this replica.
    shared: FireContext<S, T, C>,
    options: Options,
    schedules: HashMap<Arc<str>, Arc<Schedule>>,
    queue: Queue,
    tasks: JoinSet<()>,
    unclaimed: Arc<Mutex<Unclaimed>>,
    /// Wakes the loop to claim the unclaimed slots at once, when the store takes a claim again.
    claim_again: Arc<tokio::sync::Notify>,
    /// When the loop last woke (milliseconds since the epoch), for a health check.
    loop_woke: Arc<std::sync::atomic::AtomicI64>,
}

impl<S: RunStore + 'static, T: Trigger + 'static, C: Clock> Scheduler<S, T, C> {
    pub fn new(store: Arc<S>, trigger: Arc<T>, clock: Arc<C>, options: Options) -> Self {
        let shared = FireContext {
            store,
            trigger,
            clock: Arc::new(Corrected::new(clock)),
            pool: Arc::new(Semaphore::new(options.concurrency.max(1))),
            backoff: options.backoff,
            replica: Arc::new(Replica::this_process(options.lease)),
            health: Arc::default(),
            in_flight: Arc::default(),
            waiting: Arc::default(),
            events: Events::default(),
            unrecorded: Arc::default(),
            gate: None,
        };
        Scheduler {
            shared,
            options,
            schedules: HashMap::new(),
            queue: Queue::default(),
            tasks: JoinSet::new(),
            unclaimed: Arc::default(),
            claim_again: Arc::default(),
            loop_woke: Arc::default(),
        }
    }

    /// When the loop last woke, in milliseconds since the epoch: it wakes at least once a minute while it runs.
    pub fn loop_woke(&self) -> Arc<std::sync::atomic::AtomicI64> {
        self.loop_woke.clone()
    }

    /// This replica, as it claims slots in the store.
    pub fn replica(&self) -> Arc<Replica> {
        self.shared.replica.clone()
    }

    /// Publishes what happens to `events`.
    /// Checks each slot's `overlap` rule with `gate` before it fires.
    pub fn check_overlaps(&mut self, gate: Arc<dyn crate::follow::overlap::SlotGate>) {
        self.shared.gate = Some(gate);
    }

    pub fn publish_to(&mut self, events: Events) {
        self.shared.health = Arc::new(health::Health::new(events.clone()));
        self.shared.events = events;
    }

    /// Reports every finished slot on this channel, besides the other listeners (tests and benchmarks listen).
    pub fn report_to(&mut self, fired: mpsc::UnboundedSender<Fired>) {
        let events = self.shared.events.with(Arc::new(fired));
        self.publish_to(events);
    }

    /// Runs until `shutdown` completes. `reloads` delivers new, already validated configurations.
    pub async fn run(
        mut self,
        schedules: Vec<Arc<Schedule>>,
        mut reloads: mpsc::Receiver<Vec<Arc<Schedule>>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StoreError> {
        let stop_lease = CancellationToken::new();
        let (taken_tx, mut taken) = mpsc::unbounded_channel();
        self.shared.store.register(&self.shared.replica).await?;
        // The first slots are queued by the corrected clock: a fast host must not fire them early.
        self.lease().measure_clock().await;
        self.lease().count_replicas().await;
        let mut lease = tokio::spawn(self.lease().keep(taken_tx, stop_lease.clone()));
        self.start(schedules).await?;
        tokio::pin!(shutdown);
        loop {
            let woke = self.shared.clock.now();
            self.loop_woke.store(woke.timestamp_millis(), std::sync::atomic::Ordering::Relaxed);
            self.shared.events.publish(Event::Woke { at: woke });
            self.handle_due();
            self.retry_unclaimed();
            let wake = self.next_wake();
            tokio::select! {
                _ = self.shared.clock.wait_until(wake) => {}
                Some(schedules) = reloads.recv() => self.reload(schedules),
                Some(dead) = taken.recv() => self.adopt(dead),
                _ = self.claim_again.notified() => {}
                _ = &mut shutdown => break,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        self.drain().await;
        stop_lease.cancel();
        // The lease stops at its next turn, unless a call to the store hangs: then it is not waited for.
        if tokio::time::timeout(Duration::from_secs(5), &mut lease).await.is_err() {
            lease.abort();
        }
        if let Err(error) = self.shared.store.deregister(&self.shared.replica).await {
            tracing::warn!(%error, "cannot deregister; other replicas take over after the lease");
        }
        Ok(())
    }

    fn lease(&self) -> Lease<S, C> {
        Lease {
            store: self.shared.store.clone(),
            replica: self.shared.replica.clone(),
            clock: self.shared.clock.clone(),
            health: self.shared.health.clone(),
            events: self.shared.events.clone(),
            unrecorded: self.shared.unrecorded.clone(),
        }
    }

    /// Loads the schedules, catches up what was missed while pipecron was down, and queues each next slot.
    async fn start(&mut self, schedules: Vec<Arc<Schedule>>) -> Result<(), StoreError> {
        let now = self.shared.clock.now();
        let last = self.shared.store.last_slots().await?;
        let mut catch_up = Vec::new();
        let mut missed = Vec::new();
        self.shared.events.publish(Event::Loaded { schedules: &schedules });
        for schedule in schedules {
            if schedule.enabled
                && let Some(last) = last.get(&*schedule.name)
            {
                let (newest, older) = missed_since(&schedule, *last, now);
                missed.extend(older.into_iter().map(|slot| (schedule.name.to_string(), slot)));
                match newest {
                    // Just passed, it is claimed even with catch-up off: another replica may be firing it this
                    // moment, and a `missed` row would stop it.
                    Some(slot) if now - slot <= ON_TIME || may_catch_up(&schedule, slot, now) => {
                        catch_up.push((schedule.clone(), slot, Reason::CatchUp));
                    }
                    Some(slot) => missed.push((schedule.name.to_string(), slot)),
                    None => {}
                }
            }
            self.add(schedule, now);
        }
        self.log_next_slots();
        if !missed.is_empty() {
            tracing::warn!(slots = missed.len(), "recording slots missed while pipecron was down");
            self.shared.store.record_missed(missed.clone(), now).await?;
            publish_missed(&self.shared.events, &missed);
        }
        self.dispatch(catch_up);
        Ok(())
    }

    /// Logs each schedule's next slot, or, beyond `LOG_EACH_UP_TO` schedules, how many are queued and paused.
    fn log_next_slots(&self) {
        let each = self.schedules.len() <= LOG_EACH_UP_TO || tracing::enabled!(tracing::Level::DEBUG);
        let mut paused = 0;
        for schedule in self.schedules.values() {
            match self.queue.peek_for(&schedule.name) {
                Some(due) if each => {
                    let next = due.slot.with_timezone(&schedule.timezone).to_rfc3339();
                    tracing::info!(schedule = %schedule.name, next, "scheduled");
                }
                Some(_) => {}
                None if !schedule.enabled => {
                    paused += 1;
                    if each {
                        tracing::info!(schedule = %schedule.name, "paused");
                    }
                }
                None => tracing::warn!(schedule = %schedule.name, "never fires"),
            }
        }
        if !each {
            let next = self.queue.peek().map(|due| due.slot.to_rfc3339());
            tracing::info!(
                schedules = self.schedules.len(),
                paused,
                next,
                "scheduled (each schedule's next slot is logged at debug level)"
            );
        }
    }

    /// Adds or replaces a schedule and queues its first slot after `now`.
    fn add(&mut self, schedule: Arc<Schedule>, now: DateTime<Utc>) {
        self.queue.remove(&schedule.name);
        if schedule.enabled
            && let Some(slot) = schedule.next_after(now)
        {
            self.queue.push(Due::new(&schedule, slot.to_utc()));
            self.shared.events.publish(Event::Queued { schedule: &schedule, slot: slot.to_utc() });
        }
        self.schedules.insert(schedule.name.clone(), schedule);
    }

    /// Swaps in a new configuration: unchanged schedules keep their queued slot; changed and added ones count
    /// from now, so a changed expression never backfills.
    fn reload(&mut self, schedules: Vec<Arc<Schedule>>) {
        let now = self.shared.clock.now();
        self.shared.events.publish(Event::Loaded { schedules: &schedules });
        let mut incoming: HashMap<Arc<str>, Arc<Schedule>> =
            schedules.into_iter().map(|s| (s.name.clone(), s)).collect();
        let removed: Vec<Arc<str>> = self.schedules.keys().filter(|n| !incoming.contains_key(*n)).cloned().collect();
        for name in &removed {
            self.schedules.remove(name);
            self.queue.remove(name);
        }
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for (name, schedule) in incoming.drain() {
            match self.schedules.get(&name) {
                Some(old) if **old == *schedule => continue,
                Some(_) => changed.push(name),
                None => added.push(name),
            }
            self.add(schedule, now);
        }
        for list in [&mut added, &mut changed] {
            list.sort();
        }
        tracing::info!(?added, ?removed, ?changed, "reloaded the schedules");
    }

    /// When to wake, by the wall clock: just before the earliest due slot (to claim it), or to claim again what the
    /// store did not take, but no later than a minute from now.
    fn next_wake(&self) -> DateTime<Utc> {
        let now = self.shared.clock.now();
        let recheck = now + chrono::Duration::from_std(RECHECK).unwrap_or_default();
        let due = self.queue.peek().map(|due| due.slot - chrono::Duration::from_std(LEAD).unwrap_or_default());
        let retry = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner()).retry_at;
        [Some(recheck), due, retry].into_iter().flatten().min().unwrap_or(recheck)
    }

    /// Handles every slot due at or before now. Of several due slots of one schedule (after a clock step or a
    /// suspend) only the newest is fired; the others are recorded as missed.
    fn handle_due(&mut self) {
        let now = self.shared.clock.now();
        let mut due_now = Vec::new();
        let lead = chrono::Duration::from_std(LEAD).unwrap_or_default();
        while let Some(due) = self.queue.pop_due(now + lead) {
            let Some(schedule) = self.schedules.get(&due.name).cloned() else { continue };
            if let Some(next) = schedule.next_after(due.slot) {
                self.queue.push(Due::new(&schedule, next.to_utc()));
                self.shared.events.publish(Event::Queued { schedule: &schedule, slot: next.to_utc() });
            }
            due_now.push((schedule, due.slot, Reason::Schedule));
        }
        let (fires, missed) = newest_of_each(due_now, now);
        if !missed.is_empty() {
            tracing::warn!(slots = missed.len(), "the clock jumped past slots; recording them as missed");
            self.record_missed(missed);
        }
        self.dispatch(fires);
    }

    /// Claims again the slots the store did not take while it was away, once their wait is over. The catch-up
    /// rule holds as after a restart: per schedule, the newest within `catch_up` is fired, the rest are missed.
    fn retry_unclaimed(&mut self) {
        let now = self.shared.clock.now();
        let slots = {
            let mut unclaimed = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
            if unclaimed.retry_at.is_none_or(|at| at > now) {
                return;
            }
            unclaimed.retry_at = None;
            std::mem::take(&mut unclaimed.slots)
        };
        let (fires, missed) = newest_of_each(slots, now);
        self.record_missed(missed);
        self.dispatch(fires);
    }

    /// Records slots as missed where no row has them yet, in the background, trying until the store answers.
    fn record_missed(&mut self, missed: Vec<crate::store::Key>) {
        if missed.is_empty() {
            return;
        }
        publish_missed(&self.shared.events, &missed);
        let context = self.context();
        self.tasks.spawn(async move {
            let now = context.clock.now();
            context.retry("recording missed slots", || context.store.record_missed(missed.clone(), now)).await;
        });
    }

    /// Takes the slots a dead replica had claimed and never sent: each is fired if it is still on time or within
    /// its schedule's catch-up window (`fire` records it missed otherwise). A slot of a schedule not enabled here,
    /// or of a `run-now` that died, is recorded missed.
    fn adopt(&mut self, dead: TakenOver) {
        let now = self.shared.clock.now();
        let context = self.context();
        let mut missed: HashMap<&str, Vec<_>> = HashMap::new();
        for Run { schedule: name, slot, reason, .. } in dead.claimed {
            match (self.schedules.get(name.as_str()).filter(|s| s.enabled), reason) {
                (None, _) => missed.entry("its replica died before sending; the schedule is not enabled here"),
                (Some(_), Reason::RunNow) => missed.entry("run-now died before sending"),
                (Some(schedule), reason) => {
                    let reason = if now - slot <= ON_TIME { reason } else { Reason::CatchUp };
                    self.tasks.spawn(context.clone().fire(Slot::new(schedule.clone(), slot, reason, Duration::ZERO)));
                    continue;
                }
            }
            .or_default()
            .push((name, slot));
        }
        for (why, keys) in missed {
            tracing::warn!(from = owner_name(&dead.from), slots = keys.len(), "recorded missed: {why}");
            publish_missed(&context.events, &keys);
            let context = context.clone();
            self.tasks.spawn(async move {
                let (owner, now) = (context.replica.id.clone(), context.clock.now());
                let release = || context.store.release_missed(keys.clone(), &owner, why, now);
                context.retry("recording missed slots", release).await;
            });
        }
    }

    /// Claims the slots in one transaction and fires the ones this replica won, without waiting for either. Slots
    /// the store does not take (it is away) wait in `unclaimed`: none is fired without a claim.
    fn dispatch(&mut self, fires: Vec<ToFire>) {
        if fires.is_empty() {
            return;
        }
        let context = self.context();
        let unclaimed = self.unclaimed.clone();
        let claim_again = self.claim_again.clone();
        let jitters: Vec<Duration> = fires.iter().map(|(s, _, _)| jitter(s.jitter)).collect();
        self.tasks.spawn(async move {
            let keys = fires.iter().map(|(s, slot, reason)| (s.name.to_string(), *slot, *reason)).collect();
            let mut stored = true;
            let claimed = match context.store.claim_many(keys, &context.replica.id, context.clock.now()).await {
                Ok(claimed) => {
                    context.health.ok();
                    let mut waiting = unclaimed.lock().unwrap_or_else(|p| p.into_inner());
                    waiting.wait = Duration::ZERO;
                    // The store takes claims again: the slots it did not take are claimed now, not after the
                    // back-off, lest a stop soon after leave them in no row at all.
                    if !waiting.slots.is_empty() {
                        waiting.retry_at = Some(context.clock.now());
                        claim_again.notify_one();
                    }
                    claimed
                }
                // A full disk: the only replica fires all the same, and holds the runs until they can be written.
                Err(error) if context.unrecorded.may_fire(&error, fires.len()) => {
                    context.health.failed("claiming slots", &error);
                    stored = false;
                    vec![true; fires.len()]
                }
                Err(error) => {
                    context.health.failed("claiming slots", &error);
                    put_back(&unclaimed, fires, context.clock.now());
                    return;
                }
            };
            let won = claimed.iter().filter(|won| **won).count();
            if stored {
                context.events.publish(Event::Claimed { asked: claimed.len(), won });
            }
            let mut tasks = JoinSet::new();
            let (go, started) = tokio::sync::watch::channel(DateTime::<Utc>::MIN_UTC);
            let mut instants = std::collections::BTreeSet::new();
            for (((schedule, at, reason), won), delay) in fires.into_iter().zip(claimed).zip(jitters) {
                if won {
                    let slot = Slot { go: Some(started.clone()), stored, ..Slot::new(schedule, at, reason, delay) };
                    instants.extend(delay.is_zero().then_some(at));
                    tasks.spawn(context.clone().fire(slot));
                } else {
                    tracing::debug!(schedule = %schedule.name, slot = %at, "claimed by another replica");
                }
            }
            // One wake at each instant, to the microsecond, for all the slots due then.
            for at in instants {
                context.clock.wait_until(at).await;
                let _ = go.send(at);
            }
            tasks.join_all().await;
        });
    }

    fn context(&self) -> FireContext<S, T, C> {
        self.shared.clone()
    }

    /// Lets in-flight triggers finish within the grace period, then records the ones that were `sending` as
    /// `unknown`. Slots claimed and not yet sent are left `claimed`: once this replica deregisters, the next live
    /// one (or this one, restarted) fires them.
    async fn drain(&mut self) {
        let pending = self.shared.in_flight.lock().unwrap_or_else(|p| p.into_inner()).len();
        tracing::info!(in_flight = pending, grace = ?self.options.shutdown_grace, "shutting down");
        let finished = tokio::time::timeout(self.options.shutdown_grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.record_unclaimed().await;
        self.record_held().await;
        if finished.is_ok() {
            return;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let left: Vec<_> = self.shared.in_flight.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let now = self.shared.clock.now();
        for ((name, slot), sending) in left {
            if !sending {
                tracing::info!(schedule = %name, %slot, "stopped before sending; left for the next replica to fire");
                continue;
            }
            let why = "pipecron stopped before GitLab answered; a pipeline may have been created";
            let result = RunResult::unanswered(Ending::Unknown, Some(why.into()));
            let owner = &self.shared.replica.id;
            // A slot fired on a full disk has no row to finish: it gets one, unless another replica made it.
            let recorded = match self.shared.store.finish(&name, slot, &result, owner, now).await {
                Ok(false) => self.shared.store.import(vec![unfinished(&name, slot, why, owner, now)]).await.map(drop),
                other => other.map(drop),
            };
            if let Err(error) = recorded {
                tracing::error!(%error, schedule = %name, %slot, "cannot record an unfinished run");
            }
            tracing::warn!(schedule = %name, %slot, "stopped before GitLab answered; recorded as unknown");
        }
    }
}

/// The row of a slot whose request went out and got no answer before a stop.
fn unfinished(name: &str, slot: DateTime<Utc>, why: &str, owner: &str, now: DateTime<Utc>) -> Run {
    Run {
        schedule: name.to_string(),
        slot,
        reason: Reason::Schedule,
        state: crate::store::RunState::Unknown,
        attempts: 1,
        started_at: Some(now),
        finished_at: Some(now),
        http_status: None,
        pipeline: None,
        error: Some(why.to_string()),
        owner: Some(owner.to_string()),
    }
}

/// Publishes missed slots, one event per schedule.
fn publish_missed(events: &Events, missed: &[crate::store::Key]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, _) in missed {
        *counts.entry(name).or_default() += 1;
    }
    for (schedule, slots) in counts {
        events.publish(Event::Missed { schedule, slots });
    }
}

impl<S: RunStore + 'static, T: Trigger + 'static, C: Clock> Scheduler<S, T, C> {
    /// At a stop, records as missed the slots the store never took, if it takes them now: otherwise no row would
    /// say they passed, since a restart catches up only after the newest recorded slot.
    async fn record_unclaimed(&mut self) {
        let slots = std::mem::take(&mut self.unclaimed.lock().unwrap_or_else(|p| p.into_inner()).slots);
        if slots.is_empty() {
            return;
        }
        let keys: Vec<crate::store::Key> = slots.iter().map(|(s, slot, _)| (s.name.to_string(), *slot)).collect();
        let now = self.shared.clock.now();
        let recorded = tokio::time::timeout(Duration::from_secs(2), self.shared.store.record_missed(keys.clone(), now));
        match recorded.await {
            Ok(Ok(())) => {
                tracing::warn!(slots = keys.len(), "stopped before the store took these slots; recorded missed");
                publish_missed(&self.shared.events, &keys);
            }
            _ => {
                tracing::error!(slots = keys.len(), "stopped before the store took these slots; they are not recorded")
            }
        }
    }
}

impl<S: RunStore + 'static, T: Trigger + 'static, C: Clock> Scheduler<S, T, C> {
    /// At a stop, writes the runs fired while the disk was full, if it has room now. Otherwise they are lost, and
    /// the log names the newest of each schedule: a restart may catch that one up and fire it again.
    async fn record_held(&mut self) {
        let held = self.shared.unrecorded.take_all();
        if held.is_empty() {
            return;
        }
        let written = tokio::time::timeout(Duration::from_secs(2), self.shared.store.import(held.clone())).await;
        if let Ok(Ok(_)) = written {
            return tracing::info!(runs = held.len(), "recorded the runs fired while the disk was full");
        }
        let mut newest: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for run in &held {
            let slot = newest.entry(&run.schedule).or_insert(run.slot);
            *slot = (*slot).max(run.slot);
        }
        for (schedule, slot) in newest {
            tracing::error!(
                schedule,
                %slot,
                "stopped while the disk was full: the runs fired meanwhile are not recorded, and a restart may catch \
                 up this slot again"
            );
        }
    }
}

/// Returns slots the store did not take to `unclaimed`, and sets when to try again, backing off.
fn put_back(unclaimed: &Mutex<Unclaimed>, slots: Vec<ToFire>, now: DateTime<Utc>) {
    let mut unclaimed = unclaimed.lock().unwrap_or_else(|p| p.into_inner());
    unclaimed.slots.extend(slots);
    unclaimed.wait = (unclaimed.wait * 2).clamp(Duration::from_millis(500), CLAIM_RETRY_CAP);
    let retry = now + chrono::Duration::from_std(unclaimed.wait).unwrap_or_default();
    unclaimed.retry_at = Some(unclaimed.retry_at.map_or(retry, |at| at.min(retry)));
}

/// Of each schedule's due slots, the newest is fired (on time, or as a catch-up within its window); the older
/// ones, and a newest too late to catch up, are missed.
fn newest_of_each(slots: Vec<ToFire>, now: DateTime<Utc>) -> (Vec<ToFire>, Vec<crate::store::Key>) {
    let mut newest: HashMap<Arc<str>, ToFire> = HashMap::new();
    let mut missed = Vec::new();
    for (schedule, slot, reason) in slots {
        let name = schedule.name.clone();
        match newest.get(&name) {
            Some((_, kept, _)) if *kept >= slot => missed.push((name.to_string(), slot)),
            _ => {
                if let Some((_, older, _)) = newest.insert(name.clone(), (schedule, slot, reason)) {
                    missed.push((name.to_string(), older));
                }
            }
        }
    }
    let mut fires = Vec::new();
    for (name, (schedule, slot, reason)) in newest {
        if now - slot <= ON_TIME {
            fires.push((schedule, slot, reason));
        } else if may_catch_up(&schedule, slot, now) {
            fires.push((schedule, slot, Reason::CatchUp));
        } else {
            missed.push((name.to_string(), slot));
        }
    }
    (fires, missed)
}

/// The slots of `schedule` after `last` and up to `now`: the newest, and the `MAX_MISSED` before it. A schedule far
/// behind (a per-second schedule down for a week) is walked only over its last stretch.
fn missed_since(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let slots_after = |from: DateTime<Utc>| {
        schedule.cron.iter_after(schedule.timezone, from).map(|t| t.to_utc()).take_while(move |t| *t <= now)
    };
    let mut start = last;
    let first_two: Vec<_> = slots_after(last).take(2).collect();
    if let [a, b] = first_two[..] {
        let stretch = (b - a) * (2 * MAX_MISSED as i32);
        if now - last > stretch {
            start = now - stretch;
            tracing::warn!(schedule = %schedule.name, since = %last, "far behind; only the last missed slots are recorded");
        }
    }
    let mut slots: std::collections::VecDeque<DateTime<Utc>> = std::collections::VecDeque::new();
    for slot in slots_after(start) {
        if slots.len() > MAX_MISSED {
            slots.pop_front();
        }
        slots.push_back(slot);
    }
    let newest = slots.pop_back();
    (newest, slots.into())
}

/// True if a slot missed until `now` is still within the schedule's `catch_up` window.
fn may_catch_up(schedule: &Schedule, slot: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - slot <= chrono::Duration::from_std(schedule.catch_up).unwrap_or_default()
}

/// A random delay in `[0, bound]`.
fn jitter(bound: Duration) -> Duration {
    if bound.is_zero() { Duration::ZERO } else { bound.mul_f64(rand::random::<f64>()) }
}

#[cfg(test)]
mod tests;
