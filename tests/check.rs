//! `pipecron check` on the example schedules and on a corpus of broken and hostile files, through the real binary.
//!
//! The corpus is `tests/corpus/broken/CASE/` (committed files) and the cases `generated` makes at test time (the
//! huge ones, FIFOs, devices and symlinks). Each case is checked for its exit status and one located message it must
//! print, for every diagnostic being located, for no token leaking and for finishing fast; its whole output is a
//! snapshot in `tests/snapshots/check__CASE.snap`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pipecron, Run, repo_path};

const TOKEN: &str = "glptt-1234567890abcdefplaintext";

/// The token every case's `${TRIGGER_TOKEN}` resolves to.
const ENV_TOKEN: &str = "glptt-fedcba9876543210fedcba9876543210fedcba98";

/// Part of every token written in the corpus files, after the 4 characters that may be shown.
const FILE_TOKEN_BODY: &str = "5ecret5ecret";

/// The longest a case may take. Each takes well under a second; a case that hangs (a FIFO read without
/// O_NONBLOCK) is killed at `HANG` and fails.
const SLOW: Duration = Duration::from_secs(5);
const HANG: Duration = Duration::from_secs(10);

/// One case: its directory's name, the exit status, and text that must appear in its output, such as the located
/// start of its main message.
struct Case {
    name: &'static str,
    exit: i32,
    expect: &'static [&'static str],
}

