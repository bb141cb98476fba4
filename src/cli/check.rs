//! `pipecron check`: lint the schedule files, list each schedule with its next fire time, and with `--online`
//! prove to GitLab that each project and token is valid.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Cli, Error, format};
use crate::config::diag::Severity;
use crate::follow::api::GitlabApi;
use crate::schedule::Schedule;
use crate::trigger::{self, Backoff, GitlabClient, Overrides, Reason, TriggerRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check everything except resolving ${VAR} references and reading token_file and ca_file, for linting a
    /// schedules repository in CI where the secrets are absent.
    #[arg(long)]
    skip_secrets: bool,
    /// Also prove, for each schedule, that GitLab knows its project and token, without creating a pipeline.
    #[arg(long, conflicts_with = "skip_secrets")]
    online: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let loaded = super::load(cli, !args.skip_secrets);
    let errors = loaded.errors().count();
    let warnings = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count();
    if errors > 0 {
        return Err(Error::InvalidConfig { errors });
    }
    print_schedules(&loaded.schedules)?;
    let paused = loaded.schedules.iter().filter(|s| !s.enabled).count();
    let mut summary =
        format!("ok: {} in {}", plural(loaded.schedules.len(), "schedule"), plural(loaded.files.len(), "file"));
    if paused > 0 {
        summary.push_str(&format!(", {paused} paused"));
    }
    let followed = loaded.schedules.iter().filter(|s| s.api_token.is_some()).count();
    if followed > 0 {
        summary.push_str(&format!(", {followed} following their pipelines"));
    }
    if warnings > 0 {
        summary.push_str(&format!(", {}", plural(warnings, "warning")));
    }
    println!("{summary}");
    match args.online {
        true => super::block_on(online(&loaded.schedules)),
        false => Ok(()),
    }
}

/// Each schedule on a line of its own, with its next fire time, written as it is made: 100,000 rows held at once
/// took tens of megabytes.
fn print_schedules(schedules: &[Arc<Schedule>]) -> Result<(), Error> {
    let width = |cell: fn(&Schedule) -> &str| schedules.iter().map(|s| cell(s).chars().count()).max().unwrap_or(0);
    let widths = [width(|s| &s.name), width(|s| s.cron.source()), width(|s| s.timezone.name())];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let now = Utc::now();
    for schedule in schedules {
        out.write_all(format::line(&widths, &row(schedule, now)).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn row(schedule: &Schedule, now: DateTime<Utc>) -> [String; 4] {
    let next = match (schedule.enabled, schedule.next_after(now)) {
        (false, _) => "paused".to_string(),
        (true, Some(next)) => format!("next {}", next.to_rfc3339_opts(SecondsFormat::Secs, false)),
        (true, None) => "never".to_string(),
    };
    let next = match &schedule.api_token {
        Some(token) => format!("{next}, follows its pipelines (api_token {})", token_shown(token)),
        None => next,
    };
    [schedule.name.to_string(), schedule.cron.source().to_string(), schedule.timezone.name().to_string(), next]
}

/// An `api_token` as it may be shown: masked, or where it comes from when secrets were not read.
fn token_shown(token: &crate::schedule::ApiToken) -> String {
    match (&token.secret, &token.source) {
        (Some(secret), _) => secret.masked(),
        (None, crate::schedule::TokenSource::Env(vars)) => format!("${{{}}}", vars.join("}${")),
        (None, crate::schedule::TokenSource::File(path)) => path.display().to_string(),
        (None, crate::schedule::TokenSource::Inline) => "inline".into(),
    }
}

fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A ref no repository can have (`..` is not allowed in git ref names), so no pipeline can be created.
const PROBE_REF: &str = "pipecron..online-check";

/// Sends each schedule's trigger with a ref that cannot exist: GitLab answers "Reference not found" when the
/// project and token are right, and 404 when either is wrong. With an `api_token`, also looks the trigger token up
/// (owner, last use, expiry) and warns of one about to stop working.
async fn online(schedules: &[Arc<Schedule>]) -> Result<(), Error> {
    let client = Arc::new(GitlabClient::new()?);
    client.prepare(schedules.iter().filter_map(|s| s.ca_file.as_deref()))?;
    let overrides = Overrides { git_ref: Some(PROBE_REF.into()), ..Overrides::default() };
    let api = GitlabApi::new(client.clone(), std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN));
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let mut failed = 0;
    for schedule in schedules {
        let request = TriggerRequest::new(schedule, Utc::now(), Reason::RunNow, &overrides)?;
        let result = trigger::fire(&*client, &request, schedule.retries.min(2), Backoff::default(), |_, _, _| {}).await;
        let error = result.error.unwrap_or_default();
        let verdict = if result.http_status == Some(400) && error.contains("is not a branch or tag") {
            format!("online ok: GitLab knows project {} and accepts the token", schedule.project)
        } else {
            failed += 1;
            match result.pipeline {
                Some(p) => format!("online FAILED: GitLab created pipeline {} for the probe ref", p.id),
                None => format!("online FAILED: {error}"),
            }
        };
        let verdict = match schedule.api_token.is_some() {
            true => {
                let found = api.trigger_token(schedule).await;
                let now = Utc::now();
                warnings.extend(
                    found.warnings(now).into_iter().map(|w| format!("warning: schedule '{}': {w}", schedule.name)),
                );
                format!("{verdict}; trigger token {}", found.describe(now))
            }
            false => verdict,
        };
        rows.push(vec![schedule.name.to_string(), verdict]);
    }
    print!("{}", format::table(&rows));
    for warning in warnings {
        eprintln!("{warning}");
    }
    match failed {
        0 => Ok(()),
        failed => Err(Error::OnlineCheck { failed, total: schedules.len() }),
    }
}
