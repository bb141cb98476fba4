//! The keys of a schedule (or of `defaults`), each read from its YAML node and checked on its own.
//!
//! A key that is wrong is reported and left out, and reading goes on, so one `check` run lists every mistake.
//! Keys that depend on each other (`token` and `token_file`, `gitlab` and `allow_http`, the required keys) are
//! checked later, once a schedule has been merged with its file's defaults (see `config::resolve`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use url::Url;

use super::diag::{Reporter, clip, thousands};
use super::interpolate::{Env, Interpolated, interpolate, is_var_name};
use super::yaml::{Node, Pos, Value};
use crate::schedule::{Api, NoticeFormat, Outcome, Overlap, Project, TokenSource, Webhook};
use crate::secret::{FileError, Secret};

/// Every key a schedule may have. `defaults` may have all of them but `cron`.
pub const KEYS: [&str; 25] = [
    "cron",
    "timezone",
    "gitlab",
    "token",
    "token_file",
    "project",
    "ref",
    "variables",
    "inputs",
    "description",
    "enabled",
    "catch_up",
    "jitter",
    "timeout",
    "retries",
    "api",
    "ca_file",
    "allow_http",
    "history_retention",
    "history_max_runs",
    "api_token",
    "api_token_file",
    "follow_timeout",
    "overlap",
    "notify",
];

/// The prefix of the variables pipecron adds to every trigger.
pub const RESERVED_PREFIX: &str = "PIPECRON_";

/// The longest value of a one-line key (cron, gitlab, project, ref, description, ...), in characters.
pub const MAX_TEXT: usize = 1_000;

/// The longest text of a variable or an input, in characters.
pub const MAX_VALUE: usize = 10_000;

/// The longest path in `token_file` and `ca_file` (Linux's PATH_MAX).
const MAX_PATH: usize = 4_096;

/// The largest `ca_file`: the whole Mozilla bundle is about 200 KB.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// The most retries: with backoff, more would keep a slot busy for hours.
const MAX_RETRIES: u32 = 100;

/// The longest `timeout` of one request: a request held longer holds a place in the pool as long.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The shortest `history_retention`: a day.
const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The longest `history_retention`: a century.
const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 24 * 3600);

/// The largest `history_max_runs`.
const MAX_RUNS_KEPT: u64 = 1_000_000_000;

/// The longest `catch_up`: a year.
const MAX_CATCH_UP: Duration = Duration::from_secs(366 * 24 * 3600);

/// Text longer than this is not compared with known names for a "did you mean": it is no typo, and comparing it
/// costs time in proportion to its length.
pub const MAX_SUGGESTED: usize = 64;

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub pos: Pos,
    pub value: T,
}

/// The token, wherever it came from. `secret` is `None` when secrets are not being resolved.
#[derive(Debug, Clone)]
pub struct Credential {
    pub source: TokenSource,
    pub secret: Option<Secret>,
}

/// What one mapping says. A key that was written but is invalid is in `seen` and not in its field.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub seen: BTreeSet<&'static str>,
    pub cron: Option<At<String>>,
    pub timezone: Option<At<Tz>>,
    /// `None` inside: the URL is a `${VAR}` that was not resolved.
    pub gitlab: Option<At<Option<Arc<Url>>>>,
    pub credential: Option<At<Credential>>,
    pub project: Option<At<Project>>,
    pub git_ref: Option<At<String>>,
    pub variables: BTreeMap<String, At<String>>,
    pub variables_pos: Option<Pos>,
    pub inputs: BTreeMap<String, At<serde_json::Value>>,
    pub inputs_pos: Option<Pos>,
    pub description: Option<At<String>>,
    pub enabled: Option<At<bool>>,
    pub catch_up: Option<At<Duration>>,
    pub jitter: Option<At<Duration>>,
    pub timeout: Option<At<Duration>>,
    pub retries: Option<At<u32>>,
    pub api: Option<At<Api>>,
    pub ca_file: Option<At<PathBuf>>,
    pub allow_http: Option<At<bool>>,
    pub history_retention: Option<At<Duration>>,
    pub history_max_runs: Option<At<u64>>,
    pub api_credential: Option<At<Credential>>,
    pub follow_timeout: Option<At<Duration>>,
    pub overlap: Option<At<Overlap>>,
    pub notify: Option<At<Arc<[Webhook]>>>,
}

