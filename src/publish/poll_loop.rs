//! The task that polls rumqttc's event loop, and does nothing else that could make it wait.
//!
//! rumqttc only reads, writes, pings and reconnects while `EventLoop::poll` is being called.
//! So this task never awaits a client call or a bounded channel (style.md, rule 5): it
//! records what happened in the shared [`Link`] and wakes the publish loop, which does the
//! publishing. After a poll error it waits with exponential backoff and jitter before the
//! next attempt, because rumqttc itself retries at once.

use std::sync::Arc;
use std::time::Instant;

use rumqttc::{
    ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, QoS, Request, SubscribeReasonCode,
};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::publish::inbound::{self, Inbound};
use crate::publish::link::Link;
use crate::publish::topics::Topics;
use crate::telemetry::{
    CommandDropped, CommandInvalid, ConnectionFailure, Event as _, MqttConnected, MqttConnectionError,
    Telemetry,
};
use crate::util::backoff::Backoff;

/// Whether the loop goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Our DISCONNECT went out: a graceful shutdown, nothing more to poll.
    Stop,
}

pub(crate) struct PollLoop {
    pub eventloop: EventLoop,
    pub link: Arc<Link>,
    pub topics: Topics,
    pub inbound: mpsc::Sender<Inbound>,
    pub telemetry: Arc<Telemetry>,
    pub backoff: Backoff,
    /// Hard stop for shutdown deadlines and for a dropped publisher.
    pub cancel: CancellationToken,
    /// `host:port` for log lines.
    pub broker: String,
    /// When the current connection came up; `None` while disconnected.
    pub connected_at: Option<Instant>,
    /// The last failure logged, so a long outage logs each new kind of failure once.
    pub last_error: Option<String>,
}

impl PollLoop {
    pub async fn run(mut self) {
        loop {
            let polled = tokio::select! {
                () = self.cancel.cancelled() => return,
                polled = self.eventloop.poll() => polled,
            };
            let flow = match polled {
                Ok(event) => self.on_event(event),
                // Every client handle is gone: the publish loop has ended.
                Err(ConnectionError::RequestsDone) => Flow::Stop,
                Err(error) => self.on_error(&error),
            };
            if flow == Flow::Stop || !self.wait_before_retry_if_down().await {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => self.on_connected(ack.session_present),
            Event::Incoming(Packet::PubAck(ack)) => self.link.on_acked(ack.pkid),
            Event::Incoming(Packet::PubComp(comp)) => self.link.on_acked(comp.pkid),
            Event::Incoming(Packet::Publish(publish)) => self.on_message(&publish),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                warn!(
                    node = %self.topics.node_status(),
                    "The broker refused a command subscription (ACL?): alarm acks or threshold \
                     sets will not arrive."
                );
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 && !self.link.on_sent(pkid) => {
                warn!(
                    pkid,
                    "A QoS 1/2 publish went out unannounced; PUBACK tracking may be off until the next \
                     reconnect."
                );
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => self.link.on_collided(pkid),
            Event::Outgoing(Outgoing::Disconnect) => return Flow::Stop,
            _ => {}
        }
        Flow::Continue
    }

    fn on_connected(&mut self, session_present: bool) {
        self.connected_at = Some(Instant::now());
        self.last_error = None;
        MqttConnected { broker: &self.broker, session_present }.emit(&self.telemetry);
        self.link.on_connected(session_present);
    }

    /// The connection failed or dropped. rumqttc has moved what was in flight and what was
    /// queued into `EventLoop::pending`, which a clean-session reconnect discards; account for
    /// it here so the publish loop knows which alarms to send again.
    fn on_error(&mut self, error: &ConnectionError) -> Flow {
        // Events rumqttc buffered before the failure did happen (a PUBACK read together with
        // the packet that failed); handle them first so their acks are not lost.
        let buffered: Vec<Event> = self.eventloop.state.events.drain(..).collect();
        let flow = buffered.into_iter().fold(Flow::Continue, |flow, event| match self.on_event(event) {
            Flow::Stop => Flow::Stop,
            Flow::Continue => flow,
        });
        let unsent = self.eventloop.pending.iter().filter(|r| is_untracked_publish(r)).count();
        self.eventloop.pending.clear();
        // A publish parked on a packet-id collision is not moved to `pending` by rumqttc and
        // would block every later request on the next connection.
        self.eventloop.state.collision = None;
        self.link.on_lost(unsent);
        self.report_error(error);
        flow
    }

    fn report_error(&mut self, error: &ConnectionError) {
        let text = error.to_string();
        let failure = if let Some(since) = self.connected_at.take() {
            if since.elapsed() >= self.backoff.stable_after() {
                self.backoff.reset();
            }
            ConnectionFailure::Lost { up_for: since.elapsed() }
        } else if self.last_error.as_deref() != Some(text.as_str()) {
            ConnectionFailure::Failed
        } else {
            ConnectionFailure::FailedAgain
        };
        MqttConnectionError { broker: &self.broker, error: &text, failure }.emit(&self.telemetry);
        self.last_error = Some(text);
    }

    /// Sleeps the backoff delay while disconnected; false when cancelled meanwhile.
    async fn wait_before_retry_if_down(&mut self) -> bool {
        if self.connected_at.is_some() {
            return true;
        }
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Commands for the decision stage. The poll loop must not wait, so a full queue drops
    /// the command (counted) instead.
    fn on_message(&mut self, publish: &Publish) {
        let Some((camera, kind)) = self.topics.inbound(&publish.topic) else {
            debug!(topic = %publish.topic, "Ignored a message on a topic the publisher does not handle.");
            return;
        };
        if publish.retain {
            // A retained ack would acknowledge a future alarm on every reconnect, and a
            // retained threshold would undo a later change after every reconnect.
            warn!(
                topic = %publish.topic,
                "Ignored a retained command; commands must be published without retain."
            );
            return;
        }
        match inbound::parse(kind, camera, &publish.payload) {
            Ok(command) => match self.inbound.try_send(command) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    CommandDropped { camera, kind: kind.label() }.emit(&self.telemetry)
                }
            },
            Err(reason) => CommandInvalid { topic: &publish.topic, reason: &reason }.emit(&self.telemetry),
        }
    }
}

/// A panic here must not pass in silence (style.md, rule 4): log it, and show the node as
/// disconnected to readiness and health checks, since nothing polls the connection any more.
impl Drop for PollLoop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(broker = %self.broker, "MQTT poll loop panicked; nothing is published any more.");
            self.link.on_lost(0);
        }
    }
}

