//! The schedulers a scenario measures side by side: pipecron (the headline), pipecron pinned to a CPU, and the two
//! things a user would pick instead, each in processes of its own and measured the same way.

use crate::daemon::{Run, Setup};
use crate::fake::Fake;
use crate::measure;
use crate::peers;
use crate::schedules::{Spec, When};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Pipecron,
    Pinned,
    Tcs,
    Cron,
}

impl Who {
    pub const ALL: [Who; 4] = [Who::Pipecron, Who::Pinned, Who::Tcs, Who::Cron];

    /// Its column in the table, and its name in `--only`.
    pub fn column(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Who::Pipecron => "pipecron",
            Who::Pinned => "pipecron pinned",
            Who::Tcs => "tokio-cron-scheduler",
            Who::Cron => "cron + curl",
        }
    }

    /// The name `--only` knows it by.
    pub fn key(self) -> &'static str {
        match self {
            Who::Pipecron => "pipecron",
            Who::Pinned => "pinned",
            Who::Tcs => "tcs",
            Who::Cron => "cron",
        }
    }

    pub fn is_peer(self) -> bool {
        matches!(self, Who::Tcs | Who::Cron)
    }

    /// Fires at whole minutes only.
    pub fn per_minute(self) -> bool {
        self == Who::Cron
    }

    /// Whether this one runs here at all: the pinned variant needs two CPUs and no `PIPECRON_BENCH_PIN=0`.
    pub fn available(self) -> bool {
        self != Who::Pinned || measure::pinning()
    }

    /// Its fake: pinned to the last CPU for the pinned variant.
    pub fn fake(self) -> Fake {
        Fake::start(self == Who::Pinned)
    }
}

/// Schedulers started for a measurement.
pub trait Running {
    /// The processes measured: CPU of all, memory of the first.
    fn pids(&self) -> Vec<u32>;
    fn stop(self: Box<Self>);

    /// Anything worth reporting from its own output, such as its warnings.
    fn note(&self) -> Option<String> {
        None
    }

    /// How long it took to be ready, where only it can tell.
    fn ready_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Starts `who` with `specs`, due `when`, on `fake`; pipecron as `setup` says (pinned if `who` is). None (with a
/// note printed) when it cannot run here.
pub fn start(who: Who, name: &str, fake: &Fake, specs: &[Spec], when: When, setup: &Setup) -> Option<Box<dyn Running>> {
    match who {
        Who::Pipecron | Who::Pinned => {
            let setup = Setup { pinned: who == Who::Pinned, ..setup.clone() };
            Some(Box::new(Run::start(name, &fake.url, specs, &setup)))
        }
        Who::Tcs => Some(Box::new(peers::Tcs::start(name, &fake.url, specs, when))),
        Who::Cron => peers::Cron::start(&fake.url, specs, when).map(|c| Box::new(c) as Box<dyn Running>),
    }
}

pub fn cpu_seconds(running: &dyn Running) -> f64 {
    running.pids().into_iter().map(measure::cpu_seconds).sum()
}

pub fn switches(running: &dyn Running) -> u64 {
    running.pids().into_iter().map(measure::voluntary_switches).sum()
}

/// VmHWM of the first process, in MB.
pub fn peak_mb(running: &dyn Running) -> f64 {
    running.pids().first().map_or(0.0, |&pid| measure::status_field(pid, "VmHWM:") as f64 / 1024.0)
}
