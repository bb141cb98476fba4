//! Firing a schedule once, now, outside its cron: `pipecron run-now`, and the daemon's admin endpoint.
//!
//! The slot is the moment asked, to the millisecond. It is claimed and moved to `sending` like any other slot, so
//! that the history has it and, if the process dies while sending, a replica records it `unknown` rather than
//! sending it again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::run::{Reason, RunResult};
use crate::schedule::Schedule;
use crate::store::{Replica, RunStore, StoreError};
use crate::trigger::{self, Backoff, Trigger, TriggerRequest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("slot {slot} of '{schedule}' is already claimed; try again")]
    AlreadyClaimed { schedule: String, slot: DateTime<Utc> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the run ended, and whether its ending is this process's to tell.
#[derive(Debug)]
pub struct Done {
    pub result: RunResult,
    /// A replica took the run over while it was sending (this process's lease ran out): the history says
    /// `unknown`, whatever `result` says.
    pub taken_over: bool,
}

/// The moment asked, to the millisecond: the run's slot in the history.
pub fn slot_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Claims `slot` for `replica`, sends `request` with the schedule's retries, and records the ending. `on_retry`
/// hears of each retry.
pub async fn claim_and_fire<S: RunStore, T: Trigger>(
    store: &S,
    replica: &Replica,
    trigger: &T,
    schedule: &Schedule,
    request: &TriggerRequest,
    slot: DateTime<Utc>,
    on_retry: impl FnMut(u32, &str, Duration),
) -> Result<Done, Error> {
    let key = (schedule.name.to_string(), slot);
    if !store.claim(&schedule.name, slot, Reason::RunNow, &replica.id, Utc::now()).await?
        || !store.start_sending(vec![key], &replica.id).await?.first().copied().unwrap_or(false)
    {
        return Err(Error::AlreadyClaimed { schedule: schedule.name.to_string(), slot });
    }
    let result = trigger::fire(trigger, request, schedule.retries, Backoff::default(), on_retry).await;
    // The daemon follows it, if one runs on this state.
    let result = crate::scheduler::follow_if_asked(result, schedule);
    let recorded = store.finish(&schedule.name, slot, &result, &replica.id, Utc::now()).await?;
    Ok(Done { result, taken_over: !recorded })
}

/// Checks a variable given to override a schedule's: a valid name, not one of pipecron's own.
pub fn check_variable(key: &str) -> Result<(), String> {
    if !crate::config::interpolate::is_var_name(key) {
        return Err(format!("'{key}' is not a valid variable name; use letters, digits and _"));
    }
    if key.to_ascii_uppercase().starts_with(crate::config::fields::RESERVED_PREFIX) {
        return Err(format!("'{key}' starts with PIPECRON_, which pipecron reserves for its own variables"));
    }
    Ok(())
}
