//! What the daemon reports as it works: a configuration loaded or refused, a slot queued, claimed, sent, retried,
//! finished or missed, a dead replica's slots taken over, the lease renewed.
//!
//! The scheduler publishes these and does not know who listens. The log, the metrics, a dry run's printout and the
//! tests are listeners, so that what a run means is decided once, where it happens, and a new consumer is one more
//! listener rather than a flag checked in five places. Listeners are called in line and must be quick: a counter,
//! a log line, a send on a channel.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::run::{Reason, RunResult};
use crate::schedule::Schedule;
use crate::trigger::TriggerRequest;

/// What became of a slot the daemon fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub schedule: String,
    pub slot: DateTime<Utc>,
    pub reason: Reason,
    pub result: RunResult,
    /// From the slot (plus its jitter) to the first request, in milliseconds.
    pub lateness_ms: i64,
}

#[derive(Debug)]
pub enum Event<'a> {
    /// This configuration runs now: at start, and after each successful reload.
    Loaded { schedules: &'a [Arc<Schedule>] },
    /// The reload watcher loaded a new, valid configuration; `Loaded` follows once the scheduler runs it.
    Reloaded,
    /// A new configuration was refused; the one running before keeps running.
    ReloadFailed { error: &'a str },
    /// A schedule's next slot was queued.
    Queued { schedule: &'a Arc<Schedule>, slot: DateTime<Utc> },
    /// Of `asked` slots, this replica claimed `won`; another replica has the rest.
    Claimed { asked: usize, won: usize },
    /// A request goes out now.
    Sending { request: &'a TriggerRequest },
    /// GitLab answered one request (or the request failed) after `took`.
    Answered { took: Duration },
    /// An attempt failed and is tried again after `wait`.
    Retrying { schedule: &'a str, slot: DateTime<Utc>, attempt: u32, error: &'a str, wait: Duration },
    /// A slot was fired and its ending recorded.
    Finished(&'a Fired),
    /// Slots of a schedule were recorded as missed.
    Missed { schedule: &'a str, slots: usize },
    /// The unfinished slots of a dead replica were taken over.
    TookOver { from: &'a str, slots: usize },
    /// The lease was renewed.
    Lease { replicas_alive: usize },
    /// This host's clock was measured against the database's: positive when the host runs ahead.
    ClockOffset { seconds: f64 },
    /// The store answered, or stopped answering (or writing), and why.
    Store { up: bool, reason: Option<&'a str> },
    /// The timer loop woke.
    Woke { at: DateTime<Utc> },
    /// Following a pipeline ended: it reached a final status, or following stopped short (`followed` says which).
    PipelineEnded(&'a PipelineEnded),
}

/// A followed pipeline that is no longer followed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineEnded {
    pub schedule: String,
    pub slot: DateTime<Utc>,
    /// Its status as last seen, its id, and how following ended.
    pub pipeline: crate::run::Pipeline,
}

/// Something that hears every event.
pub trait Listener: Send + Sync {
    fn on(&self, event: &Event<'_>);
}

/// The listeners of one daemon.
#[derive(Clone, Default)]
pub struct Events(Arc<Vec<Arc<dyn Listener>>>);

impl Events {
    pub fn new(listeners: Vec<Arc<dyn Listener>>) -> Events {
        Events(Arc::new(listeners))
    }

    /// These events, and `listener` too.
    pub fn with(&self, listener: Arc<dyn Listener>) -> Events {
        let mut listeners = (*self.0).clone();
        listeners.push(listener);
        Events(Arc::new(listeners))
    }

    pub fn publish(&self, event: Event<'_>) {
        for listener in self.0.iter() {
            listener.on(&event);
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} listeners)", self.0.len())
    }
}

/// Each finished slot, sent on a channel: tests and benchmarks listen this way.
impl Listener for mpsc::UnboundedSender<Fired> {
    fn on(&self, event: &Event<'_>) {
        if let Event::Finished(fired) = event {
            let _ = self.send((*fired).clone());
        }
    }
}

/// A dry run's printout: each request as it would go out, token masked.
pub struct PrintRequests;

impl Listener for PrintRequests {
    fn on(&self, event: &Event<'_>) {
        if let Event::Sending { request } = event {
            println!("{}", request.describe());
        }
    }
}

/// The log: one line per fire and per retry, with everything a person or a log pipeline needs. Everything else
/// the daemon logs where it happens, since it is about the daemon rather than a run.
pub struct Log {
    /// Runs are printed, not sent: say so rather than "succeeded".
    pub dry_run: bool,
}

impl Listener for Log {
    fn on(&self, event: &Event<'_>) {
        match event {
            Event::Finished(fired) => log_fire(fired, self.dry_run),
            Event::Retrying { schedule, slot, attempt, error, wait } => {
                tracing::warn!(schedule, slot = %slot, attempt, error, retry_in = ?wait, "retrying")
            }
            Event::ReloadFailed { error } => {
                tracing::error!(error, "the new configuration is invalid; the old one keeps running")
            }
            Event::PipelineEnded(ended) => log_pipeline(ended),
            _ => {}
        }
    }
}

fn log_fire(fired: &Fired, dry_run: bool) {
    let Fired { schedule, slot, reason, result, lateness_ms } = fired;
    // A dry run's "pipeline" is the stand-in its trigger answers with, not one of GitLab's.
    let pipeline = result.pipeline.as_ref().filter(|_| !dry_run);
    let pipeline_id = pipeline.map(|p| p.id);
    let url = pipeline.and_then(|p| p.web_url.as_deref());
    let outcome = if dry_run { "dry-run" } else { crate::run::RunState::from(result.ending).as_str() };
    let slot = crate::trigger::request::slot_text(*slot);
    let reason = reason.as_str();
    match result.ending {
        crate::run::Ending::Skipped => tracing::info!(
            schedule,
            slot,
            reason,
            outcome,
            pipeline_id,
            detail = result.error.as_deref().unwrap_or_default(),
            "skipped"
        ),
        crate::run::Ending::Succeeded => tracing::info!(
            schedule,
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
            schedule,
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

fn log_pipeline(ended: &PipelineEnded) {
    let PipelineEnded { schedule, slot, pipeline } = ended;
    let slot = crate::trigger::request::slot_text(*slot);
    let (id, status, url) = (pipeline.id, pipeline.status.as_str(), pipeline.web_url.as_deref());
    let followed = pipeline.followed.map_or("", crate::run::Followed::as_str);
    let duration_s = pipeline.duration;
    match (pipeline.followed, status) {
        (Some(crate::run::Followed::Ended), "success" | "skipped" | "manual") => {
            tracing::info!(schedule, slot, pipeline_id = id, status, duration_s, url, "pipeline ended")
        }
        (Some(crate::run::Followed::Ended), _) => {
            tracing::warn!(schedule, slot, pipeline_id = id, status, duration_s, url, "pipeline ended")
        }
        _ => tracing::warn!(
            schedule,
            slot,
            pipeline_id = id,
            status,
            followed,
            note = pipeline.note.as_deref().unwrap_or_default(),
            url,
            "stopped following the pipeline"
        ),
    }
}
