//! `pipecron next`: preview fire times, of a configured schedule or of an expression given on the command line.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use super::{Cli, Error};
use crate::cron::CronExpr;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The schedule to preview.
    #[arg(required_unless_present = "cron", conflicts_with_all = ["cron", "timezone", "name"])]
    schedule: Option<String>,
    /// Preview this expression instead of a configured schedule.
    #[arg(long, value_name = "EXPR")]
    cron: Option<String>,
    /// The zone for --cron.
    #[arg(long, value_name = "TZ", requires = "cron", default_value = "UTC")]
    timezone: String,
    /// The name H is hashed from, for --cron; defaults to the expression.
    #[arg(long, value_name = "NAME", requires = "cron")]
    name: Option<String>,
    /// How many fire times to print.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Print times after this instant (exclusive), RFC 3339; defaults to now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    after: Option<DateTime<Utc>>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let (cron, tz) = match (&args.cron, &args.schedule) {
        (Some(expr), _) => from_command_line(expr, args)?,
        (None, Some(name)) => from_config(cli, name)?,
        (None, None) => return Err(Error::Usage("give a schedule name or --cron EXPR".into())),
    };
    let after = args.after.unwrap_or_else(Utc::now);
    let times: Vec<String> =
        cron.iter_after(tz, after).take(args.count).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::Value::from(times))?;
    } else {
        for time in times {
            writeln!(out, "{time}")?;
        }
    }
    Ok(())
}

fn from_command_line(expr: &str, args: &Args) -> Result<(CronExpr, Tz), Error> {
    let name = args.name.as_deref().unwrap_or(expr);
    let cron = CronExpr::parse(expr, name).map_err(|e| Error::Usage(format!("--cron: {e}")))?;
    let tz = args.timezone.parse::<Tz>().map_err(|_| {
        let close = crate::suggest::closest_n(&args.timezone, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()), 3);
        let hint = if close.is_empty() { "an IANA name such as Europe/Berlin".to_string() } else { close.join(", ") };
        Error::Usage(format!("--timezone: unknown time zone '{}'; did you mean {hint}?", args.timezone))
    })?;
    Ok((cron, tz))
}

/// A configured schedule. Secrets are not needed to preview, so they are not resolved.
fn from_config(cli: &Cli, name: &str) -> Result<(CronExpr, Tz), Error> {
    let loaded = super::load(cli, false);
    let schedule = super::find(&loaded, name)?;
    if !schedule.enabled {
        eprintln!("note: schedule '{name}' is paused (enabled: false); these are the times it would fire");
    }
    Ok((schedule.cron.clone(), schedule.timezone))
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; write an RFC 3339 instant such as 2026-11-25T00:30:00+01:00"))
}
