//! `pipecron migrate-state FROM TO`: copies the run history from one store to another.
//!
//! It exists to move a single box's SQLite history to the PostgreSQL that new replicas share. Because `last_slots`
//! reads the copied history, the replicas' catch-up then continues where the box left off, instead of starting
//! afresh. Every row is copied as it is, owner and state included, in batches read in (slot, schedule) order after
//! the last key of the batch before; a row the destination already has is kept, so running it again copies nothing
//! twice. It refuses to write into a store that a running replica is using, unless `--force`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::{Error, process_env};
use crate::store::{self, Notices, RunStore, StateLocation, Store, StoreError, TokenNotes, owner_name};

/// Rows read and written per round trip.
const BATCH: usize = 5000;
/// The progress line is rewritten at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The history to copy: a SQLite file or a postgres:// URL, as --state takes it.
    #[arg(value_name = "FROM")]
    from: String,
    /// Where to copy it: a SQLite file (created if missing) or a postgres:// URL.
    #[arg(value_name = "TO")]
    to: String,
    /// Copy even while replicas are running on TO.
    #[arg(long)]
    force: bool,
}

pub async fn run(args: &Args) -> Result<(), Error> {
    let from = location(&args.from, "FROM")?;
    let to = location(&args.to, "TO")?;
    if same(&from, &to) {
        return Err(Error::Usage(format!("FROM and TO are the same store: {from}")));
    }
    if let StateLocation::Sqlite(path) = &from
        && !path.exists()
    {
        let reason = "no such file; FROM must be an existing pipecron history".into();
        return Err(StoreError::Open { path: from.to_string(), reason }.into());
    }
    let source = store::open(&from).await?;
    let target = store::open(&to).await?;
    // A replica still running on FROM would fire the slots it holds while the new replicas take them over; one on
    // TO would race the copy.
    if !args.force {
        refuse_if_in_use(&source, &from).await?;
        refuse_if_in_use(&target, &to).await?;
    }

    let mut progress = Progress::new(source.count().await?);
    let (mut after, mut read, mut copied) = (None, 0u64, 0u64);
    loop {
        let batch = source.export(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some((last.schedule.clone(), last.slot));
        let len = batch.len();
        read += len as u64;
        copied += target.import(batch).await? as u64;
        progress.show(read);
        if len < BATCH {
            break;
        }
    }
    progress.end(read);
    copy_state(&source, &target).await?;
    writeln!(std::io::stdout(), "copied {copied} runs, skipped {} already present ({from} -> {to})", read - copied)?;
    Ok(())
}

/// Copies which schedules are failing (so that the new store does not tell it again) and what was found of their
/// trigger tokens. A schedule the target already has either of keeps its own.
async fn copy_state(source: &Store, target: &Store) -> Result<(), Error> {
    for (schedule, track, outcome, since) in source.failing().await? {
        target.start_failing(&schedule, &track, &outcome, since).await?;
    }
    let known = target.token_notes().await?;
    for (schedule, note) in source.token_notes().await? {
        if !known.contains_key(&schedule) {
            target.note_token(&schedule, &note).await?;
        }
    }
    Ok(())
}

async fn refuse_if_in_use(store: &Store, location: &StateLocation) -> Result<(), Error> {
    let live = store.live_replicas().await?;
    if live.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = live.iter().map(|r| owner_name(&r.id)).collect();
    let reason = format!(
        "in use by running replica{} {}; stop them first, or pass --force to copy anyway",
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    Err(StoreError::Open { path: location.to_string(), reason }.into())
}

/// Reads FROM or TO as `--state` is read; its errors then name the argument.
fn location(text: &str, name: &str) -> Result<StateLocation, Error> {
    StateLocation::parse(text, &process_env)
        .map_err(|e| Error::Usage(format!("{name}: {}", e.strip_prefix("--state: ").unwrap_or(&e))))
}

/// The same store: shown the same, or the same SQLite file by another path.
fn same(a: &StateLocation, b: &StateLocation) -> bool {
    if let (StateLocation::Sqlite(a), StateLocation::Sqlite(b)) = (a, b)
        && let (Ok(a), Ok(b)) = (a.canonicalize(), b.canonicalize())
    {
        return a == b;
    }
    a.to_string() == b.to_string()
}

/// The progress line on stderr, only when it is a terminal.
struct Progress {
    total: u64,
    started: Instant,
    shown: Option<Instant>,
    terminal: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress { total, started: Instant::now(), shown: None, terminal: std::io::stderr().is_terminal() }
    }

    fn show(&mut self, done: u64) {
        if !self.terminal || self.shown.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.shown = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        let left = Duration::from_secs((self.total.saturating_sub(done) as f64 / rate.max(1.0)).ceil() as u64);
        let percent = (done.min(self.total) * 100).checked_div(self.total).unwrap_or(100);
        let line = format!(
            "copied {done} of {} runs ({percent}%), {rate:.0} runs/s, about {} left",
            self.total,
            crate::duration::format(left)
        );
        let _ = write!(std::io::stderr(), "\r{line}\x1b[K");
    }

    /// Shows the final count and ends the line, so that the summary starts on a line of its own.
    fn end(&mut self, done: u64) {
        if self.terminal {
            self.shown = None;
            self.show(done);
            let _ = writeln!(std::io::stderr());
        }
    }
}
