//! Several replicas on PostgreSQL, end to end: real `pipecron run` processes on a throw-away cluster of the test's
//! own (so that it can be stopped and restarted), against the fake GitLab. Each slot must reach the fake at most
//! once, whatever happens to a replica or to the database, and every slot must be accounted for.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::daemon::{Daemon, setup, slots_by_schedule};
use common::fake_gitlab::FakeGitlab;
use common::pg_cluster::PgCluster;

const LEASE: &str = "3s";

fn sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// `n` replicas on `url`, with a short lease so that the tests need not wait long for takeovers.
fn replicas(dir: &std::path::Path, url: &str, n: usize, extra: &[&str]) -> Vec<Daemon> {
    let mut args = vec!["--state", url, "--lease", LEASE, "--shutdown-grace", "5s"];
    args.extend_from_slice(extra);
    (0..n).map(|_| Daemon::spawn(dir, &args, &[])).collect()
}

fn stop_all(replicas: Vec<Daemon>) -> Vec<String> {
    replicas
        .into_iter()
        .map(|daemon| {
            let (code, logs) = daemon.stop();
            assert_eq!(code, Some(0), "{logs}");
            logs
        })
        .collect()
}

/// No (schedule, slot) reached the fake twice.
fn assert_no_duplicate(fake: &FakeGitlab) {
    for (name, slots) in slots_by_schedule(fake) {
        let mut seen: HashMap<&String, usize> = HashMap::new();
        for slot in &slots {
            *seen.entry(slot).or_default() += 1;
        }
        let twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
        assert!(twice.is_empty(), "{name}: fired more than once: {twice:?}");
    }
}

/// The history: (schedule, slot in ms) → (state, owner, error).
fn history(cluster: &PgCluster) -> BTreeMap<(String, i64), (String, String, String)> {
    let rows = cluster.psql(
        "SELECT schedule || '|' || slot || '|' || state || '|' || coalesce(owner, '') || '|' || coalesce(error, '')
         FROM runs ORDER BY schedule, slot",
    );
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut parts = line.splitn(5, '|');
            let mut next = || parts.next().unwrap_or_default().to_string();
            let (schedule, slot) = (next(), next().parse().expect("a slot"));
            ((schedule, slot), (next(), next(), next()))
        })
        .collect()
}

/// Every schedule's rows cover each second from its first slot to its last: no slot was lost silently.
fn assert_every_second_accounted_for(rows: &BTreeMap<(String, i64), (String, String, String)>) {
    let mut by_schedule: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (name, slot) in rows.keys() {
        by_schedule.entry(name).or_default().push(*slot);
    }
    for (name, slots) in by_schedule {
        let gaps: Vec<_> = slots.windows(2).filter(|w| w[1] - w[0] != 1000).collect();
        assert!(gaps.is_empty(), "{name}: slots without a row between {gaps:?}");
    }
}

fn slot_text(ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(ms).expect("a time");
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn every_second(n: usize) -> String {
    (0..n).map(|i| format!("  s{i:02}:\n    cron: \"* * * * * *\"\n    catch_up: 1h\n")).collect()
}

#[test]
fn three_replicas_fire_every_slot_exactly_once() {
    let Some(cluster) = PgCluster::start() else { return };
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, &every_second(20));
    let running = replicas(dir.path(), &cluster.url(), 3, &[]);
    sleep(20_000);
    let logs = stop_all(running);
    assert_no_duplicate(&fake);
    let rows = history(&cluster);
    let arrived: usize = slots_by_schedule(&fake).values().map(Vec::len).sum();
    assert!(arrived >= 20 * 18, "{arrived} slots arrived in 20 s");
    let not_succeeded: Vec<_> = rows.iter().filter(|(_, (state, _, _))| state != "succeeded").collect();
    assert!(not_succeeded.is_empty(), "{not_succeeded:?}");
    assert_eq!(rows.len(), arrived, "one row per slot that arrived");
    assert_every_second_accounted_for(&rows);
    assert!(logs.iter().all(|l| !l.contains("took over")), "no replica died");
}

#[test]
fn a_replica_killed_during_a_burst_leaves_nothing_twice_and_its_unsent_slots_to_the_others() {
    let Some(cluster) = PgCluster::start() else { return };
    let fake = FakeGitlab::new();
    fake.slow(Duration::from_millis(500));
    let body: String = (0..30).map(|i| format!("  b{i:02}:\n    cron: \"*/10 * * * * *\"\n")).collect();
    let (dir, _) = setup(&fake, &body);
    let mut running = replicas(dir.path(), &cluster.url(), 3, &["--concurrency", "4"]);
    while cluster.psql("SELECT to_regclass('runs')").is_empty() {
        sleep(50);
    }
    // Wait for a burst to be in flight, and kill the replica that holds it.
    let holder = loop {
        let owner = cluster.psql("SELECT owner FROM runs WHERE state = 'sending' LIMIT 1");
        if !owner.is_empty() {
            break owner;
        }
        sleep(50);
    };
    let pid: u32 = holder.split(':').nth(1).and_then(|p| p.parse().ok()).expect("HOST:PID:NONCE");
    let index = running.iter().position(|d| d.pid() == pid).expect("one of ours");
    running.remove(index).kill9();
    let left = |state: &str| {
        cluster.psql(&format!("SELECT slot, schedule FROM runs WHERE owner = '{holder}' AND state = '{state}'"))
    };
    let unsent = left("claimed");
    let sending = left("sending").lines().count();
    assert!(!unsent.is_empty(), "the burst of 30 had more than 4 slots waiting for a place in the pool");
    assert!(sending <= 4, "at most --concurrency rows are sending: {sending}");

    sleep(3000 + 4000);
    let logs = stop_all(running);
    assert!(logs.iter().any(|l| l.contains("took over")), "{logs:?}");
    assert_no_duplicate(&fake);
    let rows = history(&cluster);
    let arrived = slots_by_schedule(&fake);
    for line in unsent.lines() {
        let (slot, name) = line.split_once('|').expect("slot|schedule");
        let (state, owner, _) = &rows[&(name.to_string(), slot.parse().expect("a slot"))];
        assert_eq!(state, "succeeded", "{name} {slot}");
        assert_ne!(owner, &holder, "a survivor fired {name} {slot}");
        let text = slot_text(slot.parse().expect("a slot"));
        assert_eq!(arrived[name].iter().filter(|s| **s == text).count(), 1, "{name} {text}");
    }
    let unknown: Vec<_> = rows.values().filter(|(state, _, _)| state == "unknown").collect();
    assert_eq!(unknown.len(), sending, "{unknown:?}");
    assert!(unknown.iter().all(|(_, _, error)| error.contains("died while sending")), "{unknown:?}");
    assert!(rows.values().all(|(state, _, _)| state != "claimed" && state != "sending"), "{rows:?}");
}

