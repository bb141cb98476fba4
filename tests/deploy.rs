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
    // Loopback in a container is unreachable from outside: all its interfaces, published on the host's loopback.
    let pipecron = service(&stdout, "pipecron");
    assert_eq!(entry(&pipecron, "PIPECRON_LISTEN").as_deref(), Some("0.0.0.0:8466"), "{pipecron}");
    assert!(pipecron.contains("127.0.0.1:8466:8466"), "published on the host's loopback only: {pipecron}");
}

#[test]
fn the_ha_compose_file_validates() {
    if !tool("docker-compose") {
        eprintln!("skipped: docker-compose is not installed");
        return;
    }
    const PASSWORD: &str = "pg-test-password-4711";
    let dir = tempfile::tempdir().expect("a temp dir");
    let deploy = dir.path().join("deploy");
    std::fs::create_dir_all(deploy.join("secrets")).expect("creates");
    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    std::fs::copy(repo_path("deploy/docker-compose.ha.yml"), deploy.join("docker-compose.ha.yml")).expect("copies");
    std::fs::write(deploy.join("secrets/nightly_trigger_token"), "glptt-example\n").expect("writes");
    let example = std::fs::read_to_string(repo_path("deploy/.env.example")).expect("reads");
    assert!(
        example.lines().any(|l| l.starts_with("PIPECRON_PG_PASSWORD=")),
        ".env.example names the database password"
    );
    let env: String = example
        .lines()
        .map(|l| {
            if l.starts_with("PIPECRON_PG_PASSWORD=") {
                format!("PIPECRON_PG_PASSWORD={PASSWORD}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let config = || {
        Command::new("docker-compose")
            .args(["-f", "deploy/docker-compose.ha.yml", "config"])
            .current_dir(dir.path())
            // Compose prefers the environment to .env: only the file may supply the password here.
            .env_remove("PIPECRON_PG_PASSWORD")
            .output()
            .expect("runs")
    };

    // Without a password compose refuses, rather than start PostgreSQL and the replicas with an empty one.
    let without: String =
        env.lines().filter(|l| !l.starts_with("PIPECRON_PG_PASSWORD=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(deploy.join(".env"), without).expect("writes");
    let output = config();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("PIPECRON_PG_PASSWORD"), "{stderr}");

    std::fs::write(deploy.join(".env"), env).expect("writes");
    let output = config();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let postgres = service(&stdout, "postgres");
    assert!(postgres.contains("postgres:16"), "{postgres}");
    assert!(postgres.contains("pg_isready"), "{postgres}");
    assert_eq!(entry(&postgres, "POSTGRES_DB").as_deref(), Some("pipecron"), "{postgres}");
    assert_eq!(entry(&postgres, "POSTGRES_USER").as_deref(), Some("pipecron"), "{postgres}");
    assert_eq!(entry(&postgres, "POSTGRES_PASSWORD").as_deref(), Some(PASSWORD), "{postgres}");
    assert_eq!(postgres.matches(PASSWORD).count(), 1, "the password only in POSTGRES_PASSWORD: {postgres}");
    let mut found = postgres.matches(PASSWORD).count();
    for name in ["pipecron-1", "pipecron-2"] {
        let replica = service(&stdout, name);
        let state = entry(&replica, "PIPECRON_STATE").unwrap_or_default();
        assert!(state.starts_with("postgres://"), "{name}: {replica}");
        assert!(
            state.starts_with(&format!("postgres://pipecron:{PASSWORD}@postgres:5432/pipecron")),
            "{name}: {state}"
        );
        // The password is in the state URL, and (through env_file: .env, with the trigger tokens) in the
        // replica's environment, where pipecron could resolve ${PIPECRON_PG_PASSWORD} itself.
        let lines: Vec<&str> = replica.lines().filter(|l| l.contains(PASSWORD)).collect();
        for line in &lines {
            let line = line.trim_start().trim_start_matches("- ");
            assert!(
                line.starts_with("PIPECRON_STATE") || line.starts_with("PIPECRON_PG_PASSWORD"),
                "{name}: the password where it does not belong: {line}"
            );
        }
        found += lines.len();
        assert_eq!(entry(&replica, "hostname").as_deref(), Some(name), "{replica}");
        assert_eq!(entry(&replica, "PIPECRON_LISTEN").as_deref(), Some("0.0.0.0:8466"), "{replica}");
        let port = if name == "pipecron-1" { "127.0.0.1:8466:8466" } else { "127.0.0.1:8467:8466" };
        assert!(replica.contains(port), "{name} is published on the host's loopback: {replica}");
        assert!(replica.contains("restart: unless-stopped"), "{name}: {replica}");
        assert!(replica.contains("NIGHTLY_TRIGGER_TOKEN"), "{name}: the .env file is read: {replica}");
        assert!(replica.contains("nightly_trigger_token"), "{name}: the secret is passed: {replica}");
        assert!(replica.contains("/etc/pipecron/schedules"), "{name}: {replica}");
        assert!(
            replica.contains("read_only: true") || replica.contains("/etc/pipecron/schedules:ro"),
            "{name}: the schedules are mounted read-only: {replica}"
        );
        assert!(
            !replica.contains("/var/lib/pipecron"),
            "{name}: no state volume, the state is in PostgreSQL: {replica}"
        );
        let depends = block(&replica, "depends_on");
        assert!(
            block(&depends, "postgres").contains("condition: service_healthy"),
            "{name} waits for a healthy postgres: {replica}"
        );
    }
    assert_eq!(stdout.matches(PASSWORD).count(), found, "the password outside the services' expected places: {stdout}");
}

/// The lines nested under the `key:` line at the top level of `yaml` (a rendered compose file, or a block of one).
fn block(yaml: &str, key: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let depth = yaml.lines().filter(|l| !l.trim().is_empty()).map(indent).min().unwrap_or(0);
    let mut lines = yaml.lines().skip_while(|l| indent(l) != depth || l.trim_start() != format!("{key}:"));
    if lines.next().is_none() {
        return String::new();
    }
    lines.take_while(|l| l.trim().is_empty() || indent(l) > depth).map(|l| format!("{l}\n")).collect()
}

/// A service of the rendered compose file.
fn service(config: &str, name: &str) -> String {
    let service = block(&block(config, "services"), name);
    assert!(!service.trim().is_empty(), "no service {name}: {config}");
    service
}

/// The value of `key: value` (or `- key=value`) in a block, unquoted.
fn entry(yaml: &str, key: &str) -> Option<String> {
    yaml.lines().find_map(|l| {
        let l = l.trim_start().trim_start_matches("- ");
        let value = l.strip_prefix(key)?.strip_prefix(": ").or_else(|| l.strip_prefix(key)?.strip_prefix('='))?;
        Some(value.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
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
        "PIPECRON_LISTEN=127.0.0.1:8466",
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
    // As in the compose file: all interfaces, on a port the health check is told through the same variable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let listen = format!("0.0.0.0:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--log-format", "json"])
        .current_dir(&empty)
        .env_clear()
        .env("PIPECRON_SCHEDULES", &schedules)
        .env("PIPECRON_STATE", &db)
        .env("PIPECRON_LISTEN", &listen)
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
    // The image's HEALTHCHECK: the daemon's /healthz, asked by the binary itself (no shell, no curl).
    let healthcheck = || Pipecron::new().env("PIPECRON_LISTEN", &listen).args(["healthcheck"]).run();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut health = healthcheck();
    while health.status != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        health = healthcheck();
    }
    assert_eq!((health.status, health.stdout.as_str()), (0, ""), "{health:#?}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().is_ok_and(|s| s.success()));
    let output = child.wait_with_output().expect("exits");
    let health = healthcheck();
    assert_eq!(health.status, 1, "a stopped daemon is unhealthy: {health:#?}");
    assert!(health.stderr.contains("unhealthy") && health.stderr.contains(&format!("127.0.0.1:{port}")), "{health:#?}");
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
        "CMD [\"pipecron\", \"healthcheck\"]",
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
