//! Schedule files: a directory of YAML files read into checked `Schedule`s, with every mistake reported.
//!
//! Loading never stops at the first error. Each file is parsed into located YAML nodes, each key is read and
//! checked on its own (`fields`), each schedule is merged with its file's `defaults` and checked as a whole
//! (`resolve`), and names are checked across files. The result holds the schedules that are valid and every
//! diagnostic; a caller that runs schedules must refuse to start if any diagnostic is an error.

mod compose;
pub mod diag;
pub mod fields;
pub mod interpolate;
pub mod schema;
mod stream;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diag::{Diagnostic, Reporter, Scope, Severity};
use fields::{Fields, KEYS, Reader};
use yaml::{Key, Node, Pos, Value};

use crate::cron::CronExpr;
use crate::schedule::{Api, Schedule};

/// GitLab accepts at most this many pipeline inputs.
const MAX_INPUTS: usize = 20;

/// The most variables one trigger sends, its own and its defaults' together.
const MAX_VARIABLES: usize = 1_000;

/// The longest schedule name, in characters.
const MAX_NAME: usize = 128;

pub use interpolate::Env;

/// What loading a directory found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<PathBuf>,
    /// The valid schedules, in file name order and then in file order. Shared from the start: the daemon keeps them
    /// as they are, so that 100,000 schedules are never held twice.
    pub schedules: Vec<Arc<Schedule>>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Loads every `*.yaml` and `*.yml` file in `dir`, in name order. With `env` `None`, `${VAR}` references and
/// `token_file` are not resolved (for linting where the secrets are absent, and for previews).
pub fn load(dir: &Path, env: Option<Env>) -> Loaded {
    let mut loaded = Loaded::default();
    let files = match schedule_files(dir) {
        Ok(files) => files,
        Err(message) => {
            loaded.diagnostics.push(dir_error(dir, message));
            return loaded;
        }
    };
    for file in files {
        let bytes = crate::secret::read_file(&file, yaml::MAX_FILE_BYTES);
        let mut rep = Reporter { file: &file, scope: Scope::File, out: &mut loaded.diagnostics };
        let mut schedules = match bytes {
            Ok(bytes) => match yaml::decode(&bytes) {
                Ok(text) => load_file(text, &file, env, &mut rep),
                Err(error) => {
                    rep.error(error.pos, None, error.message);
                    Vec::new()
                }
            },
            Err(crate::secret::FileError::TooLarge { limit }) => {
                let message =
                    format!("the file is larger than {} MiB; split its schedules over several files", limit >> 20);
                rep.error(FILE_START, None, message);
                Vec::new()
            }
            Err(error) => {
                let hint = match error {
                    crate::secret::FileError::Io(_) => "check that it, or the file it links to, exists and is readable",
                    _ => "a schedule file must be a regular file (or a link to one)",
                };
                rep.error(FILE_START, None, format!("the schedule file {error}; {hint}"));
                Vec::new()
            }
        };
        // Most configurations are one file: take its schedules as they are instead of copying them.
        if loaded.schedules.is_empty() {
            loaded.schedules = schedules;
        } else {
            loaded.schedules.append(&mut schedules);
        }
        loaded.files.push(file);
    }
    remove_names_used_twice(&mut loaded);
    if loaded.files.is_empty() {
        loaded.diagnostics.push(dir_error(
            dir,
            "no *.yaml or *.yml files here; point --schedules (or PIPECRON_SCHEDULES) at your schedules".into(),
        ));
    }
    // Files are read in name order; within a file, report top to bottom.
    loaded.diagnostics.sort_by_key(|d| (d.file.clone(), d.pos.line, d.pos.column));
    loaded
}

/// Keeps the first schedule of each name, in file order, and reports the others where they are written. A file has
/// no name twice (its loader keeps the first), so these are in different files. Sorting positions, rather than
/// keeping a map of names, spares 100,000 schedules' peak memory.
fn remove_names_used_twice(loaded: &mut Loaded) {
    let schedules = &loaded.schedules;
    let mut order: Vec<usize> = (0..schedules.len()).collect();
    order.sort_by(|a, b| schedules[*a].name.cmp(&schedules[*b].name).then(a.cmp(b)));
    let mut refused = vec![false; schedules.len()];
    for run in order.chunk_by(|a, b| schedules[*a].name == schedules[*b].name) {
        let first = &schedules[run[0]];
        for later in run[1..].iter().map(|i| &schedules[*i]) {
            let message = format!(
                "the name '{}' is already used at {}:{}; schedule names must be unique across all files",
                later.name,
                first.file.display(),
                first.pos
            );
            let mut rep = Reporter { file: &later.file, scope: Scope::File, out: &mut loaded.diagnostics };
            rep.scoped(Scope::Schedule(later.name.to_string())).error(later.pos, None, message);
        }
        run[1..].iter().for_each(|i| refused[*i] = true);
    }
    let mut index = 0;
    loaded.schedules.retain(|_| {
        index += 1;
        !refused[index - 1]
    });
}

