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

use super::diag::Reporter;
use super::interpolate::{Env, Interpolated, interpolate, is_var_name};
use super::yaml::{Node, Pos, Value};
use crate::schedule::{Api, Project, TokenSource};
use crate::secret::Secret;

/// Every key a schedule may have. `defaults` may have all of them but `cron`.
pub const KEYS: [&str; 18] = [
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
];

/// The prefix of the variables pipecron adds to every trigger.
pub const RESERVED_PREFIX: &str = "PIPECRON_";

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
            inputs,
            inputs_pos: self.inputs_pos.or(defaults.inputs_pos),
            description: or(self.description, &defaults.description),
            enabled: or(self.enabled, &defaults.enabled),
            catch_up: or(self.catch_up, &defaults.catch_up),
            jitter: or(self.jitter, &defaults.jitter),
            timeout: or(self.timeout, &defaults.timeout),
            retries: or(self.retries, &defaults.retries),
            api: or(self.api, &defaults.api),
            ca_file: or(self.ca_file, &defaults.ca_file),
            allow_http: or(self.allow_http, &defaults.allow_http),
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
        if let (Some(token), Some(file)) =
            (entries.iter().find(|(k, _)| k.name == "token"), entries.iter().find(|(k, _)| k.name == "token_file"))
        {
            let later = if token.0.pos.line > file.0.pos.line { &token.0 } else { &file.0 };
            rep.error(later.pos, Some(&later.name), "set either token or token_file, not both");
            fields.credential = None;
        }
        fields
    }

    fn read_key(&self, f: &mut Fields, key: &'static str, node: &Node, rep: &mut Reporter) -> Result<(), String> {
        match key {
            "cron" => f.cron = at(node.pos, text(node)?.to_string()),
            "timezone" => f.timezone = at(node.pos, timezone(text(node)?)?),
            "gitlab" => f.gitlab = at(node.pos, self.gitlab(node)?),
            "token" => f.credential = at(node.pos, self.token(node, rep)?),
            "token_file" => f.credential = at(node.pos, self.token_file(node)?),
            "project" => f.project = at(node.pos, self.project(node)?),
            "ref" => f.git_ref = at(node.pos, self.git_ref(node)?),
            "variables" => self.variables(node, &mut f.variables, rep)?,
            "inputs" => {
                f.inputs_pos = Some(node.pos);
                self.inputs(node, &mut f.inputs)?
            }
            "description" => f.description = at(node.pos, self.interpolated(node)?.text),
            "enabled" => f.enabled = at(node.pos, boolean(node)?),
            "allow_http" => f.allow_http = at(node.pos, boolean(node)?),
            "catch_up" => f.catch_up = at(node.pos, duration(node)?),
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
                timeout => f.timeout = at(node.pos, timeout),
            },
            "retries" => f.retries = at(node.pos, retries(node)?),
            "api" => f.api = at(node.pos, api(text(node)?)?),
            "ca_file" => f.ca_file = at(node.pos, self.ca_file(node)?),
            other => return Err(format!("internal error: no reader for key '{other}'")),
        }
        Ok(())
    }

    fn interpolated(&self, node: &Node) -> Result<Interpolated, String> {
        interpolate(text(node)?, self.env)
    }

    fn gitlab(&self, node: &Node) -> Result<Option<Arc<Url>>, String> {
        let found = self.interpolated(node)?;
        if !found.resolved {
            return Ok(None);
        }
        gitlab_url(&found.text).map(|url| Some(Arc::new(url)))
    }

    fn token(&self, node: &Node, rep: &mut Reporter) -> Result<Credential, String> {
        let found = self.interpolated(node)?;
        if found.vars.is_empty() {
            rep.warning(
                node.pos,
                Some("token"),
                "the token is written in plain text in this file; keep it out of git: write token: ${VAR} and set \
                 VAR in the environment, or use token_file",
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

    fn token_file(&self, node: &Node) -> Result<Credential, String> {
        let found = self.interpolated(node)?;
        let path = self.dir.join(&found.text);
        let secret = match self.env {
            None => None,
            Some(_) => Some(read_token_file(&path)?),
        };
        Ok(Credential { source: TokenSource::File(path.into()), secret })
    }

    fn ca_file(&self, node: &Node) -> Result<PathBuf, String> {
        let found = self.interpolated(node)?;
        let path = self.dir.join(&found.text);
        // Like token_file, a CA bundle often exists only on the host that runs pipecron.
        if self.env.is_some() {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read ca_file '{}': {}", path.display(), io_reason(&e)))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "ca_file '{}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ));
            }
        }
        Ok(path)
    }

    fn project(&self, node: &Node) -> Result<Project, String> {
        let hint = "write a numeric project id such as 9, or the full path such as group/sub/project";
        let text = match &node.value {
            Value::Int(id) if *id > 0 => return Ok(Project::Id(*id as u64)),
            Value::Int(id) => return Err(format!("{id} is not a project id; {hint}")),
            Value::String(_) => self.interpolated(node)?,
            other => return Err(format!("expected a project id or path, found {}; {hint}", other.kind())),
        };
        let path = text.text.trim();
        if !text.resolved {
            return Ok(Project::Path(path.to_string()));
        }
        if let Ok(id) = path.parse::<u64>() {
            return match id {
                0 => Err(format!("0 is not a project id; {hint}")),
                id => Ok(Project::Id(id)),
            };
        }
        if let Some(rest) = path.strip_prefix("https://").or_else(|| path.strip_prefix("http://")) {
            let suggestion = rest.split_once('/').map(|(_, p)| p.trim_end_matches('/')).unwrap_or(rest);
            return Err(format!("'{path}' is a URL; write the project path only, such as {suggestion}"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2 || segments.iter().any(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return Err(format!("'{path}' is neither a positive integer nor a project path; {hint}"));
        }
        Ok(Project::Path(path.to_string()))
    }

    fn git_ref(&self, node: &Node) -> Result<String, String> {
        let found = match &node.value {
            Value::Int(_) | Value::Float(_) => {
                return Err("the ref was read as a number; quote it, e.g. ref: \"1.10\"".into());
            }
            _ => self.interpolated(node)?,
        };
        let git_ref = found.text.trim();
        if git_ref.is_empty() {
            return Err("the ref is empty; write a branch or tag name such as main".into());
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
            let text = match &value.value {
                Value::String(_) => self.interpolated(value).map(|i| i.text),
                Value::Int(i) => Ok(i.to_string()),
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
            let json = self.json(value).map_err(|e| format!("input '{}': {e}", key.name))?;
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
            Value::String(_) => J::String(self.interpolated(node)?.text),
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
    let hint = match crate::suggest::closest(key, allowed.iter().copied()) {
        Some(known) => format!("did you mean '{known}'?"),
        None => format!("known keys are {}", allowed.join(", ")),
    };
    format!("unknown key '{key}'; {hint}")
}

fn text(node: &Node) -> Result<&str, String> {
    match &node.value {
        Value::String(s) => Ok(s),
        other => Err(format!("expected text, found {}", other.kind())),
    }
}

fn boolean(node: &Node) -> Result<bool, String> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => Err(format!("'{s}' is not a boolean; write true or false")),
        other => Err(format!("expected true or false, found {}", other.kind())),
    }
}

/// The longest jitter: a slot waits out its jitter claimed, and no other replica may fire it meanwhile.
const MAX_JITTER: Duration = Duration::from_secs(24 * 3600);

fn duration(node: &Node) -> Result<Duration, String> {
    match &node.value {
        Value::Int(0) => Ok(Duration::ZERO),
        Value::Int(n) => Err(format!("{n} has no unit; write e.g. {n}s or {n}m")),
        Value::String(s) => crate::duration::parse(s),
        other => Err(format!("expected a duration such as 90s, 15m or 2h30m, found {}", other.kind())),
    }
}

fn retries(node: &Node) -> Result<u32, String> {
    match &node.value {
        Value::Int(n) => u32::try_from(*n).map_err(|_| format!("{n} is not a number of retries; write 0 or more")),
        other => Err(format!("expected a whole number of retries, such as 5, found {}", other.kind())),
    }
}

fn api(text: &str) -> Result<Api, String> {
    match text {
        "v4" => Ok(Api::V4),
        "v3" => Ok(Api::V3),
        other => Err(format!("'{other}' is not an API version; write v4, or v3 for GitLab older than 11")),
    }
}

fn timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        match crate::suggest::closest_n(name, names, 3).as_slice() {
            [] => format!("unknown time zone '{name}'; write an IANA name such as Europe/Berlin or UTC"),
            close => format!("unknown time zone '{name}'; did you mean {}?", close.join(", ")),
        }
    })
}

fn gitlab_url(text: &str) -> Result<Url, String> {
    let hint = "write the base URL of your GitLab, such as https://gitlab.example.com";
    let url = Url::parse(text.trim()).map_err(|e| format!("'{text}' is not an absolute URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{}' is not an http(s) URL; {hint}", url.scheme()));
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
            "'{name}' is not a valid variable name; use letters, digits and _, not starting with a digit"
        ));
    }
    if name.to_ascii_uppercase().starts_with(RESERVED_PREFIX) {
        return Err(format!("'{name}' starts with {RESERVED_PREFIX}, which pipecron reserves for its own variables"));
    }
    Ok(())
}

fn read_token_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token_file '{}': {}", path.display(), io_reason(&e)))?;
    match text.trim() {
        "" => Err(format!("token_file '{}' is empty", path.display())),
        token => Ok(Secret::new(token.to_string())),
    }
}

/// The OS reason without Rust's "(os error 2)" suffix.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.split_once(" (os error") {
        Some((reason, _)) => reason.to_string(),
        None => text,
    }
}
