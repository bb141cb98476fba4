//! What one trigger attempt came to, classified as GitLab's answers mean it: a pipeline, a transient failure worth
//! retrying, or a permanent one with the message a user needs.
//!
//! GitLab's trigger API answers 201 with the pipeline (before GitLab 13, a .gitlab-ci.yml error is a 201 whose
//! pipeline is `failed` with `yaml_errors`; later it is a 422). A 400 is a refusal (token or ref missing, "Reference
//! not found" for a ref that is no branch or tag, ...), except its pipeline-creation rate limit, which is also a 400
//! ("Too many pipelines created in the last minute", no Retry-After) and passes within a minute. A 404 is an unknown
//! project or token: GitLab does not say which, on purpose. Its IP throttle answers 429 with Retry-After; 500, 502,
//! 503 and 504 are server trouble. API v3 is answered 410 by GitLab 11 and later.

use std::time::Duration;

use serde_json::Value;

use super::{Pipeline, TriggerRequest};
use crate::schedule::Api;

/// One attempt's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Created(Pipeline),
    /// GitLab answered 201, so it created a pipeline, but its answer cannot be read as that pipeline (not JSON, too
    /// long, no `id`, or cut off). Never retried, since a retry would create a second pipeline; the run ends
    /// `unknown` (`created` says why).
    Unconfirmed {
        message: String,
    },
    /// Worth retrying, after at least `wait` if GitLab said so. `maybe_sent`: the request may have reached GitLab
    /// without pipecron learning what GitLab did with it (no answer after sending, or a gateway's 502 or 504), so a
    /// pipeline may exist; `fire` makes the message say so.
    Transient {
        http_status: Option<u16>,
        message: String,
        wait: Option<Duration>,
        maybe_sent: bool,
    },
    /// Retrying would not help. A 201 whose pipeline failed at once carries it in `pipeline`.
    Permanent {
        http_status: Option<u16>,
        message: String,
        pipeline: Option<Pipeline>,
    },
}

/// How much of an answer is read to classify it: far more than any message of GitLab's, and the start of a proxy's
/// page. The rest is not read: a 200 MB answer costs 64 KiB.
pub const READ_LIMIT: usize = 64 * 1024;
/// How much of a 201 is read as the pipeline. GitLab's is about 1 KiB: a longer one is not parsed.
pub const PIPELINE_LIMIT: usize = 1024 * 1024;
/// How many characters of a proxy's page, or of a body that is not JSON, go into a message.
const EXCERPT_CHARS: usize = 200;
/// How many characters of GitLab's own words (its JSON `message`) go into a message.
const GITLAB_CHARS: usize = 300;
/// The longest `web_url` kept from a 201: GitLab's are short, and the URL is stored and shown.
const URL_CHARS: usize = 2048;

const NOT_FOUND: &str = "GitLab answered 404: the project does not exist, or the trigger token is wrong, revoked or \
                         belongs to another project (a personal access token does not work here)";
const RATE_LIMITED: &str = "Too many pipelines created in the last minute";
/// Who answered, when the answer may not be GitLab's own: a gateway's 502 or 504, or any HTML page.
const GITLAB_OR_PROXY: &str = "GitLab (or a proxy in front of it)";

/// What was not read of a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// It was longer than the limit: `read` bytes were read and the rest left unread. `length` is its size, when
    /// the answer declared one.
    TooLong { read: usize, length: Option<u64> },
    /// It broke off after `read` bytes: the connection failed, or the timeout passed (`why`).
    BrokeOff { read: usize, why: String },
}

impl Cut {
    fn describe(&self) -> String {
        match self {
            Cut::TooLong { read, length: Some(length) } => {
                format!("only the first {} of its {} answer were read", size(*read as u64), size(*length))
            }
            Cut::TooLong { read, length: None } => {
                format!("only the first {} of its answer were read; it was longer", size(*read as u64))
            }
            Cut::BrokeOff { read, why } => format!("its answer broke off after {}: {why}", size(*read as u64)),
        }
    }
}

/// The parts of GitLab's answer that `classify` reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub location: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The body as far as it was read: at most `READ_LIMIT` bytes, or `PIPELINE_LIMIT` for a 201.
    pub body: &'a [u8],
    /// What was not read of it, if anything.
    pub cut: Option<&'a Cut>,
}