/// Where a problem with a file as a whole is reported: its start, where an editor opens it.
const FILE_START: Pos = Pos { line: 1, column: 1 };

/// A problem with the directory as a whole: it has no line and column.
fn dir_error(dir: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: dir.to_path_buf(),
        pos: Pos::default(),
        scope: Scope::File,
        key: None,
        message,
    }
}

fn schedule_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!("cannot read the schedules directory: {e}; pass --schedules DIR or set PIPECRON_SCHEDULES")
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            // Not only regular files: a FIFO or a device named like a schedule file is reported, not skipped.
            yaml && !hidden && !path.is_dir()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one file's text into its valid schedules, reporting every problem.
///
/// The common shape of a file is read while it is parsed (`stream`); anything else, and every file with a syntax
/// error, is read again as a whole tree, so that it is reported exactly as before.
pub fn load_file(text: &str, file: &Path, env: Option<Env>, rep: &mut Reporter) -> Vec<Arc<Schedule>> {
    let reader = Reader { dir: file.parent().unwrap_or(Path::new(".")), env };
    let reported = rep.out.len();
    if let Some(schedules) = stream::read(text, &reader, rep) {
        return schedules;
    }
    rep.out.truncate(reported);
    read_file(yaml::parse(text), &reader, rep)
}

/// Reports each key written twice in one mapping under `node`, as the schedule and key it belongs to. The first is
/// kept. `above` holds the keys from the file's root to `node`.
fn report_duplicates(node: &mut Node, above: &[&str], rep: &mut Reporter) {
    for mut duplicate in yaml::remove_duplicate_keys(node) {
        if !above.is_empty() {
            duplicate.path.splice(0..0, above.iter().map(|k| k.to_string()));
        }
        let (scope, key) = match duplicate.path.as_slice() {
            [top, name] if top == "schedules" => (Scope::Schedule(name.clone()), None),
            [top, name, rest @ ..] if top == "schedules" => (Scope::Schedule(name.clone()), Some(rest.join("."))),
            [top, rest @ ..] if top == "defaults" && !rest.is_empty() => (Scope::Defaults, Some(rest.join("."))),
            path => (Scope::File, Some(path.join("."))),
        };
        let last = duplicate.path.last().map(String::as_str).unwrap_or_default();
        let what = match duplicate.path.as_slice() {
            [top, _] if top == "schedules" => "the schedule name",
            _ => "the key",
        };
        let message = format!(
            "{what} '{}' is written twice in the same mapping (first at line {}, column {}); YAML allows a key once: \
             remove or rename one (this one is ignored)",
            diag::clip(last),
            duplicate.first.line,
            duplicate.first.column
        );
        rep.scoped(scope).error(duplicate.pos, key.as_deref(), message);
    }
}

