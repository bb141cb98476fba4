//! What the bench reads about the processes it starts, the same way for pipecron and for its peers: CPU time,
//! peak memory and voluntary context switches from /proc, and the wall time and peak RSS of a command run to its end
//! (from `wait4`, so that the figure is that one child's and not the largest of all the children so far).
//! Also the CPU pinning of the pinned variant.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Whether the pinned variant runs: two CPUs or more, and not `PIPECRON_BENCH_PIN=0`.
pub fn pinning() -> bool {
    cpus() > 1 && std::env::var("PIPECRON_BENCH_PIN").map_or(true, |v| v != "0")
}

/// Starts `command` on just `cpu` when `pinned`: with two CPUs, the daemon gets the first and the fake the last, so
/// that they never take turns on one while the other idles (loopback wake-ups draw them together).
pub fn pin(command: &mut Command, pinned: bool, cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if !pinned || set.set(cpu).is_err() {
        return;
    }
    // SAFETY: between fork and exec, the closure makes one system call and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            Ok(())
        })
    };
}

/// The fields of /proc/PID/stat after the command name: field 14 of proc(5) is index 11.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

/// User plus system CPU seconds of `pid` so far, with those of the children it has waited for (cron's jobs).
pub fn cpu_seconds(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    let ticks: f64 = fields.get(11..15).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / ticks_per_second()
}

fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// A field of /proc/PID/status, in its unit (kB for memory), such as `VmHWM:`.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Voluntary context switches of every thread of `pid`.
pub fn voluntary_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).map(str::to_string))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// A command run to its end: how long it took, its own peak RSS and whether it succeeded.
pub struct Finished {
    pub wall: Duration,
    pub peak_mb: f64,
    pub success: bool,
}

/// Runs `command` and waits for it with `wait4`, which gives that child's own resource usage.
pub fn run_to_end(command: &mut Command) -> Finished {
    let started = Instant::now();
    // Waited for below, with wait4 rather than std's wait, which drops the resource usage.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("the command starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, not yet waited for (std's Child is never waited on after this, and its
    // drop does not wait); status and usage are valid for writing.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let success = waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Finished { wall, peak_mb: usage.ru_maxrss as f64 / 1024.0, success }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
}
