//! Trigger tokens that are about to stop working: one that expires soon, or whose owner was blocked or left the
//! project ("Trigger token is invalid because is not owned by any user"). GitLab stops such a schedule silently;
//! pipecron says so ahead, by `check --online` and, once a day, the daemon.
//!
//! The schedule's `api_token` lists the project's trigger tokens (`GET /projects/:id/triggers`, which needs the
//! Maintainer role). GitLab shows a token in full only to its creator, and to others its first 4 characters after
//! `glptt-`: a trigger is matched by those, and more than one match is ambiguous, and said so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api::GitlabApi;
use crate::schedule::Schedule;
use crate::store::{TokenNote, TokenNotes};

/// Warn this long before a token expires.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Pages of 100 triggers read at most: a project may hold 25,000.
const MAX_PAGES: u32 = 250;

/// A trigger token as GitLab lists it; unknown fields are ignored. GitLab sends the token in full to its creator,
/// so it is left out of the debug print.
#[derive(Clone, PartialEq, Deserialize)]
pub struct TriggerInfo {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub last_used: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub owner: Option<Owner>,
}

impl std::fmt::Debug for TriggerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerInfo")
            .field("token", &crate::secret::Secret::new(self.token.clone()))
            .field("description", &self.description)
            .field("last_used", &self.last_used)
            .field("expires_at", &self.expires_at)
            .field("owner", &self.owner)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Owner {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub state: String,
}

/// What was found of a schedule's trigger token.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The token, and whether its owner is still a member of the project (`None`: not known).
    Token(TriggerInfo, Option<bool>),
    /// No trigger of the project matches it: it was revoked, or belongs to another project.
    Missing,
    /// More than one trigger starts with the same 4 characters.
    Ambiguous(usize),
    /// GitLab did not say: no right to list triggers, or no answer.
    Unknown(String),
}

impl Found {
    /// What to warn of, at `now`: nothing when all is well.
    pub fn warnings(&self, now: DateTime<Utc>) -> Vec<String> {
        let (info, member) = match self {
            Found::Token(info, member) => (info, member),
            Found::Missing => {
                return vec![
                    "no trigger of the project matches the token: it was revoked, or is another project's".into(),
                ];
            }
            Found::Ambiguous(n) => {
                return vec![format!(
                    "{n} triggers of the project start with the token's 4 characters; cannot tell which"
                )];
            }
            Found::Unknown(_) => return Vec::new(),
        };
        let mut warnings = Vec::new();
        if let Some(expires) = info.expires_at {
            let left = (expires - now).to_std();
            match left {
                Err(_) => warnings.push(format!("the trigger token expired on {}", day(expires))),
                Ok(left) if left < EXPIRY_WARNING => warnings.push(format!(
                    "the trigger token expires on {} (in {}); create a new one and update the schedule",
                    day(expires),
                    crate::status::span(left)
                )),
                Ok(_) => {}
            }
        }
        match &info.owner {
            None => warnings.push(
                "the trigger token is not owned by any user (its owner was deleted): GitLab refuses it; take \
                 ownership of it, or create a new one"
                    .into(),
            ),
            Some(owner) if owner.state != "active" && !owner.state.is_empty() => warnings.push(format!(
                "the trigger token's owner {} is {}: GitLab refuses triggers of a blocked user",
                owner.username, owner.state
            )),
            Some(owner) if *member == Some(false) => warnings.push(format!(
                "the trigger token's owner {} is no longer a member of the project: GitLab refuses it",
                owner.username
            )),
            Some(_) => {}
        }
        warnings
    }

