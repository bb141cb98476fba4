//! Wall-clock time, behind a trait so that the scheduler can be tested on paused tokio time.
//!
//! Slots are wall-clock instants, but tokio sleeps on a monotonic clock. The scheduler asks a `Clock` what time it
//! is, and converts "sleep until 00:30:00 UTC" into a monotonic deadline on every wake.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that moves with tokio's clock (so `tokio::time::pause` and `advance` move it too), and can be
/// stepped like NTP steps a real one.
pub struct TokioClock {
    start: tokio::time::Instant,
    wall: Mutex<DateTime<Utc>>,
}

impl TokioClock {
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock { start: tokio::time::Instant::now(), wall: Mutex::new(wall) }
    }

    /// Moves the wall clock without moving tokio's clock.
    pub fn step(&self, by: chrono::Duration) {
        let mut wall = self.wall.lock().unwrap_or_else(|p| p.into_inner());
        *wall += by;
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let wall = *self.wall.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        wall + elapsed
    }
}
