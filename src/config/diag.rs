//! Errors and warnings about schedule files, each pinned to a file, line and column, a schedule and a key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Pos;
use crate::quote::one_line;
pub use crate::quote::{clip, thousands};

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

/// The longest message kept, however it was made: a last guard for text quoted from elsewhere (the YAML parser, the
/// OS) that `clip` did not see.
const MAX_MESSAGE: usize = 1_000;

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