impl Fields {
    /// These keys, with the file's `defaults` filling the gaps; `variables` and `inputs` merge key by key.
    pub fn over(self, defaults: &Fields) -> Fields {
        fn or<T: Clone>(own: Option<At<T>>, default: &Option<At<T>>) -> Option<At<T>> {
            own.or_else(|| default.clone())
        }
        let mut variables = defaults.variables.clone();
        variables.extend(self.variables);
        let mut inputs = defaults.inputs.clone();
        inputs.extend(self.inputs);
        Fields {
            seen: self.seen.union(&defaults.seen).copied().collect(),
            cron: self.cron,
            timezone: or(self.timezone, &defaults.timezone),
            gitlab: or(self.gitlab, &defaults.gitlab),
            credential: or(self.credential, &defaults.credential),
            project: or(self.project, &defaults.project),
            git_ref: or(self.git_ref, &defaults.git_ref),
            variables,
            variables_pos: self.variables_pos.or(defaults.variables_pos),
            inputs,
            inputs_pos: self.inputs_pos.or(defaults.inputs_pos),
            description: or(self.description, &defaults.description),
            enabled: or(self.enabled, &defaults.enabled),
            catch_up: or(self.catch_up, &defaults.catch_up),
            jitter: or(self.jitter, &defaults.jitter),
            timeout: or(self.timeout, &defaults.timeout),
            retries: or(self.retries, &defaults.retries),
            api: or(self.api, &defaults.api),
            history_retention: or(self.history_retention, &defaults.history_retention),
            history_max_runs: or(self.history_max_runs, &defaults.history_max_runs),
            ca_file: or(self.ca_file, &defaults.ca_file),
            allow_http: or(self.allow_http, &defaults.allow_http),
            api_credential: or(self.api_credential, &defaults.api_credential),
            follow_timeout: or(self.follow_timeout, &defaults.follow_timeout),
            overlap: or(self.overlap, &defaults.overlap),
            notify: or(self.notify, &defaults.notify),
        }
    }
}

/// How to read a mapping: where relative paths start, and whether secrets are resolved.
pub struct Reader<'a> {
    pub dir: &'a Path,
    /// `None`: leave `${VAR}` and `token_file` unresolved (`check --skip-secrets`, `next`).
    pub env: Option<Env<'a>>,
}

