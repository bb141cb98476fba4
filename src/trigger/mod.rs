//! Firing GitLab's trigger API: one request (`request`), what GitLab's answer means (`outcome`), the HTTP client
//! (`client`), and the retries around it (`fire`).
//!
//! `Trigger` is the seam: the real `GitlabClient` sends over HTTP, tests and `--dry-run` put something else there,
//! and everything above it (run-now, the daemon) only sees a `RunResult`.

pub mod client;
pub mod outcome;
pub mod request;

use std::future::Future;
use std::time::Duration;

pub use crate::run::{Ending, Pipeline, Reason, RunResult};
pub use client::GitlabClient;
pub use outcome::Attempt;
pub use request::{Body, Overrides, TriggerRequest};

/// Sends one trigger request, once.
pub trait Trigger: Send + Sync {
    fn send(&self, request: &TriggerRequest) -> impl Future<Output = Attempt> + Send;
}

/// What the daemon sends with: GitLab, or, for a dry run, nothing at all.
pub enum Sender {
    Gitlab(GitlabClient),
    /// Sends nothing and answers at once, as if GitLab had created pipeline 0; the dry run's printout is a
    /// listener of the `Sending` event.
    DryRun,
}

impl Trigger for Sender {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        match self {
            Sender::Gitlab(client) => client.send(request).await,
            Sender::DryRun => Attempt::Created(Pipeline { id: 0, iid: None, status: "dry-run".into(), web_url: None }),
        }
    }
}

/// The longest wait a Retry-After can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Exponential backoff with full jitter: before retry n (from 0), a random wait in `[0, min(cap, base·2ⁿ)]`, but
/// at least what GitLab asked for.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

impl Backoff {
    fn wait(&self, retry: u32, at_least: Option<Duration>) -> Duration {
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(retry)).min(self.cap);
        let jittered = ceiling.mul_f64(rand::random::<f64>());
        // A Retry-After is honoured, up to an hour: a place in the pool is held meanwhile, and an absurd one (a
        // proxy's, or an attacker's) must not hold it for ever.
        jittered.max(at_least.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
    }
}

/// Sends `request`, retrying transient failures up to `retries` times. `on_retry` hears of each wait, for logs.
pub async fn fire<T: Trigger>(
    trigger: &T,
    request: &TriggerRequest,
    retries: u32,
    backoff: Backoff,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> RunResult {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match trigger.send(request).await {
            Attempt::Created(pipeline) => {
                return RunResult {
                    ending: Ending::Succeeded,
                    attempts,
                    http_status: Some(201),
                    pipeline: Some(pipeline),
                    error: None,
                    retries_exhausted: false,
                };
            }
            Attempt::Permanent { http_status, message, pipeline } => {
                return RunResult {
                    ending: Ending::Failed,
                    attempts,
                    http_status,
                    pipeline,
                    error: Some(scrub(&message, request)),
                    retries_exhausted: false,
                };
            }
            Attempt::Transient { http_status, message, wait, maybe_sent } => {
                let message = scrub(&message, request);
                if attempts > retries {
                    return RunResult {
                        ending: if maybe_sent && http_status.is_none() { Ending::Unknown } else { Ending::Failed },
                        attempts,
                        http_status,
                        pipeline: None,
                        error: Some(match attempts {
                            1 => message,
                            _ => format!("{message} (gave up after {attempts} attempts)"),
                        }),
                        retries_exhausted: true,
                    };
                }
                let delay = backoff.wait(attempts - 1, wait);
                on_retry(attempts, &message, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Belt and braces: no message leaves this module with the token in it, whatever a proxy echoed back.
fn scrub(message: &str, request: &TriggerRequest) -> String {
    let token = request.token.expose();
    if token.is_empty() {
        return message.to_string();
    }
    let masked = request.token.masked();
    let whole = message.replace(token, &masked);
    // A body cut short ("…") may end in the first part of the token.
    if let Some(cut) = whole.strip_suffix('…') {
        for len in (4..token.len()).rev().filter(|len| token.is_char_boundary(*len)) {
            if let Some(before) = cut.strip_suffix(&token[..len]) {
                return format!("{before}{masked}");
            }
        }
    }
    whole
}

#[cfg(test)]
mod tests;
