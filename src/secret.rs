//! The trigger token, kept out of every log line, error and debug print.
//!
//! A token is never printed, logged, stored or put in a URL. The one thing shown of it is `masked()`: at most its
//! first 4 characters after GitLab's `glptt-` prefix, like GitLab's own triggers page.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

const PREFIX: &str = "glptt-";

impl Secret {
    pub fn new(token: String) -> Self {
        Secret(token.into())
    }

    /// The token itself, for the one place that sends it: the request body.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `glptt-abcd…`, or `abcd…` for a token without the prefix.
    pub fn masked(&self) -> String {
        let (prefix, rest) = match self.0.strip_prefix(PREFIX) {
            Some(rest) => (PREFIX, rest),
            None => ("", &*self.0),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_at_most_four_characters_after_the_prefix() {
        let token = Secret::new("glptt-0123-not-a-real-token-but-long-enough".into());
        assert_eq!(token.masked(), "glptt-0123…");
        assert_eq!(format!("{token} {token:?}"), "glptt-0123… Secret(glptt-0123…)");
        assert_eq!(Secret::new("abcdefgh".into()).masked(), "abcd…");
        assert_eq!(Secret::new("ab".into()).masked(), "ab…");
    }
}