const fn case(name: &'static str, exit: i32, expect: &'static [&'static str]) -> Case {
    Case { name, exit, expect }
}

/// The committed cases, one per directory of `tests/corpus/broken`.
const COMMITTED: &[Case] = &[
    case("bad-merge", 1, &["merge.yaml:8:9: error: invalid YAML: YAML merge value must be mapping"]),
    case(
        "billion-laughs",
        1,
        &["laughs.yaml:5:30: error: invalid YAML: aliases (*name) here expand to more than 50,000"],
    ),
    case(
        "ca-file-hostile",
        1,
        &[
            "ca.yaml:9:14: error: schedule 'zero', key 'ca_file': ca_file '/dev/zero' is a character device, not a regular file",
            "ca.yaml:12:14: error: schedule 'directory', key 'ca_file': ca_file 'ca-file-hostile/.' is a directory",
        ],
    ),
    case("complex-key", 1, &["key.yaml:9:7: error: invalid YAML: a key must be text, not a list"]),
    case(
        "control-chars",
        1,
        &[
            "ctl.yaml:9:10: error: schedule 'bell-in-ref', key 'ref': 'main\\u{7}' holds a control character",
            "ctl.yaml:15:18: error: schedule 'escape-in-description', key 'description': the description holds the control character \\u{1b}",
        ],
    ),
    case("cron", 1, &["cron.yaml:8:11: error: schedule 'out-of-range', key 'cron': the minute field '61'"]),
    case(
        "cron-hostile",
        1,
        &[
            "cron.yaml:8:11: error: schedule 'newline', key 'cron': '0 0 * * *\\n@reboot' holds a line break",
            "cron.yaml:16:11: error: schedule 'null', key 'cron': expected text, found null",
        ],
    ),
    case("deep-block", 1, &["deep.yaml:23:33: error: invalid YAML: mappings and lists nest more than 16 levels deep"]),
    case("deep-flow", 1, &["deep.yaml:10:31: error: invalid YAML: brackets nest more than 16 levels deep"]),
    case("defaults", 1, &["defaults.yaml:2:3: error: defaults, key 'cron': cron cannot have a default"]),
    case("documents", 1, &["docs.yaml:10:1: error: invalid YAML: the file holds more than one YAML document"]),
    case(
        "dup-anchor",
        1,
        &[
            "dup.yaml:4:3: error: key 'x-gitlab.gitlab': the key 'gitlab' is written twice in the same mapping (first at line 2, column 3)",
        ],
    ),
    case("dup-defaults", 1, &["dup.yaml:4:3: error: defaults, key 'gitlab': the key 'gitlab' is written twice"]),
    case(
        "dup-nested",
        1,
        &[
            "dup.yaml:11:38: error: schedule 'nightly', key 'inputs.targets.arch': the key 'arch' is written twice in the same mapping (first at line 11, column 25)",
            "dup.yaml:13:11: error: schedule 'nightly', key 'inputs.targets.name':",
        ],
    ),
    case(
        "dup-schedule-keys",
        1,
        &[
            "dup.yaml:10:5: error: schedule 'nightly', key 'cron': the key 'cron' is written twice in the same mapping (first at line 8, column 5)",
            "dup.yaml:11:5: error: schedule 'nightly', key 'ref':",
        ],
    ),
    case(
        "dup-schedule-name",
        1,
        &[
            "dup.yaml:11:3: error: schedule 'nightly': the schedule name 'nightly' is written twice in the same mapping (first at line 7, column 3)",
        ],
    ),
    case(
        "dup-top-level",
        1,
        &[
            "dup.yaml:9:1: error: key 'schedules': the key 'schedules' is written twice in the same mapping (first at line 6, column 1)",
        ],
    ),
    case(
        "dup-variables",
        1,
        &[
            "dup.yaml:12:7: error: schedule 'nightly', key 'variables.UPLOAD': the key 'UPLOAD' is written twice",
            "dup.yaml:15:7: error: schedule 'nightly', key 'inputs.1': the key '1' is written twice",
        ],
    ),
    case(
        "duplicate-names",
        1,
        &["b.yml:7:3: error: schedule 'nightly': the name 'nightly' is already used at duplicate-names/a.yaml:7:3"],
    ),
    case("durations", 1, &["durations.yaml:9:15: error: schedule 'nightly', key 'catch_up':"]),
    case("empty-file", 0, &["empty.yaml:1:1: warning: the file is empty: it defines no schedules"]),
    case(
        "empty-values",
        1,
        &[
            "empty.yaml:5:11: error: schedule 'nightly', key 'cron': '' has 0 fields",
            "empty.yaml:8:10: error: schedule 'nightly', key 'ref': the ref is empty",
        ],
    ),
    case(
        "env-vars",
        1,
        &["env.yaml:8:12: error: schedule 'unset', key 'token': environment variable UNSET_TRIGGER_TOKEN is not set"],
    ),
    case(
        "gitlab-url",
        1,
        &["urls.yaml:8:13: error: schedule 'relative', key 'gitlab': 'gitlab.example.com' is not an absolute URL"],
    ),
    case(
        "h-broken",
        1,
        &[
            "h.yaml:8:11: error: schedule 'backwards', key 'cron': the minute field 'H(30-10)': the hash range 30-10 runs backwards",
            "h.yaml:18:11: error: schedule 'huge-step', key 'cron': the minute field 'H/100': step 100 is larger",
        ],
    ),
    case("h-everywhere", 0, &["six-fields        H H H H H H", "ok: 3 schedules in 1 file"]),
    case(
        "huge-numbers",
        1,
        &[
            "huge.yaml:9:14: error: schedule 'retries-u32', key 'retries': 4294967296 retries are too many",
            "huge.yaml:21:14: error: schedule 'project-text', key 'project': 99999999999999999999999 is too large for a project id",
            "huge.yaml:24:15: error: schedule 'catch-up', key 'catch_up': a catch_up longer than a year",
        ],
    ),
    case("include-tag", 1, &["include.yaml:8:20: error: invalid YAML: the tag `!include` is not supported"]),
    case(
        "inputs",
        1,
        &["inputs.yaml:10:7: error: schedule 'many-inputs', key 'inputs': 21 inputs, but GitLab accepts at most 20"],
    ),
    case(
        "interpolation-growth",
        1,
        &[
            "growth.yaml:10:16: error: schedule 'nightly', key 'variables.PAYLOAD': the value grows past 64 KiB as ${BIG}",
            "growth.yaml:11:18: error: schedule 'nightly', key 'description': once ${VAR} is resolved, the value is 10,000 characters long; a description is at most 1,000",
        ],
    ),
    case(
        "interpolation-loop",
        1,
        &["loop.yaml:9:14: error: schedule 'resolved-once', key 'project': '${LOOP}${LOOP}' is neither"],
    ),
    case(
        "interpolation-syntax",
        1,
        &[
            "refs.yaml:9:10: error: schedule 'digit', key 'ref': '${1X}' is not a valid variable reference",
            "refs.yaml:19:18: error: schedule 'unclosed', key 'description': '${' is not closed",
        ],
    ),
    case(
        "keys-hostile",
        1,
        &[
            "keys.yaml:9:5: error: schedule 'nightly', key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…': unknown key",
            "keys.yaml:10:5: error: schedule 'nightly', key '\\u{1b}]0;pwned\\u{7}': unknown key",
        ],
    ),
    case(
        "latin1",
        1,
        &["latin1.yaml:9:19: error: the file is not UTF-8 text: byte 0xE4 here cannot start or continue a character"],
    ),
    case("merge-bomb", 1, &["merge.yaml:5:22: error: invalid YAML: aliases (*name) here expand to more than 50,000"]),
    case("missing-keys", 1, &["missing.yaml:2:3: error: schedule 'nightly', key 'cron': missing; add cron:"]),
    case(
        "names-hostile",
        1,
        &[
            "names.yaml:7:3: error: schedule 'two\\nlines': 'two\\nlines' is not a valid schedule name",
            "names.yaml:15:3: error: schedule 'right\\u{202e}left':",
            "names.yaml:17:3: error: schedule 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…': the name is 200 characters long",
        ],
    ),
    case(
        "negative-durations",
        1,
        &[
            "neg.yaml:9:14: error: schedule 'nightly', key 'timeout': -5 is negative; a duration is 0 or more",
            "neg.yaml:10:13: error: schedule 'nightly', key 'jitter': '-1s' is negative",
        ],
    ),
    case(
        "non-finite",
        1,
        &[
            "inf.yaml:9:14: error: schedule 'nightly', key 'project': inf is not a project id",
            "inf.yaml:11:14: error: schedule 'nightly', key 'variables.LIMIT': is not a finite number; quote it",
        ],
    ),
    case("nul-byte", 1, &["nul.yaml:9:24: error: the file holds a NUL byte"]),
    case(
        "nul-escape",
        1,
        &[
            "nul.yaml:11:18: error: schedule 'nightly', key 'variables.SEPARATOR': '\\u{0}' holds a NUL character (\\0), which GitLab cannot store; remove it",
            "nul.yaml:13:7: error: schedule 'nightly', key 'inputs': input 'list': 'not\\u{0}ok' holds a NUL character",
        ],
    ),
    case("projects", 1, &["projects.yaml:8:14: error: schedule 'zero', key 'project': 0 is not a project id"]),
    case("refs", 1, &["refs.yaml:8:10: error: schedule 'empty-ref', key 'ref': the ref is empty"]),
    case("schedule-scalar", 1, &["scalar.yaml:7:12: error: schedule 'nightly': expected the schedule's keys"]),
    case("schedules-list", 1, &["list.yaml:7:3: error: key 'schedules': schedules is a list"]),
    case("syntax", 1, &["broken.yaml:5:5: error: invalid YAML:"]),
    case("tabs", 1, &["tabs.yaml:8:2: error: invalid YAML: a tab here: YAML indents with spaces only"]),
    case("tags", 1, &["tags.yaml:9:19: error: invalid YAML: the tag `!vault` is not supported"]),
    case(
        "timezone",
        1,
        &[
            "zone.yaml:9:15: error: schedule 'typo', key 'timezone': unknown time zone 'Europe/Berln'; did you mean Europe/Berlin",
        ],
    ),
    case(
        "token-file-content",
        1,
        &[
            "tokens.yaml:8:17: error: schedule 'binary', key 'token_file': token_file 'token-file-content/binary.token' is not text",
            "tokens.yaml:11:17: error: schedule 'two-lines', key 'token_file': token_file 'token-file-content/two-lines.token' holds more than one word or line",
        ],
    ),
    case(
        "token-file-devices",
        1,
        &[
            "tokens.yaml:8:17: error: schedule 'zero', key 'token_file': token_file '/dev/zero' is a character device, not a regular file",
            "tokens.yaml:17:17: error: schedule 'proc', key 'token_file': token_file '/proc/self/cmdline' holds more than one word or line",
        ],
    ),
    case(
        "token-file-dirs",
        1,
        &[
            "tokens.yaml:8:17: error: schedule 'this-directory', key 'token_file': token_file 'token-file-dirs/.' is a directory, not a regular file",
        ],
    ),
    case(
        "token-files",
        1,
        &["tokens.yaml:8:17: error: schedule 'missing-file', key 'token_file': cannot read token_file"],
    ),
    case(
        "token-in-url",
        1,
        &[
            "url.yaml:7:13: error: schedule 'credentials', key 'gitlab': the URL must not hold credentials",
            "url.yaml:11:13: error: schedule 'not-a-url', key 'gitlab': 'https://gitlab example.com/glptt-abcd…' is not an absolute URL",
            "url.yaml:16:14: error: schedule 'project-url', key 'project': 'https://oauth2:glpat-abcd…@gitlab.example.com/group/project' is a URL",
        ],
    ),
    case(
        "token-in-variables",
        0,
        &[
            "vars.yaml:10:21: warning: schedule 'nightly', key 'variables.DEPLOY_TOKEN': this value looks like a GitLab token (glpat-abcd…) written in plain text",
            "vars.yaml:11:17: warning: schedule 'nightly', key 'variables.REGISTRY': this value looks like a GitLab token (gldt-wxyz…)",
        ],
    ),
    case("top-level-list", 1, &["list.yaml:1:1: error: expected a mapping with 'schedules:'"]),
    case("top-level-scalar", 1, &["scalar.yaml:1:1: error: expected a mapping with 'schedules:'"]),
    case("truncated-utf8", 1, &["cut.yaml:9:26: error: the file ends in the middle of a character (byte 0xE2"]),
    case("types", 1, &["types.yaml:6:11: error: schedule 'nightly', key 'cron': expected text, found an integer"]),
    case("unknown-anchor", 1, &["alias.yaml:8:9: error: invalid YAML: this alias (*name) refers to no anchor"]),
    case(
        "unknown-keys",
        1,
        &["keys.yaml:1:1: error: key 'default': unknown top-level key 'default'; did you mean 'defaults'?"],
    ),
    case("utf16", 1, &["utf16.yaml:1:1: error: the file is UTF-16 text"]),
    case(
        "variables",
        1,
        &["vars.yaml:10:7: error: schedule 'nightly', key 'variables.1BAD': '1BAD' is not a valid variable name"],
    ),
    case(
        "warnings-only",
        0,
        &["warn.yaml:8:12: warning: schedule 'plain-token', key 'token': the token is written in plain text"],
    ),
    case(
        "zone-paths",
        1,
        &[
            "zones.yaml:9:15: error: schedule 'traversal', key 'timezone': unknown time zone '../../../../etc/passwd'",
            "zones.yaml:18:15: error: schedule 'newline', key 'timezone': unknown time zone 'Europe/Berlin\\n'",
        ],
    ),
];

/// The head of a valid file: every key but `cron` in `defaults`.
const HEAD: &str = "defaults:\n  gitlab: https://gitlab.example.com\n  token: ${TRIGGER_TOKEN}\n  project: 9\n  ref: master\nschedules:\n";

/// A file of one schedule, `nightly`, with `keys` (indented by 4) after its cron.
fn nightly(keys: &str) -> String {
    format!("{HEAD}  nightly:\n    cron: \"30 0 * * *\"\n{keys}")
}

/// `nightly` taking its token from `token_file`.
fn with_token_file(path: &str) -> String {
    nightly(&format!("    token_file: {path}\n")).replace("  token: ${TRIGGER_TOKEN}\n", "")
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::write(path, text).expect("a corpus file is written");
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("a symlink");
}

/// A sparse file of `len` bytes: a gigabyte that costs nothing to make.
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).and_then(|f| f.set_len(len)).expect("a sparse file");
}

