//! `pipecron run` as a child process: started in a directory with its own environment, stopped with real signals.
//! Its log goes to a file beside the schedules, never to a pipe nobody reads, which would stall a long run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use super::fake_gitlab::{FakeGitlab, TOKEN};

pub struct Daemon {
    child: Child,
    log: PathBuf,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Daemon {
    /// `pipecron run --log-format json ARGS` in `dir`, with only `TRIGGER_TOKEN` and `env` in its environment.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = dir.join(format!("daemon-{}.log", STARTED.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
            .args(["run", "--log-format", "json"])
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("TRIGGER_TOKEN", TOKEN)
            // Several daemons run at once in the tests: each serves on a port of its own.
            .env("PIPECRON_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the daemon starts");
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// What it has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, waits up to `within` for it to exit, and returns the exit code and the logs.
    pub fn stop_within(self, within: Duration) -> (Option<i32>, String) {
        self.signal("TERM");
        self.exits_within(within)
    }

    /// Waits up to `within` for it to exit on its own; the exit code and the logs.
    pub fn exits_within(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), self.logs());
            }
            assert!(Instant::now() < deadline, "the daemon did not stop:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(self) -> (Option<i32>, String) {
        self.stop_within(Duration::from_secs(15))
    }

    pub fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // For the leak scan: what it logged, and what it recorded.
        super::artifacts::keep("log", self.logs().as_bytes());
        if let Some(dir) = self.log.parent() {
            super::artifacts::keep_files(dir, "pipecron.db", "db");
        }
    }
}

/// A temp dir with `schedules/s.yaml` on the fake: `schedules` is the body under `schedules:`.
pub fn setup(fake: &FakeGitlab, schedules: &str) -> (tempfile::TempDir, PathBuf) {
    let url = fake.start_in_background();
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    let file = dir.path().join("schedules/s.yaml");
    write_schedules(&file, &url, schedules);
    (dir, file)
}

pub fn write_schedules(file: &Path, url: &str, schedules: &str) {
    let text = format!(
        "defaults:\n  gitlab: {url}\n  token: ${{TRIGGER_TOKEN}}\n  project: 9\n  ref: master\n  retries: 0\nschedules:\n{schedules}"
    );
    std::fs::write(file, text).expect("writes");
}

/// The slots the fake received, per schedule, in the order they arrived.
pub fn slots_by_schedule(fake: &FakeGitlab) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in fake.requests() {
        let variables = &request.params["variables"];
        let name = variables["PIPECRON_SCHEDULE"].as_str().unwrap_or_default().to_string();
        out.entry(name).or_default().push(variables["PIPECRON_SLOT"].as_str().unwrap_or_default().to_string());
    }
    out
}

impl Daemon {
    /// The address its HTTP server bound, from its start-up log.
    pub fn listening(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            let found = logs.lines().find_map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).ok()?;
                (event["message"] == "listening").then(|| event["addr"].as_str().map(String::from)).flatten()
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "the daemon did not say where it listens:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP/1.1 request on a fresh connection: the status code and the body.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    super::artifacts::keep("http", answer.as_bytes());
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}
