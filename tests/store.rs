//! One conformance suite for both stores: every case runs on a SQLite file and on a fresh database of the shared
//! PostgreSQL (127.0.0.1:5432). Claim races, the state transitions, the takeover rules, `record_missed` never
//! overwriting a fired row, and migrations from an empty store and from the previous schema.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use pipecron::run::Followed;
use pipecron::store::{Follows, Look, Notices, Replica, RunState, RunStore, StateLocation, Store, StoreError};
use pipecron::trigger::{Ending, Pipeline, Reason, RunResult};

use common::pg::TempDatabase;

#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

/// A new, empty store of one kind; `None` when PostgreSQL is not there (outside CI only).
struct Fixture {
    location: StateLocation,
    _dir: tempfile::TempDir,
    _db: Option<TempDatabase>,
}

impl Fixture {
    fn new(kind: Kind) -> Option<Fixture> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (text, db) = match kind {
            Kind::Sqlite => (dir.path().join("state.db").display().to_string(), None),
            Kind::Postgres => {
                let db = TempDatabase::create()?;
                (db.url(), Some(db))
            }
        };
        let location = StateLocation::parse(&text, &|_| None).expect("a location");
        Some(Fixture { location, _dir: dir, _db: db })
    }

    async fn open(&self) -> Store {
        pipecron::store::open(&self.location).await.expect("opens")
    }

    /// Runs SQL on the database itself, as another program (or a newer pipecron) would; the first column of the
    /// first row it returns, if any.
    fn sql(&self, sql: &str) -> String {
        match (&self.location, &self._db) {
            (StateLocation::Sqlite(path), _) => {
                let connection = rusqlite::Connection::open(path).expect("opens");
                let mut statement = connection.prepare(sql).expect("prepares");
                let mut rows = statement.query([]).expect("runs");
                let first = rows.next().expect("steps");
                first.map(|row| row.get::<_, String>(0).expect("text")).unwrap_or_default()
            }
            (_, Some(db)) => db.psql(sql),
            _ => unreachable!("a PostgreSQL fixture has its database"),
        }
    }

    /// Runs SQL on a SQLite file; column `column` of every row, one a line.
    fn sql_rows(&self, sql: &str, column: usize) -> String {
        let StateLocation::Sqlite(path) = &self.location else { unreachable!("a SQLite fixture") };
        let connection = rusqlite::Connection::open(path).expect("opens");
        let mut statement = connection.prepare(sql).expect("prepares");
        let rows = statement.query_map([], |row| row.get::<_, String>(column)).expect("runs");
        rows.collect::<Result<Vec<_>, _>>().expect("reads").join("\n")
    }
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, minute, 0).single().expect("valid")
}

fn created(id: u64) -> RunResult {
    RunResult {
        ending: Ending::Succeeded,
        attempts: 1,
        http_status: Some(201),
        pipeline: Some(Pipeline::created(id, Some(1), "created", Some("https://x/p".into()))),
        error: None,
        retries_exhausted: false,
    }
}

fn replica(name: &str, lease: Duration) -> Replica {
    Replica { id: format!("{name}:1:00000000"), host: name.into(), pid: 1, pid_ns: String::new(), lease }
}

const HOUR: Duration = Duration::from_secs(3600);

async fn run_of(store: &Store, name: &str, slot: DateTime<Utc>) -> pipecron::store::Run {
    let runs = store.history(Some(name), 1000).await.expect("reads");
    runs.into_iter().find(|r| r.slot == slot).expect("the run exists")
}

async fn a_slot_is_claimed_once_among_racing_claimants(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(fixture.open().await);
    }
    let claims: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            tokio::spawn(async move {
                let owner = format!("r{i}:1:0");
                store.claim("nightly", at(0), Reason::Schedule, &owner, at(0)).await.expect("answers")
            })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.expect("joins"));
    }
    assert_eq!(won, 1);
    let store = fixture.open().await;
    let many = vec![("a".to_string(), at(1), Reason::Schedule), ("nightly".to_string(), at(0), Reason::Schedule)];
    assert_eq!(store.claim_many(many, "x:1:0", at(1)).await.expect("claims"), [true, false]);
}

