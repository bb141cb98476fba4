//! `import-crontab`: crontab lines that call GitLab's trigger API with curl, turned into schedule YAML.
//!
//! It understands the forms in GitLab's docs: `--form`/`-F` and `--data`/`-d` fields, `token=` and `ref=` in the
//! query string, `variables[KEY]=value`, the v3 `/trigger/builds` endpoint, the `/ref/REF/trigger/pipeline` webhook
//! form, quoting, `\` continuations and `CRON_TZ=`/`TZ=` lines. Fields are read as the server reads what curl sends:
//! a `-d` body is form-encoded (`+` is a space, `%XX` a byte), a `--data-urlencode` value and a `-F` value are
//! taken as written. A token is never written into the YAML: it becomes a `${VAR}` reference, and its value goes
//! only to the `.env` file the caller asks for. Lines it cannot translate are kept as comments, with their line
//! number and the reason, shortened, with any token in them masked.
//!
//! A crontab is read as bytes: a line that is not UTF-8, or longer than [`MAX_LINE`], is reported and skipped, and
//! the output stays a valid YAML file whatever the input held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use url::Url;

use crate::secret::Secret;

/// Lines longer than this (after `\` continuations are joined) are not imported.
pub const MAX_LINE: usize = 16 * 1024;
/// At most this many characters of a skipped line are shown in its comment.
const SHOWN: usize = 160;
/// At most this many characters of a value are quoted in a message.
const QUOTED: usize = 60;

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

/// A crontab line that was not translated.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Its number in the crontab, from 1 (for a line continued with `\`, its first line).
    pub line: usize,
    /// The line as a comment may show it: tokens masked, control characters escaped, at most 160 characters
    /// (`SHOWN`).
    pub text: String,
    /// Why it was not translated.
    pub why: String,
}

/// What a crontab came to.
#[derive(Debug, Default)]
pub struct Import {
    pub schedules: Vec<Imported>,
    /// Environment variable → token, for `--write-env`.
    pub tokens: BTreeMap<String, String>,
    /// Lines that were not translated.
    pub skipped: Vec<Skipped>,
    /// The schedule names given so far, and the last number given after each base name: a crontab of many alike
    /// lines is named in one pass.
    names: HashSet<String>,
    numbered: HashMap<String, usize>,
    /// Token → its environment variable.
    vars: HashMap<String, String>,
}

/// Reads a crontab.
pub fn import(crontab: impl AsRef<[u8]>) -> Import {
    let mut out = Import::default();
    let mut timezone = None;
    for line in logical_lines(crontab.as_ref()) {
        let bytes = line.bytes.trim_ascii();
        if bytes.is_empty() || bytes.starts_with(b"#") {
            continue;
        }
        let skip = |why: String| Skipped { line: line.number, text: shown(&String::from_utf8_lossy(bytes)), why };
        if line.bytes.len() > MAX_LINE {
            out.skipped.push(skip(format!("the line is {} bytes long; at most {MAX_LINE} are read", line.bytes.len())));
            continue;
        }
        let trimmed = match std::str::from_utf8(bytes) {
            Ok(text) => text.trim(),
            Err(e) => {
                let indent = line.bytes.len() - line.bytes.trim_ascii_start().len();
                let why = format!("the line is not UTF-8 text (byte {} is not)", indent + e.valid_up_to() + 1);
                out.skipped.push(skip(why));
                continue;
            }
        };
        if let Some((name, value)) = assignment(trimmed) {
            match name {
                "CRON_TZ" | "TZ" => timezone = Some(value.to_string()),
                // The value is not shown: it may well be a token.
                _ => out.skipped.push(Skipped {
                    line: line.number,
                    text: format!("{name}=…"),
                    why: format!("{name}= does not apply to pipecron"),
                }),
            }
            continue;
        }
        match entry(trimmed, timezone.clone(), &mut out) {
            Ok(imported) => out.schedules.push(imported),
            Err(why) => out.skipped.push(Skipped { line: line.number, text: shown(trimmed), why }),
        }
    }
    out
}

