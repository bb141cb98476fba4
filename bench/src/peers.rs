//! The two things a user would pick instead of pipecron, run against the same fake with the same schedules.
//!
//! - tokio-cron-scheduler 0.15 with reqwest, the library usually suggested for this job: `pipecron-bench peer-tcs
//!   JOBS.json` (hidden) adds one job per schedule, each posting the same form as pipecron (token, ref, the
//!   schedule's variables, `PIPECRON_SCHEDULE`, `PIPECRON_SLOT`, `PIPECRON_REASON`) with one shared reqwest client
//!   (keep-alive), on `#[tokio::main]`'s default runtime, as its README shows. A job is not told which slot it
//!   runs for, so per-second jobs send their start time truncated to the whole second (right whenever the job
//!   starts within the second it is due, as it does with the 0–500 ms of its polling) and a burst's jobs send
//!   the second they are due, which the bench knows. It logs through a tracing subscriber into `tcs.log` in its
//!   directory, so that its own warnings (a lagging broadcast channel drops activations) can be counted.
//! - Debian's cron with the `curl` line of GitLab's documentation, one line per schedule in
//!   `/etc/cron.d/pipecron-bench-N` (so root only; 9,000 a file, as Debian's cron ignores a file of more than
//!   10,000 lines), at minute granularity, in the machine's zone (cron has no zone per job), with `MAILTO=""`.
//!   It runs a `cron -f` of its own unless one is running, and removes the files afterwards. Its CPU is cron's
//!   own plus that of the jobs it has waited for (`cutime`, `cstime`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::daemon::{fresh_dir, keep_or_remove};
use crate::measure;
use crate::schedules::{Spec, TOKEN, When};
use crate::subject::Running;

/// One tokio-cron-scheduler job, as the bench hands it over.
#[derive(Serialize, Deserialize)]
struct Job {
    name: String,
    cron: String,
    zone: String,
    url: String,
    git_ref: String,
    variables: Vec<(String, String)>,
    /// The slot it sends, in seconds since the epoch; without it, its start time truncated to the second.
    slot: Option<i64>,
}

fn jobs(url: &str, specs: &[Spec], when: When) -> Vec<Job> {
    let slot = match when {
        When::At(instant) => Some(instant.timestamp()),
        _ => None,
    };
    specs
        .iter()
        .map(|spec| Job {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            zone: spec.zone.name().to_string(),
            url: format!("{url}/api/v4/projects/{}/trigger/pipeline", spec.project_segment()),
            git_ref: spec.git_ref.to_string(),
            variables: spec.variables.iter().map(|(k, v)| (k.to_string(), v.text())).collect(),
            slot,
        })
        .collect()
}

/// tokio-cron-scheduler with its jobs, in a process of its own.
pub struct Tcs {
    dir: PathBuf,
    child: Child,
    /// From start until every job was added and the scheduler started.
    pub ready_after: Option<Duration>,
}

impl Tcs {
    /// Starts it and waits until every job is added (at most 10 minutes).
    pub fn start(name: &str, url: &str, specs: &[Spec], when: When) -> Tcs {
        let dir = fresh_dir(&format!("tcs-{name}"));
        let file = dir.join("jobs.json");
        let text = serde_json::to_string(&jobs(url, specs, when)).expect("the jobs serialize");
        std::fs::write(&file, text).expect("writes the jobs");
        let started = Instant::now();
        let log = std::fs::File::create(dir.join("tcs.log")).map(Stdio::from).unwrap_or(Stdio::null());
        let mut child = Command::new(std::env::current_exe().expect("the bench's own executable"))
            .arg("peer-tcs")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the tokio-cron-scheduler peer starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its stdout");
        let ready = BufReader::new(stdout).read_line(&mut line).is_ok_and(|_| line.trim() == "ready");
        Tcs { dir, child, ready_after: ready.then(|| started.elapsed()) }
    }
}

impl Running for Tcs {
    fn pids(&self) -> Vec<u32> {
        vec![self.child.id()]
    }

    fn stop(mut self: Box<Self>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        keep_or_remove(&self.dir);
    }

