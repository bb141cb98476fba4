//! Firing one claimed slot: wait for its instant, take a place in the pool, mark it `sending`, send with retries,
//! record how it ended.
//!
//! The row moves to `sending` only once a place in the pool is held, and just before the slot (within the loop's
//! lead), so that at any moment at most `concurrency` rows are `sending`: after a crash, at most that many can
//! end `unknown`. Slots that come due together are moved in one statement by the store's batcher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};

use super::health::Health;
use super::unrecorded::Unrecorded;
use super::{LEAD, ON_TIME};
use crate::clock::{Clock, Corrected};
use crate::events::{Event, Events, Fired};
use crate::follow::overlap::{SlotGate, Verdict};
use crate::schedule::{Overlap, Schedule};
use crate::store::{Key, Replica, Run, RunStore, StoreError};
use crate::trigger::{self, Attempt, Backoff, Ending, Overrides, Reason, RunResult, Trigger, TriggerRequest};

/// The slots this replica has claimed and not yet finished, and whether each is `sending`, so that a shutdown can
/// record the ones that may have reached GitLab.
pub type InFlight = Arc<Mutex<HashMap<(Arc<str>, DateTime<Utc>), bool>>>;

/// How long a store call is retried at most between tries while the store does not answer.
const STORE_RETRY_CAP: Duration = Duration::from_secs(5);

/// A claimed slot, ready to fire: its request is built before the slot comes.
pub struct Slot {
    pub schedule: Arc<Schedule>,
    pub at: DateTime<Utc>,
    pub reason: Reason,
    /// Its jitter.
    pub delay: Duration,
    pub request: Result<TriggerRequest, crate::trigger::request::RequestError>,
    /// For a slot without jitter: the instant the loop has waited for, shared by every slot due then, so that a
    /// burst wakes once at its instant rather than once per slot.
    pub go: Option<watch::Receiver<DateTime<Utc>>>,
    /// Whether its claim is in the store; `false` when it was fired on a full disk, its claim held in memory.
    pub stored: bool,
}

impl Slot {
    pub fn new(schedule: Arc<Schedule>, at: DateTime<Utc>, reason: Reason, delay: Duration) -> Slot {
        let request = TriggerRequest::new(&schedule, at, reason, &Overrides::default());
        Slot { schedule, at, reason, delay, request, go: None, stored: true }
    }

    fn key(&self) -> Key {
        (self.schedule.name.to_string(), self.at)
    }
}

/// What a fire task needs, shared with the loop.
pub struct FireContext<S, T, C> {
    pub store: Arc<S>,
    pub trigger: Arc<T>,
    pub clock: Arc<Corrected<C>>,
    pub pool: Arc<Semaphore>,
    pub backoff: Backoff,
    pub replica: Arc<Replica>,
    pub health: Arc<Health>,
    pub in_flight: InFlight,
    /// How many slots wait for a place in the pool: while any do, results are recorded without gathering.
    pub waiting: Arc<AtomicUsize>,
    pub events: Events,
    pub unrecorded: Arc<Unrecorded>,
    /// The `overlap` rules, when the daemon checks them.
    pub gate: Option<Arc<dyn SlotGate>>,
}