async fn only_the_owner_moves_a_row_and_records_its_ending(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    let (me, other) = ("me:1:0", "other:2:0");
    assert!(store.claim("nightly", at(0), Reason::Schedule, me, at(0)).await.expect("claims"));
    assert!(store.claim("nightly", at(0), Reason::Schedule, me, at(0)).await.expect("answers"), "asked again");
    assert!(!store.claim("nightly", at(0), Reason::Schedule, other, at(0)).await.expect("answers"));
    assert_eq!(run_of(&store, "nightly", at(0)).await.state, RunState::Claimed);
    let key = vec![("nightly".to_string(), at(0))];
    assert_eq!(store.start_sending(key.clone(), other).await.expect("answers"), [false]);
    assert!(!store.finish("nightly", at(0), &created(7), other, at(1)).await.expect("answers"));
    assert_eq!(store.start_sending(key.clone(), me).await.expect("answers"), [true]);
    assert_eq!(run_of(&store, "nightly", at(0)).await.state, RunState::Sending);
    assert_eq!(store.start_sending(key, me).await.expect("answers"), [true], "asked again, the same answer");
    let mut result = created(7);
    result.error = Some("a proxy said \0 this".into());
    assert!(store.finish("nightly", at(0), &result, me, at(1)).await.expect("records, NUL and all"));
    let run = run_of(&store, "nightly", at(0)).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.pipeline.map(|p| p.id), Some(7));
    assert_eq!(run.owner.as_deref(), Some(me));
    assert!(!store.finish("nightly", at(0), &created(8), me, at(2)).await.expect("answers"), "an ending is final");
    assert_eq!(store.last_runs().await.expect("reads").len(), 1);
}

async fn record_missed_never_overwrites_a_row(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    assert!(store.claim("nightly", at(0), Reason::Schedule, "me:1:0", at(0)).await.expect("claims"));
    let key = vec![("nightly".to_string(), at(0))];
    store.start_sending(key, "me:1:0").await.expect("moves");
    store.finish("nightly", at(0), &created(3), "me:1:0", at(0)).await.expect("records");
    let slots = vec![("nightly".to_string(), at(0)), ("nightly".to_string(), at(1))];
    store.record_missed(slots, at(2)).await.expect("records");
    assert_eq!(run_of(&store, "nightly", at(0)).await.state, RunState::Succeeded);
    assert_eq!(run_of(&store, "nightly", at(1)).await.state, RunState::Missed);
    let last = store.last_slots().await.expect("reads");
    assert_eq!(last.get("nightly"), Some(&at(1)));
}

async fn a_dead_replicas_claimed_rows_are_taken_over_once_and_sending_rows_become_unknown(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    // Each replica is judged by its own lease.
    let (dead, survivor) = (replica("dead", Duration::from_millis(500)), replica("survivor", HOUR));
    store.register(&dead).await.expect("registers");
    store.register(&survivor).await.expect("registers");
    for minute in [0, 1] {
        assert!(store.claim("nightly", at(minute), Reason::Schedule, &dead.id, at(0)).await.expect("claims"));
    }
    store.start_sending(vec![("nightly".to_string(), at(1))], &dead.id).await.expect("moves");
    assert!(store.take_over(&survivor).await.expect("answers").is_empty(), "the dead one is still live");
    assert_eq!(store.live_replicas().await.expect("reads").len(), 2);

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.live_replicas().await.expect("reads").len(), 1, "its lease ran out");
    let taken = store.take_over(&survivor).await.expect("takes over");
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].from, dead.id);
    assert_eq!(taken[0].unknown, 1);
    let claimed: Vec<_> = taken[0].claimed.iter().map(|r| (r.slot, r.state, r.owner.clone())).collect();
    assert_eq!(claimed, [(at(0), RunState::Claimed, Some(survivor.id.clone()))]);
    let unknown = run_of(&store, "nightly", at(1)).await;
    assert_eq!(unknown.state, RunState::Unknown);
    assert_eq!(unknown.error.as_deref(), Some("replica dead:1 died while sending; a pipeline may have been created"));

    // The dead one, if it was only paused, can neither send nor record: the rows are not its own.
    let key = vec![("nightly".to_string(), at(0))];
    assert_eq!(store.start_sending(key.clone(), &dead.id).await.expect("answers"), [false]);
    assert!(!store.finish("nightly", at(1), &created(1), &dead.id, at(2)).await.expect("answers"));
    assert!(!store.heartbeat(&dead).await.expect("answers"), "it learns it was presumed dead");
    assert!(store.take_over(&survivor).await.expect("answers").is_empty());
    assert_eq!(store.start_sending(key, &survivor.id).await.expect("moves"), [true]);

    store.release_missed(vec![("nightly".to_string(), at(0))], &survivor.id, "too late", at(3)).await.expect("answers");
    assert_eq!(run_of(&store, "nightly", at(0)).await.state, RunState::Sending, "only claimed rows are released");
}

