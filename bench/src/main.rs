//! The pipecron benchmark: runs the release binary against a fake GitLab in a process of its own, beside the two
//! things a user would pick instead (tokio-cron-scheduler with reqwest, and Debian's cron with GitLab's `curl`
//! line), and prints each figure with its goal, then the whole table in markdown for README's Performance section.
//!
//! The table in the README is made by this one command:
//!
//! ```sh
//! cargo build --release && cargo run --release -p pipecron-bench -- --quick
//! ```
//!
//! (without `--quick` it also measures idle wake-ups, for two minutes each, and the 10-million-run history, which
//! takes long to write). The table comes last, after a blank line. `--only A,B` runs some measurements:
//! `check`, `ready`, `lateness`, `cpu`, `burst`, `idle`, `history`, `postgres`, `metrics`, and, to choose the
//! schedulers, `pipecron`, `pinned`, `tcs`, `cron` or `peers`. `--scale F` multiplies the sizes (bursts, 10,000 and
//! 100,000 schedules) by F, to try the bench quickly; the table is only meant for F = 1.
//!
//! Every scheduler uses the same realistic schedules (see `schedules.rs`) and its own fake GitLab; lateness is
//! from the slot to the request's arrival at the fake. The headline figures are pipecron's own, unpinned; on a
//! machine with two CPUs or more, a second line `pinned:` has them with the daemon on the first CPU and the fake on
//! the last (`PIPECRON_BENCH_PIN=0` skips it). The peers are described in `peers.rs`; cron needs root and
//! `/usr/sbin/cron` (`apt-get install cron`; the bench never installs it), else it is skipped with a note.
//!
//! The `postgres` group runs lateness and a burst against replicas sharing a PostgreSQL store, each on a fresh
//! database that is dropped afterwards: `PIPECRON_BENCH_POSTGRES` is the URL psql connects to for that (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without a server, the group says so and is skipped.
//!
//! `PIPECRON_BENCH_ARGS` adds arguments to `pipecron run`, `PIPECRON_BENCH_DETAIL=1` prints each slot's lateness
//! figures, `PIPECRON_BENCH_KEEP=1` keeps the state directories (each daemon logs to `pipecron-N.log` there,
//! tokio-cron-scheduler to `tcs.log`), and `PIPECRON_LOG` sets every daemon's log filter (default `warn`).
//! The benchmark is not part of CI: it takes minutes and its figures depend on the machine.

mod daemon;
mod fake;
mod history;
mod measure;
mod peers;
mod postgres;
mod report;
mod scenarios;
mod schedules;
mod subject;

use std::time::{Duration, Instant};

use daemon::Setup;
use report::Report;
use subject::Who;

/// The command line.
struct Options {
    quick: bool,
    only: Vec<String>,
    scale: f64,
}

const GROUPS: [&str; 9] = ["check", "ready", "lateness", "cpu", "burst", "idle", "history", "postgres", "metrics"];

impl Options {
    fn parse() -> Options {
        let args: Vec<String> = std::env::args().collect();
        let after = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
        let only: Vec<String> = after("--only").map(|o| o.split(',').map(str::to_string).collect()).unwrap_or_default();
        for name in &only {
            let known = GROUPS.contains(&name.as_str()) || name == "peers" || Who::ALL.iter().any(|w| w.key() == name);
            assert!(known, "--only {name}: not one of {GROUPS:?}, pipecron, pinned, tcs, cron, peers");
        }
        Options {
            quick: args.iter().any(|a| a == "--quick"),
            only,
            scale: after("--scale").map_or(1.0, |s| s.parse().expect("--scale takes a number")),
        }
    }

    /// Whether the measurement `group` runs.
    fn wanted(&self, group: &str) -> bool {
        let groups: Vec<&String> = self.only.iter().filter(|o| GROUPS.contains(&o.as_str())).collect();
        groups.is_empty() || groups.iter().any(|g| *g == group)
    }

    /// The schedulers that run, in the table's order.
    fn subjects(&self) -> Vec<Who> {
        let named: Vec<&String> = self.only.iter().filter(|o| !GROUPS.contains(&o.as_str())).collect();
        let chosen =
            |who: Who| named.is_empty() || named.iter().any(|n| *n == who.key() || (*n == "peers" && who.is_peer()));
        Who::ALL.into_iter().filter(|&w| chosen(w) && w.available()).collect()
    }

    fn size(&self, n: usize) -> usize {
        ((n as f64 * self.scale) as usize).max(1)
    }
}

/// One HTTP/1.1 GET on a fresh connection: the body, if the answer is 200.
pub fn http_get(addr: &str, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    answer.starts_with(b"HTTP/1.1 200").then(|| answer.split_off(head_end + 4))
}

/// A loopback address with a port free a moment ago.
pub fn free_addr() -> Option<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).ok()?.port();
    Some(format!("127.0.0.1:{port}"))
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// Prints a scenario's figures: pipecron's on the title line, every other scheduler's on a line of its own below.
struct Scenario {
    title: String,
    printed: bool,
}

impl Scenario {
    fn new(title: String) -> Scenario {
        Scenario { title, printed: false }
    }