impl<S, T, C> Clone for FireContext<S, T, C> {
    fn clone(&self) -> Self {
        FireContext {
            store: self.store.clone(),
            trigger: self.trigger.clone(),
            clock: self.clock.clone(),
            pool: self.pool.clone(),
            backoff: self.backoff,
            replica: self.replica.clone(),
            health: self.health.clone(),
            in_flight: self.in_flight.clone(),
            waiting: self.waiting.clone(),
            events: self.events.clone(),
            unrecorded: self.unrecorded.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: RunStore + 'static, T: Trigger + 'static, C: Clock + 'static> FireContext<S, T, C> {
    /// Fires one claimed slot, whose row this replica owns.
    pub async fn fire(self, slot: Slot) {
        let key = (slot.schedule.name.clone(), slot.at);
        // Each slot is fired by one task: the store answers the same claim twice if asked twice.
        match self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => return,
            std::collections::hash_map::Entry::Vacant(place) => place.insert(false),
        };
        self.fire_owned(slot).await;
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    async fn fire_owned(&self, slot: Slot) {
        let not_before = slot.at + chrono::Duration::from_std(slot.delay).unwrap_or_default();
        let lead = chrono::Duration::from_std(LEAD).unwrap_or_default();
        self.clock.wait_until(not_before - lead).await;
        // The overlap rule is asked before a place in the pool is taken: a slow answer from GitLab holds up this
        // slot only.
        let verdict = self.overlap(&slot).await;
        if let Verdict::Skip(running) = &verdict {
            let result = skipped(running);
            self.record(&slot.schedule.name, slot.at, &result).await;
            let (schedule, slot, reason) = (slot.schedule.name.to_string(), slot.at, slot.reason);
            self.events.publish(Event::Finished(&Fired { schedule, slot, reason, result, lateness_ms: 0 }));
            return;
        }
        let permit = match self.pool.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                self.store.hurry();
                let permit = self.pool.acquire().await;
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(permit) = permit else { return };
                permit
            }
        };
        if !self.mark_sending(&slot).await {
            return;
        }
        // Only a slot sure to be sent cancels the pipeline before it.
        if let (Verdict::Cancel(running), Some(gate), Ok(_)) = (&verdict, &self.gate, &slot.request) {
            gate.cancel(&slot.schedule, running).await;
        }
        match slot.go.clone() {
            Some(mut go) if slot.delay.is_zero() => drop(go.wait_for(|t| *t >= slot.at).await),
            _ => self.clock.wait_until(not_before).await,
        }
        let started = self.clock.now();
        let lateness_ms = (started - slot.at).num_milliseconds() - slot.delay.as_millis() as i64;
        let Slot { schedule, at, reason, request, stored, .. } = slot;
        let result = match request {
            Ok(request) => {
                self.events.publish(Event::Sending { request: &request });
                let timed = Timed { trigger: &*self.trigger, events: &self.events };
                trigger::fire(&timed, &request, schedule.retries, self.backoff, |attempt, error, wait| {
                    let schedule = &schedule.name;
                    self.events.publish(Event::Retrying { schedule, slot: at, attempt, error, wait });
                })
                .await
            }
            Err(error) => RunResult::unanswered(Ending::Failed, Some(error.to_string())),
        };
        let result = follow_if_asked(result, &schedule);
        // The place is held until the result is recorded: at most `concurrency` rows are ever `sending`, so a
        // crash leaves at most that many `unknown`.
        match stored {
            true => self.record(&schedule.name, at, &result).await,
            false => self.hold(&schedule.name, at, reason, started, &result),
        }
        drop(permit);
        let fired = Fired { schedule: schedule.name.to_string(), slot: at, reason, result, lateness_ms };
        self.events.publish(Event::Finished(&fired));
    }

    /// What the slot's `overlap` rule says, when the daemon checks them.
    async fn overlap(&self, slot: &Slot) -> Verdict {
        match self.gate.as_ref().filter(|_| slot.stored && slot.schedule.overlap != Overlap::Allow) {
            Some(gate) => gate.at_slot(&slot.schedule).await,
            None => Verdict::Fire,
        }
    }

