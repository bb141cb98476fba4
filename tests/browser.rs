//! The status page in a real browser: a `pipecron run` on the fake GitLab with a schedule that succeeds, one that
//! GitLab refuses, one that has yet to fire and a paused one, and headless Chromium loading `/`,
//! `/schedules/every-second` and a 404. The assertions read the DOM after Chromium parsed it, so they hold for what
//! a browser makes of the HTML (a hostile description stays text, never an element), and the screenshots under
//! `target/screenshots/` show what a person sees, on a desktop and on a phone. Without Chromium the tests are
//! skipped, except under CI, where `.ci/run` installs Debian's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http, setup};
use common::fake_gitlab::{FakeGitlab, TOKEN};

/// How long one Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The pipelines the fake creates in project 9 link here, followed by the pipeline's id.
const PIPELINES: &str = "https://gitlab.example.com/group/sub/project/-/pipelines/";

const HOSTILE: &str = "<script>alert(1)</script>";

const SUCCEEDED: &str = r#"<span class="badge ok">succeeded</span>"#;
const FAILED: &str = r#"<span class="badge bad">failed</span>"#;

const SCHEDULES: &str = r#"  every-second:
    cron: "* * * * * *"
    description: "Smoke test of the deploy pipeline <script>alert(1)</script>"
    variables: {DEPLOY_ENV: staging}
  nightly:
    cron: "30 0 * * *"
    timezone: Europe/Berlin
    ref: main
    description: Nightly build and full test suite
  weekly-report:
    cron: "0 6 * * 1"
    description: Paused until the report job is fixed
    enabled: false
  wrong-ref:
    cron: "* * * * * *"
    ref: no-such-branch
    description: Fires on a branch GitLab does not have
"#;

const NAMES: [&str; 4] = ["every-second", "nightly", "weekly-report", "wrong-ref"];