async fn two_survivors_split_a_dead_replicas_rows_without_overlap(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    let dead = replica("dead", HOUR);
    let slots: Vec<_> = (0..50).map(|m| (format!("s{m}"), at(m % 60), Reason::Schedule)).collect();
    assert!(store.claim_many(slots, &dead.id, at(0)).await.expect("claims").iter().all(|won| *won));
    // Never registered (or deregistered on a clean stop): its rows are orphans at once.
    let (b, c) = (fixture.open().await, fixture.open().await);
    let (rb, rc) = (replica("b", HOUR), replica("c", HOUR));
    b.register(&rb).await.expect("registers");
    c.register(&rc).await.expect("registers");
    let (tb, tc) = tokio::join!(b.take_over(&rb), c.take_over(&rc));
    let names = |taken: Vec<pipecron::store::TakenOver>| -> HashSet<String> {
        taken.into_iter().flat_map(|t| t.claimed).map(|r| r.schedule).collect()
    };
    let (nb, nc) = (names(tb.expect("b answers")), names(tc.expect("c answers")));
    assert!(nb.is_disjoint(&nc), "both took {:?}", nb.intersection(&nc).collect::<Vec<_>>());
    assert_eq!(nb.len() + nc.len(), 50);
}

async fn a_clean_stop_hands_its_claimed_rows_over_at_once(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    let (leaving, staying) = (replica("leaving", HOUR), replica("staying", HOUR));
    store.register(&leaving).await.expect("registers");
    store.register(&staying).await.expect("registers");
    assert!(store.claim("nightly", at(5), Reason::Schedule, &leaving.id, at(5)).await.expect("claims"));
    store.deregister(&leaving).await.expect("deregisters");
    let taken = store.take_over(&staying).await.expect("takes over");
    assert_eq!(taken.iter().map(|t| t.claimed.len()).sum::<usize>(), 1);
}

async fn history_is_copied_as_it_is_and_only_once(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    for minute in 0..7 {
        let name = format!("s{}", minute % 3);
        assert!(store.claim(&name, at(minute), Reason::Schedule, "me:1:0", at(minute)).await.expect("claims"));
        store.start_sending(vec![(name.clone(), at(minute))], "me:1:0").await.expect("moves");
        store.finish(&name, at(minute), &created(u64::from(minute)), "me:1:0", at(minute)).await.expect("records");
    }
    let first = store.export(None, 4).await.expect("exports");
    let last = first.last().map(|r| (r.schedule.clone(), r.slot));
    let rest = store.export(last, 100).await.expect("exports");
    assert_eq!((first.len(), rest.len()), (4, 3));
    let Some(copy) = Fixture::new(kind) else { return };
    let target = copy.open().await;
    let page = store.runs_before("s0", Some(at(6)), 1).await.expect("reads");
    assert_eq!(page.iter().map(|r| r.slot).collect::<Vec<_>>(), [at(3)], "s0 ran at 0, 3 and 6");
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(target.import(all.clone()).await.expect("imports"), 7);
    assert_eq!(target.import(all).await.expect("imports"), 0);
    assert_eq!(target.count().await.expect("counts"), 7);
    assert_eq!(target.history(None, 100).await.expect("reads"), store.history(None, 100).await.expect("reads"));
}

