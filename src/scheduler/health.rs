//! Whether the store answers and takes writes, so that an outage (the database away, or its disk full) is logged
//! once when it starts and once when it ends, not once per slot, and published for the metrics and `/readyz`.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::events::{Event, Events};
use crate::store::StoreError;

const UP: u8 = 0;
const UNREACHABLE: u8 = 1;
const UNWRITABLE: u8 = 2;

#[derive(Debug, Default)]
pub struct Health {
    /// UP, or the kind of outage under way.
    down: AtomicU8,
    events: Events,
}

impl Health {
    pub fn new(events: Events) -> Health {
        Health { down: AtomicU8::new(UP), events }
    }

    /// A call failed. The first failure of an outage is an error in the log; the rest are debug lines. A call the
    /// database answered with an error (a deadlock it broke, say) is no outage: it is a warning of its own.
    pub fn failed(&self, doing: &str, error: &StoreError) {
        let kind = match error {
            StoreError::Unreachable { .. } => UNREACHABLE,
            StoreError::Unwritable(_) => UNWRITABLE,
            _ => return tracing::warn!(%error, doing, "a call to the state database failed; it is tried again"),
        };
        if self.down.swap(kind, Ordering::Relaxed) == kind {
            return tracing::debug!(%error, doing, "the state database still fails");
        }
        self.events.publish(Event::Store { up: false, reason: Some(&error.to_string()) });
        match kind {
            UNREACHABLE => {
                tracing::error!(%error, doing, "the state database is unreachable; no slot is fired until it answers")
            }
            _ => tracing::error!(
                %error,
                doing,
                "the state database cannot be written; a lone replica fires on and records the runs once it can, \
                 while with several no slot is fired until it can"
            ),
        }
    }

    /// A call succeeded.
    pub fn ok(&self) {
        match self.down.swap(UP, Ordering::Relaxed) {
            UP => return,
            UNREACHABLE => tracing::info!("the state database answers again"),
            _ => tracing::info!("the state database can be written again"),
        }
        self.events.publish(Event::Store { up: true, reason: None });
    }
}
