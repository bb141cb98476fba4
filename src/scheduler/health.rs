//! Whether the store answers, so that an outage is logged once when it starts and once when it ends, not once
//! per slot.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::events::{Event, Events};
use crate::store::StoreError;

#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
    events: Events,
}

impl Health {
    pub fn new(events: Events) -> Health {
        Health { down: AtomicBool::new(false), events }
    }

    /// A call failed. The first failure of an outage is an error in the log; the rest are debug lines. A call the
    /// database answered with an error (a deadlock it broke, say) is no outage: it is a warning of its own.
    pub fn failed(&self, doing: &str, error: &StoreError) {
        if !matches!(error, StoreError::Unreachable { .. }) {
            tracing::warn!(%error, doing, "a call to the state database failed; it is tried again");
            return;
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            self.events.publish(Event::Store { up: false });
            tracing::error!(%error, doing, "the state database is unreachable; no slot is fired until it answers");
        } else {
            tracing::debug!(%error, doing, "the state database is still unreachable");
        }
    }

    /// A call succeeded.
    pub fn ok(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            self.events.publish(Event::Store { up: true });
            tracing::info!("the state database answers again");
        }
    }
}
