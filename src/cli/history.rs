//! `pipecron history`: past runs, newest first.

use std::io::Write;

use chrono::SecondsFormat;

use super::{Cli, Error, format};
use crate::run::Followed;
use crate::status::run_json;
use crate::store::{Run, RunStore, owner_name};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this schedule's runs.
    name: Option<String>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON, one object per run.
    #[arg(long)]
    json: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let store = super::open_store(cli).await?;
    let runs = store.history(args.name.as_deref(), args.limit).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<_> = runs.iter().map(run_json).collect();
        serde_json::to_writer(&mut out, &rows).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    if runs.is_empty() {
        eprintln!("no runs recorded in {}", super::state(cli)?);
        return Ok(());
    }
    let mut rows = vec![
        ["SLOT", "SCHEDULE", "REASON", "STATE", "ATTEMPTS", "HTTP", "PIPELINE", "BY", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(runs.iter().map(|run| {
        vec![
            run.slot.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            run.schedule.clone(),
            run.reason.as_str().into(),
            run.state.as_str().into(),
            run.attempts.to_string(),
            run.http_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            run.pipeline.as_ref().map(pipeline).unwrap_or_else(|| "-".into()),
            run.owner.as_deref().map(owner_name).unwrap_or("-").to_string(),
            detail(run),
        ]
    }));
    write!(out, "{}", format::table(&rows))?;
    Ok(())
}

/// The pipeline's id and, when it is followed, its status as GitLab's badge says it: `1001 passed 12m`.
fn pipeline(pipeline: &crate::run::Pipeline) -> String {
    match pipeline.followed {
        Some(_) => pipeline.badge().trim_start_matches('#').to_string(),
        None => pipeline.id.to_string(),
    }
}

/// The pipeline's URL, or the error.
fn detail(run: &Run) -> String {
    match (&run.pipeline, &run.error) {
        (_, Some(error)) => error.clone(),
        // Why following stopped short says more than the link.
        (Some(pipeline), None) if pipeline.note.is_some() && pipeline.followed != Some(Followed::Following) => {
            pipeline.note.clone().unwrap_or_default()
        }
        (Some(pipeline), None) => pipeline.web_url.clone().unwrap_or_default(),
        (None, None) => String::new(),
    }
}
