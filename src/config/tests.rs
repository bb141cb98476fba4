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
    let vars: Vec<(&str, &str)> = nightly.variables.iter().collect();
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

/// A valid file's frame around one schedule's own keys, given indented by four spaces.
fn one(keys: &str) -> String {
    format!(
        "defaults:\n  gitlab: https://gitlab.example.com\n  token: ${{TOKEN}}\n  project: 9\n  ref: main\nschedules:\n  a:\n{keys}"
    )
}

fn errors(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect()
}

fn only_error(text: &str) -> Diagnostic {
    let (_, diagnostics) = load_text(text, true);
    let found: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(found.len(), 1, "{diagnostics:#?}");
    found[0].clone()
}

#[test]
fn a_token_file_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    let cases = [
        (fifo.display().to_string(), "is a FIFO (named pipe), not a regular file"),
        ("/dev/zero".to_string(), "is a character device, not a regular file"),
        (dir.path().display().to_string(), "is a directory, not a regular file"),
    ];
    for (path, why) in cases {
        let text = one(&format!("    cron: \"@daily\"\n    token_file: {path}\n"));
        let text = text.replace("  token: ${TOKEN}\n", "");
        // A FIFO with no writer would block a plain open forever: run it where a hang fails the test instead.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(only_error(&text)));
        let error = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("no hang");
        assert_eq!((error.pos.line, error.pos.column, error.key.as_deref()), (8, 17, Some("token_file")), "{error}");
        assert!(error.message.contains(&format!("token_file '{path}' {why}")), "{error}");
    }
}

#[test]
fn an_oversized_token_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let big = dir.path().join("big.token");
    // Sparse: 1 GB that costs nothing to make.
    std::fs::File::create(&big).and_then(|f| f.set_len(1 << 30)).expect("a sparse file");
    let text =
        one(&format!("    cron: \"@daily\"\n    token_file: {}\n", big.display())).replace("  token: ${TOKEN}\n", "");
    let error = only_error(&text);
    assert!(error.message.ends_with("is larger than 64 KiB; it should hold only the token, one short line"), "{error}");
}

#[test]
fn a_token_file_holding_more_than_a_token_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("two.token");
    std::fs::write(&file, "glptt-0123456789abcdef\nsecond line\n").expect("written");
    let text =
        one(&format!("    cron: \"@daily\"\n    token_file: {}\n", file.display())).replace("  token: ${TOKEN}\n", "");
    let error = only_error(&text);
    assert!(error.message.contains("holds more than one word or line"), "{error}");
    assert!(!error.message.contains("0123") && !error.message.contains("second"), "{error}");
}

#[test]
fn long_values_are_cut_in_every_message() {
    let long = "1,".repeat(50_000);
    for keys in [
        format!("    cron: \"{long}1 * * * *\"\n"),
        format!("    cron: \"@daily\"\n    timezone: \"{long}\"\n"),
        format!("    cron: \"@daily\"\n    ref: \"{long}\"\n"),
        format!("    cron: \"@daily\"\n    project: \"{long}\"\n"),
        format!("    cron: \"@daily\"\n    variables: {{X: \"{}\"}}\n", "x".repeat(100_000)),
        format!("    cron: \"@daily\"\n    {}: 1\n", "k".repeat(1_000)),
        format!("    cron: \"@daily\"\n    api: \"{long}\"\n"),
        format!("    cron: \"@daily\"\n    jitter: \"{long}\"\n"),
    ] {
        let error = only_error(&one(&keys));
        let line = error.to_string();
        assert!(line.len() < 500, "{} bytes: {}", line.len(), &line[..500]);
        assert!(line.contains('…'), "{line}");
    }
}

#[test]
fn a_100_kb_cron_expression_is_refused_as_too_long() {
    let error = only_error(&one(&format!("    cron: \"{} * * * *\"\n", "1,".repeat(50_000) + "1")));
    assert_eq!(error.key.as_deref(), Some("cron"));
    assert!(error.message.ends_with("is 100,009 characters long; a cron expression is at most 1,000"), "{error}");
}

#[test]
fn a_token_written_in_variables_is_warned_about_and_masked() {
    let text = one(
        "    cron: \"@daily\"\n    variables:\n      API: glpat-ABCDefgh1234567890xyz\n      SHA: $CI_COMMIT_SHA\n",
    );
    let (schedules, diagnostics) = load_text(&text, true);
    assert_eq!(schedules.len(), 1, "a warning only");
    let [warning] = diagnostics.as_slice() else { panic!("one warning: {diagnostics:#?}") };
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.key.as_deref(), Some("variables.API"));
    assert!(warning.message.contains("looks like a GitLab token (glpat-ABCD…)"), "{warning}");
    assert!(!warning.to_string().contains("efgh"), "more than 4 characters shown: {warning}");
}