/// A line of the crontab with its `\` continuations joined.
struct Logical<'a> {
    /// The number of its first line, from 1.
    number: usize,
    bytes: std::borrow::Cow<'a, [u8]>,
}

/// The crontab's lines, `\r\n` or `\n` ended, with `\` continuations joined by a space. A comment line never
/// continues: cron itself knows no continuations, and a job after a commented-out one must not vanish into it.
fn logical_lines(text: &[u8]) -> Vec<Logical<'_>> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    let physical = text.strip_suffix(b"\n").unwrap_or(text).split(|b| *b == b'\n');
    for (index, line) in physical.enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let number = index + 1;
        let continued = line.strip_suffix(b"\\");
        match (current.take(), continued) {
            (None, _) if line.trim_ascii_start().starts_with(b"#") => {
                lines.push(Logical { number, bytes: line.into() });
            }
            (None, None) => lines.push(Logical { number, bytes: line.into() }),
            (None, Some(part)) => current = Some((number, [part, b" "].concat())),
            (Some((first, mut joined)), None) => {
                joined.extend_from_slice(line);
                lines.push(Logical { number: first, bytes: joined.into() });
            }
            (Some((first, mut joined)), Some(part)) => {
                joined.extend_from_slice(part);
                joined.push(b' ');
                current = Some((first, joined));
            }
        }
    }
    if let Some((number, joined)) = current {
        lines.push(Logical { number, bytes: joined.into() });
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
    let command = cron_command(command);
    let words = shlex::split(&command).ok_or_else(|| unbalanced(&command))?;
    let curl = Curl::parse(&words)?;
    let url = Url::parse(&curl.url).map_err(|e| format!("{} is not a URL: {e}", quoted(&curl.url)))?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    // The body's fields win over the query string's, as in Rails.
    params.extend(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())));
    params.extend(curl.body.fields());
    let endpoint = Endpoint::parse(&url)?;
    let git_ref = endpoint
        .git_ref
        .clone()
        .or_else(|| params.get("ref").cloned())
        .filter(|r| !r.is_empty())
        .ok_or("no ref= in the call")?;
    let token = params.get("token").cloned().filter(|t| !t.is_empty()).ok_or("no token= in the call")?;
    if token.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\')) {
        return Err("the token holds a space, a quote or a control character, which no trigger token does".into());
    }
    let mut variables = BTreeMap::new();
    for (key, value) in &params {
        if let Some(name) = key.strip_prefix("variables[").and_then(|k| k.strip_suffix(']')) {
            variable_name(name)?;
            variables.insert(name.to_string(), value.clone());
        } else if key.starts_with("inputs[") {
            return Err("it passes inputs[…], which are not imported; write them under `inputs:` by hand".into());
        }
    }
    let name = unique_name(&format!("{}-{}", endpoint.project, git_ref), out);
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

