//! Runs fired while the state database could not be written (its disk full), held in memory until it can be.
//!
//! The claim is what keeps a slot from being fired twice, and on a full disk no claim can be written. Waiting for
//! space would stop every nightly build on the box for a log file's sake, so a replica that is the only live one
//! fires anyway: no other replica can claim the slot (one that starts meanwhile cannot register), and this one
//! fires each slot once. Its runs wait here and are written once the disk has room. Only SQLite reports a full disk
//! (`StoreError::Unwritable`); a database that is away (`Unreachable`) still stops firing, since another replica
//! may reach it. What is held is bounded: past `MAX_HELD` runs, slots wait for the store as they do when it is away.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::{Run, StoreError};

/// The most runs held at once, about 300 bytes each: a day of one per-minute schedule is 1,440.
pub const MAX_HELD: usize = 50_000;
/// How many held runs are written in one transaction.
const BATCH: usize = 1_000;

#[derive(Debug, Default)]
pub struct Unrecorded {
    runs: Mutex<Vec<Run>>,
    /// Whether this replica was the only live one when the replicas were last counted.
    alone: AtomicBool,
    /// Whether a task is writing the held runs.
    writing: AtomicBool,
    /// Whether firing without a claim was logged, since the held runs were last all written.
    warned: AtomicBool,
}

impl Unrecorded {
    /// The lease counted the live replicas, this one included.
    pub fn set_replicas(&self, alive: usize) {
        self.alone.store(alive <= 1, Ordering::Relaxed);
    }

    /// Whether `slots` slots that the store refused to claim with `error` may be fired all the same.
    pub fn may_fire(&self, error: &StoreError, slots: usize) -> bool {
        let room = self.held() + slots <= MAX_HELD;
        let may = matches!(error, StoreError::Unwritable(_)) && self.alone.load(Ordering::Relaxed) && room;
        if may && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "firing without a claim while the state database cannot be written: this replica is the only one, \
                 so no other can fire these slots; their runs are kept in memory (up to {MAX_HELD}) until it can"
            );
        }
        may
    }

    pub fn held(&self) -> usize {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Holds a run; `true` if the caller is to write the held runs (no task is writing them yet).
    pub fn hold(&self, run: Run) -> bool {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).push(run);
        !self.writing.swap(true, Ordering::AcqRel)
    }

    /// A copy of the oldest held runs, for the writer to write; `None` when there are none left, and the writer
    /// stops. They stay held until `written`, so that a stop meanwhile still finds them. A run held after the last
    /// batch was taken finds `writing` off, and starts a writer of its own.
    pub fn next_batch(&self) -> Option<Vec<Run>> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if runs.is_empty() {
            self.warned.store(false, Ordering::Relaxed);
            self.writing.store(false, Ordering::Release);
            return None;
        }
        Some(runs[..runs.len().min(BATCH)].to_vec())
    }

    /// The oldest `n` held runs were written.
    pub fn written(&self, n: usize) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(runs.len());
        runs.drain(..n);
    }

    /// Takes every held run, at a stop.
    pub fn take_all(&self) -> Vec<Run> {
        std::mem::take(&mut *self.runs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: i64) -> Run {
        Run {
            schedule: "s".into(),
            slot: chrono::DateTime::from_timestamp(n, 0).unwrap_or_default(),
            reason: crate::run::Reason::Schedule,
            state: crate::run::RunState::Succeeded,
            attempts: 1,
            started_at: None,
            finished_at: None,
            http_status: Some(201),
            pipeline: None,
            error: None,
            owner: Some("me".into()),
        }
    }

    #[test]
    fn only_a_full_disk_and_a_lone_replica_fire_without_a_claim() {
        let held = Unrecorded::default();
        let full = StoreError::Unwritable("disk full".into());
        let away = StoreError::Unreachable { location: "db".into(), reason: "refused".into() };
        assert!(!held.may_fire(&full, 1), "the replicas were not counted yet");
        held.set_replicas(1);
        assert!(held.may_fire(&full, 1));
        assert!(!held.may_fire(&away, 1), "another replica may reach a database that is away from here");
        assert!(!held.may_fire(&full, MAX_HELD + 1), "bounded");
        held.set_replicas(2);
        assert!(!held.may_fire(&full, 1), "another replica may fire it");
    }

    #[test]
    fn one_writer_at_a_time_and_none_left_behind() {
        let held = Unrecorded::default();
        assert!(held.hold(run(1)), "the first run starts a writer");
        assert!(!held.hold(run(2)), "one is writing already");
        assert_eq!(held.next_batch().map(|b| b.len()), Some(2));
        assert!(!held.hold(run(3)), "the writer has not stopped yet: it takes this one next");
        held.written(2);
        let batch = held.next_batch().unwrap_or_default();
        assert_eq!(batch.iter().map(|r| r.slot.timestamp()).collect::<Vec<_>>(), [3]);
        assert_eq!(held.take_all().len(), 1, "a batch being written is still held, for a stop to find");
        assert_eq!(held.next_batch(), None, "the writer stops");
        assert!(held.hold(run(4)), "and the next run starts another");
    }
}
