//! `import-crontab`: crontab lines that call GitLab's trigger API with curl, turned into schedule YAML.
//!
//! It understands the forms in GitLab's docs: `--form`/`-F` and `--data`/`-d` fields, `token=` and `ref=` in the
//! query string, `variables[KEY]=value`, the v3 `/trigger/builds` endpoint, the `/ref/REF/trigger/pipeline` webhook
//! form, quoting, `\` continuations and `CRON_TZ=`/`TZ=` lines. A token is never written into the YAML: it becomes a
//! `${VAR}` reference, and its value goes only to the `.env` file the caller asks for. Lines it cannot translate are
//! kept as comments, with the reason (and any token in them masked).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use url::Url;

use crate::secret::Secret;

/// One imported schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub name: String,
    pub cron: String,
    pub timezone: Option<String>,
    pub gitlab: String,
    pub project: String,
    pub git_ref: String,
    pub token_var: String,
    pub variables: BTreeMap<String, String>,
    pub v3: bool,
}

/// What a crontab came to.
#[derive(Debug, Default)]
pub struct Import {
    pub schedules: Vec<Imported>,
    /// Environment variable → token, for `--write-env`.
    pub tokens: BTreeMap<String, String>,
    /// Lines that were not translated, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Reads a crontab.
pub fn import(crontab: &str) -> Import {
    let mut out = Import::default();
    let mut timezone = None;
    for line in logical_lines(crontab) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = assignment(trimmed) {
            match name {
                "CRON_TZ" | "TZ" => timezone = Some(value.to_string()),
                _ => out.skipped.push((trimmed.to_string(), format!("{name}= does not apply to pipecron"))),
            }
            continue;
        }
        match entry(trimmed, timezone.clone(), &mut out) {
            Ok(imported) => out.schedules.push(imported),
            Err(why) => out.skipped.push((mask_tokens(trimmed), why)),
        }
    }
    out
}

/// Lines with `\` continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `NAME=value` at the start of a crontab line (an environment setting, not a job).
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then(|| (name, value.trim().trim_matches('"').trim_matches('\'')))
}

