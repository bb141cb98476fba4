use std::path::Path;
use std::time::Duration;

use super::diag::{Reporter, Scope, Severity};
use super::*;
use crate::schedule::{Project, TokenSource};

fn env(name: &str) -> Option<String> {
    (name == "TOKEN").then(|| "glptt-abcdef0123456789".to_string())
}

fn load_text(text: &str, resolve: bool) -> (Vec<Arc<Schedule>>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut rep = Reporter { file: Path::new("test.yaml"), scope: Scope::File, out: &mut out };
    let env: Option<Env> = if resolve { Some(&env) } else { None };
    let schedules = load_file(text, Path::new("test.yaml"), env, &mut rep);
    (schedules, out)
}

const FILE: &str = r#"
defaults:
  gitlab: https://gitlab.example.com/
  token: ${TOKEN}
  timezone: Europe/Berlin
  variables: {A: from-defaults, B: from-defaults}
  inputs: {level: 1}
schedules:
  nightly:
    cron: "30 0 * * *"
    project: group/sub/project
    ref: master
    retries: 2
    variables: {B: own, C: 3, D: true}
    inputs: {flags: [a, b], strict: false}
  other:
    cron: "@daily"
    project: "42"
    ref: main
    timezone: UTC
    enabled: false
"#;

#[test]
fn defaults_fill_gaps_and_maps_merge_key_by_key() {
    let (schedules, diagnostics) = load_text(FILE, true);
    assert_eq!(diagnostics, vec![]);
    let [nightly, other] = schedules.as_slice() else { panic!("two schedules, got {schedules:?}") };
    assert_eq!(nightly.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(other.timezone, chrono_tz::UTC);
    assert_eq!(nightly.project, Project::Path("group/sub/project".into()));
    assert_eq!(other.project, Project::Id(42));
    let vars: Vec<(&str, &str)> = nightly.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(vars, [("A", "from-defaults"), ("B", "own"), ("C", "3"), ("D", "true")]);
    assert_eq!(nightly.inputs["level"], serde_json::json!(1));
    assert_eq!(nightly.inputs["flags"], serde_json::json!(["a", "b"]));
    assert_eq!(nightly.inputs["strict"], serde_json::json!(false));
    assert_eq!((nightly.retries, other.retries), (2, 5));
    assert_eq!(nightly.catch_up, Duration::from_secs(3600));
    assert_eq!(nightly.timeout, Duration::from_secs(30));
    assert!(nightly.enabled && !other.enabled);
}

#[test]
fn the_token_is_resolved_and_never_shown() {
    let (schedules, _) = load_text(FILE, true);
    let token = schedules[0].token.as_ref().expect("resolved");
    assert_eq!(token.expose(), "glptt-abcdef0123456789");
    assert_eq!(schedules[0].token_source, TokenSource::Env(["TOKEN".into()].into()));
    let debug = format!("{:?}", schedules[0]);
    assert!(!debug.contains("ef0123456789"), "Debug shows the token: {debug}");
}

#[test]
fn without_secrets_the_token_stays_unresolved() {
    let (schedules, diagnostics) = load_text(FILE, false);
    assert_eq!(diagnostics, vec![]);
    assert!(schedules.iter().all(|s| s.token.is_none()));
}

#[test]
fn one_bad_schedule_does_not_hide_the_others() {
    let text = FILE.replace("cron: \"@daily\"", "cron: \"@daily\"\n    jitter: soon");
    let (schedules, diagnostics) = load_text(&text, true);
    // `jitter` is reported and left out; the rest of the schedule is still valid.
    assert_eq!(schedules.len(), 2);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0].severity, Severity::Error);
    assert_eq!(diagnostics[0].key.as_deref(), Some("jitter"));
    assert_eq!(diagnostics[0].scope, Scope::Schedule("other".into()));
    assert_eq!((diagnostics[0].pos.line, diagnostics[0].pos.column), (18, 13));
}

#[test]
fn a_jitter_over_a_day_is_refused() {
    let text = FILE.replace("cron: \"@daily\"", "cron: \"@daily\"\n    jitter: 100000000d");
    let (_, diagnostics) = load_text(&text, true);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(diagnostics[0].message.contains("at most 1d"), "{diagnostics:?}");
}

#[test]
fn x_keys_hold_anchors_for_the_file() {
    let text = "x-gitlab: &gitlab\n  gitlab: https://gitlab.example.com\n  token: ${TOKEN}\ndefaults:\n  <<: *gitlab\n  project: 9\n  ref: main\nschedules:\n  a:\n    cron: \"@daily\"\n";
    let (schedules, diagnostics) = load_text(text, true);
    assert_eq!(diagnostics, vec![]);
    assert_eq!(schedules[0].gitlab.as_str(), "https://gitlab.example.com/");
}
