//! The measurements, each run the same way for whichever scheduler it is given: lateness of per-second schedules,
//! a burst of slots due in the same second, idle wake-ups, and start-up time and memory with many schedules.
//! cron knows only minutes: its lateness is that of one minute's jobs, its burst is due at a whole minute.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};

use crate::daemon::Setup;
use crate::fake::{Arrival, Fake};
use crate::measure::percentile;
use crate::peers::next_minute;
use crate::schedules::{self, When};
use crate::subject::{self, Running, Who};

pub struct Lateness {
    pub requests: usize,
    pub duplicates: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// CPU of the scheduler's processes per request, in µs.
    pub cpu_per_fire_us: f64,
}

/// `n` schedules every second, over `seconds` (cron: every minute, over one minute).
pub fn lateness(who: Who, n: usize, seconds: u64, setup: &Setup) -> Option<Lateness> {
    let fake = who.fake();
    let specs = schedules::specs(n, When::EverySecond);
    let running = subject::start(who, "lateness", &fake, &specs, When::EverySecond, setup)?;
    let (got, cpu) = match who.per_minute() {
        true => one_minute(&fake, running.as_ref(), n),
        false => seconds_window(&fake, running.as_ref(), seconds),
    };
    running.stop();
    detail(&got);
    let late = lateness_ms(&got);
    Some(Lateness {
        requests: got.len(),
        duplicates: got.len() - distinct(&got),
        p50: percentile(&late, 0.5),
        p99: percentile(&late, 0.99),
        max: late.last().copied().unwrap_or(f64::NAN),
        cpu_per_fire_us: cpu * 1e6 / got.len().max(1) as f64,
    })
}

/// What arrived over `seconds`, past 2 s of start-up, and the CPU the scheduler took meanwhile.
fn seconds_window(fake: &Fake, running: &dyn Running, seconds: u64) -> (Vec<Arrival>, f64) {
    std::thread::sleep(Duration::from_secs(2));
    fake.take();
    let before = subject::cpu_seconds(running);
    std::thread::sleep(Duration::from_secs(seconds));
    let got = fake.take();
    (got, subject::cpu_seconds(running) - before)
}

/// The `n` jobs of the next whole minute at least 3 s away, and the CPU they took.
fn one_minute(fake: &Fake, running: &dyn Running, n: usize) -> (Vec<Arrival>, f64) {
    let minute = next_minute(Duration::from_secs(3));
    sleep_until(minute - chrono::Duration::seconds(1));
    fake.take();
    let before = subject::cpu_seconds(running);
    let got = gather(fake, n, micros(minute), Gather::minute(minute));
    // Until cron has waited for its jobs, their CPU is not its children's.
    std::thread::sleep(Duration::from_secs(2));
    (got, subject::cpu_seconds(running) - before)
}

/// How long to wait for a burst: until all arrived, or nothing came for 3 s once `patient_until` is past, or
/// `deadline`.
struct Gather {
    patient_until: Instant,
    deadline: Instant,
}

impl Gather {
    fn second(due: DateTime<Utc>) -> Gather {
        Gather { patient_until: instant_of(due) + Duration::from_secs(2), deadline: instant_of(due) + secs(60) }
    }

