//! `${VAR}` references in schedule files, read from the environment when the file is loaded.
//!
//! `$${` writes a literal `${`. A bare `$VAR` is left alone, so a GitLab CI variable reference such as
//! `$CI_COMMIT_SHA` passes through to GitLab untouched.

/// Where variables are looked up: the process environment, or a test's own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The text with its references resolved, and the names it referred to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub text: String,
    pub vars: Vec<String>,
    /// False when references were left unresolved (secrets are not being resolved).
    pub resolved: bool,
}

/// The longest text a value may grow to as its references are resolved. Values are resolved once, never again:
/// a variable whose value holds `${OTHER}` is sent as written, so references cannot loop or nest; but 100,000
/// references to one large variable would still make gigabytes.
pub const MAX_RESOLVED_BYTES: usize = 64 * 1024;

/// Resolves `${VAR}` in `text` through `env`, or only checks the syntax when `env` is `None`.
/// The error names the variable, never a value.
pub fn interpolate(text: &str, env: Option<Env>) -> Result<Interpolated, String> {
    let mut out = String::with_capacity(text.len());
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "'${' is not closed; write ${VAR}, or $${ for a literal '${'".to_string())?;
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(format!(
                    "'${{{}}}' is not a valid variable reference; a name is letters, digits and _, not starting with a digit",
                    super::diag::clip(name)
                ));
            }
            match env {
                Some(env) => match env(name) {
                    Some(value) if out.len() + value.len() > MAX_RESOLVED_BYTES => {
                        return Err(format!(
                            "the value grows past {} KiB as ${{{name}}} and the other references are resolved; \
                             reference large values fewer times",
                            MAX_RESOLVED_BYTES / 1024
                        ));
                    }
                    Some(value) if !value.trim().is_empty() => out.push_str(&value),
                    Some(_) => return Err(format!("environment variable {name} is empty")),
                    None => return Err(format!("environment variable {name} is not set")),
                },
                None => out.push_str(&after[..end + 3]),
            }
            vars.push(name.to_string());
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Interpolated { resolved: env.is_some() || vars.is_empty(), text: out, vars })
}

pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("glptt-secret".into()),
            "EMPTY" => Some("  ".into()),
            _ => None,
        }
    }

    fn resolve(text: &str) -> Result<String, String> {
        interpolate(text, Some(&env)).map(|i| i.text)
    }

    #[test]
    fn resolves_references_and_escapes() {
        assert_eq!(resolve("${TOKEN}"), Ok("glptt-secret".into()));
        assert_eq!(resolve("a-${TOKEN}-b"), Ok("a-glptt-secret-b".into()));
        assert_eq!(resolve("$${TOKEN} $CI_COMMIT_SHA $"), Ok("${TOKEN} $CI_COMMIT_SHA $".into()));
        let found = interpolate("${TOKEN}", Some(&env)).expect("resolves");
        assert_eq!(found.vars, ["TOKEN"]);
    }

    #[test]
    fn names_the_variable_but_never_a_value() {
        assert_eq!(resolve("${MISSING}"), Err("environment variable MISSING is not set".into()));
        assert_eq!(resolve("${EMPTY}"), Err("environment variable EMPTY is empty".into()));
        assert!(resolve("${TOKEN").expect_err("unclosed").contains("not closed"));
        assert!(resolve("${1X}").expect_err("bad name").contains("not a valid variable reference"));
    }

    #[test]
    fn values_are_resolved_once_so_references_cannot_loop() {
        let looping = |name: &str| match name {
            "A" => Some("${A}${B}".to_string()),
            "B" => Some("${A}".to_string()),
            _ => None,
        };
        let found = interpolate("x-${A}-${B}", Some(&looping)).expect("resolves");
        assert_eq!(found.text, "x-${A}${B}-${A}", "a value is sent as written, never resolved again");
        assert_eq!(found.vars, ["A", "B"]);
    }

    #[test]
    fn many_references_to_a_large_value_are_refused_before_they_grow() {
        let big = |_: &str| Some("x".repeat(10_000));
        let text = "${BIG}".repeat(100_000);
        let error = interpolate(&text, Some(&big)).expect_err("6 GB would be too much");
        assert!(error.starts_with("the value grows past 64 KiB as ${BIG}"), "{error}");
        assert_eq!(interpolate(&"${BIG}".repeat(6), Some(&big)).map(|i| i.text.len()), Ok(60_000));
    }

    #[test]
    fn a_long_bad_reference_is_cut_in_the_error() {
        let error = interpolate(&format!("${{{}}}", "-".repeat(100_000)), Some(&env)).expect_err("bad name");
        assert!(error.len() < 300, "{} bytes", error.len());
    }

    #[test]
    fn without_an_environment_only_checks_syntax() {
        let kept = interpolate("${MISSING}", None).expect("syntax is fine");
        assert_eq!((kept.text.as_str(), kept.resolved), ("${MISSING}", false));
        assert!(interpolate("plain", None).expect("fine").resolved);
    }
}