impl Reader<'_> {
    /// Reads every key of `entries`; `allowed` is the set of keys this mapping may hold.
    pub fn read(&self, entries: &[(super::yaml::Key, Node)], allowed: &[&'static str], rep: &mut Reporter) -> Fields {
        let mut fields = Fields::default();
        for (key, node) in entries {
            let Some(name) = allowed.iter().copied().find(|k| *k == key.name) else {
                rep.error(key.pos, Some(&key.name), unknown_key(&key.name, allowed));
                continue;
            };
            fields.seen.insert(name);
            if let Err(message) = self.read_key(&mut fields, name, node, rep) {
                rep.error(node.pos, Some(name), message);
            }
        }
        if both(entries, "token", "token_file", rep) {
            fields.credential = None;
        }
        if both(entries, "api_token", "api_token_file", rep) {
            fields.api_credential = None;
        }
        fields
    }

    fn read_key(&self, f: &mut Fields, key: &'static str, node: &Node, rep: &mut Reporter) -> Result<(), String> {
        match key {
            "cron" => f.cron = at(node.pos, cron_text(node)?.to_string()),
            "timezone" => f.timezone = at(node.pos, timezone(text(node)?)?),
            "gitlab" => f.gitlab = at(node.pos, self.gitlab(node)?),
            "token" => f.credential = at(node.pos, self.token(node, "token", rep)?),
            "token_file" => f.credential = at(node.pos, self.token_file(node, "token_file")?),
            "api_token" => f.api_credential = at(node.pos, api_token(self.token(node, "api_token", rep)?)?),
            "api_token_file" => f.api_credential = at(node.pos, api_token(self.token_file(node, "api_token_file")?)?),
            "follow_timeout" => match duration(node)? {
                Duration::ZERO => return Err("a follow_timeout of 0 would give up at once; use e.g. 24h".into()),
                timeout if timeout > MAX_CATCH_UP => {
                    return Err("a follow_timeout longer than a year is not useful; use at most 366d".into());
                }
                timeout => f.follow_timeout = at(node.pos, timeout),
            },
            "project" => f.project = at(node.pos, self.project(node)?),
            "ref" => f.git_ref = at(node.pos, self.git_ref(node)?),
            "variables" => {
                f.variables_pos = Some(node.pos);
                self.variables(node, &mut f.variables, rep)?
            }
            "inputs" => {
                f.inputs_pos = Some(node.pos);
                self.inputs(node, &mut f.inputs)?
            }
            "description" => f.description = at(node.pos, self.description(node)?),
            "enabled" => f.enabled = at(node.pos, boolean(node)?),
            "allow_http" => f.allow_http = at(node.pos, boolean(node)?),
            "catch_up" => match duration(node)? {
                catch_up if catch_up > MAX_CATCH_UP => {
                    return Err(
                        "a catch_up longer than a year is not useful; use at most 366d, or 0 to turn it off".into()
                    );
                }
                catch_up => f.catch_up = at(node.pos, catch_up),
            },
            "jitter" => match duration(node)? {
                jitter if jitter > MAX_JITTER => {
                    return Err(
                        "a jitter longer than a day holds the slot claimed for that long; use at most 1d".into()
                    );
                }
                jitter => f.jitter = at(node.pos, jitter),
            },
            "timeout" => match duration(node)? {
                Duration::ZERO => return Err("a timeout of 0 would fail every request; use e.g. 30s".into()),
                timeout if timeout > MAX_TIMEOUT => {
                    return Err("a timeout longer than an hour holds a request that long; use at most 1h".into());
                }
                timeout => f.timeout = at(node.pos, timeout),
            },
            "retries" => f.retries = at(node.pos, retries(node)?),
            "history_retention" => f.history_retention = at(node.pos, history_retention(node)?),
            "history_max_runs" => f.history_max_runs = at(node.pos, history_max_runs(node)?),
            "api" => f.api = at(node.pos, api(text(node)?)?),
            "overlap" => f.overlap = at(node.pos, overlap(text(node)?)?),
            "notify" => f.notify = at(node.pos, self.notify(node, rep)?),
            "ca_file" => f.ca_file = at(node.pos, self.ca_file(node)?),
            other => return Err(format!("internal error: no reader for key '{other}'")),
        }
        Ok(())
    }

    /// The node's text with `${VAR}` resolved; `what` names the value for the error if either form is longer
    /// than `max` characters.
    fn interpolated(&self, node: &Node, max: usize, what: &str) -> Result<Interpolated, String> {
        let raw = limited(text(node)?, max, what)?;
        let found = interpolate(raw, self.env)?;
        // What came from the environment may be a secret: errors about it quote only what the file says.
        let from_env = !found.vars.is_empty();
        let chars = found.text.chars().count();
        if from_env && chars > max {
            return Err(format!(
                "once ${{VAR}} is resolved, the value is {} characters long; {what} is at most {}",
                thousands(chars),
                thousands(max)
            ));
        }
        if found.text.contains('\0') {
            let shown = match from_env {
                true => "once ${VAR} is resolved, the value".to_string(),
                false => format!("'{}'", clip(raw)),
            };
            return Err(format!("{shown} holds a NUL character (\\0), which GitLab cannot store; remove it"));
        }
        Ok(found)
    }

    /// `notify`: a list of webhooks. A webhook that is wrong is reported, and the others are kept.
    fn notify(&self, node: &Node, rep: &mut Reporter) -> Result<Arc<[Webhook]>, String> {
        let Value::Seq(items) = &node.value else {
            return Err(format!(
                "expected a list of webhooks, each such as {{url: ${{CHAT_WEBHOOK}}, on: [failed, missed]}}, found {}",
                node.value.kind()
            ));
        };
        let mut hooks = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("notify[{i}]");
            match self.webhook(item, &path, rep) {
                Ok(Some(hook)) => hooks.push(hook),
                Ok(None) => {}
                Err(message) => rep.error(item.pos, Some(&path), message),
            }
        }
        Ok(hooks.into())
    }

    /// One webhook; `None` when one of its keys was wrong (and reported).
    fn webhook(&self, node: &Node, path: &str, rep: &mut Reporter) -> Result<Option<Webhook>, String> {
        let Value::Map(entries) = &node.value else {
            return Err(format!(
                "expected a mapping with url, and on and format if wanted, found {}",
                node.value.kind()
            ));
        };
        let (mut url, mut on, mut format, mut wrong) = (None, Outcome::ALL.to_vec(), NoticeFormat::Text, false);
        for (key, value) in entries {
            let read = match key.name.as_str() {
                "url" => self.webhook_url(value).map(|u| url = Some(u)),
                "on" => outcomes(value).map(|o| on = o),
                "format" => notice_format(value).map(|f| format = f),
                other => Err(unknown_key(other, &["url", "on", "format"])),
            };
            if let Err(message) = read {
                rep.error(value.pos, Some(&format!("{path}.{}", key.name)), message);
                wrong = true;
            }
        }
        let Some((secret, shown)) = url else {
            return match wrong {
                true => Ok(None),
                false => Err("the webhook has no url; add url: ${CHAT_WEBHOOK}".into()),
            };
        };
        Ok((!wrong).then(|| Webhook { url: secret, shown: shown.into(), on: on.into(), format }))
    }

    /// A webhook's URL, which is shown only as its scheme and host: the rest often is its secret.
    fn webhook_url(&self, node: &Node) -> Result<(Option<Secret>, String), String> {
        let found = self.interpolated(node, MAX_TEXT, "a URL")?;
        if !found.resolved {
            return Ok((None, format!("${{{}}}", found.vars.join("}${"))));
        }
        let hint = "write the incoming webhook's URL, such as https://chat.example.com/hooks/…, normally as ${VAR}";
        let shown_raw = if found.vars.is_empty() { clip(&found.text) } else { "the URL".into() };
        let url =
            Url::parse(found.text.trim()).map_err(|e| format!("'{shown_raw}' is not an absolute URL ({e}); {hint}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("a webhook is an http(s) URL with a host; {hint}"));
        }
        let shown = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or_default());
        Ok((Some(Secret::new(url.to_string())), shown))
    }

    /// Free text, shown in lists and on the status page: no control characters but tabs and line breaks.
    fn description(&self, node: &Node) -> Result<String, String> {
        let text = self.interpolated(node, MAX_TEXT, "a description")?.text;
        match text.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            Some(c) => Err(format!(
                "the description holds the control character {}, which would be sent to terminals as it is; a \
                 description is plain text",
                c.escape_default()
            )),
            None => Ok(text),
        }
    }

    fn gitlab(&self, node: &Node) -> Result<Option<Arc<Url>>, String> {
        let found = self.interpolated(node, MAX_TEXT, "a URL")?;
        if !found.resolved {
            return Ok(None);
        }
        gitlab_url(&found.text).map(|url| Some(Arc::new(url)))
    }

    /// `token` or `api_token`, as `key` says.
    fn token(&self, node: &Node, key: &'static str, rep: &mut Reporter) -> Result<Credential, String> {
        let found = self.interpolated(node, MAX_TEXT, "a token")?;
        if found.vars.is_empty() {
            rep.warning(
                node.pos,
                Some(key),
                format!(
                    "the token is written in plain text in this file; keep it out of git: write {key}: ${{VAR}} and \
                     set VAR in the environment, or use {key}_file"
                ),
            );
        }
        let source = match found.vars.is_empty() {
            true => TokenSource::Inline,
            false => TokenSource::Env(found.vars.into()),
        };
        let secret = found.resolved.then(|| found.text.trim().to_string());
        if secret.as_deref() == Some("") {
            return Err("the token is empty".into());
        }
        Ok(Credential { source, secret: secret.map(Secret::new) })
    }

    /// `token_file` or `api_token_file`, as `key` says.
    fn token_file(&self, node: &Node, key: &str) -> Result<Credential, String> {
        let found = self.interpolated(node, MAX_PATH, "a path")?;
        let path = self.dir.join(&found.text);
        let secret = match self.env {
            None => None,
            Some(_) => Some(read_token_file(&path, key)?),
        };
        Ok(Credential { source: TokenSource::File(path.into()), secret })
    }

    fn ca_file(&self, node: &Node) -> Result<PathBuf, String> {
        let found = self.interpolated(node, MAX_PATH, "a path")?;
        let path = self.dir.join(&found.text);
        // Like token_file, a CA bundle often exists only on the host that runs pipecron.
        if self.env.is_some() {
            let shown = clip(&path.display().to_string());
            let pem = crate::secret::read_file(&path, MAX_CA_FILE).map_err(|e| {
                let hint = match e {
                    FileError::TooLarge { .. } => "a CA bundle is a few hundred KB at most",
                    FileError::NotAFile(_) => "point ca_file at a PEM file",
                    FileError::Io(_) => "check the path and its permissions",
                };
                format!("ca_file '{shown}' {e}; {hint}")
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("ca_file '{shown}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
            }
        }
        Ok(path)
    }

    fn project(&self, node: &Node) -> Result<Project, String> {
        let hint = "write a numeric project id such as 9, or the full path such as group/sub/project";
        let text = match &node.value {
            Value::Int(id) if *id > 0 => return Ok(Project::Id(*id as u64)),
            Value::Int(id) => return Err(format!("{id} is not a project id; {hint}")),
            Value::Float(f) => return Err(format!("{f} is not a project id (not whole, or too large); {hint}")),
            Value::String(_) => self.interpolated(node, MAX_TEXT, "a project path")?,
            other => return Err(format!("expected a project id or path, found {}; {hint}", other.kind())),
        };
        let path = text.text.trim();
        if !text.resolved {
            return Ok(Project::Path(path.to_string()));
        }
        match path.parse::<u64>() {
            Ok(0) => return Err(format!("0 is not a project id; {hint}")),
            Ok(id) => return Ok(Project::Id(id)),
            Err(_) if !path.is_empty() && path.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!("{} is too large for a project id; {hint}", clip(path)));
            }
            Err(_) => {}
        }
        if let Some(rest) = path.strip_prefix("https://").or_else(|| path.strip_prefix("http://")) {
            let suggestion = rest.split_once('/').map(|(_, p)| p.trim_end_matches('/')).unwrap_or(rest);
            return Err(format!(
                "'{}' is a URL; write the project path only, such as {}",
                clip(path),
                clip(suggestion)
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2
            || segments.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("'{}' is neither a positive integer nor a project path; {hint}", clip(path)));
        }
        Ok(Project::Path(path.to_string()))
    }

    fn git_ref(&self, node: &Node) -> Result<String, String> {
        let found = match &node.value {
            Value::Int(_) | Value::Float(_) => {
                return Err("the ref was read as a number; quote it, e.g. ref: \"1.10\"".into());
            }
            _ => self.interpolated(node, MAX_TEXT, "a ref")?,
        };
        let git_ref = found.text.trim();
        if git_ref.is_empty() {
            return Err("the ref is empty; write a branch or tag name such as main".into());
        }
        if git_ref.chars().any(|c| c.is_control()) {
            return Err(format!(
                "'{}' holds a control character, which no git ref can; write a branch or tag name",
                clip(git_ref)
            ));
        }
        if found.resolved && matches!(git_ref.len(), 40 | 64) && git_ref.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "'{git_ref}' is a commit SHA, and GitLab triggers only branches and tags; write a branch or tag name"
            ));
        }
        Ok(git_ref.to_string())
    }

    fn variables(&self, node: &Node, out: &mut BTreeMap<String, At<String>>, rep: &mut Reporter) -> Result<(), String> {
        let Value::Map(entries) = &node.value else {
            return Err(format!("expected a mapping of NAME: value, found {}", node.value.kind()));
        };
        for (key, value) in entries {
            let path = format!("variables.{}", key.name);
            if let Err(message) = variable_name(&key.name) {
                rep.error(key.pos, Some(&path), message);
                continue;
            }
            if let Value::String(raw) = &value.value
                && let Some(masked) = crate::secret::find_token(raw)
            {
                let message = format!(
                    "this value looks like a GitLab token ({masked}) written in plain text; keep it out of git: write \
                     ${{VAR}} and set VAR in the environment"
                );
                rep.warning(value.pos, Some(&path), message);
            }
            let text = match &value.value {
                Value::String(_) => self.interpolated(value, MAX_VALUE, "a variable's value").map(|i| i.text),
                Value::Int(i) => Ok(i.to_string()),
                Value::Float(f) if !f.is_finite() => {
                    Err("is not a finite number; quote it to send it as text, such as \"1e400\"".to_string())
                }
                Value::Float(f) => Ok(f.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                Value::Null => Err("has no value; write \"\" for an empty value".to_string()),
                other => Err(format!("must be a string, number or boolean, not {}", other.kind())),
            };
            match text {
                Ok(text) => {
                    out.insert(key.name.clone(), At { pos: key.pos, value: text });
                }
                Err(message) => rep.error(value.pos, Some(&path), message),
            }
        }
        Ok(())
    }

    fn inputs(&self, node: &Node, out: &mut BTreeMap<String, At<serde_json::Value>>) -> Result<(), String> {
        let Value::Map(entries) = &node.value else {
            return Err(format!("expected a mapping of name: value, found {}", node.value.kind()));
        };
        for (key, value) in entries {
            let json = self.json(value).map_err(|e| format!("input '{}': {e}", clip(&key.name)))?;
            out.insert(key.name.clone(), At { pos: key.pos, value: json });
        }
        Ok(())
    }

    /// An input value as JSON, keeping its type; strings are interpolated.
    fn json(&self, node: &Node) -> Result<serde_json::Value, String> {
        use serde_json::Value as J;
        Ok(match &node.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(J::Number).ok_or("NaN and infinity are not valid input values")?
            }
            Value::String(_) => J::String(self.interpolated(node, MAX_VALUE, "an input's text")?.text),
            Value::Seq(items) => J::Array(items.iter().map(|i| self.json(i)).collect::<Result<_, _>>()?),
            Value::Map(entries) => J::Object(
                entries.iter().map(|(k, v)| Ok((k.name.clone(), self.json(v)?))).collect::<Result<_, String>>()?,
            ),
        })
    }
}

