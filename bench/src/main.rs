//! The pipecron benchmark: runs the release binary against a fake GitLab inside this process and prints figures.
//!
//! `cargo build --release && cargo run --release -p pipecron-bench` (pass `--quick` to skip the minute-long idle
//! measurement, `--only lateness|burst|load|idle` to run one). The fake is an axum server on loopback, on a thread of
//! its own, that notes when each request arrived and answers 201 at once, so it is never the bottleneck. Lateness is
//! measured from the slot to the request's arrival at the fake.
//!
//! With two CPUs or more, the daemon runs on the first and the fake on the last (`PIPECRON_BENCH_PIN=0` turns this
//! off). `PIPECRON_BENCH_ARGS` adds arguments to `pipecron run`, `PIPECRON_BENCH_DETAIL=1` prints each slot's
//! lateness figures, `PIPECRON_BENCH_KEEP=1` keeps the state directories, and `PIPECRON_LOG` sets the daemon's log
//! filter (default `warn`).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Timelike, Utc};

/// One request as the fake saw it: the slot it carried and when it arrived.
#[derive(Clone)]
struct Arrival {
    slot: DateTime<Utc>,
    at: DateTime<Utc>,
}

type Arrivals = Arc<Mutex<Vec<Arrival>>>;

async fn trigger(State(arrivals): State<Arrivals>, Form(form): Form<HashMap<String, String>>) -> (StatusCode, String) {
    let at: DateTime<Utc> = SystemTime::now().into();
    if let Some(slot) = form.get("variables[PIPECRON_SLOT]").and_then(|s| s.parse().ok()) {
        arrivals.lock().unwrap_or_else(|p| p.into_inner()).push(Arrival { slot, at });
    }
    let body = r#"{"id":1,"iid":1,"status":"created","web_url":"http://fake/p/1"}"#;
    (StatusCode::CREATED, body.to_string())
}

/// Serves the fake on a thread of its own, with a single-threaded runtime: two work-stealing workers would wake each
/// other for every request and take CPU from the daemon under test.
fn start_fake(arrivals: Arrivals) -> String {
    let app = axum::Router::new().route("/api/v4/projects/{id}/trigger/pipeline", post(trigger)).with_state(arrivals);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds loopback");
    let addr = listener.local_addr().expect("an address");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        pin(only_cpu(cpus().saturating_sub(1)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            axum::serve(listener, app).await
        })
    });
    format!("http://{addr}")
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The set of just `cpu`, unless there is only one CPU or `PIPECRON_BENCH_PIN=0`. With two CPUs, the daemon gets the
/// first and the fake the last, so that they never take turns on one while the other idles: loopback wake-ups draw
/// them together.
fn only_cpu(cpu: usize) -> Option<nix::sched::CpuSet> {
    let wanted = std::env::var("PIPECRON_BENCH_PIN").map_or(true, |v| v != "0");
    let mut set = nix::sched::CpuSet::new();
    (wanted && cpus() > 1 && set.set(cpu).is_ok()).then_some(set)
}

