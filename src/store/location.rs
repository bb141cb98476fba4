//! Where the state lives, as `--state` says: a file path is SQLite, a `postgres://` or `postgresql://` URL is
//! PostgreSQL.
//!
//! The URL may hold a password, so it is only ever shown masked (`postgres://user:***@host/db`), and `${VAR}` in it
//! is resolved from the environment, as in schedule files, so that a compose file can keep the password in `.env`.
//! libpq's `sslmode` and `sslrootcert` are read here, because the driver knows only some of their values.

use std::fmt;
use std::path::PathBuf;

use crate::config::interpolate::{Env, interpolate};

#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// How to use TLS to PostgreSQL, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS if the server offers it, unverified.
    Prefer,
    /// TLS, unverified (verified against `sslrootcert` when one is given, as libpq does).
    Require,
    /// TLS, the certificate chain verified, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The resolved URL without `sslmode` and `sslrootcert`: it holds the password, so it is never shown.
    connect: String,
    masked: String,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl PostgresUrl {
    /// The URL for the driver, password and all. Never print it.
    pub fn expose(&self) -> &str {
        &self.connect
    }
}

impl StateLocation {
    /// Reads `--state`. `env` resolves `${VAR}`; an error names the variable or the part that is wrong, never the
    /// password.
    pub fn parse(text: &str, env: Env) -> Result<StateLocation, String> {
        let resolved = interpolate(text, Some(env)).map_err(|e| format!("--state: {e}"))?.text;
        if !(resolved.starts_with("postgres://") || resolved.starts_with("postgresql://")) {
            if resolved.contains("://") {
                let scheme = resolved.split("://").next().unwrap_or_default();
                return Err(format!(
                    "--state: '{scheme}://' is not a store pipecron knows; give a file path (SQLite) or a postgres:// URL"
                ));
            }
            return Ok(StateLocation::Sqlite(PathBuf::from(resolved)));
        }
        PostgresUrl::parse(&resolved).map(StateLocation::Postgres)
    }

    /// Bytes free for this process on the file system of a SQLite state file; `None` for PostgreSQL, whose disk
    /// is the server's to watch, or when it cannot be told.
    pub fn disk_free(&self) -> Option<u64> {
        let StateLocation::Sqlite(path) = self else { return None };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let stat = nix::sys::statvfs::statvfs(dir).ok()?;
        Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
    }

    /// An in-memory SQLite store, for a dry run.
    pub fn memory() -> StateLocation {
        StateLocation::Sqlite(PathBuf::from(":memory:"))
    }
}

impl PostgresUrl {
    fn parse(text: &str) -> Result<PostgresUrl, String> {
        refuse_unencoded_userinfo(text)?;
        let mut url = url::Url::parse(text).map_err(|e| format!("--state: the PostgreSQL URL is not valid: {e}"))?;
        let masked = mask(&url);
        let (mut ssl_mode, mut root_cert) = (SslMode::Prefer, None);
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => ssl_mode = ssl_mode_named(&value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("--state: {masked} names no host; write postgres://USER:PASSWORD@HOST:5432/DATABASE"));
        }
        Ok(PostgresUrl { connect: url.to_string(), masked, ssl_mode, root_cert })
    }
}

/// A `/`, `?` or `#` in a password ends the URL's authority early: the password would then be read as a host, a
/// path or a query, and shown unmasked. libpq asks for these to be percent-encoded; so does pipecron.
fn refuse_unencoded_userinfo(text: &str) -> Result<(), String> {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !rest[..end].contains('@') && rest[end..].contains('@') {
        return Err("--state: the user or password in the PostgreSQL URL holds a '/', '?' or '#'; write them \
                    percent-encoded, as %2F, %3F and %23"
            .into());
    }
    Ok(())
}

fn ssl_mode_named(value: &str) -> Result<SslMode, String> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" | "allow" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(format!(
                "--state: sslmode={other} is not known; use disable, prefer, require, verify-ca or verify-full"
            ));
        }
    })
}

/// The URL with its password, in the user part or the query, shown as `***`.
fn mask(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = shown
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "password" { "***".to_string() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    // The query is rebuilt (and so re-encoded) only when it holds a password: otherwise it is shown as written.
    if pairs.iter().any(|(k, _)| k == "password") {
        shown.set_query(None);
        shown.query_pairs_mut().extend_pairs(pairs);
    }
    shown.to_string().replace("%2A%2A%2A", "***")
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(url) => f.write_str(&url.masked),
        }
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateLocation({self})")
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PGPASS").then(|| "s3cret-pw".to_string())
    }

    fn parse(text: &str) -> Result<StateLocation, String> {
        StateLocation::parse(text, &env)
    }

    #[test]
    fn a_path_is_sqlite_and_a_url_is_postgres() {
        assert_eq!(parse("./pipecron.db"), Ok(StateLocation::Sqlite("./pipecron.db".into())));
        assert!(matches!(parse("postgres://u@db/pipecron"), Ok(StateLocation::Postgres(_))));
        assert!(matches!(parse("postgresql://u@db/pipecron"), Ok(StateLocation::Postgres(_))));
        assert!(parse("mysql://u@db/x").expect_err("refused").contains("file path (SQLite) or a postgres:// URL"));
    }

    #[test]
    fn the_password_is_resolved_and_never_shown() {
        let location = parse("postgres://pipecron:${PGPASS}@db:5432/pipecron?sslmode=verify-full&sslrootcert=/ca.pem")
            .expect("parses");
        let StateLocation::Postgres(url) = &location else { panic!("postgres") };
        assert_eq!(url.expose(), "postgres://pipecron:s3cret-pw@db:5432/pipecron");
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(url.root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let shown = format!("{location} {location:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://pipecron:***@db:5432/pipecron"), "{shown}");
        let refused = parse("postgres://pipecron:8472/Qx+9zA@db:5432/pipecron").expect_err("refused");
        assert!(refused.contains("percent-encoded") && !refused.contains("Qx+9zA"), "{refused}");
        let encoded = parse("postgres://pipecron:8472%2FQx@db:5432/pipecron").expect("parses");
        assert_eq!(encoded.to_string(), "postgres://pipecron:***@db:5432/pipecron");
        let query = parse("postgres://u@db/x?password=s3cret-pw&application_name=a").expect("parses");
        assert!(!query.to_string().contains("s3cret"), "{query}");
    }

    #[test]
    fn errors_name_the_variable_or_the_mode() {
        assert!(parse("postgres://u:${NOPE}@db/x").expect_err("unset").contains("NOPE is not set"));
        assert!(parse("postgres://u@db/x?sslmode=sometimes").expect_err("bad").contains("verify-full"));
        assert!(parse("postgres://u@db/x").is_ok());
        let StateLocation::Postgres(url) = parse("postgres://u@db/x").expect("parses") else { panic!() };
        assert_eq!(url.ssl_mode, SslMode::Prefer);
    }
}