async fn several_processes_migrating_a_new_store_at_once_all_start(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let location = fixture.location.clone();
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let location = location.clone();
            tokio::spawn(async move { pipecron::store::open(&location).await.map(drop) })
        })
        .collect();
    for open in opens {
        open.await.expect("joins").expect("opens");
    }
}

/// Milliseconds since 1970, as the stores keep times.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

async fn a_row_it_cannot_read_is_an_error_naming_the_row_and_the_value(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    assert!(store.claim("good", at(0), Reason::Schedule, "r:1:0", at(0)).await.expect("claims"));
    let insert = |schedule: &str, slot: i64, reason: &str, state: &str| {
        fixture.sql(&format!(
            "INSERT INTO runs (schedule, slot, reason, state) VALUES ('{schedule}', {slot}, '{reason}', '{state}')"
        ));
    };
    insert("nightly", ms(at(1)), "schedule", "bogus");
    let row = "row (nightly, 2026-11-24T12:01:00Z)";
    let expected = format!(
        "the state database: {row} has state \"bogus\", which this pipecron does not know; was it written by a \
         newer version?"
    );
    let error = |result: Result<Vec<pipecron::store::Run>, StoreError>| match result {
        Ok(runs) => panic!("read as {runs:?}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(error(store.history(Some("nightly"), 10).await), expected);
    assert_eq!(error(store.history(None, 10).await), expected);
    assert_eq!(error(store.last_runs().await), expected);
    assert_eq!(error(store.export(None, 10).await), expected);
    assert_eq!(store.history(Some("good"), 10).await.expect("the other rows read").len(), 1);

    let right = "reason = 'schedule', state = 'succeeded', attempts = 1, started_at = NULL, http_status = NULL";
    let why = |set: &str| {
        fixture.sql(&format!("UPDATE runs SET {right} WHERE schedule = 'nightly'"));
        fixture.sql(&format!("UPDATE runs SET {set} WHERE schedule = 'nightly'"));
        async { error(store.history(Some("nightly"), 10).await) }
    };
    let reason = why("reason = 'by-the-moon'").await;
    assert!(
        reason.contains(&format!("{row} has reason \"by-the-moon\", which this pipecron does not know")),
        "{reason}"
    );
    let started = why("started_at = 9223372036854775807").await;
    let not_a_time = "has started_at 9223372036854775807, which is not a time (milliseconds since 1970)";
    assert!(started.contains(&format!("{row} {not_a_time}")), "{started}");
    let attempts = why("attempts = -1").await;
    assert!(attempts.contains(&format!("{row} has attempts -1, which is not a count")), "{attempts}");
    let status = why("http_status = 70000").await;
    assert!(status.contains(&format!("{row} has http_status 70000, which is not an HTTP status")), "{status}");
    fixture.sql(&format!("UPDATE runs SET {right} WHERE schedule = 'nightly'"));
    assert_eq!(run_of(&store, "nightly", at(1)).await.state, RunState::Succeeded, "the row reads once it is right");

    // Beyond chrono's years, but before `runs_before`'s i64::MAX.
    insert("far", 9_000_000_000_000_000_000, "schedule", "succeeded");
    let slot = error(store.history(Some("far"), 10).await);
    let far = "row (far, slot 9000000000000000000) has slot 9000000000000000000, which is not a time";
    assert!(slot.contains(far), "{slot}");
    fixture.sql("DELETE FROM runs WHERE schedule = 'far'");

    // A takeover that meets such a row takes nothing over: the rows stay the dead replica's.
    insert("later", ms(at(2)), "by-the-moon", "claimed");
    fixture.sql("UPDATE runs SET owner = 'gone:1:00000000' WHERE schedule = 'later'");
    let me = replica("me", HOUR);
    store.register(&me).await.expect("registers");
    let refused = store.take_over(&me).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("row (later, 2026-11-24T12:02:00Z) has reason \"by-the-moon\""), "{refused}");
    assert_eq!(fixture.sql("SELECT owner FROM runs WHERE schedule = 'later'"), "gone:1:00000000");
}

/// Records a finished run of `name` at `slot`, as a daemon would.
async fn fired(store: &Store, name: &str, slot: DateTime<Utc>, reason: Reason) {
    assert!(store.claim(name, slot, reason, "a:1:0", slot).await.expect("claims"));
    assert!(store.finish(name, slot, &created(1), "a:1:0", slot).await.expect("finishes"));
}

async fn the_last_run_and_last_slot_of_each_schedule_are_found(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    assert!(store.last_runs().await.expect("reads").is_empty());
    assert!(store.last_slots().await.expect("reads").is_empty());
    for minute in 0..5 {
        fired(&store, "b-nightly", at(minute), Reason::Schedule).await;
    }
    fired(&store, "a-hourly", at(1), Reason::Schedule).await;
    fired(&store, "a-hourly", at(7), Reason::RunNow).await;
    fired(&store, "c-only-by-hand", at(3), Reason::RunNow).await;
    let last: Vec<(String, DateTime<Utc>)> =
        store.last_runs().await.expect("reads").into_iter().map(|r| (r.schedule, r.slot)).collect();
    let want = [("a-hourly", at(7)), ("b-nightly", at(4)), ("c-only-by-hand", at(3))];
    assert_eq!(last, want.map(|(n, t)| (n.to_string(), t)));
    let mut slots: Vec<(String, DateTime<Utc>)> = store.last_slots().await.expect("reads").into_iter().collect();
    slots.sort();
    assert_eq!(slots, [("a-hourly".to_string(), at(1)), ("b-nightly".to_string(), at(4))], "run-now is not a slot");
    assert_eq!(store.schedule_names().await.expect("reads"), ["a-hourly", "b-nightly", "c-only-by-hand"]);
}

async fn pruning_deletes_old_finished_runs_in_batches_and_keeps_the_newest(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    for minute in 0..10 {
        fired(&store, "nightly", at(minute), Reason::Schedule).await;
    }
    // One still under way, and another schedule's run, older than the cut.
    assert!(store.claim("nightly", at(10), Reason::Schedule, "a:1:0", at(10)).await.expect("claims"));
    assert!(store.claim("nightly", at(11), Reason::Schedule, "a:1:0", at(11)).await.expect("claims"));
    assert_eq!(store.start_sending(vec![("nightly".into(), at(11))], "a:1:0").await.expect("moves"), [true]);
    fired(&store, "other", at(0), Reason::Schedule).await;
    let slots = |runs: Vec<pipecron::store::Run>| runs.into_iter().map(|r| r.slot).collect::<Vec<_>>();

    assert_eq!(store.prune("nightly", at(5), 3).await.expect("prunes"), 3, "a batch at most");
    assert_eq!(store.prune("nightly", at(5), 3).await.expect("prunes"), 2);
    assert_eq!(store.prune("nightly", at(5), 3).await.expect("prunes"), 0);
    let left = slots(store.history(Some("nightly"), 100).await.expect("reads"));
    assert_eq!(left, (5..12).rev().map(at).collect::<Vec<_>>());
    // Everything older than the far future: the runs under way and the newest stay.
    assert_eq!(store.prune("nightly", at(59), 100).await.expect("prunes"), 5);
    assert_eq!(slots(store.history(Some("nightly"), 100).await.expect("reads")), [at(11), at(10)]);
    fired(&store, "lonely", at(2), Reason::Schedule).await;
    assert_eq!(store.prune("lonely", at(59), 100).await.expect("prunes"), 0, "the newest run is always kept");
    assert_eq!(slots(store.history(Some("other"), 10).await.expect("reads")), [at(0)], "other schedules untouched");
}

async fn the_cap_finds_the_run_past_the_newest_n(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    for minute in 0..10 {
        fired(&store, "nightly", at(minute), Reason::Schedule).await;
    }
    assert_eq!(store.nth_newest("nightly", 3).await.expect("reads"), Some(at(6)), "9, 8 and 7 are newer");
    assert_eq!(store.nth_newest("nightly", 10).await.expect("reads"), None, "only 10 runs");
    assert_eq!(store.nth_newest("none", 0).await.expect("reads"), None);
}

fn followed(id: u64) -> RunResult {
    let mut result = created(id);
    if let Some(pipeline) = result.pipeline.as_mut() {
        pipeline.followed = Some(Followed::Following);
    }
    result
}

fn look(status: &str, followed: Followed, next: Option<DateTime<Utc>>, at: DateTime<Utc>) -> Look {
    Look { status: Some(status.into()), finished_at: None, duration: None, followed, note: None, next, polls: 1, at }
}

/// A followed pipeline is first due 10 s after its trigger, is taken by one replica at a time, and its looks are
/// written back only by the one that holds it; an unfollowed one is never taken.
async fn a_followed_pipeline_is_taken_by_one_replica_at_a_time(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    let t0 = at(0);
    assert!(store.claim("nightly", t0, Reason::Schedule, "a:1:0", t0).await.expect("claims"));
    assert!(store.finish("nightly", t0, &followed(1001), "a:1:0", t0).await.expect("finishes"));
    fired(&store, "unfollowed", t0, Reason::Schedule).await;
    let due = t0 + chrono::Duration::seconds(10);
    assert_eq!(store.next_follow().await.expect("reads"), Some(due));
    assert!(store.take_follows(due - chrono::Duration::seconds(1), HOLD, 10).await.expect("takes").is_empty());

    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(fixture.open().await);
    }
    let takes: Vec<_> = replicas
        .into_iter()
        .map(|replica| tokio::spawn(async move { replica.take_follows(due, HOLD, 10).await.expect("takes") }))
        .collect();
    let mut taken = Vec::new();
    for take in takes {
        taken.extend(take.await.expect("joins"));
    }
    assert_eq!(taken.len(), 1, "one replica takes it: {taken:?}");
    let first = taken.remove(0);
    assert_eq!((first.schedule.as_str(), first.slot, first.pipeline, first.triggered), ("nightly", t0, 1001, t0));
    assert_eq!(store.next_follow().await.expect("reads"), Some(due + chrono::Duration::from_std(HOLD).expect("fits")));

    // Its holder died; once the hold passes another replica takes it, and the first one's look is refused.
    let later = due + chrono::Duration::from_std(HOLD).expect("fits");
    let second = store.take_follows(later, HOLD, 10).await.expect("takes").pop().expect("taken again");
    let stale = look("running", Followed::Following, Some(later), later);
    assert!(!store.record_look(&first, &stale).await.expect("answers"), "the first hold has passed");
    let next = later + chrono::Duration::seconds(20);
    assert!(
        store.record_look(&second, &look("running", Followed::Following, Some(next), later)).await.expect("records")
    );
    assert_eq!(store.next_follow().await.expect("reads"), Some(next));
    assert_eq!(run_of(&store, "nightly", t0).await.pipeline.expect("a pipeline").status, "running");

    let third = store.take_follows(next, HOLD, 10).await.expect("takes").pop().expect("due again");
    assert_eq!(third.polls, 1);
    let finished = Utc.with_ymd_and_hms(2026, 11, 24, 12, 12, 0).single().expect("valid");
    let ended =
        Look { finished_at: Some(finished), duration: Some(700), ..look("success", Followed::Ended, None, next) };
    assert!(store.record_look(&third, &ended).await.expect("records"));
    assert_eq!(store.next_follow().await.expect("reads"), None, "nothing is followed any more");
    let pipeline = run_of(&store, "nightly", t0).await.pipeline.expect("a pipeline");
    assert_eq!(
        (pipeline.status.as_str(), pipeline.followed, pipeline.duration, pipeline.finished_at),
        ("success", Some(Followed::Ended), Some(700), Some(finished))
    );
    assert_eq!(pipeline.badge(), "#1001 passed 11m");
    assert_eq!(run_of(&store, "unfollowed", t0).await.pipeline.expect("a pipeline").followed, None);

    // Retention spares a run whose pipeline is still followed, and prunes it once following has ended.
    let older = t0 - chrono::Duration::hours(1);
    assert!(store.claim("nightly", older, Reason::Schedule, "a:1:0", older).await.expect("claims"));
    assert!(store.finish("nightly", older, &followed(999), "a:1:0", older).await.expect("finishes"));
    let later = t0 + chrono::Duration::days(1);
    assert_eq!(store.prune("nightly", later, 100).await.expect("prunes"), 0, "the followed run is kept");
    let still = store.take_follows(later, HOLD, 10).await.expect("takes").pop().expect("still followed");
    assert!(store.record_look(&still, &look("failed", Followed::Ended, None, later)).await.expect("records"));
    assert_eq!(store.prune("nightly", later, 100).await.expect("prunes"), 1);
}

