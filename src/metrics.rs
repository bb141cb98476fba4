//! Prometheus metrics, kept by listening to the daemon's events and rendered in the Prometheus text format.
//!
//! Process-wide series are prometheus-client's own counters, gauges and histograms. Per-schedule series are kept in
//! one map keyed by the schedule's name and rendered by a collector, so that a reload that removes a schedule
//! removes every series of it at once, a renamed schedule starts fresh, and 100,000 schedules cost a few machine
//! words each rather than a map of label strings per series. A scrape copies the map under its lock and renders
//! outside it, so that a scrape never holds up a fire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::events::{Event, Listener};
use crate::run::{Ending, Reason};
use crate::schedule::Schedule;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Lateness buckets, 1 ms to 60 s.
const LATENESS_BUCKETS: [f64; 14] =
    [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0];
/// Request duration buckets, 5 ms to 60 s.
const REQUEST_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

const REASONS: [Reason; 3] = [Reason::Schedule, Reason::CatchUp, Reason::RunNow];
const OUTCOMES: [&str; 4] = ["succeeded", "failed", "unknown", "skipped"];
/// How followed pipelines end: GitLab's final statuses, and `timed_out` for one still going at `follow_timeout`.
const PIPELINE_ENDS: [&str; 6] = ["success", "failed", "canceled", "skipped", "manual", "timed_out"];

pub struct Metrics {
    registry: Registry,
    schedules: Arc<PerSchedule>,
    lateness: Histogram,
    request_duration: Histogram,
    retries: Counter,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
    last_reload_ok: Gauge,
    store_up: Gauge,
    replicas_alive: Gauge,
    clock_offset: Gauge<f64, std::sync::atomic::AtomicU64>,
    takeovers: Counter,
    last_wake: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            schedules: Arc::default(),
            lateness: Histogram::new(LATENESS_BUCKETS),
            request_duration: Histogram::new(REQUEST_BUCKETS),
            retries: Counter::default(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            store_up: Gauge::default(),
            replicas_alive: Gauge::default(),
            clock_offset: Gauge::default(),
            takeovers: Counter::default(),
            last_wake: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register("pipecron_fire_lateness_seconds", "From a slot to its first request", m.lateness.clone());
        let help = "How long GitLab took to answer one trigger request";
        r.register("pipecron_trigger_request_duration_seconds", help, m.request_duration.clone());
        r.register("pipecron_trigger_retries", "Trigger requests tried again", m.retries.clone());
        r.register("pipecron_config_reloads", "Reloads of the schedule files, by result", m.reloads.clone());
        let help = "1 if the last reload succeeded, 0 if the running configuration is an older one";
        r.register("pipecron_config_last_reload_successful", help, m.last_reload_ok.clone());
        r.register("pipecron_store_up", "1 while the state store answers", m.store_up.clone());
        r.register("pipecron_replicas_alive", "Replicas with a live lease on the store", m.replicas_alive.clone());
        let help = "This host's clock minus the state database's; pipecron fires on the database's";
        r.register("pipecron_clock_offset_seconds", help, m.clock_offset.clone());
        let help = "Dead replicas whose unfinished slots this replica took over";
        r.register("pipecron_takeovers", help, m.takeovers.clone());
        let help = "When the timer loop last woke; it wakes at least once a minute";
        r.register("pipecron_scheduler_last_wake_timestamp_seconds", help, m.last_wake.clone());
        r.register_collector(Box::new(m.schedules.clone()));
        r.register_collector(Box::new(BuildInfo));
        for result in ["success", "failure"] {
            drop(m.reloads.get_or_create(&[("result", result)]));
        }
        m.last_reload_ok.set(1);
        m.store_up.set(1);
        m
    }

    /// The text format of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Seeds each schedule's last fire and last success from the store's newest runs, so that a restart does not
    /// forget them.
    pub fn seed(&self, last_runs: &[crate::store::Run]) {
        let mut stats = self.schedules.lock();
        for run in last_runs {
            let Some(at) = run.started_at.or(run.finished_at) else { continue };
            let entry = stats.entry(Arc::from(run.schedule.as_str())).or_default();
            entry.last_fire = Some(seconds(at));
            if run.state == crate::run::RunState::Succeeded {
                entry.last_success = Some(seconds(at));
            }
            if let Some(pipeline) = run.pipeline.as_ref().filter(|p| p.status == "success") {
                entry.last_pipeline_success = pipeline.finished_at.map(seconds);
            }
        }
    }
}

