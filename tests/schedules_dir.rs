//! The schedules directory under abuse, with a daemon running on it: deleted, swapped by symlink as a Kubernetes
//! ConfigMap is, made unreadable, holding a huge file. In every case the daemon keeps firing the last good
//! configuration and says why, in its log and on `/readyz`; once the directory is good again, it loads it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http, setup, slots_by_schedule, write_schedules};
use common::fake_gitlab::FakeGitlab;

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Polls until `probe` holds, for at most 10 s.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        sleep(100);
    }
}

fn fired(fake: &FakeGitlab, name: &str) -> usize {
    slots_by_schedule(fake).get(name).map_or(0, Vec::len)
}

fn url_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("reads");
    text.lines().find_map(|l| l.strip_prefix("  gitlab: ")).expect("a url").to_string()
}

#[test]
fn a_deleted_directory_keeps_the_last_config_and_a_new_one_is_loaded() {
    let fake = FakeGitlab::new();
    let (dir, file) = setup(&fake, "  first:\n    cron: \"* * * * * *\"\n");
    let url = url_of(&file);
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    let addr = daemon.listening();
    eventually("first fires", || fired(&fake, "first") >= 1);
    std::fs::remove_dir_all(dir.path().join("schedules")).expect("removes");
    eventually("the reload is refused", || http(&addr, "GET", "/readyz").1.contains("refused"));
    let before = fired(&fake, "first");
    eventually("first keeps firing", || fired(&fake, "first") >= before + 2);

    std::fs::create_dir(dir.path().join("schedules")).expect("creates");
    write_schedules(&dir.path().join("schedules/s.yaml"), &url, "  second:\n    cron: \"* * * * * *\"\n");
    eventually("the new directory is loaded", || fired(&fake, "second") >= 1);
    assert_eq!(http(&addr, "GET", "/readyz").1, "ready\n");
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("schedules"), "{logs}");
}

#[test]
fn a_configmap_style_symlink_swap_is_loaded() {
    let fake = FakeGitlab::new();
    let (dir, file) = setup(&fake, "");
    let url = url_of(&file);
    // As the kubelet lays out a ConfigMap: the files are links through `..data`, a link to a timestamped directory;
    // an update writes a new directory and renames a new `..data` link over the old one.
    let mount = dir.path().join("schedules");
    std::fs::remove_file(&file).expect("removes");
    let version = |name: &str, body: &str| {
        let data = mount.join(name);
        std::fs::create_dir(&data).expect("creates");
        write_schedules(&data.join("s.yaml"), &url, body);
    };
    version("..2026_11_26_01", "  first:\n    cron: \"* * * * * *\"\n");
    std::os::unix::fs::symlink("..2026_11_26_01", mount.join("..data")).expect("links");
    std::os::unix::fs::symlink("..data/s.yaml", mount.join("s.yaml")).expect("links");
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    eventually("first fires", || fired(&fake, "first") >= 1);

    version("..2026_11_26_02", "  second:\n    cron: \"* * * * * *\"\n");
    std::os::unix::fs::symlink("..2026_11_26_02", mount.join("..data_tmp")).expect("links");
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).expect("swaps");
    std::fs::remove_dir_all(mount.join("..2026_11_26_01")).expect("removes the old version");
    eventually("the swapped-in config is loaded", || fired(&fake, "second") >= 1);
    let first = fired(&fake, "first");
    sleep(1500);
    assert!(fired(&fake, "first") <= first + 1, "first stopped after the swap");
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
}

#[test]
fn a_huge_file_is_refused_and_the_last_config_keeps_running() {
    let fake = FakeGitlab::new();
    let (dir, _file) = setup(&fake, "  first:\n    cron: \"* * * * * *\"\n");
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    let addr = daemon.listening();
    eventually("first fires", || fired(&fake, "first") >= 1);
    let huge = format!("# {}\n", "x".repeat(50 << 20));
    std::fs::write(dir.path().join("schedules/huge.yaml"), huge).expect("writes");
    eventually("the reload is refused", || http(&addr, "GET", "/readyz").1.contains("refused"));
    let before = fired(&fake, "first");
    eventually("first keeps firing", || fired(&fake, "first") >= before + 2);
    let said = http(&addr, "GET", "/readyz").1;
    assert!(said.contains("huge.yaml"), "{said}");
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
}

#[test]
fn an_unreadable_directory_keeps_the_last_config_and_says_why() {
    // Root reads any directory: the daemon runs as nobody, as a hardened service would.
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !setpriv {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing; .ci/run installs util-linux");
        return eprintln!("skipped: setpriv is missing");
    }
    let fake = FakeGitlab::new();
    let (dir, _file) = setup(&fake, "  first:\n    cron: \"* * * * * *\"\n");
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod")
    };
    mode(dir.path(), 0o777);
    let schedules = dir.path().join("schedules");
    let log = dir.path().join("nobody.log");
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_pipecron"))
        .args(["run", "--log-format", "json", "--shutdown-grace", "2s", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_clear()
        .env("TRIGGER_TOKEN", common::fake_gitlab::TOKEN)
        .stderr(std::fs::File::create(&log).expect("a log"))
        .spawn()
        .expect("starts");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("first fires", || fired(&fake, "first") >= 1);
    mode(&schedules, 0o000);
    eventually("the reload is refused, saying why", || logs().contains("ermission denied"));
    let before = fired(&fake, "first");
    eventually("first keeps firing", || fired(&fake, "first") >= before + 2);
    mode(&schedules, 0o755);
    eventually("the directory is read again", || logs().matches("reloaded the schedules").count() >= 1);
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(0), "{}", logs());
}
