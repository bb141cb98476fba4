//! The timer loop: sleep until the earliest due slot, claim it, fire it on a bounded pool, repeat.
//!
//! The loop never polls. It sleeps until the next due slot, or at most a minute, because tokio's timers stand still
//! while a machine is suspended and an NTP step must be noticed; a reload or a shutdown wakes it early. Every wake
//! handles each slot at or before the wall clock's now, so a clock step neither fires a slot twice nor skips one
//! silently. Claiming is one transaction per wake and firing runs on spawned tasks, so neither a slow database nor a
//! slow GitLab delays another schedule's slot.

mod queue;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::store::RunStore;
use crate::trigger::{self, Backoff, Ending, Overrides, Reason, RunResult, Trigger, TriggerRequest};
use queue::{Due, Queue};

/// The longest the loop sleeps: the wall clock is re-read at least this often.
const RECHECK: Duration = Duration::from_secs(60);
/// A slot fired within this long of its time counts as on time; later than that, it is a catch-up.
const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Slots due this soon are claimed ahead, so that the claim's transaction is done when the slot comes.
const LEAD: Duration = Duration::from_millis(10);
/// At most this many missed slots are recorded per schedule at once; older ones are counted in the log only.
const MAX_MISSED: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Options {
    /// How many triggers may be in flight at once.
    pub concurrency: usize,
    /// How long in-flight triggers may take to finish after a shutdown starts.
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    /// Print requests instead of sending them, and record nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 32,
            shutdown_grace: Duration::from_secs(25),
            backoff: Backoff::default(),
            dry_run: false,
        }
    }
}

/// What became of a slot the loop handled, for the log and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub schedule: String,
    pub slot: DateTime<Utc>,
    pub reason: Reason,
    pub result: RunResult,
    /// From the slot (plus its jitter) to the first request, in milliseconds.
    pub lateness_ms: i64,
}

/// The slots claimed and not yet finished, so that a shutdown can record them.
type InFlight = Arc<Mutex<HashSet<(Arc<str>, DateTime<Utc>)>>>;

pub struct Scheduler<S, T, C> {
    store: Arc<S>,
    trigger: Arc<T>,
    clock: Arc<C>,
    options: Options,
    schedules: HashMap<Arc<str>, Arc<Schedule>>,
    queue: Queue,
    pool: Arc<Semaphore>,
    tasks: JoinSet<()>,
    in_flight: InFlight,
    fired: Option<mpsc::UnboundedSender<Fired>>,
}

impl<S: RunStore + 'static, T: Trigger + 'static, C: Clock> Scheduler<S, T, C> {
    pub fn new(store: Arc<S>, trigger: Arc<T>, clock: Arc<C>, options: Options) -> Self {
        Scheduler {
            store,
            trigger,
            clock,
            pool: Arc::new(Semaphore::new(options.concurrency.max(1))),
            options,
            schedules: HashMap::new(),
            queue: Queue::default(),
            tasks: JoinSet::new(),
            in_flight: Arc::default(),
            fired: None,
        }
    }

    /// Reports every finished slot on this channel (tests and benchmarks listen).
    pub fn report_to(&mut self, fired: mpsc::UnboundedSender<Fired>) {
        self.fired = Some(fired);
    }

