//! `pipecron status`: the triggers overview, one row per schedule with its last and next run.

use std::collections::HashMap;
use std::io::Write;

use chrono::{SecondsFormat, Utc};

use super::{Cli, Error, format};
use crate::schedule::{Schedule, TokenSource};
use crate::secret::Secret;
use crate::store::{Run, RunStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON, one object per schedule.
    #[arg(long)]
    json: bool,
    /// Print nothing: exit 0 if the schedules are valid and the history can be read (a container health check).
    #[arg(long, conflicts_with = "json")]
    quiet: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    // Secrets are only shown masked, and a missing one should not hide the overview.
    let loaded = super::load(cli, false);
    if loaded.has_errors() {
        return Err(Error::InvalidConfig { errors: loaded.errors().count() });
    }
    let store = super::open_store(cli).await?;
    let last: HashMap<String, Run> = store.last_runs().await?.into_iter().map(|r| (r.schedule.clone(), r)).collect();
    if args.quiet {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<serde_json::Value> = loaded.schedules.iter().map(|s| row_json(s, last.get(&*s.name))).collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    let mut rows = vec![
        ["SCHEDULE", "PROJECT", "REF", "CRON", "ZONE", "TOKEN", "LAST RUN", "NEXT RUN"].map(String::from).to_vec(),
    ];
    rows.extend(loaded.schedules.iter().map(|s| row(s, last.get(&*s.name))));
    write!(out, "{}", format::table(&rows))?;
    Ok(())
}

fn row(schedule: &Schedule, last: Option<&Run>) -> Vec<String> {
    let now = Utc::now();
    let last_run = match last {
        None => "never".to_string(),
        Some(run) => {
            let pipeline = run.pipeline.as_ref().map(|p| format!(" #{}", p.id)).unwrap_or_default();
            format!("{} {}{pipeline}", format::ago(run.slot, now), run.state.as_str())
        }
    };
    let next_run = match (schedule.enabled, schedule.next_after(now)) {
        (false, _) => "paused".to_string(),
        (true, None) => "never".to_string(),
        (true, Some(next)) => {
            format!("{} ({})", next.format("%Y-%m-%d %H:%M:%S %Z"), format::until(next.with_timezone(&Utc), now))
        }
    };
    vec![
        schedule.name.to_string(),
        schedule.project.to_string(),
        schedule.git_ref.to_string(),
        schedule.cron.source().to_string(),
        schedule.timezone.name().to_string(),
        masked_token(schedule),
        last_run,
        next_run,
    ]
}

fn row_json(schedule: &Schedule, last: Option<&Run>) -> serde_json::Value {
    let next = schedule.enabled.then(|| schedule.next_after(Utc::now())).flatten();
    serde_json::json!({
        "name": &*schedule.name,
        "description": schedule.description,
        "project": schedule.project.to_string(),
        "ref": &*schedule.git_ref,
        "cron": schedule.cron.source(),
        "timezone": schedule.timezone.name(),
        "token": masked_token(schedule),
        "enabled": schedule.enabled,
        "last_run": last.map(super::history::run_json),
        "next_run": next.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)),
    })
}

/// The token as GitLab's triggers page shows it: at most 4 characters after `glptt-`. The configuration was loaded
/// without secrets, so look the token up here, and say where it should come from if it cannot be found.
fn masked_token(schedule: &Schedule) -> String {
    if let Some(token) = &schedule.token {
        return token.masked();
    }
    match &schedule.token_source {
        TokenSource::Env(vars) => match vars.iter().map(std::env::var).collect::<Result<String, _>>() {
            Ok(token) if !token.trim().is_empty() => Secret::new(token.trim().to_string()).masked(),
            _ => format!("${{{}}} (unset)", vars.join("}${")),
        },
        TokenSource::File(path) => match std::fs::read_to_string(path) {
            Ok(token) if !token.trim().is_empty() => Secret::new(token.trim().to_string()).masked(),
            _ => format!("{} (unreadable)", path.display()),
        },
        TokenSource::Inline => "(inline)".into(),
    }
}
