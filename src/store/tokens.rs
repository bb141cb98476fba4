//! What the daily look at each schedule's trigger token found (see `follow::tokens`), kept for `status` and the
//! page: its expiry, its owner and last use, and what to warn of. The token itself is never stored.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use super::{PostgresStore, SqliteStore, Store, StoreError, instant, millis};

/// What was found of one schedule's trigger token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenNote {
    pub checked_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Owner, last use and expiry, in words.
    pub summary: String,
    /// What to act on, if anything.
    pub warning: Option<String>,
}

const NOTE: &str = "INSERT INTO trigger_tokens (schedule, checked_at, expires_at, summary, warning)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (schedule) DO UPDATE SET checked_at = excluded.checked_at, expires_at = excluded.expires_at,
        summary = excluded.summary, warning = excluded.warning";
const NOTES: &str = "SELECT schedule, checked_at, expires_at, summary, warning FROM trigger_tokens";

type Row = (String, i64, Option<i64>, String, Option<String>);

fn note((schedule, checked_at, expires_at, summary, warning): Row) -> (String, TokenNote) {
    (schedule, TokenNote { checked_at: instant(checked_at), expires_at: expires_at.map(instant), summary, warning })
}

pub trait TokenNotes: Send + Sync {
    fn note_token(&self, schedule: &str, note: &TokenNote) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every schedule's note, by name.
    fn token_notes(&self) -> impl Future<Output = Result<HashMap<String, TokenNote>, StoreError>> + Send;
}

impl TokenNotes for SqliteStore {
    async fn note_token(&self, schedule: &str, note: &TokenNote) -> Result<(), StoreError> {
        let (schedule, note) = (schedule.to_string(), note.clone());
        self.with(move |c| {
            let params = (schedule, millis(note.checked_at), note.expires_at.map(millis), note.summary, note.warning);
            c.prepare_cached(NOTE)?.execute(params).map(drop)
        })
        .await
    }

    async fn token_notes(&self) -> Result<HashMap<String, TokenNote>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(NOTES)?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            rows.map(|row| row.map(note)).collect()
        })
        .await
    }
}

impl TokenNotes for PostgresStore {
    async fn note_token(&self, schedule: &str, note: &TokenNote) -> Result<(), StoreError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&schedule, &millis(note.checked_at), &note.expires_at.map(millis), &note.summary, &note.warning];
        self.execute(NOTE, &params).await.map(drop)
    }

    async fn token_notes(&self) -> Result<HashMap<String, TokenNote>, StoreError> {
        let rows = self.query(NOTES, &[]).await?;
        Ok(rows.iter().map(|r| note((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))).collect())
    }
}

impl TokenNotes for Store {
    async fn note_token(&self, schedule: &str, note: &TokenNote) -> Result<(), StoreError> {
        each!(self, s => s.note_token(schedule, note))
    }

    async fn token_notes(&self) -> Result<HashMap<String, TokenNote>, StoreError> {
        each!(self, s => s.token_notes())
    }
}
