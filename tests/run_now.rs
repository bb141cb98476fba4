//! `run-now`, `status`, `history` and `check --online` through the real binary, against the fake GitLab.

mod common;

use common::fake_gitlab::{FakeGitlab, OTHER_TOKEN, Scripted, TOKEN};
use common::{Pipecron, Run};
use serde_json::json;

/// A schedules directory and a state file in a temp dir, pointed at a fake GitLab.
struct Setup {
    dir: tempfile::TempDir,
    fake: FakeGitlab,
}

impl Setup {
    fn new(fake: FakeGitlab) -> Self {
        let url = fake.start_in_background();
        let dir = tempfile::tempdir().expect("a temp dir");
        let schedules = dir.path().join("schedules");
        std::fs::create_dir(&schedules).expect("creates");
        let text = format!(
            "defaults:
  gitlab: {url}
  token: ${{TRIGGER_TOKEN}}
  project: 9
schedules:
  nightly:
    cron: \"30 0 * * *\"
    ref: master
    variables:
      UPLOAD_TO_S3: \"true\"
  by-path:
    cron: \"0 6 * * MON\"
    project: group/sub/project
    ref: feature/x
  typed-inputs:
    cron: \"@daily\"
    ref: main
    inputs:
      level: 3
      tags: [a, b]
  legacy:
    cron: \"@daily\"
    ref: master
    api: v3
  wrong-token:
    cron: \"@daily\"
    ref: master
    token: ${{OTHER_TOKEN}}
  missing-ref:
    cron: \"@daily\"
    ref: gone
  paused:
    cron: \"@daily\"
    ref: master
    enabled: false
"
        );
        std::fs::write(schedules.join("s.yaml"), text).expect("writes");
        Setup { dir, fake }
    }

    fn pipecron(&self) -> Pipecron {
        Pipecron::new().current_dir(self.dir.path()).env("TRIGGER_TOKEN", TOKEN).env("OTHER_TOKEN", OTHER_TOKEN)
    }

    fn run(&self, args: &[&str]) -> Run {
        let run = self.pipecron().args(args).run();
        assert!(!run.stdout.contains(&TOKEN[10..]) && !run.stderr.contains(&TOKEN[10..]), "token shown: {run:#?}");
        assert!(!run.stdout.contains(&OTHER_TOKEN[10..]) && !run.stderr.contains(&OTHER_TOKEN[10..]), "{run:#?}");
        run
    }

    fn database_holds_no_token(&self) {
        for file in ["pipecron.db", "pipecron.db-wal"] {
            let bytes = std::fs::read(self.dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&TOKEN[6..]) && !text.contains(&OTHER_TOKEN[6..]), "{file} holds a token");
        }
    }
}

#[test]
fn run_now_creates_a_pipeline_and_records_it() {
    let setup = Setup::new(FakeGitlab::new());
    let run = setup.run(&["run-now", "nightly"]).success();
    assert_eq!(
        run.stdout,
        "pipeline 1001 created for 'nightly' on master: https://gitlab.example.com/group/sub/project/-/pipelines/1001\n"
    );
    let [request] = setup.fake.requests().try_into().expect("one request");
    assert_eq!(request.raw_path, "/api/v4/projects/9/trigger/pipeline");
    assert_eq!(request.params["ref"], json!("master"));
    assert_eq!(request.params["variables"]["UPLOAD_TO_S3"], json!("true"));
    assert_eq!(request.params["variables"]["PIPECRON_REASON"], json!("run-now"));
    assert_eq!(request.params["variables"]["PIPECRON_SCHEDULE"], json!("nightly"));

    let history = setup.run(&["history", "--json"]).success();
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    assert_eq!(runs[0]["schedule"], json!("nightly"));
    assert_eq!(runs[0]["state"], json!("succeeded"));
    assert_eq!(runs[0]["reason"], json!("run-now"));
    assert_eq!(runs[0]["pipeline"]["id"], json!(1001));
    // The slot sent to GitLab is the one recorded.
    assert_eq!(runs[0]["slot"], request.params["variables"]["PIPECRON_SLOT"]);
    setup.database_holds_no_token();
}