    /// What its log says of lost activations: its job runner logs `Lagged(N)` when its broadcast channel (capacity
    /// 200) dropped N jobs' activations.
    fn note(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("tcs.log")).unwrap_or_default();
        let errors = log.lines().filter(|l| l.contains(" ERROR ") || l.contains(" WARN ")).count();
        let dropped: u64 = log
            .lines()
            .filter(|l| l.contains("job::runner"))
            .filter_map(|l| l.split("Lagged(").nth(1)?.split(')').next()?.parse::<u64>().ok())
            .sum();
        Some(format!(
            "its log has {errors} errors and warnings; its job runner's channel lagged and dropped {dropped} activations"
        ))
    }

    fn ready_after(&self) -> Option<Duration> {
        self.ready_after
    }
}

/// The `peer-tcs JOBS.json` subcommand: the jobs on tokio-cron-scheduler; prints `ready` once they all are added
/// and the scheduler started, then runs until killed.
pub fn serve_tcs(file: &Path) {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let text = std::fs::read_to_string(file).expect("reads the jobs");
    let jobs: Vec<Job> = serde_json::from_str(&text).expect("the jobs parse");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let scheduler = tokio_cron_scheduler::JobScheduler::new().await.expect("a scheduler");
        for job in jobs {
            scheduler.add(tcs_job(job, client.clone())).await.expect("adds a job");
        }
        scheduler.start().await.expect("the scheduler starts");
        println!("ready");
        std::io::stdout().flush().expect("prints ready");
        std::future::pending::<()>().await;
    });
}

fn tcs_job(job: Job, client: reqwest::Client) -> tokio_cron_scheduler::Job {
    let zone: chrono_tz::Tz = job.zone.parse().expect("a known zone");
    let cron = job.cron.clone();
    let job = Arc::new(job);
    let run = move |_id, _scheduler| {
        let (job, client) = (job.clone(), client.clone());
        Box::pin(async move { fire(&job, &client).await }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    };
    tokio_cron_scheduler::Job::new_async_tz(cron.as_str(), zone, run).expect("a valid job")
}

async fn fire(job: &Job, client: &reqwest::Client) {
    let now = Utc::now();
    let slot = job.slot.map_or(now.timestamp(), |s| s);
    let slot = DateTime::from_timestamp(slot, 0).unwrap_or(now).to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut form = vec![
        ("token".to_string(), TOKEN.to_string()),
        ("ref".to_string(), job.git_ref.clone()),
        ("variables[PIPECRON_SCHEDULE]".to_string(), job.name.clone()),
        ("variables[PIPECRON_SLOT]".to_string(), slot),
        ("variables[PIPECRON_REASON]".to_string(), "schedule".to_string()),
    ];
    form.extend(job.variables.iter().map(|(k, v)| (format!("variables[{k}]"), v.clone())));
    match client.post(&job.url).form(&form).send().await {
        Ok(response) if response.status().is_success() => drop(response.bytes().await),
        Ok(response) => tracing::warn!(schedule = job.name, status = %response.status(), "trigger refused"),
        Err(error) => tracing::warn!(schedule = job.name, %error, "trigger failed"),
    }
}

const CRON: &str = "/usr/sbin/cron";
const CRON_DIR: &str = "/etc/cron.d";
/// The files' names start with this.
const CRON_FILE: &str = "pipecron-bench";

/// cron with the bench's lines in /etc/cron.d.
pub struct Cron {
    pid: u32,
    /// The `cron -f` the bench started, if none was running.
    child: Option<Child>,
}

impl Cron {
    /// Writes the lines and starts cron if none runs; None, with a note, where it cannot.
    pub fn start(url: &str, specs: &[Spec], when: When) -> Option<Cron> {
        if !Path::new(CRON).exists() {
            println!("  cron: skipped, not installed (apt-get install cron)");
            return None;
        }
        if !nix::unistd::geteuid().is_root() {
            println!("  cron: skipped, writing to {CRON_DIR} needs root");
            return None;
        }
        write_crontab(url, specs, when);
        let (pid, child) = match running_cron() {
            Some(pid) => (pid, None),
            None => {
                let child = Command::new(CRON)
                    .arg("-f")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("cron starts");
                (child.id(), Some(child))
            }
        };
        // A cron that was running: its peak memory from now on ("5" resets VmHWM). A new one loads the file at
        // once, so its peak is already the one to measure.
        if child.is_none() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        Some(Cron { pid, child })
    }
}

impl Running for Cron {
    fn pids(&self) -> Vec<u32> {
        vec![self.pid]
    }

    fn stop(self: Box<Self>) {
        remove_crontabs();
        if let Some(mut child) = self.child {
            measure::terminate(child.id());
            let _ = child.wait();
        }
    }
}

/// A cron daemon already running, by its executable.
fn running_cron() -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(CRON))
            && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    })
}

