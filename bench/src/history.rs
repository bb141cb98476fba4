//! The history at scale: `status` with 100,000 schedules and 10 million runs, `history NAME --limit 20` on the same
//! file, and the size of a state file the default retention keeps for 100 schedules every minute.
//!
//! The rows are written straight into the SQLite file (after `pipecron history` made its schema), as realistic as
//! the daemon writes them: a pipeline id, iid, status and URL, an owner, start and finish times.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::daemon::{binary, fresh_dir, keep_or_remove};
use crate::measure;
use crate::report::Report;
use crate::schedules::{self, When};
use crate::subject::Who;

/// Runs per schedule in the large history: 100,000 schedules make 10 million rows.
const RUNS_EACH: i64 = 100;

/// No request is sent: the schedules only need a GitLab to name.
const URL: &str = "http://127.0.0.1:9";

pub fn history(report: &mut Report) {
    let dir = fresh_dir("history");
    schedules::write_yaml(&dir.join("schedules"), URL, &schedules::specs(100_000, When::Quiet));
    let db = dir.join("pipecron.db");
    let started = Instant::now();
    fill(&db, 100_000, RUNS_EACH, Duration::from_secs(3600));
    println!(
        "history: 100,000 schedules x {RUNS_EACH} runs written in {:.0} s, state file {:.0} MB",
        started.elapsed().as_secs_f64(),
        size_mb(&db)
    );
    let (status, text) = timed(&dir, &["status", "--json"], 3);
    println!("  status --json: {text}; goal ≤ 1 s: {}", crate::verdict(status <= 1.0));
    let measure = "`status --json`, 100,000 schedules and 10 million runs";
    report.set(measure, "≤ 1 s", Who::Pipecron, format!("{status:.2} s"), Some((status, "time")));
    let (one, text) = timed(&dir, &["history", "s4242", "--limit", "20"], 5);
    println!("  history NAME --limit 20: {text}; goal ≤ 50 ms: {}", crate::verdict(one <= 0.05));
    let measure = "`history NAME --limit 20`, the same 10 million runs";
    report.set(measure, "≤ 50 ms", Who::Pipecron, format!("{:.0} ms", one * 1000.0), Some((one, "time")));
    let (_, text) = timed(&dir, &["history", "--limit", "20"], 5);
    println!("  history --limit 20: {text}");
    keep_or_remove(&dir);

    // A year of 100 schedules every minute, pruned hourly to the default 10,000 runs each: a schedule holds at
    // most 10,000 runs plus the hour's 60 between passes, and SQLite reuses the pages pruning frees.
    let dir = fresh_dir("retention");
    schedules::write_yaml(&dir.join("schedules"), URL, &schedules::specs(100, When::EverySecond));
    let db = dir.join("pipecron.db");
    fill(&db, 100, 10_060, Duration::from_secs(60));
    println!(
        "  100 schedules every minute, kept by the default retention (10,000 runs each, 1,006,000 rows): state file \
         {:.0} MB, whatever the years",
        size_mb(&db)
    );
    keep_or_remove(&dir);
}

/// Makes the schema with the binary, then writes `runs` runs of each of `schedules` schedules, `every` apart and
/// ending now.
fn fill(db: &Path, schedules: usize, runs: i64, every: Duration) {
    let made =
        Command::new(binary()).args(["history", "--limit", "1", "--state"]).arg(db).stdout(Stdio::null()).status();
    assert!(made.is_ok_and(|s| s.success()), "pipecron makes the state file");
    let mut connection = rusqlite::Connection::open(db).expect("opens");
    connection.pragma_update(None, "synchronous", "OFF").expect("sets");
    let now = Utc::now().timestamp_millis();
    let step = every.as_millis() as i64;
    let transaction = connection.transaction().expect("begins");
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO runs (schedule, slot, reason, state, attempts, started_at, finished_at, http_status,
                                   pipeline_id, pipeline_iid, pipeline_status, web_url, error, owner)
                 VALUES ($1, $2, 'schedule', 'succeeded', 1, $3, $4, 201, $5, $6, 'created', $7, NULL,
                         'pipecron-1:4242:0a1b2c3d')",
            )
            .expect("prepares");
        let mut id = 1_000_000_i64;
        for s in 0..schedules {
            let name = format!("s{s}");
            for r in 0..runs {
                let slot = now - (runs - r) * step;
                id += 1;
                let url = format!("https://gitlab.example.com/group/project-{s}/-/pipelines/{id}");
                insert.execute(rusqlite::params![name, slot, slot + 3, slot + 120, id, r + 1, url]).expect("inserts");
            }
        }
    }
    transaction.commit().expect("commits");
    connection.pragma_update(None, "wal_checkpoint", "TRUNCATE").expect("checkpoints");
}

/// Runs `pipecron ARGS` in `dir` `times` times: the median wall time, and it with the slowest and the largest peak
/// RSS as text.
fn timed(dir: &Path, args: &[&str], times: usize) -> (f64, String) {
    let mut took = Vec::new();
    let mut peak_mb: f64 = 0.0;
    for _ in 0..times {
        let mut command = Command::new(binary());
        command.args(args).current_dir(dir).env("PIPECRON_LOG", "warn").stdout(Stdio::null());
        let finished = measure::run_to_end(&mut command);
        assert!(finished.success, "pipecron {args:?} fails");
        took.push(finished.wall.as_secs_f64());
        peak_mb = peak_mb.max(finished.peak_mb);
    }
    took.sort_by(f64::total_cmp);
    let median = took[times / 2];
    let text = format!("{median:.3} s median, {:.3} s slowest of {times}, peak RSS {peak_mb:.0} MB", took[times - 1]);
    (median, text)
}

fn size_mb(db: &Path) -> f64 {
    let size = |suffix: &str| std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len());
    (size("") + size("-wal")) as f64 / 1e6
}