    /// cron starts jobs 1–2 s after the minute, and a large burst takes it minutes.
    fn minute(due: DateTime<Utc>) -> Gather {
        Gather { patient_until: instant_of(due) + secs(10), deadline: instant_of(due) + secs(300) }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The arrivals of `slot` (µs), polled every 50 ms, until `n` distinct schedules are in or `wait` says stop.
fn gather(fake: &Fake, n: usize, slot: i64, wait: Gather) -> Vec<Arrival> {
    let mut got: Vec<Arrival> = Vec::new();
    let mut last_new = Instant::now();
    loop {
        let new: Vec<Arrival> = fake.take().into_iter().filter(|a| a.slot == slot).collect();
        if !new.is_empty() {
            last_new = Instant::now();
        }
        got.extend(new);
        let now = Instant::now();
        let quiet = now > wait.patient_until && now - last_new > secs(3);
        if distinct(&got) >= n || quiet || now > wait.deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Burst {
    pub n: usize,
    pub arrived: usize,
    pub duplicates: usize,
    /// From the slot to the last arrival.
    pub last_s: f64,
    pub cpu: f64,
    /// Anything the scheduler itself says, such as its warnings.
    pub note: Option<String>,
}

/// `n` schedules all due in the same second (cron: minute).
pub fn burst(who: Who, n: usize, setup: &Setup) -> Option<Burst> {
    let due = burst_due(who, n);
    if !schedules::unambiguous(due) {
        println!("  {}: skipped, {due} falls in a daylight-saving change in one of the zones", who.label());
        return None;
    }
    let fake = who.fake();
    let specs = schedules::specs(n, When::At(due));
    let running = subject::start(who, "burst", &fake, &specs, When::At(due), setup)?;
    if Utc::now() > due - chrono::Duration::milliseconds(500) {
        println!("  {}: was not ready before the slot", who.label());
    }
    sleep_until(due - chrono::Duration::milliseconds(500));
    fake.take();
    let before = subject::cpu_seconds(running.as_ref());
    let wait = if who.per_minute() { Gather::minute(due) } else { Gather::second(due) };
    let mut got = gather(&fake, n, micros(due), wait);
    // For a duplicate sent late, and for cron to wait for its jobs.
    std::thread::sleep(Duration::from_secs(1));
    let cpu = subject::cpu_seconds(running.as_ref()) - before;
    got.extend(fake.take().into_iter().filter(|a| a.slot == micros(due)));
    let note = running.note();
    running.stop();
    let last_s = got.iter().map(|a| a.at).max().map_or(f64::NAN, |at| (at - micros(due)) as f64 / 1e6);
    Some(Burst { n, arrived: distinct(&got), duplicates: got.len() - distinct(&got), last_s, cpu, note })
}

/// The burst's second: far enough ahead for the scheduler to have loaded its `n` schedules.
fn burst_due(who: Who, n: usize) -> DateTime<Utc> {
    if who.per_minute() {
        return next_minute(secs(10));
    }
    let lead = match who {
        Who::Tcs => secs(8) + Duration::from_millis(n as u64),
        _ => secs(8),
    };
    let at = Utc::now() + lead;
    at.with_nanosecond(0).unwrap_or(at)
}

/// Voluntary context switches per minute with 10,000 schedules, nothing due, over `minutes` past start-up.
pub fn idle(who: Who, n: usize, minutes: u64) -> Option<f64> {
    let fake = who.fake();
    let specs = schedules::specs(n, When::Quiet);
    let running = subject::start(who, "idle", &fake, &specs, When::Quiet, &Setup::sqlite(false))?;
    // Past start-up: tokio's blocking threads, used once at start, retire after 10 s idle.
    std::thread::sleep(secs(15));
    let before = subject::switches(running.as_ref());
    std::thread::sleep(secs(60 * minutes));
    let switches = subject::switches(running.as_ref()) - before;
    running.stop();
    Some(switches as f64 / minutes as f64)
}

pub struct Ready {
    /// Until it is ready, and how that was told; None where it cannot be.
    pub ready: Option<(f64, &'static str)>,
    pub peak_mb: f64,
}

/// `n` schedules: time until the scheduler is ready, and its peak memory.
pub fn ready(who: Who, n: usize) -> Option<Ready> {
    let fake = who.fake();
    let specs = schedules::specs(n, When::Quiet);
    let Some(addr) = crate::free_addr() else {
        println!("  {}: skipped, no free port", who.label());
        return None;
    };
    let setup = Setup { extra: vec!["--listen".into(), addr.clone()], ..Setup::sqlite(false) };
    let running = subject::start(who, "ready", &fake, &specs, When::Quiet, &setup)?;
    let started = Instant::now();
    let ready = match who {
        Who::Pipecron | Who::Pinned => readyz(&addr, started),
        Who::Tcs => running.ready_after().map(|d| (d.as_secs_f64(), "until every job was added and it started")),
        // cron reads new files at the minute.
        Who::Cron => {
            sleep_until(next_minute(secs(0)) + chrono::Duration::seconds(5));
            None
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let peak_mb = subject::peak_mb(running.as_ref());
    running.stop();
    Some(Ready { ready, peak_mb })
}

fn readyz(addr: &str, started: Instant) -> Option<(f64, &'static str)> {
    while started.elapsed() < secs(120) {
        if crate::http_get(addr, "/readyz").is_some() {
            return Some((started.elapsed().as_secs_f64(), "until GET /readyz answered 200"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The monotonic instant of a wall-clock time.
fn instant_of(t: DateTime<Utc>) -> Instant {
    let ahead = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}

fn sleep_until(t: DateTime<Utc>) {
    if let Ok(ahead) = (t - Utc::now()).to_std() {
        std::thread::sleep(ahead);
    }
}

fn lateness_ms(arrivals: &[Arrival]) -> Vec<f64> {
    let mut late: Vec<f64> = arrivals.iter().map(Arrival::lateness_ms).collect();
    late.sort_by(f64::total_cmp);
    late
}

fn distinct(arrivals: &[Arrival]) -> usize {
    arrivals.iter().map(|a| (a.schedule.as_str(), a.slot)).collect::<HashSet<_>>().len()
}

/// Each slot's lateness figures, with `PIPECRON_BENCH_DETAIL=1`.
fn detail(got: &[Arrival]) {
    if std::env::var_os("PIPECRON_BENCH_DETAIL").is_none() {
        return;
    }
    let mut by_slot: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for a in got {
        by_slot.entry(a.slot).or_default().push(a.lateness_ms());
    }
    for (slot, mut late) in by_slot {
        late.sort_by(f64::total_cmp);
        let (min, max) = (late[0], late[late.len() - 1]);
        println!("    {slot}: n {} min {min:.2} p50 {:.2} max {max:.2}", late.len(), percentile(&late, 0.5));
    }
}
