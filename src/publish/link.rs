//! What the poll loop tells the publish loop: connection changes and acknowledgements.
//!
//! The poll loop must never wait for the publish loop (rumqttc only makes progress while it is
//! polled), so it does not send into a bounded channel: it updates this state under a short
//! lock and wakes the publish loop. What it records stays bounded: only alarm and offline tags
//! are kept for the publish loop, and it keeps at most one alarm in flight.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{watch, Notify};

use crate::publish::tracker::{Tag, Tracker};

/// State shared by the poll loop, the publish loop and the handles.
#[derive(Debug)]
pub(crate) struct Link {
    state: Mutex<LinkState>,
    /// Wakes the publish loop: acks, losses, (re)connects, and new work from handles.
    wake: Notify,
    /// Whether a broker session is up, for callers (readiness, health) and to drop results early.
    connected: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct LinkState {
    tracker: Tracker,
    connected: bool,
    /// Counts successful connections; the publish loop runs its on-connect work once per value.
    generation: u64,
    session_present: bool,
    /// Alarm and offline tags acknowledged since the publish loop last looked.
    acked: Vec<Tag>,
    /// Alarm and offline tags that went down with a connection since the publish loop last looked.
    lost: Vec<Tag>,
}

/// A consistent snapshot for the publish loop.
#[derive(Debug)]
pub(crate) struct News {
    pub connected: bool,
    pub generation: u64,
    pub session_present: bool,
    pub acked: Vec<Tag>,
    pub lost: Vec<Tag>,
}

impl Link {
    pub fn new() -> Link {
        Link { state: Mutex::default(), wake: Notify::new(), connected: watch::Sender::new(false) }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Poll loop: a CONNACK arrived.
    pub fn on_connected(&self, session_present: bool) {
        let mut state = self.lock();
        state.connected = true;
        state.generation += 1;
        state.session_present = session_present;
        drop(state);
        self.connected.send_replace(true);
        self.wake();
    }

    /// Poll loop: the connection dropped, and `unsent` queued QoS > 0 publishes with it.
    pub fn on_lost(&self, unsent: usize) {
        let mut state = self.lock();
        state.connected = false;
        let lost = state.tracker.connection_lost(unsent);
        state.lost.extend(lost.into_iter().filter(|tag| *tag != Tag::Other));
        drop(state);
        self.connected.send_replace(false);
        self.wake();
    }

    /// Poll loop: `Outgoing::Publish(pkid)`; false when no tag was waiting for it.
    pub fn on_sent(&self, pkid: u16) -> bool {
        self.lock().tracker.sent(pkid)
    }

    /// Poll loop: `Outgoing::AwaitAck(pkid)`.
    pub fn on_collided(&self, pkid: u16) {
        self.lock().tracker.collided(pkid);
    }

    /// Poll loop: `PubAck` or `PubComp`.
    pub fn on_acked(&self, pkid: u16) {
        let mut state = self.lock();
        match state.tracker.acked(pkid) {
            Some(tag @ (Tag::Alarm(_) | Tag::Offline)) => state.acked.push(tag),
            Some(Tag::Other) | None => return,
        }
        drop(state);
        self.wake();
    }

    /// Publish loop: the next QoS > 0 publish is about to be handed to the client.
    pub fn queue(&self, tag: Tag) {
        self.lock().tracker.queued(tag);
    }

    /// Publish loop: the client refused the request just queued.
    pub fn unqueue_last(&self) {
        self.lock().tracker.unqueue_last();
    }

    /// Publish loop: everything that happened since the last call.
    pub fn take_news(&self) -> News {
        let mut state = self.lock();
        News {
            connected: state.connected,
            generation: state.generation,
            session_present: state.session_present,
            acked: std::mem::take(&mut state.acked),
            lost: std::mem::take(&mut state.lost),
        }
    }

    /// The lock is only held for bookkeeping that cannot panic, so a poisoned lock still
    /// holds consistent state.
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