    /// Runs until `shutdown` completes. `reloads` delivers new, already validated configurations.
    pub async fn run(
        mut self,
        schedules: Vec<Arc<Schedule>>,
        mut reloads: mpsc::Receiver<Vec<Arc<Schedule>>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), crate::store::StoreError> {
        self.start(schedules).await?;
        tokio::pin!(shutdown);
        loop {
            self.handle_due().await;
            let wake = self.next_wake();
            tokio::select! {
                _ = self.clock.wait_until(wake) => {}
                Some(schedules) = reloads.recv() => self.reload(schedules),
                _ = &mut shutdown => break,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        self.drain().await;
        Ok(())
    }

    /// Loads the schedules, catches up what was missed while pipecron was down, and queues each next slot.
    async fn start(&mut self, schedules: Vec<Arc<Schedule>>) -> Result<(), crate::store::StoreError> {
        let now = self.clock.now();
        let last = if self.options.dry_run { HashMap::new() } else { self.store.last_slots().await? };
        let mut catch_up = Vec::new();
        let mut missed = Vec::new();
        for schedule in schedules {
            if schedule.enabled
                && let Some(last) = last.get(&*schedule.name)
            {
                let (newest, older) = missed_since(&schedule, *last, now);
                missed.extend(older.into_iter().map(|slot| (schedule.name.to_string(), slot)));
                match newest {
                    Some(slot) if may_catch_up(&schedule, slot, now) => {
                        catch_up.push((schedule.clone(), slot, Reason::CatchUp));
                    }
                    Some(slot) => missed.push((schedule.name.to_string(), slot)),
                    None => {}
                }
            }
            self.add(schedule, now);
        }
        for schedule in self.schedules.values() {
            match self.queue.peek_for(&schedule.name) {
                Some(due) => {
                    let next = due.slot.with_timezone(&schedule.timezone).to_rfc3339();
                    tracing::info!(schedule = %schedule.name, next, "scheduled");
                }
                None if !schedule.enabled => tracing::info!(schedule = %schedule.name, "paused"),
                None => tracing::warn!(schedule = %schedule.name, "never fires"),
            }
        }
        if !missed.is_empty() {
            tracing::warn!(slots = missed.len(), "recording slots missed while pipecron was down");
            self.store.record_missed(missed, now).await?;
        }
        self.dispatch(catch_up);
        Ok(())
    }

    /// Adds or replaces a schedule and queues its first slot after `now`.
    fn add(&mut self, schedule: Arc<Schedule>, now: DateTime<Utc>) {
        self.queue.remove(&schedule.name);
        if schedule.enabled
            && let Some(slot) = schedule.next_after(now)
        {
            self.queue.push(Due::new(&schedule, slot.to_utc()));
        }
        self.schedules.insert(schedule.name.clone(), schedule);
    }

    /// Swaps in a new configuration: unchanged schedules keep their queued slot; changed and added ones count
    /// from now, so a changed expression never backfills.
    fn reload(&mut self, schedules: Vec<Arc<Schedule>>) {
        let now = self.clock.now();
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

    /// When to wake, by the wall clock: just before the earliest due slot (to claim it), but no later than a minute
    /// from now.
    fn next_wake(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        let recheck = now + chrono::Duration::from_std(RECHECK).unwrap_or_default();
        match self.queue.peek() {
            Some(due) => (due.slot - chrono::Duration::from_std(LEAD).unwrap_or_default()).min(recheck),
            None => recheck,
        }
    }

    /// Handles every slot due at or before now. Of several due slots of one schedule (after a clock step or a
    /// suspend) only the newest is fired; the others are recorded as missed.
    async fn handle_due(&mut self) {
        let now = self.clock.now();
        let mut newest: HashMap<Arc<str>, DateTime<Utc>> = HashMap::new();
        let mut missed = Vec::new();
        let lead = chrono::Duration::from_std(LEAD).unwrap_or_default();
        while let Some(due) = self.queue.pop_due(now + lead) {
            let Some(schedule) = self.schedules.get(&due.name).cloned() else { continue };
            if let Some(next) = schedule.next_after(due.slot) {
                self.queue.push(Due::new(&schedule, next.to_utc()));
            }
            if let Some(older) = newest.insert(due.name.clone(), due.slot) {
                missed.push((due.name.to_string(), older));
            }
        }
        let mut fires = Vec::new();
        for (name, slot) in newest {
            let Some(schedule) = self.schedules.get(&name).cloned() else { continue };
            if now - slot <= ON_TIME {
                fires.push((schedule, slot, Reason::Schedule));
            } else if may_catch_up(&schedule, slot, now) {
                fires.push((schedule, slot, Reason::CatchUp));
            } else {
                missed.push((name.to_string(), slot));
            }
        }
        if !missed.is_empty() && !self.options.dry_run {
            tracing::warn!(slots = missed.len(), "the clock jumped past slots; recording them as missed");
            if let Err(error) = self.store.record_missed(missed, now).await {
                tracing::error!(%error, "cannot record missed slots");
            }
        }
        self.dispatch(fires);
    }

    /// Claims the slots in one transaction and fires the ones this process won, without waiting for either.
    fn dispatch(&mut self, fires: Vec<(Arc<Schedule>, DateTime<Utc>, Reason)>) {
        if fires.is_empty() {
            return;
        }
        let context = self.context();
        let (store, dry_run) = (self.store.clone(), self.options.dry_run);
        let jitters: Vec<Duration> = fires.iter().map(|(s, _, _)| jitter(s.jitter)).collect();
        self.tasks.spawn(async move {
            let keys = fires.iter().map(|(s, slot, reason)| (s.name.to_string(), *slot, *reason)).collect();
            let claimed = match dry_run {
                true => vec![true; fires.len()],
                false => match store.claim_many(keys, context.clock.now()).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "cannot claim slots; they are not fired");
                        return;
                    }
                },
            };
            // The claims and the requests are made up to LEAD ahead; the requests wait for the slot, to the
            // microsecond.
            let ready = Slot::won(fires, claimed, jitters);
            if let Some(first) = ready.iter().map(|slot| slot.at).min() {
                context.clock.wait_until(first).await;
            }
            let mut tasks = JoinSet::new();
            for slot in ready {
                context
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((slot.schedule.name.clone(), slot.at));
                tasks.spawn(context.clone().fire(slot));
            }
            tasks.join_all().await;
        });
    }