fn at<T>(pos: Pos, value: T) -> Option<At<T>> {
    Some(At { pos, value })
}

fn unknown_key(key: &str, allowed: &[&str]) -> String {
    if key == "cron" {
        return "cron cannot have a default: each schedule sets its own".into();
    }
    let close = (key.len() <= MAX_SUGGESTED).then(|| crate::suggest::closest(key, allowed.iter().copied())).flatten();
    let hint = match close {
        Some(known) => format!("did you mean '{known}'?"),
        None => format!("known keys are {}", allowed.join(", ")),
    };
    format!("unknown key '{}'; {hint}", clip(key))
}

fn text(node: &Node) -> Result<&str, String> {
    match &node.value {
        Value::String(s) => Ok(s),
        other => Err(format!("expected text, found {}", other.kind())),
    }
}

/// A cron expression's text: one line, and not too long to show.
fn cron_text(node: &Node) -> Result<&str, String> {
    let text = limited(text(node)?, MAX_TEXT, "a cron expression")?;
    // Tabs separate fields as spaces do, as in a crontab.
    if text.trim().chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "'{}' holds a line break or a control character; a cron expression is one line of fields separated \
             by spaces",
            clip(text)
        ));
    }
    Ok(text)
}

/// `text`, if it is at most `max` characters long; `what` names it for the error.
fn limited<'t>(text: &'t str, max: usize, what: &str) -> Result<&'t str, String> {
    // Characters take 1 to 4 bytes: count only when the bytes cannot decide.
    if text.len() <= max || text.chars().count() <= max {
        return Ok(text);
    }
    Err(format!(
        "'{}' is {} characters long; {what} is at most {}",
        clip(text),
        thousands(text.chars().count()),
        thousands(max)
    ))
}