/// A variable name a schedule file accepts (see `config`): letters, digits and `_`, and not pipecron's own.
fn variable_name(name: &str) -> Result<(), String> {
    if !crate::config::interpolate::is_var_name(name) {
        return Err(format!(
            "variables[{}]: not a valid variable name (letters, digits and _, not starting with a digit)",
            brief(name)
        ));
    }
    if name.to_ascii_uppercase().starts_with("PIPECRON_") {
        return Err(format!("variables[{name}]: PIPECRON_ variables are pipecron's own"));
    }
    Ok(())
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

/// The command as cron hands it to the shell: `\%` is a `%`. (An unescaped `%` would end the command there, the
/// rest going to its standard input; it is left as it is, as most crontabs that hold one mean a `%`.)
fn cron_command(command: &str) -> String {
    command.replace("\\%", "%")
}

/// Why the shell cannot split `command`: which quote is never closed, or the lone `\` at its end.
fn unbalanced(command: &str) -> String {
    let mut open: Option<(usize, char)> = None;
    let mut chars = command.char_indices();
    while let Some((i, c)) = chars.next() {
        match (open, c) {
            (None, '\\') | (Some((_, '"')), '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => open = Some((i, c)),
            (Some((_, q)), c) if c == q => open = None,
            _ => {}
        }
    }
    match open {
        Some((i, q)) => {
            format!("the command's quoting is unbalanced: the {q} before {} is never closed", quoted(&command[i + 1..]))
        }
        None => "the command ends with a lone \\".into(),
    }
}

/// The parts of a curl command that matter: the URL and the body.
struct Curl {
    url: String,
    body: Body,
}

/// What curl sends: nothing, a form-encoded body (`-d`), or a multipart form (`-F`).
enum Body {
    None,
    /// The `-d` pieces, joined by `&` as curl joins them.
    Urlencoded(Vec<String>),
    /// The `-F` fields, as sent.
    Multipart(Vec<(String, String)>),
}

impl Body {
    /// The fields as GitLab reads them.
    fn fields(&self) -> Vec<(String, String)> {
        match self {
            Body::None => Vec::new(),
            Body::Urlencoded(pieces) => form_urlencoded::parse(pieces.join("&").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            Body::Multipart(fields) => fields.clone(),
        }
    }

    fn add_data(&mut self, option: &str, piece: String) -> Result<(), String> {
        match self {
            Body::None => *self = Body::Urlencoded(vec![piece]),
            Body::Urlencoded(pieces) => pieces.push(piece),
            Body::Multipart(_) => return Err(mixed(option)),
        }
        Ok(())
    }

    fn add_form(&mut self, option: &str, field: (String, String)) -> Result<(), String> {
        match self {
            Body::None => *self = Body::Multipart(vec![field]),
            Body::Multipart(fields) => fields.push(field),
            Body::Urlencoded(_) => return Err(mixed(option)),
        }
        Ok(())
    }
}

fn mixed(option: &str) -> String {
    format!("{option} with both -d and -F fields, which curl refuses")
}

/// Options that take a value, which is not the URL. Others that start with `-` are flags.
const VALUED: &[&str] = &[
    "-A",
    "--user-agent",
    "-b",
    "--cookie",
    "-c",
    "--cookie-jar",
    "-C",
    "--continue-at",
    "-D",
    "--dump-header",
    "-E",
    "--cert",
    "-e",
    "--referer",
    "-H",
    "--header",
    "-m",
    "--max-time",
    "-o",
    "--output",
    "-P",
    "--ftp-port",
    "-Q",
    "--quote",
    "-r",
    "--range",
    "-t",
    "--telnet-option",
    "-U",
    "--proxy-user",
    "-u",
    "--user",
    "-w",
    "--write-out",
    "-X",
    "--request",
    "-x",
    "--proxy",
    "-Y",
    "--speed-limit",
    "-y",
    "--speed-time",
    "-z",
    "--time-cond",
    "--abstract-unix-socket",
    "--alt-svc",
    "--aws-sigv4",
    "--cacert",
    "--capath",
    "--cert-type",
    "--ciphers",
    "--connect-timeout",
    "--connect-to",
    "--create-file-mode",
    "--dns-servers",
    "--etag-compare",
    "--etag-save",
    "--expect100-timeout",
    "--happy-eyeballs-timeout-ms",
    "--hsts",
    "--interface",
    "--keepalive-time",
    "--key",
    "--key-type",
    "--limit-rate",
    "--local-port",
    "--max-filesize",
    "--max-redirs",
    "--netrc-file",
    "--noproxy",
    "--oauth2-bearer",
    "--output-dir",
    "--pass",
    "--pinnedpubkey",
    "--preproxy",
    "--proto",
    "--proto-redir",
    "--proxy-header",
    "--resolve",
    "--retry",
    "--retry-delay",
    "--retry-max-time",
    "--socks4",
    "--socks4a",
    "--socks5",
    "--socks5-hostname",
    "--stderr",
    "--tls-max",
    "--trace",
    "--trace-ascii",
    "--unix-socket",
];

/// Options that make the call something an import cannot reproduce.
const REFUSED: &[(&str, &str)] = &[
    ("-G", "sends the -d fields in the query string of a GET, which GitLab's trigger API does not take"),
    ("--get", "sends the -d fields in the query string of a GET, which GitLab's trigger API does not take"),
    ("-K", "reads more options from a file"),
    ("--config", "reads more options from a file"),
    ("-T", "uploads a file"),
    ("--upload-file", "uploads a file"),
    ("--json", "sends a JSON body, which is not imported"),
    ("--url-query", "adds to the query string in a way that is not imported"),
    ("--variable", "uses curl variables"),
    ("--next", "makes more than one call"),
    ("-:", "makes more than one call"),
];

/// What an option does with its value.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `-d`, `--data`, `--data-ascii`, `--data-binary`: a piece of a form-encoded body, `@file` read from a file.
    Data,
    /// `--data-raw`: a piece taken as written.
    DataRaw,
    /// `--data-urlencode`: a value curl encodes.
    DataUrlencode,
    /// `-F`, `--form`: a multipart field; `@file`, `<file` and `;type=` have their own meaning.
    Form,
    /// `--form-string`: a multipart field taken as written.
    FormString,
    /// `--url`.
    Url,
    /// Any other option with a value.
    Other,
}

fn option_kind(option: &str) -> Option<Kind> {
    match option {
        "-d" | "--data" | "--data-ascii" | "--data-binary" => Some(Kind::Data),
        "--data-raw" => Some(Kind::DataRaw),
        "--data-urlencode" => Some(Kind::DataUrlencode),
        "-F" | "--form" => Some(Kind::Form),
        "--form-string" => Some(Kind::FormString),
        "--url" => Some(Kind::Url),
        _ if VALUED.contains(&option) => Some(Kind::Other),
        _ => None,
    }
}

impl Curl {
    fn parse(words: &[String]) -> Result<Curl, String> {
        let start = words
            .iter()
            .position(|w| w == "curl" || w.ends_with("/curl"))
            .ok_or("no curl command (only curl calls to the trigger API are imported)")?;
        let mut url = None;
        let mut body = Body::None;
        let mut rest = words[start + 1..].iter();
        while let Some(word) = rest.next() {
            if matches!(word.as_str(), "|" | "||" | ";" | "&&" | "&") || is_redirect(word) {
                break;
            }
            let name = word.split_once('=').map_or(word.as_str(), |(option, _)| option);
            if let Some((option, why)) = REFUSED.iter().find(|(option, _)| name == *option) {
                return Err(format!("curl {option} {why}"));
            }
            // `--option value`, `--option=value`, `-o value`, `-ovalue`, and flags grouped before it: `-sSo value`.
            let (option, attached) = if word.starts_with("--") {
                match word.split_once('=') {
                    Some((option, value)) if option_kind(option).is_some() => (option.to_string(), Some(value)),
                    _ => (word.clone(), None),
                }
            } else if word.len() > 1 && word.starts_with('-') {
                match short_option(word)? {
                    Some((option, value)) => (option, value),
                    None => continue,
                }
            } else {
                match url.replace(word.clone()) {
                    None => continue,
                    Some(first) => {
                        return Err(format!(
                            "curl is given two URLs, {} and {} (or an option pipecron does not know takes a value)",
                            quoted(&first),
                            quoted(word)
                        ));
                    }
                }
            };
            let Some(kind) = option_kind(&option) else { continue };
            let value = match attached {
                Some(value) => value.to_string(),
                None => rest.next().ok_or_else(|| format!("{option} has no value"))?.clone(),
            };
            match kind {
                Kind::Data if value.starts_with('@') => {
                    return Err(format!("{option} {} reads the body from a file", quoted(&value)));
                }
                Kind::Data | Kind::DataRaw => body.add_data(&option, value)?,
                Kind::DataUrlencode => body.add_data(&option, urlencoded_piece(&value)?)?,
                Kind::Form => body.add_form(&option, form_field(&option, &value, false)?)?,
                Kind::FormString => body.add_form(&option, form_field(&option, &value, true)?)?,
                Kind::Url => {
                    if let Some(first) = url.replace(value) {
                        return Err(format!("curl is given two URLs, {} and --url", quoted(&first)));
                    }
                }
                Kind::Other => {}
            }
        }
        let url = url.ok_or("curl is given no URL")?;
        Ok(Curl { url, body })
    }
}

/// A word of grouped short options, `-sS`, `-XPOST` or `-sd`: the option in it that takes a value, and the value if
/// it is attached (`-XPOST`); `None` for flags only.
fn short_option(word: &str) -> Result<Option<(String, Option<&str>)>, String> {
    for (i, letter) in word.char_indices().skip(1) {
        let option = format!("-{letter}");
        if let Some((_, why)) = REFUSED.iter().find(|(o, _)| *o == option) {
            return Err(format!("curl {option} {why}"));
        }
        if option_kind(&option).is_some() {
            let attached = &word[i + letter.len_utf8()..];
            return Ok(Some((option, (!attached.is_empty()).then_some(attached))));
        }
    }
    Ok(None)
}

/// `>file`, `2>&1`, `<file`: a shell redirection, after which no curl arguments follow.
fn is_redirect(word: &str) -> bool {
    word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&').starts_with(['>', '<'])
}

/// What `--data-urlencode` adds to the body: `name=content` and `=content` send the content encoded, `@file` and
/// `name@file` read it from a file (whichever of `=` and `@` comes first decides).
fn urlencoded_piece(value: &str) -> Result<String, String> {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    match value.find(['=', '@']) {
        Some(i) if value[i..].starts_with('@') => {
            Err(format!("--data-urlencode {} reads the value from a file", quoted(value)))
        }
        Some(0) => Ok(encode(&value[1..])),
        Some(i) => Ok(format!("{}={}", &value[..i], encode(&value[i + 1..]))),
        None => Ok(encode(value)),
    }
}

/// A `-F name=content` field as curl sends it. `@file` and `<file` read a file, and curl reads `;type=` and other
/// `;` parameters after a value (and a `"`-quoted value) as its own syntax, which is not imported: the line is
/// refused rather than guessed at. `--form-string` takes the value as written.
fn form_field(option: &str, value: &str, literal: bool) -> Result<(String, String), String> {
    let (name, content) = value.split_once('=').ok_or_else(|| format!("{option} {} has no '='", quoted(value)))?;
    if !literal {
        if content.starts_with(['@', '<']) {
            return Err(format!("{option} {} reads the value from a file", quoted(value)));
        }
        if content.contains(';') || content.starts_with('"') {
            return Err(format!(
                "{option} {}: curl reads ';' and a leading '\"' in a form value as its own syntax (;type=…); \
                 use --form-string for a value taken as written",
                quoted(value)
            ));
        }
    }
    Ok((name.to_string(), content.to_string()))
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
        let parts: Vec<&str> = rest.split('/').collect();
        let (project, git_ref) = match parts.as_slice() {
            [id, "trigger", "pipeline"] if !v3 => (path_segment(id), None),
            [id, "trigger", "builds"] if v3 => (path_segment(id), None),
            [id, "ref", git_ref, "trigger", "pipeline"] => (path_segment(id), Some(path_segment(git_ref))),
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

/// A path segment as the server reads it: `%XX` decoded, `+` itself (form encoding is for bodies and queries).
fn path_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// A schedule name from the project and ref, `[A-Za-z0-9._-]`, unique among those imported so far: the second
/// `9-main` is `9-main-2`.
fn unique_name(raw: &str, out: &mut Import) -> String {
    let base: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let mut name = base.clone();
    let n = out.numbered.entry(base.clone()).or_insert(1);
    while out.names.contains(&name) {
        *n += 1;
        name = format!("{base}-{n}");
    }
    out.names.insert(name.clone());
    name
}

/// The environment variable for a token: the shell variable the crontab already used (`token=$TOKEN`), or a new
/// `TRIGGER_TOKEN_<NAME>`; the same token always gets the same variable.
fn token_var(token: &str, name: &str, out: &mut Import) -> String {
    let reference = token.strip_prefix('$').map(|v| v.trim_start_matches('{').trim_end_matches('}'));
    if let Some(var) = reference.filter(|v| crate::config::interpolate::is_var_name(v)) {
        return var.to_string();
    }
    if let Some(var) = out.vars.get(token) {
        return var.clone();
    }
    let suffix: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    // `9-main` and `9.main` make the same variable: a second token gets a number rather than taking the first's.
    let mut var = format!("TRIGGER_TOKEN_{suffix}");
    let mut n = 1;
    while out.tokens.contains_key(&var) {
        n += 1;
        var = format!("TRIGGER_TOKEN_{suffix}_{n}");
    }
    out.tokens.insert(var.clone(), token.to_string());
    out.vars.insert(token.to_string(), var.clone());
    var
}

/// The prefixes of GitLab's tokens, masked wherever they appear.
const TOKEN_PREFIXES: &[&str] =
    &["glptt-", "glpat-", "gldt-", "glrt-", "glcbt-", "glft-", "glimt-", "gloas-", "glsoat-", "glagent-"];

/// A line kept as a comment shows no token: `token=` values (in any case, so `private_token=` too) and words that
/// start like a GitLab token are masked. Each pattern's next place is looked for once it has been passed, so a long
/// line full of them costs a few passes over it, not one per match.
fn mask_tokens(line: &str) -> String {
    const ASSIGNED: &str = "token=";
    let lower = line.to_ascii_lowercase();
    let patterns: Vec<&str> = std::iter::once(ASSIGNED).chain(TOKEN_PREFIXES.iter().copied()).collect();
    let mut next: Vec<Option<usize>> = patterns.iter().map(|p| lower.find(p)).collect();
    let mut out = String::new();
    let mut at = 0;
    loop {
        for (pattern, next) in patterns.iter().zip(&mut next) {
            if next.is_some_and(|n| n < at) {
                *next = lower[at..].find(pattern).map(|i| at + i);
            }
        }
        let found = patterns.iter().zip(&next).filter_map(|(p, n)| n.map(|n| (n, *p == ASSIGNED))).min();
        let Some((found, assigned)) = found else { break };
        let value = if assigned { found + ASSIGNED.len() } else { found };
        let end = line[value..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | ';' | ')'))
            .map_or(line.len(), |i| value + i);
        out.push_str(&line[at..value]);
        if end > value {
            out.push_str(&Secret::new(line[value..end].to_string()).masked());
        }
        at = end.max(found + 1);
    }
    out.push_str(&line[at..]);
    out
}

/// Text that may go in a YAML comment or message: characters YAML does not allow there, or would read as a line
/// break, are escaped (`\u{1b}`).
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                c.escape_unicode().to_string()
            }
            c => c.to_string(),
        })
        .collect()
}

