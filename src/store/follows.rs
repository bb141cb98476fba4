//! The pipelines being followed, as the store keeps them: which are due for a look, and what each look found.
//!
//! `follow_at` is both when a pipeline is next asked about and a lease. Taking a pipeline pushes its `follow_at`
//! ahead by the hold, and a look is written back only while `follow_at` is still the value the taker set. So one
//! replica at a time asks about each pipeline, and the pipelines of a replica that died while asking are taken up
//! again once its hold passes, by any replica, after a restart too.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PostgresStore, SqliteStore, Store, StoreError, instant, lease_millis, millis};
use crate::run::Followed;

/// A pipeline taken to be asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct Follow {
    pub schedule: String,
    pub slot: DateTime<Utc>,
    pub pipeline: u64,
    /// When the trigger that created it was recorded.
    pub triggered: DateTime<Utc>,
    /// How many looks so far.
    pub polls: u32,
    /// The lease: the `follow_at` this taker set.
    held: i64,
}

/// What a look found.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// GitLab's status, when GitLab answered with the pipeline; `None` keeps what was known.
    pub status: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration: Option<u64>,
    pub followed: Followed,
    pub note: Option<String>,
    /// When to look again; `None`: following has ended.
    pub next: Option<DateTime<Utc>>,
    pub polls: u32,
    pub at: DateTime<Utc>,
}

/// A schedule's newest pipeline that is still followed: the one an `overlap` rule asks about.
#[derive(Debug, Clone, PartialEq)]
pub struct Previous {
    pub slot: DateTime<Utc>,
    pub pipeline: u64,
    /// As last seen.
    pub status: String,
    pub web_url: Option<String>,
    /// When GitLab was last asked; `None`: not yet.
    pub polled_at: Option<DateTime<Utc>>,
}

