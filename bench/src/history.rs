//! The history at scale: `status` with 100,000 schedules and 10 million runs, `history NAME --limit 20` on the same
//! file, and the size of a state file the default retention keeps for 100 schedules every minute.
//!
//! The rows are written straight into the SQLite file (after `pipecron history` made its schema), as realistic as
//! the daemon writes them: a pipeline id, iid, status and URL, an owner, start and finish times.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;

/// Runs per schedule in the large history: 100,000 schedules make 10 million rows.
const RUNS_EACH: i64 = 100;

pub fn history(url: &str) {
    let dir = std::env::temp_dir().join(format!("pipecron-bench-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("schedules")).expect("creates");
    super::write_schedules(&dir, url, 100_000, "0 0 1 1 *");
    let db = dir.join("pipecron.db");
    let started = Instant::now();
    fill(&db, 100_000, RUNS_EACH, Duration::from_secs(3600));
    println!(
        "history: 100,000 schedules x {RUNS_EACH} runs written in {:.0} s, state file {:.0} MB",
        started.elapsed().as_secs_f64(),
        size_mb(&db)
    );
    let status = timed(&dir, &["status", "--json"], 3);
    println!("  status --json: {} (goal <= 1 s)", status);
    let one = timed(&dir, &["history", "s4242", "--limit", "20"], 5);
    println!("  history NAME --limit 20: {} (goal <= 50 ms)", one);
    let all = timed(&dir, &["history", "--limit", "20"], 5);
    println!("  history --limit 20: {}", all);
    keep_or_remove(&dir);

    // A year of 100 schedules every minute, pruned hourly to the default 10,000 runs each: a schedule holds at
    // most 10,000 runs plus the hour's 60 between passes, and SQLite reuses the pages pruning frees.
    let dir = std::env::temp_dir().join(format!("pipecron-bench-retention-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("schedules")).expect("creates");
    super::write_schedules(&dir, url, 100, "* * * * *");
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
    let made = Command::new(super::binary())
        .args(["history", "--limit", "1", "--state"])
        .arg(db)
        .stdout(Stdio::null())
        .status();
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

/// Runs `pipecron ARGS` in `dir` `times` times: the median and the slowest wall time, and the peak RSS.
fn timed(dir: &Path, args: &[&str], times: usize) -> String {
    let mut took = Vec::new();
    for _ in 0..times {
        let started = Instant::now();
        let status = Command::new(super::binary())
            .args(args)
            .current_dir(dir)
            .env("PIPECRON_LOG", "warn")
            .stdout(Stdio::null())
            .status();
        took.push(started.elapsed().as_secs_f64());
        assert!(status.is_ok_and(|s| s.success()), "pipecron {args:?} fails");
    }
    took.sort_by(f64::total_cmp);
    let peak =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).map_or(0, |usage| usage.max_rss());
    format!(
        "{:.3} s median, {:.3} s slowest of {times}, peak RSS of any run so far {:.0} MB",
        took[times / 2],
        took[times - 1],
        peak as f64 / 1024.0
    )
}

fn size_mb(db: &Path) -> f64 {
    let size = |suffix: &str| std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len());
    (size("") + size("-wal")) as f64 / 1e6
}

fn keep_or_remove(dir: &Path) {
    if std::env::var_os("PIPECRON_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
