//! `pipecron import-crontab` through the real binary, and the round trip: import, check, then a dry run that sends
//! what the curl line sent.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Pipecron, Run};

const CRONTAB: &str = r#"CRON_TZ=Europe/Berlin
# nightly build, from GitLab's docs
30 0 * * * curl --request POST --form token=glptt-1234abcd5678ef90 --form ref=master --form "variables[UPLOAD_TO_S3]=true" https://gitlab.example.com/api/v4/projects/9/trigger/pipeline
0 6 * * 1 curl -X POST \
  -F token=glptt-1234abcd5678ef90 \
  -F ref=feature/x \
  "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline"
15 3 * * * curl -X POST https://gitlab.example.com/api/v4/projects/9/ref/v1.0/trigger/pipeline?token=glptt-ffff0000ffff0000
0 2 * * * curl -X POST -F token=legacytoken -F ref=master https://gitlab.example.com/api/v3/projects/9/trigger/builds
0 4 * * * /usr/local/bin/cleanup.sh
"#;

#[test]
fn import_check_and_dry_run_send_what_curl_sent() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let crontab = dir.path().join("crontab");
    std::fs::write(&crontab, CRONTAB).expect("writes");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    let env_file = dir.path().join(".env");
    let run = Pipecron::new()
        .current_dir(dir.path())
        .args(["import-crontab"])
        .args([&crontab])
        .args(["--write-env"])
        .args([&env_file])
        .run()
        .success();
    assert!(!run.stdout.contains("1234abcd5678ef90") && !run.stdout.contains("ffff0000ffff0000"), "{}", run.stdout);
    assert!(run.stdout.contains("# line 10, not imported: no curl command"), "{}", run.stdout);
    std::fs::write(dir.path().join("schedules/imported.yaml"), &run.stdout).expect("writes");

    let env = std::fs::read_to_string(&env_file).expect("the .env file");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env_file).expect("exists").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let with_env =
        |pipecron: Pipecron| env.lines().filter_map(|l| l.split_once('=')).fold(pipecron, |p, (k, v)| p.env(k, v));
    let check = with_env(Pipecron::new().current_dir(dir.path()).args(["check"])).run().success();
    assert!(check.stdout.contains("ok: 4 schedules in 1 file"), "{check:#?}");
    assert!(check.stdout.contains("Europe/Berlin"), "{}", check.stdout);

    let dry = |name: &str| {
        with_env(Pipecron::new().current_dir(dir.path()).args(["run-now", name, "--dry-run"])).run().success().stdout
    };
    let nightly = dry("9-master");
    assert!(nightly.starts_with("POST https://gitlab.example.com/api/v4/projects/9/trigger/pipeline\n"), "{nightly}");
    assert!(nightly.contains("  token=glptt-1234…\n") && nightly.contains("  ref=master\n"), "{nightly}");
    assert!(nightly.contains("  variables[UPLOAD_TO_S3]=true\n"), "{nightly}");
    let by_path = dry("group-sub-project-feature-x");
    assert!(
        by_path.starts_with("POST https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline\n"),
        "{by_path}"
    );
    assert!(by_path.contains("  ref=feature/x\n"), "{by_path}");
    let webhook = dry("9-v1.0");
    assert!(webhook.contains("  ref=v1.0\n") && webhook.contains("  token=glptt-ffff…\n"), "{webhook}");
    let legacy = dry("9-master-2");
    assert!(legacy.starts_with("POST https://gitlab.example.com/api/v3/projects/9/trigger/builds\n"), "{legacy}");
    assert!(legacy.contains("  token=lega…\n"), "{legacy}");
}

