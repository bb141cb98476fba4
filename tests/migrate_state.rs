//! `pipecron migrate-state` through the real binary: a history copied row for row, SQLite to SQLite and SQLite to
//! PostgreSQL (and back), idempotent on a second run, never showing a password, and refusing a destination that a
//! live replica is using unless `--force`.

mod common;

use common::pg::TempDatabase;

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pipecron::store::{Notices, TokenNotes};
use pipecron::store::{Replica, Run, RunStore, StateLocation, Store, owner_name};
use pipecron::trigger::{Ending, Pipeline, Reason, RunResult};

use common::Pipecron;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

async fn open(text: &str) -> Store {
    let location = StateLocation::parse(text, &|_| None).expect("a location");
    pipecron::store::open(&location).await.expect("opens")
}

fn slot(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).single().expect("valid") + Duration::hours(hour)
}

fn ended(ending: Ending, pipeline: Option<u64>, error: Option<&str>) -> RunResult {
    RunResult {
        ending,
        attempts: 2,
        http_status: Some(if pipeline.is_some() { 201 } else { 400 }),
        pipeline: pipeline.map(|id| {
            Pipeline::created(
                id,
                Some(id / 10),
                "created",
                Some(format!("https://gitlab.example.com/p/-/pipelines/{id}")),
            )
        }),
        error: error.map(str::to_string),
        retries_exhausted: false,
    }
}

/// 12 runs: 3 schedules sharing 4 slots, in every state a history holds, owned and not.
async fn record_history(store: &Store) {
    use pipecron::store::TokenNote;
    assert!(store.start_failing("nightly", "fires", "failed", slot(3)).await.expect("records"));
    let note =
        TokenNote { checked_at: slot(4), expires_at: Some(slot(400)), summary: "owned by alice".into(), warning: None };
    store.note_token("nightly", &note).await.expect("notes");
    let owner = Replica::this_process(pipecron::store::DEFAULT_LEASE).id;
    for (n, name) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
        let now = slot(10);
        let reason = if name == "gamma" { Reason::RunNow } else { Reason::Schedule };
        for hour in 0..3 {
            assert!(store.claim(name, slot(hour), reason, &owner, now).await.expect("claims"));
        }
        let sending = vec![(name.to_string(), slot(0)), (name.to_string(), slot(1)), (name.to_string(), slot(2))];
        store.start_sending(sending, &owner).await.expect("sends");
        let id = 1000 + n as u64;
        store.finish(name, slot(0), &ended(Ending::Succeeded, Some(id), None), &owner, now).await.expect("finishes");
        store
            .finish(name, slot(1), &ended(Ending::Failed, None, Some("refused")), &owner, now)
            .await
            .expect("finishes");
        match name {
            "alpha" => store.record_missed(vec![(name.into(), slot(3))], now).await.expect("records"),
            _ => assert!(store.claim(name, slot(3), Reason::CatchUp, &owner, now).await.expect("claims")),
        }
    }
    assert_eq!(store.count().await.expect("counts"), 12);
}

fn migrate(from: &str, to: &str, force: bool) -> common::Run {
    let force = if force { &["--force"][..] } else { &[] };
    Pipecron::new().args(["migrate-state", from, to]).args(force).run()
}

fn history(runtime: &tokio::runtime::Runtime, text: &str) -> Vec<Run> {
    runtime.block_on(async { open(text).await.history(None, 100).await.expect("reads") })
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn copies_a_sqlite_history_row_for_row_and_nothing_twice() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let (src, dst) = (path(&dir.path().join("box.db")), path(&dir.path().join("new/replicas.db")));
    runtime.block_on(async { record_history(&open(&src).await).await });

    migrate(&src, &dst, false)
        .success()
        .stdout_is(&format!("copied 12 runs, skipped 0 already present ({src} -> {dst})\n"));
    let copied = history(&runtime, &dst);
    assert_eq!(copied.len(), 12);
    assert_eq!(copied, history(&runtime, &src));
    let last_slots = |text: &str| runtime.block_on(async { open(text).await.last_slots().await.expect("reads") });
    assert_eq!(last_slots(&dst), last_slots(&src), "catch-up continues where the box left off");
    let state = |text: &str| {
        runtime.block_on(async {
            let store = open(text).await;
            (store.failing().await.expect("reads"), store.token_notes().await.expect("reads"))
        })
    };
    let (failing, tokens) = state(&dst);
    assert_eq!(failing, [("nightly".to_string(), "fires".to_string(), "failed".to_string(), slot(3))]);
    assert_eq!(tokens.get("nightly").map(|n| n.summary.as_str()), Some("owned by alice"));
    assert_eq!(state(&dst), state(&src), "a failing schedule is not told again, and the token's expiry stays known");

    migrate(&src, &dst, false)
        .success()
        .stdout_is(&format!("copied 0 runs, skipped 12 already present ({src} -> {dst})\n"));
    assert_eq!(history(&runtime, &dst), history(&runtime, &src));
}

