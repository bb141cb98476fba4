//! Following each triggered pipeline to its end, for schedules with an `api_token`.
//!
//! A trigger that created a pipeline is recorded with its first look due `FIRST_POLL` later. This loop takes the
//! pipelines that are due from the store (which holds each for `HOLD`, so one replica at a time asks about it), asks
//! GitLab about each with at most `CONCURRENCY` requests at once, and writes back what it found and when to look
//! again: 10 s, then twice as long each time, up to 5 min. A final status (or `manual`), a refused token, a
//! vanished pipeline or `follow_timeout` ends following, and is published as `Event::PipelineEnded`. Everything is
//! in the store, so a restart, or another replica, picks up where this one stopped.

pub mod api;
pub mod overlap;
pub mod tokens;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events, Listener, PipelineEnded};
use crate::run::{FIRST_POLL, Followed, LONGEST_POLL, Pipeline, is_final};
use crate::schedule::{ApiToken, Schedule};
use crate::store::{Follow, Follows, Look};
use api::{Answer, PipelineApi};

/// How long a replica holds a pipeline it took: longer than any look takes (the request's `timeout` is at most an
/// hour, but usually 30 s), short enough that a dead replica's pipelines are soon taken up.
pub const HOLD: Duration = Duration::from_secs(120);

/// How long one look may take, the per-host budget's wait included: well within `HOLD`.
const LOOK_LIMIT: Duration = Duration::from_secs(90);

/// Looks under way at once, at most.
pub const CONCURRENCY: usize = 16;

/// How long the loop sleeps at most: the store is asked again then, for pipelines that other replicas recorded or
/// that a dead replica held.
const IDLE: Duration = Duration::from_secs(30);

/// How long to wait before asking the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// The follower, a peer of the scheduler in the daemon.
pub struct Follower<S, A> {
    pub store: Arc<S>,
    pub api: Arc<A>,
    pub schedules: watch::Receiver<Vec<Arc<Schedule>>>,
    pub events: Events,
    /// Rung when a pipeline is recorded, so that its first look is not left to the next idle check.
    pub kick: Arc<Notify>,
}

/// Rings the follower when a fire recorded a pipeline to follow.
pub struct Kick(pub Arc<Notify>);

impl Listener for Kick {
    fn on(&self, event: &Event<'_>) {
        if let Event::Finished(fired) = event
            && fired.result.pipeline.as_ref().is_some_and(|p| p.followed == Some(Followed::Following))
        {
            self.0.notify_one();
        }
    }
}

impl<S: Follows + 'static, A: PipelineApi> Follower<S, A> {
    /// Follows until `stop`. Looks under way are dropped then; their pipelines are taken up again after `HOLD`.
    pub async fn run(mut self, stop: CancellationToken) {
        let pool = Arc::new(Semaphore::new(CONCURRENCY));
        let mut looks = JoinSet::new();
        let mut by_name = index(&self.schedules.borrow_and_update());
        loop {
            // With no schedule to follow, nothing is asked of the store until the configuration changes: an idle
            // daemon stays asleep. (Pipelines left from a schedule that lost its `api_token` wait for it.)
            let wait = match by_name.is_empty() {
                false => self.take_due(&pool, &by_name, &mut looks).await,
                true => Duration::MAX,
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait.min(IDLE * 1000)) => {}
                _ = self.kick.notified() => {}
                Ok(()) = self.schedules.changed() => by_name = index(&self.schedules.borrow_and_update()),
                Some(_) = looks.join_next(), if !looks.is_empty() => {}
            }
        }
        looks.abort_all();
    }

    /// Starts a look at each due pipeline there is room for; how long to sleep before the next round.
    async fn take_due(
        &self,
        pool: &Arc<Semaphore>,
        by_name: &HashMap<Arc<str>, Arc<Schedule>>,
        looks: &mut JoinSet<()>,
    ) -> Duration {
        let free = pool.available_permits();
        if free == 0 {
            // A look that ends wakes the loop.
            return IDLE;
        }
        let now = Utc::now();
        let taken = match self.store.take_follows(now, HOLD, free).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(%error, "cannot read the pipelines to follow; trying again");
                return STORE_RETRY;
            }
        };
        let took = !taken.is_empty();
        for follow in taken {
            let Ok(permit) = pool.clone().try_acquire_owned() else { break };
            let schedule = by_name.get(follow.schedule.as_str()).cloned();
            let (store, api, events) = (self.store.clone(), self.api.clone(), self.events.clone());
            looks.spawn(async move {
                look(&*store, &*api, &events, schedule.as_deref(), follow).await;
                drop(permit);
            });
        }
        match self.store.next_follow().await {
            // Due, but none taken: another replica holds them (PostgreSQL skips rows it has locked). Not a spin.
            Ok(Some(next)) if next <= Utc::now() && !took => Duration::from_secs(1),
            Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(IDLE),
            Ok(None) => IDLE,
            Err(_) => STORE_RETRY,
        }
    }
}