/// A QoS 1/2 publish that rumqttc took from its channel but never wrote (no packet id yet).
fn is_untracked_publish(request: &Request) -> bool {
    matches!(request, Request::Publish(p) if p.qos != QoS::AtMostOnce && p.pkid == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::tracker::Tag;
    use rumqttc::MqttOptions;
    use std::time::Duration;

    fn poll_loop(link: Arc<Link>) -> PollLoop {
        let (inbound, _) = mpsc::channel(1);
        PollLoop {
            eventloop: EventLoop::new(MqttOptions::new("test", "127.0.0.1", 1), 8),
            link,
            topics: Topics::new("inspectd", "n").expect("valid"),
            inbound,
            telemetry: Arc::default(),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            cancel: CancellationToken::new(),
            broker: "127.0.0.1:1".into(),
            connected_at: Some(Instant::now()),
            last_error: None,
        }
    }

    fn publish(qos: QoS, pkid: u16) -> Request {
        let mut p = Publish::new("inspectd/n/cam1/alarm", qos, b"{}".to_vec());
        p.pkid = pkid;
        Request::Publish(p)
    }

    #[test]
    fn a_dropped_connection_reports_written_and_drained_alarms_as_lost_and_keeps_later_ones() {
        let link = Arc::new(Link::new());
        let mut poll = poll_loop(link.clone());
        for tag in [Tag::Alarm(1), Tag::Other, Tag::Alarm(2)] {
            link.queue(tag);
        }
        // rumqttc wrote alarm 1 (event still buffered), then the connection failed; `clean()`
        // moved alarm 1 (packet id kept) and the drained QoS 1 status (no id yet) to `pending`.
        // Alarm 2 reached the channel after the drain and waits for the next connection.
        poll.eventloop.state.events.push_back(Event::Outgoing(Outgoing::Publish(1)));
        poll.eventloop.pending.extend([
            publish(QoS::AtLeastOnce, 1),
            publish(QoS::AtLeastOnce, 0),
            publish(QoS::AtMostOnce, 0),
        ]);

        assert_eq!(poll.on_error(&ConnectionError::NetworkTimeout), Flow::Continue);
        assert!(poll.eventloop.pending.is_empty(), "a clean session would discard them anyway");
        let news = link.take_news();
        assert_eq!(news.lost, vec![Tag::Alarm(1)]);
        assert!(!news.connected && !link.is_connected());

        assert!(link.on_sent(7), "alarm 2 goes out on the next connection");
        link.on_acked(7);
        assert_eq!(link.take_news().acked, vec![Tag::Alarm(2)]);
    }

    #[test]
    fn a_puback_read_just_before_the_failure_still_counts() {
        let link = Arc::new(Link::new());
        let mut poll = poll_loop(link.clone());
        link.queue(Tag::Alarm(9));
        assert!(link.on_sent(3));
        poll.eventloop.state.events.push_back(Event::Incoming(Packet::PubAck(rumqttc::PubAck::new(3))));
        poll.on_error(&ConnectionError::NetworkTimeout);
        let news = link.take_news();
        assert_eq!((news.acked, news.lost), (vec![Tag::Alarm(9)], vec![]));
    }
}