#[test]
fn run_now_sends_each_kind_of_request_correctly() {
    let setup = Setup::new(FakeGitlab::new().with_v3());
    setup.run(&["run-now", "by-path"]).success();
    setup.run(&["run-now", "typed-inputs"]).success();
    setup.run(&["run-now", "legacy"]).success();
    setup.run(&["run-now", "nightly", "--ref", "v1.0", "--var", "EXTRA=1", "--var", "UPLOAD_TO_S3=false"]).success();
    let requests = setup.fake.requests();
    assert_eq!(requests[0].raw_path, "/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline");
    assert_eq!(requests[0].params["ref"], json!("feature/x"));
    assert_eq!(requests[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(requests[1].params["inputs"], json!({"level": 3, "tags": ["a", "b"]}));
    assert_eq!(requests[2].raw_path, "/api/v3/projects/9/trigger/builds");
    assert_eq!(requests[3].params["ref"], json!("v1.0"));
    assert_eq!(requests[3].params["variables"]["EXTRA"], json!("1"));
    assert_eq!(requests[3].params["variables"]["UPLOAD_TO_S3"], json!("false"));
    assert!(requests.iter().all(|r| r.query.is_none() && r.params["token"] == json!(TOKEN)));
}

#[test]
fn each_failure_class_has_its_message_and_exit_status() {
    let setup = Setup::new(FakeGitlab::new());
    let refused = setup.run(&["run-now", "wrong-token"]);
    assert_eq!(refused.status, 3, "{refused:#?}");
    assert!(refused.stderr.contains("GitLab answered 404: the project does not exist, or the trigger token is wrong"));
    let missing = setup.run(&["run-now", "missing-ref"]);
    assert_eq!(missing.status, 3, "{missing:#?}");
    assert!(missing.stderr.contains("ref 'gone' is not a branch or tag of project 9"), "{missing:#?}");
    let v3 = setup.run(&["run-now", "legacy"]);
    assert_eq!(v3.status, 3);
    assert!(v3.stderr.contains("this GitLab no longer serves API v3: set `api: v4`"));

    setup.fake.script([Scripted::Status(503, "down".into()), Scripted::Status(503, "down".into())]);
    let dir = setup.dir.path().join("schedules/s.yaml");
    let text = std::fs::read_to_string(&dir).expect("reads").replace("  project: 9\n", "  project: 9\n  retries: 1\n");
    std::fs::write(&dir, text).expect("writes");
    let gave_up = setup.run(&["run-now", "nightly"]);
    assert_eq!(gave_up.status, 4, "{gave_up:#?}");
    assert!(gave_up.stderr.contains("attempt 1 failed: GitLab answered 503"), "{gave_up:#?}");
    assert!(gave_up.stderr.contains("gave up after 2 attempts"), "{gave_up:#?}");

    setup.fake.script([Scripted::Delay(std::time::Duration::from_secs(5))]);
    let text =
        std::fs::read_to_string(&dir).expect("reads").replace("  retries: 1\n", "  retries: 0\n  timeout: 300ms\n");
    std::fs::write(&dir, text).expect("writes");
    let unknown = setup.run(&["run-now", "nightly"]);
    assert_eq!(unknown.status, 5, "{unknown:#?}");
    assert!(unknown.stderr.contains("a pipeline may have been created"), "{unknown:#?}");

    let history = setup.run(&["history", "--json"]).success();
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    let states: Vec<&str> =
        runs.as_array().expect("a list").iter().map(|r| r["state"].as_str().unwrap_or("")).collect();
    assert_eq!(states, ["unknown", "failed", "failed", "failed", "failed"]);
    setup.database_holds_no_token();
}

#[test]
fn dry_run_prints_the_request_with_the_token_masked_and_sends_nothing() {
    let setup = Setup::new(FakeGitlab::new());
    let run = setup.run(&["run-now", "nightly", "--dry-run"]).success();
    assert!(run.stdout.starts_with("POST http://127.0.0.1:"), "{}", run.stdout);
    assert!(run.stdout.contains("/api/v4/projects/9/trigger/pipeline\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  token=glptt-a1b2…\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  ref=master\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  variables[UPLOAD_TO_S3]=true\n"), "{}", run.stdout);
    assert!(setup.fake.requests().is_empty());
    assert!(!setup.dir.path().join("pipecron.db").exists(), "a dry run records nothing");
}

#[test]
fn status_shows_every_schedule_with_its_last_run() {
    let setup = Setup::new(FakeGitlab::new());
    setup.run(&["run-now", "nightly"]).success();
    let _ = setup.run(&["run-now", "missing-ref"]);
    let table = setup.run(&["status"]).success().stdout;
    let line = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(table.starts_with("SCHEDULE"), "{table}");
    assert!(line("nightly ").contains("glptt-a1b2…"), "{table}");
    assert!(line("nightly ").contains("succeeded #1001"), "{table}");
    assert!(line("missing-ref").contains("failed"), "{table}");
    assert!(line("by-path").contains("never"), "{table}");
    assert!(line("by-path").contains("group/sub/project"), "{table}");
    assert!(line("paused").ends_with("paused"), "{table}");
    assert!(line("wrong-token").contains("glptt-ffff…"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&setup.run(&["status", "--json"]).success().stdout).expect("JSON");
    let nightly = &json.as_array().expect("a list")[0];
    assert_eq!(nightly["name"], json!("nightly"));
    assert_eq!(nightly["token"], json!("glptt-a1b2…"));
    assert_eq!(
        nightly["last_run"]["pipeline"]["web_url"],
        json!("https://gitlab.example.com/group/sub/project/-/pipelines/1001")
    );
    assert!(nightly["next_run"].as_str().is_some_and(|t| t.contains("T00:30:00+00:00")), "{nightly}");
}

#[test]
fn history_lists_runs_newest_first_and_filters_by_name() {
    let setup = Setup::new(FakeGitlab::new());
    setup.run(&["run-now", "nightly"]).success();
    setup.run(&["run-now", "by-path"]).success();
    setup.run(&["run-now", "nightly"]).success();
    let all = setup.run(&["history"]).success().stdout;
    let names: Vec<&str> = all.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap_or("")).collect();
    assert_eq!(names, ["nightly", "by-path", "nightly"], "{all}");
    let one = setup.run(&["history", "by-path", "--limit", "5"]).success().stdout;
    assert_eq!(one.lines().count(), 2, "{one}");
    let limited = setup.run(&["history", "--limit", "1", "--json"]).success().stdout;
    let runs: serde_json::Value = serde_json::from_str(&limited).expect("JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["pipeline"]["id"], json!(1003));
}

#[test]
fn check_online_proves_tokens_without_creating_pipelines() {
    let setup = Setup::new(FakeGitlab::new().with_v3());
    let run = setup.run(&["check", "--online"]);
    assert_eq!(run.status, 1, "{run:#?}");
    let line = |name: &str| {
        run.stdout.lines().find(|l| l.starts_with(name) && l.contains("online")).unwrap_or_default().to_string()
    };
    assert!(line("nightly ").contains("online ok"), "{}", run.stdout);
    assert!(line("wrong-token").contains("online FAILED: GitLab answered 404"), "{}", run.stdout);
    assert!(run.stderr.contains("1 of 7 schedules failed the online check"), "{run:#?}");
    assert!(setup.fake.requests().iter().all(|r| r.params["ref"] == json!("pipecron..online-check")));
    assert!(!setup.dir.path().join("pipecron.db").exists(), "the online check records nothing");
}

#[test]
fn http_proxy_is_honoured_and_no_proxy_bypasses_it() {
    let fake = FakeGitlab::new();
    // The fake routes on the path, so it also answers requests that a proxy is sent in absolute form.
    let proxy = fake.start_in_background();
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    let text = "schedules:\n  behind-proxy:\n    cron: \"@daily\"\n    gitlab: http://gitlab.invalid\n    \
                allow_http: true\n    token: ${TRIGGER_TOKEN}\n    project: 9\n    ref: master\n    retries: 0\n";
    std::fs::write(dir.path().join("schedules/s.yaml"), text).expect("writes");
    let pipecron = || Pipecron::new().current_dir(dir.path()).env("TRIGGER_TOKEN", TOKEN).env("HTTP_PROXY", &proxy);

    pipecron().args(["run-now", "behind-proxy"]).run().success();
    let [request] = fake.requests().try_into().expect("one request, through the proxy");
    assert_eq!(request.raw_path, "/api/v4/projects/9/trigger/pipeline");
    assert_eq!(request.params["token"], json!(TOKEN));

    // Past the proxy, the name does not resolve: the run fails before anything is sent.
    let direct = pipecron().env("NO_PROXY", "gitlab.invalid").args(["run-now", "behind-proxy"]).run();
    assert_ne!(direct.status, 0, "{direct:#?}");
    assert!(direct.stderr.contains("cannot connect to gitlab.invalid"), "{direct:#?}");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn run_now_status_and_history_work_on_postgres_and_the_token_stays_out_of_it() {
    let Some(db) = common::pg::TempDatabase::create() else { return };
    let setup = Setup::new(FakeGitlab::new());
    let state = db.url();
    setup.run(&["--state", &state, "run-now", "nightly"]).success();
    let history = setup.run(&["--state", &state, "history", "--json"]).success();
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    assert_eq!(runs[0]["state"], json!("succeeded"));
    assert_eq!(runs[0]["pipeline"]["id"], json!(1001));
    let owner = runs[0]["owner"].as_str().expect("an owner");
    let (host, pid) = owner.rsplit_once(':').expect("HOST:PID");
    assert!(!host.is_empty() && pid.parse::<u32>().is_ok(), "{owner}");
    let status = setup.run(&["--state", &state, "status", "--json"]).success();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    let nightly = rows.as_array().expect("rows").iter().find(|r| r["name"] == json!("nightly")).expect("nightly");
    assert_eq!(nightly["last_run"]["state"], json!("succeeded"));
    let stored = db.psql("SELECT string_agg(coalesce(error, '') || coalesce(web_url, '') || owner, ' ') FROM runs");
    assert!(!stored.contains(&TOKEN[6..]), "the database holds no token");
    assert_eq!(db.psql("SELECT count(*) FROM replicas"), "0", "run-now deregisters when it is done");
}

#[test]
fn status_says_when_the_postgres_store_is_unreachable_and_never_shows_the_password() {
    let setup = Setup::new(FakeGitlab::new());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("an address").port();
    let state = format!("postgres://pipecron:${{PGPASSWORD}}@127.0.0.1:{port}/pipecron?sslmode=disable");
    let run = setup.pipecron().env("PGPASSWORD", "hunter2-pw").args(["--state", &state, "status"]).run();
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(run.stderr.contains(&format!("postgres://pipecron:***@127.0.0.1:{port}/pipecron")), "{run:#?}");
    assert!(run.stderr.contains("is unreachable"), "{run:#?}");
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    let quiet = setup.pipecron().env("PGPASSWORD", "hunter2-pw").args(["--state", &state, "status", "--quiet"]).run();
    assert_eq!(quiet.status, 1, "the health check fails: {quiet:#?}");
}

#[test]
fn three_processes_starting_on_a_new_state_file_at_once_all_succeed() {
    let setup = Setup::new(FakeGitlab::new());
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let command = setup.pipecron().args(["--state", "fresh/state.db", "history"]);
            std::thread::spawn(move || command.run())
        })
        .collect();
    for run in runs {
        let run = run.join().expect("joins");
        assert_eq!(run.status, 0, "{run:#?}");
    }
}
