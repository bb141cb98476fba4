//! What can be checked of deploy/ without a Docker engine: the compose file validates, the systemd unit verifies,
//! the binary runs from an empty directory with only the image's environment, and the Dockerfile keeps its
//! contract. (The image build itself needs an engine; see the README.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pipecron, repo_path};

/// A tool the deploy checks need: CI installs it (.ci/run), so there it must be present.
fn tool(name: &str) -> bool {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var("CI").is_err(), "{name} is missing; .ci/run installs it");
    found
}

#[test]
fn the_compose_file_validates() {
    if !tool("docker-compose") {
        eprintln!("skipped: docker-compose is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let deploy = dir.path().join("deploy");
    std::fs::create_dir_all(deploy.join("secrets")).expect("creates");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    std::fs::copy(repo_path("deploy/docker-compose.yml"), deploy.join("docker-compose.yml")).expect("copies");
    std::fs::copy(repo_path("deploy/.env.example"), deploy.join(".env")).expect("copies");
    std::fs::write(deploy.join("secrets/nightly_trigger_token"), "glptt-example\n").expect("writes");
    let output = Command::new("docker-compose").args(["config"]).current_dir(&deploy).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("restart: unless-stopped"), "{stdout}");
    assert!(stdout.contains("/etc/pipecron/schedules"), "{stdout}");
    assert!(
        stdout.contains("read_only: true") || stdout.contains(":ro"),
        "the schedules are mounted read-only: {stdout}"
    );
    assert!(stdout.contains("/var/lib/pipecron"), "{stdout}");
    assert!(stdout.contains("NIGHTLY_TRIGGER_TOKEN"), "the .env file is read: {stdout}");
}

#[test]
fn the_systemd_unit_verifies() {
    if !tool("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(repo_path("deploy/pipecron.service")).expect("reads");
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=pipecron",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "EnvironmentFile=",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("pipecron.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/pipecron", env!("CARGO_BIN_EXE_pipecron"))).expect("writes");
    let output = Command::new("systemd-analyze").args(["verify"]).arg(&path).output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn runs_from_an_empty_directory_with_only_the_images_environment() {
    let root = tempfile::tempdir().expect("a temp dir");
    let (empty, schedules, state) =
        (root.path().join("cwd"), root.path().join("etc/schedules"), root.path().join("var/lib/pipecron"));
    for dir in [&empty, &schedules] {
        std::fs::create_dir_all(dir).expect("creates");
    }
    std::fs::write(root.path().join("token"), "glptt-example\n").expect("writes");
    let token = root.path().join("token");
    std::fs::write(
        schedules.join("s.yaml"),
        format!("schedules:\n  nightly:\n    cron: \"30 0 * * *\"\n    gitlab: https://gitlab.example.com\n    token_file: {}\n    project: 9\n    ref: main\n", token.display()),
    )
    .expect("writes");
    let db = state.join("pipecron.db");
    let child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--log-format", "json"])
        .current_dir(&empty)
        .env_clear()
        .env("PIPECRON_SCHEDULES", &schedules)
        .env("PIPECRON_STATE", &db)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = Pipecron::new()
        .current_dir(&empty)
        .env("PIPECRON_SCHEDULES", path(&schedules))
        .env("PIPECRON_STATE", path(&db));
    let health = health.args(["status", "--quiet"]).run();
    assert_eq!((health.status, health.stdout.as_str()), (0, ""), "{health:#?}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().is_ok_and(|s| s.success()));
    let output = child.wait_with_output().expect("exits");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(db.exists(), "the state file was created in its directory");
    assert_eq!(std::fs::read_dir(&empty).expect("lists").count(), 0, "nothing was written to the working directory");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn the_dockerfile_keeps_its_contract() {
    let dockerfile = std::fs::read_to_string(repo_path("deploy/Dockerfile")).expect("reads");
    for line in [
        "cargo build --release --locked",
        "USER nonroot",
        "ENTRYPOINT [\"pipecron\"]",
        "CMD [\"run\"",
        "HEALTHCHECK",
        "VOLUME [\"/var/lib/pipecron\"]",
        "PIPECRON_SCHEDULES=/etc/pipecron/schedules",
        "PIPECRON_STATE=/var/lib/pipecron/pipecron.db",
    ] {
        assert!(dockerfile.contains(line), "the Dockerfile lacks {line}");
    }
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "a two-stage build"
    );
}
