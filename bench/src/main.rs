//! The pipecron benchmark: runs the release binary against a fake GitLab inside this process and prints figures.
//!
//! `cargo build --release && cargo run --release -p pipecron-bench` (pass `--quick` to skip the minute-long idle
//! measurement and the history at scale, `--only lateness|burst|postgres|load|metrics|idle|history` to run one).
//! The fake is an axum server on loopback, on a thread of its own, that notes when each request arrived and answers
//! 201 at once, so it is never the bottleneck.
//! Lateness is measured from the slot to the request's arrival at the fake.
//!
//! The `postgres` group runs the lateness and burst measurements against replicas sharing a PostgreSQL store: one
//! replica with 1 schedule, three with 100, three with a burst of 10,000 slots, each on a fresh database that is
//! dropped afterwards, and prints each figure beside its goal and the duplicates seen at the fake (a schedule's slot
//! arriving twice). It needs `psql` and a server that lets it create databases: `PIPECRON_BENCH_POSTGRES` is the URL
//! psql connects to for that (default `postgres://postgres@127.0.0.1:5432/test`), and the replicas use the same
//! server, with `sslmode=disable`. Without a server, the group says so and is skipped.
//!
//! With two CPUs or more, a single daemon runs on the first and the fake on the last (`PIPECRON_BENCH_PIN=0` turns
//! this off); several replicas float. `PIPECRON_BENCH_ARGS` adds arguments to `pipecron run`,
//! `PIPECRON_BENCH_DETAIL=1` prints each slot's lateness figures, `PIPECRON_BENCH_KEEP=1` keeps the state directories
//! (each replica logs to `pipecron-N.log` there), and `PIPECRON_LOG` sets every daemon's log filter (default `warn`).

mod history;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Timelike, Utc};

/// One request as the fake saw it: the schedule and slot it carried and when it arrived.
#[derive(Clone)]
struct Arrival {
    schedule: String,
    slot: DateTime<Utc>,
    at: DateTime<Utc>,
}

type Arrivals = Arc<Mutex<Vec<Arrival>>>;

