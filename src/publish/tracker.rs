//! Maps the broker's PUBACKs back to what was published, so an outbox alarm is removed only
//! when *its* PUBACK arrives.
//!
//! rumqttc assigns packet ids inside its event loop and reports them only as events:
//! `Outgoing::Publish(pkid)` when a QoS > 0 publish is written (or `Outgoing::AwaitAck(pkid)`
//! when its id is still taken, followed by `Outgoing::Publish(pkid)` once freed), then
//! `Incoming::PubAck(pkid)` (`PubComp` for QoS 2). Requests leave the client's channel in
//! FIFO order, so when a single task hands every QoS > 0 publish to the client and records a
//! [`Tag`] just before, the n-th publish event belongs to the n-th tag. QoS 0 publishes carry
//! packet id 0 and need no tag.
//!
//! When the connection drops, rumqttc moves unacknowledged publishes and the requests still in
//! its channel into `EventLoop::pending`, which it discards on a clean-session reconnect. The
//! caller counts the never-sent ones there and passes the count to
//! [`Tracker::connection_lost`], which returns the tags that will never be acknowledged.

use std::collections::{HashMap, VecDeque};

/// What a QoS > 0 publish was, as far as the publisher needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// An outbox alarm, by outbox sequence number.
    Alarm(u64),
    /// The explicit offline status of a graceful shutdown.
    Offline,
    /// Statuses and QoS > 0 results: tracked only to keep the tags aligned with packet ids.
    Other,
}

/// Tags of publishes on their way: queued in the client, written and awaiting a PUBACK, or
/// parked by rumqttc on a packet-id collision.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    queued: VecDeque<Tag>,
    inflight: HashMap<u16, Tag>,
    collided: Option<(u16, Tag)>,
}

impl Tracker {
    /// Records the next QoS > 0 publish, just before it is handed to the client.
    pub fn queued(&mut self, tag: Tag) {
        self.queued.push_back(tag);
    }

    /// Takes back the last [`Tracker::queued`] tag when the client refused the request.
    pub fn unqueue_last(&mut self) {
        self.queued.pop_back();
    }

    /// `Outgoing::Publish(pkid)` with `pkid > 0`. Returns false when no tag was waiting,
    /// which means something other than the publisher sent a QoS > 0 message.
    pub fn sent(&mut self, pkid: u16) -> bool {
        if let Some((id, tag)) = self.collided {
            if id == pkid {
                // A parked publish went out once its packet id was freed.
                self.collided = None;
                self.inflight.insert(pkid, tag);
                return true;
            }
        }
        match self.queued.pop_front() {
            Some(tag) => {
                self.inflight.insert(pkid, tag);
                true
            }
            None => false,
        }
    }

    /// `Outgoing::AwaitAck(pkid)`: rumqttc parked the next publish until `pkid` is acknowledged.
    pub fn collided(&mut self, pkid: u16) {
        if let Some(tag) = self.queued.pop_front() {
            self.collided = Some((pkid, tag));
        }
    }

    /// `Incoming::PubAck(pkid)` or `Incoming::PubComp(pkid)`: the publish is with the broker.
    pub fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.inflight.remove(&pkid)
    }

    /// The connection dropped and the oldest `unsent` queued publishes were discarded with it.
    /// Returns every tag that will not be acknowledged; later queued tags stay, because their
    /// requests entered the client after the drop and will be sent on the next connection.
    pub fn connection_lost(&mut self, unsent: usize) -> Vec<Tag> {
        let mut lost: Vec<Tag> = self.inflight.drain().map(|(_, tag)| tag).collect();
        lost.extend(self.collided.take().map(|(_, tag)| tag));
        let unsent = unsent.min(self.queued.len());
        lost.extend(self.queued.drain(..unsent));
        lost
    }

    /// Publishes handed to the client and not yet acknowledged or lost.
    #[cfg(test)]
    pub fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.len() + usize::from(self.collided.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_map_to_the_publish_that_got_the_packet_id() {
        let mut t = Tracker::default();
        t.queued(Tag::Other);
        t.queued(Tag::Alarm(7));
        t.queued(Tag::Alarm(8));
        assert!(t.sent(1));
        assert!(t.sent(2));
        assert!(t.sent(3));
        // The broker may acknowledge in any order.
        assert_eq!(t.acked(3), Some(Tag::Alarm(8)));
        assert_eq!(t.acked(1), Some(Tag::Other));
        assert_eq!(t.acked(2), Some(Tag::Alarm(7)));
        assert_eq!(t.acked(2), None, "a duplicate PUBACK maps to nothing");
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_publish_nobody_tagged_is_reported() {
        let mut t = Tracker::default();
        assert!(!t.sent(5));
        assert_eq!(t.acked(5), None);
    }

    #[test]
    fn a_parked_publish_keeps_its_tag_until_it_goes_out() {
        let mut t = Tracker::default();
        t.queued(Tag::Other);
        t.queued(Tag::Alarm(1));
        assert!(t.sent(4));
        t.collided(4); // Alarm(1) waits for packet id 4 to be freed.
        assert_eq!(t.acked(4), Some(Tag::Other));
        assert!(t.sent(4));
        assert_eq!(t.acked(4), Some(Tag::Alarm(1)));
    }

    #[test]
    fn a_dropped_connection_loses_inflight_parked_and_drained_publishes_only() {
        let mut t = Tracker::default();
        t.queued(Tag::Alarm(1));
        t.queued(Tag::Other);
        t.queued(Tag::Alarm(2));
        t.queued(Tag::Alarm(3));
        t.queued(Tag::Offline);
        assert!(t.sent(1));
        t.collided(1);
        // Two requests were drained from the client's channel; the last one arrived after the
        // drop and is still queued for the next connection.
        let mut lost = t.connection_lost(2);
        lost.sort_by_key(|tag| format!("{tag:?}"));
        assert_eq!(lost, vec![Tag::Alarm(1), Tag::Alarm(2), Tag::Alarm(3), Tag::Other]);
        assert_eq!(t.outstanding(), 1);
        assert!(t.sent(1));
        assert_eq!(t.acked(1), Some(Tag::Offline));
    }

    #[test]
    fn a_refused_request_gives_its_tag_back() {
        let mut t = Tracker::default();
        t.queued(Tag::Alarm(1));
        t.queued(Tag::Other);
        t.unqueue_last();
        assert!(t.sent(9));
        assert_eq!(t.acked(9), Some(Tag::Alarm(1)));
        assert_eq!(t.outstanding(), 0);
    }
}