/// A schedule starts failing once, and recovers once, by a success of a slot no older than the failure.
async fn a_failing_schedule_is_recorded_once_and_recovers_once(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let stores = [fixture.open().await, fixture.open().await];
    assert!(stores[0].start_failing("nightly", "fires", "failed", at(3)).await.expect("records"));
    assert!(!stores[1].start_failing("nightly", "fires", "unknown", at(4)).await.expect("answers"), "already failing");
    assert!(stores[1].start_failing("nightly", "pipelines", "pipeline_failed", at(4)).await.expect("records"));
    assert_eq!(stores[0].recover("nightly", "fires", at(2)).await.expect("answers"), None, "an older success");
    assert_eq!(stores[1].recover("nightly", "fires", at(5)).await.expect("answers"), Some(("failed".into(), at(3))));
    assert_eq!(stores[0].recover("nightly", "fires", at(6)).await.expect("answers"), None, "recovered once");
    assert!(stores[0].start_failing("nightly", "fires", "missed", at(7)).await.expect("records"), "fails anew");
}

const HOLD: Duration = Duration::from_secs(120);

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Kind::Postgres).await
                }
            )*
        }
    };
}

conformance!(
    a_slot_is_claimed_once_among_racing_claimants,
    only_the_owner_moves_a_row_and_records_its_ending,
    record_missed_never_overwrites_a_row,
    a_dead_replicas_claimed_rows_are_taken_over_once_and_sending_rows_become_unknown,
    two_survivors_split_a_dead_replicas_rows_without_overlap,
    a_clean_stop_hands_its_claimed_rows_over_at_once,
    history_is_copied_as_it_is_and_only_once,
    several_processes_migrating_a_new_store_at_once_all_start,
    a_row_it_cannot_read_is_an_error_naming_the_row_and_the_value,
    the_last_run_and_last_slot_of_each_schedule_are_found,
    pruning_deletes_old_finished_runs_in_batches_and_keeps_the_newest,
    the_cap_finds_the_run_past_the_newest_n,
    the_queries_of_a_long_history_use_an_index,
    a_followed_pipeline_is_taken_by_one_replica_at_a_time,
    a_failing_schedule_is_recorded_once_and_recovers_once,
);

