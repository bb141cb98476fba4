//! The replica's lease: heartbeat every lease/3, take over the unfinished rows of dead replicas, and keep the
//! clock on the database's.
//!
//! Runs beside the timer loop and hands it the `claimed` rows it took over, to be fired or recorded missed. The
//! store stamps heartbeats with its own clock, so replicas whose clocks disagree still agree on who is dead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::unrecorded::Unrecorded;
use crate::clock::{Clock, Corrected};
use crate::events::{Event, Events};
use crate::store::{Replica, RunStore, TakenOver, owner_name};

/// How often the offset to the database's clock is measured.
const MEASURE_EVERY: Duration = Duration::from_secs(60);
/// An offset larger than this is worth a warning: some host's clock is off.
const WARN_OFFSET: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

pub struct Lease<S, C> {
    pub store: Arc<S>,
    pub replica: Arc<Replica>,
    pub clock: Arc<Corrected<C>>,
    pub health: Arc<Health>,
    pub events: Events,
    pub unrecorded: Arc<Unrecorded>,
}

impl<S: RunStore, C: Clock> Lease<S, C> {
    /// Heartbeats and takes over until `stop`, sending what it took over to `taken`.
    pub async fn keep(self, taken: mpsc::UnboundedSender<TakenOver>, stop: CancellationToken) {
        // Cron puts slots on whole seconds: the lease works at half past, out of their way.
        let now = self.clock.now();
        let to_half = (1_500_000_000 - i64::from(now.timestamp_subsec_nanos())) % 1_000_000_000;
        let first = tokio::time::Instant::now() + Duration::from_nanos(to_half.unsigned_abs());
        let mut beat = tokio::time::interval_at(first, (self.replica.lease / 3).max(Duration::from_millis(10)));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut measured = tokio::time::Instant::now();
        // After an outage every replica's heartbeat is stale at once: none takes over another until all have had a
        // lease to renew theirs. At start, the others have had theirs.
        let mut renewed_since = Some(tokio::time::Instant::now().checked_sub(self.replica.lease).unwrap_or(measured));
        loop {
            tokio::select! {
                _ = beat.tick() => {}
                _ = stop.cancelled() => break,
            }
            if measured.elapsed() >= MEASURE_EVERY {
                self.measure_clock().await;
                self.count_replicas().await;
                measured = tokio::time::Instant::now();
            }
            let may_take_over = renewed_since.is_some_and(|since| since.elapsed() >= self.replica.lease);
            match self.store.beat(&self.replica, may_take_over).await {
                Ok((renewed, found)) => {
                    self.health.ok();
                    renewed_since.get_or_insert_with(tokio::time::Instant::now);
                    if !renewed {
                        tracing::warn!(
                            replica = owner_name(&self.replica.id),
                            "this replica's lease had run out (paused, or cut off from the database); its unfinished \
                             slots were taken over by others and will not be sent from here"
                        );
                    }
                    for dead in found {
                        log_takeover(&dead);
                        let slots = dead.claimed.len() + dead.unknown;
                        self.events.publish(Event::TookOver { from: &dead.from, slots });
                        if !dead.claimed.is_empty() && taken.send(dead).is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    self.health.failed("renewing the lease", &error);
                    renewed_since = None;
                }
            }
        }
    }

    /// Reads the database's clock and fires on it from now on. Half the round trip is the error; the reading is
    /// taken as of the end of the round trip, so that the corrected clock never runs ahead of the database's.
    pub async fn measure_clock(&self) {
        let (host, before) = (self.clock.uncorrected(), tokio::time::Instant::now());
        let Ok(Some(theirs)) = self.store.clock().await else { return };
        let after = tokio::time::Instant::now();
        self.clock.set(theirs, after);
        let error = chrono::Duration::from_std((after - before) / 2).unwrap_or_default();
        let offset = theirs - (host + error);
        let seconds = -offset.num_microseconds().unwrap_or_default() as f64 / 1e6;
        self.events.publish(Event::ClockOffset { seconds });
        if offset.abs() > WARN_OFFSET {
            tracing::warn!(
                offset_ms = offset.num_milliseconds(),
                error_ms = error.num_milliseconds(),
                "this host's clock differs from the database's; firing on the database's clock"
            );
        }
    }
}

impl<S: RunStore, C: Clock> Lease<S, C> {
    /// Counts the live replicas, for the metrics, and to know whether this one may fire on a full disk.
    pub async fn count_replicas(&self) {
        if let Ok(replicas) = self.store.live_replicas().await {
            self.unrecorded.set_replicas(replicas.len());
            self.events.publish(Event::Lease { replicas_alive: replicas.len() });
        }
    }
}

fn log_takeover(dead: &TakenOver) {
    let slots = dead.claimed.len() + dead.unknown;
    tracing::warn!(
        from = owner_name(&dead.from),
        claimed = dead.claimed.len(),
        unknown = dead.unknown,
        "took over {slots} slots from {}",
        owner_name(&dead.from)
    );
}
