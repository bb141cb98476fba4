//! `pipecron run`: the daemon (`crate::daemon`), from the command line. It fires every schedule on time until SIGTERM
//! or SIGINT, reloads on changes and SIGHUP, and exits 0 once in-flight triggers have finished or the grace period has
//! passed.

use std::time::Duration;

use super::{Cli, Error};
use crate::daemon;
use crate::scheduler::Options;
use crate::trigger::Backoff;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many triggers may be in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// How long in-flight triggers may take to finish after SIGTERM; the rest are recorded as unknown.
    #[arg(long, default_value = "25s", value_parser = crate::duration::parse)]
    shutdown_grace: Duration,
    /// Print each request (token masked) instead of sending it, and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// A replica whose heartbeat is older than this is dead, and live ones take over its slots; each replica
    /// heartbeats every third of it.
    #[arg(long, default_value = "15s", value_parser = parse_lease)]
    lease: Duration,
    /// Serve health checks and the JSON API on this address (`off`: no server). Port 0 picks a free port; the
    /// start-up log names the address bound.
    #[arg(long, env = "PIPECRON_LISTEN", default_value = "127.0.0.1:8466", value_name = "ADDR|off", value_parser = parse_listen)]
    listen: Listen,
    /// At most this many requests a second to each GitLab host's API, when following pipelines (schedules with an
    /// `api_token`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    api_rate: u32,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    init_logs(args.log_format);
    let options = Options {
        concurrency: args.concurrency as usize,
        shutdown_grace: args.shutdown_grace,
        backoff: Backoff::default(),
        lease: args.lease,
    };
    // A dry run records nothing, so it keeps its history in memory.
    let state = if args.dry_run { crate::store::StateLocation::memory() } else { super::state(cli)? };
    let admin_token = std::env::var("PIPECRON_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty());
    let config = daemon::Config {
        schedules: cli.schedules.clone(),
        state,
        options,
        listen: args.listen.0,
        dry_run: args.dry_run,
        admin_token: admin_token.map(|t| crate::secret::Secret::new(t.trim().to_string())),
        api_rate: std::num::NonZeroU32::new(args.api_rate).unwrap_or(std::num::NonZeroU32::MIN),
    };
    daemon::run(config).await.map_err(|error| match error {
        daemon::Error::InvalidConfig { errors } => Error::InvalidConfig { errors },
        daemon::Error::Client(error) => Error::Client(error),
        daemon::Error::Store(error) => Error::Store(error),
        other => Error::Daemon(other),
    })
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPECRON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Where to listen, or nowhere.
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<std::net::SocketAddr>);

pub fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|addr| Listen(Some(addr)))
        .map_err(|_| "write HOST:PORT, such as 127.0.0.1:8466, or off".to_string())
}

fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = crate::duration::parse(text)?;
    if lease < Duration::from_secs(1) {
        return Err("the lease must be at least 1s; a heartbeat goes out every third of it".into());
    }
    Ok(lease)
}