/// Classifies GitLab's answer to `request`.
pub fn classify(request: &TriggerRequest, answer: Answer) -> Attempt {
    let Answer { status, retry_after, location, content_type, body, cut } = answer;
    if status == 201 {
        return created(body, content_type, cut);
    }
    let said = Said::read(body, content_type, cut.is_some());
    let who = if said.html || matches!(status, 502 | 504) { GITLAB_OR_PROXY } else { "GitLab" };
    let what = said.shown();
    let note = cut.map(|cut| format!(" ({})", cut.describe())).unwrap_or_default();
    let transient = |message: String, wait, maybe_sent| Attempt::Transient {
        http_status: Some(status),
        message: format!("{message}{note}"),
        wait,
        maybe_sent,
    };
    let permanent = |message: String| Attempt::Permanent {
        http_status: Some(status),
        message: format!("{message}{note}"),
        pipeline: None,
    };
    match status {
        300..=399 => permanent(redirected(status, location)),
        // A gateway answers 502 or 504 when GitLab failed or was too slow, perhaps after it got the request.
        502 | 504 => transient(format!("{who} answered {status}{what}"), None, true),
        408 | 500 | 503 => transient(format!("{who} answered {status}{what}"), None, false),
        429 => {
            let asked = retry_after.and_then(parse_retry_after);
            let told = asked.map(|wait| format!("; it asked to wait {}s", wait.as_secs())).unwrap_or_default();
            transient(
                format!("{who} answered 429, too many requests{what}{told}"),
                Some(asked.unwrap_or(Duration::from_secs(1))),
                false,
            )
        }
        400 if said.text.contains(RATE_LIMITED) => {
            transient(format!("GitLab's pipeline rate limit: {}", said.text), Some(Duration::from_secs(60)), false)
        }
        400 if said.text.contains("Reference not found") => {
            permanent(format!("ref '{}' is not a branch or tag of project {}", request.git_ref, request.project))
        }
        400 => permanent(format!("{who} refused the trigger{what}")),
        401 => permanent(format!("{who} answered 401, unauthorized{what}")),
        403 => permanent(format!("{who} answered 403, forbidden{what}")),
        // GitLab's API answers 404 in JSON; a page is a web server's, so the address is wrong, not the token.
        404 if said.html => permanent(format!(
            "{who} answered 404{what}; that is not GitLab's API: is `gitlab` GitLab's address (with its path, if it \
             is served under one)?"
        )),
        404 => permanent(NOT_FOUND.to_string()),
        410 if request.api == Api::V3 => permanent("this GitLab no longer serves API v3: set `api: v4`".into()),
        422 => permanent(format!("GitLab refused the pipeline configuration: {}", said.text)),
        _ => permanent(format!("{who} answered {status}{what}")),
    }
}

/// A 201: GitLab created a pipeline, and its answer says which.
///
/// When the answer cannot be read as a pipeline (not JSON, longer than `PIPELINE_LIMIT`, no `id`, or cut off),
/// the run ends `unknown`, and is not retried. Not `succeeded`: pipecron cannot say which pipeline, and an address
/// that answers 201 to anything (a proxy's catch-all, something that is not GitLab) would then be recorded as
/// success on every run while no pipeline ever starts. Not `failed`: GitLab's 201 means it created one, and a
/// person who reads `failed` fires the schedule again, making a second. `unknown` says what is known, that a
/// pipeline may exist and GitLab is the place to look; it is what alerts and `run-now`'s exit status 5 tell.
fn created(body: &[u8], content_type: Option<&str>, cut: Option<&Cut>) -> Attempt {
    let unconfirmed = |why: String| Attempt::Unconfirmed {
        message: format!(
            "GitLab answered 201 Created but {why}; a pipeline may have been created, and pipecron cannot tell \
             which, so it does not retry; look for it among the project's pipelines, and check that `gitlab` is \
             GitLab's address"
        ),
    };
    match cut {
        Some(Cut::TooLong { length, .. }) => {
            let length = length.map(|length| format!(" ({})", size(length))).unwrap_or_default();
            let limit = size(PIPELINE_LIMIT as u64);
            return unconfirmed(format!("its answer is longer than {limit}{length}, too long to be a pipeline"));
        }
        Some(Cut::BrokeOff { read, why }) => {
            return unconfirmed(format!("its answer broke off after {}: {why}", size(*read as u64)));
        }
        None => {}
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        let said = Said::read(body, content_type, false);
        let kind = if said.html { "an HTML page" } else { "not JSON" };
        return unconfirmed(format!("its answer is {kind}, not a pipeline: {}", said.text));
    };
    let Some(pipeline) = pipeline_of(&json) else {
        let shown = excerpt(&json.to_string(), EXCERPT_CHARS, false);
        return unconfirmed(format!("its answer has no pipeline `id`: {shown}"));
    };
    let yaml_errors = json.get("yaml_errors").filter(|e| !e.is_null());
    match yaml_errors {
        Some(errors) if pipeline.status == "failed" => Attempt::Permanent {
            http_status: Some(201),
            message: format!(
                "GitLab created pipeline {} but it failed at once: {}",
                pipeline.id,
                excerpt(&text_of(errors), GITLAB_CHARS, false)
            ),
            pipeline: Some(pipeline),
        },
        _ => Attempt::Created(pipeline),
    }
}

