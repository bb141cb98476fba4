//! What is shown of a schedule and of a run, as JSON: one source for `status --json` and `history --json`, and for
//! the daemon's JSON API and page. Tokens are only ever shown masked. Times as people read them (`3m ago`,
//! `in 2h 15m`) live here too, so that the CLI and the daemon's page say them alike.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::schedule::{Schedule, TokenSource};
use crate::secret::Secret;
use crate::store::{Run, TokenNote, owner_name};

/// A schedule as `status --json` shows it, with its last run and its next slot after `now`.
pub fn schedule_json<'a>(schedule: &'a Schedule, last: Option<&'a Run>, now: DateTime<Utc>) -> ScheduleJson<'a> {
    let next = schedule.enabled.then(|| schedule.next_after(now)).flatten();
    ScheduleJson {
        cron: schedule.cron.source(),
        description: schedule.description.as_deref(),
        enabled: schedule.enabled,
        last_run: last.map(run_json),
        name: &schedule.name,
        next_run: next.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)),
        project: schedule.project.to_string(),
        git_ref: &schedule.git_ref,
        timezone: schedule.timezone.name(),
        token: masked_token(schedule),
        token_expires_at: None,
        token_warning: None,
    }
}

impl ScheduleJson<'_> {
    /// With what the daemon's daily look found of the trigger token (schedules with an `api_token`).
    pub fn with_token_note(mut self, note: Option<&TokenNote>) -> Self {
        if let Some(note) = note {
            self.token_expires_at = note.expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
            self.token_warning = note.warning.clone();
        }
        self
    }
}

/// The token as shown in a table: masked, with its expiry if known, and a mark if it needs attention.
pub fn token_cell(schedule: &Schedule, note: Option<&TokenNote>) -> String {
    let mut cell = masked_token(schedule);
    if let Some(expires) = note.and_then(|n| n.expires_at) {
        cell.push_str(&format!(" expires {}", expires.format("%Y-%m-%d")));
    }
    if note.is_some_and(|n| n.warning.is_some()) {
        cell.push_str(" (!)");
    }
    cell
}

/// A schedule as JSON. The fields are in the order of their names, as they have always been printed; a struct,
/// not a `serde_json::Value`, so that 100,000 of them are written without a map each.
#[derive(Debug, serde::Serialize)]
pub struct ScheduleJson<'a> {
    cron: &'a str,
    description: Option<&'a str>,
    enabled: bool,
    last_run: Option<RunJson<'a>>,
    name: &'a str,
    next_run: Option<String>,
    project: String,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    timezone: &'a str,
    token: String,
    /// When the trigger token expires, as the daemon last found.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_expires_at: Option<String>,
    /// What needs doing about the trigger token (expiring, owner blocked or gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    token_warning: Option<String>,
}

/// The token as GitLab's triggers page shows it: at most 4 characters after `glptt-`. The configuration was loaded
/// without secrets, so look the token up here, and say where it should come from if it cannot be found.
pub fn masked_token(schedule: &Schedule) -> String {
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

/// A run as `history --json` shows it.
pub fn run_json(run: &Run) -> RunJson<'_> {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    RunJson {
        attempts: run.attempts,
        error: run.error.as_deref(),
        finished_at: time(run.finished_at),
        http_status: run.http_status,
        owner: run.owner.as_deref().map(owner_name),
        pipeline: run.pipeline.as_ref(),
        reason: run.reason.as_str(),
        schedule: &run.schedule,
        slot: run.slot.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        started_at: time(run.started_at),
        state: run.state.as_str(),
    }
}

/// A run as JSON, its fields in the order of their names.
#[derive(Debug, serde::Serialize)]
pub struct RunJson<'a> {
    attempts: u32,
    error: Option<&'a str>,
    finished_at: Option<String>,
    http_status: Option<u16>,
    owner: Option<&'a str>,
    pipeline: Option<&'a crate::run::Pipeline>,
    reason: &'static str,
    schedule: &'a str,
    slot: String,
    started_at: Option<String>,
    state: &'static str,
}

/// `3m ago`, `2h ago`, `5d ago`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match now.signed_duration_since(then).to_std() {
        Ok(elapsed) => format!("{} ago", span(elapsed)),
        Err(_) => "just now".into(),
    }
}

/// `in 2h 15m`.
pub fn until(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match then.signed_duration_since(now).to_std() {
        Ok(left) => format!("in {}", span(left)),
        Err(_) => "now".into(),
    }
}

/// The two largest units of a duration: `45s`, `3m 20s`, `2h 15m`, `3d 4h`.
pub fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").expect("valid").with_timezone(&Utc);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("valid").with_timezone(&Utc);
        assert_eq!(ago(at("2026-11-24T11:59:15Z"), now), "45s ago");
        assert_eq!(ago(at("2026-11-24T09:45:00Z"), now), "2h 15m ago");
        assert_eq!(until(at("2026-11-27T16:00:00Z"), now), "in 3d 4h");
        assert_eq!(until(at("2026-11-24T11:00:00Z"), now), "now");
    }
}
