//! The HTTP client that sends triggers to GitLab: reqwest over rustls, trusting the system roots.
//!
//! One client is shared by every schedule, so connections are kept alive. A schedule with a `ca_file` gets a client
//! of its own that also trusts that bundle, built once. `HTTPS_PROXY` and `NO_PROXY` are honoured (reqwest reads
//! them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Trigger;
use super::outcome::{Answer, Attempt, classify};
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
    shared: reqwest::Client,
    with_ca: Mutex<HashMap<PathBuf, reqwest::Client>>,
}

impl GitlabClient {
    pub fn new() -> Result<Self, ClientError> {
        Ok(GitlabClient {
            shared: builder().build().map_err(|e| ClientError::Build(e.to_string()))?,
            with_ca: Mutex::default(),
        })
    }

    /// Builds the client for each `ca_file` up front, so that a bad bundle is reported before anything is sent.
    pub fn prepare<'a>(&self, ca_files: impl IntoIterator<Item = &'a Path>) -> Result<(), ClientError> {
        for path in ca_files {
            self.client_for(Some(path))?;
        }
        Ok(())
    }

    fn client_for(&self, ca_file: Option<&Path>) -> Result<reqwest::Client, ClientError> {
        let Some(path) = ca_file else {
            return Ok(self.shared.clone());
        };
        let mut clients = self.with_ca.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(path) {
            return Ok(client.clone());
        }
        let ca_error = |reason: String| ClientError::CaFile { path: path.to_path_buf(), reason };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
        let client = builder().tls_certs_merge(certs).build().map_err(|e| ca_error(e.to_string()))?;
        clients.insert(path.to_path_buf(), client.clone());
        Ok(client)
    }
}

/// Redirects are not followed: `classify` explains why.
fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(USER_AGENT).redirect(reqwest::redirect::Policy::none())
}

impl Trigger for GitlabClient {
    async fn send(&self, request: &TriggerRequest) -> Attempt {
        let client = match self.client_for(request.ca_file.as_deref()) {
            Ok(client) => client,
            Err(error) => {
                return Attempt::Permanent { http_status: None, message: error.to_string(), pipeline: None };
            }
        };
        let response = client
            .post(request.url.clone())
            .timeout(request.timeout)
            .header(reqwest::header::CONTENT_TYPE, request.payload.content_type)
            .body(request.payload.bytes.clone());
        let response = match response.send().await {
            Ok(response) => response,
            Err(error) => return network_error(request, &error),
        };
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (retry_after, location) = (header(reqwest::header::RETRY_AFTER), header(reqwest::header::LOCATION));
        match response.text().await {
            Ok(body) => {
                let answer =
                    Answer { status, retry_after: retry_after.as_deref(), location: location.as_deref(), body: &body };
                classify(request, answer)
            }
            Err(error) => network_error(request, &error),
        }
    }
}

/// A request that got no answer. Only a failed connection is sure not to have reached GitLab.
fn network_error(request: &TriggerRequest, error: &reqwest::Error) -> Attempt {
    let host = request.url.host_str().unwrap_or("GitLab");
    let (message, maybe_sent) = if error.is_connect() {
        let cause = root_cause(error);
        let hint = match cause.contains("certificate") {
            true => "; if GitLab's certificate comes from a private CA, name its PEM bundle in `ca_file`",
            false => "",
        };
        (format!("cannot connect to {host}: {cause}{hint}"), false)
    } else if error.is_timeout() {
        (format!("no answer from {host} within {:?}; a pipeline may have been created", request.timeout), true)
    } else {
        (format!("the request to {host} failed: {}", root_cause(error)), true)
    };
    Attempt::Transient { http_status: None, message, wait: None, maybe_sent }
}

/// The innermost error's text: reqwest's own text repeats the URL and hides the reason.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
