//! The `pipecron` command line: argument parsing and one module per command.
//!
//! Commands print for people and exit with a status scripts can rely on: 0 for success, 1 when the command ran
//! and found a problem (an invalid schedule file, an unknown name), 2 for a usage error; `run-now` adds 3, 4 and 5
//! for the three ways a trigger can fail (see `Error::exit_code`).

mod check;
mod format;
mod healthcheck;
mod history;
mod import_crontab;
mod migrate_state;
mod next;
mod run;
mod run_now;
mod status;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Loaded};

#[derive(Debug, Parser)]
#[command(name = "pipecron", version, about = "Schedules-as-code for GitLab pipeline triggers")]
pub struct Cli {
    /// The directory of schedule files (*.yaml, *.yml).
    #[arg(long, global = true, env = "PIPECRON_SCHEDULES", default_value = "./schedules", value_name = "DIR")]
    schedules: PathBuf,

    /// The run history: a SQLite file (created if missing), or a postgres:// URL shared by several replicas.
    /// `${VAR}` in it is read from the environment.
    #[arg(long, global = true, env = "PIPECRON_STATE", default_value = "./pipecron.db", value_name = "PATH|URL")]
    state: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: fire every schedule on time until SIGTERM.
    Run(run::Args),
    /// Check the schedule files and list each schedule's next fire time.
    Check(check::Args),
    /// Print a schedule's next fire times.
    Next(next::Args),
    /// Fire a schedule's trigger once, now.
    RunNow(run_now::Args),
    /// Show every schedule with its last and next run, like GitLab's triggers overview.
    Status(status::Args),
    /// Show past runs, newest first.
    History(history::Args),
    /// Ask the running daemon whether its timer loop is alive (exit 0) or not (exit 1): a container health check.
    Healthcheck(healthcheck::Args),
    /// Turn a crontab's curl trigger lines into schedule YAML.
    ImportCrontab(import_crontab::Args),
    /// Copy the run history from one store to another, e.g. a box's SQLite file to the PostgreSQL of new replicas.
    MigrateState(migrate_state::Args),
    /// Print the JSON Schema of a schedule file, for editors.
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Client(#[from] crate::trigger::client::ClientError),
    #[error(transparent)]
    Request(#[from] crate::trigger::request::RequestError),
    /// GitLab refused the trigger; retrying would not help.
    #[error("{0}")]
    Refused(String),
    /// Every attempt failed with a transient error.
    #[error("{0}")]
    GaveUp(String),
    /// The last attempt got no answer: a pipeline may or may not exist.
    #[error("{0}")]
    Unknown(String),
    /// The daemon could not start: a port in use, a directory it cannot watch.
    #[error(transparent)]
    Daemon(crate::daemon::Error),
    /// `healthcheck`: the daemon did not answer, or said it is stuck.
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    #[error("{failed} of {total} schedules failed the online check")]
    OnlineCheck { failed: usize, total: usize },
}

impl Error {
    /// 1: a problem found before anything was sent; 2: usage; 3: GitLab refused; 4: gave up after retries;
    /// 5: the outcome is unknown.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Refused(_) => 3,
            Error::GaveUp(_) => 4,
            Error::Unknown(_) => 5,
            _ => 1,
        }
    }
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
        Command::Run(args) => block_on(run::run(&cli, args)),
        Command::RunNow(args) => block_on(run_now::run(&cli, args)),
        Command::Status(args) => block_on(status::run(&cli, args)),
        Command::History(args) => block_on(history::run(&cli, args)),
        Command::Healthcheck(args) => block_on(healthcheck::run(args)),
        Command::ImportCrontab(args) => import_crontab::run(args),
        Command::MigrateState(args) => block_on(migrate_state::run(args)),
        Command::Schema => writeln!(std::io::stdout(), "{}", config::schema::json()).map_err(Error::from),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "pipecron", &mut script);
            std::io::stdout().write_all(&script).map_err(Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs an async command on a single-threaded runtime. Even the daemon runs on one: it keeps an idle pipecron to one
/// wake-up a minute, and fires with lower latency than a multi-threaded one on a small machine (see bench/).
fn block_on<F: std::future::Future<Output = Result<(), Error>>>(future: F) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(future)
}

/// The schedule called `name`, or an error that suggests a close name.
fn find<'a>(loaded: &'a Loaded, name: &str) -> Result<&'a crate::schedule::Schedule, Error> {
    if let Some(schedule) = loaded.schedules.iter().find(|s| &*s.name == name) {
        return Ok(schedule);
    }
    if loaded.has_errors() {
        return Err(Error::InvalidConfig { errors: loaded.errors().count() });
    }
    Err(Error::UnknownSchedule {
        name: name.to_string(),
        suggestion: crate::suggest::closest(name, loaded.schedules.iter().map(|s| &*s.name)).map(str::to_string),
    })
}

/// Where `--state` points.
fn state(cli: &Cli) -> Result<crate::store::StateLocation, Error> {
    crate::store::StateLocation::parse(&cli.state, &process_env).map_err(Error::Usage)
}

/// Opens the store `--state` names, whichever kind it is.
async fn open_store(cli: &Cli) -> Result<crate::store::Store, Error> {
    Ok(crate::store::open(&state(cli)?).await?)
}

/// The process environment, for resolving `${VAR}` references.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the schedules, printing every diagnostic to stderr.
fn load(cli: &Cli, resolve_secrets: bool) -> Loaded {
    let loaded = config::load(&cli.schedules, resolve_secrets.then_some(&process_env as config::Env));
    report(&loaded);
    loaded
}

/// Prints what loading the schedule files found, one diagnostic a line.
fn report(loaded: &Loaded) {
    let mut stderr = std::io::stderr().lock();
    for diagnostic in &loaded.diagnostics {
        let _ = writeln!(stderr, "{diagnostic}");
    }
}