/// One job line: schedule fields, then a curl command.
fn entry(line: &str, timezone: Option<String>, out: &mut Import) -> Result<Imported, String> {
    let (cron, command) = split_schedule(line)?;
    let words = shlex::split(command).ok_or("the command's quoting is unbalanced")?;
    let curl = Curl::parse(&words)?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    let url = Url::parse(&curl.url).map_err(|e| format!("'{}' is not a URL: {e}", curl.url))?;
    for (key, value) in url.query_pairs() {
        params.insert(key.into_owned(), value.into_owned());
    }
    for (data, field) in &curl.fields {
        let pairs: Vec<&str> = if *data { field.split('&').collect() } else { vec![field.as_str()] };
        for pair in pairs {
            if let Some((key, value)) = pair.split_once('=') {
                let (key, value) = match data {
                    true => (percent_decode(key), percent_decode(value)),
                    false => (key.to_string(), value.to_string()),
                };
                params.insert(key, value);
            }
        }
    }
    let endpoint = Endpoint::parse(&url)?;
    let git_ref = endpoint.git_ref.clone().or_else(|| params.get("ref").cloned()).ok_or("no ref= in the call")?;
    let token = params.get("token").cloned().ok_or("no token= in the call")?;
    let variables: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("variables[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let name = unique_name(&format!("{}-{}", endpoint.project, git_ref), &out.schedules);
    let token_var = token_var(&token, &name, out);
    Ok(Imported {
        name,
        cron: cron.to_string(),
        timezone,
        gitlab: endpoint.gitlab,
        project: endpoint.project,
        git_ref,
        token_var,
        variables,
        v3: endpoint.v3,
    })
}

/// The schedule part (5 fields or a nickname) and the rest of the line.
fn split_schedule(line: &str) -> Result<(&str, &str), String> {
    let fields = if line.starts_with('@') { 1 } else { 5 };
    let mut end = 0;
    let mut seen = 0;
    let bytes = line.as_bytes();
    while seen < fields {
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        if end == bytes.len() {
            return Err("not a crontab job line: too few fields".into());
        }
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        seen += 1;
    }
    Ok((line[..end].trim(), line[end..].trim()))
}

/// The parts of a curl command that matter: the URL and the fields. A `--data` field may hold several
/// `key=value` pairs joined by `&`; a `--form` field is one pair.
struct Curl {
    url: String,
    fields: Vec<(bool, String)>,
}

impl Curl {
    fn parse(words: &[String]) -> Result<Curl, String> {
        let start = words
            .iter()
            .position(|w| w == "curl" || w.ends_with("/curl"))
            .ok_or("no curl command (only curl calls to the trigger API are imported)")?;
        let field_options =
            ["-F", "--form", "--form-string", "-d", "--data", "--data-raw", "--data-urlencode", "--data-ascii"];
        let valued = [
            "-X",
            "--request",
            "-H",
            "--header",
            "-o",
            "--output",
            "-u",
            "--user",
            "-m",
            "--max-time",
            "--connect-timeout",
            "-w",
            "--write-out",
            "-A",
            "--user-agent",
            "--cacert",
            "-x",
            "--proxy",
            "--retry",
            "-e",
            "--referer",
            "--url",
        ];
        let mut url = None;
        let mut fields = Vec::new();
        let mut rest = words[start + 1..].iter();
        while let Some(word) = rest.next() {
            if let Some(option) = field_options.iter().find(|o| word == *o) {
                let value = rest.next().ok_or_else(|| format!("{option} has no value"))?;
                fields.push((option.starts_with("-d") || option.starts_with("--data"), value.clone()));
            } else if let Some((option, value)) =
                field_options.iter().find_map(|o| word.strip_prefix(&format!("{o}=")).map(|v| (o, v)))
            {
                fields.push((option.starts_with("--data"), value.to_string()));
            } else if word == "--url" {
                url = rest.next().cloned();
            } else if valued.contains(&word.as_str()) {
                rest.next();
            } else if word.starts_with('-') {
                continue;
            } else if word == "|" || word == ";" || word == "&&" || word.starts_with('>') {
                break;
            } else if url.is_none() {
                url = Some(word.clone());
            }
        }
        let url = url.ok_or("curl is given no URL")?;
        Ok(Curl { url, fields })
    }
}

/// What the URL says: the GitLab base, the project, and which endpoint.
struct Endpoint {
    gitlab: String,
    project: String,
    git_ref: Option<String>,
    v3: bool,
}

impl Endpoint {
    fn parse(url: &Url) -> Result<Endpoint, String> {
        let path = url.path();
        let (base, rest) = ["/api/v4/projects/", "/api/v3/projects/"]
            .iter()
            .find_map(|marker| path.find(marker).map(|i| (&path[..i], &path[i + marker.len()..])))
            .ok_or("the URL is not GitLab's trigger API (/api/v4/projects/ID/trigger/pipeline)")?;
        let v3 = path.contains("/api/v3/");
        let decode = |s: &str| percent_decode(s);
        let parts: Vec<&str> = rest.split('/').collect();
        let (project, git_ref) = match parts.as_slice() {
            [id, "trigger", "pipeline"] if !v3 => (decode(id), None),
            [id, "trigger", "builds"] if v3 => (decode(id), None),
            [id, "ref", git_ref, "trigger", "pipeline"] => (decode(id), Some(decode(git_ref))),
            _ => return Err("the URL is not a trigger endpoint (…/trigger/pipeline or …/trigger/builds)".into()),
        };
        let mut gitlab = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            let _ = write!(gitlab, ":{port}");
        }
        gitlab.push_str(base.trim_end_matches('/'));
        Ok(Endpoint { gitlab, project, git_ref, v3 })
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// A schedule name from the project and ref, `[A-Za-z0-9._-]`, unique among those imported so far.
fn unique_name(raw: &str, taken: &[Imported]) -> String {
    let base: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|s| s.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The environment variable for a token: the shell variable the crontab already used (`token=$TOKEN`), or a new
/// `TRIGGER_TOKEN_<NAME>`; the same token always gets the same variable.
fn token_var(token: &str, name: &str, out: &mut Import) -> String {
    let reference = token.strip_prefix('$').map(|v| v.trim_start_matches('{').trim_end_matches('}'));
    if let Some(var) = reference.filter(|v| crate::config::interpolate::is_var_name(v)) {
        return var.to_string();
    }
    if let Some((var, _)) = out.tokens.iter().find(|(_, t)| *t == token) {
        return var.clone();
    }
    let suffix: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    let var = format!("TRIGGER_TOKEN_{suffix}");
    out.tokens.insert(var.clone(), token.to_string());
    var
}

/// A line kept as a comment shows no token: `token=` values are masked.
fn mask_tokens(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("token=") {
        out.push_str(&rest[..i + 6]);
        let after = &rest[i + 6..];
        let end = after.find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'')).unwrap_or(after.len());
        out.push_str(&Secret::new(after[..end].to_string()).masked());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The schedule file, with the variables to set listed at the top.
pub fn to_yaml(import: &Import) -> String {
    let mut out = String::from("# Imported by `pipecron import-crontab`.\n");
    let vars: Vec<&String> = {
        let mut vars: Vec<&String> = import.schedules.iter().map(|s| &s.token_var).collect();
        vars.sort();
        vars.dedup();
        vars
    };
    if !vars.is_empty() {
        let _ = writeln!(
            out,
            "# Set these environment variables to the trigger tokens: {}",
            vars.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    for (line, why) in &import.skipped {
        let _ = writeln!(out, "# not imported ({why}): {line}");
    }
    out.push_str("schedules:\n");
    if import.schedules.is_empty() {
        out.push_str("  {}\n");
    }
    for s in &import.schedules {
        let _ = writeln!(out, "  {}:", s.name);
        let _ = writeln!(out, "    cron: {}", quote(&s.cron));
        if let Some(tz) = &s.timezone {
            let _ = writeln!(out, "    timezone: {}", quote(tz));
        }
        let _ = writeln!(out, "    gitlab: {}", quote(&s.gitlab));
        let _ = writeln!(out, "    token: ${{{}}}", s.token_var);
        let project = if s.project.chars().all(|c| c.is_ascii_digit()) { s.project.clone() } else { quote(&s.project) };
        let _ = writeln!(out, "    project: {project}");
        let _ = writeln!(out, "    ref: {}", quote(&s.git_ref));
        if s.v3 {
            out.push_str("    api: v3\n");
        }
        if !s.variables.is_empty() {
            out.push_str("    variables:\n");
            for (key, value) in &s.variables {
                let _ = writeln!(out, "      {key}: {}", quote(value));
            }
        }
    }
    out
}

/// A YAML double-quoted string; `$` is doubled where it would read as `${`.
fn quote(text: &str) -> String {
    serde_json::Value::String(text.replace("${", "$${")).to_string()
}

/// The `.env` file for `--write-env`.
pub fn to_env(import: &Import) -> String {
    import.tokens.iter().map(|(var, token)| format!("{var}={token}\n")).collect()
}

#[cfg(test)]
mod tests;
