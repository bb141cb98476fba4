//! Wall-clock time, behind a trait so that the scheduler can be tested on paused tokio time.
//!
//! Slots are wall-clock instants, but tokio sleeps on a monotonic clock. The scheduler asks a `Clock` what time it
//! is, and converts "sleep until 00:30:00 UTC" into a monotonic deadline on every wake.

use std::future::Future;
use std::sync::{Arc, Mutex};
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

/// The database's clock, once measured: all replicas fire on it. Until then (and always on SQLite, whose clock is
/// this host's) it is the host's clock.
///
/// After a measurement, time moves on from the database's reading by the monotonic clock, not by the host's wall
/// clock: a step of the host's clock (NTP after a VM resumes) then changes nothing until the next measurement. Were
/// it an offset added to the wall clock, a step would make this replica fire early and record future slots missed.
pub struct Corrected<C> {
    clock: Arc<C>,
    base: Mutex<Option<(DateTime<Utc>, tokio::time::Instant)>>,
}

impl<C: Clock> Corrected<C> {
    pub fn new(clock: Arc<C>) -> Self {
        Corrected { clock, base: Mutex::new(None) }
    }

    /// From now on it is `at` as of `instant`.
    pub fn set(&self, at: DateTime<Utc>, instant: tokio::time::Instant) {
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, instant));
    }

    /// The host's own reading.
    pub fn uncorrected(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

impl<C: Clock> Clock for Corrected<C> {
    fn now(&self) -> DateTime<Utc> {
        match *self.base.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, since)) => at + chrono::Duration::from_std(since.elapsed()).unwrap_or_default(),
            None => self.clock.now(),
        }
    }

    /// Waits on the host's clock for as long as is left by this one: a step of the host's clock meanwhile ends a
    /// system clock's wait early, and the caller looks again.
    fn wait_until(&self, t: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        self.clock.wait_until(self.clock.now() + (t - self.now()))
    }
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Sleeps on a timerfd set to the wall-clock instant: the kernel wakes the thread once, at that instant, to the
    /// microsecond, where tokio's timer wheel counts whole milliseconds and, for a long sleep, wakes the thread at
    /// each of its levels on the way. Setting the clock (an NTP step) ends the sleep early, so the caller looks again.
    async fn wait_until(&self, t: DateTime<Utc>) {
        if t <= Utc::now() {
            return;
        }
        if let Err(error) = timerfd::sleep_until(t).await {
            tracing::debug!(%error, "no timerfd; sleeping on tokio's timer");
            if let Ok(left) = (t - Utc::now()).to_std() {
                tokio::time::sleep(left).await;
            }
        }
    }
}

mod timerfd {
    use std::os::fd::{AsFd, AsRawFd, RawFd};

    use chrono::{DateTime, Utc};
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    struct Timer(TimerFd);

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// Returns at `t` on the real-time clock, or early if the clock is set.
    pub async fn sleep_until(t: DateTime<Utc>) -> std::io::Result<()> {
        let timer = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
        let at = TimeSpec::new(t.timestamp(), i64::from(t.timestamp_subsec_nanos()));
        let flags = TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
        timer.set(Expiration::OneShot(at), flags)?;
        // SAFETY: `Timer` owns the timerfd for as long as the `AsyncFd` lives, and always returns that same fd.
        let timer = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let _ready = timer.readable().await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_corrected_clock_moves_on_from_the_database_and_ignores_host_steps() {
        let start = Utc::now();
        let host = Arc::new(TokioClock::starting_at(start));
        let clock = Corrected::new(host.clone());
        assert_eq!(clock.now(), start, "the host's clock until a measurement");
        clock.set(start - chrono::TimeDelta::seconds(30), tokio::time::Instant::now());
        assert_eq!(clock.now(), start - chrono::TimeDelta::seconds(30));
        let t0 = tokio::time::Instant::now();
        clock.wait_until(start - chrono::TimeDelta::seconds(20)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        assert_eq!(clock.uncorrected(), start + chrono::TimeDelta::seconds(10));
        // NTP steps the host 5 minutes ahead: the database's time does not jump with it.
        host.step(chrono::TimeDelta::minutes(5));
        assert_eq!(clock.now(), start - chrono::TimeDelta::seconds(20));
        let t1 = tokio::time::Instant::now();
        clock.wait_until(start - chrono::TimeDelta::seconds(19)).await;
        assert_eq!(t1.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_system_clock_never_wakes_before_the_instant() {
        for ms in [1, 20, 120] {
            let at = Utc::now() + chrono::Duration::milliseconds(ms);
            SystemClock.wait_until(at).await;
            assert!(Utc::now() >= at, "woke before {at}");
        }
        // An instant in the past returns at once.
        SystemClock.wait_until(Utc::now() - chrono::Duration::seconds(1)).await;
    }
}
