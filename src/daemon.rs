//! The daemon: the scheduler, the reload watcher, the HTTP server and the signal handlers, started together as
//! peers, stopped by one cancellation token, and all joined before it returns.
//!
//! SIGTERM or SIGINT cancels the token: the scheduler takes no new slots and drains, the watcher, the server, the
//! follower of pipelines (`crate::follow`) and the history's pruning (`crate::retention`) stop. SIGHUP asks the watcher to reload. What happens is published
//! as events (`crate::events`) to the log, the metrics, the server's view of the configuration and, in a dry run,
//! the printout. Nothing here knows about the
//! command line; `cli/run.rs` only fills in a `Config`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::events::{Events, Listener, Log, PrintRequests};
use crate::follow::Follower;
use crate::follow::api::GitlabApi;
use crate::follow::overlap::Overlaps;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::scheduler::{Options, Scheduler};
use crate::secret::Secret;
use crate::server::{Admin, ConfigHealth, Live};
use crate::store::{RunStore, StateLocation, Store, StoreError};
use crate::trigger::client::ClientError;
use crate::trigger::{GitlabClient, Sender};

/// What the daemon runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory of schedule files.
    pub schedules: PathBuf,
    /// The store (`StateLocation::memory()` for a dry run, which records nothing).
    pub state: StateLocation,
    pub options: Options,
    /// Where the HTTP server listens, if anywhere.
    pub listen: Option<std::net::SocketAddr>,
    /// Print each request instead of sending it (with a `memory()` state, so that nothing is recorded).
    pub dry_run: bool,
    /// The bearer token of the admin endpoint, which exists only when this is set.
    pub admin_token: Option<Secret>,
    /// Requests a second to each GitLab host's API at most, when following pipelines.
    pub api_rate: std::num::NonZeroU32,
}

/// Why the daemon could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{errors} error{} in the schedule files; see above", if *.errors == 1 { "" } else { "s" })]
    InvalidConfig { errors: usize },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot watch {dir}: {reason}")]
    Watch { dir: String, reason: String },
    #[error("cannot handle signals: {0}")]
    Signals(#[from] std::io::Error),
    #[error("{0}")]
    Listen(String),
}