/// Takes the followed pipelines that are due, records what looks found.
pub trait Follows: Send + Sync {
    /// Takes up to `limit` pipelines due at `now`, each held for `hold`: nobody else takes them meanwhile.
    fn take_follows(
        &self,
        now: DateTime<Utc>,
        hold: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Follow>, StoreError>> + Send;

    /// When the next pipeline is due (or held until), if any is followed.
    fn next_follow(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Records a look; `Ok(false)` if the hold had passed and someone else took the pipeline.
    fn record_look(&self, follow: &Follow, look: &Look) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The schedule's newest pipeline still followed, if any.
    fn previous_pipeline(&self, schedule: &str) -> impl Future<Output = Result<Option<Previous>, StoreError>> + Send;
}

pub(super) const PREVIOUS: &str = "SELECT slot, pipeline_id, pipeline_status, web_url, polled_at FROM runs
    WHERE schedule = $1 AND follow_at IS NOT NULL ORDER BY slot DESC LIMIT 1";

/// A row `PREVIOUS` returned: (slot, pipeline, status, web_url, polled_at).
type PreviousRow = (i64, i64, Option<String>, Option<String>, Option<i64>);

fn previous((slot, pipeline, status, web_url, polled_at): PreviousRow) -> Previous {
    Previous {
        slot: instant(slot),
        pipeline: pipeline as u64,
        status: status.unwrap_or_default(),
        web_url,
        polled_at: polled_at.map(instant),
    }
}

pub(super) const NEXT: &str = "SELECT MIN(follow_at) FROM runs WHERE follow_at IS NOT NULL";

/// What both databases run to take due pipelines, but for how they pick the rows.
fn take(pick: &str) -> String {
    format!(
        "UPDATE runs SET follow_at = $1 WHERE (schedule, slot) IN ({pick})
         RETURNING schedule, slot, pipeline_id, COALESCE(finished_at, slot), follow_polls"
    )
}

pub(super) const PICK: &str = "SELECT schedule, slot FROM runs WHERE follow_at <= $2 ORDER BY follow_at LIMIT $3";

const RECORD: &str = "UPDATE runs SET pipeline_status = COALESCE($1, pipeline_status),
        pipeline_finished_at = COALESCE($2, pipeline_finished_at), pipeline_duration = COALESCE($3, pipeline_duration),
        followed = $4, follow_note = $5, follow_at = $6, follow_polls = $7, polled_at = $8
    WHERE schedule = $9 AND slot = $10 AND follow_at = $11";

/// A row `take` returned: (schedule, slot, pipeline, triggered, polls).
type Taken = (String, i64, i64, i64, i64);

fn follow((schedule, slot, pipeline, triggered, polls): Taken, held: i64) -> Follow {
    Follow {
        schedule,
        slot: instant(slot),
        pipeline: pipeline as u64,
        triggered: instant(triggered),
        polls: u32::try_from(polls).unwrap_or(u32::MAX),
        held,
    }
}

fn held_until(now: DateTime<Utc>, hold: Duration) -> i64 {
    millis(now) + lease_millis(hold)
}

impl Follows for SqliteStore {
    async fn take_follows(&self, now: DateTime<Utc>, hold: Duration, limit: usize) -> Result<Vec<Follow>, StoreError> {
        let held = held_until(now, hold);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut statement = c.prepare_cached(&take(PICK))?;
            let rows = statement.query_map(rusqlite::params![held, millis(now), limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.map(|row| row.map(|taken| follow(taken, held))).collect()
        })
        .await
    }

    async fn next_follow(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next = self.with(|c| c.query_row(NEXT, [], |r| r.get::<_, Option<i64>>(0))).await?;
        Ok(next.map(instant))
    }

    async fn record_look(&self, follow: &Follow, look: &Look) -> Result<bool, StoreError> {
        let (follow, look) = (follow.clone(), look.clone());
        self.with(move |c| {
            let mut statement = c.prepare_cached(RECORD)?;
            let changed = statement.execute(rusqlite::params![
                look.status,
                look.finished_at.map(millis),
                look.duration.map(|d| d as i64),
                look.followed.as_str(),
                look.note,
                look.next.map(millis),
                look.polls,
                millis(look.at),
                follow.schedule,
                millis(follow.slot),
                follow.held,
            ])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn previous_pipeline(&self, schedule: &str) -> Result<Option<Previous>, StoreError> {
        let schedule = schedule.to_string();
        let row = self
            .with(move |c| {
                use rusqlite::OptionalExtension;
                let mut statement = c.prepare_cached(PREVIOUS)?;
                statement
                    .query_row([schedule], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                    .optional()
            })
            .await?;
        Ok(row.map(previous))
    }
}

impl Follows for PostgresStore {
    async fn take_follows(&self, now: DateTime<Utc>, hold: Duration, limit: usize) -> Result<Vec<Follow>, StoreError> {
        let held = held_until(now, hold);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Replicas taking at once skip each other's rows rather than wait on them.
        let pick = format!("{PICK} FOR UPDATE SKIP LOCKED");
        let rows = self.query(&take(&pick), &[&held, &millis(now), &limit]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let polls: i32 = r.get(4);
                follow((r.get(0), r.get(1), r.get(2), r.get(3), i64::from(polls)), held)
            })
            .collect())
    }

    async fn next_follow(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self.query(NEXT, &[]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)).map(instant))
    }

    async fn record_look(&self, follow: &Follow, look: &Look) -> Result<bool, StoreError> {
        let changed = self
            .execute(
                RECORD,
                &[
                    &look.status,
                    &look.finished_at.map(millis),
                    &look.duration.map(|d| d as i64),
                    &look.followed.as_str(),
                    &look.note,
                    &look.next.map(millis),
                    &i32::try_from(look.polls).unwrap_or(i32::MAX),
                    &millis(look.at),
                    &follow.schedule,
                    &millis(follow.slot),
                    &follow.held,
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn previous_pipeline(&self, schedule: &str) -> Result<Option<Previous>, StoreError> {
        let rows = self.query(PREVIOUS, &[&schedule]).await?;
        Ok(rows.first().map(|r| previous((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))))
    }
}

impl Follows for Store {
    async fn take_follows(&self, now: DateTime<Utc>, hold: Duration, limit: usize) -> Result<Vec<Follow>, StoreError> {
        each!(self, s => s.take_follows(now, hold, limit))
    }

    async fn next_follow(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        each!(self, s => s.next_follow())
    }

    async fn record_look(&self, follow: &Follow, look: &Look) -> Result<bool, StoreError> {
        each!(self, s => s.record_look(follow, look))
    }

    async fn previous_pipeline(&self, schedule: &str) -> Result<Option<Previous>, StoreError> {
        each!(self, s => s.previous_pipeline(schedule))
    }
}