#[test]
fn chromium_renders_the_overview_a_schedule_and_a_404_from_live_state() {
    let Some(chromium) = chromium() else { return };
    let started = Instant::now();
    let (fake, _dir, daemon, addr) = running();

    let overview = dump_dom_until(&chromium, &format!("http://{addr}/"), &[], overview_settled);
    let tbody = between(&overview, "<tbody>", "</tbody>");
    assert_eq!(tbody.matches("<tr").count(), NAMES.len(), "one row per schedule:\n{tbody}");
    for name in NAMES {
        let link = format!(r#"<a href="/schedules/{name}">{name}</a>"#);
        assert!(row(&overview, name).contains(&link), "{name}'s row links its page:\n{overview}");
    }
    assert!(overview.contains("Showing 4 of 4 schedules."), "{overview}");

    let every_second = row(&overview, "every-second");
    let id = pipeline_id(every_second).unwrap_or_else(|| panic!("a pipeline link:\n{every_second}"));
    let sent = fake.requests().len() as u64;
    assert!((1001..=1000 + sent).contains(&id), "pipeline {id} is one the fake created (of {sent} requests)");
    assert!(every_second.contains(&format!(">#{id}</a>")), "{every_second}");
    assert!(every_second.contains(" ago<") || every_second.contains(">just now<"), "when it ran: {every_second}");
    assert!(every_second.contains(">now<") || every_second.contains("in 1s"), "the next one is close: {every_second}");
    assert!(!every_second.contains("0s ago") && !every_second.contains("in 0s"), "{every_second}");
    assert_eq!(overview.matches(r#"<th scope="col">"#).count(), 6, "the column headers stay in the DOM:\n{overview}");
    for label in ["Last run", "Next run", "Project and ref", "Cron and zone", "Token"] {
        let cells = tbody.matches(&format!(r#"<td data-label="{label}">"#)).count();
        assert_eq!(cells, NAMES.len(), "every {label} cell is labelled for the phone's cards:\n{tbody}");
    }
    let project = every_second.find(r#"/projects/9" rel="noreferrer""#).map(|end| &every_second[..end]);
    let project = project.and_then(|before| before.rfind("<a href=\"")).map(|start| &every_second[start..]);
    assert!(project.is_some_and(|a| a.starts_with("<a href=\"http://127.0.0.1:")), "a link to GitLab: {every_second}");

    let nightly = row(&overview, "nightly");
    assert!(nightly.contains(">never<"), "nightly has not fired yet: {nightly}");
    assert!(nightly.contains("00:30:00 CE"), "nightly fires at 00:30 Berlin time: {nightly}");
    assert!(nightly.contains("Europe/Berlin"), "{nightly}");

    let paused = row(&overview, "weekly-report");
    assert!(paused.contains(r#"<span class="badge neutral">paused</span>"#), "{paused}");

    let wrong = row(&overview, "wrong-ref");
    assert!(wrong.starts_with(r#"<tr class="bad">"#), "a failed schedule's row stands out: {wrong}");
    let reason = "ref 'no-such-branch' is not a branch or tag of project 9";
    assert!(wrong.contains(reason), "why it failed: {wrong}");
    assert!(!wrong.contains(PIPELINES), "a refused trigger has no pipeline: {wrong}");

    let schedule = dump_dom_until(&chromium, &format!("http://{addr}/schedules/every-second"), &[], schedule_settled);
    assert!(schedule.contains("<title>every-second · pipecron</title>"), "{schedule}");
    assert!(schedule.contains("<code>* * * * * *</code>"), "the cron in the settings: {schedule}");
    assert!(schedule.contains("DEPLOY_ENV") && schedule.contains("staging"), "the variables: {schedule}");
    let next = between(&schedule, "<caption class=\"sr-only\">The next 10 fire times</caption>", "</table>");
    assert_eq!(between(next, "<tbody>", "</tbody>").matches("<tr").count(), 10, "ten next fire times:\n{next}");
    assert!(next.contains(r#"<th scope="col">Time (UTC)</th>"#) && next.contains("in 1s"), "{next}");
    assert!(!next.contains("UTC offset") && !next.contains("UTC+00:00"), "a schedule in UTC says UTC once: {next}");
    let history = between(&schedule, "<caption class=\"sr-only\">Runs, newest first</caption>", "</table>");
    let linked = history.matches(&format!("<a href=\"{PIPELINES}")).count();
    assert!(linked >= 2, "the history links its pipelines:\n{history}");
    assert!(history.contains(SUCCEEDED), "{history}");
    assert!(history.contains(r#"<td class="num" data-label="HTTP">201</td>"#), "GitLab's status: {history}");

    let missing = dump_dom(&chromium, &format!("http://{addr}/schedules/no-such"), &[]);
    assert!(missing.contains("No schedule named “no-such”"), "the 404 names what was asked for:\n{missing}");
    assert!(missing.contains(r#"<a href="/">← All schedules</a>"#), "{missing}");
    assert_eq!(http(&addr, "GET", "/schedules/no-such").0, 404);

    for (page, dom) in [("/", &overview), ("/schedules/every-second", &schedule), ("/schedules/no-such", &missing)] {
        assert!(!dom.contains("<script"), "{page} has a script element:\n{dom}");
        assert!(!dom.contains(HOSTILE), "{page}:\n{dom}");
        assert!(!dom.contains(TOKEN) && !dom.contains(&TOKEN[6..]), "{page} shows the token:\n{dom}");
    }
    for dom in [&overview, &schedule] {
        assert!(dom.contains("Smoke test of the deploy pipeline &lt;script&gt;alert(1)&lt;/script&gt;"), "{dom}");
        assert!(dom.contains(&format!("glptt-{}…", &TOKEN[6..10])), "the token, masked: {dom}");
    }

    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    eprintln!("three pages checked in {:.1?}", started.elapsed());
}

#[test]
fn screenshots_of_the_pages_on_a_desktop_and_a_phone() {
    let Some(chromium) = chromium() else { return };
    let started = Instant::now();
    let (_fake, _dir, daemon, addr) = running();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target directory").join("screenshots");
    std::fs::create_dir_all(&out).expect("creates the screenshot directory");
    let shots: [(&str, &str, (u32, u32), Ready); 4] = [
        ("overview.png", "/", (1280, 900), overview_settled),
        ("schedule.png", "/schedules/every-second", (1280, 900), schedule_settled),
        // Tall enough for the next fire times and the history below the settings.
        ("schedule-full.png", "/schedules/every-second", (1280, 2200), schedule_settled),
        ("overview-phone.png", "/", (390, 844), overview_settled),
    ];
    for (file, path, (width, height), settled) in shots {
        let png = out.join(file);
        let _ = std::fs::remove_file(&png);
        let args = [
            "--hide-scrollbars".to_string(),
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", png.display()),
        ];
        // The DOM comes from the same load as the screenshot: it tells whether the picture shows settled runs.
        dump_dom_until(&chromium, &format!("http://{addr}{path}"), &args, settled);
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is no PNG", png.display());
        assert!(bytes.len() > 10 * 1024, "{} is only {} bytes: a blank page?", png.display(), bytes.len());
        eprintln!("{}: {} KB", png.display(), bytes.len() / 1024);
    }
    let (code, logs) = daemon.stop();
    assert_eq!(code, Some(0), "{logs}");
    eprintln!("{} screenshots in {:.1?}", shots.len(), started.elapsed());
}

/// The daemon on the fake with SCHEDULES, once `every-second` has succeeded and `wrong-ref` has failed: the fake,
/// the daemon's directory, the daemon and the address it serves on.
fn running() -> (FakeGitlab, tempfile::TempDir, Daemon, String) {
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, SCHEDULES);
    let daemon = Daemon::spawn(dir.path(), &["--shutdown-grace", "2s"], &[]);
    let addr = daemon.listening();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(&addr, "GET", "/api/v1/schedules");
        assert_eq!(status, 200, "{body}");
        let rows: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let state = |name: &str| {
            let row = rows.as_array().into_iter().flatten().find(|r| r["name"] == name);
            row.and_then(|r| r["last_run"]["state"].as_str()).unwrap_or_default().to_string()
        };
        if fake.requests().len() >= 4 && state("every-second") == "succeeded" && state("wrong-ref") == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "no success and failure recorded:\n{body}\n{}", daemon.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    (fake, dir, daemon, addr)
}

/// The first of `chromium`, `chromium-browser` and `google-chrome` on the PATH. None is a skip, except under CI.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|file| is_executable(file));
    match found {
        Some(file) => Some(file),
        None if std::env::var_os("CI").is_none() => {
            eprintln!("chromium is missing: the browser tests are skipped (apt-get install chromium)");
            None
        }
        None => panic!("chromium is missing under CI: .ci/run installs it"),
    }
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The DOM of `url` after Chromium parsed it, serialized; `more` are further switches, such as a screenshot's.
fn dump_dom(chromium: &Path, url: &str, more: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let args: Vec<String> = more.iter().cloned().chain(["--dump-dom".to_string(), url.to_string()]).collect();
    let dom = browse(chromium, profile.path(), &args);
    common::artifacts::keep("html", dom.as_bytes());
    dom
}

/// Whether a page's DOM shows what a test waits for.
type Ready = fn(&str) -> bool;

/// The DOM of `url`, loaded up to five times until `ready` holds for it.
fn dump_dom_until(chromium: &Path, url: &str, more: &[String], ready: Ready) -> String {
    let mut dom = String::new();
    for attempt in 0..5 {
        dom = dump_dom(chromium, url, more);
        if ready(&dom) {
            return dom;
        }
        eprintln!("{url} is not there yet: loading it again");
        // Chromium takes about as long to start each time: a pause of another length lands its load elsewhere in
        // the second.
        std::thread::sleep(Duration::from_millis(300 + 170 * attempt));
    }
    panic!("{url} never showed what was expected:\n{dom}");
}

/// Headless Chromium with a profile of its own and `args`; its standard output. Chromium and every process it
/// starts are in a process group of their own, killed as one after `BROWSER_TIMEOUT`.
fn browse(chromium: &Path, profile: &Path, args: &[String]) -> String {
    use std::os::unix::process::CommandExt;
    let stdout = profile.join("stdout");
    let stderr = profile.join("stderr");
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.join("data").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("a file for its output"))
        .stderr(std::fs::File::create(&stderr).expect("a file for its log"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", chromium.display()));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("chromium {args:?} took over {BROWSER_TIMEOUT:?}:\n{}", tail(&stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {args:?}: {status}\n{}", tail(&stderr));
    std::fs::read_to_string(&stdout).expect("reads its output")
}

/// The last lines of a log.
fn tail(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Whether the overview shows the last runs settled: a schedule that fires every second has its newest slot on its
/// way (claimed, sending) for some milliseconds of each second, and a page rendered then shows that.
fn overview_settled(dom: &str) -> bool {
    row(dom, "every-second").contains(SUCCEEDED) && row(dom, "wrong-ref").contains(FAILED)
}

/// Whether `every-second`'s page shows its last run settled, and at least two pipelines in its history.
fn schedule_settled(dom: &str) -> bool {
    between(dom, r#"<dl class="facts">"#, "</dl>").contains(SUCCEEDED) && dom.matches(PIPELINES).count() >= 2
}

/// The text between the first `start` and the `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?} in:\n{text}")) + start.len();
    let to = text[from..].find(end).unwrap_or_else(|| panic!("no {end:?} after {start:?} in:\n{text}"));
    &text[from..from + to]
}

/// The overview's table row of the schedule `name`, from `<tr` to `</tr>`.
fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let link = dom.find(&format!("href=\"/schedules/{name}\"")).unwrap_or_else(|| panic!("no row of {name}:\n{dom}"));
    let start = dom[..link].rfind("<tr").expect("a row around the link");
    let end = link + dom[link..].find("</tr>").expect("the row ends") + "</tr>".len();
    &dom[start..end]
}

/// The id of the first pipeline linked to GitLab in `html`.
fn pipeline_id(html: &str) -> Option<u64> {
    let at = html.find(&format!("href=\"{PIPELINES}"))? + "href=\"".len() + PIPELINES.len();
    let digits: String = html[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