/// Keeps the calling thread, and what it starts, on `set`.
fn pin(set: Option<nix::sched::CpuSet>) {
    if let Some(set) = set {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
    let path = root.join("target/release/pipecron");
    assert!(path.exists(), "build it first: cargo build --release");
    path
}

/// A state dir with `n` schedules of `cron`, and a running daemon.
struct Run {
    dir: PathBuf,
    child: Child,
}

impl Run {
    fn start(name: &str, url: &str, n: usize, cron: &str, extra: &[&str]) -> Run {
        let dir = std::env::temp_dir().join(format!("pipecron-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("schedules")).expect("creates");
        let mut text = format!(
            "defaults:\n  gitlab: {url}\n  token: glptt-bench\n  project: 9\n  ref: main\n  retries: 0\nschedules:\n"
        );
        for i in 0..n {
            text.push_str(&format!("  s{i}:\n    cron: \"{cron}\"\n"));
        }
        std::fs::write(dir.join("schedules/bench.yaml"), text).expect("writes");
        let mut command = Command::new(binary());
        let first = only_cpu(0);
        // SAFETY: between fork and exec, the closure makes one system call and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                pin(first);
                Ok(())
            })
        };
        let child = command
            .arg("run")
            .args(extra)
            .args(std::env::var("PIPECRON_BENCH_ARGS").unwrap_or_default().split_whitespace())
            .current_dir(&dir)
            .env("PIPECRON_LOG", std::env::var("PIPECRON_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pipecron.log")).map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("pipecron starts");
        Run { dir, child }
    }

    /// User plus system CPU seconds so far, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: f64 =
            fields.get(11..13).map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()).unwrap_or(0.0);
        ticks / 100.0
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// Voluntary context switches of every thread of the process.
    fn voluntary_switches(&self) -> u64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).into_iter().flatten().flatten();
        tasks
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).map(str::to_string))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            let log = std::fs::read_to_string(self.dir.join("pipecron.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            println!("  pipecron exited with {status:?}; the end of its log:\n  {}", tail.join("\n  "));
        }
        if std::env::var_os("PIPECRON_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn lateness_ms(arrivals: &[Arrival]) -> Vec<f64> {
    let mut late: Vec<f64> =
        arrivals.iter().map(|a| (a.at - a.slot).num_microseconds().unwrap_or(0) as f64 / 1000.0).collect();
    late.sort_by(f64::total_cmp);
    late
}

fn take(arrivals: &Arrivals) -> Vec<Arrival> {
    std::mem::take(&mut *arrivals.lock().unwrap_or_else(|p| p.into_inner()))
}

async fn lateness(url: &str, arrivals: &Arrivals, schedules: usize, seconds: u64) {
    let run = Run::start("lateness", url, schedules, "* * * * * *", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    take(arrivals);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let got = take(arrivals);
    run.stop();
    let late = lateness_ms(&got);
    if std::env::var_os("PIPECRON_BENCH_DETAIL").is_some() {
        let mut by_slot: std::collections::BTreeMap<DateTime<Utc>, Vec<f64>> = Default::default();
        for a in &got {
            by_slot.entry(a.slot).or_default().push((a.at - a.slot).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        for (slot, mut l) in by_slot {
            l.sort_by(f64::total_cmp);
            println!(
                "  {slot}: n {} min {:.2} p50 {:.2} max {:.2}",
                l.len(),
                l[0],
                percentile(&l, 0.5),
                l[l.len() - 1]
            );
        }
    }
    println!(
        "lateness, {schedules} schedule(s) every second, {} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        got.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or(f64::NAN)
    );
}

/// `n` schedules all due at the same second: when the last request arrived, and the CPU it took.
async fn burst(url: &str, arrivals: &Arrivals, n: usize) {
    let now = Utc::now();
    // A whole second: the slot the cron line below names.
    let due = (now + chrono::Duration::seconds(8)).with_nanosecond(0).unwrap_or(now);
    let cron = format!("{} {} {} * * *", due.format("%-S"), due.format("%-M"), due.format("%-H"));
    let run = Run::start("burst", url, n, &cron, &[]);
    while Utc::now() < due - chrono::Duration::milliseconds(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    take(arrivals);
    let cpu_before = run.cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap_or_else(|p| p.into_inner()).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = run.cpu_seconds() - cpu_before;
    let got = take(arrivals);
    run.stop();
    let last = got.iter().map(|a| a.at).max().map(|t| (t - due).num_milliseconds() as f64 / 1000.0);
    println!(
        "{n} slots due in the same second: {} of {n} arrived, the last {:.3} s after the slot, {cpu:.2} CPU-s",
        got.len(),
        last.unwrap_or(f64::NAN)
    );
}

/// 10,000 schedules with nothing due within the hour: wake-ups per minute.
async fn idle(url: &str, minutes: u64) {
    let now = Utc::now() + chrono::Duration::hours(2);
    let cron = format!("0 {} * * *", now.format("%-H"));
    let run = Run::start("idle", url, 10_000, &cron, &[]);
    // Past start-up: tokio's blocking threads, used once at start, retire after 10 s idle.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let before = run.voluntary_switches();
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    let switches = run.voluntary_switches() - before;
    run.stop();
    println!(
        "idle with 10,000 schedules for {minutes} min: {switches} voluntary context switches ({:.1}/min)",
        switches as f64 / minutes as f64
    );
}

/// 100,000 schedules: time until the daemon is running, and peak memory.
async fn load(url: &str) {
    let started = Instant::now();
    let run = Run::start("load", url, 100_000, "0 0 1 1 *", &[]);
    // The daemon creates its state file once the schedules are loaded and checked.
    let db = run.dir.join("pipecron.db");
    while !db.exists() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_kb = run.status_field("VmHWM:");
    run.stop();
    println!(
        "100,000 schedules: loaded in {:.2} s (YAML included), peak RSS {:.1} MB",
        ready.as_secs_f64(),
        peak_kb as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let arrivals: Arrivals = Arc::default();
    let url = start_fake(arrivals.clone());
    println!("pipecron benchmark: {} against a fake GitLab at {url}", binary().display());
    if wanted("lateness") {
        lateness(&url, &arrivals, 1, 30).await;
        lateness(&url, &arrivals, 100, 20).await;
    }
    if wanted("burst") {
        burst(&url, &arrivals, 1_000).await;
        burst(&url, &arrivals, 10_000).await;
    }
    if wanted("load") {
        load(&url).await;
    }
    if wanted("idle") && !quick {
        idle(&url, 2).await;
    }
}