impl Listener for Metrics {
    fn on(&self, event: &Event<'_>) {
        match event {
            Event::Loaded { schedules } => self.schedules.load(schedules),
            Event::Reloaded => {
                self.reloads.get_or_create(&[("result", "success")]).inc();
                self.last_reload_ok.set(1);
            }
            Event::ReloadFailed { .. } => {
                self.reloads.get_or_create(&[("result", "failure")]).inc();
                self.last_reload_ok.set(0);
            }
            Event::Queued { schedule, slot } => self.schedules.queued(schedule, *slot),
            Event::Answered { took } => self.request_duration.observe(took.as_secs_f64()),
            Event::Retrying { .. } => drop(self.retries.inc()),
            Event::Finished(fired) => {
                // A run-now has no slot to be late for.
                if fired.reason != Reason::RunNow {
                    self.lateness.observe(fired.lateness_ms.max(0) as f64 / 1000.0);
                }
                self.schedules.finished(fired);
            }
            Event::Missed { schedule, slots } => self.schedules.missed(schedule, *slots),
            Event::TookOver { .. } => drop(self.takeovers.inc()),
            Event::Lease { replicas_alive } => drop(self.replicas_alive.set(*replicas_alive as i64)),
            Event::ClockOffset { seconds } => drop(self.clock_offset.set(*seconds)),
            Event::Store { up, .. } => drop(self.store_up.set(i64::from(*up))),
            Event::Woke { at } => drop(self.last_wake.set(seconds(*at))),
            Event::PipelineEnded(ended) => self.schedules.pipeline_ended(ended),
            Event::Claimed { .. } | Event::Sending { .. } => {}
        }
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// What is known of one schedule.
#[derive(Debug, Clone, Default)]
struct Stats {
    schedule: Option<Arc<Schedule>>,
    next: Option<f64>,
    period: Option<f64>,
    last_fire: Option<f64>,
    last_success: Option<f64>,
    /// By reason, then outcome, in the order of `REASONS` and `OUTCOMES`.
    fires: [[u64; 4]; 3],
    missed: u64,
    /// Followed pipelines, by how they ended, in the order of `PIPELINE_ENDS`.
    pipelines: [u64; 6],
    last_pipeline_success: Option<f64>,
}

/// The per-schedule series, rendered on each scrape.
#[derive(Debug, Default)]
struct PerSchedule(Mutex<HashMap<Arc<str>, Stats>>);

impl PerSchedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Stats>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the series of the schedules loaded, and only those. A changed schedule keeps its counts; its next
    /// slot and period come with the `Queued` events that follow.
    fn load(&self, schedules: &[Arc<Schedule>]) {
        let mut stats = self.lock();
        let mut kept: HashMap<Arc<str>, Stats> = HashMap::with_capacity(schedules.len());
        for schedule in schedules {
            let mut entry = stats.remove(&schedule.name).unwrap_or_default();
            if entry.schedule.as_ref().is_some_and(|old| **old != **schedule) || !schedule.enabled {
                (entry.next, entry.period) = (None, None);
            }
            entry.schedule = Some(schedule.clone());
            kept.insert(schedule.name.clone(), entry);
        }
        *stats = kept;
    }

    fn queued(&self, schedule: &Arc<Schedule>, slot: DateTime<Utc>) {
        let mut stats = self.lock();
        let Some(entry) = stats.get_mut(&schedule.name) else { return };
        let next = seconds(slot);
        if let Some(previous) = entry.next.filter(|previous| *previous < next) {
            entry.period = Some(next - previous);
        } else if entry.period.is_none() {
            // The first slot queued: the period is the gap to the one after it.
            entry.period = schedule.next_after(slot).map(|after| seconds(after.to_utc()) - next);
        }
        entry.next = Some(next);
    }

    fn finished(&self, fired: &crate::events::Fired) {
        let mut stats = self.lock();
        let Some(entry) = stats.get_mut(fired.schedule.as_str()) else { return };
        let reason = REASONS.iter().position(|r| *r == fired.reason).unwrap_or(0);
        let outcome = match fired.result.ending {
            Ending::Succeeded => 0,
            Ending::Failed => 1,
            Ending::Unknown => 2,
            Ending::Skipped => 3,
        };
        entry.fires[reason][outcome] += 1;
        let at = seconds(fired.slot);
        entry.last_fire = Some(entry.last_fire.map_or(at, |t| t.max(at)));
        if outcome == 0 {
            entry.last_success = Some(entry.last_success.map_or(at, |t| t.max(at)));
        }
    }

    fn pipeline_ended(&self, ended: &crate::events::PipelineEnded) {
        let mut stats = self.lock();
        let Some(entry) = stats.get_mut(ended.schedule.as_str()) else { return };
        let pipeline = &ended.pipeline;
        let end = match pipeline.followed {
            Some(crate::run::Followed::Ended) => pipeline.status.as_str(),
            Some(crate::run::Followed::TimedOut) => "timed_out",
            _ => return,
        };
        if let Some(i) = PIPELINE_ENDS.iter().position(|e| *e == end) {
            entry.pipelines[i] += 1;
        }
        if end == "success" {
            let at = seconds(pipeline.finished_at.unwrap_or_else(Utc::now));
            entry.last_pipeline_success = Some(entry.last_pipeline_success.map_or(at, |t| t.max(at)));
        }
    }

    fn missed(&self, schedule: &str, slots: usize) {
        if let Some(entry) = self.lock().get_mut(schedule) {
            entry.missed += slots as u64;
        }
    }
}

type Labels<'a> = [(&'static str, &'a str); 1];
/// A per-schedule gauge's value, if it has one.
type GaugeOf = fn(&Stats, &Schedule) -> Option<f64>;

impl Collector for PerSchedule {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut rows: Vec<(Arc<str>, Stats)> = self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let rows: Vec<(&str, &Stats, &Schedule)> =
            rows.iter().filter_map(|(name, stats)| Some((&**name, stats, stats.schedule.as_deref()?))).collect();

