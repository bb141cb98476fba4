//! The schedules every measurement uses, in the realistic form: each has its own `project` (numeric ids and
//! `group/sub/project` paths), `ref`, 2–3 `variables` of every YAML type, a `timezone` out of five, and some a
//! `description`; `defaults` holds only `gitlab`, `token` and `retries: 0`. A file of 100,000 copies of one line
//! would measure a loader's best case, not what a user's files cost.
//!
//! Per-second schedules fire at the same instants in every zone. A burst's schedules each name the same UTC instant
//! in their own zone's local time, so that the zones are read and still everything is due in the same second.
//! The peers get the same schedules: tokio-cron-scheduler as a JSON file of jobs, cron as crontab lines.

use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// When the schedules are due.
#[derive(Clone, Copy, Debug)]
pub enum When {
    /// Every second (every minute for cron, which knows no seconds).
    EverySecond,
    /// All at this whole second, once a day.
    At(DateTime<Utc>),
    /// At a time of day that varies by schedule (1,440 forms, as in a large set of nightly schedules), on a weekday
    /// at least two days away in every zone: never due during a measurement.
    Quiet,
}

pub const ZONES: [Tz; 5] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Sydney,
];

const REFS: [&str; 6] = ["main", "master", "develop", "release/1.4", "release/2.0", "v3.2.1"];

/// A variable's value, of one of the types YAML allows.
#[derive(Clone, Debug)]
pub enum Value {
    Text(String),
    Number(i64),
    Bool(bool),
}

impl Value {
    fn yaml(&self) -> String {
        match self {
            Value::Text(text) => format!("\"{text}\""),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// As sent in the form.
    pub fn text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

/// One schedule, as written for every scheduler.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// 6 fields, seconds first.
    pub cron: String,
    pub zone: Tz,
    pub project: String,
    pub git_ref: &'static str,
    pub variables: Vec<(&'static str, Value)>,
    pub description: Option<String>,
}

impl Spec {
    /// The project as one URL path segment, as pipecron sends it: `group%2Fsub%2Fproject`.
    pub fn project_segment(&self) -> String {
        self.project.replace('/', "%2F")
    }
}

/// `n` schedules due `when`, named s0, s1, ….
pub fn specs(n: usize, when: When) -> Vec<Spec> {
    (0..n).map(|i| spec(i, when)).collect()
}

fn spec(i: usize, when: When) -> Spec {
    let zone = ZONES[i % ZONES.len()];
    let project = if i.is_multiple_of(3) {
        (1000 + i % 9973).to_string()
    } else {
        format!("group-{}/sub-{}/project-{i}", i % 7, i % 11)
    };
    let description =
        i.is_multiple_of(4).then(|| format!("Nightly build {i} of the {} pipeline; uploads packages", i % 13));
    Spec {
        name: format!("s{i}"),
        cron: cron_line(when, zone, i),
        zone,
        project,
        git_ref: REFS[i % REFS.len()],
        variables: variables(i),
        description,
    }
}

/// Two or three variables, one of each type among them.
fn variables(i: usize) -> Vec<(&'static str, Value)> {
    let envs = ["staging", "production", "review", "qa"];
    let mut variables = vec![
        ("DEPLOY_ENV", Value::Text(envs[i % envs.len()].to_string())),
        ("SHARD_COUNT", Value::Number((i % 16 + 1) as i64)),
    ];
    match i % 3 {
        0 => variables.push(("UPLOAD_TO_S3", Value::Bool(i.is_multiple_of(2)))),
        1 => variables.push(("SUITE", Value::Text(format!("nightly-{}", i % 5)))),
        _ => {}
    }
    variables
}

/// The cron line of `when` in `zone` for the `i`th schedule: a burst's instant in the zone's local time.
pub fn cron_line(when: When, zone: Tz, i: usize) -> String {
    match when {
        When::EverySecond => "* * * * * *".to_string(),
        When::At(instant) => {
            let local = instant.with_timezone(&zone);
            format!("{} {} {} * * *", local.second(), local.minute(), local.hour())
        }
        When::Quiet => format!("0 {} {} * * {}", i % 60, (i / 60) % 24, quiet_weekday()),
    }
}

/// Three days from today in UTC: no zone's date is more than a day from UTC's.
fn quiet_weekday() -> u32 {
    (Utc::now().weekday().num_days_from_sunday() + 3) % 7
}

/// Whether every zone maps the local time of `instant` back to it alone: not in a daylight-saving change's
/// repeated or skipped hour, where a daily cron line would name another instant or two.
pub fn unambiguous(instant: DateTime<Utc>) -> bool {
    use chrono::{LocalResult, TimeZone};
    ZONES.iter().all(|zone| {
        let local = instant.with_timezone(zone).naive_local();
        matches!(zone.from_local_datetime(&local), LocalResult::Single(t) if t == instant)
    })
}

/// `DIR/bench.yaml`, the schedules on the fake at `url`.
pub fn write_yaml(dir: &Path, url: &str, specs: &[Spec]) {
    let mut text = format!("defaults:\n  gitlab: {url}\n  token: {TOKEN}\n  retries: 0\nschedules:\n");
    for spec in specs {
        text.push_str(&yaml(spec));
    }
    std::fs::write(dir.join("bench.yaml"), text).expect("writes the schedules");
}

fn yaml(spec: &Spec) -> String {
    let mut text = format!("  {}:\n", spec.name);
    if let Some(description) = &spec.description {
        text.push_str(&format!("    description: {description}\n"));
    }
    text.push_str(&format!(
        "    cron: \"{}\"\n    timezone: {}\n    project: {}\n    ref: {}\n    variables:\n",
        spec.cron,
        spec.zone.name(),
        spec.project,
        spec.git_ref
    ));
    for (name, value) in &spec.variables {
        text.push_str(&format!("      {name}: {}\n", value.yaml()));
    }
    text
}

/// The token in the files, and sent by the peers.
pub const TOKEN: &str = "glptt-b3nchT0k3n1234567890";
