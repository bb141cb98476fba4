//! The tokens (the trigger token, the api_token), kept out of every log line, error and debug print.
//!
//! A token is never printed, logged, stored or put in a URL. The one thing shown of it is `masked()`: at most its
//! first 4 characters after GitLab's prefix (`glptt-`, `glpat-`, …), like GitLab's own triggers page.

use std::fmt;
use std::io::Read;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    pub fn new(token: String) -> Self {
        Secret(token.into())
    }

    /// The token itself, for the one place that sends it: the request body.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `glptt-abcd…` (or `glpat-abcd…`, whichever of GitLab's prefixes it has), or `abcd…` for a token without one.
    pub fn masked(&self) -> String {
        let prefix = TOKEN_PREFIXES.into_iter().find(|p| self.0.starts_with(p)).unwrap_or("");
        let rest = &self.0[prefix.len()..];
        let shown: String = rest.chars().take(4).collect();
        format!("{prefix}{shown}…")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The largest `token_file` read: a trigger token is one short line, and a bound keeps `/dev/zero` or a huge file
/// from being read without end.
pub const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Why a secret file (`token_file`, `ca_file`) was not read, in words that complete "token_file 'PATH' …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// Not a regular file: "a directory", "a FIFO (named pipe)", …
    NotAFile(&'static str),
    TooLarge {
        limit: u64,
    },
    Io(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotAFile(kind) => write!(f, "is {kind}, not a regular file"),
            FileError::TooLarge { limit } => write!(f, "is larger than {} KiB", limit / 1024),
            FileError::Io(reason) => write!(f, "cannot be read: {reason}"),
        }
    }
}

/// Reads a regular file of at most `limit` bytes. Anything else is refused without blocking or reading on: the file
/// is opened non-blocking, so a FIFO with no writer never holds `check` up, its type is checked on the open file
/// (so it cannot be swapped after a check), and at most `limit + 1` bytes are ever read.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |e: std::io::Error| FileError::Io(io_reason(&e));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    let kind = metadata.file_type();
    let not_a_file = match () {
        _ if kind.is_file() => None,
        _ if kind.is_dir() => Some("a directory"),
        _ if kind.is_fifo() => Some("a FIFO (named pipe)"),
        _ if kind.is_char_device() => Some("a character device"),
        _ if kind.is_block_device() => Some("a block device"),
        _ if kind.is_socket() => Some("a socket"),
        _ => Some("not a file"),
    };
    if let Some(kind) = not_a_file {
        return Err(FileError::NotAFile(kind));
    }
    if metadata.len() > limit {
        return Err(FileError::TooLarge { limit });
    }
    // The size can grow after the check, and files in /proc claim 0: the read itself is bounded too.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.by_ref().take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The OS reason without Rust's "(os error 2)" suffix.
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.split_once(" (os error") {
        Some((reason, _)) => reason.to_string(),
        None => text,
    }
}

/// GitLab's token prefixes (personal, OAuth, deploy, runner, CI job, trigger, feed, incoming mail, agent, SCIM,
/// feature flags, workspace).
const TOKEN_PREFIXES: [&str; 13] = [
    "glpat-", "gloas-", "gldt-", "glrt-", "glrtr-", "glcbt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-",
    "glffct-", "glwt-",
];

/// The shortest run of token characters after a prefix that counts as a token (GitLab's are 20 or more).
const MIN_TOKEN_BODY: usize = 16;

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The first thing in `text` that looks like a GitLab token: its byte range and its prefix.
fn next_token(text: &str) -> Option<(std::ops::Range<usize>, &'static str)> {
    TOKEN_PREFIXES
        .iter()
        .filter_map(|prefix| {
            // Even inside a longer word: a token pasted onto other text is still a token.
            text.match_indices(prefix).find_map(|(start, _)| {
                let body = &text[start + prefix.len()..];
                let len = body.find(|c: char| !is_token_char(c)).unwrap_or(body.len());
                (len >= MIN_TOKEN_BODY).then_some((start..start + prefix.len() + len, *prefix))
            })
        })
        .min_by_key(|(range, _)| range.start)
}

/// If `text` holds something that looks like a GitLab token, that token masked (`glptt-abcd…`): for warning about
/// a token written in plain text without showing it.
pub fn find_token(text: &str) -> Option<String> {
    next_token(text).map(|(range, prefix)| mask_at(&text[range], prefix))
}