#[test]
fn copies_across_batches_with_slots_shared_by_schedules() {
    // 3 × 3,001 rows: a batch boundary falls between schedules of one slot.
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let (src, dst) = (path(&dir.path().join("big.db")), path(&dir.path().join("copy.db")));
    runtime.block_on(async {
        let rows = (0..3001).flat_map(|h| ["a", "b", "c"].map(|name| (name.to_string(), slot(h), Reason::Schedule)));
        open(&src).await.claim_many(rows.collect(), "box:1:0", slot(0)).await.expect("claims");
    });
    migrate(&src, &dst, false)
        .success()
        .stdout_is(&format!("copied 9003 runs, skipped 0 already present ({src} -> {dst})\n"));
    runtime.block_on(async {
        let (from, to) = (open(&src).await, open(&dst).await);
        assert_eq!(to.count().await.expect("counts"), 9003);
        assert_eq!(to.export(None, 10_000).await.expect("reads"), from.export(None, 10_000).await.expect("reads"));
    });
}

#[test]
fn refuses_a_missing_source_and_the_same_store_twice() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (missing, dst) = (path(&dir.path().join("nope.db")), path(&dir.path().join("dst.db")));
    migrate(&missing, &dst, false).failure().stderr_has("nope.db").stderr_has("no such file");
    assert!(!Path::new(&missing).exists(), "the missing source is not created");

    let src = path(&dir.path().join("src.db"));
    runtime().block_on(async { record_history(&open(&src).await).await });
    let run = migrate(&src, &src, false);
    assert_eq!(run.status, 2, "{run:#?}");
    assert!(run.stderr.contains("the same store"), "{run:#?}");
    let run = migrate(&src, "mysql://db/x", false);
    assert_eq!(run.status, 2, "{run:#?}");
    assert!(run.stderr.contains("TO: 'mysql://'"), "{run:#?}");
}

#[test]
fn refuses_a_destination_in_use_unless_forced() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let (src, dst) = (path(&dir.path().join("box.db")), path(&dir.path().join("live.db")));
    let replica = Replica::this_process(pipecron::store::DEFAULT_LEASE);
    let destination = runtime.block_on(async {
        record_history(&open(&src).await).await;
        let destination = open(&dst).await;
        destination.register(&replica).await.expect("registers");
        destination
    });

    migrate(&src, &dst, false).failure().stderr_has(owner_name(&replica.id)).stderr_has("--force");
    assert_eq!(runtime.block_on(destination.count()).expect("counts"), 0, "nothing was copied");

    migrate(&src, &dst, true)
        .success()
        .stdout_is(&format!("copied 12 runs, skipped 0 already present ({src} -> {dst})\n"));
    assert_eq!(history(&runtime, &dst), history(&runtime, &src));
}

#[test]
fn copies_sqlite_to_postgres_and_back_without_showing_the_password() {
    let Some(db) = TempDatabase::create() else { return };
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let src = path(&dir.path().join("box.db"));
    runtime.block_on(async { record_history(&open(&src).await).await });
    let url = format!("postgres://postgres:hunter2@127.0.0.1:5432/{}?sslmode=disable", db.name());
    let shown = format!("postgres://postgres:***@127.0.0.1:5432/{}?sslmode=disable", db.name());
    let no_password = |run: &common::Run| {
        assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"), "{run:#?}");
    };

    let run = migrate(&src, &url, false).success();
    no_password(&run);
    assert_eq!(run.stdout, format!("copied 12 runs, skipped 0 already present ({src} -> {shown})\n"));
    assert_eq!(history(&runtime, &url), history(&runtime, &src));

    // Again, the password from the environment: nothing is copied twice.
    let from_env = format!("postgres://postgres:${{PGPW}}@127.0.0.1:5432/{}?sslmode=disable", db.name());
    let run = Pipecron::new().env("PGPW", "hunter2").args(["migrate-state", &src, &from_env]).run().success();
    no_password(&run);
    assert_eq!(run.stdout, format!("copied 0 runs, skipped 12 already present ({src} -> {shown})\n"));

    // And back from PostgreSQL to a new file.
    let back = path(&dir.path().join("back.db"));
    let run = migrate(&url, &back, false).success();
    no_password(&run);
    assert_eq!(run.stdout, format!("copied 12 runs, skipped 0 already present ({shown} -> {back})\n"));
    assert_eq!(history(&runtime, &back), history(&runtime, &src));
}
