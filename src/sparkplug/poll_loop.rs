//! The task that polls the edge node's rumqttc event loop, and does nothing else that could
//! make it wait (the publisher's rule, see `publish/poll_loop.rs`): it reports the connection
//! on a watch, hands incoming commands to the session with `try_send`, keeps the NDEATH will
//! current, and waits with backoff and jitter after errors, because rumqttc retries at once.
//!
//! bdSeq: the will registered with a CONNECT carries that connection's bdSeq, and rumqttc
//! reads `EventLoop::mqtt_options` on every connect, so when a connection that was up is lost,
//! the next bdSeq goes into the options before the next attempt. Attempts that never got a
//! CONNACK do not advance it: the broker kept no will of theirs, so no host can ever see a
//! death with that number.

use std::time::Instant;

use prost::Message;
use rumqttc::{
    ConnectionError, Event, EventLoop, LastWill, Outgoing, Packet, Publish, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::sparkplug::payload::{ndeath, now_ms};
use crate::sparkplug::sequence::BdSeq;
use crate::sparkplug::topics::Topics;
use crate::util::backoff::Backoff;

/// A broker session that is up: which one (for the session's births) and its bdSeq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Connection {
    /// Counts CONNACKs; births are published once per value.
    pub generation: u64,
    pub bd_seq: BdSeq,
}

/// Whether the loop goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Our DISCONNECT went out, or every client handle is gone.
    Stop,
}

pub(crate) struct PollLoop {
    pub eventloop: EventLoop,
    pub topics: Topics,
    /// `None` while disconnected.
    pub connection: watch::Sender<Option<Connection>>,
    /// NCMD and DCMD messages for the session.
    pub inbound: mpsc::Sender<Publish>,
    pub backoff: Backoff,
    /// Hard stop, for shutdown deadlines and a dropped node.
    pub cancel: CancellationToken,
    /// `host:port`, for log lines.
    pub broker: String,
    pub bd_seq: BdSeq,
    pub generation: u64,
    /// When the current connection came up; `None` while disconnected.
    pub connected_at: Option<Instant>,
    /// The last failure logged, so a long outage logs each new kind of failure once.
    pub last_error: Option<String>,
}

impl PollLoop {
    pub async fn run(mut self) {
        self.arm_will();
        loop {
            let polled = tokio::select! {
                () = self.cancel.cancelled() => return,
                polled = self.eventloop.poll() => polled,
            };
            let flow = match polled {
                Ok(event) => self.on_event(event),
                Err(ConnectionError::RequestsDone) => Flow::Stop,
                Err(error) => {
                    self.on_error(&error);
                    Flow::Continue
                }
            };
            if flow == Flow::Stop || !self.wait_before_retry_if_down().await {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => self.on_connected(),
            Event::Incoming(Packet::Publish(publish)) => self.on_command(publish),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                warn!(
                    ncmd = %self.topics.ncmd(),
                    "The broker refused a Sparkplug command subscription (ACL?); NCMD or DCMD will not arrive."
                );
            }
            Event::Outgoing(Outgoing::Disconnect) => return Flow::Stop,
            _ => {}
        }
        Flow::Continue
    }

    fn on_connected(&mut self) {
        self.generation += 1;
        self.connected_at = Some(Instant::now());
        self.last_error = None;
        let bd_seq = self.bd_seq;
        info!(broker = %self.broker, bd_seq = bd_seq.value(), "Sparkplug edge node connected.");
        self.connection.send_replace(Some(Connection { generation: self.generation, bd_seq }));
    }

