//! Pruning on a real SQLite file, with the rules from real schedule files.

use chrono::TimeZone;

use super::*;
use crate::run::Reason;
use crate::store::SqliteStore;

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).single().expect("valid")
}

/// Finished runs of `name` at `slots`, written as `migrate-state` copies them: many at once.
async fn fired(store: &SqliteStore, name: &str, slots: impl IntoIterator<Item = DateTime<Utc>>) {
    let runs: Vec<crate::store::Run> = slots
        .into_iter()
        .map(|slot| crate::store::Run {
            schedule: name.to_string(),
            slot,
            reason: Reason::Schedule,
            state: crate::run::RunState::Succeeded,
            attempts: 1,
            started_at: Some(slot),
            finished_at: Some(slot),
            http_status: Some(201),
            pipeline: None,
            error: None,
            owner: Some("a:1:0".into()),
        })
        .collect();
    let n = runs.len();
    assert_eq!(store.import(runs).await.expect("writes"), n);
}

async fn slots(store: &SqliteStore, name: &str) -> Vec<DateTime<Utc>> {
    let runs = store.history(Some(name), 100_000).await.expect("reads");
    runs.into_iter().map(|r| r.slot).collect()
}

#[tokio::test]
async fn each_schedule_keeps_its_retention_its_cap_and_always_its_newest_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("opens");
    let list = crate::config::tests::schedules(concat!(
        "  hourly:\n    cron: \"0 * * * *\"\n    history_retention: 2d\n",
        "  capped:\n    cron: \"0 * * * *\"\n    history_max_runs: 5\n",
        "  yearly:\n    cron: \"@yearly\"\n    history_retention: 1d\n",
    ));
    let hours = |from: u32, to: u32| (from * 24..to * 24).map(|h| day(1, 0) + chrono::Duration::hours(h.into()));
    fired(&store, "hourly", hours(0, 10)).await;
    fired(&store, "capped", hours(0, 3)).await;
    fired(&store, "yearly", [day(1, 0)]).await;
    fired(&store, "removed", hours(0, 1)).await;
    let now = day(11, 0);

    let deleted = prune(&store, &list, now, &CancellationToken::new()).await.expect("prunes");

    let hourly = slots(&store, "hourly").await;
    assert_eq!(hourly.len(), 48, "two days of hourly runs");
    assert!(hourly.iter().all(|slot| *slot >= now - chrono::Duration::days(2)), "{hourly:?}");
    assert_eq!(slots(&store, "capped").await, hours(0, 3).rev().take(5).collect::<Vec<_>>(), "the newest 5");
    assert_eq!(slots(&store, "yearly").await, [day(1, 0)], "the newest run is kept, however old");
    assert_eq!(slots(&store, "removed").await.len(), 24, "by the default rule: 90 days, 10,000 runs");
    assert_eq!(deleted, (240 - 48) + (72 - 5));
    let again = prune(&store, &list, now, &CancellationToken::new()).await.expect("prunes");
    assert_eq!(again, 0, "a second pass finds nothing");
}

#[tokio::test]
async fn a_long_prune_lets_claims_through_between_its_batches() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("opens"));
    let old = (0..20 * BATCH as i64).map(|s| day(1, 0) + chrono::Duration::seconds(s));
    fired(&store, "every-second", old).await;
    let list = crate::config::tests::schedules("  every-second:\n    cron: \"* * * * * *\"\n");
    let pruning = {
        let store = store.clone();
        tokio::spawn(async move { prune(&*store, &list, day(25, 0), &CancellationToken::new()).await })
    };
    // Once pruning is under way, a claim is answered before it ends.
    while store.count().await.expect("counts") == 20 * BATCH as u64 {
        tokio::task::yield_now().await;
    }
    let claimed = store.claim("every-second", day(25, 0), Reason::Schedule, "b:1:0", day(25, 0)).await;
    assert!(claimed.expect("claims"), "the claim is taken");
    assert!(!pruning.is_finished(), "the claim did not wait for the whole pass");
    assert_eq!(pruning.await.expect("joins").expect("prunes"), 10 * BATCH, "down to the default cap");
    assert_eq!(store.count().await.expect("counts"), 10 * BATCH as u64 + 1, "the newest 10,000 and the claim");
}
