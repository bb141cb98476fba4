//! `overlap: skip | cancel_previous`: what a slot does while the schedule's previous pipeline still runs.
//!
//! The previous pipeline is the schedule's newest one still followed. Its status is the follower's last look,
//! unless that is older than `FRESH` (or there was none yet), when GitLab is asked afresh. A pipeline that is not
//! final is still running: `skip` records the slot `skipped` with its id and sends nothing; `cancel_previous`
//! cancels it, once the slot is sure to be sent, and then triggers. GitLab is given 5 s to answer, and otherwise
//! the last look stands; when the store cannot say, the slot fires: a missed nightly build is worse than two side
//! by side.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::api::{Answer, PipelineApi};
use crate::run::{Pipeline, is_final};
use crate::schedule::{Overlap, Schedule};
use crate::store::Follows;

/// A followed status younger than this is taken as it is; an older one is asked about afresh.
pub const FRESH: Duration = Duration::from_secs(60);

/// How long a slot waits at most for GitLab's fresh answer.
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// What a slot does.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Fire,
    /// Send nothing: this pipeline still runs.
    Skip(Pipeline),
    /// Cancel this pipeline, which still runs, once the slot is sure to be sent; then send it.
    Cancel(Pipeline),
}

/// Decides, at each slot, whether it fires, and cancels: the scheduler asks it, and need not know how.
pub trait SlotGate: Send + Sync {
    fn at_slot<'a>(&'a self, schedule: &'a Schedule) -> BoxFuture<'a, Verdict>;

    fn cancel<'a>(&'a self, schedule: &'a Schedule, running: &'a Pipeline) -> BoxFuture<'a, ()>;
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl<S: Follows + 'static, A: PipelineApi> SlotGate for Overlaps<S, A> {
    fn at_slot<'a>(&'a self, schedule: &'a Schedule) -> BoxFuture<'a, Verdict> {
        Box::pin(Overlaps::at_slot(self, schedule))
    }

    fn cancel<'a>(&'a self, schedule: &'a Schedule, running: &'a Pipeline) -> BoxFuture<'a, ()> {
        Box::pin(Overlaps::cancel(self, schedule, running))
    }
}

/// The overlap rules, with the store and GitLab's API to check them.
pub struct Overlaps<S, A> {
    pub store: Arc<S>,
    pub api: Arc<A>,
}

impl<S: Follows, A: PipelineApi> Overlaps<S, A> {
    /// What the schedule's slot does, by its `overlap`.
    pub async fn at_slot(&self, schedule: &Schedule) -> Verdict {
        let Some(running) = self.running(schedule).await else { return Verdict::Fire };
        match schedule.overlap {
            Overlap::Allow => Verdict::Fire,
            Overlap::Skip => Verdict::Skip(running),
            Overlap::CancelPrevious => Verdict::Cancel(running),
        }
    }

    /// Cancels the previous pipeline; a failure is logged, and the new one is triggered anyway.
    pub async fn cancel(&self, schedule: &Schedule, running: &Pipeline) {
        match self.api.cancel(schedule, running.id).await {
            Ok(()) => tracing::info!(
                schedule = %schedule.name,
                pipeline_id = running.id,
                "cancelled the previous pipeline, which was still running (overlap: cancel_previous)"
            ),
            Err(error) => tracing::warn!(
                schedule = %schedule.name,
                pipeline_id = running.id,
                error,
                "cannot cancel the previous pipeline; triggering the new one beside it"
            ),
        }
    }

    /// The schedule's previous pipeline, if it still runs.
    async fn running(&self, schedule: &Schedule) -> Option<Pipeline> {
        let previous = match self.store.previous_pipeline(&schedule.name).await {
            Ok(previous) => previous?,
            Err(error) => {
                tracing::warn!(schedule = %schedule.name, %error, "cannot read the previous pipeline; firing");
                return None;
            }
        };
        let fresh = previous.polled_at.is_some_and(|at| (Utc::now() - at).to_std().is_ok_and(|age| age < FRESH));
        // GitLab is asked for a few seconds at most (its answer also waits its turn in the host's budget); if it
        // cannot say by then, the last look stands.
        let asked = match fresh {
            true => None,
            false => tokio::time::timeout(ASK_LIMIT, self.api.pipeline(schedule, previous.pipeline)).await.ok(),
        };
        let status = match asked {
            Some(Answer::Pipeline(state)) => state.status,
            _ => previous.status,
        };
        (!is_final(&status)).then(|| Pipeline::created(previous.pipeline, None, &status, previous.web_url))
    }
}
