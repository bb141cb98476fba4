//! Whether the store answers, so that an outage is logged once when it starts and once when it ends, not once
//! per slot.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::StoreError;

#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
}

impl Health {
    /// A call failed. The first failure of an outage is an error in the log; the rest are debug lines.
    pub fn failed(&self, doing: &str, error: &StoreError) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, doing, "the state database is unreachable; no slot is fired until it answers");
        } else {
            tracing::debug!(%error, doing, "the state database is still unreachable");
        }
    }

    /// A call succeeded.
    pub fn ok(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("the state database answers again");
        }
    }
}
