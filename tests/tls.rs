//! `ca_file` against a real TLS server: a GitLab whose certificate is signed by a private CA is trusted when the
//! schedule names that CA in `ca_file`, and refused, with a clear message, when it does not. And `HTTPS_PROXY`: the
//! same GitLab reached through a CONNECT proxy, as behind a corporate proxy.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use chrono::{TimeZone, Utc};
use common::fake_gitlab::{FakeGitlab, TOKEN};
use common::hostile::{Fault, Hostile, pki_for, serve_tls};
use common::pki::{Pki, pki};
use common::{Pipecron, in_background};
use pipecron::trigger::{Backoff, Ending, GitlabClient, Overrides, Reason, RunResult, TriggerRequest, fire};

/// Serves the fake over TLS on 127.0.0.1; returns `https://localhost:PORT`.
async fn start_tls(fake: &FakeGitlab, pki: &Pki) -> String {
    format!("https://localhost:{}", serve_tls(fake.router(), pki).await)
}

/// Loads one schedule for project 9 on `gitlab`, with `extra` keys, and fires it once.
async fn fire_once(gitlab: &str, extra: &str, dir: &std::path::Path) -> RunResult {
    let text = format!(
        "schedules:\n  nightly:\n    cron: \"30 0 * * *\"\n    gitlab: {gitlab}\n    token: ${{TOKEN}}\n    project: 9\n    \
         ref: master\n{extra}"
    );
    std::fs::write(dir.join("s.yaml"), text).expect("writes");
    let env = |name: &str| (name == "TOKEN").then(|| TOKEN.to_string());
    let loaded = pipecron::config::load(dir, Some(&env));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let schedule = loaded.schedules.into_iter().next().expect("one schedule");
    let slot = Utc.with_ymd_and_hms(2026, 11, 24, 0, 30, 0).single().expect("valid");
    let request = TriggerRequest::new(&schedule, slot, Reason::Schedule, &Overrides::default()).expect("a request");
    let client = GitlabClient::new().expect("a client");
    client.prepare(schedule.ca_file.as_deref()).expect("the CA bundle loads");
    let backoff = Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(5) };
    fire(&client, &request, 0, backoff, |_, _, _| {}).await
}

#[tokio::test]
async fn a_private_ca_named_in_ca_file_is_trusted() {
    let (fake, pki) = (FakeGitlab::new(), pki());
    let url = start_tls(&fake, &pki).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca).expect("writes the CA");
    let result = fire_once(&url, "    ca_file: ca.pem\n", dir.path()).await;
    assert_eq!(result.ending, Ending::Succeeded, "{result:?}");
    assert!(result.pipeline.is_some(), "{result:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].params.get("token").and_then(|t| t.as_str()), Some(TOKEN));
}

#[tokio::test]
async fn without_ca_file_the_private_certificate_is_refused_before_anything_is_sent() {
    let (fake, pki) = (FakeGitlab::new(), pki());
    let url = start_tls(&fake, &pki).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let result = fire_once(&url, "", dir.path()).await;
    assert_eq!((result.ending, result.http_status), (Ending::Failed, None), "{result:?}");
    let error = result.error.unwrap_or_default();
    assert!(error.starts_with("cannot connect to localhost: "), "{error}");
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(error.ends_with("name its PEM bundle in `ca_file`"), "{error}");
    assert!(!error.contains(TOKEN), "{error}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_with_a_hint_even_with_ca_file() {
    let (fake, pki) = (FakeGitlab::new(), pki_for("gitlab.other.example"));
    let url = start_tls(&fake, &pki).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca).expect("writes the CA");
    let result = fire_once(&url, "    ca_file: ca.pem\n", dir.path()).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, None), "{result:?}");
    let error = result.error.unwrap_or_default();
    assert!(error.starts_with("cannot connect to localhost: invalid peer certificate: "), "{error}");
    assert!(error.contains("not valid for name"), "{error}");
    assert!(error.ends_with("; set `gitlab` to a name GitLab's certificate is valid for"), "{error}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_fails_the_handshake_and_nothing_is_sent() {
    let hostile = Hostile::start(Fault::PlainToTls);
    let url = format!("https://localhost:{}", hostile.port);
    let dir = tempfile::tempdir().expect("a temp dir");
    let result = fire_once(&url, "", dir.path()).await;
    assert_eq!((result.ending, result.attempts, result.http_status), (Ending::Failed, 1, None), "{result:?}");
    let error = result.error.unwrap_or_default();
    assert!(error.starts_with("cannot connect to localhost: "), "{error}");
    assert!(
        error.ends_with("; the server there did not answer in TLS: does it serve plain http:// on that port?"),
        "{error}"
    );
    assert!(hostile.requests().is_empty(), "no request was read");
    assert_eq!(hostile.connections(), 1);
}

/// A proxy that answers `CONNECT host:port` and then relays bytes; it notes each target. Returns its URL.
async fn start_connect_proxy(targets: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds loopback");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let targets = targets.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                let _ = client.read_line(&mut line).await;
                let target = line.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next()).unwrap_or("");
                targets.lock().unwrap_or_else(|p| p.into_inner()).push(target.to_string());
                // The rest of the request head, up to the empty line.
                let mut header = String::new();
                while client.read_line(&mut header).await.is_ok_and(|n| n > 2) {
                    header.clear();
                }
                // Only the fake is reachable, whatever name the client asked for.
                let port = target.rsplit(':').next().unwrap_or("443");
                let Ok(mut upstream) = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await else {
                    return;
                };
                let mut client = client.into_inner();
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    url
}

#[test]
fn https_proxy_carries_the_trigger_to_a_gitlab_behind_a_private_ca() {
    let (fake, pki) = (FakeGitlab::new(), Arc::new(pki()));
    let gitlab = in_background({
        let (fake, pki) = (fake.clone(), pki.clone());
        move || async move { start_tls(&fake, &pki).await }
    });
    let targets = Arc::new(Mutex::new(Vec::new()));
    let proxy = in_background({
        let targets = targets.clone();
        move || start_connect_proxy(targets)
    });
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    std::fs::write(dir.path().join("schedules/ca.pem"), &pki.ca).expect("writes the CA");
    let text = format!(
        "schedules:\n  nightly:\n    cron: \"30 0 * * *\"\n    gitlab: {gitlab}\n    ca_file: ca.pem\n    \
         token: ${{TRIGGER_TOKEN}}\n    project: 9\n    ref: master\n    retries: 0\n"
    );
    std::fs::write(dir.path().join("schedules/s.yaml"), text).expect("writes");
    let run = Pipecron::new()
        .current_dir(dir.path())
        .env("TRIGGER_TOKEN", TOKEN)
        .env("HTTPS_PROXY", &proxy)
        .args(["run-now", "nightly"])
        .run()
        .success();
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN), "{run:#?}");
    let port = gitlab.rsplit(':').next().unwrap_or_default();
    assert_eq!(*targets.lock().unwrap_or_else(|p| p.into_inner()), [format!("localhost:{port}")]);
    assert_eq!(fake.requests().len(), 1);
}