#[test]
fn duplicate_keys_are_reported_at_every_level_with_both_places() {
    let text = "defaults:\n  gitlab: https://gitlab.example.com\n  gitlab: https://other.example.com\n  token: ${TOKEN}\n  project: 9\n  ref: main\nschedules:\n  a:\n    cron: \"@daily\"\n    cron: \"@hourly\"\n    variables: {X: 1, X: 2}\n    inputs: {i: {k: 1, k: 2}}\n  a:\n    cron: \"@daily\"\nschedules: {}\n";
    let (schedules, mut diagnostics) = load_text(text, true);
    diagnostics.sort_by_key(|d| (d.pos.line, d.pos.column));
    let found: Vec<(u32, u32, String)> = diagnostics
        .iter()
        .map(|d| {
            let scope = match &d.scope {
                Scope::File => "file".to_string(),
                Scope::Defaults => "defaults".into(),
                Scope::Schedule(name) => name.clone(),
            };
            (d.pos.line, d.pos.column, format!("{scope} {}", d.key.as_deref().unwrap_or("-")))
        })
        .collect();
    assert_eq!(
        found,
        [
            (3, 3, "defaults gitlab".to_string()),
            (10, 5, "a cron".into()),
            (11, 23, "a variables.X".into()),
            (12, 24, "a inputs.i.k".into()),
            (13, 3, "a -".into()),
            (15, 1, "file schedules".into()),
        ],
        "{diagnostics:#?}"
    );
    assert!(diagnostics.iter().all(|d| d.severity == Severity::Error));
    assert!(diagnostics[1].message.contains("first at line 9, column 5"), "{}", diagnostics[1]);
    assert!(diagnostics[4].message.starts_with("the schedule name 'a' is written twice"), "{}", diagnostics[4]);
    // The first of each is kept and checked: the schedule loads, with the first values.
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].cron.source(), "@daily");
    assert_eq!(schedules[0].variables.get("X"), Some("1"));
}

#[test]
fn negative_and_huge_numbers_are_refused_in_plain_words() {
    let cases = [
        ("timeout: -5", "-5 is negative; a duration is 0 or more"),
        ("jitter: -1s", "'-1s' is negative; a duration is 0 or more"),
        ("catch_up: 150000000000d", "a catch_up longer than a year"),
        ("timeout: 1000d", "a timeout longer than an hour"),
        ("timeout: 99999999999999999999s", "is too large"),
        ("retries: 99999999999999999999999", "retries are too many"),
        ("retries: 18446744073709551616", "retries are too many"),
        ("retries: 2.5", "2.5 is not a whole number"),
        ("retries: 4294967296", "4294967296 retries are too many"),
        ("retries: -1", "-1 is not a number of retries"),
        ("project: 99999999999999999999999", "is not a project id (not whole, or too large)"),
        ("project: \"99999999999999999999999\"", "is too large for a project id"),
        ("variables: {X: .inf}", "is not a finite number; quote it"),
        ("inputs: {x: .nan}", "NaN and infinity are not valid input values"),
        ("variables: {X: \"a\\0b\"}", "'a\\u{0}b' holds a NUL character (\\0)"),
        ("inputs: {x: [\"\\0\"]}", "input 'x': '\\u{0}' holds a NUL character"),
        ("history_retention: 1h", "a history_retention under a day would drop runs still shown; use from 1d"),
        ("history_retention: 99999d", "a history_retention over a century is kept forever anyway"),
        ("history_max_runs: 0", "0 is out of range; write a whole number from 1 to 1,000,000,000"),
        ("history_max_runs: many", "'many' is not a number of runs"),
        ("history_max_runs: 2.5", "expected a number of runs, found"),
    ];
    for (keys, expected) in cases {
        let error = only_error(&one(&format!("    cron: \"@daily\"\n    {keys}\n")));
        assert_eq!(error.pos.line, 9, "{keys}: {error}");
        assert!(error.message.contains(expected), "{keys}: {error}");
    }
}

