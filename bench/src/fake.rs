//! The fake GitLab, in a process of its own: `pipecron-bench fake` (hidden), which the bench starts from its own
//! executable for each measurement. In its own process, the fake's work is never counted as the bench's, and it
//! competes for the CPU with the scheduler under test as a real GitLab client's network stack would not, but as
//! fairly for pipecron as for its peers.
//!
//! It binds 127.0.0.1:0 and prints its URL as the first line on stdout. `POST
//! /api/v4/projects/{id}/trigger/pipeline` answers 201 with a pipeline's JSON at once and notes the request's
//! `variables[PIPECRON_SCHEDULE]`, `variables[PIPECRON_SLOT]` and arrival time; `GET /arrivals` hands over (and
//! forgets) what it noted, one line each: `SCHEDULE SLOT_US ARRIVED_US`, both in microseconds since the epoch.
//! It runs on a single-threaded runtime: two work-stealing workers would wake each other for every request and take
//! CPU from the scheduler under test. It exits when its stdin closes, so that it never outlives the bench.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Form, FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

/// One request as the fake saw it: the schedule and slot it carried and when it arrived.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub schedule: String,
    /// Microseconds since the epoch.
    pub slot: i64,
    /// Microseconds since the epoch.
    pub at: i64,
}

impl Arrival {
    pub fn lateness_ms(&self) -> f64 {
        (self.at - self.slot) as f64 / 1000.0
    }
}

type Noted = Arc<Mutex<Vec<String>>>;

fn micros(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The form's fields: URL-encoded, as pipecron and reqwest send them, or multipart, as `curl -F` does.
async fn fields(request: Request) -> HashMap<String, String> {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Form::<HashMap<String, String>>::from_request(request, &()).await.map(|f| f.0).unwrap_or_default();
    }
    let mut fields = HashMap::new();
    if let Ok(mut multipart) = Multipart::from_request(request, &()).await {
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            fields.insert(name, field.text().await.unwrap_or_default());
        }
    }
    fields
}

async fn trigger(State(noted): State<Noted>, request: Request) -> (StatusCode, String) {
    let at = micros(SystemTime::now());
    let form = fields(request).await;
    let slot = form.get("variables[PIPECRON_SLOT]").and_then(|s| s.parse::<DateTime<Utc>>().ok());
    if let Some(slot) = slot {
        let schedule = form.get("variables[PIPECRON_SCHEDULE]").map_or("-", String::as_str);
        let line = format!("{schedule} {} {at}\n", micros(slot.into()));
        noted.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    let body = r#"{"id":1,"iid":1,"status":"created","web_url":"http://fake/p/1"}"#;
    (StatusCode::CREATED, body.to_string())
}

async fn arrivals(State(noted): State<Noted>) -> String {
    std::mem::take(&mut *noted.lock().unwrap_or_else(|p| p.into_inner())).concat()
}

/// The `fake` subcommand: serves until stdin closes.
pub fn serve() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds loopback");
    let addr = listener.local_addr().expect("an address");
    listener.set_nonblocking(true).expect("non-blocking");
    println!("http://{addr}");
    std::io::stdout().flush().expect("prints its URL");
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let app = axum::Router::new()
        .route("/api/v4/projects/{id}/trigger/pipeline", post(trigger))
        .route("/arrivals", get(arrivals))
        .with_state(Noted::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        axum::serve(listener, app).await
    });
    served.expect("the fake serves");
}

/// A running fake, stopped when dropped (a panic included).
pub struct Fake {
    child: Child,
    /// Held open: the fake exits when it closes, however the bench ends.
    _stdin: Option<ChildStdin>,
    pub url: String,
    addr: String,
}

impl Fake {
    /// Starts the fake; pinned, on the last CPU.
    pub fn start(pinned: bool) -> Fake {
        let exe = std::env::current_exe().expect("the bench's own executable");
        let mut command = Command::new(exe);
        command.arg("fake").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        super::measure::pin(&mut command, pinned, super::measure::cpus().saturating_sub(1));
        let mut child = command.spawn().expect("the fake starts");
        let stdout = child.stdout.take().expect("the fake's stdout");
        let mut url = String::new();
        BufReader::new(stdout).read_line(&mut url).expect("the fake prints its URL");
        let url = url.trim().to_string();
        assert!(url.starts_with("http://"), "the fake printed {url:?}, not its URL");
        let addr = url.trim_start_matches("http://").to_string();
        Fake { _stdin: child.stdin.take(), child, url, addr }
    }

    /// What arrived since the last call.
    pub fn take(&self) -> Vec<Arrival> {
        let body = super::http_get(&self.addr, "/arrivals").expect("the fake hands over its arrivals");
        String::from_utf8_lossy(&body).lines().filter_map(parse).collect()
    }
}

fn parse(line: &str) -> Option<Arrival> {
    let mut fields = line.split(' ');
    let schedule = fields.next()?.to_string();
    let slot = fields.next()?.parse().ok()?;
    let at = fields.next()?.parse().ok()?;
    Some(Arrival { schedule, slot, at })
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
