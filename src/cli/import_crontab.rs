//! `pipecron import-crontab`: print schedule YAML for a crontab's curl trigger lines.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::Error;
use crate::import;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The crontab to read; `-` or nothing reads standard input.
    file: Option<PathBuf>,
    /// Write the tokens to this .env file (mode 0600), as VAR=token lines for the ${VAR} references.
    #[arg(long, value_name = "FILE")]
    write_env: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<(), Error> {
    // Bytes, not text: a line that is not UTF-8 is reported with its number, and the rest is imported.
    let crontab = match args.file.as_deref().filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Usage(format!("cannot read standard input: {e}")))?;
            bytes
        }
    };
    let imported = import::import(&crontab);
    std::io::stdout().write_all(import::to_yaml(&imported).as_bytes())?;
    report_skipped(&imported.skipped);
    if let Some(path) = &args.write_env {
        write_private(path, &import::to_env(&imported))?;
        eprintln!("wrote {} token(s) to {}; keep it out of git", imported.tokens.len(), path.display());
    } else if !imported.tokens.is_empty() {
        eprintln!(
            "the tokens were not written anywhere; pass --write-env FILE to save them for the ${{VAR}} references"
        );
    }
    Ok(())
}

/// The lines not imported, on standard error: the first few with their reason, then how many more.
fn report_skipped(skipped: &[import::Skipped]) {
    const LISTED: usize = 20;
    for s in skipped.iter().take(LISTED) {
        eprintln!("line {}: not imported: {}", s.line, s.why);
    }
    if skipped.len() > LISTED {
        eprintln!("… and {} more lines not imported; the output lists them all as comments", skipped.len() - LISTED);
    }
}

/// Writes a file only its owner can read, even one that existed with a wider mode.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}