#[test]
fn ten_thousand_variables_are_refused_with_one_message() {
    let vars: String = (0..10_000).map(|i| format!("      V{i}: x\n")).collect();
    let started = std::time::Instant::now();
    let (schedules, diagnostics) = load_text(&one(&format!("    cron: \"@daily\"\n    variables:\n{vars}")), true);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(schedules.is_empty());
    assert_eq!(
        errors(&diagnostics),
        [
            "test.yaml:10:7: error: schedule 'a', key 'variables': 10,000 variables (with the defaults'), but pipecron sends at most 1,000 with a trigger; pass large data another way, such as a file in the repository"
        ]
    );
}

#[test]
fn h_in_every_field_is_valid_and_stable() {
    let (schedules, diagnostics) = load_text(&one("    cron: \"H H H H H H\"\n"), true);
    assert_eq!(diagnostics, vec![]);
    let again = CronExpr::parse("H H H H H H", "a").expect("valid");
    let after = chrono::Utc::now();
    assert_eq!(schedules[0].next_after(after), again.next_after(chrono_tz::UTC, after));
}

#[test]
fn a_zone_name_is_never_a_path() {
    for zone in ["../../../etc/passwd", "/etc/localtime", "Europe/../Europe/Berlin"] {
        let error = only_error(&one(&format!("    cron: \"@daily\"\n    timezone: \"{zone}\"\n")));
        assert!(error.message.starts_with(&format!("unknown time zone '{zone}'")), "{error}");
    }
}

#[test]
fn a_long_unknown_zone_is_refused_quickly() {
    let started = std::time::Instant::now();
    let error =
        only_error(&one(&format!("    cron: \"@daily\"\n    timezone: \"{}\"\n", "Europe/Berlin".repeat(8_000))));
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(error.message.contains("unknown time zone"), "{error}");
}

/// Found fuzzing (`fuzz/`, target `config_loader`): each schedule that never fires was checked with a 29-year
/// search, so 150 of them in a 4 KB file took seconds, and a large file would take hours.
#[test]
fn a_file_of_schedules_that_never_fire_is_checked_quickly() {
    let schedules: String = (0..2_000).map(|i| format!("  n{i}: {{cron: \"{} 0 30 2 *\"}}\n", i % 60)).collect();
    let started = std::time::Instant::now();
    let (_, diagnostics) = load_text(&format!("schedules:\n{schedules}"), false);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(diagnostics.iter().filter(|d| d.message.contains("never fires")).count(), 2_000);
}

#[test]
fn a_long_description_or_name_is_refused() {
    let error = only_error(&one(&format!("    cron: \"@daily\"\n    description: {}\n", "x".repeat(1_000_000))));
    assert!(error.message.ends_with("is 1,000,000 characters long; a description is at most 1,000"), "{error}");
    let text = one("    cron: \"@daily\"\n").replace("  a:\n", &format!("  {}:\n", "a".repeat(200)));
    let error = only_error(&text);
    assert!(error.message.starts_with("the name is 200 characters long"), "{error}");
    assert!(error.to_string().len() < 300, "{error}");
}

#[test]
fn references_are_resolved_once_so_they_cannot_loop() {
    let looping = |name: &str| match name {
        "TOKEN" => Some("glptt-abcdef0123456789".to_string()),
        "A" => Some("${A}".to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    let mut rep = Reporter { file: Path::new("test.yaml"), scope: Scope::File, out: &mut out };
    let text = one("    cron: \"@daily\"\n    variables: {X: \"${A}-${A}\"}\n");
    let schedules = load_file(&text, Path::new("test.yaml"), Some(&looping), &mut rep);
    assert_eq!(out, vec![]);
    assert_eq!(schedules[0].variables.get("X"), Some("${A}-${A}"));
}

#[test]
fn schedule_files_that_are_not_text_or_not_files_are_located() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("a.yaml"), b"schedules:\n  a:\n    description: caf\xe9\n").expect("written");
    let fifo = dir.path().join("b.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    std::fs::File::create(dir.path().join("c.yaml")).and_then(|f| f.set_len(1 << 30)).expect("a sparse file");
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || tx.send(load(&path, None)));
    let loaded = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("no hang on a FIFO");
    let found: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}", d.file.file_name().unwrap_or_default().to_string_lossy(), d.pos, d.message))
        .collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("a.yaml:3:21: the file is not UTF-8 text: byte 0xE9"), "{found:#?}");
    assert!(found[1].starts_with("b.yaml:1:1: the schedule file is a FIFO (named pipe)"), "{found:#?}");
    assert!(found[2].starts_with("c.yaml:1:1: the file is larger than 32 MiB"), "{found:#?}");
}

