//! Notices to webhooks (`notify`): once when a schedule starts failing, once when it recovers.
//!
//! The daemon's events are heard by `Heard`, which passes on, without waiting, what happened to a schedule that has
//! webhooks: a fire succeeded or failed (failed, unknown, skipped), slots were missed, a followed pipeline passed or
//! failed (or timed out). The notifier task records the change in the store (see `store::Notices`), and only a
//! change is told: "failing since 03:00", then "recovered". Sending never holds up a fire: a full queue drops the
//! news with a warning, and each webhook is tried three times at most. A notice never holds a token; a webhook's
//! URL is never logged beyond its host.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Listener};
use crate::run::{Ending, Followed, Pipeline};
use crate::schedule::{NoticeFormat, Outcome, Schedule, Webhook};
use crate::store::Notices;

/// News waiting to be handled, at most: a burst of failures past this is dropped (and said so), never waited on.
const QUEUE: usize = 10_000;
/// Webhook requests under way at once.
const SENDING: usize = 4;
/// How long one webhook request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of one notice to one webhook, with a wait of 2 s, then 10 s, between them.
const WAITS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];

/// Which of a schedule's outcomes it is: its fires, or its pipelines. Each track fails and recovers on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Fires,
    Pipelines,
}

impl Track {
    fn as_str(self) -> &'static str {
        match self {
            Track::Fires => "fires",
            Track::Pipelines => "pipelines",
        }
    }
}

/// Something that happened to a schedule with webhooks.
#[derive(Debug, Clone)]
pub struct News {
    pub schedule: String,
    pub track: Track,
    /// `None`: it went well.
    pub bad: Option<Outcome>,
    pub slot: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// The error, or what the pipeline did.
    pub detail: Option<String>,
    pub pipeline: Option<Pipeline>,
}

/// Hears the daemon's events and queues the news of schedules that have webhooks.
pub struct Heard {
    queue: mpsc::Sender<News>,
    /// The names of the schedules with webhooks, as last loaded.
    notified: Mutex<HashSet<Arc<str>>>,
}

impl Heard {
    pub fn new(queue: mpsc::Sender<News>) -> Heard {
        Heard { queue, notified: Mutex::default() }
    }

    fn wanted(&self, schedule: &str) -> bool {
        self.notified.lock().unwrap_or_else(|p| p.into_inner()).contains(schedule)
    }

    fn pass_on(&self, news: News) {
        if let Err(mpsc::error::TrySendError::Full(news)) = self.queue.try_send(news) {
            tracing::warn!(schedule = news.schedule, "too many notices waiting; this one is dropped");
        }
    }
}

impl Listener for Heard {
    fn on(&self, event: &Event<'_>) {
        // Every fire passes here: the schedule is looked up before any news is made of it.
        let schedule = match event {
            Event::Loaded { schedules } => {
                let names = schedules.iter().filter(|s| !s.notify.is_empty()).map(|s| s.name.clone()).collect();
                *self.notified.lock().unwrap_or_else(|p| p.into_inner()) = names;
                return;
            }
            Event::Finished(fired) => fired.schedule.as_str(),
            Event::Missed { schedule, .. } => schedule,
            Event::PipelineEnded(ended) => ended.schedule.as_str(),
            _ => return,
        };
        if !self.wanted(schedule) {
            return;
        }
        let news = match event {
            Event::Finished(fired) => {
                let bad = match fired.result.ending {
                    Ending::Succeeded => None,
                    Ending::Failed => Some(Outcome::Failed),
                    Ending::Unknown => Some(Outcome::Unknown),
                    Ending::Skipped => Some(Outcome::Skipped),
                };
                News {
                    schedule: fired.schedule.clone(),
                    track: Track::Fires,
                    bad,
                    slot: Some(fired.slot),
                    at: Utc::now(),
                    detail: fired.result.error.clone(),
                    pipeline: fired.result.pipeline.clone().filter(|_| bad.is_none()),
                }
            }
            Event::Missed { schedule, slots } => News {
                schedule: schedule.to_string(),
                track: Track::Fires,
                bad: Some(Outcome::Missed),
                slot: None,
                at: Utc::now(),
                detail: Some(format!("{slots} slot(s) missed: pipecron was down past catch_up, or the clock jumped")),
                pipeline: None,
            },
            Event::PipelineEnded(ended) => {
                let pipeline = &ended.pipeline;
                let bad = match (pipeline.followed, pipeline.status.as_str()) {
                    (Some(Followed::Ended), "success") => None,
                    (Some(Followed::Ended), "failed") => Some(Outcome::PipelineFailed),
                    (Some(Followed::TimedOut), _) => Some(Outcome::PipelineTimedOut),
                    // Cancelled, skipped, waiting for a person, or not followed to its end: neither passed nor failed.
                    _ => return,
                };
                News {
                    schedule: ended.schedule.clone(),
                    track: Track::Pipelines,
                    bad,
                    slot: Some(ended.slot),
                    at: Utc::now(),
                    detail: pipeline.note.clone(),
                    pipeline: Some(pipeline.clone()),
                }
            }
            _ => return,
        };
        self.pass_on(news);
    }
}

