//! `pipecron run-now`: fire a schedule once, now, with the same retries as the daemon, and record it.

use super::{Cli, Error};
use crate::store::{Replica, RunStore, Store};
use crate::trigger::{Ending, GitlabClient, Overrides, Reason, RunResult, TriggerRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The schedule to fire.
    name: String,
    /// Fire on this branch or tag instead of the schedule's ref.
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// Add or override a variable; may be given several times.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Print the request that would be sent, with the token masked, and send nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let loaded = super::load(cli, true);
    let schedule = super::find(&loaded, &args.name)?;
    if !schedule.enabled {
        eprintln!("note: schedule '{}' is paused; firing it anyway, as asked", schedule.name);
    }
    let overrides = Overrides { git_ref: args.git_ref.clone(), variables: args.vars.iter().cloned().collect() };
    let slot = crate::run_now::slot_now();
    let request = TriggerRequest::new(schedule, slot, Reason::RunNow, &overrides)?;
    if args.dry_run {
        print!("{}", request.describe());
        return Ok(());
    }
    let client = GitlabClient::new()?;
    let store = super::open_store(cli).await?;
    // run-now claims like a replica and holds a lease while it sends, so that a daemon takes over only if it dies.
    let replica = Replica::this_process(crate::store::DEFAULT_LEASE);
    store.register(&replica).await?;
    let lease = tokio::spawn(heartbeat(store.clone(), replica.clone()));
    let fired = crate::run_now::claim_and_fire(
        &store,
        &replica,
        &client,
        schedule,
        &request,
        slot,
        |attempt, message, wait| {
            eprintln!("attempt {attempt} failed: {message}; retrying in {:.1}s", wait.as_secs_f64());
        },
    )
    .await;
    lease.abort();
    if let Err(error) = store.deregister(&replica).await {
        eprintln!("note: cannot deregister from the state database: {error}");
    }
    let done = fired.map_err(|error| match error {
        crate::run_now::Error::AlreadyClaimed { .. } => Error::Usage(error.to_string()),
        crate::run_now::Error::Store(error) => Error::Store(error),
    })?;
    if done.taken_over {
        eprintln!(
            "note: a daemon took this run over while it was sending (its lease ran out); the history says unknown"
        );
    }
    report(&schedule.name, &request.git_ref, done.result)
}

/// Renews run-now's lease while it sends and retries.
async fn heartbeat(store: Store, replica: Replica) {
    let mut beat = tokio::time::interval(crate::store::DEFAULT_LEASE / 3);
    beat.tick().await;
    loop {
        beat.tick().await;
        let _ = store.heartbeat(&replica).await;
    }
}

fn report(name: &str, git_ref: &str, result: RunResult) -> Result<(), Error> {
    let error = result.error.unwrap_or_default();
    match (result.ending, result.pipeline) {
        (Ending::Succeeded, Some(pipeline)) => {
            let url = pipeline.web_url.unwrap_or_default();
            println!("pipeline {} created for '{name}' on {git_ref}: {url}", pipeline.id);
            Ok(())
        }
        (Ending::Succeeded, None) | (Ending::Skipped, _) => Ok(()),
        (Ending::Unknown, _) => Err(Error::Unknown(error)),
        (Ending::Failed, _) if result.retries_exhausted => Err(Error::GaveUp(error)),
        (Ending::Failed, _) => Err(Error::Refused(error)),
    }
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("write KEY=VALUE")?;
    crate::run_now::check_variable(key)?;
    Ok((key.to_string(), value.to_string()))
}