#[test]
fn a_cron_expression_is_one_line_but_tabs_separate_fields() {
    let (schedules, diagnostics) = load_text(&one("    cron: \"30\\t0 * * *\"\n"), true);
    assert_eq!((schedules.len(), diagnostics), (1, vec![]));
    let error = only_error(&one("    cron: \"30 0 * * *\\n@reboot\"\n"));
    assert!(error.message.starts_with("'30 0 * * *\\n@reboot' holds a line break"), "{error}");
}

#[test]
fn errors_about_a_resolved_value_never_quote_it() {
    let secret = |name: &str| match name {
        "TOKEN" => Some("glptt-abcdef0123456789".to_string()),
        "LONG" => Some("s3cr3t".repeat(1_000)),
        "NUL" => Some("s3cr3t\0".to_string()),
        _ => None,
    };
    let text = one("    cron: \"@daily\"\n    description: ${LONG}\n    variables: {X: \"${NUL}\"}\n");
    let mut out = Vec::new();
    let mut rep = Reporter { file: Path::new("test.yaml"), scope: Scope::File, out: &mut out };
    load_file(&text, Path::new("test.yaml"), Some(&secret), &mut rep);
    let shown: Vec<String> = out.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        [
            "test.yaml:9:18: error: schedule 'a', key 'description': once ${VAR} is resolved, the value is 6,000 characters long; a description is at most 1,000",
            "test.yaml:10:20: error: schedule 'a', key 'variables.X': once ${VAR} is resolved, the value holds a NUL character (\\0), which GitLab cannot store; remove it",
        ]
    );
}

/// Files that leave the streamed way: each shape it does not read, read the plain way.
const PLAIN_SHAPES: &[&str] = &[
    "",
    "- a\n",
    "just text\n",
    "schedules:\n  a: {cron: '@daily'}\ndefaults: {project: 9}\n",
    "schedules:\n  a: {cron: '@daily'}\nschedules: {}\n",
    "defaults: {}\ndefaults: {}\nschedules: {}\n",
    "schedules:\n  a: {cron: '@daily', project: 9}\n  a: {cron: '@hourly'}\n",
    "schedules: [a, b]\n",
    "schedules: 5\n",
    "defaults: {project: 9}\n",
    "schedules:\n  a: {cron: '@daily'\n",
];

/// Reads `text` both ways, and `load_file`'s way, and checks that they agree: whether the streamed way read it.
fn both_ways(text: &str) -> bool {
    let file = Path::new("/nonexistent/schedules/test.yaml");
    let env: Option<Env> = Some(&env);
    let reader = Reader { dir: Path::new("/nonexistent/schedules"), env };
    let read = |way: &dyn Fn(&mut Reporter) -> Option<Vec<Arc<Schedule>>>| {
        let mut out = Vec::new();
        let mut rep = Reporter { file, scope: Scope::File, out: &mut out };
        let schedules = way(&mut rep);
        out.sort_by(|a, b| (a.pos.line, a.pos.column, &a.message).cmp(&(b.pos.line, b.pos.column, &b.message)));
        (schedules, out)
    };
    let (streamed, streamed_diagnostics) = read(&|rep| stream::read(text, &reader, rep));
    let (plain, plain_diagnostics) = read(&|rep| Some(read_file(yaml::parse(text), &reader, rep)));
    let by_load_file = read(&|rep| Some(load_file(text, file, env, rep)));
    let was_streamed = streamed.is_some();
    let streamed = (streamed.unwrap_or_default(), streamed_diagnostics);
    let plain = (plain.unwrap_or_default(), plain_diagnostics);
    let by_load_file = (by_load_file.0.unwrap_or_default(), by_load_file.1);
    if was_streamed {
        assert_eq!(streamed, plain, "the two ways differ on {text:?}");
    }
    assert_eq!(by_load_file, plain, "load_file differs from the plain way on {text:?}");
    was_streamed
}

#[test]
fn the_streamed_way_reads_every_file_as_the_plain_way_does() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_loader");
    let mut texts: Vec<String> = std::fs::read_dir(&corpus)
        .expect("the fuzzer's corpus of schedule files")
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .collect();
    texts.extend([FILE.to_string(), one("    cron: x\n    cron: y\n    variables: {A: 1, A: 2}\n")]);
    texts.push("x-common: &c {project: 9, project: 8}\ndefaults: {<<: *c, ref: a, ref: b}\nschedules: {}\n".into());
    let streamed = texts.iter().filter(|text| both_ways(text)).count();
    assert!(texts.len() > 500, "{} files", texts.len());
    assert!(streamed > texts.len() / 5, "only {streamed} of {} files were read the streamed way", texts.len());
    for text in PLAIN_SHAPES {
        assert!(!both_ways(text), "{text:?} should be read the plain way");
    }
}