/// The cases made at test time, each a directory under `root`.
fn generated(root: &Path) -> Vec<Case> {
    type Make = fn(&Path);
    let cases: Vec<(Case, Make)> = vec![
        (
            case(
                "gen-fifo-token-file",
                1,
                &[
                    "s.yaml:8:17: error: schedule 'nightly', key 'token_file': token_file 'gen-fifo-token-file/fifo.token' is a FIFO (named pipe), not a regular file",
                ],
            ),
            |dir| {
                mkfifo(&dir.join("fifo.token"));
                write(&dir.join("s.yaml"), with_token_file("fifo.token"));
            },
        ),
        (
            case(
                "gen-zero-token-file",
                1,
                &[
                    "s.yaml:8:17: error: schedule 'nightly', key 'token_file': token_file 'gen-zero-token-file/zero.token' is a character device",
                ],
            ),
            |dir| {
                symlink("/dev/zero", &dir.join("zero.token"));
                write(&dir.join("s.yaml"), with_token_file("zero.token"));
            },
        ),
        (
            case(
                "gen-huge-token-file",
                1,
                &[
                    "s.yaml:8:17: error: schedule 'nightly', key 'token_file': token_file 'gen-huge-token-file/huge.token' is larger than 64 KiB",
                ],
            ),
            |dir| {
                sparse(&dir.join("huge.token"), 1 << 30);
                write(&dir.join("s.yaml"), with_token_file("huge.token"));
            },
        ),
        (
            case(
                "gen-symlink-loop-token-file",
                1,
                &[
                    "s.yaml:8:17: error: schedule 'nightly', key 'token_file': cannot read token_file 'gen-symlink-loop-token-file/loop.token': Too many levels of symbolic links",
                ],
            ),
            |dir| {
                symlink("loop.token", &dir.join("loop.token"));
                write(&dir.join("s.yaml"), with_token_file("loop.token"));
            },
        ),
        (
            case(
                "gen-fifo-schedule-file",
                1,
                &["b.yaml:1:1: error: the schedule file is a FIFO (named pipe), not a regular file"],
            ),
            |dir| {
                write(&dir.join("a.yaml"), nightly(""));
                mkfifo(&dir.join("b.yaml"));
            },
        ),
        (
            case(
                "gen-device-schedule-file",
                1,
                &["zero.yaml:1:1: error: the schedule file is a character device, not a regular file"],
            ),
            |dir| symlink("/dev/zero", &dir.join("zero.yaml")),
        ),
        (
            case(
                "gen-dangling-schedule-file",
                1,
                &["gone.yaml:1:1: error: the schedule file cannot be read: No such file or directory"],
            ),
            |dir| symlink("nowhere.yaml", &dir.join("gone.yaml")),
        ),
        (
            case(
                "gen-huge-schedule-file",
                1,
                &["huge.yaml:1:1: error: the file is larger than 32 MiB; split its schedules over several files"],
            ),
            |dir| sparse(&dir.join("huge.yaml"), 1 << 30),
        ),
        (
            case(
                "gen-line-1mb",
                1,
                &[
                    "s.yaml:9:18: error: schedule 'nightly', key 'description': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' is 1,000,000 characters long; a description is at most 1,000",
                ],
            ),
            |dir| write(&dir.join("s.yaml"), nightly(&format!("    description: {}\n", "x".repeat(1_000_000)))),
        ),
        (
            case(
                "gen-variable-100kb",
                1,
                &[
                    "s.yaml:10:10: error: schedule 'nightly', key 'variables.X': 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy…' is 100,000 characters long; a variable's value is at most 10,000",
                ],
            ),
            |dir| write(&dir.join("s.yaml"), nightly(&format!("    variables:\n      X: {}\n", "y".repeat(100_000)))),
        ),
        (
            case(
                "gen-cron-100kb",
                1,
                &[
                    "s.yaml:8:11: error: schedule 'nightly', key 'cron': '1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,…' is 100,009 characters long; a cron expression is at most 1,000",
                ],
            ),
            |dir| {
                let cron = format!("{}1 * * * *", "1,".repeat(50_000));
                write(&dir.join("s.yaml"), format!("{HEAD}  nightly:\n    cron: \"{cron}\"\n"));
            },
        ),
        (
            case(
                "gen-cron-100kb-fields",
                1,
                &[
                    "s.yaml:8:11: error: schedule 'nightly', key 'cron': '0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 …' is 99,999 characters long",
                ],
            ),
            |dir| {
                let cron = vec!["0"; 50_000].join(" ");
                write(&dir.join("s.yaml"), format!("{HEAD}  nightly:\n    cron: \"{cron}\"\n"));
            },
        ),
        (case("gen-cron-1000-valid-chars", 0, &["ok: 1 schedule in 1 file"]), |dir| {
            // The longest expression allowed: a list of every minute, twice over, is still one line in a table.
            let minutes: Vec<String> = (0..60).chain(0..60).map(|m| m.to_string()).collect();
            let cron = format!("{} * * * *", minutes.join(","))[..].to_string();
            assert!(cron.len() <= 1_000, "{}", cron.len());
            write(&dir.join("s.yaml"), format!("{HEAD}  nightly:\n    cron: \"{cron}\"\n"));
        }),
        (
            case(
                "gen-variables-10000",
                1,
                &[
                    "s.yaml:10:7: error: schedule 'nightly', key 'variables': 10,000 variables (with the defaults'), but pipecron sends at most 1,000 with a trigger",
                ],
            ),
            |dir| {
                let vars: String = (0..10_000).map(|i| format!("      VAR_{i}: value {i}\n")).collect();
                write(&dir.join("s.yaml"), nightly(&format!("    variables:\n{vars}")));
            },
        ),
        (
            case(
                "gen-references-100000",
                1,
                &[
                    "s.yaml:10:10: error: schedule 'nightly', key 'variables.X': '${TRIGGER_TOKEN}${TRIGGER_TOKEN}${TRIGGER_TOKEN}${TRIGGER_TOKEN}${TRIGGER_TOKEN}…' is 1,600,000 characters long; a variable's value is at most 10,000",
                ],
            ),
            |dir| {
                write(
                    &dir.join("s.yaml"),
                    nightly(&format!("    variables:\n      X: {}\n", "${TRIGGER_TOKEN}".repeat(100_000))),
                )
            },
        ),
        (
            case(
                "gen-key-100kb",
                1,
                &[
                    "s.yaml:9:5: error: invalid YAML: expected ':' after this key (a key on one line is at most 1,024 characters)",
                ],
            ),
            |dir| write(&dir.join("s.yaml"), nightly(&format!("    \"{}\": 1\n", "k".repeat(100_000)))),
        ),
        (
            case(
                "gen-name-100kb",
                1,
                &[
                    "s.yaml:7:5: error: schedule 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…': the name is 100,000 characters long",
                ],
            ),
            |dir| {
                // An explicit key (`? `) may be longer than 1,024 characters.
                let name = "n".repeat(100_000);
                write(&dir.join("s.yaml"), format!("{HEAD}  ? {name}\n  : cron: \"30 0 * * *\"\n"));
            },
        ),
        (
            case(
                "gen-zone-100kb",
                1,
                &[
                    "s.yaml:9:15: error: schedule 'nightly', key 'timezone': unknown time zone 'Europe/BerlinEurope/BerlinEurope/BerlinEurope/BerlinEurope/BerlinEurope/BerlinEu…'",
                ],
            ),
            |dir| write(&dir.join("s.yaml"), nightly(&format!("    timezone: {}\n", "Europe/Berlin".repeat(8_000)))),
        ),
        (
            case(
                "gen-alias-fanout",
                1,
                &["s.yaml:5:22: error: invalid YAML: aliases (*name) here expand to more than 50,000 YAML nodes"],
            ),
            |dir| {
                // A small anchor of 11,111 nodes, used 200 times: 2 million nodes from a 2 KB file.
                let mut text = String::from("x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
                for i in 1..5 {
                    text.push_str(&format!("x-a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
                }
                text.push_str(&nightly(&format!("    inputs:\n      many: [{}]\n", vec!["*a4"; 200].join(", "))));
                write(&dir.join("s.yaml"), text);
            },
        ),
        (case("gen-merge-many", 0, &["ok: 120 schedules in 1 file"]), |dir| {
            // More than 100 schedules merging one anchor, as the README suggests: no alias bomb.
            let mut text = String::from(
                "x-common: &common\n  gitlab: https://gitlab.example.com\n  token: ${TRIGGER_TOKEN}\n  project: 9\n  ref: master\nschedules:\n",
            );
            for i in 0..120 {
                text.push_str(&format!("  s{i}:\n    <<: *common\n    cron: \"@daily\"\n"));
            }
            write(&dir.join("s.yaml"), text);
        }),
    ];
    cases
        .into_iter()
        .map(|(case, make)| {
            let dir = root.join(case.name);
            std::fs::create_dir(&dir).expect("a case directory");
            make(&dir);
            case
        })
        .collect()
}

/// Runs `pipecron check --schedules CASE` in `dir`, killing it if it runs for `HANG`.
fn check_in(dir: &Path, case: &str) -> (Run, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipecron"))
        .env_clear()
        .env("TZ", "UTC")
        .env("TRIGGER_TOKEN", ENV_TOKEN)
        .env("EMPTY_TRIGGER_TOKEN", "")
        .env("LOOP", "${LOOP}${LOOP}")
        .env("BIG", "x".repeat(10_000))
        .args(["check", "--schedules", case])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the pipecron binary runs");
    let started = Instant::now();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{case}: `check` still ran after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let run = Run {
        status: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout is read"),
        stderr: stderr.join().expect("stderr is read"),
    };
    (run, elapsed)
}

/// Runs every case, several at a time, in the order given.
fn run_all(cases: &[(PathBuf, &Case)]) -> Vec<(Run, Duration)> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((dir, case)) = cases.get(i) else { break };
                    let result = check_in(dir, case.name);
                    results.lock().unwrap_or_else(|p| p.into_inner()).push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// What must hold of every case's output, beyond its snapshot: each way it falls short.
fn check_case(case: &Case, run: &Run, elapsed: Duration) -> Vec<String> {
    let name = case.name;
    let mut wrong = Vec::new();
    if run.status != case.exit {
        wrong.push(format!("{name}: exit {} instead of {}", run.status, case.exit));
    }
    if elapsed > SLOW {
        wrong.push(format!("{name}: took {elapsed:?}"));
    }
    let all = format!("{}{}", run.stdout, run.stderr);
    for expected in case.expect {
        if !all.contains(expected) {
            wrong.push(format!("{name}: no {expected:?}"));
        }
    }
    if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
        wrong.push(format!("{name}: panicked"));
    }
    for line in run.stderr.lines() {
        if line.starts_with("error: ") && line.ends_with("in the schedule files; see above") {
            continue;
        }
        // Every diagnostic is `CASE/FILE:LINE:COLUMN: error|warning: …`, on one line, of a readable length.
        let located = line.strip_prefix(name).and_then(|l| l.strip_prefix('/')).and_then(|l| {
            let mut parts = l.splitn(4, ':');
            let (_file, line, column, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let positive = |n: &str| n.parse::<u32>().is_ok_and(|n| n > 0);
            (positive(line) && positive(column) && (rest.starts_with(" error: ") || rest.starts_with(" warning: ")))
                .then_some(())
        });
        if located.is_none() {
            wrong.push(format!("{name}: not located: {line}"));
        }
        if line.chars().count() > 1_200 {
            wrong.push(format!("{name}: a line of {} characters", line.chars().count()));
        }
    }
    for secret in [&ENV_TOKEN[10..], FILE_TOKEN_BODY, "5ecret"] {
        if all.contains(secret) {
            wrong.push(format!("{name}: printed a token"));
        }
    }
    if !wrong.is_empty() {
        wrong.push(format!("{name} printed:\n{all}"));
    }
    wrong
}

fn snapshot(case: &Case, run: &Run) {
    // The next fire time depends on today; `next` is tested with a fixed --after elsewhere.
    insta::with_settings!({ filters => vec![(r"next \d{4}-\d\d-\d\dT[0-9:]+[+-]\d\d:\d\d", "next [time]")] }, {
        insta::assert_snapshot!(case.name, format!("exit {}\n--- stdout\n{}--- stderr\n{}", run.status, run.stdout, run.stderr));
    });
}

#[test]
fn the_example_schedules_pass() {
    let run = Pipecron::new().current_dir(repo_path("")).args(["check"]).run().success();
    assert!(run.stdout.contains("nightly-master"), "{}", run.stdout);
    assert!(run.stdout.contains("ok: 5 schedules in 2 files, 1 paused"), "{}", run.stdout);
}

#[test]
fn the_corpus_lists_every_committed_case() {
    let corpus = repo_path("tests/corpus/broken");
    let mut dirs: Vec<String> = std::fs::read_dir(&corpus)
        .expect("the corpus exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let listed: Vec<String> = COMMITTED.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(dirs, listed, "each directory of tests/corpus/broken has one entry in COMMITTED, in name order");
}

#[test]
fn every_broken_or_hostile_file_fails_with_located_messages() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("a temporary directory");
    let made = generated(root.path());
    let corpus = repo_path("tests/corpus/broken");
    let cases: Vec<(PathBuf, &Case)> = COMMITTED
        .iter()
        .map(|case| (corpus.clone(), case))
        .chain(made.iter().map(|case| (root.path().to_path_buf(), case)))
        .collect();
    let files: usize = cases
        .iter()
        .map(|(dir, case)| {
            std::fs::read_dir(dir.join(case.name))
                .map(|entries| {
                    entries.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".y")).count()
                })
                .unwrap_or(0)
        })
        .sum();
    assert!(files >= 60, "the corpus has only {files} schedule files");
    let results = run_all(&cases);
    let mut wrong = Vec::new();
    for ((_, case), (run, elapsed)) in cases.iter().zip(&results) {
        wrong.extend(check_case(case, run, *elapsed));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for ((_, case), (run, _)) in cases.iter().zip(&results) {
        snapshot(case, run);
    }
    assert!(started.elapsed() < Duration::from_secs(30), "the corpus took {:?}", started.elapsed());
}

#[test]
fn a_fifo_as_token_file_does_not_hang_even_with_a_writer_holding_it_open() {
    // A writer that opens the FIFO and never writes: a blocking read would wait as long as it holds it.
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("fifo");
    std::fs::create_dir(&dir).expect("a directory");
    let fifo = dir.join("fifo.token");
    mkfifo(&fifo);
    write(&dir.join("s.yaml"), with_token_file("fifo.token"));
    std::thread::spawn(move || {
        let held = std::fs::OpenOptions::new().write(true).open(fifo);
        std::thread::sleep(2 * HANG);
        drop(held);
    });
    let (run, elapsed) = check_in(root.path(), "fifo");
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stderr.contains("token_file 'fifo/fifo.token' is a FIFO (named pipe), not a regular file"),
        "{}",
        run.stderr
    );
    assert!(elapsed < SLOW, "{elapsed:?}");
}

#[test]
fn warnings_never_show_the_token() {
    let (run, _) = check_in(&repo_path("tests/corpus/broken"), "warnings-only");
    assert_eq!(run.status, 0, "{run:#?}");
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN));
    assert!(!run.stderr.contains("567890"), "more than 4 characters shown: {}", run.stderr);
}

#[test]
fn skip_secrets_lints_without_the_environment() {
    let run = Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .args(["check", "--skip-secrets", "--schedules", "env-vars"])
        .run();
    // Only the unclosed reference is a syntax error; unset variables are not looked at.
    assert_eq!(run.status, 1, "{run:#?}");
    assert_eq!(run.stderr.matches(": error: ").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("not closed"), "{}", run.stderr);
}

#[test]
fn skip_secrets_never_opens_a_token_file() {
    let run = Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .args(["check", "--skip-secrets", "--schedules", "token-file-devices"])
        .run();
    assert_eq!(run.status, 0, "{run:#?}");
}

#[test]
fn the_schedules_directory_comes_from_the_environment() {
    Pipecron::new()
        .current_dir(repo_path("tests/corpus/broken"))
        .env("PIPECRON_SCHEDULES", "warnings-only")
        .env("TRIGGER_TOKEN", "glptt-x")
        .args(["check"])
        .run()
        .success();
    Pipecron::new()
        .current_dir(repo_path("tests"))
        .args(["check", "--schedules", "no-such-dir"])
        .run()
        .failure()
        .stderr_has("cannot read the schedules directory");
}
