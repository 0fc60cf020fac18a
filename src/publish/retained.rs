//! The latest retained state per topic (camera status, alarm state), waiting to be published.
//!
//! State is a "latest value" thing, so it is kept as one slot per topic instead of a queue:
//! a burst of updates collapses into the newest, nothing is ever dropped for lack of room,
//! and the memory is one payload per camera and kind. The slots are also what the publisher
//! sends again after every reconnect: a broker restarted without persistence has forgotten
//! its retained messages, and a PLC gateway must still find the current alarm state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    inner: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    latest: BTreeMap<String, Vec<u8>>,
    /// Topics whose latest payload has not been handed to the client yet.
    dirty: BTreeSet<String>,
}

impl RetainedStore {
    /// Replaces the topic's state; it goes out with the next publish round.
    pub fn set(&self, topic: String, payload: Vec<u8>) {
        let mut slots = self.lock();
        slots.dirty.insert(topic.clone());
        slots.latest.insert(topic, payload);
    }

    /// Marks every known state for publishing again (after a reconnect).
    pub fn mark_all_dirty(&self) {
        let mut slots = self.lock();
        let topics: Vec<String> = slots.latest.keys().cloned().collect();
        slots.dirty.extend(topics);
    }

    /// Takes the states to publish now.
    pub fn take_dirty(&self) -> Vec<(String, Vec<u8>)> {
        let mut slots = self.lock();
        let dirty = std::mem::take(&mut slots.dirty);
        dirty.into_iter().filter_map(|t| slots.latest.get(&t).map(|p| (t.clone(), p.clone()))).collect()
    }

    /// Bookkeeping only under the lock, so a poisoned lock still holds consistent slots.
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_collapse_to_the_latest_and_reconnects_resend_everything() {
        let store = RetainedStore::default();
        store.set("a".into(), b"1".to_vec());
        store.set("a".into(), b"2".to_vec());
        store.set("b".into(), b"x".to_vec());
        assert_eq!(store.take_dirty(), vec![("a".into(), b"2".to_vec()), ("b".into(), b"x".to_vec())]);
        assert!(store.take_dirty().is_empty());
        store.mark_all_dirty();
        assert_eq!(store.take_dirty().len(), 2);
    }
}