    /// Moves the slot's row to `sending`; false if it must not be sent: taken over by another replica, or so late
    /// (the store was away) that it is past its catch-up window and is recorded missed instead.
    async fn mark_sending(&self, slot: &Slot) -> bool {
        if !slot.stored {
            let key = (slot.schedule.name.clone(), slot.at);
            self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key, true);
            return true;
        }
        let owner = self.replica.id.as_str();
        // Late past its own time, the slot plus its jitter: a long jitter is not lateness.
        let late = self.clock.now() - slot.at - chrono::Duration::from_std(slot.delay).unwrap_or_default();
        let window = chrono::Duration::from_std(slot.schedule.catch_up).unwrap_or_default().max(ON_TIME);
        if late > window {
            let why = "too late to fire: past its catch-up window (the state database was away, or its replica died)";
            let now = self.clock.now();
            self.retry("recording a missed slot", || self.store.release_missed(vec![slot.key()], owner, why, now))
                .await;
            tracing::warn!(schedule = %slot.schedule.name, slot = %slot.at, "recorded missed: {why}");
            self.events.publish(Event::Missed { schedule: &slot.schedule.name, slots: 1 });
            return false;
        }
        let moved = self.retry("marking a slot sending", || self.store.start_sending(vec![slot.key()], owner)).await;
        if moved.first() != Some(&true) {
            tracing::warn!(schedule = %slot.schedule.name, slot = %slot.at, "taken over by another replica; not sent");
            return false;
        }
        let key = (slot.schedule.name.clone(), slot.at);
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key, true);
        true
    }

    /// Records how the run ended, retrying while the store does not answer.
    async fn record(&self, name: &str, slot: DateTime<Utc>, result: &RunResult) {
        let owner = self.replica.id.as_str();
        // Places in the pool free up as results are recorded: while slots wait for one, record now.
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.store.hurry();
        }
        let recorded =
            self.retry("recording a run", || self.store.finish(name, slot, result, owner, self.clock.now())).await;
        if !recorded {
            tracing::warn!(schedule = name, %slot, "the run was taken over by another replica; its ending is theirs");
        }
    }

    /// Holds the run of a slot fired without a claim in the store, and starts writing the held runs if no task is.
    fn hold(&self, name: &str, slot: DateTime<Utc>, reason: Reason, started: DateTime<Utc>, result: &RunResult) {
        let run = Run {
            schedule: name.to_string(),
            slot,
            reason,
            state: result.ending.into(),
            attempts: result.attempts,
            started_at: Some(started),
            finished_at: Some(self.clock.now()),
            http_status: result.http_status,
            pipeline: result.pipeline.clone(),
            error: result.error.clone(),
            owner: Some(self.replica.id.clone()),
        };
        if self.unrecorded.hold(run) {
            tokio::spawn(self.clone().write_held());
        }
    }

    /// Writes the held runs, batch after batch, until none are left; the store keeps a row it already has.
    async fn write_held(self) {
        let mut written = 0;
        while let Some(batch) = self.unrecorded.next_batch() {
            self.retry("recording runs fired while the disk was full", || self.store.import(batch.clone())).await;
            self.unrecorded.written(batch.len());
            written += batch.len();
        }
        tracing::info!(runs = written, "recorded the runs fired while the state database could not be written");
    }

    /// Calls the store until it answers, backing off; an outage is logged once, by `Health`.
    pub async fn retry<R, F, Fut>(&self, doing: &str, mut call: F) -> R
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, StoreError>>,
    {
        let mut wait = Duration::from_millis(250);
        loop {
            match call().await {
                Ok(answer) => {
                    self.health.ok();
                    return answer;
                }
                Err(error) => self.health.failed(doing, &error),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(STORE_RETRY_CAP);
        }
    }
}

/// A slot not sent because `running` still runs.
fn skipped(running: &crate::run::Pipeline) -> RunResult {
    let why = format!("skipped: pipeline #{} is still {} (overlap: skip)", running.id, running.status);
    RunResult { pipeline: Some(running.clone()), ..RunResult::unanswered(Ending::Skipped, Some(why)) }
}

/// The pipeline a fire created, marked to be followed if its schedule has an `api_token` (see `crate::follow`).
pub fn follow_if_asked(mut result: RunResult, schedule: &Schedule) -> RunResult {
    if let Some(pipeline) = result.pipeline.as_mut()
        && schedule.api_token.is_some()
        && result.ending == Ending::Succeeded
    {
        pipeline.followed = Some(crate::run::Followed::Following);
    }
    result
}

/// The trigger, timed: each answer is an event, for the request-duration histogram.
struct Timed<'a, T> {
    trigger: &'a T,
    events: &'a Events,
}

impl<T: Trigger> Trigger for Timed<'_, T> {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        let started = tokio::time::Instant::now();
        let attempt = self.trigger.send(request).await;
        self.events.publish(Event::Answered { took: started.elapsed() });
        attempt
    }
}