/// The notifier, a peer of the scheduler in the daemon.
pub struct Notifier<S> {
    pub store: Arc<S>,
    pub client: reqwest::Client,
    pub news: mpsc::Receiver<News>,
    pub schedules: watch::Receiver<Vec<Arc<Schedule>>>,
}

/// A new queue for `Heard` and `Notifier`.
pub fn queue() -> (mpsc::Sender<News>, mpsc::Receiver<News>) {
    mpsc::channel(QUEUE)
}

impl<S: Notices + 'static> Notifier<S> {
    /// Handles news until `stop`; notices under way are let finish for a few seconds.
    pub async fn run(mut self, stop: CancellationToken) {
        let sending = Arc::new(Semaphore::new(SENDING));
        let mut by_name: HashMap<Arc<str>, Arc<Schedule>> = HashMap::new();
        loop {
            let news = tokio::select! {
                _ = stop.cancelled() => break,
                news = self.news.recv() => match news {
                    Some(news) => news,
                    None => break,
                },
            };
            if self.schedules.has_changed().unwrap_or(true) || by_name.is_empty() {
                let schedules = self.schedules.borrow_and_update();
                by_name =
                    schedules.iter().filter(|s| !s.notify.is_empty()).map(|s| (s.name.clone(), s.clone())).collect();
            }
            let Some(schedule) = by_name.get(news.schedule.as_str()).cloned() else { continue };
            let Some(notice) = self.change(&schedule, news).await else { continue };
            for hook in schedule.notify.iter().filter(|hook| hook.on.contains(&notice.outcome)) {
                let permit = tokio::select! {
                    _ = stop.cancelled() => None,
                    permit = sending.clone().acquire_owned() => permit.ok(),
                };
                let (client, hook, notice) = (self.client.clone(), hook.clone(), notice.clone());
                tokio::spawn(async move {
                    send(&client, &hook, &notice).await;
                    drop(permit);
                });
            }
        }
        // What the last fires told is recorded and sent before the daemon stops, for a few seconds at most.
        let drain = async {
            while let Ok(news) = self.news.try_recv() {
                let Some(schedule) = by_name.get(news.schedule.as_str()).cloned() else { continue };
                if let Some(notice) = self.change(&schedule, news).await {
                    for hook in schedule.notify.iter().filter(|hook| hook.on.contains(&notice.outcome)) {
                        send(&self.client, hook, &notice).await;
                    }
                }
            }
            let _ = sending.acquire_many(SENDING as u32).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    /// The notice this news makes, if it changes the schedule's state.
    async fn change(&self, schedule: &Schedule, news: News) -> Option<Notice> {
        let track = news.track.as_str();
        let when = news.slot.unwrap_or(news.at);
        let changed = match news.bad {
            // An outcome no webhook of the schedule is told of changes nothing: it must not hide one that is.
            Some(outcome) if !schedule.notify.iter().any(|hook| hook.on.contains(&outcome)) => None,
            Some(outcome) => {
                let failing = retried(|| self.store.start_failing(&schedule.name, track, outcome.as_str(), when));
                match failing.await {
                    Ok(true) => Some((outcome, when, false)),
                    Ok(false) => None,
                    Err(error) => {
                        tracing::warn!(schedule = %schedule.name, %error, "cannot record a failure for its notices");
                        None
                    }
                }
            }
            // A success of a slot before the failure does not end it: its news may arrive late.
            None => match retried(|| self.store.recover(&schedule.name, track, when)).await {
                Ok(Some((outcome, since))) => Outcome::parse(&outcome).map(|o| (o, since, true)),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(schedule = %schedule.name, %error, "cannot record a recovery for its notices");
                    None
                }
            },
        };
        let (outcome, since, recovered) = changed?;
        Some(Notice {
            schedule: schedule.name.to_string(),
            project: schedule.project.to_string(),
            git_ref: schedule.git_ref.to_string(),
            outcome,
            since,
            recovered,
            news,
        })
    }
}