        let mut family = encoder.encode_descriptor(
            "pipecron_schedule_info",
            "A schedule as loaded, with its project, ref, cron expression and zone",
            None,
            MetricType::Gauge,
        )?;
        for (name, _, schedule) in &rows {
            let (project, cron) = (schedule.project.to_string(), schedule.cron.source());
            let labels = [
                ("schedule", *name),
                ("project", project.as_str()),
                ("ref", &*schedule.git_ref),
                ("cron", cron),
                ("timezone", schedule.timezone.name()),
            ];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }

        let gauges: [(&str, &str, GaugeOf); 6] = [
            ("pipecron_schedule_next_fire_timestamp_seconds", "When the schedule fires next", |s, _| s.next),
            ("pipecron_schedule_last_fire_timestamp_seconds", "The slot of its last fire", |s, _| s.last_fire),
            ("pipecron_schedule_last_success_timestamp_seconds", "The slot of its last successful fire", |s, _| {
                s.last_success
            }),
            ("pipecron_schedule_paused", "1 if the schedule is paused (enabled: false)", |_, schedule| {
                Some(if schedule.enabled { 0.0 } else { 1.0 })
            }),
            ("pipecron_schedule_period_seconds", "The time between its next two slots", |s, _| s.period),
            (
                "pipecron_schedule_last_pipeline_success_timestamp_seconds",
                "When the last followed pipeline that passed finished (schedules with an api_token)",
                |s, _| s.last_pipeline_success,
            ),
        ];
        for (metric, help, value) in gauges {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (name, stats, schedule) in &rows {
                if let Some(value) = value(stats, schedule) {
                    let labels: Labels = [("schedule", name)];
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let help = "Slots fired, by why and how they ended";
        let mut family = encoder.encode_descriptor("pipecron_fires", help, None, MetricType::Counter)?;
        for (name, stats, schedule) in &rows {
            let skips = schedule.overlap == crate::schedule::Overlap::Skip;
            for (r, reason) in REASONS.iter().enumerate() {
                for (o, outcome) in OUTCOMES.iter().enumerate() {
                    // The scheduled ones always (`skipped` only where the schedule skips), so that the first
                    // failure is an increase; the rest once they occur.
                    let count = stats.fires[r][o];
                    if count > 0 || (*reason == Reason::Schedule && (*outcome != "skipped" || skips)) {
                        let labels = [("schedule", *name), ("reason", reason.as_str()), ("outcome", outcome)];
                        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }

        let help = "Followed pipelines, by how they ended (schedules with an api_token)";
        let mut family = encoder.encode_descriptor("pipecron_pipelines", help, None, MetricType::Counter)?;
        for (name, stats, schedule) in &rows {
            for (i, status) in PIPELINE_ENDS.iter().enumerate() {
                // Success and failure always, for a schedule that is followed, so that the first is an increase.
                let count = stats.pipelines[i];
                if count > 0 || (schedule.api_token.is_some() && i < 2) {
                    let labels = [("schedule", *name), ("status", status)];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let help = "Slots that passed unfired: pipecron was down past catch_up, or the clock jumped";
        let mut family = encoder.encode_descriptor("pipecron_missed_slots", help, None, MetricType::Counter)?;
        for (name, stats, _) in &rows {
            let labels: Labels = [("schedule", name)];
            ConstCounter::new(stats.missed).encode(family.encode_family(&labels)?)?;
        }

        let mut family =
            encoder.encode_descriptor("pipecron_schedules", "Schedules loaded, by state", None, MetricType::Gauge)?;
        let paused = rows.iter().filter(|(_, _, s)| !s.enabled).count() as i64;
        for (state, count) in [("active", rows.len() as i64 - paused), ("paused", paused)] {
            let labels: Labels = [("state", state)];
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let help = "The version of pipecron running";
        let mut family = encoder.encode_descriptor("pipecron_build_info", help, None, MetricType::Gauge)?;
        let labels: Labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)
    }
}