/// The pipeline in a 201's JSON: its `id` is what matters; unknown fields are ignored.
fn pipeline_of(json: &Value) -> Option<Pipeline> {
    let id = json.get("id")?.as_u64()?;
    let text = |key: &str| json.get(key).and_then(Value::as_str);
    Some(Pipeline::created(
        id,
        json.get("iid").and_then(Value::as_u64),
        // GitLab always sends it; a 201 is a pipeline just created.
        &text("status").map(|s| excerpt(s, 40, false)).unwrap_or_else(|| "created".into()),
        text("web_url").filter(|url| url.len() <= URL_CHARS).map(String::from),
    ))
}

/// pipecron does not follow redirects: a 301 or 302 would turn the POST into a GET and drop the token, and a 307
/// or 308 would send the token wherever the redirect points.
fn redirected(status: u16, location: Option<&str>) -> String {
    let target = location.map(|l| format!(" to {}", excerpt(l, EXCERPT_CHARS, false))).unwrap_or_default();
    format!(
        "GitLab answered {status}, a redirect{target}; pipecron does not follow redirects, as they would drop the \
         token or send it elsewhere: set `gitlab` to the address GitLab is served at"
    )
}

/// What a body says, short and on one line: GitLab's message from its JSON, the title (or text) of an HTML page,
/// or the start of anything else.
struct Said {
    text: String,
    html: bool,
}

impl Said {
    /// `cut`: the body was not read whole, so the text shown ends with "…" in any case.
    fn read(body: &[u8], content_type: Option<&str>, cut: bool) -> Said {
        if let Ok(json) = serde_json::from_slice::<Value>(body) {
            return Said { text: excerpt(&gitlab_message(&json), GITLAB_CHARS, false), html: false };
        }
        let text = String::from_utf8_lossy(body);
        let html =
            content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) || text.trim_start().starts_with('<');
        let words = if html { page_text(&text) } else { text.into_owned() };
        Said { text: excerpt(&words, EXCERPT_CHARS, cut), html }
    }

    /// As it follows "GitLab answered 502".
    fn shown(&self) -> String {
        match self.html {
            true => format!(" with an HTML page: {}", self.text),
            false => format!(": {}", self.text),
        }
    }
}

/// GitLab's message, from `{"message": …}` (a string, or `{"base": [...]}`) or `{"error": …}`.
fn gitlab_message(json: &Value) -> String {
    let message = json.get("message").or_else(|| json.get("error"));
    match message {
        Some(Value::Object(fields)) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(key, value)| match key.as_str() {
                    "base" => text_of(value),
                    _ => format!("{key}: {}", text_of(value)),
                })
                .collect();
            parts.join("; ")
        }
        Some(other) => text_of(other),
        None => json.to_string(),
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// The words of an HTML page: its `<title>`, or else its text without tags, comments, scripts and styles.
fn page_text(html: &str) -> String {
    if let Some(title) = title_of(html).map(decode_entities).filter(|t| !t.trim().is_empty()) {
        return title;
    }
    // ASCII lowercasing keeps every byte where it was, so an index into `lower` is one into `html`.
    let lower = html.to_ascii_lowercase();
    let mut text = String::new();
    let mut at = 0;
    while let Some(ch) = html[at..].chars().next() {
        let rest = &lower[at..];
        let skip = if rest.starts_with("<!--") {
            rest.find("-->").map_or(rest.len(), |end| end + 3)
        } else if let Some(element) = ["<script", "<style"].into_iter().find(|open| rest.starts_with(open)) {
            // Up to its closing tag, which the next round skips as a tag.
            let close = format!("</{}", &element[1..]);
            rest.find(&close).unwrap_or(rest.len())
        } else if ch == '<' {
            rest.find('>').map_or(rest.len(), |end| end + 1)
        } else {
            text.push(ch);
            at += ch.len_utf8();
            continue;
        };
        text.push(' ');
        at += skip;
    }
    decode_entities(&text)
}

