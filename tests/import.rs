//! `pipecron import-crontab` through the real binary, and the round trip: import, check, then a dry run that sends
//! what the curl line sent.

mod common;

use common::Pipecron;

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
    assert!(run.stdout.contains("# not imported (no curl command"), "{}", run.stdout);
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

#[test]
fn reads_standard_input() {
    let run = Pipecron::new().args(["import-crontab", "-"]).run();
    assert_eq!(run.status, 0, "{run:#?}");
    assert!(run.stdout.contains("schedules:"), "{}", run.stdout);
}