/// Runs until SIGTERM or SIGINT, then drains and returns once every peer has stopped.
pub async fn run(config: Config) -> Result<(), Error> {
    let schedules = crate::reload::load_valid(&config.schedules)
        .map_err(|invalid| Error::InvalidConfig { errors: invalid.errors })?;
    let client = match config.dry_run {
        true => None,
        false => Some(Arc::new(gitlab_client(&schedules)?)),
    };
    let trigger = Arc::new(client.clone().map_or(Sender::DryRun, Sender::Gitlab));
    let state = config.state;
    let store = Arc::new(crate::store::open(&state).await?);
    let listener = match config.listen {
        Some(addr) => Some(crate::server::bind(addr).await.map_err(Error::Listen)?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let config_health = Arc::new(ConfigHealth::default());
    let kick = Arc::new(tokio::sync::Notify::new());
    let (news_tx, news_rx) = crate::notify::queue();
    let mut listeners: Vec<Arc<dyn Listener>> = vec![
        Arc::new(Log { dry_run: config.dry_run }),
        metrics.clone(),
        config_health.clone(),
        Arc::new(crate::follow::Kick(kick.clone())),
    ];
    match config.dry_run {
        true => listeners.push(Arc::new(PrintRequests)),
        // A dry run fails nothing, so it tells nothing.
        false => listeners.push(Arc::new(crate::notify::Heard::new(news_tx))),
    }
    let events = Events::new(listeners);

    let stop = CancellationToken::new();
    let mut peers = JoinSet::new();
    peers.spawn(seed(metrics.clone(), store.clone(), stop.clone()));
    let (kick_tx, kick_rx) = mpsc::channel(4);
    let (loaded_tx, loaded_rx) = mpsc::channel(4);
    let dir = config.schedules.clone();
    crate::reload::watch(dir, kick_rx, loaded_tx, events.clone(), stop.clone(), &mut peers)
        .map_err(|e| Error::Watch { dir: config.schedules.display().to_string(), reason: e.to_string() })?;
    let (live_tx, live_rx) = watch::channel(schedules.clone());
    let (reload_tx, reload_rx) = mpsc::channel(4);
    peers.spawn(publish(loaded_rx, live_tx, reload_tx));
    peers.spawn(crate::retention::keep(store.clone(), live_rx.clone(), stop.clone()));
    peers.spawn(signals(stop.clone(), kick_tx)?);
    let mut scheduler = Scheduler::new(store.clone(), trigger.clone(), Arc::new(SystemClock), config.options);
    scheduler.publish_to(events.clone());
    // A dry run creates no pipelines, so there are none to follow, nor any overlap to check, nor failures to tell.
    if let Some(client) = client {
        let webhooks = client.client_for(None, crate::trigger::client::ANY_TIMEOUT)?;
        let api = Arc::new(GitlabApi::new(client, config.api_rate));
        scheduler.check_overlaps(Arc::new(Overlaps { store: store.clone(), api: api.clone() }));
        peers.spawn(crate::follow::tokens::watch(api.clone(), store.clone(), live_rx.clone(), stop.clone()));
        let follower = Follower { store: store.clone(), api, schedules: live_rx.clone(), events: events.clone(), kick };
        peers.spawn(follower.run(stop.clone()));
        let notifier = Notifier { store: store.clone(), client: webhooks, news: news_rx, schedules: live_rx.clone() };
        peers.spawn(notifier.run(stop.clone()));
    }
    if let Some(listener) = listener {
        let addr = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
        tracing::info!(%addr, "listening");
        let admin = config
            .admin_token
            .map(|token| Arc::new(Admin { token, trigger, replica: scheduler.replica(), events: events.clone() }));
        let live = Live {
            store,
            schedules: live_rx,
            loop_woke: scheduler.loop_woke(),
            metrics,
            config: config_health,
            admin,
            state: state.to_string(),
        };
        peers.spawn(crate::server::serve(listener, live, stop.clone()));
    }
    tracing::info!(
        schedules = schedules.len(),
        state = %state,
        dry_run = config.dry_run,
        version = env!("CARGO_PKG_VERSION"),
        "pipecron started"
    );
    let stopped = scheduler.run(schedules, reload_rx, stop.clone().cancelled_owned()).await;
    // The scheduler may also stop on its own (its store failed at start): the other peers stop with it.
    stop.cancel();
    while peers.join_next().await.is_some() {}
    tracing::info!("pipecron stopped");
    Ok(stopped?)
}

/// GitLab's client, ready for every schedule's `ca_file`: shared by the triggers, the follower and the notices.
fn gitlab_client(schedules: &[Arc<crate::schedule::Schedule>]) -> Result<GitlabClient, Error> {
    let client = GitlabClient::new()?;
    client.prepare(schedules.iter().filter_map(|s| s.ca_file.as_deref()))?;
    Ok(client)
}

/// Seeds the metrics' last fire and last success from the store, beside the start: a long history makes this a
/// slow query, and nothing waits for it.
async fn seed(metrics: Arc<Metrics>, store: Arc<Store>, stop: CancellationToken) {
    tokio::select! {
        runs = store.last_runs() => match runs {
            Ok(runs) => metrics.seed(&runs),
            Err(error) => tracing::warn!(%error, "cannot read the last runs for the metrics"),
        },
        _ = stop.cancelled() => {}
    }
}

/// Passes each reloaded configuration on to the scheduler, and publishes it for the server.
async fn publish(
    mut loaded: mpsc::Receiver<Vec<Arc<crate::schedule::Schedule>>>,
    live: watch::Sender<Vec<Arc<crate::schedule::Schedule>>>,
    scheduler: mpsc::Sender<Vec<Arc<crate::schedule::Schedule>>>,
) {
    while let Some(schedules) = loaded.recv().await {
        live.send_replace(schedules.clone());
        if scheduler.send(schedules).await.is_err() {
            return;
        }
    }
}

/// The signal handlers, installed before anything runs (so that pipecron stops cleanly as PID 1, where the kernel
/// would otherwise ignore SIGTERM): SIGTERM and SIGINT cancel `stop`, SIGHUP kicks a reload.
fn signals(
    stop: CancellationToken,
    kick: mpsc::Sender<()>,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
                _ = hangup.recv() => {
                    let _ = kick.try_send(());
                    continue;
                }
                _ = stop.cancelled() => return,
            };
            tracing::info!(signal = name, "stopping: no new slots are taken");
            stop.cancel();
            return;
        }
    })
}