/// The text between `<title …>` and `</title>`, if the page has both.
fn title_of(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(&html[start..end])
}

fn decode_entities(text: &str) -> String {
    [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&apos;", "'"), ("&nbsp;", " "), ("&amp;", "&")]
        .into_iter()
        .fold(text.to_string(), |text, (entity, ch)| text.replace(entity, ch))
}

/// `text` on one line, without control characters, in at most `max` characters; "…" marks a cut, also one made
/// before (`cut`: the text is the start of something longer).
fn excerpt(text: &str, max: usize, cut: bool) -> String {
    let words: Vec<&str> =
        text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
    let flat = words.join(" ");
    if flat.is_empty() {
        return "(empty body)".into();
    }
    match flat.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", flat[..end].trim_end()),
        None if cut => format!("{flat}…"),
        None => flat,
    }
}

/// `text` in at most `max` characters, "…" marking a cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A size as people read it: `812 bytes`, `64 KiB`, `190.7 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes == 1 {
        return "1 byte".into();
    }
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let shown = format!("{value:.1}");
    format!("{} {}", shown.strip_suffix(".0").unwrap_or(&shown), UNITS[unit])
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (date.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TriggerRequest {
        crate::trigger::request::sample()
    }

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer { status, body: body.as_bytes(), ..Answer::default() }
    }

    fn wait_of(attempt: Attempt) -> Option<Duration> {
        match attempt {
            Attempt::Transient { wait, .. } => wait,
            other => panic!("not transient: {other:?}"),
        }
    }

    #[test]
    fn gitlab_says_how_long_to_wait() {
        let limit = r#"{"message":{"base":["Too many pipelines created in the last minute. Try again later."]}}"#;
        assert_eq!(wait_of(classify(&request(), answer(400, limit))), Some(Duration::from_secs(60)));
        assert_eq!(
            wait_of(classify(&request(), Answer { retry_after: Some("30"), ..answer(429, "Retry later") })),
            Some(Duration::from_secs(30))
        );
        let in_a_while = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = wait_of(classify(&request(), Answer { retry_after: Some(&in_a_while), ..answer(429, "") }))
            .expect("a wait");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
        assert_eq!(wait_of(classify(&request(), answer(503, ""))), None);
    }

    #[test]
    fn a_201_that_is_not_a_pipeline_is_not_success_and_not_retried() {
        assert!(matches!(classify(&request(), answer(201, "<html>")), Attempt::Unconfirmed { .. }));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        let sizes = [0, 1, 812, 65_536, 1_048_576, 10_000_000, 209_715_200, 5 << 30].map(size);
        assert_eq!(sizes, ["0 bytes", "1 byte", "812 bytes", "64 KiB", "1 MiB", "9.5 MiB", "200 MiB", "5 GiB"]);
    }

    #[test]
    fn an_html_page_is_shown_by_its_title_or_its_text_without_tags() {
        let titled = "<html><head><TITLE>502 Bad &amp; Gateway</TITLE></head><body>x</body></html>";
        assert_eq!(page_text(titled), "502 Bad & Gateway");
        let untitled = "<html><head><style>p{x:1}</style><script>if (a<b) alert(1)</script></head><!-- <b>no</b> -->\
                        <body><h1>Service\n  Unavailable</h1><p>Try &lt;later&gt;</p></body></html>";
        assert_eq!(excerpt(&page_text(untitled), 200, false), "Service Unavailable Try <later>");
        assert_eq!(excerpt(&page_text("<p>Bad</p"), 200, false), "Bad");
        assert_eq!(excerpt(&page_text("<p>ü<b>ß"), 200, false), "ü ß");
    }

    #[test]
    fn excerpts_are_one_line_without_control_characters_and_marked_when_cut() {
        assert_eq!(excerpt("a\n\tb\u{1b}[31mc\0d", 200, false), "a b [31mc d");
        assert_eq!(excerpt(&"x".repeat(300), 200, false), format!("{}…", "x".repeat(200)));
        assert_eq!(excerpt("short", 200, true), "short…");
        assert_eq!(excerpt(" \n ", 200, false), "(empty body)");
        assert_eq!(shorten("äöü", 2), "äö…");
        assert_eq!(shorten("äöü", 3), "äöü");
    }
}
