//! The daemon's HTTP server: health checks for orchestrators, the JSON API, the status page, Prometheus metrics
//! and an admin endpoint that fires a schedule now. It serves the daemon's live state (the schedules as loaded,
//! and what the store says), never a second copy that could drift.
//!
//! It is one of the daemon's peers: it serves until the daemon's token is cancelled. Loopback by default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events, Fired, Listener};
use crate::metrics::Metrics;
use crate::run::{Ending, Reason};
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::status::{run_json, schedule_json};
use crate::store::{Replica, Run, RunStore, Store};
use crate::trigger::{Overrides, Sender, TriggerRequest};

/// The longest the timer loop may go without waking before `/healthz` says it is stuck: it wakes at least once a
/// minute.
const STUCK_AFTER_MS: i64 = 90_000;
/// The most runs one page of `/runs` holds.
const MAX_RUNS: usize = 1000;
/// Runs on one page of a schedule's history.
const RUNS_PER_PAGE: usize = 50;
/// Fire times a schedule's page lists.
const NEXT_TIMES: usize = 10;

/// What the server reads: the daemon's live state.
#[derive(Clone)]
pub struct Live {
    pub store: Arc<Store>,
    /// The schedules as loaded, replaced on each successful reload.
    pub schedules: watch::Receiver<Vec<Arc<Schedule>>>,
    /// When the timer loop last woke, in milliseconds since the epoch.
    pub loop_woke: Arc<AtomicI64>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ConfigHealth>,
    /// The admin endpoint, when `PIPECRON_ADMIN_TOKEN` is set.
    pub admin: Option<Arc<Admin>>,
    /// The store, as shown: its password masked.
    pub state: String,
}

/// Whether the running configuration is the newest, and whether the scheduler's calls to the store work: a
/// listener of the reload and store events.
#[derive(Debug, Default)]
pub struct ConfigHealth {
    /// Why the last reload was refused, while the configuration running is an older one.
    reload_error: Mutex<Option<String>>,
    /// Why the scheduler's calls to the store fail (a full disk, say), while they do.
    store_error: Mutex<Option<String>>,
}

