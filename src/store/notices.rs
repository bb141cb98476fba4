//! Which schedules are failing, since when: so that a webhook hears once that a schedule fails and once that it
//! recovered, not once per slot, whichever replica fired the slots and across restarts.
//!
//! A schedule has two tracks, its fires and its pipelines, each failing or not: a nightly whose trigger succeeds and
//! whose pipeline fails is failing on one track only, and does not flap between the two. Starting to fail is an
//! INSERT that does nothing if the row is there, recovering a DELETE that returns the row: whoever changed it sends
//! the notice.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::{PostgresStore, SqliteStore, Store, StoreError, instant, millis};

const FAIL: &str =
    "INSERT INTO notices (schedule, track, outcome, since) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const FAILING: &str = "SELECT schedule, track, outcome, since FROM notices ORDER BY schedule, track";

/// A schedule's track that is failing: (schedule, track, outcome, since).
pub type Failing = (String, String, String, DateTime<Utc>);

const RECOVER: &str = "DELETE FROM notices WHERE schedule = $1 AND track = $2 AND since <= $3 RETURNING outcome, since";

pub trait Notices: Send + Sync {
    /// Every failing track, for copying a history (`migrate-state`).
    fn failing(&self) -> impl Future<Output = Result<Vec<Failing>, StoreError>> + Send;

    /// Marks the schedule's `track` failing since `since` because of `outcome`; `true` if it was not already.
    fn start_failing(
        &self,
        schedule: &str,
        track: &str,
        outcome: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the schedule's `track` recovered by a success at `at`: what it was failing of, and since when, if it
    /// was failing since `at` or before.
    fn recover(
        &self,
        schedule: &str,
        track: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(String, DateTime<Utc>)>, StoreError>> + Send;
}

impl Notices for SqliteStore {
    async fn failing(&self) -> Result<Vec<Failing>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(FAILING)?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, instant(r.get(3)?))))?;
            rows.collect()
        })
        .await
    }

    async fn start_failing(
        &self,
        schedule: &str,
        track: &str,
        outcome: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (schedule, track, outcome) = (schedule.to_string(), track.to_string(), outcome.to_string());
        self.with(move |c| {
            Ok(c.prepare_cached(FAIL)?.execute(rusqlite::params![schedule, track, outcome, millis(since)])? == 1)
        })
        .await
    }

    async fn recover(
        &self,
        schedule: &str,
        track: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        use rusqlite::OptionalExtension;
        let (schedule, track) = (schedule.to_string(), track.to_string());
        let row = self
            .with(move |c| {
                c.prepare_cached(RECOVER)?
                    .query_row(rusqlite::params![schedule, track, millis(at)], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
            })
            .await?;
        Ok(row.map(|(outcome, since)| (outcome, instant(since))))
    }
}

impl Notices for PostgresStore {
    async fn failing(&self) -> Result<Vec<Failing>, StoreError> {
        let rows = self.query(FAILING, &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), instant(r.get(3)))).collect())
    }

    async fn start_failing(
        &self,
        schedule: &str,
        track: &str,
        outcome: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(FAIL, &[&schedule, &track, &outcome, &millis(since)]).await? == 1)
    }

    async fn recover(
        &self,
        schedule: &str,
        track: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let rows = self.query(RECOVER, &[&schedule, &track, &millis(at)]).await?;
        Ok(rows.first().map(|r| (r.get::<_, String>(0), instant(r.get::<_, i64>(1)))))
    }
}

impl Notices for Store {
    async fn failing(&self) -> Result<Vec<Failing>, StoreError> {
        each!(self, s => s.failing())
    }

    async fn start_failing(
        &self,
        schedule: &str,
        track: &str,
        outcome: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.start_failing(schedule, track, outcome, since))
    }

    async fn recover(
        &self,
        schedule: &str,
        track: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        each!(self, s => s.recover(schedule, track, at))
    }
}