/// Calls the store up to three times, a second apart: a lost change would leave a schedule "failing", hiding the
/// next real failure.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, crate::store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(_) if tries < 2 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            answer => return answer,
        }
    }
}

/// A change to tell.
#[derive(Debug, Clone)]
pub struct Notice {
    pub schedule: String,
    pub project: String,
    pub git_ref: String,
    /// What it failed of (for a recovery: what it had failed of).
    pub outcome: Outcome,
    pub since: DateTime<Utc>,
    pub recovered: bool,
    pub news: News,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Notice {
    /// One line, as a person reads it in a chat.
    pub fn text(&self) -> String {
        let Notice { schedule, project, git_ref, outcome, since, recovered, news } = self;
        let what = match news.track {
            Track::Fires => "its triggers",
            Track::Pipelines => "its pipelines",
        };
        let pipeline = news.pipeline.as_ref().map(|p| {
            let url = p.web_url.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            format!(" {}{url}", p.badge())
        });
        let text = match recovered {
            true => format!(
                "pipecron: schedule {schedule} ({project} on {git_ref}) recovered: {what} are fine again at {} after \
                 failing since {} ({}).{}",
                time(news.at),
                time(*since),
                outcome.as_str(),
                pipeline.unwrap_or_default()
            ),
            false => format!(
                "pipecron: schedule {schedule} ({project} on {git_ref}) is failing since {}: {}{}{}",
                time(*since),
                outcome.as_str(),
                news.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
                pipeline.unwrap_or_default()
            ),
        };
        crate::secret::mask_tokens(&text).into_owned()
    }

    /// Every field, for a receiver of one's own.
    pub fn json(&self) -> serde_json::Value {
        let news = &self.news;
        let detail = news.detail.as_deref().map(|d| crate::secret::mask_tokens(d).into_owned());
        json!({
            "schedule": self.schedule,
            "project": self.project,
            "ref": self.git_ref,
            "event": if self.recovered { "recovered" } else { "failing" },
            "track": news.track.as_str(),
            "outcome": self.outcome.as_str(),
            "since": time(self.since),
            "at": time(news.at),
            "slot": news.slot.map(time),
            "detail": detail,
            "pipeline": news.pipeline,
            "text": self.text(),
        })
    }

    fn body(&self, format: NoticeFormat) -> serde_json::Value {
        match format {
            NoticeFormat::Text => json!({ "text": self.text() }),
            NoticeFormat::Json => self.json(),
        }
    }
}

/// Posts the notice, retrying what may pass: a network error, 429 or a 5xx.
async fn send(client: &reqwest::Client, hook: &Webhook, notice: &Notice) {
    let Some(url) = &hook.url else { return };
    let body = notice.body(hook.format);
    for wait in WAITS.iter().map(Some).chain([None]) {
        let request =
            client.post(url.expose()).timeout(TIMEOUT).header(reqwest::header::CONTENT_TYPE, "application/json");
        let sent = request.body(body.to_string()).send().await;
        let why = match sent {
            Ok(answer) if answer.status().is_success() => {
                tracing::info!(schedule = notice.schedule, webhook = %hook.shown, recovered = notice.recovered, "notice sent");
                return;
            }
            Ok(answer) => {
                let status = answer.status().as_u16();
                if !(status == 429 || status >= 500) {
                    tracing::warn!(schedule = notice.schedule, webhook = %hook.shown, status, "the webhook refused the notice");
                    return;
                }
                format!("it answered {status}")
            }
            Err(error) => crate::trigger::client::root_cause(&error),
        };
        let Some(wait) = wait else {
            tracing::warn!(schedule = notice.schedule, webhook = %hook.shown, why, "cannot send the notice; giving up");
            return;
        };
        tokio::time::sleep(*wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PipelineEnded;

    fn heard_of(event: Event<'_>) -> Option<News> {
        let (queue, mut news) = queue();
        let heard = Heard::new(queue);
        heard.notified.lock().unwrap_or_else(|p| p.into_inner()).insert("nightly".into());
        heard.on(&event);
        news.try_recv().ok()
    }

    fn ended(status: &str, followed: Followed) -> PipelineEnded {
        let mut pipeline = Pipeline::created(1001, None, status, None);
        pipeline.followed = Some(followed);
        PipelineEnded { schedule: "nightly".into(), slot: Utc::now(), pipeline }
    }

    #[test]
    fn pipelines_are_news_on_their_own_track_and_only_when_they_pass_or_fail() {
        let failed = heard_of(Event::PipelineEnded(&ended("failed", Followed::Ended))).expect("news");
        assert_eq!((failed.track, failed.bad), (Track::Pipelines, Some(Outcome::PipelineFailed)));
        let passed = heard_of(Event::PipelineEnded(&ended("success", Followed::Ended))).expect("news");
        assert_eq!((passed.track, passed.bad), (Track::Pipelines, None));
        let timed_out = heard_of(Event::PipelineEnded(&ended("running", Followed::TimedOut))).expect("news");
        assert_eq!(timed_out.bad, Some(Outcome::PipelineTimedOut));
        for (status, followed) in
            [("canceled", Followed::Ended), ("manual", Followed::Ended), ("created", Followed::Refused)]
        {
            assert!(heard_of(Event::PipelineEnded(&ended(status, followed))).is_none(), "{status}");
        }
        let missed = heard_of(Event::Missed { schedule: "nightly", slots: 3 }).expect("news");
        assert_eq!((missed.track, missed.bad), (Track::Fires, Some(Outcome::Missed)));
        assert!(heard_of(Event::Missed { schedule: "other", slots: 3 }).is_none(), "a schedule without webhooks");
    }

    fn news(bad: Option<Outcome>, slot: &str) -> News {
        let slot = DateTime::parse_from_rfc3339(slot).expect("a time").to_utc();
        News {
            schedule: "nightly".into(),
            track: Track::Fires,
            bad,
            slot: Some(slot),
            at: slot,
            detail: None,
            pipeline: None,
        }
    }

    /// An outcome no webhook is told of changes nothing, so it cannot hide one that is told; an older slot's
    /// success arriving late does not end a newer failure.
    #[tokio::test]
    async fn only_the_outcomes_a_webhook_wants_change_the_state() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir(dir.path().join("schedules")).expect("creates");
        let yaml = "schedules:\n  nightly:\n    cron: \"30 0 * * *\"\n    gitlab: https://gitlab.example.com\n    \
                    project: 9\n    ref: main\n    token: ${TOKEN}\n    notify:\n      - url: https://chat.example.com/h\n        \
                    on: [failed]\n";
        std::fs::write(dir.path().join("schedules/s.yaml"), yaml).expect("writes");
        let env = |_: &str| Some("glptt-0123456789abcdef0123".to_string());
        let loaded = crate::config::load(&dir.path().join("schedules"), Some(&env));
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let schedule = loaded.schedules[0].clone();
        let location = crate::store::StateLocation::Sqlite(dir.path().join("state.db"));
        let store = Arc::new(crate::store::open(&location).await.expect("opens"));
        let (_, receiver) = queue();
        let (_, schedules) = watch::channel(Vec::new());
        let notifier = Notifier { store, client: reqwest::Client::new(), news: receiver, schedules };

        let skipped = notifier.change(&schedule, news(Some(Outcome::Skipped), "2026-12-07T00:30:00Z")).await;
        assert!(skipped.is_none(), "no webhook is told of skipped slots");
        let failed = notifier.change(&schedule, news(Some(Outcome::Failed), "2026-12-08T00:30:00Z")).await;
        let failed = failed.expect("a failure is told");
        assert_eq!((failed.outcome, failed.recovered), (Outcome::Failed, false));
        assert!(notifier.change(&schedule, news(Some(Outcome::Failed), "2026-12-09T00:30:00Z")).await.is_none());
        assert!(notifier.change(&schedule, news(None, "2026-12-07T00:30:00Z")).await.is_none(), "an older success");
        let recovered = notifier.change(&schedule, news(None, "2026-12-10T00:30:00Z")).await.expect("told");
        assert!(recovered.recovered && recovered.text().contains("recovered"), "{}", recovered.text());
    }

    #[test]
    fn a_notice_masks_anything_shaped_like_a_token() {
        let news = News {
            schedule: "nightly".into(),
            track: Track::Fires,
            bad: Some(Outcome::Failed),
            slot: None,
            at: Utc::now(),
            detail: Some("a proxy echoed glptt-0123456789abcdef0123 back".into()),
            pipeline: None,
        };
        let notice = Notice {
            schedule: "nightly".into(),
            project: "9".into(),
            git_ref: "main".into(),
            outcome: Outcome::Failed,
            since: Utc::now(),
            recovered: false,
            news,
        };
        let json = notice.json().to_string();
        assert!(!json.contains("0123456789abcdef") && json.contains("glptt-0123…"), "{json}");
        assert!(notice.text().contains("is failing since"), "{}", notice.text());
    }
}