/// The schedules that follow their pipelines, by name: a pipeline of any other is not followed here.
fn index(schedules: &[Arc<Schedule>]) -> HashMap<Arc<str>, Arc<Schedule>> {
    schedules.iter().filter(|s| s.api_token.is_some()).map(|s| (s.name.clone(), s.clone())).collect()
}

/// Asks GitLab about one pipeline and records what it said.
async fn look<S: Follows, A: PipelineApi>(
    store: &S,
    api: &A,
    events: &Events,
    schedule: Option<&Schedule>,
    follow: Follow,
) {
    let found = match schedule {
        None => not_here(&follow, Utc::now()),
        Some(schedule) => {
            // A look ends well within the hold, so that no other look at the pipeline starts meanwhile.
            let answer = match tokio::time::timeout(LOOK_LIMIT, api.pipeline(schedule, follow.pipeline)).await {
                Ok(answer) => answer,
                Err(_) => {
                    Answer::Later { why: format!("no answer within {}", crate::status::span(LOOK_LIMIT)), wait: None }
                }
            };
            let timeout = schedule.api_token.as_ref().map_or(Duration::MAX, |t| t.follow_timeout);
            decide(follow.triggered, follow.polls, answer, timeout, Utc::now())
        }
    };
    match store.record_look(&follow, &found).await {
        Ok(true) if found.next.is_none() => {
            let pipeline = Pipeline {
                id: follow.pipeline,
                status: found.status.clone().unwrap_or_default(),
                finished_at: found.finished_at,
                duration: found.duration,
                followed: Some(found.followed),
                note: found.note.clone(),
                ..Pipeline::created(follow.pipeline, None, "", None)
            };
            let ended = PipelineEnded { schedule: follow.schedule, slot: follow.slot, pipeline };
            events.publish(Event::PipelineEnded(&ended));
        }
        Ok(_) => {}
        // The hold passes and the pipeline is looked at again.
        Err(error) => tracing::warn!(%error, schedule = follow.schedule, "cannot record a pipeline's status"),
    }
}

/// A pipeline whose schedule this replica does not have, or has without an `api_token`: another replica (in a
/// rolling update, or before its reload) may have it, so it is put back for later, and dropped only once it is
/// past the default `follow_timeout`.
fn not_here(follow: &Follow, now: DateTime<Utc>) -> Look {
    let past = (now - follow.triggered).to_std().is_ok_and(|age| age >= ApiToken::DEFAULT_FOLLOW_TIMEOUT);
    let (followed, next, note) = match past {
        true => (Followed::Dropped, None, "no longer followed: its schedule is gone, or has no api_token"),
        false => (
            Followed::Following,
            Some(now + chrono::Duration::from_std(LONGEST_POLL).unwrap_or_default()),
            "its schedule is not loaded here, or has no api_token here; put back for another replica or a reload",
        ),
    };
    Look {
        status: None,
        finished_at: None,
        duration: None,
        followed,
        note: Some(note.into()),
        next,
        polls: follow.polls,
        at: now,
    }
}

/// What the answer to look number `polls + 1` at a pipeline triggered at `triggered` means for following: the
/// status to record and when to look again, if ever.
pub fn decide(triggered: DateTime<Utc>, polls: u32, answer: Answer, timeout: Duration, now: DateTime<Utc>) -> Look {
    let polls = polls.saturating_add(1);
    let out_of_time = (now - triggered).to_std().is_ok_and(|age| age >= timeout);
    let mut look = Look {
        status: None,
        finished_at: None,
        duration: None,
        followed: Followed::Following,
        note: None,
        next: None,
        polls,
        at: now,
    };
    let later = |wait: Duration| Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
    match answer {
        Answer::Pipeline(state) => {
            look.finished_at = state.finished_at;
            look.duration = state.duration.filter(|d| d.is_finite() && *d >= 0.0).map(|d| d.round() as u64);
            if is_final(&state.status) {
                look.followed = Followed::Ended;
            } else if out_of_time {
                look.followed = Followed::TimedOut;
                look.note =
                    Some(format!("still {} after follow_timeout ({})", state.status, crate::status::span(timeout)));
            } else {
                look.next = later(backoff(polls));
            }
            // GitLab's statuses are short words; anything else is not kept whole.
            look.status = Some(state.status.chars().take(40).collect());
        }
        Answer::Refused(why) => (look.followed, look.note) = (Followed::Refused, Some(why)),
        Answer::Gone(why) => (look.followed, look.note) = (Followed::Gone, Some(why)),
        Answer::Later { why, wait } => {
            match out_of_time {
                true => look.followed = Followed::TimedOut,
                false => look.next = later(wait.unwrap_or_else(|| backoff(polls))),
            }
            look.note = Some(why);
        }
    }
    look
}

/// The wait after `polls` looks: 10 s after the trigger, then twice as long each time, up to 5 min.
pub fn backoff(polls: u32) -> Duration {
    FIRST_POLL.saturating_mul(1 << polls.min(16)).min(LONGEST_POLL)
}

#[cfg(test)]
mod tests;
