//! The kill -9 storm: a burst of 1,000 slots due at one instant, a slow GitLab, and the daemon killed at a random
//! moment of the burst, then restarted; round after round on the same state file. After every round the store is
//! intact, no slot reached GitLab twice, no row is left `claimed` or `sending`, and every slot of the burst is
//! accounted for: fired, missed or unknown.
//!
//! CI runs a few rounds; `PIPECRON_STORM_ROUNDS=50 cargo test --release --test storm` runs the full storm.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Timelike, Utc};
use common::daemon::{Daemon, setup, slots_by_schedule, write_schedules};
use common::fake_gitlab::FakeGitlab;

const SCHEDULES: usize = 1000;

#[test]
fn kill_9_at_a_random_moment_of_a_burst_loses_nothing_and_fires_nothing_twice() {
    let rounds: usize = std::env::var("PIPECRON_STORM_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(4);
    let fake = FakeGitlab::new();
    // 1,000 slots through a pool of 32 at 40 ms each: the burst lasts over a second, and the kill lands in it.
    fake.slow(Duration::from_millis(40));
    let (dir, file) = setup(&fake, "");
    let url = fake_url(&file);
    let mut totals = BTreeMap::new();
    for round in 1..=rounds {
        let at = (Utc::now() + chrono::Duration::seconds(3)).trunc_subsecs(0);
        write_schedules(&file, &url, &burst_at(at));
        let daemon = Daemon::spawn(dir.path(), &["--listen", "off"], &[]);
        // In the first round no slot of these schedules is recorded yet, and a restart catches up only after the
        // newest recorded slot: a kill before the claim, with a restart slower than the time left to the slot,
        // would leave the slot unrecorded by design. So the first round kills in the burst; the later ones from
        // 300 ms before it, when the previous round's slots are the reference.
        let earliest = if round == 1 { 0 } else { -300 };
        let kill_at = at
            + chrono::Duration::milliseconds(earliest)
            + chrono::Duration::milliseconds((rand::random::<f64>() * 1800.0) as i64);
        sleep_until(kill_at);
        daemon.kill9();
        let restarted = Daemon::spawn(dir.path(), &["--listen", "off", "--shutdown-grace", "30s"], &[]);
        let states = wait_until_settled(&dir.path().join("pipecron.db"), at, &restarted);
        let (code, logs) = restarted.stop_within(Duration::from_secs(40));
        assert_eq!(code, Some(0), "round {round}: {logs}");

        let db = rusqlite::Connection::open(dir.path().join("pipecron.db")).expect("opens");
        let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("checks");
        assert_eq!(integrity, "ok", "round {round}");
        let left: i64 = db
            .query_row("SELECT COUNT(*) FROM runs WHERE state IN ('claimed', 'sending')", [], |r| r.get(0))
            .expect("counts");
        assert_eq!(left, 0, "round {round}: rows left claimed or sending");
        assert_eq!(states.values().sum::<usize>(), SCHEDULES, "round {round}: every slot accounted for: {states:?}");
        for state in states.keys() {
            assert!(["succeeded", "unknown", "missed"].contains(&state.as_str()), "round {round}: {states:?}");
        }
        let received = slots_by_schedule(&fake);
        for (name, slots) in &received {
            let mut unique = slots.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), slots.len(), "round {round}: {name} reached GitLab twice: {slots:?}");
        }
        let this_round = slot_text(at);
        let arrived = received.values().filter(|slots| slots.contains(&this_round)).count();
        let succeeded = states.get("succeeded").copied().unwrap_or(0);
        let unknown = states.get("unknown").copied().unwrap_or(0);
        assert!(
            (succeeded..=succeeded + unknown).contains(&arrived),
            "round {round}: {arrived} arrived, {succeeded} succeeded, {unknown} unknown"
        );
        for (state, n) in states {
            *totals.entry(state).or_insert(0) += n;
        }
    }
    eprintln!("{rounds} rounds of {SCHEDULES} slots: {totals:?}");
}

/// 1,000 schedules, all due at `at` (UTC, to the second).
fn burst_at(at: DateTime<Utc>) -> String {
    let cron = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    (0..SCHEDULES).map(|i| format!("  s{i:04}:\n    cron: \"{cron}\"\n    catch_up: 1h\n")).collect()
}

/// The fake's URL, as `setup` wrote it into the schedule file.
fn fake_url(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("reads");
    let line = text.lines().find_map(|l| l.trim().strip_prefix("gitlab: ")).expect("a gitlab line");
    line.to_string()
}

fn slot_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        std::thread::sleep(wait);
    }
}

/// Waits until every slot of the burst has ended (none `claimed` or `sending`); the count of each end state.
fn wait_until_settled(db: &Path, at: DateTime<Utc>, daemon: &Daemon) -> BTreeMap<String, usize> {
    let slot = at.timestamp_millis();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(connection) = rusqlite::Connection::open(db) else { continue };
        let counted =
            connection.prepare("SELECT state, COUNT(*) FROM runs WHERE slot = ?1 GROUP BY state").and_then(|mut s| {
                s.query_map([slot], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))?
                    .collect::<Result<BTreeMap<_, _>, _>>()
            });
        let Ok(states) = counted else { continue };
        let busy = states.get("claimed").copied().unwrap_or(0) + states.get("sending").copied().unwrap_or(0);
        if busy == 0 && states.values().sum::<usize>() == SCHEDULES {
            return states;
        }
        assert!(Instant::now() < deadline, "the burst did not settle: {states:?}\n{}", daemon.logs());
    }
}
