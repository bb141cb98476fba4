//! Keeps the history bounded. A per-second schedule writes 86,400 runs a day; left alone, the state file grows
//! until its disk is full and every status query slows down.
//!
//! Each schedule keeps the runs younger than its `history_retention`, at most `history_max_runs` of them, and
//! always its newest run, since catch-up and `status` start from it. Runs of schedules no longer configured are
//! kept by the default rule. Pruning runs beside the scheduler, shortly after the start and then every hour, in
//! batches with a pause between them, so that a claim waits behind one small batch at most. Every replica prunes;
//! deleting a row twice deletes it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::schedule::{Retention, Schedule};
use crate::store::{RunStore, StoreError};

/// When the first pass starts: after the start-up's catch-up, which it must not slow down.
const FIRST: Duration = Duration::from_secs(10);
/// How often the history is pruned.
const EVERY: Duration = Duration::from_secs(3600);
/// How many rows one statement deletes at most: a few milliseconds of work.
const BATCH: usize = 1_000;
/// The pause between batches, in which claims and results go first.
const PAUSE: Duration = Duration::from_millis(10);

/// Prunes the history every hour until `stop`, by the rules of the schedules `schedules` holds at the time.
pub async fn keep<S: RunStore>(store: Arc<S>, schedules: watch::Receiver<Vec<Arc<Schedule>>>, stop: CancellationToken) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait = EVERY;
        let list = schedules.borrow().clone();
        match prune(&*store, &list, Utc::now(), &stop).await {
            Ok(0) => tracing::debug!("nothing to prune in the history"),
            Ok(runs) => tracing::info!(runs, "pruned the history: runs past history_retention or history_max_runs"),
            Err(error) => tracing::warn!(%error, "cannot prune the history; trying again in an hour"),
        }
    }
}

/// One pass over every schedule in the history; how many runs it deleted.
pub async fn prune<S: RunStore>(
    store: &S,
    schedules: &[Arc<Schedule>],
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<usize, StoreError> {
    let configured: HashMap<&str, &Schedule> = schedules.iter().map(|s| (&*s.name, &**s)).collect();
    let mut deleted = 0;
    for name in store.schedule_names().await? {
        let rule = configured.get(name.as_str()).map_or(Retention::DEFAULT, |s| s.history);
        let mut before = now - chrono::Duration::from_std(rule.keep_for).unwrap_or(chrono::TimeDelta::MAX);
        // A walk over at most `max_runs` index entries: a pass costs at most one step per row of the history.
        if let Some(nth) = store.nth_newest(&name, rule.max_runs).await? {
            before = before.max(nth + chrono::Duration::milliseconds(1));
        }
        loop {
            let batch = store.prune(&name, before, BATCH).await?;
            deleted += batch;
            if batch < BATCH {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(PAUSE) => {}
                _ = stop.cancelled() => return Ok(deleted),
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