    fn print(&mut self, who: Who, body: &str) {
        match who {
            Who::Pipecron => println!("{}: {body}", self.title),
            _ if !self.printed => println!("{}:\n  {}: {body}", self.title, short(who)),
            _ => println!("  {}: {body}", short(who)),
        }
        self.printed = true;
    }
}

fn short(who: Who) -> &'static str {
    if who == Who::Pinned { "pinned" } else { who.label() }
}

/// The goal's verdict, for pipecron's lines only.
fn goal(who: Who, text: &str, met: bool) -> String {
    if who.is_peer() { String::new() } else { format!("; goal {text}: {}", verdict(met)) }
}

/// `x` ms, or s past a second.
fn ms(x: f64) -> String {
    match x {
        x if x >= 1000.0 => format!("{:.2} s", x / 1000.0),
        x if x >= 10.0 => format!("{x:.0} ms"),
        x => format!("{x:.2} ms"),
    }
}

fn check(options: &Options, report: &mut Report) {
    if !options.subjects().contains(&Who::Pipecron) {
        return;
    }
    let n = options.size(100_000);
    let fake = fake::Fake::start(false);
    let (wall, peak) = daemon::check(&fake.url, &schedules::specs(n, schedules::When::Quiet));
    let met = wall <= 1.0 && peak <= 64.0;
    println!(
        "`check`, {} schedules: {wall:.2} s, peak RSS {peak:.1} MB (median of 3){}",
        thousands(n),
        goal(Who::Pipecron, "≤ 1 s / ≤ 64 MB", met)
    );
    let measure = format!("`check`, {} schedules: time / peak RSS", thousands(n));
    report.set(&measure, "≤ 1 s / ≤ 64 MB", Who::Pipecron, format!("{wall:.2} s / {peak:.1} MB"), Some((wall, "time")));
}

fn ready(options: &Options, report: &mut Report) {
    let n = options.size(100_000);
    let measure = format!("`run`, {} schedules: ready / peak RSS", thousands(n));
    let mut scenario = Scenario::new(measure.clone());
    for who in options.subjects().into_iter().filter(|&w| w != Who::Pinned) {
        let Some(r) = scenarios::ready(who, n) else { continue };
        let met = r.ready.is_some_and(|(s, _)| s <= 1.0) && r.peak_mb <= 64.0;
        let (time, how) = r
            .ready
            .map_or(("–".to_string(), "cron reads new files at the minute"), |(s, how)| (format!("{s:.2} s"), how));
        scenario.print(
            who,
            &format!("ready after {time} ({how}), peak RSS {:.1} MB{}", r.peak_mb, goal(who, "≤ 1 s / ≤ 64 MB", met)),
        );
        report.set(
            &measure,
            "≤ 1 s / ≤ 64 MB",
            who,
            format!("{time} / {:.1} MB", r.peak_mb),
            Some((r.peak_mb, "peak RSS")),
        );
    }
}

fn lateness(options: &Options, report: &mut Report) {
    // The 100-schedule run gives the CPU per fire as well.
    let runs: &[(usize, u64, f64)] =
        if options.wanted("lateness") { &[(1, 30, 1.0), (100, 20, 3.0)] } else { &[(100, 20, 3.0)] };
    for &(n, seconds, goal_ms) in runs {
        let results: Vec<(Who, scenarios::Lateness)> = options
            .subjects()
            .into_iter()
            .filter_map(|who| Some((who, scenarios::lateness(who, n, seconds, &Setup::sqlite(false))?)))
            .collect();
        let plural = if n == 1 { "" } else { "s" };
        let measure = format!("lateness, {n} schedule{plural} every second (p50 / p99)");
        let mut scenario = Scenario::new(format!("lateness, {n} schedule{plural} every second"));
        for (who, l) in &results {
            let (p50, p99) = (ms(l.p50), ms(l.p99));
            let verdict = goal(*who, &format!("p99 ≤ {goal_ms} ms"), l.p99 <= goal_ms);
            let per = if who.per_minute() { " (one minute's jobs)" } else { "" };
            let (requests, duplicates, max) = (l.requests, l.duplicates, ms(l.max));
            let body =
                format!("{requests} requests{per}, {duplicates} duplicates: p50 {p50}, p99 {p99}, max {max}{verdict}");
            scenario.print(*who, &body);
            report.set(&measure, &format!("p99 ≤ {goal_ms} ms"), *who, format!("{p50} / {p99}"), Some((l.p99, "p99")));
        }
        if n == 100 {
            cpu_per_fire(&results, seconds, report);
        }
    }
}

fn cpu_per_fire(results: &[(Who, scenarios::Lateness)], seconds: u64, report: &mut Report) {
    let measure = "CPU per fire, whole process, keep-alive to the fake";
    let mut scenario =
        Scenario::new(format!("CPU per fire, 100 schedules every second for {seconds} s (whole process)"));
    for (who, l) in results {
        let us = l.cpu_per_fire_us;
        scenario.print(*who, &format!("{us:.0} µs{}", goal(*who, "≤ 20 µs", us <= 20.0)));
        report.set(measure, "≤ 20 µs", *who, format!("{us:.0} µs"), Some((us, "CPU per fire")));
    }
}

