//! Wall-clock time, behind a trait so that the scheduler can be tested on paused tokio time.
//!
//! Slots are wall-clock instants, but tokio sleeps on a monotonic clock. The scheduler asks a `Clock` what time it
//! is, and converts "sleep until 00:30:00 UTC" into a monotonic deadline on every wake.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Returns at `t` by this clock (at once if it has passed).
    fn wait_until(&self, t: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        let left = (t - self.now()).to_std().unwrap_or(Duration::ZERO);
        async move {
            if !left.is_zero() {
                tokio::time::sleep(left).await;
            }
        }
    }
}

/// The system's clock.
pub struct SystemClock;

/// How much of a wait is left to the operating system's own sleep, which is precise to microseconds, rather than to
/// tokio's timer wheel, which counts whole milliseconds and so wakes up to a millisecond or two late.
const PRECISE: Duration = Duration::from_millis(3);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn wait_until(&self, t: DateTime<Utc>) {
        let left = |now: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
        if left(Utc::now()) > PRECISE {
            tokio::time::sleep(left(Utc::now()) - PRECISE).await;
        }
        let rest = left(Utc::now());
        if !rest.is_zero() {
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
        }
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
