//! Bounded edges between stages with an explicit overflow policy (style.md: no unbounded
//! channel on a data path).
//!
//! - [`Overflow::DropOldest`]: live cameras. A new frame replaces the oldest waiting one, and
//!   the push says so (the caller emits the telemetry event), so the scorer always works on
//!   the freshest frames.
//! - [`Overflow::Block`]: files and replay. The producer waits; nothing is lost.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What happens when the edge is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropOldest,
    Block,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// Wakes one consumer that reads several edges (the batcher of a model shared by cameras).
#[derive(Debug, Default)]
pub struct Signal {
    pending: Mutex<u64>,
    ready: Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.pending.lock().expect("signal lock") += 1;
        self.ready.notify_all();
    }

    /// Waits until some edge received an item (or was closed) since the last wait, or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().expect("signal lock");
        let (mut pending, _) =
            self.ready.wait_timeout_while(guard, timeout, |p| *p == 0).expect("signal lock");
        *pending = 0;
    }
}

struct Inner<T> {
    signal: Option<Arc<Signal>>,
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    policy: Overflow,
}

/// Producer side. Cloning gives another producer; the edge closes when all are dropped or
/// [`EdgeSender::close`] is called.
pub struct EdgeSender<T> {
    inner: Arc<Inner<T>>,
    _producer: Arc<ProducerToken<T>>,
}

/// Closes the edge when the last producer goes away.
struct ProducerToken<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Drop for ProducerToken<T> {
    fn drop(&mut self) {
        close(&self.inner);
    }
}

fn close<T>(inner: &Inner<T>) {
    inner.state.lock().expect("edge lock").closed = true;
    inner.not_empty.notify_all();
    inner.not_full.notify_all();
    if let Some(s) = &inner.signal {
        s.notify();
    }
}

impl<T> Clone for EdgeSender<T> {
    fn clone(&self) -> Self {
        EdgeSender { inner: self.inner.clone(), _producer: self._producer.clone() }
    }
}

/// Consumer side.
pub struct EdgeReceiver<T> {
    inner: Arc<Inner<T>>,
}

/// Result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the oldest waiting item.
    DroppedOldest,
    /// The consumer is gone; the item was discarded.
    Closed,
}

/// A bounded edge of `capacity` items (at least 1).
pub fn edge<T>(capacity: usize, policy: Overflow) -> (EdgeSender<T>, EdgeReceiver<T>) {
    edge_with_signal(capacity, policy, None)
}

/// A bounded edge that also notifies `signal` on every push and on close.
pub fn edge_with_signal<T>(
    capacity: usize,
    policy: Overflow,
    signal: Option<Arc<Signal>>,
) -> (EdgeSender<T>, EdgeReceiver<T>) {
    let inner = Arc::new(Inner {
        signal,
        state: Mutex::new(State { items: VecDeque::with_capacity(capacity.max(1)), closed: false }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity: capacity.max(1),
        policy,
    });
    let token = Arc::new(ProducerToken { inner: inner.clone() });
    (EdgeSender { inner: inner.clone(), _producer: token }, EdgeReceiver { inner })
}

impl<T> EdgeSender<T> {
    /// Pushes an item, applying the overflow policy. Blocking policy waits here (call it from a
    /// thread that may block, never from GStreamer's streaming thread with `Block` on a live source).
    pub fn push(&self, item: T) -> Pushed {
        let mut st = self.inner.state.lock().expect("edge lock");
        let mut outcome = Pushed::Queued;
        while st.items.len() >= self.inner.capacity && !st.closed {
            match self.inner.policy {
                Overflow::DropOldest => {
                    st.items.pop_front();
                    outcome = Pushed::DroppedOldest;
                }
                Overflow::Block => st = self.inner.not_full.wait(st).expect("edge lock"),
            }
        }
        if st.closed {
            return Pushed::Closed;
        }
        st.items.push_back(item);
        drop(st);
        self.inner.not_empty.notify_one();
        if let Some(s) = &self.inner.signal {
            s.notify();
        }
        outcome
    }

    /// Closes the edge for everyone: the consumer drains what is queued, then sees the end.
    pub fn close(&self) {
        close(&self.inner);
    }
}

impl<T> EdgeReceiver<T> {
    /// Waits up to `timeout` for an item. `Err(())` once the edge is closed and drained.
    #[allow(clippy::result_unit_err)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<T>, ()> {
        let st = self.inner.state.lock().expect("edge lock");
        let (mut st, _) = self
            .inner
            .not_empty
            .wait_timeout_while(st, timeout, |s| s.items.is_empty() && !s.closed)
            .expect("edge lock");
        match st.items.pop_front() {
            Some(item) => {
                self.inner.not_full.notify_one();
                Ok(Some(item))
            }
            None if st.closed => Err(()),
            None => Ok(None),
        }
    }

    /// Takes an item if one is waiting: `Ok(None)` when empty, `Err(())` once closed and drained.
    #[allow(clippy::result_unit_err)]
    pub fn try_recv(&self) -> Result<Option<T>, ()> {
        self.recv_timeout(Duration::ZERO)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.inner.state.lock().expect("edge lock").items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for EdgeReceiver<T> {
    fn drop(&mut self) {
        close(&self.inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_oldest_keeps_the_newest_and_says_so() {
        let (tx, rx) = edge(2, Overflow::DropOldest);
        assert_eq!(tx.push(1), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::DroppedOldest);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(Some(2)));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(Some(3)));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(None));
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(()));
    }

    #[test]
    fn block_waits_for_room_and_loses_nothing() {
        let (tx, rx) = edge(1, Overflow::Block);
        let producer = std::thread::spawn(move || {
            for i in 0..100 {
                assert_eq!(tx.push(i), Pushed::Queued);
            }
        });
        let mut got = Vec::new();
        while let Ok(item) = rx.recv_timeout(Duration::from_secs(5)) {
            got.extend(item);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn closing_drains_then_ends_and_a_gone_consumer_is_reported() {
        let (tx, rx) = edge(4, Overflow::Block);
        tx.push("a");
        tx.close();
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(Some("a")));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(()));
        let (tx, rx) = edge::<u8>(1, Overflow::Block);
        drop(rx);
        assert_eq!(tx.push(1), Pushed::Closed);
    }
}
