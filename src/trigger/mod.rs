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
    /// Shared with the follower and the notifier: each client it builds loads the system's roots, which takes a
    /// while, once.
    Gitlab(std::sync::Arc<GitlabClient>),
    /// Sends nothing and answers at once, as if GitLab had created pipeline 0; the dry run's printout is a
    /// listener of the `Sending` event.
    DryRun,
}

impl Trigger for Sender {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        match self {
            Sender::Gitlab(client) => client.send(request).await,
            Sender::DryRun => Attempt::Created(Pipeline::created(0, None, "dry-run", None)),
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

/// The longest message kept. GitLab's words and a proxy's page are cut well before; this bounds the rest.
const MESSAGE_CHARS: usize = 1000;

/// What every message says when a request may have reached GitLab without pipecron learning what became of it.
pub const MAYBE_CREATED: &str = "a pipeline may have been created";

/// Sends `request`, retrying transient failures up to `retries` times. `on_retry` hears of each wait, for logs.
///
/// The run ends `unknown` when its last attempt may have reached GitLab and got no answer (a timeout, a reset), or
/// when GitLab answered 201 without a readable pipeline; never retried after a 201.
pub async fn fire<T: Trigger>(
    trigger: &T,
    request: &TriggerRequest,
    retries: u32,
    backoff: Backoff,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> RunResult {
    let mut attempts = 0;
    // Whether an earlier attempt may have created a pipeline, for the message of the last.
    let mut maybe_created = false;
    loop {
        attempts += 1;
        match trigger.send(request).await {
            Attempt::Created(pipeline) => {
                return RunResult {
                    ending: Ending::Succeeded,
                    attempts,
                    http_status: Some(201),
                    pipeline: Some(scrub_pipeline(pipeline, request)),
                    error: None,
                    retries_exhausted: false,
                };
            }
            Attempt::Unconfirmed { message } => {
                return RunResult {
                    ending: Ending::Unknown,
                    attempts,
                    http_status: Some(201),
                    pipeline: None,
                    error: Some(tidy(&message, request)),
                    retries_exhausted: false,
                };
            }
            Attempt::Permanent { http_status, message, pipeline } => {
                return RunResult {
                    ending: Ending::Failed,
                    attempts,
                    http_status,
                    pipeline: pipeline.map(|p| scrub_pipeline(p, request)),
                    error: Some(tidy(&message, request)),
                    retries_exhausted: false,
                };
            }
            Attempt::Transient { http_status, message, wait, maybe_sent } => {
                let mut message = tidy(&message, request);
                if maybe_sent && !message.contains(MAYBE_CREATED) {
                    message = format!("{message}; {MAYBE_CREATED}");
                }
                if attempts > retries {
                    let earlier = match maybe_created && !maybe_sent {
                        true => "; an earlier attempt may have created a pipeline",
                        false => "",
                    };
                    return RunResult {
                        ending: if maybe_sent && http_status.is_none() { Ending::Unknown } else { Ending::Failed },
                        attempts,
                        http_status,
                        pipeline: None,
                        error: Some(match attempts {
                            1 => message,
                            _ => format!("{message}{earlier} (gave up after {attempts} attempts)"),
                        }),
                        retries_exhausted: true,
                    };
                }
                maybe_created |= maybe_sent;
                let delay = backoff.wait(attempts - 1, wait);
                on_retry(attempts, &message, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A message as it leaves this module: at most `MESSAGE_CHARS`, and without the token.
fn tidy(message: &str, request: &TriggerRequest) -> String {
    scrub(&outcome::shorten(message, MESSAGE_CHARS), request)
}

/// A pipeline as GitLab (or whatever answered in its place) described it, without the token: it is stored and shown.
fn scrub_pipeline(pipeline: Pipeline, request: &TriggerRequest) -> Pipeline {
    Pipeline {
        status: scrub(&pipeline.status, request),
        web_url: pipeline.web_url.map(|url| scrub(&url, request)),
        ..pipeline
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
    // A text cut short ("…", wherever it stands in the message) may end in the first part of the token.
    let mut pieces = whole.split('…').peekable();
    let mut out = String::with_capacity(whole.len());
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() {
            out.push_str(piece);
            break;
        }
        let partial = (4..token.len())
            .rev()
            .filter(|len| token.is_char_boundary(*len))
            .find(|len| piece.ends_with(&token[..*len]));
        match partial {
            Some(len) => {
                out.push_str(&piece[..piece.len() - len]);
                out.push_str(&masked);
            }
            None => {
                out.push_str(piece);
                out.push('…');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
