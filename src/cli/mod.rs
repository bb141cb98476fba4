//! The `pipecron` command line: argument parsing and one module per command.
//!
//! Commands print for people and exit with a status scripts can rely on: 0 for success, 1 when the command ran
//! and found a problem (an invalid schedule file, an unknown name), 2 for a usage error (from clap).

mod check;
mod next;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Loaded};

#[derive(Debug, Parser)]
#[command(name = "pipecron", version, about = "Schedules-as-code for GitLab pipeline triggers")]
pub struct Cli {
    /// The directory of schedule files (*.yaml, *.yml).
    #[arg(
        long,
        global = true,
        env = "PIPECRON_SCHEDULES",
        default_value = "./schedules",
        value_name = "DIR"
    )]
    schedules: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the schedule files and list each schedule's next fire time.
    Check(check::Args),
    /// Print a schedule's next fire times.
    Next(next::Args),
}

/// A command's failure, as the user should read it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{errors} error{} in the schedule files; see above", if *.errors == 1 { "" } else { "s" })]
    InvalidConfig { errors: usize },
    #[error("no schedule named '{name}'{}", suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    UnknownSchedule { name: String, suggestion: Option<String> },
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the command line and returns the process's exit status.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match &cli.command {
        Command::Check(args) => check::run(&cli, args),
        Command::Next(args) => next::run(&cli, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The process environment, for resolving `${VAR}` references.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the schedules, printing every diagnostic to stderr.
fn load(cli: &Cli, resolve_secrets: bool) -> Loaded {
    let loaded = config::load(&cli.schedules, resolve_secrets.then_some(&process_env as config::Env));
    let mut stderr = std::io::stderr().lock();
    for diagnostic in &loaded.diagnostics {
        let _ = writeln!(stderr, "{diagnostic}");
    }
    loaded
}