    /// One line of what is known: owner, last use, expiry.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self {
            Found::Token(info, _) => {
                let owner = info.owner.as_ref().map_or("no owner".to_string(), |o| format!("owned by {}", o.username));
                let used = info
                    .last_used
                    .map_or("never used".to_string(), |t| format!("last used {}", crate::status::ago(t, now)));
                let expires = info.expires_at.map_or("no expiry".to_string(), |t| format!("expires {}", day(t)));
                format!("{owner}, {used}, {expires}")
            }
            Found::Missing => "not found among the project's triggers".into(),
            Found::Ambiguous(n) => format!("{n} triggers match"),
            Found::Unknown(why) => format!("cannot look it up: {why}"),
        }
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Found::Token(info, _) => info.expires_at,
            _ => None,
        }
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The 4 characters GitLab shows of a trigger token to anyone but its creator.
fn shown(token: &str) -> String {
    token.strip_prefix("glptt-").unwrap_or(token).chars().take(4).collect()
}

impl GitlabApi {
    /// Looks the schedule's trigger token up among its project's triggers.
    pub async fn trigger_token(&self, schedule: &Schedule) -> Found {
        let Some(token) = schedule.token.as_ref() else { return Found::Unknown("the token is not loaded".into()) };
        let mut matches = Vec::new();
        for page in 1..=MAX_PAGES {
            let (triggers, more) = match self.triggers_page(schedule, page).await {
                Ok(found) => found,
                Err(why) => return Found::Unknown(why),
            };
            let wanted = shown(token.expose());
            // A token shown in full (to its creator) is compared whole; a masked one by its 4 characters.
            matches.extend(triggers.into_iter().filter(|t| match t.token.len() > 4 {
                true => t.token == token.expose(),
                false => t.token == wanted,
            }));
            if !more {
                break;
            }
        }
        match matches.len() {
            0 => Found::Missing,
            1 => {
                let info = matches.remove(0);
                let member = match &info.owner {
                    Some(owner) => self.is_member(schedule, owner.id).await,
                    None => None,
                };
                Found::Token(info, member)
            }
            n => Found::Ambiguous(n),
        }
    }
}

/// How often the daemon looks at the trigger tokens.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);
/// The first look, soon after start, out of start-up's way.
const FIRST: Duration = Duration::from_secs(5);

/// Looks at the trigger token of every schedule with an `api_token` soon after start and then once a day, logs a
/// warning for each token about to stop working, and notes what it found for `status`.
pub async fn watch<S: TokenNotes>(
    api: Arc<GitlabApi>,
    store: Arc<S>,
    schedules: watch::Receiver<Vec<Arc<Schedule>>>,
    stop: CancellationToken,
) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let followed: Vec<Arc<Schedule>> =
            schedules.borrow().iter().filter(|s| s.api_token.is_some()).cloned().collect();
        // Schedules sharing a project and a token share one look.
        let mut seen: HashMap<(String, String, String), Found> = HashMap::new();
        for schedule in followed {
            if stop.is_cancelled() {
                return;
            }
            let token = schedule.token.as_ref().map(|t| t.expose().to_string()).unwrap_or_default();
            let key = (schedule.gitlab.to_string(), schedule.project.to_string(), token);
            let found = match seen.get(&key) {
                Some(found) => found.clone(),
                None => api.trigger_token(&schedule).await,
            };
            note(&*store, &schedule, &found).await;
            seen.insert(key, found);
        }
        wait = EVERY;
    }
}

/// Logs what is wrong with the schedule's token, and notes what was found.
async fn note<S: TokenNotes>(store: &S, schedule: &Schedule, found: &Found) {
    let now = Utc::now();
    let warnings = found.warnings(now);
    for warning in &warnings {
        tracing::warn!(schedule = %schedule.name, warning, "the trigger token needs attention");
    }
    if let Found::Unknown(why) = found {
        // What an earlier look found still stands.
        tracing::warn!(schedule = %schedule.name, why, "cannot look the trigger token up");
        return;
    }
    let note = TokenNote {
        checked_at: now,
        expires_at: found.expires_at(),
        summary: found.describe(now),
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    };
    if let Err(error) = store.note_token(&schedule.name, &note).await {
        tracing::warn!(schedule = %schedule.name, %error, "cannot note what was found of the trigger token");
    }
}