fn boolean(node: &Node) -> Result<bool, String> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => Err(format!("'{}' is not a boolean; write true or false", clip(s))),
        other => Err(format!("expected true or false, found {}", other.kind())),
    }
}

/// The longest jitter: a slot waits out its jitter claimed, and no other replica may fire it meanwhile.
const MAX_JITTER: Duration = Duration::from_secs(24 * 3600);

fn duration(node: &Node) -> Result<Duration, String> {
    let hint = "write a number with a unit, such as 90s, 15m, 1h or 2h30m, or 0";
    match &node.value {
        Value::Int(0) => Ok(Duration::ZERO),
        Value::Int(n) if *n < 0 => Err(format!("{n} is negative; a duration is 0 or more: {hint}")),
        Value::Int(n) => Err(format!("{n} has no unit; write e.g. {n}s or {n}m")),
        Value::String(s) if s.trim_start().starts_with('-') => {
            Err(format!("'{}' is negative; a duration is 0 or more: {hint}", clip(s)))
        }
        // The parser quotes the whole text in its errors; a duration is never long.
        Value::String(s) => {
            crate::duration::parse(limited(s, 40, "a duration")?).map_err(|e| match e.ends_with("too large") {
                true => format!("{e}; {hint}"),
                false => e,
            })
        }
        Value::Float(f) => Err(format!("{f} is not a duration; {hint}")),
        other => Err(format!("expected a duration such as 90s, 15m or 2h30m, found {}", other.kind())),
    }
}

