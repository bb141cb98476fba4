//! Reloading the schedules: watch the directory (and take SIGHUP), then parse, validate, swap.
//!
//! The directory is watched rather than the files, because editors and Kubernetes ConfigMaps replace files by
//! rename or symlink swap. Events are debounced, so one save that touches a file three times reloads once. A new
//! configuration is validated in full before it replaces the old one; if it has an error, the old one keeps
//! running and each located error is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, diag::Severity};
use crate::events::{Event, Events};
use crate::schedule::Schedule;

/// How long the directory must be quiet before a reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why a configuration was refused: how many errors, and the first, for `/readyz` and the page.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub errors: usize,
    pub first: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errors {
            1 => write!(f, "{}", self.first),
            n => write!(f, "{} (and {} more errors)", self.first, n - 1),
        }
    }
}

/// Loads the directory: the schedules if the whole configuration is valid. Every diagnostic is logged.
pub fn load_valid(dir: &Path) -> Result<Vec<Arc<Schedule>>, Invalid> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = config::load(dir, Some(&env));
    for diagnostic in &loaded.diagnostics {
        match diagnostic.severity {
            Severity::Error => tracing::error!(%diagnostic, "invalid schedule file"),
            Severity::Warning => tracing::warn!(%diagnostic, "schedule file warning"),
        }
    }
    if loaded.has_errors() {
        let first = loaded.errors().next().map(|d| d.to_string()).unwrap_or_default();
        return Err(Invalid { errors: loaded.errors().count(), first });
    }
    Ok(loaded.schedules)
}

/// How often a directory that has gone is looked for again: a watch on it ended when it was removed.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// Watches `dir` and reloads on changes and on `kicks` (SIGHUP), sending each valid configuration to `reloads`,
/// until `stop`, and publishes each outcome to `events`. Its task joins `peers` and owns the watcher. A directory
/// that is removed (or replaced) is looked for every 2 s and watched again once it is back.
pub fn watch(
    dir: PathBuf,
    mut kicks: mpsc::Receiver<()>,
    reloads: mpsc::Sender<Vec<Arc<Schedule>>>,
    events: Events,
    stop: CancellationToken,
    peers: &mut JoinSet<()>,
) -> notify::Result<()> {
    let (changed_tx, mut changed) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = changed_tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let mut watched = same_dir(&dir);
    let mut look_again = tokio::time::interval(LOOK_AGAIN);
    look_again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    peers.spawn(async move {
        loop {
            let why = tokio::select! {
                Some(()) = changed.recv() => {
                    // Wait for the directory to go quiet.
                    while tokio::time::timeout(DEBOUNCE, changed.recv()).await.is_ok_and(|e| e.is_some()) {}
                    "the schedules directory changed"
                }
                Some(()) = kicks.recv() => "SIGHUP",
                _ = look_again.tick(), if watched.is_none() || watched != same_dir(&dir) => {
                    // Gone, or a new directory in its place: watch what is there now, if anything.
                    let _ = watcher.unwatch(&dir);
                    if watcher.watch(&dir, RecursiveMode::NonRecursive).is_err() {
                        watched = None;
                        continue;
                    }
                    watched = same_dir(&dir);
                    "the schedules directory is back"
                }
                _ = stop.cancelled() => break,
                else => break,
            };
            tracing::info!(reason = why, "reloading the schedules");
            let dir = dir.clone();
            match tokio::task::spawn_blocking(move || load_valid(&dir)).await {
                Ok(Ok(schedules)) => {
                    events.publish(Event::Reloaded);
                    if reloads.send(schedules).await.is_err() {
                        break;
                    }
                }
                Ok(Err(invalid)) => events.publish(Event::ReloadFailed { error: &invalid.to_string() }),
                Err(error) => events.publish(Event::ReloadFailed { error: &error.to_string() }),
            }
        }
    });
    Ok(())
}

/// Which directory `dir` is now (device and inode), if it exists: a directory removed and made again is another.
fn same_dir(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}