impl ConfigHealth {
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store_error(&self) -> Option<String> {
        self.store_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Listener for ConfigHealth {
    fn on(&self, event: &Event<'_>) {
        let (slot, error) = match event {
            Event::Reloaded => (&self.reload_error, None),
            Event::ReloadFailed { error } => (&self.reload_error, Some(error.to_string())),
            Event::Store { reason, .. } => (&self.store_error, reason.map(str::to_string)),
            _ => return,
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// What the admin endpoint fires with: the daemon's own trigger, replica and events, so that a run fired here is
/// claimed, recorded, counted and taken over like any other.
pub struct Admin {
    pub token: Secret,
    pub trigger: Arc<Sender>,
    pub replica: Arc<Replica>,
    pub events: Events,
}

/// Binds `addr`; the error names it. Port 0 picks a free port: the caller logs the address bound.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Serves until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, live: Live, stop: CancellationToken) {
    let app = router(live);
    let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
    if let Err(error) = served {
        tracing::error!(%error, "the HTTP server stopped");
    }
}

pub fn router(live: Live) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/", get(overview_page))
        .route("/schedules/{name}", get(schedule_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/schedules/{name}", get(schedule))
        .route("/api/v1/schedules/{name}/runs", get(runs));
    // Without a token, the admin endpoint does not exist: 404, as for any unknown path.
    if live.admin.is_some() {
        router = router.route("/api/v1/schedules/{name}/run", post(run_now));
    }
    router.with_state(live)
}

async fn healthz(State(live): State<Live>) -> Response {
    let since = Utc::now().timestamp_millis() - live.loop_woke.load(Ordering::Relaxed);
    match since < STUCK_AFTER_MS {
        true => (StatusCode::OK, "ok\n").into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, format!("the timer loop has not woken for {} s\n", since / 1000))
            .into_response(),
    }
}

/// Ready when a valid configuration runs and the store answers. A refused reload leaves the older, valid
/// configuration running: still ready, and the reason is said.
async fn readyz(State(live): State<Live>) -> Response {
    // A store that reads but cannot write (a full disk) is not ready either: the scheduler's writes fail.
    let store = live.store.live_replicas().await.map(drop).map_err(|e| e.to_string());
    if let Err(error) = store.and_then(|()| live.config.store_error().map_or(Ok(()), Err)) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {error}\n")).into_response();
    }
    match live.config.reload_error() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(error) => {
            let note = format!("ready\nthe last reload was refused; the configuration before it runs: {error}\n");
            (StatusCode::OK, note).into_response()
        }
    }
}

/// Rendered off the runtime's workers: with 100,000 schedules it is a few megabytes of text.
async fn metrics(State(live): State<Live>) -> Response {
    let metrics = live.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => unavailable(&error.to_string()),
    }
}

async fn last_runs(live: &Live) -> Result<HashMap<String, Run>, Response> {
    match live.store.last_runs().await {
        Ok(runs) => Ok(runs.into_iter().map(|r| (r.schedule.clone(), r)).collect()),
        Err(error) => Err(unavailable(&error.to_string())),
    }
}

async fn schedules(State(live): State<Live>) -> Response {
    let last = match last_runs(&live).await {
        Ok(last) => last,
        Err(response) => return response,
    };
    let now = Utc::now();
    let schedules = live.schedules.borrow().clone();
    let tokens = token_notes(&live).await;
    let rows: Vec<_> = schedules
        .iter()
        .map(|s| schedule_json(s, last.get(&*s.name), now).with_token_note(tokens.get(&*s.name)))
        .collect();
    Json(rows).into_response()
}

async fn schedule(State(live): State<Live>, Path(name): Path<String>) -> Response {
    let Some(found) = find(&live, &name) else { return not_found(&name) };
    let last = match live.store.history(Some(&name), 1).await {
        Ok(runs) => runs.into_iter().next(),
        Err(error) => return unavailable(&error.to_string()),
    };
    let tokens = token_notes(&live).await;
    Json(schedule_json(&found, last.as_ref(), Utc::now()).with_token_note(tokens.get(&name))).into_response()
}

#[derive(serde::Deserialize)]
struct Page {
    limit: Option<usize>,
    /// A slot, as the runs show it: the page holds the runs before it.
    before: Option<String>,
}

async fn runs(State(live): State<Live>, Path(name): Path<String>, Query(page): Query<Page>) -> Response {
    if find(&live, &name).is_none() {
        return not_found(&name);
    }
    let before = match page.before.as_deref().map(DateTime::parse_from_rfc3339).transpose() {
        Ok(before) => before.map(|t| t.to_utc()),
        Err(_) => {
            let hint = "before= takes a slot as the runs show it, such as 2026-11-24T00:30:00Z";
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": hint }))).into_response();
        }
    };
    let limit = page.limit.unwrap_or(20).clamp(1, MAX_RUNS);
    match live.store.runs_before(&name, before, limit).await {
        Ok(runs) => Json(runs.iter().map(run_json).collect::<Vec<_>>()).into_response(),
        Err(error) => unavailable(&error.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct OverviewQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

/// What every page says at the top: the store's and the configuration's health.
async fn header(live: &Live) -> crate::page::Header {
    crate::page::Header {
        version: env!("CARGO_PKG_VERSION"),
        store: live
            .store
            .live_replicas()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
            .and_then(|()| live.config.store_error().map_or(Ok(()), Err)),
        reload_error: live.config.reload_error(),
        state: live.state.clone(),
        now: Utc::now(),
    }
}

/// The status page: one page of the schedules that match `q`, with each one's last run (one indexed query per
/// row, so that a page costs the same with 10 schedules or 100,000).
async fn overview_page(State(live): State<Live>, Query(query): Query<OverviewQuery>) -> Response {
    let mut header = header(&live).await;
    let schedules = live.schedules.borrow().clone();
    let matched = crate::page::filter(&schedules, &query.q);
    let pages = matched.len().div_ceil(crate::page::PER_PAGE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let shown: Vec<&Arc<Schedule>> =
        matched.iter().skip((page - 1) * crate::page::PER_PAGE).take(crate::page::PER_PAGE).copied().collect();
    let mut last = Vec::with_capacity(shown.len());
    for schedule in &shown {
        let run = match header.store {
            Ok(()) => match live.store.history(Some(&schedule.name), 1).await {
                Ok(runs) => runs.into_iter().next(),
                // A row the store cannot read is said at the top, not shown as no history.
                Err(error) => {
                    header.store = Err(error.to_string());
                    None
                }
            },
            Err(_) => None,
        };
        last.push(run);
    }
    let tokens = token_notes(&live).await;
    let rows: Vec<crate::page::Row> = shown
        .iter()
        .zip(&last)
        .map(|(schedule, last)| crate::page::Row {
            schedule,
            last: last.as_ref(),
            next: schedule.enabled.then(|| schedule.next_after(header.now)).flatten(),
            token: tokens.get(&*schedule.name),
        })
        .collect();
    let listing =
        crate::page::Listing { q: query.q.clone(), page, pages, matched: matched.len(), total: schedules.len() };
    Html(crate::page::overview(&header, &rows, &listing).into_string()).into_response()
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    before: Option<String>,
}

/// One schedule's page: settings, next fire times, and a page of its history.
async fn schedule_page(
    State(live): State<Live>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let mut header = header(&live).await;
    let Some(schedule) = find(&live, &name) else {
        let page = crate::page::not_found(&header, &name);
        return (StatusCode::NOT_FOUND, Html(page.into_string())).into_response();
    };
    // A cursor that does not parse shows the first page.
    let before = query.before.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
    let mut runs = match live.store.runs_before(&name, before, RUNS_PER_PAGE + 1).await {
        Ok(runs) => runs,
        Err(error) => {
            header.store = Err(error.to_string());
            Vec::new()
        }
    };
    let older = (runs.len() > RUNS_PER_PAGE).then(|| runs[RUNS_PER_PAGE - 1].slot);
    runs.truncate(RUNS_PER_PAGE);
    let next: Vec<_> = match schedule.enabled {
        true => schedule.cron.iter_after(schedule.timezone, header.now).take(NEXT_TIMES).collect(),
        false => Vec::new(),
    };
    let last = if before.is_none() { runs.first() } else { None };
    let tokens = token_notes(&live).await;
    let row = crate::page::Row { schedule: &schedule, last, next: next.first().copied(), token: tokens.get(&name) };
    Html(crate::page::schedule(&header, &row, &next, &runs, before, older).into_string()).into_response()
}

/// What the daemon found of each schedule's trigger token; none if the store cannot say (the runs' reads report
/// the store's trouble).
async fn token_notes(live: &Live) -> std::collections::HashMap<String, crate::store::TokenNote> {
    use crate::store::TokenNotes;
    live.store.token_notes().await.unwrap_or_default()
}

fn find(live: &Live, name: &str) -> Option<Arc<Schedule>> {
    live.schedules.borrow().iter().find(|s| &*s.name == name).cloned()
}

fn not_found(name: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no schedule named '{name}'") }))).into_response()
}

fn unavailable(error: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error }))).into_response()
}

/// The admin endpoint's optional body: the ref and variables to fire with, as `run-now --ref --var`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunNowBody {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    variables: std::collections::BTreeMap<String, String>,
}