/// How long runs are kept: at least a day (the newest run of a schedule is kept however old), at most a century.
fn history_retention(node: &Node) -> Result<Duration, String> {
    let hint = "use from 1d to 36500d, such as 90d";
    match duration(node)? {
        keep if keep < MIN_RETENTION => {
            Err(format!("a history_retention under a day would drop runs still shown; {hint}"))
        }
        keep if keep > MAX_RETENTION => {
            Err(format!("a history_retention over a century is kept forever anyway; {hint}"))
        }
        keep => Ok(keep),
    }
}

/// How many runs of a schedule are kept at most.
fn history_max_runs(node: &Node) -> Result<u64, String> {
    let hint = format!("write a whole number from 1 to {}, such as 10000", thousands(MAX_RUNS_KEPT as usize));
    match &node.value {
        Value::Int(n) if (1..=MAX_RUNS_KEPT as i64).contains(n) => Ok(*n as u64),
        Value::Int(n) => Err(format!("{n} is out of range; {hint}")),
        Value::String(s) => Err(format!("'{}' is not a number of runs; {hint}", clip(s))),
        other => Err(format!("expected a number of runs, found {}; {hint}", other.kind())),
    }
}

fn retries(node: &Node) -> Result<u32, String> {
    let hint = format!("write a whole number from 0 to {MAX_RETRIES}, such as 5");
    match &node.value {
        Value::Int(n) if (0..=i64::from(MAX_RETRIES)).contains(n) => Ok(*n as u32),
        Value::Int(n) if *n < 0 => Err(format!("{n} is not a number of retries; {hint}")),
        Value::Int(n) => Err(format!("{n} retries are too many: with backoff they would take days; {hint}")),
        // A whole number too large for 64 bits is read as a float.
        Value::Float(f) if f.fract() == 0.0 && *f > 0.0 => Err(format!("{f} retries are too many; {hint}")),
        Value::Float(f) => Err(format!("{f} is not a whole number; {hint}")),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("{} retries are too many; {hint}", clip(s)))
        }
        other => Err(format!("expected a whole number of retries, found {}; {hint}", other.kind())),
    }
}