/// `text` with everything that looks like a GitLab token masked, for messages that quote what a user wrote.
pub fn mask_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    let Some(mut found) = next_token(text) else { return text.into() };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let (range, prefix) = found;
        out.push_str(&rest[..range.start]);
        out.push_str(&mask_at(&rest[range.clone()], prefix));
        rest = &rest[range.end..];
        match next_token(rest) {
            Some(next) => found = next,
            None => break,
        }
    }
    out.push_str(rest);
    out.into()
}

/// A token (all ASCII, as `next_token` found it) as its prefix and 4 characters.
fn mask_at(token: &str, prefix: &str) -> String {
    format!("{prefix}{}…", &token[prefix.len()..prefix.len() + 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_text_are_found_and_masked() {
        assert_eq!(find_token("glptt-0123456789abcdef0123"), Some("glptt-0123…".into()));
        assert_eq!(find_token("Bearer glpat-ABCDefgh1234567890xy"), Some("glpat-ABCD…".into()));
        assert_eq!(find_token("glptt-short"), None, "too short to be a token");
        assert_eq!(find_token("xglptt-0123456789abcdef0123"), Some("glptt-0123…".into()), "pasted onto a word");
        assert_eq!(find_token("release-2024"), None);
        assert_eq!(find_token(""), None);
    }

    #[test]
    fn tokens_in_messages_are_masked_wherever_they_are() {
        let text = "'https://oauth2:glpat-ABCDefgh1234567890xy@gitlab.com and glptt-0123456789abcdef0123' is bad";
        assert_eq!(mask_tokens(text), "'https://oauth2:glpat-ABCD…@gitlab.com and glptt-0123…' is bad");
        assert_eq!(mask_tokens("no token, glptt-short"), "no token, glptt-short");
        assert_eq!(mask_tokens("glptt-0123456789abcdef0123"), "glptt-0123…");
    }

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn a_regular_file_is_read() {
        let dir = temp();
        let path = dir.path().join("token");
        std::fs::write(&path, "glptt-abc\n").expect("written");
        assert_eq!(read_file(&path, MAX_TOKEN_FILE), Ok(b"glptt-abc\n".to_vec()));
        assert_eq!(read_file(&dir.path().join("absent"), 10), Err(FileError::Io("No such file or directory".into())));
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = temp();
        let path = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
        assert!(made.success());
        // Without O_NONBLOCK the open would wait for a writer forever; run it on a thread to fail instead of hang.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_file(&path, MAX_TOKEN_FILE)));
        let result = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("a FIFO does not block");
        assert_eq!(result, Err(FileError::NotAFile("a FIFO (named pipe)")));
    }

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        assert_eq!(read_file(Path::new("/dev/zero"), MAX_TOKEN_FILE), Err(FileError::NotAFile("a character device")));
        let dir = temp();
        assert_eq!(read_file(dir.path(), MAX_TOKEN_FILE), Err(FileError::NotAFile("a directory")));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 100]).expect("written");
        assert_eq!(read_file(&big, 99), Err(FileError::TooLarge { limit: 99 }));
        assert_eq!(read_file(&big, 100).map(|b| b.len()), Ok(100));
        assert_eq!(FileError::TooLarge { limit: MAX_TOKEN_FILE }.to_string(), "is larger than 64 KiB");
    }

    #[test]
    fn a_proc_file_that_claims_no_size_is_still_bounded() {
        // /proc files report a size of 0 but can hold more.
        let read = read_file(Path::new("/proc/self/maps"), 16);
        assert_eq!(read, Err(FileError::TooLarge { limit: 16 }));
    }

    #[test]
    fn shows_at_most_four_characters_after_the_prefix() {
        let token = Secret::new("glptt-0123-not-a-real-token-but-long-enough".into());
        assert_eq!(token.masked(), "glptt-0123…");
        assert_eq!(format!("{token} {token:?}"), "glptt-0123… Secret(glptt-0123…)");
        assert_eq!(Secret::new("abcdefgh".into()).masked(), "abcd…");
        assert_eq!(Secret::new("ab".into()).masked(), "ab…");
    }
}
