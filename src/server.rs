//! The daemon's HTTP server: health checks for orchestrators and the JSON API, from the daemon's live state (the
//! schedules as loaded, and what the store says), never from a second copy that could drift.
//!
//! It is one of the daemon's peers: it serves until the daemon's token is cancelled. Loopback by default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::schedule::Schedule;
use crate::status::{run_json, schedule_json};
use crate::store::{Run, RunStore, Store};

/// The longest the timer loop may go without waking before `/healthz` says it is stuck: it wakes at least once a
/// minute.
const STUCK_AFTER_MS: i64 = 90_000;
/// The most runs one page of `/runs` holds.
const MAX_RUNS: usize = 1000;

/// What the server reads: the daemon's live state.
#[derive(Clone)]
pub struct Live {
    pub store: Arc<Store>,
    /// The schedules as loaded, replaced on each successful reload.
    pub schedules: watch::Receiver<Vec<Arc<Schedule>>>,
    /// When the timer loop last woke, in milliseconds since the epoch.
    pub loop_woke: Arc<AtomicI64>,
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
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/schedules/{name}", get(schedule))
        .route("/api/v1/schedules/{name}/runs", get(runs))
        .with_state(live)
}

async fn healthz(State(live): State<Live>) -> Response {
    let since = Utc::now().timestamp_millis() - live.loop_woke.load(Ordering::Relaxed);
    match since < STUCK_AFTER_MS {
        true => (StatusCode::OK, "ok\n").into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, format!("the timer loop has not woken for {} s\n", since / 1000))
            .into_response(),
    }
}

async fn readyz(State(live): State<Live>) -> Response {
    match live.store.live_replicas().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {error}\n")).into_response(),
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
    let rows: Vec<_> = live.schedules.borrow().iter().map(|s| schedule_json(s, last.get(&*s.name), now)).collect();
    Json(rows).into_response()
}

async fn schedule(State(live): State<Live>, Path(name): Path<String>) -> Response {
    let Some(found) = find(&live, &name) else { return not_found(&name) };
    let last = match live.store.history(Some(&name), 1).await {
        Ok(runs) => runs.into_iter().next(),
        Err(error) => return unavailable(&error.to_string()),
    };
    Json(schedule_json(&found, last.as_ref(), Utc::now())).into_response()
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

fn find(live: &Live, name: &str) -> Option<Arc<Schedule>> {
    live.schedules.borrow().iter().find(|s| &*s.name == name).cloned()
}

fn not_found(name: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no schedule named '{name}'") }))).into_response()
}

fn unavailable(error: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error }))).into_response()
}
