//! `pipecron check`: lint the schedule files, then list each schedule with its next fire time.

use std::io::Write;

use chrono::{SecondsFormat, Utc};

use super::{Cli, Error};
use crate::config::diag::Severity;
use crate::schedule::Schedule;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check everything except resolving ${VAR} references and reading token_file and ca_file, for linting a
    /// schedules repository in CI where the secrets are absent.
    #[arg(long)]
    skip_secrets: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let loaded = super::load(cli, !args.skip_secrets);
    let errors = loaded.errors().count();
    let warnings = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if errors > 0 {
        return Err(Error::InvalidConfig { errors });
    }
    let mut out = std::io::stdout().lock();
    let rows: Vec<[String; 4]> = loaded.schedules.iter().map(row).collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    for [name, cron, zone, next] in &rows {
        writeln!(
            out,
            "{name:<w0$}  {cron:<w1$}  {zone:<w2$}  {next}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    let paused = loaded.schedules.iter().filter(|s| !s.enabled).count();
    writeln!(
        out,
        "ok: {} in {}{}{}",
        plural(loaded.schedules.len(), "schedule"),
        plural(loaded.files.len(), "file"),
        if paused > 0 {
            format!(", {paused} paused")
        } else {
            String::new()
        },
        if warnings > 0 {
            format!(", {}", plural(warnings, "warning"))
        } else {
            String::new()
        },
    )?;
    Ok(())
}

fn row(schedule: &Schedule) -> [String; 4] {
    let next = match (schedule.enabled, schedule.next_after(Utc::now())) {
        (false, _) => "paused".to_string(),
        (true, Some(next)) => format!("next {}", next.to_rfc3339_opts(SecondsFormat::Secs, false)),
        (true, None) => "never".to_string(),
    };
    [
        schedule.name.clone(),
        schedule.cron.source().to_string(),
        schedule.timezone.name().to_string(),
        next,
    ]
}

fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
