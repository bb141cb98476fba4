//! `pipecron status`: the triggers overview, one row per schedule with its last and next run.

use std::collections::HashMap;
use std::io::Write;

use chrono::Utc;

use super::{Cli, Error, format};
use crate::schedule::Schedule;
use crate::status::{schedule_json, token_cell};
use crate::store::{Run, RunStore, StateLocation, TokenNote, TokenNotes};

/// Less free space than this, and the state file's disk is as good as full: a burst's writes need more.
const LOW_DISK: u64 = 1024 * 1024;

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
    let state = super::state(cli);
    // The files load while the history is read: with 100,000 schedules each takes about half a second. Secrets are
    // only shown masked, and a missing one should not hide the overview.
    let dir = cli.schedules.clone();
    let loading = tokio::task::spawn_blocking(move || crate::config::load(&dir, None));
    let (loaded, found) = tokio::join!(loading, last_runs(state.as_ref().ok()));
    let loaded = loaded.unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
    super::report(&loaded);
    if loaded.has_errors() {
        return Err(Error::InvalidConfig { errors: loaded.errors().count() });
    }
    let (state, (last, tokens)) = (state?, found?);
    for schedule in &loaded.schedules {
        if let Some(warning) = tokens.get(&*schedule.name).and_then(|n| n.warning.as_deref()) {
            eprintln!("warning: schedule '{}': {warning}", schedule.name);
        }
    }
    // A full disk lets the history be read but not written: say so here too.
    if let Some(free) = state.disk_free().filter(|free| *free < LOW_DISK) {
        let problem = format!(
            "the file system of {state} has {} KiB free: the daemon cannot record runs (alone, it fires on and holds \
             them in memory; beside other replicas, it fires none); free some space",
            free / 1024
        );
        match args.quiet {
            true => return Err(Error::Unhealthy(problem)),
            false => eprintln!("warning: {problem}"),
        }
    }
    if args.quiet {
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        // One object at a time: 100,000 schedules built as one JSON value first would take hundreds of MB.
        let now = Utc::now();
        out.write_all(b"[")?;
        for (i, schedule) in loaded.schedules.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            let json =
                schedule_json(schedule, last.get(&*schedule.name), now).with_token_note(tokens.get(&*schedule.name));
            serde_json::to_writer(&mut out, &json).map_err(std::io::Error::from)?;
        }
        out.write_all(b"]\n")?;
        out.flush()?;
        return Ok(());
    }
    let mut rows = vec![
        ["SCHEDULE", "PROJECT", "REF", "CRON", "ZONE", "TOKEN", "LAST RUN", "NEXT RUN"].map(String::from).to_vec(),
    ];
    rows.extend(loaded.schedules.iter().map(|s| row(s, last.get(&*s.name), tokens.get(&*s.name))));
    write!(out, "{}", format::table(&rows))?;
    out.flush()?;
    Ok(())
}

/// The newest run of each schedule, and what the daemon found of their trigger tokens. A state file that does not
/// exist yet has neither, and a status does not make it.
async fn last_runs(state: Option<&StateLocation>) -> Result<(HashMap<String, Run>, HashMap<String, TokenNote>), Error> {
    let Some(state) = state else { return Ok(Default::default()) };
    if let StateLocation::Sqlite(path) = state
        && !path.exists()
    {
        return Ok(Default::default());
    }
    let store = crate::store::open(state).await?;
    let runs = store.last_runs().await?.into_iter().map(|r| (r.schedule.clone(), r)).collect();
    Ok((runs, store.token_notes().await?))
}

fn row(schedule: &Schedule, last: Option<&Run>, token: Option<&TokenNote>) -> Vec<String> {
    let now = Utc::now();
    let last_run = match last {
        None => "never".to_string(),
        Some(run) => {
            // A followed pipeline as GitLab's badge says it: `#1001 passed 12m`.
            let pipeline = run
                .pipeline
                .as_ref()
                .map(|p| if p.followed.is_some() { format!(" {}", p.badge()) } else { format!(" #{}", p.id) })
                .unwrap_or_default();
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
        token_cell(schedule, token),
        last_run,
        next_run,
    ]
}