fn api(text: &str) -> Result<Api, String> {
    match text {
        "v4" => Ok(Api::V4),
        "v3" => Ok(Api::V3),
        other => Err(format!("'{}' is not an API version; write v4, or v3 for GitLab older than 11", clip(other))),
    }
}

/// `on`: the outcomes a webhook is told of, each once.
fn outcomes(node: &Node) -> Result<Vec<Outcome>, String> {
    let all = Outcome::ALL.map(Outcome::as_str).join(", ");
    let Value::Seq(items) = &node.value else {
        return Err(format!("expected a list such as [failed, missed], of: {all}"));
    };
    let mut found = Vec::with_capacity(items.len());
    for item in items {
        let name = text(item)?;
        let outcome =
            Outcome::parse(name).ok_or_else(|| format!("'{}' is not an outcome; write any of: {all}", clip(name)))?;
        if !found.contains(&outcome) {
            found.push(outcome);
        }
    }
    found.sort();
    Ok(found)
}

fn notice_format(node: &Node) -> Result<NoticeFormat, String> {
    match text(node)? {
        "text" => Ok(NoticeFormat::Text),
        "json" => Ok(NoticeFormat::Json),
        other => Err(format!(
            "'{}' is not a notice format; write text ({{\"text\": …}}, for Slack, Mattermost and Teams) or json",
            clip(other)
        )),
    }
}

