//! The HTTP client that sends triggers to GitLab: reqwest over rustls, trusting the system roots.
//!
//! One client is shared by every schedule with the same `timeout`, so connections are kept alive. A schedule with a
//! `ca_file` gets a client of its own that also trusts that bundle, built once. `HTTPS_PROXY` and `NO_PROXY` are
//! honoured (reqwest reads them).
//!
//! An answer is read chunk by chunk and only so far (`outcome::READ_LIMIT`, `outcome::PIPELINE_LIMIT`): a body of
//! 200 MB costs 64 KiB. The request's `timeout` covers the whole exchange, the body included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::Trigger;
use super::outcome::{Answer, Attempt, Cut, PIPELINE_LIMIT, READ_LIMIT, classify};
use super::request::TriggerRequest;

const USER_AGENT: &str = concat!("pipecron/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read ca_file '{path}': {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Build(String),
}

pub struct GitlabClient {
    /// One client per `ca_file` (or none) and per request timeout, which sets its connect timeout; built once.
    clients: Mutex<HashMap<(Option<PathBuf>, Duration), reqwest::Client>>,
}

/// The request timeout assumed by `new` and `prepare`, which only check that a client can be built; the client
/// of that timeout, without a `ca_file`, is built by `new`, and serves requests that set their own timeout.
pub const ANY_TIMEOUT: Duration = Duration::from_secs(30);

impl GitlabClient {
    pub fn new() -> Result<Self, ClientError> {
        let client = GitlabClient { clients: Mutex::default() };
        client.client_for(None, ANY_TIMEOUT)?;
        Ok(client)
    }

    /// Builds the client for each `ca_file` up front, so that a bad bundle is reported before anything is sent.
    pub fn prepare<'a>(&self, ca_files: impl IntoIterator<Item = &'a Path>) -> Result<(), ClientError> {
        for path in ca_files {
            self.client_for(Some(path), ANY_TIMEOUT)?;
        }
        Ok(())
    }

    /// The client for requests with this `ca_file` and `timeout`, built on first use.
    pub(crate) fn client_for(&self, ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, ClientError> {
        let key = (ca_file.map(Path::to_path_buf), timeout);
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let builder = builder().connect_timeout(connect_timeout(timeout));
        let client = match ca_file {
            None => builder.build().map_err(|e| ClientError::Build(e.to_string()))?,
            Some(path) => {
                let ca_error = |reason: String| ClientError::CaFile { path: path.to_path_buf(), reason };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
                builder.tls_certs_merge(certs).build().map_err(|e| ca_error(e.to_string()))?
            }
        };
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// How long making a connection (name lookup, TCP, TLS, a proxy's CONNECT) may take of a request's `timeout`:
/// three quarters. A connection that is not made by then fails as a connection error, which is sure not to have
/// reached GitLab. The request's own timeout, which counts from the start, can then only pass once a connection
/// was made, when the request may have gone out; without the shorter bound, a name lookup that hangs would be
/// recorded as `unknown`, "a pipeline may have been created", though nothing was sent.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout.mul_f64(0.75)
}

/// Redirects are not followed: `classify` explains why.
fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(USER_AGENT).redirect(reqwest::redirect::Policy::none())
}

impl Trigger for GitlabClient {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        let client = match self.client_for(request.ca_file.as_deref(), request.timeout) {
            Ok(client) => client,
            Err(error) => {
                return Attempt::Permanent { http_status: None, message: error.to_string(), pipeline: None };
            }
        };
        // The timeout covers the whole exchange, the body included: an answer trickling in a byte at a time is cut
        // off with the rest.
        let response = client
            .post(request.url.clone())
            .timeout(request.timeout)
            .header(reqwest::header::CONTENT_TYPE, request.payload.content_type)
            .body(request.payload.bytes.clone());
        let mut response = match response.send().await {
            Ok(response) => response,
            Err(error) => return network_error(request, &error),
        };
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (retry_after, location) = (header(reqwest::header::RETRY_AFTER), header(reqwest::header::LOCATION));
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let limit = if status == 201 { PIPELINE_LIMIT } else { READ_LIMIT };
        let (body, cut) = read_body(&mut response, limit, request.timeout).await;
        let answer = Answer {
            status,
            retry_after: retry_after.as_deref(),
            location: location.as_deref(),
            content_type: content_type.as_deref(),
            body: &body,
            cut: cut.as_ref(),
        };
        classify(request, answer)
    }
}

/// Reads at most `limit` bytes of the body, chunk by chunk as they arrive, and says what was not read. Whatever
/// GitLab (or anything posing as it) sends, no more than `limit` and one chunk are held. Dropping the response
/// then closes its connection, rather than reading the rest to keep it alive.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> (Vec<u8>, Option<Cut>) {
    let length = response.content_length();
    let mut body = Vec::with_capacity(length.map_or(0, |l| l.min(limit as u64) as usize).min(READ_LIMIT));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, Some(Cut::TooLong { read: limit, length }));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return (body, None),
            Err(error) => {
                let why = match error.is_timeout() {
                    true => format!("the timeout ({timeout:?}) passed"),
                    false => root_cause(&error),
                };
                let read = body.len();
                return (body, Some(Cut::BrokeOff { read, why }));
            }
        }
    }
}

/// A request that got no answer. Only a failed connection is sure not to have reached GitLab; for the others
/// `fire` adds that a pipeline may have been created.
fn network_error(request: &TriggerRequest, error: &reqwest::Error) -> Attempt {
    let host = request.url.host_str().unwrap_or("GitLab");
    let (message, maybe_sent) = if error.is_connect() && error.is_timeout() {
        (format!("cannot connect to {host}: no connection within {:?}", connect_timeout(request.timeout)), false)
    } else if error.is_connect() {
        let cause = root_cause(error);
        (format!("cannot connect to {host}: {cause}{}", connect_hint(request, &cause)), false)
    } else if error.is_timeout() {
        (format!("no answer from {host} within {:?}", request.timeout), true)
    } else {
        (format!("the request to {host} failed: {}", root_cause(error)), true)
    };
    Attempt::Transient { http_status: None, message, wait: None, maybe_sent }
}

/// What to do about a connection that failed, when the cause says.
fn connect_hint(request: &TriggerRequest, cause: &str) -> &'static str {
    if cause.contains("not valid for name") {
        "; set `gitlab` to a name GitLab's certificate is valid for"
    } else if cause.contains("certificate") && request.ca_file.is_some() {
        "; is `ca_file` the CA that signed GitLab's certificate?"
    } else if cause.contains("certificate") {
        "; if GitLab's certificate comes from a private CA, name its PEM bundle in `ca_file`"
    } else if cause.contains("failed to lookup address") {
        "; is the host name in `gitlab` right, and can this machine resolve it?"
    } else if cause.contains("InvalidContentType") || cause.contains("corrupt message") {
        "; the server there did not answer in TLS: does it serve plain http:// on that port?"
    } else {
        ""
    }
}

/// The innermost error's text: reqwest's own text repeats the URL and hides the reason.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
