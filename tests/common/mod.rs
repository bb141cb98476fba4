//! Drives the real `pipecron` binary: `Pipecron::new().args(["check"]).env("X", "y").run()`.

#![allow(dead_code)]

pub mod artifacts;
pub mod daemon;
pub mod fake_gitlab;
pub mod hostile;
pub mod metrics;
pub mod pg;
pub mod pg_cluster;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pipecron {
    command: Command,
}

/// What a run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Pipecron {
    /// A run with an empty environment, so the developer's own variables never leak into a test.
    pub fn new() -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipecron"));
        command.env_clear().env("TZ", "UTC");
        Pipecron { command }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub fn run(mut self) -> Run {
        let output = self.command.output().expect("the pipecron binary runs");
        artifacts::keep("stdout", &output.stdout);
        artifacts::keep("stderr", &output.stderr);
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn success(self) -> Self {
        assert_eq!(self.status, 0, "expected success:\n{self:#?}");
        self
    }

    pub fn failure(self) -> Self {
        assert_eq!(self.status, 1, "expected exit status 1:\n{self:#?}");
        self
    }

    pub fn stdout_is(self, expected: &str) -> Self {
        assert_eq!(self.stdout, expected, "stdout differs:\n{self:#?}");
        self
    }

    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        self
    }
}

/// Starts a server with `serve` on a thread and runtime of its own, for tests that run the real binary (which blocks
/// the test's thread); returns what `serve` returns, its URL.
pub fn in_background<F>(serve: impl FnOnce() -> F + Send + 'static) -> String
where
    F: std::future::Future<Output = String> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            tx.send(serve().await).expect("the test waits");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("the server starts")
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