#[test]
fn a_replica_paused_past_its_lease_fires_nothing_twice_when_it_resumes() {
    let Some(cluster) = PgCluster::start() else { return };
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, &every_second(10));
    let running = replicas(dir.path(), &cluster.url(), 3, &[]);
    sleep(3000);
    running[0].signal("STOP");
    sleep(6000);
    running[0].signal("CONT");
    sleep(4000);
    let logs = stop_all(running);
    assert!(logs[0].contains("lease had run out"), "the paused replica noticed: {}", logs[0]);
    assert_no_duplicate(&fake);
    let rows = history(&cluster);
    assert_every_second_accounted_for(&rows);
    assert!(rows.values().all(|(state, _, _)| state != "claimed" && state != "sending"), "{rows:?}");
}

#[test]
fn postgres_restarted_under_three_replicas_loses_nothing_silently_and_fires_nothing_twice() {
    let Some(cluster) = PgCluster::start() else { return };
    let fake = FakeGitlab::new();
    let (dir, _) = setup(&fake, &every_second(5));
    let running = replicas(dir.path(), &cluster.url(), 3, &[]);
    sleep(3000);
    cluster.stop();
    sleep(10_000);
    let during = fake.requests().len();
    cluster.start_again();
    sleep(9000);
    let logs = stop_all(running);
    assert_no_duplicate(&fake);
    assert!(fake.requests().len() > during + 5, "firing resumed");
    let rows = history(&cluster);
    assert_every_second_accounted_for(&rows);
    let missed = rows.values().filter(|(state, _, _)| state == "missed").count();
    assert!(missed >= 5 * 5, "the slots of the outage are recorded missed: {missed}");
    assert!(rows.values().all(|(state, _, _)| state != "claimed" && state != "sending"), "{rows:?}");
    for log in &logs {
        let outages = log.matches("the state database is unreachable").count();
        let returns = log.matches("the state database answers again").count();
        let lines: Vec<_> = log.lines().filter(|l| l.contains("the state database")).collect();
        assert!((1..=2).contains(&outages) && (1..=2).contains(&returns), "logged once, not per slot:\n{lines:#?}");
    }
}

#[test]
fn a_replica_whose_clock_runs_30_s_fast_fires_no_slot_early() {
    let Some(cluster) = PgCluster::start() else { return };
    let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if !std::path::Path::new(library).exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "libfaketime is needed under CI ({library})");
        eprintln!("skipped: no libfaketime");
        return;
    }
    let fake = FakeGitlab::new();
    let (dir, file) = setup(&fake, &every_second(5));
    // The fast replica has schedules of its own: sharing them, it would lose every claim to the other, whose
    // clock needs no correction, and never be put to the test.
    let text = std::fs::read_to_string(&file).expect("reads").replace("  s0", "  fast-s0");
    std::fs::create_dir(dir.path().join("fast")).expect("creates");
    std::fs::write(dir.path().join("fast/s.yaml"), text).expect("writes");
    let url = cluster.url();
    let args = ["--state", url.as_str(), "--lease", LEASE, "--shutdown-grace", "5s"];
    let fast_args = [&args[..], &["--schedules", "fast"]].concat();
    let fast_env = [("LD_PRELOAD", library), ("FAKETIME", "+30s"), ("DONT_FAKE_MONOTONIC", "1")];
    let running = vec![Daemon::spawn(dir.path(), &args, &[]), Daemon::spawn(dir.path(), &fast_args, &fast_env)];
    let fast_pid = running[1].pid();
    sleep(8000);
    let logs = stop_all(running);
    assert!(logs[1].contains("differs from the database's"), "{}", logs[1]);
    let mut early = Vec::new();
    for request in fake.requests() {
        let slot: chrono::DateTime<chrono::Utc> =
            request.params["variables"]["PIPECRON_SLOT"].as_str().and_then(|s| s.parse().ok()).expect("a slot");
        if request.at < slot {
            early.push((slot, request.at));
        }
    }
    assert!(early.is_empty(), "fired before the slot: {early:?}");
    assert_no_duplicate(&fake);
    let fired_by_fast =
        history(&cluster).values().filter(|(_, owner, _)| owner.contains(&format!(":{fast_pid}:"))).count();
    assert!(fired_by_fast > 0, "the fast replica won some slots, so it was put to the test");
}