    fn context(&self) -> FireContext<S, T, C> {
        FireContext {
            store: self.store.clone(),
            trigger: self.trigger.clone(),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            backoff: self.options.backoff,
            dry_run: self.options.dry_run,
            in_flight: self.in_flight.clone(),
            fired: self.fired.clone(),
        }
    }

    /// Lets in-flight triggers finish within the grace period, then records the rest as `unknown`.
    async fn drain(mut self) {
        let pending = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).len();
        tracing::info!(in_flight = pending, grace = ?self.options.shutdown_grace, "shutting down");
        let finished = tokio::time::timeout(self.options.shutdown_grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let left: Vec<_> = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let now = self.clock.now();
        for (name, slot) in left {
            let why = "pipecron stopped before GitLab answered; a pipeline may have been created";
            let result = RunResult::unanswered(Ending::Unknown, Some(why.into()));
            if !self.options.dry_run
                && let Err(error) = self.store.finish(&name, slot, &result, now).await
            {
                tracing::error!(%error, schedule = %name, %slot, "cannot record an unfinished run");
            }
            tracing::warn!(schedule = %name, %slot, "stopped before GitLab answered; recorded as unknown");
        }
    }
}

/// A claimed slot, ready to fire: its request is built before the slot comes.
struct Slot {
    schedule: Arc<Schedule>,
    at: DateTime<Utc>,
    reason: Reason,
    /// Its jitter.
    delay: Duration,
    request: Result<TriggerRequest, crate::trigger::request::RequestError>,
}

impl Slot {
    /// The slots this process won the claim for, each with its request built.
    fn won(
        fires: Vec<(Arc<Schedule>, DateTime<Utc>, Reason)>,
        claimed: Vec<bool>,
        jitters: Vec<Duration>,
    ) -> Vec<Slot> {
        let mut ready = Vec::with_capacity(fires.len());
        for (((schedule, at, reason), won), delay) in fires.into_iter().zip(claimed).zip(jitters) {
            if !won {
                tracing::debug!(schedule = %schedule.name, slot = %at, "claimed by another process");
                continue;
            }
            let request = TriggerRequest::new(&schedule, at, reason, &Overrides::default());
            ready.push(Slot { schedule, at, reason, delay, request });
        }
        ready
    }
}