/// At most `max` characters of `text`, saying how much more there was.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => {
            let more = text.len() - cut;
            format!("{}… ({more} more byte{})", &text[..cut], if more == 1 { "" } else { "s" })
        }
    }
}

/// A skipped line as its comment shows it.
fn shown(line: &str) -> String {
    shorten(&escape_controls(&mask_tokens(line)), SHOWN)
}

/// A value as a message shows it.
fn brief(text: &str) -> String {
    shorten(&escape_controls(&mask_tokens(text)), QUOTED)
}

/// A value in quotes, as a message shows it.
fn quoted(text: &str) -> String {
    format!("'{}'", brief(text))
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
    for skipped in &import.skipped {
        let _ = writeln!(out, "# line {}, not imported: {}", skipped.line, escape_controls(&skipped.why));
        let _ = writeln!(out, "#   {}", escape_controls(&skipped.text));
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

/// A YAML double-quoted string; `$` is doubled where it would read as `${`, and every character YAML does not take
/// as it is (controls, line breaks, non-characters) is escaped.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.replace("${", "$${").chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `.env` file for `--write-env`.
pub fn to_env(import: &Import) -> String {
    import.tokens.iter().map(|(var, token)| format!("{var}={token}\n")).collect()
}

#[cfg(test)]
mod tests;