/// Each query `status`, `history`, catch-up and retention make reads through an index (`EXPLAIN QUERY PLAN` on
/// SQLite, `EXPLAIN` with sequential scans discouraged on PostgreSQL, whose planner would scan a small table).
async fn the_queries_of_a_long_history_use_an_index(kind: Kind) {
    let Some(fixture) = Fixture::new(kind) else { return };
    let store = fixture.open().await;
    fired(&store, "nightly", at(0), Reason::Schedule).await;
    for (what, mut sql, values) in pipecron::store::hot_queries() {
        for (i, value) in values.iter().enumerate() {
            sql = sql.replace(&format!("${}", i + 1), value);
        }
        let plan = match kind {
            Kind::Sqlite => fixture.sql_rows(&format!("EXPLAIN QUERY PLAN {sql}"), 3),
            Kind::Postgres => fixture.sql(&format!("SET enable_seqscan = off; EXPLAIN {sql}")),
        };
        let lines: Vec<&str> = plan.lines().collect();
        // A LIMIT is only cheap when the rows come in order: a sort reads them all first.
        let sorted = match kind {
            Kind::Sqlite => plan.contains("TEMP B-TREE"),
            Kind::Postgres => plan.lines().any(|l| l.trim_start().trim_start_matches("->  ").starts_with("Sort")),
        };
        assert!(!(sql.contains("LIMIT") && sorted), "{what} sorts before its LIMIT:\n{sql}\n{plan}");
        let full_scans: Vec<&str> = (0..lines.len())
            .filter(|&i| match kind {
                // A scan of the slot index is a walk from the newest, stopped by the LIMIT.
                Kind::Sqlite => lines[i].contains("SCAN runs") && !lines[i].contains("USING INDEX runs_by_slot"),
                // A scan node without an `Index Cond` among its details reads every row (or every index entry).
                Kind::Postgres => {
                    let node = lines[i].contains("Scan") && lines[i].contains(" on runs");
                    let details = lines[i + 1..].iter().take_while(|l| !l.contains("->") && !l.contains("Plan "));
                    let searched = details.into_iter().any(|l| l.contains("Index Cond"));
                    // So is a walk of the index of followed pipelines, which holds only those still followed.
                    let walk = lines[i].contains("runs_by_slot") || lines[i].contains("runs_following");
                    node && !searched && !walk
                }
            })
            .map(|i| lines[i])
            .collect();
        assert!(full_scans.is_empty(), "{what} reads the whole table:\n{sql}\n{plan}");
    }
}

