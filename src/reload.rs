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
use crate::schedule::Schedule;

/// How long the directory must be quiet before a reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Loads the directory: the schedules if the whole configuration is valid, else the number of errors. Every
/// diagnostic is logged.
pub fn load_valid(dir: &Path) -> Result<Vec<Arc<Schedule>>, usize> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = config::load(dir, Some(&env));
    for diagnostic in &loaded.diagnostics {
        match diagnostic.severity {
            Severity::Error => tracing::error!(%diagnostic, "invalid schedule file"),
            Severity::Warning => tracing::warn!(%diagnostic, "schedule file warning"),
        }
    }
    if loaded.has_errors() {
        return Err(loaded.errors().count());
    }
    Ok(loaded.schedules)
}

/// Watches `dir` and reloads on changes and on `kicks` (SIGHUP), sending each valid configuration to `reloads`,
/// until `stop`. Its task joins `peers`; the watcher is returned so that it lives as long as the caller wants it.
pub fn watch(
    dir: PathBuf,
    mut kicks: mpsc::Receiver<()>,
    reloads: mpsc::Sender<Vec<Arc<Schedule>>>,
    stop: CancellationToken,
    peers: &mut JoinSet<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (changed_tx, mut changed) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = changed_tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    peers.spawn(async move {
        loop {
            let why = tokio::select! {
                Some(()) = changed.recv() => {
                    // Wait for the directory to go quiet.
                    while tokio::time::timeout(DEBOUNCE, changed.recv()).await.is_ok_and(|e| e.is_some()) {}
                    "the schedules directory changed"
                }
                Some(()) = kicks.recv() => "SIGHUP",
                _ = stop.cancelled() => break,
                else => break,
            };
            tracing::info!(reason = why, "reloading the schedules");
            let dir = dir.clone();
            match tokio::task::spawn_blocking(move || load_valid(&dir)).await {
                Ok(Ok(schedules)) => {
                    if reloads.send(schedules).await.is_err() {
                        break;
                    }
                }
                Ok(Err(errors)) => {
                    tracing::error!(errors, "the new configuration is invalid; the old one keeps running")
                }
                Err(error) => tracing::error!(%error, "the reload failed"),
            }
        }
    });
    Ok(watcher)
}
