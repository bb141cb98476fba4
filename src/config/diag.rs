//! Errors and warnings about schedule files, each pinned to a file, line and column, a schedule and a key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// The part of a file a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    File,
    Defaults,
    Schedule(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub pos: Pos,
    pub scope: Scope,
    /// The key, as a dotted path inside the schedule: `cron`, `variables.FOO`.
    pub key: Option<String>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `schedules/a.yaml:7:11: error: schedule 'nightly', key 'cron': …`, the form editors and CI logs link.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.pos.line {
            0 => write!(f, "{}: {severity}: ", self.file.display())?,
            _ => write!(f, "{}:{}: {severity}: ", self.file.display(), self.pos)?,
        }
        let key = self.key.as_ref().map(|k| format!("key '{}'", clip(k)));
        let scope = match &self.scope {
            Scope::File => None,
            Scope::Defaults => Some("defaults".to_string()),
            Scope::Schedule(name) => Some(format!("schedule '{}'", clip(name))),
        };
        let context: Vec<String> = scope.into_iter().chain(key).collect();
        if !context.is_empty() {
            write!(f, "{}: ", context.join(", "))?;
        }
        f.write_str(&self.message)
    }
}

/// The most characters of the user's text a message quotes; the rest is cut and marked with "…".
pub const MAX_QUOTED: usize = 80;

/// The longest message kept, however it was made: a last guard for text quoted from elsewhere (the YAML parser, the
/// OS) that `clip` did not see.
const MAX_MESSAGE: usize = 1_000;

/// User text as a message quotes it: GitLab tokens masked, on one line, control characters written as escapes (`\n`, `\0`,
/// `\u{1b}`), and cut to `MAX_QUOTED` characters with "…", so that a 100 KB value makes a short message and a value
/// cannot break the one-line-per-diagnostic form or drive the terminal.
pub fn clip(text: &str) -> String {
    // Masked before it is cut: a cut could leave more of a token than the mask shows, and too little to be found.
    one_line(&crate::secret::mask_tokens(text), MAX_QUOTED)
}

/// `1234567` as `1,234,567`, for counts in messages.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` on one line and at most `max` characters long (escapes count as they are printed), "…" marking a cut.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut count = 0;
    for c in text.chars() {
        let escaped: String = match c {
            c if c.is_control() => c.escape_default().collect(),
            // Bidirectional overrides would reorder what the reader sees ("Trojan Source").
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => c.escape_unicode().collect(),
            c => c.into(),
        };
        let width = escaped.chars().count();
        if count + width > max {
            out.push('…');
            return out;
        }
        count += width;
        out.push_str(&escaped);
    }
    out
}

/// Collects diagnostics for one file and scope, so that each check only says what is wrong.
pub struct Reporter<'a> {
    pub file: &'a Path,
    pub scope: Scope,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Reporter<'_> {
    pub fn error(&mut self, pos: Pos, key: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, pos, key, message.into());
    }

    pub fn warning(&mut self, pos: Pos, key: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, pos, key, message.into());
    }

    fn push(&mut self, severity: Severity, pos: Pos, key: Option<&str>, message: String) {
        self.out.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            pos,
            scope: self.scope.clone(),
            key: key.map(str::to_string),
            // A token quoted from a value (a URL with credentials, a pasted token) is never shown whole.
            message: one_line(&crate::secret::mask_tokens(&message), MAX_MESSAGE),
        });
    }

    /// The same reporter, for another scope of the same file.
    pub fn scoped(&mut self, scope: Scope) -> Reporter<'_> {
        Reporter { file: self.file, scope, out: self.out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_marked() {
        let long = "1,".repeat(50_000);
        let shown = clip(&long);
        assert_eq!(shown.chars().count(), MAX_QUOTED + 1);
        assert!(shown.ends_with('…') && shown.starts_with("1,1,"), "{shown}");
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"é".repeat(MAX_QUOTED)), "é".repeat(MAX_QUOTED), "exactly the limit is not cut");
    }

    #[test]
    fn counts_are_grouped_in_thousands() {
        let shown: Vec<String> = [0, 999, 1_000, 100_007, 1_000_000].into_iter().map(thousands).collect();
        assert_eq!(shown, ["0", "999", "1,000", "100,007", "1,000,000"]);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clip("a\nb\0c\u{1b}[31m"), "a\\nb\\u{0}c\\u{1b}[31m");
        assert_eq!(clip("tab\there"), "tab\\there");
        assert_eq!(clip("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn a_token_is_masked_before_it_is_cut() {
        let text = format!("{}glptt-0123456789abcdef0123456789", "x".repeat(MAX_QUOTED - 12));
        assert_eq!(clip(&text), format!("{}glptt-0123…", "x".repeat(MAX_QUOTED - 12)));
    }

    #[test]
    fn every_message_stays_on_one_line_and_short() {
        let mut out = Vec::new();
        let mut rep = Reporter { file: Path::new("a.yaml"), scope: Scope::Schedule("n\n".repeat(100)), out: &mut out };
        rep.error(Pos { line: 1, column: 1 }, Some("x"), format!("bad: {}", "v\n".repeat(10_000)));
        let line = out[0].to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.chars().count() < MAX_MESSAGE + 200, "{} characters", line.chars().count());
        assert!(line.contains("schedule 'n\\nn\\n") && line.ends_with('…'), "{line}");
    }
}
