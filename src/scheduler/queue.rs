//! The due slots, earliest first, with at most one queued slot per schedule.
//!
//! An ordered set gives the earliest slot and lets a reload replace one schedule's slot in O(log n), which a binary
//! heap cannot do without leaving stale entries behind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::schedule::Schedule;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub slot: DateTime<Utc>,
    /// Shared with the schedule: 100,000 queued slots do not copy 100,000 names.
    pub name: Arc<str>,
}

impl Due {
    pub fn new(schedule: &Schedule, slot: DateTime<Utc>) -> Self {
        Due { slot, name: schedule.name.clone() }
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    ordered: BTreeSet<Due>,
    by_name: HashMap<Arc<str>, DateTime<Utc>>,
}

impl Queue {
    /// Queues a slot, replacing the schedule's queued one.
    pub fn push(&mut self, due: Due) {
        self.remove(&due.name);
        self.by_name.insert(due.name.clone(), due.slot);
        self.ordered.insert(due);
    }

    pub fn remove(&mut self, name: &str) {
        if let Some((name, slot)) = self.by_name.remove_entry(name) {
            self.ordered.remove(&Due { slot, name });
        }
    }

    pub fn peek(&self) -> Option<&Due> {
        self.ordered.first()
    }

    pub fn peek_for(&self, name: &str) -> Option<Due> {
        self.by_name.get_key_value(name).map(|(name, slot)| Due { slot: *slot, name: name.clone() })
    }

    /// Takes the earliest slot if it is due at `now`.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<Due> {
        if self.ordered.first()?.slot > now {
            return None;
        }
        let due = self.ordered.pop_first()?;
        self.by_name.remove(&*due.name);
        Some(due)
    }
}