/// Debian's cron ignores, whole, a crontab of more than 10,000 lines ("crontab must not be longer than 10000
/// lines, this crontab file will be ignored", in syslog only): more jobs take several files.
const JOBS_PER_FILE: usize = 9_000;

/// The files, each written beside and renamed into place so that cron never reads half of one (it skips names
/// with a dot).
fn write_crontab(url: &str, specs: &[Spec], when: When) {
    remove_crontabs();
    for (i, chunk) in specs.chunks(JOBS_PER_FILE).enumerate() {
        let mut text = String::from("# pipecron-bench: removed when the measurement ends\nMAILTO=\"\"\n");
        for spec in chunk {
            text.push_str(&cron_line(url, spec, when));
        }
        let temporary = format!("{CRON_DIR}/.{CRON_FILE}.tmp");
        std::fs::write(&temporary, text).expect("writes a crontab");
        std::fs::rename(&temporary, format!("{CRON_DIR}/{CRON_FILE}-{i}")).expect("moves a crontab into place");
    }
}

fn remove_crontabs() {
    let entries = std::fs::read_dir(CRON_DIR).into_iter().flatten().flatten();
    for entry in entries.filter(|e| e.file_name().to_string_lossy().starts_with(CRON_FILE)) {
        let _ = std::fs::remove_file(entry.path());
    }
}

/// GitLab's documented line, with `%` escaped as crontab(5) wants.
fn cron_line(url: &str, spec: &Spec, when: When) -> String {
    let (time, slot) = match when {
        When::EverySecond => ("* * * * *".to_string(), "$(date -u +%Y-%m-%dT%H:%M:00Z)".to_string()),
        When::At(instant) => {
            let local = instant.with_timezone(&Local);
            (format!("{} {} * * *", local.minute(), local.hour()), instant.to_rfc3339_opts(SecondsFormat::Secs, true))
        }
        // The same line without its seconds field.
        When::Quiet => {
            let time = spec.cron.split_once(' ').map_or(String::new(), |(_, rest)| rest.to_string());
            (time, "$(date -u +%Y-%m-%dT%H:%M:00Z)".to_string())
        }
    };
    let mut command = format!(
        "curl -X POST --fail -F token={TOKEN} -F ref={} -F \"variables[PIPECRON_SCHEDULE]={}\" -F \
         \"variables[PIPECRON_SLOT]={slot}\" -F \"variables[PIPECRON_REASON]=schedule\"",
        spec.git_ref, spec.name
    );
    for (name, value) in &spec.variables {
        command.push_str(&format!(" -F \"variables[{name}]={}\"", value.text()));
    }
    command.push_str(&format!(" {url}/api/v4/projects/{}/trigger/pipeline", spec.project_segment()));
    format!("{time} root {}\n", command.replace('%', "\\%"))
}

/// Whether cron can start `n` jobs at once here: each is up to three processes (cron's child, the shell, curl), and
/// running out of process ids would break every other program on the machine too. Prints why not.
pub fn room_for_jobs(n: usize) -> bool {
    let max: usize =
        std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32_768);
    let used = std::fs::read_dir("/proc").map_or(0, |d| {
        d.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok())).count()
    });
    let room = max.saturating_sub(used) >= 3 * n + 2_000;
    if !room {
        println!("  cron + curl: skipped, {n} jobs at once may need {} processes and pid_max is {max}", 3 * n);
    }
    room
}

/// The next whole minute at least `lead` from now.
pub fn next_minute(lead: Duration) -> DateTime<Utc> {
    let at = Utc::now() + lead;
    let minute = at.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(at);
    minute + chrono::Duration::minutes(1)
}