/// `pipecron import-crontab -` with `input` on its standard input.
fn import_stdin(input: Vec<u8>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
        .args(["import-crontab", "-"])
        .env_clear()
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the pipecron binary runs");
    let mut stdin = child.stdin.take().expect("a pipe");
    // Written from a thread of its own: a child that answers as it reads must not wait on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("it ends");
    writer.join().expect("writes").expect("the child reads it all");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("the YAML is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `pipecron check` on `yaml` as the one schedule file, with `env` set.
fn check(yaml: &str, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    std::fs::write(dir.path().join("schedules/imported.yaml"), yaml).expect("writes");
    env.iter().fold(Pipecron::new().current_dir(dir.path()).args(["check"]), |p, (k, v)| p.env(k, v)).run()
}

const URL: &str = "https://gitlab.example.com/api/v4/projects/9/trigger/pipeline";

#[test]
fn reads_standard_input() {
    let crontab = "45 3 * * 2 curl -F token=$STDIN_TOKEN -F ref=from-stdin \\\n  https://gitlab.example.com/api/v4/projects/42/trigger/pipeline\n";
    let run = import_stdin(crontab.into()).success();
    assert!(run.stdout.contains("  42-from-stdin:\n    cron: \"45 3 * * 2\"\n"), "{}", run.stdout);
    assert!(run.stdout.contains("    token: ${STDIN_TOKEN}\n"), "{}", run.stdout);
}

#[test]
fn a_line_with_unbalanced_quotes_is_reported_by_number_and_the_others_imported() {
    let crontab =
        format!("0 1 * * * curl -F token=$T -F ref=main {URL}\n0 2 * * * curl -F 'token=$T -F ref=main {URL}\n");
    let run = import_stdin(crontab.into_bytes()).success();
    assert!(
        run.stdout.contains("# line 2, not imported: the command's quoting is unbalanced: the ' before"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("line 2: not imported: the command's quoting is unbalanced"), "{}", run.stderr);
    check(&run.stdout, &[("T", "t")]).success().stdout_is_ok(1);
}

#[test]
fn a_100_kb_line_is_refused_and_not_echoed() {
    let line = format!("0 1 * * * curl -F token=$T -F ref=main -F 'variables[A]={}' {URL}\n", "x".repeat(100 * 1024));
    let run = import_stdin(line.clone().into_bytes()).success();
    let why = format!("line 1: not imported: the line is {} bytes long; at most 16384 are read", line.len() - 1);
    assert!(run.stderr.contains(&why), "{}", run.stderr);
    assert!(run.stdout.len() < 1024, "{} bytes of output", run.stdout.len());
}

#[test]
fn binary_data_is_reported_line_by_line_and_the_output_stays_valid_yaml() {
    // Every byte value, in a scrambled order, cut into lines; then one good line.
    let mut crontab: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let good = format!("\n0 1 * * * curl -F token=$T -F ref=main {URL}\n");
    crontab.extend_from_slice(good.as_bytes());
    let lines = crontab.split(|b| *b == b'\n').count();
    let run = import_stdin(crontab.clone()).success();
    assert!(run.stderr.contains(": not imported: the line is not UTF-8 text (byte "), "{}", run.stderr);
    assert!(run.stderr.contains("more lines not imported; the output lists them all as comments"), "{}", run.stderr);
    assert!(run.stderr.lines().count() <= 21, "{}", run.stderr);
    assert!(!run.stdout.chars().any(|c| c.is_control() && c != '\n'), "{:?}", run.stdout);
    assert!(run.stdout.len() < 2 * crontab.len() + 400 * lines, "{} bytes of output", run.stdout.len());
    check(&run.stdout, &[("T", "t")]).success().stdout_is_ok(1);
}

#[test]
fn a_curl_line_with_500_form_fields_imports() {
    let fields: String = (0..498).map(|i| format!("-F 'variables[V{i}]=value {i}' ")).collect();
    let line = format!("0 1 * * * curl -F token=$T -F ref=main {fields}{URL}\n");
    let run = import_stdin(line.clone().into_bytes()).success();
    assert!(run.stdout.contains("      V497: \"value 497\"\n"), "{}", run.stdout);
    assert!(run.stdout.len() < 2 * line.len(), "{} bytes of output", run.stdout.len());
    check(&run.stdout, &[("T", "t")]).success().stdout_is_ok(1);
}

#[test]
fn an_existing_env_file_is_made_private_before_the_tokens_go_in() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (crontab, env_file) = (dir.path().join("crontab"), dir.path().join(".env"));
    std::fs::write(&crontab, format!("0 1 * * * curl -F token=glptt-secret -F ref=main {URL}\n")).expect("writes");
    std::fs::write(&env_file, "OLD=1\n").expect("writes");
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).expect("sets");
    Pipecron::new().args(["import-crontab"]).args([&crontab]).args(["--write-env"]).args([&env_file]).run().success();
    let mode = std::fs::metadata(&env_file).expect("exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&env_file).expect("reads"), "TRIGGER_TOKEN_9_MAIN=glptt-secret\n");
}

trait CheckOk {
    fn stdout_is_ok(self, schedules: usize) -> Self;
}

impl CheckOk for Run {
    /// `check` found `schedules` schedules in the one file.
    fn stdout_is_ok(self, schedules: usize) -> Self {
        let plural = if schedules == 1 { "" } else { "s" };
        let ok = format!("ok: {schedules} schedule{plural} in 1 file");
        assert!(self.stdout.contains(&ok), "{self:#?}");
        self
    }
}
