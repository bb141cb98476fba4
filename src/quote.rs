//! How a message quotes text it did not write: a schedule file's values, a crontab line, a cron expression.
//! Shared by the config loader, the cron parser and the importer, so that each quotes the same way and none
//! depends on another for it.

/// The most characters of the user's text a message quotes; the rest is cut and marked with "…".
pub const MAX_QUOTED: usize = 80;

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
pub(crate) fn one_line(text: &str, max: usize) -> String {
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
}