/// The schema as version 1 shipped it, with a row left `claimed` by a kill -9.
const V1: &str = "CREATE TABLE runs (
        schedule TEXT NOT NULL, slot BIGINT NOT NULL, reason TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, started_at BIGINT, finished_at BIGINT, http_status INTEGER,
        pipeline_id BIGINT, pipeline_iid BIGINT, pipeline_status TEXT, web_url TEXT, error TEXT,
        PRIMARY KEY (schedule, slot));
    CREATE INDEX runs_by_slot ON runs (slot);
    INSERT INTO runs (schedule, slot, reason, state) VALUES ('nightly', 1764000000000, 'schedule', 'claimed');
    INSERT INTO runs (schedule, slot, reason, state) VALUES ('nightly', 1763990000000, 'schedule', 'succeeded');";

async fn check_migrated_from_v1(store: &Store) {
    let runs = store.history(Some("nightly"), 10).await.expect("reads");
    let states: Vec<_> = runs.iter().map(|r| r.state).collect();
    assert_eq!(states, [RunState::Unknown, RunState::Succeeded], "a v1 `claimed` row may have been sent");
    assert!(runs[0].error.as_deref().is_some_and(|e| e.contains("a pipeline may have been created")));
    assert!(store.register(&replica("new", HOUR)).await.is_ok(), "the replicas table exists");
}