/// The schedules of a parsed file.
fn read_file(root: Result<Node, yaml::SyntaxError>, reader: &Reader, rep: &mut Reporter) -> Vec<Arc<Schedule>> {
    let mut root = match root {
        Ok(root) => root,
        Err(error) => {
            rep.error(error.pos, None, error.message);
            return Vec::new();
        }
    };
    report_duplicates(&mut root, &[], rep);
    let entries = match root.value {
        Value::Map(entries) => entries,
        Value::Null => {
            rep.warning(root.pos, None, "the file is empty: it defines no schedules");
            return Vec::new();
        }
        other => {
            rep.error(
                root.pos,
                None,
                format!("expected a mapping with 'schedules:' (and optional 'defaults:'), found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    let mut defaults = Fields::default();
    let mut schedules = None;
    for (key, node) in entries {
        match key.name.as_str() {
            "defaults" => defaults = read_defaults(reader, &node, rep),
            "schedules" => schedules = Some((key, node)),
            // Like docker compose: `x-` keys hold YAML anchors for the rest of the file, and are otherwise ignored.
            other if other.starts_with("x-") => {}
            _ => unknown_top_level_key(&key, rep),
        }
    }
    match schedules {
        Some((key, node)) => read_schedules(reader, &key, node, &defaults, rep),
        None => {
            rep.warning(root.pos, None, "no 'schedules:' in this file: it defines no schedules");
            Vec::new()
        }
    }
}

fn unknown_top_level_key(key: &Key, rep: &mut Reporter) {
    let other = key.name.as_str();
    let close = (other.len() <= fields::MAX_SUGGESTED)
        .then(|| crate::suggest::closest(other, ["defaults", "schedules"]))
        .flatten();
    let hint = close
        .map(|k| format!("did you mean '{k}'?"))
        .unwrap_or_else(|| "a file has only 'defaults', 'schedules' and x- keys for anchors".into());
    let message = format!("unknown top-level key '{}'; {hint}", diag::clip(other));
    rep.error(key.pos, Some(other), message);
}

fn read_defaults(reader: &Reader, node: &Node, rep: &mut Reporter) -> Fields {
    let mut rep = rep.scoped(Scope::Defaults);
    match &node.value {
        Value::Map(entries) => reader.read(entries, &KEYS[1..], &mut rep),
        Value::Null => Fields::default(),
        other => {
            rep.error(node.pos, None, format!("defaults must be a mapping of schedule keys, found {}", other.kind()));
            Fields::default()
        }
    }
}

/// Takes the schedules' nodes by value and drops each once it is read, so that the YAML tree shrinks as the schedules
/// grow.
fn read_schedules(reader: &Reader, key: &Key, node: Node, defaults: &Fields, rep: &mut Reporter) -> Vec<Arc<Schedule>> {
    let entries = match node.value {
        Value::Map(entries) => entries,
        Value::Null => {
            rep.warning(key.pos, Some("schedules"), "no schedules are defined under 'schedules:'");
            return Vec::new();
        }
        Value::Seq(_) => {
            rep.error(node.pos, Some("schedules"), "schedules is a list; write a mapping from each schedule's name to its keys, such as 'nightly: {cron: ...}'");
            return Vec::new();
        }
        other => {
            rep.error(
                node.pos,
                Some("schedules"),
                format!("expected a mapping from names to schedules, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    let file: Arc<Path> = Arc::from(rep.file);
    let mut schedules = Vec::with_capacity(entries.len());
    schedules.extend(
        entries.into_iter().filter_map(|(name, body)| read_schedule(reader, &file, &name, &body, defaults, rep)),
    );
    schedules
}

/// One schedule's keys, checked and merged with the file's defaults.
fn read_schedule(
    reader: &Reader,
    file: &Arc<Path>,
    name: &Key,
    body: &Node,
    defaults: &Fields,
    rep: &mut Reporter,
) -> Option<Arc<Schedule>> {
    let mut rep = rep.scoped(Scope::Schedule(name.name.clone()));
    if let Err(message) = check_name(&name.name) {
        rep.error(name.pos, None, message);
        return None;
    }
    let own = match &body.value {
        Value::Map(entries) => reader.read(entries, &KEYS, &mut rep),
        other => {
            rep.error(
                body.pos,
                None,
                format!("expected the schedule's keys (cron, project, ref, ...), found {}", other.kind()),
            );
            return None;
        }
    };
    resolve::resolve(name, file, own, defaults, &mut rep).map(Arc::new)
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        let name = diag::clip(name);
        return Err(format!("'{name}' is not a valid schedule name; use letters, digits, '.', '_' and '-'"));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "the name is {} characters long; a schedule name is at most {MAX_NAME}, as it is shown in every list",
            diag::thousands(name.len())
        ));
    }
    Ok(())
}

mod resolve {
    //! One schedule merged with its file's defaults, and checked as a whole.

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use std::sync::Arc;

    use super::diag::{Reporter, clip, thousands};
    use super::fields::{At, Fields, is_loopback};
    use super::yaml::Key;
    use super::{Api, CronExpr, MAX_INPUTS, MAX_VARIABLES, Schedule};
    use crate::schedule::Overlap;

    pub fn resolve(
        name: &Key,
        file: &Arc<Path>,
        own: Fields,
        defaults: &Fields,
        rep: &mut Reporter,
    ) -> Option<Schedule> {
        let f = own.over(defaults);
        for (key, example) in [
            ("cron", "cron: \"30 0 * * *\""),
            ("gitlab", "gitlab: https://gitlab.example.com"),
            ("project", "project: 9 (or group/project)"),
            ("ref", "ref: main"),
            ("token", "token: ${VAR} or token_file: PATH"),
        ] {
            let given = f.seen.contains(key) || (key == "token" && f.seen.contains("token_file"));
            if !given {
                let place = if key == "cron" { "" } else { " or to the file's defaults" };
                rep.error(name.pos, Some(key), format!("missing; add {example} to this schedule{place}"));
            }
        }
        let timezone = f.timezone.map(|t| t.value).unwrap_or(chrono_tz::UTC);
        let cron = f.cron.and_then(|c| match CronExpr::parse(&c.value, &name.name) {
            Ok(expr) => check_fires(c.pos, expr, rep),
            Err(error) => {
                rep.error(c.pos, Some("cron"), error.to_string());
                None
            }
        });
        let allow_http = f.allow_http.is_some_and(|a| a.value);
        if let Some(At { pos, value: Some(url) }) = &f.gitlab
            && url.scheme() == "http"
            && !allow_http
            && !is_loopback(url)
        {
            rep.error(*pos, Some("gitlab"), "plain http:// to a host that is not loopback would send the token unencrypted; use https://, or set allow_http: true if you must");
        }
        let too_many_variables = f.variables.len() > MAX_VARIABLES;
        if too_many_variables {
            let pos = f.variables_pos.unwrap_or(name.pos);
            rep.error(
                pos,
                Some("variables"),
                format!(
                    "{} variables (with the defaults'), but pipecron sends at most {} with a trigger; pass large \
                     data another way, such as a file in the repository",
                    thousands(f.variables.len()),
                    thousands(MAX_VARIABLES)
                ),
            );
        }
        if f.inputs.len() > MAX_INPUTS {
            let pos = f.inputs_pos.unwrap_or(name.pos);
            rep.error(
                pos,
                Some("inputs"),
                format!("{} inputs, but GitLab accepts at most {MAX_INPUTS} per pipeline", f.inputs.len()),
            );
        }
        if let (Some(timeout), None) = (&f.follow_timeout, &f.api_credential) {
            rep.warning(
                timeout.pos,
                Some("follow_timeout"),
                "has no effect without api_token: pipelines are followed only with a token that can read them",
            );
        }
        let overlap = f.overlap.map_or(Overlap::Allow, |o| {
            if o.value != Overlap::Allow && f.api_credential.is_none() {
                rep.error(
                    o.pos,
                    Some("overlap"),
                    format!(
                        "overlap: {} needs api_token, to know whether the previous pipeline still runs; add \
                         api_token: ${{VAR}} (a token with the read_api scope{}) to this schedule or the file's defaults",
                        o.value.as_str(),
                        if o.value == Overlap::CancelPrevious { ", and the api scope to cancel" } else { "" }
                    ),
                );
            }
            o.value
        });
        let api_token = f.api_credential.map(|credential| {
            Box::new(crate::schedule::ApiToken {
                source: credential.value.source,
                secret: credential.value.secret,
                follow_timeout: f.follow_timeout.map_or(crate::schedule::ApiToken::DEFAULT_FOLLOW_TIMEOUT, |a| a.value),
            })
        });
        let (Some(cron), Some(gitlab), Some(credential), Some(project), Some(git_ref), false) =
            (cron, f.gitlab, f.credential, f.project, f.git_ref, too_many_variables)
        else {
            return None;
        };
        Some(Schedule {
            name: name.name.as_str().into(),
            file: file.clone(),
            pos: name.pos,
            description: f.description.map(|a| a.value.into()),
            cron,
            timezone,
            gitlab: gitlab.value.unwrap_or_else(|| Arc::new(placeholder_url())),
            token_source: credential.value.source,
            token: credential.value.secret,
            project: project.value,
            git_ref: git_ref.value.into(),
            variables: f.variables.into_iter().map(|(k, v)| (k, v.value)).collect::<BTreeMap<_, _>>().into(),
            inputs: f.inputs.into_iter().map(|(k, v)| (k, v.value)).collect(),
            enabled: f.enabled.is_none_or(|a| a.value),
            catch_up: f.catch_up.map_or(Duration::from_secs(3600), |a| a.value),
            jitter: f.jitter.map_or(Duration::ZERO, |a| a.value),
            timeout: f.timeout.map_or(Duration::from_secs(30), |a| a.value),
            retries: f.retries.map_or(5, |a| a.value),
            api: f.api.map_or(Api::V4, |a| a.value),
            history: crate::schedule::Retention {
                keep_for: f.history_retention.map_or(crate::schedule::Retention::DEFAULT.keep_for, |a| a.value),
                max_runs: f.history_max_runs.map_or(crate::schedule::Retention::DEFAULT.max_runs, |a| a.value),
            },
            ca_file: f.ca_file.map(|a| a.value.into()),
            allow_http,
            api_token,
            overlap,
            notify: f.notify.map_or_else(|| Arc::from([]), |n| n.value),
        })
    }

    /// Errors for an expression that never fires, warnings for one that fires more than once a minute.
    fn check_fires(pos: super::Pos, expr: CronExpr, rep: &mut Reporter) -> Option<CronExpr> {
        if !expr.ever_fires() {
            rep.error(
                pos,
                Some("cron"),
                format!("'{}' never fires: no date matches it; check the day and month fields", clip(expr.source())),
            );
            return None;
        }
        if expr.is_sub_minute() {
            rep.warning(
                pos,
                Some("cron"),
                format!(
                    "'{}' fires more than once a minute; GitLab.com allows 25 pipelines a minute per project",
                    clip(expr.source())
                ),
            );
        }
        Some(expr)
    }

    /// Stands in for a `gitlab` URL left as an unresolved `${VAR}`; nothing is ever sent to it.
    fn placeholder_url() -> url::Url {
        url::Url::parse("https://unresolved.invalid/").expect("a constant, valid URL")
    }
}

#[cfg(test)]
pub(crate) mod tests;