/// What a fire task needs, shared with the loop.
struct FireContext<S, T, C> {
    store: Arc<S>,
    trigger: Arc<T>,
    clock: Arc<C>,
    pool: Arc<Semaphore>,
    backoff: Backoff,
    dry_run: bool,
    in_flight: InFlight,
    fired: Option<mpsc::UnboundedSender<Fired>>,
}

impl<S, T, C> Clone for FireContext<S, T, C> {
    fn clone(&self) -> Self {
        FireContext {
            store: self.store.clone(),
            trigger: self.trigger.clone(),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            backoff: self.backoff,
            dry_run: self.dry_run,
            in_flight: self.in_flight.clone(),
            fired: self.fired.clone(),
        }
    }
}

impl<S: RunStore, T: Trigger, C: Clock> FireContext<S, T, C> {
    /// Fires one claimed slot: waits out its jitter, takes a place in the pool, sends with retries, records.
    async fn fire(self, Slot { schedule, at: slot, reason, delay, request }: Slot) {
        let not_before = slot + chrono::Duration::from_std(delay).unwrap_or_default();
        if not_before > self.clock.now() {
            self.clock.wait_until(not_before).await;
        }
        let Ok(permit) = self.pool.acquire().await else { return };
        let started = self.clock.now();
        let lateness_ms = (started - slot).num_milliseconds() - delay.as_millis() as i64;
        let result = match request {
            Ok(request) if self.dry_run => {
                println!("{}", request.describe());
                RunResult::unanswered(Ending::Succeeded, None)
            }
            Ok(request) => {
                trigger::fire(&*self.trigger, &request, schedule.retries, self.backoff, |attempt, message, wait| {
                    tracing::warn!(schedule = %schedule.name, %slot, attempt, error = message, retry_in = ?wait, "retrying");
                })
                .await
            }
            Err(error) => RunResult::unanswered(Ending::Failed, Some(error.to_string())),
        };
        // The pool bounds requests in flight; recording the result does not need a place in it.
        drop(permit);
        if !self.dry_run
            && let Err(error) = self.store.finish(&schedule.name, slot, &result, self.clock.now()).await
        {
            tracing::error!(%error, schedule = %schedule.name, %slot, "cannot record the run");
        }
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&(schedule.name.clone(), slot));
        log_fire(&schedule.name, slot, reason, &result, lateness_ms, self.dry_run);
        if let Some(fired) = &self.fired {
            let _ = fired.send(Fired { schedule: schedule.name.to_string(), slot, reason, result, lateness_ms });
        }
    }
}

/// One line per fire, with everything a person or a log pipeline needs.
fn log_fire(name: &str, slot: DateTime<Utc>, reason: Reason, result: &RunResult, lateness_ms: i64, dry_run: bool) {
    let pipeline_id = result.pipeline.as_ref().map(|p| p.id);
    let url = result.pipeline.as_ref().and_then(|p| p.web_url.as_deref());
    let outcome = if dry_run { "dry-run" } else { crate::store::RunState::from(result.ending).as_str() };
    let slot = crate::trigger::request::slot_text(slot);
    let reason = reason.as_str();
    match result.ending {
        Ending::Succeeded => tracing::info!(
            schedule = name,
            slot,
            reason,
            outcome,
            pipeline_id,
            url,
            attempts = result.attempts,
            lateness_ms,
            "fired"
        ),
        _ => tracing::warn!(
            schedule = name,
            slot,
            reason,
            outcome,
            attempts = result.attempts,
            lateness_ms,
            error = result.error.as_deref().unwrap_or_default(),
            "fire failed"
        ),
    }
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