fn overlap(text: &str) -> Result<Overlap, String> {
    match text {
        "allow" => Ok(Overlap::Allow),
        "skip" => Ok(Overlap::Skip),
        "cancel_previous" => Ok(Overlap::CancelPrevious),
        other => {
            Err(format!("'{}' is not an overlap rule; write allow (the default), skip or cancel_previous", clip(other)))
        }
    }
}

fn timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        let close = match name.len() <= MAX_SUGGESTED {
            true => crate::suggest::closest_n(name, names, 3),
            false => Vec::new(),
        };
        let name = clip(name);
        match close.as_slice() {
            [] => format!("unknown time zone '{name}'; write an IANA name such as Europe/Berlin or UTC"),
            close => format!("unknown time zone '{name}'; did you mean {}?", close.join(", ")),
        }
    })
}

fn gitlab_url(text: &str) -> Result<Url, String> {
    let hint = "write the base URL of your GitLab, such as https://gitlab.example.com";
    let url = Url::parse(text.trim()).map_err(|e| format!("'{}' is not an absolute URL ({e}); {hint}", clip(text)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{}' is not an http(s) URL; {hint}", clip(url.scheme())));
    }
    if url.host().is_none() {
        return Err(format!("the URL has no host; {hint}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not hold credentials; the trigger token goes in token or token_file".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("the URL must not have a query or fragment; {hint}"));
    }
    let path = url.path().trim_end_matches('/');
    if path.ends_with("/api") || path.contains("/api/v") {
        return Err(format!("write the base URL without /api (pipecron adds /api/v4 itself); {hint}"));
    }
    Ok(url)
}

/// True for `localhost` and loopback addresses, where plain `http://` is safe enough.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost" || domain.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn variable_name(name: &str) -> Result<(), String> {
    if !is_var_name(name) {
        return Err(format!(
            "'{}' is not a valid variable name; use letters, digits and _, not starting with a digit",
            clip(name)
        ));
    }
    if name.to_ascii_uppercase().starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "'{}' starts with {RESERVED_PREFIX}, which pipecron reserves for its own variables",
            clip(name)
        ));
    }
    Ok(())
}

/// Whether both keys of a pair that say the same thing (`token` and `token_file`) are written; an error if so.
fn both(entries: &[(super::yaml::Key, Node)], one: &str, other: &str, rep: &mut Reporter) -> bool {
    let find = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(k, _)| k);
    let (Some(first), Some(second)) = (find(one), find(other)) else { return false };
    let later = if first.pos.line > second.pos.line { first } else { second };
    rep.error(later.pos, Some(&later.name), format!("set either {one} or {other}, not both"));
    true
}

/// An `api_token` must be one that can read the API: a trigger token cannot, and GitLab would answer 401 to every
/// look, so say so now.
fn api_token(credential: Credential) -> Result<Credential, String> {
    match credential.secret.as_ref().map(|s| s.expose().starts_with("glptt-")) {
        Some(true) => Err(format!(
            "this is a trigger token ({}), which can only create pipelines; following them needs a personal, \
             project or group access token with the read_api scope",
            credential.secret.as_ref().map(Secret::masked).unwrap_or_default()
        )),
        _ => Ok(credential),
    }
}

/// Reads the token from a regular file of at most 64 KiB. Nothing of the file's content is ever put in an error.
fn read_token_file(path: &Path, key: &str) -> Result<Secret, String> {
    let shown = clip(&path.display().to_string());
    let bytes = crate::secret::read_file(path, crate::secret::MAX_TOKEN_FILE).map_err(|e| match e {
        FileError::Io(reason) => format!("cannot read {key} '{shown}': {reason}"),
        FileError::NotAFile(_) => {
            format!("{key} '{shown}' {e}; point it at a file that holds only the token")
        }
        FileError::TooLarge { .. } => {
            format!("{key} '{shown}' {e}; it should hold only the token, one short line")
        }
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{key} '{shown}' is not text (not UTF-8); it should hold only the token"))?;
    match text.trim() {
        "" => Err(format!("{key} '{shown}' is empty")),
        token if token.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(format!(
            "{key} '{shown}' holds more than one word or line; it should hold only the token (surrounding \
             whitespace and the final newline are trimmed)"
        )),
        token => Ok(Secret::new(token.to_string())),
    }
}