fn burst(options: &Options, report: &mut Report) {
    for (n, goal_s, goal_cpu) in [(1_000, 0.2, 0.1), (10_000, 0.3, 0.3)] {
        let n = options.size(n);
        let measure = format!("{} slots due in the same second: all arrived after / CPU", thousands(n));
        let goal_text = format!("≤ {goal_s} s / ≤ {goal_cpu} CPU-s");
        let mut scenario = Scenario::new(format!("{} slots due in the same second", thousands(n)));
        for who in options.subjects() {
            if who == Who::Cron && !peers::room_for_jobs(n) {
                continue;
            }
            let Some(b) = scenarios::burst(who, n, &Setup::sqlite(false)) else { continue };
            let all = b.arrived == b.n && b.duplicates == 0;
            let met = all && b.last_s <= goal_s && b.cpu <= goal_cpu;
            let note = b.note.as_ref().map_or(String::new(), |n| format!("; {n}"));
            let body = format!(
                "{} of {} arrived, {} duplicates, the last {:.3} s after the slot, {:.2} CPU-s{note}{}",
                b.arrived,
                b.n,
                b.duplicates,
                b.last_s,
                b.cpu,
                goal(who, &goal_text, met)
            );
            scenario.print(who, &body);
            let text = match all {
                true => format!("all after {:.2} s / {:.2} CPU-s", b.last_s, b.cpu),
                false => format!(
                    "{} of {}, the last after {:.2} s / {:.2} CPU-s",
                    thousands(b.arrived),
                    thousands(b.n),
                    b.last_s,
                    b.cpu
                ),
            };
            report.set(&measure, &goal_text, who, text, all.then_some((b.last_s, "time until all arrived")));
        }
    }
}

fn idle(options: &Options, report: &mut Report) {
    let n = options.size(10_000);
    let measure = format!("idle with {} schedules: voluntary context switches per minute", thousands(n));
    let mut scenario = Scenario::new(format!("idle with {} schedules for 2 min", thousands(n)));
    for who in options.subjects().into_iter().filter(|&w| w != Who::Pinned) {
        let Some(per_minute) = scenarios::idle(who, n, 2) else { continue };
        scenario.print(
            who,
            &format!("{per_minute:.1} voluntary context switches a minute{}", goal(who, "≤ 1", per_minute <= 1.0)),
        );
        report.set(&measure, "≤ 1", who, format!("{per_minute:.1}"), Some((per_minute, "wake-ups")));
    }
}

/// 100,000 schedules: how long a scrape of `/metrics` and of the status page take, and how big they are.
fn metrics(options: &Options, report: &mut Report) {
    let n = options.size(100_000);
    let Some(addr) = free_addr() else { return println!("metrics: skipped, no free port") };
    let fake = fake::Fake::start(false);
    let setup = Setup { extra: vec!["--listen".into(), addr.clone()], ..Setup::sqlite(false) };
    let specs = schedules::specs(n, schedules::When::Quiet);
    let run = Box::new(daemon::Run::start("metrics", &fake.url, &specs, &setup));
    let started = Instant::now();
    while http_get(&addr, "/readyz").is_none() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut medians = Vec::new();
    for path in ["/metrics", "/"] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let start = Instant::now();
            size = http_get(&addr, path).map_or(0, |body| body.len());
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{} schedules: GET {path} in {:.0} ms median, {:.0} ms max of 5 ({:.0} kB)",
            thousands(n),
            times[2],
            times[4],
            size as f64 / 1e3
        );
        medians.push(times[2]);
    }
    subject::Running::stop(run);
    let measure = format!("{} schedules: `GET /metrics` / `GET /` (one page of 100)", thousands(n));
    report.set(&measure, "≤ 1 s", Who::Pipecron, format!("{:.0} ms / {:.0} ms", medians[0], medians[1]), None);
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(c);
    }
    text
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("fake") => return fake::serve(),
        Some("peer-tcs") => return peers::serve_tcs(std::path::Path::new(&args.next().expect("peer-tcs JOBS.json"))),
        _ => {}
    }
    let options = Options::parse();
    let mut report = Report::default();
    println!("pipecron benchmark: {}, schedulers: {:?}", daemon::binary().display(), options.subjects());
    if options.wanted("check") {
        check(&options, &mut report);
    }
    if options.wanted("ready") {
        ready(&options, &mut report);
    }
    if options.wanted("lateness") || options.wanted("cpu") {
        lateness(&options, &mut report);
    }
    if options.wanted("burst") {
        burst(&options, &mut report);
    }
    if options.wanted("idle") && !options.quick {
        idle(&options, &mut report);
    }
    if options.wanted("postgres") && options.subjects().contains(&Who::Pipecron) {
        postgres::postgres(&mut report);
    }
    if options.wanted("metrics") && options.subjects().contains(&Who::Pipecron) {
        metrics(&options, &mut report);
    }
    if options.wanted("history") && !options.quick && options.subjects().contains(&Who::Pipecron) {
        history::history(&mut report);
    }
    println!("\n{}", report.markdown());
}