/// `POST /api/v1/schedules/{name}/run`: fires the schedule now, like `run-now`. 201 with the run; 422 when GitLab
/// refused it, 502 when every attempt failed, 504 when no answer came (a pipeline may exist).
async fn run_now(State(live): State<Live>, Path(name): Path<String>, headers: HeaderMap, body: String) -> Response {
    let Some(admin) = live.admin.clone() else { return StatusCode::NOT_FOUND.into_response() };
    if !authorized(&headers, &admin.token) {
        let hint = "send Authorization: Bearer <PIPECRON_ADMIN_TOKEN>";
        return ([(header::WWW_AUTHENTICATE, "Bearer")], error(StatusCode::UNAUTHORIZED, hint)).into_response();
    }
    let Some(schedule) = find(&live, &name) else { return not_found(&name) };
    let body: RunNowBody = match body.trim() {
        "" => RunNowBody::default(),
        text => match serde_json::from_str(text) {
            Ok(body) => body,
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, &format!("the body is not {{\"ref\", \"variables\"}}: {e}"));
            }
        },
    };
    if let Some(Err(problem)) = body.variables.keys().map(|k| crate::run_now::check_variable(k)).find(Result::is_err) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &problem);
    }
    let overrides = Overrides { git_ref: body.git_ref, variables: body.variables };
    let slot = crate::run_now::slot_now();
    let request = match TriggerRequest::new(&schedule, slot, Reason::RunNow, &overrides) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    admin.events.publish(Event::Sending { request: &request });
    let fired = crate::run_now::claim_and_fire(
        &*live.store,
        &admin.replica,
        &*admin.trigger,
        &schedule,
        &request,
        slot,
        |attempt, error, wait| {
            admin.events.publish(Event::Retrying { schedule: &name, slot, attempt, error, wait });
        },
    )
    .await;
    let done = match fired {
        Ok(done) => done,
        Err(crate::run_now::Error::AlreadyClaimed { .. }) => {
            return error(StatusCode::CONFLICT, "that slot is already claimed; try again");
        }
        Err(crate::run_now::Error::Store(e)) => return unavailable(&e.to_string()),
    };
    let result = done.result;
    let fired = Fired { schedule: name.clone(), slot, reason: Reason::RunNow, result, lateness_ms: 0 };
    admin.events.publish(Event::Finished(&fired));
    let status = match fired.result.ending {
        Ending::Succeeded => StatusCode::CREATED,
        Ending::Failed if fired.result.retries_exhausted => StatusCode::BAD_GATEWAY,
        Ending::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        // GitLab answered 201 with something that is not a pipeline: an answer, but not a valid one.
        Ending::Unknown if fired.result.http_status == Some(201) => StatusCode::BAD_GATEWAY,
        Ending::Unknown => StatusCode::GATEWAY_TIMEOUT,
        // A run-now is never skipped: overlap rules apply to slots.
        Ending::Skipped => StatusCode::CONFLICT,
    };
    match live.store.runs_before(&name, Some(slot + chrono::Duration::milliseconds(1)), 1).await {
        Ok(runs) if runs.first().is_some_and(|r| r.slot == slot) => (status, Json(run_json(&runs[0]))).into_response(),
        _ => (status, Json(json!({ "schedule": name, "error": fired.result.error }))).into_response(),
    }
}

/// The bearer token, compared in constant time: how long the comparison takes says nothing of how much matched.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some(given) = given.strip_prefix("Bearer ") else { return false };
    bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes()))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