    /// Commands go to the session; the poll loop must not wait, so a full queue drops them.
    fn on_command(&mut self, publish: Publish) {
        if publish.retain {
            // A retained command would be carried out again on every reconnect.
            warn!(topic = %publish.topic, "Ignored a retained Sparkplug command; commands must not be retained.");
            return;
        }
        match self.inbound.try_send(publish) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(publish)) => {
                warn!(topic = %publish.topic, "Sparkplug commands arrive faster than handled; one was dropped.");
            }
        }
    }

    fn on_error(&mut self, error: &ConnectionError) {
        let text = error.to_string();
        if let Some(since) = self.connected_at.take() {
            if since.elapsed() >= self.backoff.stable_after() {
                self.backoff.reset();
            }
            // This connection's will is spent: the next connection gets the next bdSeq.
            self.bd_seq = self.bd_seq.next();
            self.arm_will();
            self.connection.send_replace(None);
            warn!(broker = %self.broker, error = %text, "Sparkplug connection lost; reconnecting.");
        } else if self.last_error.as_deref() != Some(text.as_str()) {
            warn!(broker = %self.broker, error = %text, "Sparkplug edge node cannot connect; retrying.");
        } else {
            debug!(broker = %self.broker, error = %text, "Sparkplug edge node still cannot connect.");
        }
        self.last_error = Some(text);
    }

    /// Registers this connection's NDEATH (QoS 1, not retained, as Sparkplug says) for the next
    /// CONNECT.
    fn arm_will(&mut self) {
        let payload = ndeath(self.bd_seq, now_ms()).encode_to_vec();
        let will = LastWill::new(self.topics.ndeath(), payload, QoS::AtLeastOnce, false);
        self.eventloop.mqtt_options.set_last_will(will);
    }

    /// Sleeps the backoff delay while disconnected; false when cancelled meanwhile.
    async fn wait_before_retry_if_down(&mut self) -> bool {
        if self.connected_at.is_some() {
            return true;
        }
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = self.cancel.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
        self.discard_stale_requests();
        true
    }

    /// A message the session queued just before it saw the connection drop belongs to the old
    /// session: sent on the new connection ahead of the NBIRTH, it would carry a stale seq.
    /// `clean` moves everything queued to `pending`, which is cleared.
    fn discard_stale_requests(&mut self) {
        self.eventloop.clean();
        self.eventloop.pending.clear();
        // A publish parked on a packet-id collision is not moved by `clean`.
        self.eventloop.state.collision = None;
    }
}

/// A panic here must not pass in silence: nothing polls the connection any more.
impl Drop for PollLoop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(broker = %self.broker, "Sparkplug poll loop panicked; the edge node is offline.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparkplug::payload::{Payload, Value};
    use rumqttc::{ConnAck, ConnectReturnCode, MqttOptions};
    use std::time::Duration;

    fn poll_loop() -> (PollLoop, watch::Receiver<Option<Connection>>) {
        let (connection, watched) = watch::channel(None);
        let (inbound, _) = mpsc::channel(1);
        let poll = PollLoop {
            eventloop: EventLoop::new(MqttOptions::new("test", "127.0.0.1", 1), 8),
            topics: Topics::new("g", "e"),
            connection,
            inbound,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            cancel: CancellationToken::new(),
            broker: "127.0.0.1:1".into(),
            bd_seq: BdSeq::default(),
            generation: 0,
            connected_at: None,
            last_error: None,
        };
        (poll, watched)
    }

    fn will_bd_seq(poll: &PollLoop) -> Option<Value> {
        let will = poll.eventloop.mqtt_options.last_will().expect("a will");
        assert_eq!(
            (will.topic.as_str(), will.qos, will.retain),
            ("spBv1.0/g/NDEATH/e", QoS::AtLeastOnce, false)
        );
        let payload = Payload::decode(will.message).expect("decodes");
        payload.metrics.first().and_then(|m| m.value.clone())
    }

    #[test]
    fn a_lost_connection_arms_the_next_bdseq_and_failed_attempts_do_not() {
        let (mut poll, watched) = poll_loop();
        poll.arm_will();
        assert_eq!(will_bd_seq(&poll), Some(Value::LongValue(0)));
        poll.on_error(&ConnectionError::NetworkTimeout);
        assert_eq!(will_bd_seq(&poll), Some(Value::LongValue(0)), "no CONNACK, no will spent");

        let connack = || Event::Incoming(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)));
        poll.on_event(connack());
        assert_eq!(*watched.borrow(), Some(Connection { generation: 1, bd_seq: BdSeq::default() }));
        poll.on_error(&ConnectionError::NetworkTimeout);
        assert_eq!(*watched.borrow(), None);
        assert_eq!(will_bd_seq(&poll), Some(Value::LongValue(1)));

        poll.on_event(connack());
        let up = watched.borrow().expect("connected");
        assert_eq!((up.generation, up.bd_seq.value()), (2, 1));
    }
}