/// Schedules from a YAML body under `schedules:`, all on one fake GitLab, for tests of what uses them.
pub fn schedules(body: &str) -> Vec<std::sync::Arc<crate::schedule::Schedule>> {
    let text = format!(
        "defaults:\n  gitlab: https://gitlab.example.com\n  token: t\n  project: 9\n  ref: main\nschedules:\n{body}"
    );
    let mut out = Vec::new();
    let mut rep = Reporter { file: Path::new("t.yaml"), scope: Scope::File, out: &mut out };
    let loaded = super::load_file(&text, Path::new("t.yaml"), None, &mut rep);
    assert!(out.iter().all(|d| d.severity == Severity::Warning), "{out:?}");
    loaded
}

fn with_api(keys: &str) -> String {
    format!(
        "defaults:\n  gitlab: https://gitlab.example.com/\n  token: ${{TOKEN}}\n{keys}schedules:\n  nightly:\n    \
         cron: \"30 0 * * *\"\n    project: 9\n    ref: main\n"
    )
}

#[test]
fn an_api_token_turns_following_on_with_its_timeout() {
    let text = with_api("  api_token: ${API}\n  follow_timeout: 6h\n");
    let mut out = Vec::new();
    let mut rep = Reporter { file: Path::new("test.yaml"), scope: Scope::File, out: &mut out };
    let env = |name: &str| match name {
        "TOKEN" => Some("glptt-abcdef0123456789".to_string()),
        "API" => Some("glpat-0123456789abcdefABCD".to_string()),
        _ => None,
    };
    let schedules = load_file(&text, Path::new("test.yaml"), Some(&env), &mut rep);
    assert_eq!(out, vec![]);
    let api = schedules[0].api_token.as_deref().expect("followed");
    assert_eq!(api.source, TokenSource::Env(["API".into()].into()));
    assert_eq!(api.secret.as_ref().map(|s| s.expose()), Some("glpat-0123456789abcdefABCD"));
    assert_eq!(api.follow_timeout, Duration::from_secs(6 * 3600));
    assert!(!format!("{api:?}").contains("0123456789abcdef"), "the token never shows in a debug print");

    let (plain, diagnostics) = load_text(&with_api(""), true);
    assert_eq!((plain[0].api_token.as_ref(), diagnostics), (None, vec![]), "without one, nothing is followed");
}

#[test]
fn api_token_mistakes_are_located_and_say_what_would_be_right() {
    let (_, diagnostics) = load_text(&with_api("  api_token: ${TOKEN}\n"), true);
    let found = errors(&diagnostics);
    assert!(
        found.iter().any(|e| e.contains("test.yaml:4:14") && e.contains("trigger token") && e.contains("read_api")),
        "{found:?}"
    );
    assert!(found.iter().all(|e| !e.contains("abcdef0123456789")), "{found:?}");

    let (_, diagnostics) = load_text(&with_api("  api_token: ${TOKEN}\n  api_token_file: api.txt\n"), false);
    assert!(errors(&diagnostics).iter().any(|e| e.contains("either api_token or api_token_file")), "{diagnostics:?}");

    let (_, diagnostics) = load_text(&with_api("  follow_timeout: 2h\n"), false);
    let warning = diagnostics.iter().find(|d| d.severity == Severity::Warning).expect("a warning");
    assert_eq!(warning.key.as_deref(), Some("follow_timeout"));
    assert!(warning.message.contains("without api_token"), "{warning}");

    let (_, diagnostics) = load_text(&with_api("  api_token: ${API}\n  follow_timeout: 0\n"), false);
    assert!(errors(&diagnostics).iter().any(|e| e.contains("follow_timeout of 0")), "{diagnostics:?}");
    let (_, diagnostics) = load_text(&with_api("  api_token: glpat-0123456789abcdefABCD\n"), false);
    let plain = diagnostics.iter().find(|d| d.key.as_deref() == Some("api_token")).expect("a warning");
    assert!(plain.message.contains("plain text") && plain.message.contains("api_token_file"), "{plain}");
}