#[tokio::test]
async fn sqlite_migrates_from_the_previous_schema_and_refuses_a_newer_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("v1.db");
    let connection = rusqlite::Connection::open(&path).expect("opens");
    connection.execute_batch(V1).expect("creates v1");
    connection.pragma_update(None, "user_version", 1).expect("sets");
    drop(connection);
    let location = StateLocation::Sqlite(path.clone());
    check_migrated_from_v1(&pipecron::store::open(&location).await.expect("migrates")).await;
    let connection = rusqlite::Connection::open(&path).expect("opens");
    connection.pragma_update(None, "user_version", 99).expect("sets");
    drop(connection);
    assert!(matches!(pipecron::store::open(&location).await, Err(StoreError::TooNew { found: 99, .. })));
}

#[tokio::test]
async fn postgres_migrates_from_the_previous_schema_and_refuses_a_newer_one() {
    let Some(db) = TempDatabase::create() else { return };
    db.psql(&format!(
        "{V1} CREATE TABLE pipecron_schema (version INTEGER NOT NULL); INSERT INTO pipecron_schema VALUES (1);"
    ));
    let location = StateLocation::parse(&db.url(), &|_| None).expect("a location");
    check_migrated_from_v1(&pipecron::store::open(&location).await.expect("migrates")).await;
    db.psql("UPDATE pipecron_schema SET version = 99");
    let refused = pipecron::store::open(&location).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("written by a newer pipecron"), "{refused}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error_that_masks_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("an address").port();
    let url = format!("postgres://pipecron:hunter2-secret@127.0.0.1:{port}/pipecron?sslmode=disable");
    let location = StateLocation::parse(&url, &|_| None).expect("a location");
    let error = pipecron::store::open(&location).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains("postgres://pipecron:***@127.0.0.1"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}
