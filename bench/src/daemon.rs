//! pipecron under test: the release binary's `pipecron run` in a state directory of its own, one daemon or several
//! replicas sharing the schedules, and its `check`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::measure;
use crate::schedules::{self, Spec};
use crate::subject::Running;

pub fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
    let path = root.join("target/release/pipecron");
    assert!(path.exists(), "build it first: cargo build --release");
    path
}

/// How the daemons under test run: how many replicas side by side, with what arguments, pinned or not.
#[derive(Clone, Default)]
pub struct Setup {
    pub replicas: usize,
    /// Added to each `pipecron run`, such as `--state URL`.
    pub extra: Vec<String>,
    /// One daemon on the first CPU (the fake being on the last).
    pub pinned: bool,
}

impl Setup {
    /// One daemon, with the default state: a SQLite file in its directory.
    pub fn sqlite(pinned: bool) -> Setup {
        Setup { replicas: 1, extra: Vec::new(), pinned }
    }
}

/// A fresh directory for a measurement, `DIR/schedules` in it.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipecron-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("schedules")).expect("creates the bench's directory");
    dir
}

pub fn keep_or_remove(dir: &Path) {
    if std::env::var_os("PIPECRON_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A state dir with the schedules, and its running daemons: the replicas share the schedules directory.
pub struct Run {
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Run {
    pub fn start(name: &str, url: &str, specs: &[Spec], setup: &Setup) -> Run {
        let dir = fresh_dir(name);
        schedules::write_yaml(&dir.join("schedules"), url, specs);
        let children = (0..setup.replicas).map(|i| Self::spawn(&dir, i, setup)).collect();
        Run { dir, children }
    }

    fn spawn(dir: &Path, i: usize, setup: &Setup) -> Child {
        let mut command = Command::new(binary());
        // Several replicas float: pinned all to one CPU, three would take turns on it while the other CPU idles
        // between the fake's requests, which measures the pinning.
        measure::pin(&mut command, setup.pinned && setup.replicas == 1, 0);
        let log = std::fs::File::create(dir.join(format!("pipecron-{i}.log")));
        command
            .arg("run")
            .args(&setup.extra)
            .args(std::env::var("PIPECRON_BENCH_ARGS").unwrap_or_default().split_whitespace())
            .current_dir(dir)
            .env("PIPECRON_LOG", std::env::var("PIPECRON_LOG").unwrap_or_else(|_| "warn".into()))
            .env("PIPECRON_LISTEN", "off")
            .stdout(Stdio::null())
            .stderr(log.map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("pipecron starts")
    }
}

impl Running for Run {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops the replicas together, and shows the end of the log of each that did not exit cleanly.
    fn stop(mut self: Box<Self>) {
        for child in &self.children {
            measure::terminate(child.id());
        }
        for (i, child) in self.children.iter_mut().enumerate() {
            let status = child.wait();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                let log = std::fs::read_to_string(self.dir.join(format!("pipecron-{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                println!("  pipecron {i} exited with {status:?}; the end of its log:\n  {}", tail.join("\n  "));
            }
        }
        keep_or_remove(&self.dir);
    }
}

/// `pipecron check` of `specs`, three times: the median wall time and the largest peak RSS of the three.
pub fn check(url: &str, specs: &[Spec]) -> (f64, f64) {
    let dir = fresh_dir("check");
    schedules::write_yaml(&dir.join("schedules"), url, specs);
    let mut runs: Vec<measure::Finished> = (0..3)
        .map(|_| {
            let mut command = Command::new(binary());
            command.arg("check").arg("--schedules").arg(dir.join("schedules")).current_dir(&dir);
            command.stdout(Stdio::null()).stderr(Stdio::null());
            measure::run_to_end(&mut command)
        })
        .collect();
    keep_or_remove(&dir);
    assert!(runs.iter().all(|r| r.success), "pipecron check refuses the bench's schedules");
    runs.sort_by_key(|r| r.wall);
    let peak = runs.iter().map(|r| r.peak_mb).fold(0.0, f64::max);
    (runs[1].wall.as_secs_f64(), peak)
}