async fn trigger(State(arrivals): State<Arrivals>, Form(form): Form<HashMap<String, String>>) -> (StatusCode, String) {
    let at: DateTime<Utc> = SystemTime::now().into();
    if let Some(slot) = form.get("variables[PIPECRON_SLOT]").and_then(|s| s.parse().ok()) {
        let schedule = form.get("variables[PIPECRON_SCHEDULE]").cloned().unwrap_or_default();
        arrivals.lock().unwrap_or_else(|p| p.into_inner()).push(Arrival { schedule, slot, at });
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

/// How the daemons under test run: how many replicas side by side, with what arguments, and the goal their figure
/// is held to.
struct Setup {
    /// Added to each figure's description: empty for one daemon on a SQLite file of its own.
    label: String,
    replicas: usize,
    /// Added to each `pipecron run`, such as `--state URL`.
    extra: Vec<String>,
    /// Printed beside the figure: the p99 lateness in ms, or the seconds within which a burst must have arrived.
    goal: Option<f64>,
}

impl Setup {
    /// One daemon, with the default state: a SQLite file in its directory.
    fn sqlite() -> Setup {
        Setup { label: String::new(), replicas: 1, extra: Vec::new(), goal: None }
    }
}

/// `DIR/schedules/bench.yaml`: `n` schedules of `cron`, named s0, s1, …, on the fake at `url`.
fn write_schedules(dir: &Path, url: &str, n: usize, cron: &str) {
    let mut text = format!(
        "defaults:\n  gitlab: {url}\n  token: glptt-bench\n  project: 9\n  ref: main\n  retries: 0\nschedules:\n"
    );
    for i in 0..n {
        text.push_str(&format!("  s{i}:\n    cron: \"{cron}\"\n"));
    }
    std::fs::write(dir.join("schedules/bench.yaml"), text).expect("writes");
}

/// A state dir with `n` schedules of `cron`, and its running daemons: the replicas share the schedules directory.
struct Run {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Run {
    fn start(name: &str, url: &str, n: usize, cron: &str, setup: &Setup) -> Run {
        let dir = std::env::temp_dir().join(format!("pipecron-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("schedules")).expect("creates");
        write_schedules(&dir, url, n, cron);
        // One daemon has the first CPU to itself. Several replicas float: pinned all to one CPU, three would take
        // turns on it while the other CPU idles between the fake's requests, which measures the pinning.
        let first = if setup.replicas == 1 { only_cpu(0) } else { None };
        let children = (0..setup.replicas)
            .map(|i| {
                let mut command = Command::new(binary());
                // SAFETY: between fork and exec, the closure makes one system call and allocates nothing.
                unsafe {
                    command.pre_exec(move || {
                        pin(first);
                        Ok(())
                    })
                };
                let log = std::fs::File::create(dir.join(format!("pipecron-{i}.log")));
                command
                    .arg("run")
                    .args(&setup.extra)
                    .args(std::env::var("PIPECRON_BENCH_ARGS").unwrap_or_default().split_whitespace())
                    .current_dir(&dir)
                    .env("PIPECRON_LOG", std::env::var("PIPECRON_LOG").unwrap_or_else(|_| "warn".into()))
                    .env("PIPECRON_LISTEN", "off")
                    .stdout(Stdio::null())
                    .stderr(log.map(Stdio::from).unwrap_or(Stdio::null()))
                    .spawn()
                    .expect("pipecron starts")
            })
            .collect();
        Run { dir, children }
    }

    /// User plus system CPU seconds so far of all the replicas, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let of = |child: &Child| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
            let ticks: f64 =
                fields.get(11..13).map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()).unwrap_or(0.0);
            ticks / 100.0
        };
        self.children.iter().map(of).sum()
    }

    /// A field of the first replica's /proc status, in its unit (kB for memory).
    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.children[0].id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// Voluntary context switches of every thread of every replica.
    fn voluntary_switches(&self) -> u64 {
        let tasks = self.children.iter().flat_map(|c| std::fs::read_dir(format!("/proc/{}/task", c.id())));
        tasks
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).map(str::to_string))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum()
    }

    /// Stops the replicas together, and shows the end of the log of each that did not exit cleanly.
    fn stop(mut self) {
        for child in &self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (i, child) in self.children.iter_mut().enumerate() {
            let status = child.wait();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                let log = std::fs::read_to_string(self.dir.join(format!("pipecron-{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                println!("  pipecron {i} exited with {status:?}; the end of its log:\n  {}", tail.join("\n  "));
            }
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

/// Requests beyond the first for the same schedule and slot: a slot fired more than once.
fn duplicates(arrivals: &[Arrival]) -> usize {
    arrivals.len() - distinct(arrivals)
}

fn distinct(arrivals: &[Arrival]) -> usize {
    arrivals.iter().map(|a| (a.schedule.as_str(), a.slot)).collect::<HashSet<_>>().len()
}

/// The goal beside a figure, and whether it is met.
fn verdict(text: String, met: bool) -> String {
    format!("; goal {text}: {}", if met { "met" } else { "NOT MET" })
}

fn take(arrivals: &Arrivals) -> Vec<Arrival> {
    std::mem::take(&mut *arrivals.lock().unwrap_or_else(|p| p.into_inner()))
}

async fn lateness(url: &str, arrivals: &Arrivals, schedules: usize, seconds: u64, setup: &Setup) {
    let run = Run::start("lateness", url, schedules, "* * * * * *", setup);
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
    let p99 = percentile(&late, 0.99);
    let twice = duplicates(&got);
    let goal = setup.goal.map_or(String::new(), |ms| verdict(format!("p99 ≤ {ms} ms"), p99 <= ms));
    println!(
        "lateness{}, {schedules} schedule(s) every second, {} requests, {twice} duplicates: p50 {:.2} ms, p99 {p99:.2} \
         ms, max {:.2} ms{goal}",
        setup.label,
        got.len(),
        percentile(&late, 0.5),
        late.last().copied().unwrap_or(f64::NAN)
    );
}

/// `n` schedules all due at the same second: when the last request arrived, the CPU it took, and the slots that
/// arrived more than once.
async fn burst(url: &str, arrivals: &Arrivals, n: usize, setup: &Setup) {
    let now = Utc::now();
    // A whole second: the slot the cron line below names.
    let due = (now + chrono::Duration::seconds(8)).with_nanosecond(0).unwrap_or(now);
    let cron = format!("{} {} {} * * *", due.format("%-S"), due.format("%-M"), due.format("%-H"));
    let run = Run::start("burst", url, n, &cron, setup);
    while Utc::now() < due - chrono::Duration::milliseconds(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    take(arrivals);
    let cpu_before = run.cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Counting distinct slots only once `n` requests are in: duplicates must not end the wait early.
    while Instant::now() < deadline {
        let all_in = {
            let got = arrivals.lock().unwrap_or_else(|p| p.into_inner());
            got.len() >= n && distinct(&got) >= n
        };
        if all_in {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = run.cpu_seconds() - cpu_before;
    // A little longer, for a duplicate sent late.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = take(arrivals);
    run.stop();
    let last = got.iter().map(|a| a.at).max().map_or(f64::NAN, |t| (t - due).num_milliseconds() as f64 / 1000.0);
    let (arrived, twice) = (distinct(&got), duplicates(&got));
    let goal = setup.goal.map_or(String::new(), |s| {
        verdict(format!("all within {s} s, each once"), arrived == n && twice == 0 && last <= s)
    });
    println!(
        "{n} slots due in the same second{}: {arrived} of {n} arrived, {twice} duplicates, the last {last:.3} s after \
         the slot, {cpu:.2} CPU-s{goal}",
        setup.label
    );
}

/// A database of its own on the PostgreSQL server, dropped (with whatever is still connected) when done.
struct Database {
    name: String,
    /// For the replicas' `--state`.
    url: String,
}

impl Database {
    /// The URL psql connects to for creating and dropping databases.
    fn admin() -> String {
        std::env::var("PIPECRON_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn psql(sql: &str) -> Result<(), String> {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &Self::admin(), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        }
    }

    fn create(what: &str) -> Result<Database, String> {
        let name = format!("pipecron_bench_{what}_{}", std::process::id());
        Self::psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        Self::psql(&format!("CREATE DATABASE {name}"))?;
        let admin = Self::admin();
        let server = admin.split('?').next().and_then(|a| a.rsplit_once('/')).map_or(admin.as_str(), |(s, _)| s);
        Ok(Database { url: format!("{server}/{name}?sslmode=disable"), name })
    }

    /// `replicas` daemons on this database, held to `goal`.
    fn setup(&self, replicas: usize, goal: f64) -> Setup {
        let label = format!(" on PostgreSQL, {replicas} replica{}", if replicas == 1 { "" } else { "s" });
        Setup { label, replicas, extra: vec!["--state".into(), self.url.clone()], goal: Some(goal) }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(error) = Self::psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            println!("  cannot drop {}: {error}", self.name);
        }
    }
}

/// Replicas sharing a PostgreSQL store: lateness with one and with three, and a burst across three; each on a
/// fresh database.
async fn postgres(url: &str, arrivals: &Arrivals) {
    let database = |what: &str| {
        Database::create(what).inspect_err(|error| println!("postgres: skipped, no database to use: {error}")).ok()
    };
    let Some(db) = database("lateness1") else { return };
    lateness(url, arrivals, 1, 30, &db.setup(1, 5.0)).await;
    drop(db);
    let Some(db) = database("lateness100") else { return };
    lateness(url, arrivals, 100, 20, &db.setup(3, 15.0)).await;
    drop(db);
    let Some(db) = database("burst") else { return };
    burst(url, arrivals, 10_000, &db.setup(3, 2.0)).await;
}

/// 10,000 schedules with nothing due within the hour: wake-ups per minute.
async fn idle(url: &str, minutes: u64) {
    let now = Utc::now() + chrono::Duration::hours(2);
    let cron = format!("0 {} * * *", now.format("%-H"));
    let run = Run::start("idle", url, 10_000, &cron, &Setup::sqlite());
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

/// 100,000 schedules: how long a scrape of `/metrics` and of the status page take, and how big they are.
async fn metrics(url: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let Ok(port) = port else { return println!("metrics: skipped, no free port") };
    let addr = format!("127.0.0.1:{port}");
    let setup = Setup { extra: vec!["--listen".into(), addr.clone()], ..Setup::sqlite() };
    let run = Run::start("metrics", url, 100_000, "0 0 1 1 *", &setup);
    let started = Instant::now();
    while get(&addr, "/readyz").await.is_none() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["/metrics", "/"] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let start = Instant::now();
            size = get(&addr, path).await.map_or(0, |body| body.len());
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "100,000 schedules: GET {path} in {:.0} ms median, {:.0} ms max of 5 ({:.0} kB)",
            times[2],
            times[4],
            size as f64 / 1e3
        );
    }
    run.stop();
}

/// One HTTP/1.1 GET on a fresh connection: the body, if the answer is 200.
async fn get(addr: &str, path: &str) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    answer.starts_with(b"HTTP/1.1 200").then(|| answer.split_off(head_end + 4))
}

/// 100,000 schedules: time until the daemon is running, and peak memory.
async fn load(url: &str) {
    let started = Instant::now();
    let run = Run::start("load", url, 100_000, "0 0 1 1 *", &Setup::sqlite());
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
        lateness(&url, &arrivals, 1, 30, &Setup::sqlite()).await;
        lateness(&url, &arrivals, 100, 20, &Setup::sqlite()).await;
    }
    if wanted("burst") {
        burst(&url, &arrivals, 1_000, &Setup::sqlite()).await;
        burst(&url, &arrivals, 10_000, &Setup::sqlite()).await;
    }
    if wanted("postgres") {
        postgres(&url, &arrivals).await;
    }
    if wanted("load") {
        load(&url).await;
    }
    if wanted("metrics") {
        metrics(&url).await;
    }
    if wanted("idle") && !quick {
        idle(&url, 2).await;
    }
    if wanted("history") && !quick {
        history::history(&url);
    }
}
