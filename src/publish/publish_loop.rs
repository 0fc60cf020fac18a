//! The task that hands messages to the MQTT client: the only task that awaits client calls,
//! and the only one that sends QoS 1/2 publishes, which is what lets the [`Tracker`] match
//! PUBACKs to alarms by order (see tracker.rs).
//!
//! Per round it settles acknowledgements and losses reported by the poll loop, runs the
//! on-connect work once per connection (status, subscription, retained state), publishes
//! changed retained state, and keeps exactly one outbox alarm in flight. One at a time is
//! what keeps alarms in order across a dropped connection: with several in flight, a later
//! alarm still queued in the client could go out before an earlier lost one is sent again.
//! At one PUBACK round trip per alarm that is still hundreds of alarms a second, for events
//! that happen on raise and clear.
//!
//! [`Tracker`]: crate::publish::tracker::Tracker

use std::sync::{Arc, Mutex, PoisonError};

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::publish::inbound::InboundKind;
use crate::publish::link::{Link, News};
use crate::publish::mqtt::NodeStatuses;
use crate::publish::outbox::Outbox;
use crate::publish::retained::RetainedStore;
use crate::publish::topics::Topics;
use crate::publish::tracker::Tag;
use crate::telemetry::{AlarmDelivered, Event, ResultDropReason, ResultDropped, ResultPublished, Telemetry};

/// A result on its way from a handle to the client.
#[derive(Debug)]
pub(crate) struct ResultRequest {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Progress of the explicit offline status during a graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offline {
    NotSent,
    Sent,
    Acked,
}

pub(crate) struct PublishLoop {
    pub client: AsyncClient,
    pub link: Arc<Link>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub retained: Arc<RetainedStore>,
    pub results: mpsc::Receiver<ResultRequest>,
    /// Set once, to the deadline, when a graceful shutdown starts.
    pub shutdown: watch::Receiver<Option<Instant>>,
    pub topics: Topics,
    pub statuses: Arc<Mutex<NodeStatuses>>,
    pub result_qos: QoS,
    pub telemetry: Arc<Telemetry>,
}

/// What the loop tracks between rounds.
struct Progress {
    /// The connection the on-connect work was last done for.
    generation: u64,
    connected: bool,
    alarm_in_flight: Option<u64>,
    offline: Offline,
}

impl PublishLoop {
    /// Publishes until a graceful shutdown completes or reaches its deadline; returns whether
    /// it ended the session with DISCONNECT.
    pub async fn run(mut self) -> bool {
        let mut progress =
            Progress { generation: 0, connected: false, alarm_in_flight: None, offline: Offline::NotSent };
        loop {
            self.round(&mut progress).await;
            let deadline = *self.shutdown.borrow();
            if deadline.is_some() && self.shutdown_complete(&progress) {
                break;
            }
            tokio::select! {
                () = self.link.woken() => {}
                request = self.results.recv(), if deadline.is_none() => {
                    if let Some(request) = request {
                        self.publish_result(request);
                    }
                }
                _ = self.shutdown.changed(), if deadline.is_none() => {}
                () = sleep_until_deadline(deadline), if deadline.is_some() => break,
            }
        }
        self.finish(&progress).await
    }

    /// One pass over everything that may have changed.
    async fn round(&mut self, progress: &mut Progress) {
        let news = self.link.take_news();
        self.settle(&news, progress);
        progress.connected = news.connected;
        if !news.connected {
            return;
        }
        if news.generation != progress.generation {
            progress.generation = news.generation;
            self.on_connect(&news, progress).await;
        }
        self.publish_retained().await;
        if self.shutting_down() && progress.offline == Offline::NotSent {
            self.publish_offline(progress).await;
        }
        self.publish_next_alarm(progress).await;
    }

    /// Applies PUBACKs (alarms leave the outbox) and losses (they will be sent again).
    fn settle(&mut self, news: &News, progress: &mut Progress) {
        for tag in &news.acked {
            match *tag {
                Tag::Alarm(seq) => self.alarm_delivered(seq, progress),
                Tag::Offline => progress.offline = Offline::Acked,
                Tag::Other => {}
            }
        }
        for tag in &news.lost {
            match *tag {
                Tag::Alarm(seq) if progress.alarm_in_flight == Some(seq) => {
                    debug!(seq, "The alarm in flight went down with the connection; it is sent again.");
                    progress.alarm_in_flight = None;
                }
                Tag::Offline if progress.offline == Offline::Sent => progress.offline = Offline::NotSent,
                _ => {}
            }
        }
    }

    fn alarm_delivered(&mut self, seq: u64, progress: &mut Progress) {
        if progress.alarm_in_flight == Some(seq) {
            progress.alarm_in_flight = None;
        }
        AlarmDelivered { seq }.emit(&self.telemetry);
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = outbox.remove(seq) {
            // The broker has it; a stale file only means one duplicate after a restart.
            error!(error = %e, "Cannot remove a delivered alarm from the outbox.");
        }
    }

    /// Status first, so consumers see the node online before anything else; then the command
    /// subscriptions (lost with a clean session) and every retained state (lost by a broker
    /// restarted without persistence).
    async fn on_connect(&mut self, news: &News, progress: &mut Progress) {
        if self.shutting_down() {
            self.publish_offline(progress).await;
        } else {
            let payload = self.statuses.lock().unwrap_or_else(PoisonError::into_inner).online.clone();
            let topic = self.topics.node_status();
            self.send(Tag::Other, topic, QoS::AtLeastOnce, true, payload).await;
        }
        if !news.session_present {
            for kind in InboundKind::ALL {
                let filter = self.topics.inbound_filter(kind);
                if let Err(e) = self.client.subscribe(filter.as_str(), QoS::AtLeastOnce).await {
                    error!(%filter, error = %e, "Cannot subscribe to a command topic.");
                }
            }
        }
        self.retained.mark_all_dirty();
    }

    async fn publish_retained(&mut self) {
        for (topic, payload) in self.retained.take_dirty() {
            self.send(Tag::Other, topic, QoS::AtLeastOnce, true, payload).await;
        }
    }

    async fn publish_offline(&mut self, progress: &mut Progress) {
        let payload = self.statuses.lock().unwrap_or_else(PoisonError::into_inner).offline.clone();
        let topic = self.topics.node_status();
        if self.send(Tag::Offline, topic, QoS::AtLeastOnce, true, payload).await {
            progress.offline = Offline::Sent;
        }
    }

    /// The oldest outbox alarm, unless one is already waiting for its PUBACK.
    async fn publish_next_alarm(&mut self, progress: &mut Progress) {
        if progress.alarm_in_flight.is_some() {
            return;
        }
        let next = self.outbox.lock().unwrap_or_else(PoisonError::into_inner).first().cloned();
        if let Some(entry) = next {
            if self.send(Tag::Alarm(entry.seq), entry.topic, QoS::AtLeastOnce, false, entry.payload).await {
                progress.alarm_in_flight = Some(entry.seq);
            }
        }
    }

    /// Results never wait: offline or a full client queue drops them, counted.
    fn publish_result(&mut self, request: ResultRequest) {
        if !self.link.is_connected() {
            ResultDropped { reason: ResultDropReason::Offline }.emit(&self.telemetry);
            return;
        }
        let tracked = self.result_qos != QoS::AtMostOnce;
        if tracked {
            self.link.queue(Tag::Other);
        }
        match self.client.try_publish(request.topic, self.result_qos, false, request.payload) {
            Ok(()) => ResultPublished.emit(&self.telemetry),
            Err(_) => {
                if tracked {
                    self.link.unqueue_last();
                }
                ResultDropped { reason: ResultDropReason::QueueFull }.emit(&self.telemetry);
            }
        }
    }

    /// Hands one publish to the client, announcing it to the tracker first (QoS > 0 only
    /// here). False when the client refused it, which only happens once it has shut down.
    async fn send(&mut self, tag: Tag, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        self.link.queue(tag);
        match self.client.publish(topic.as_str(), qos, retain, payload).await {
            Ok(()) => true,
            Err(e) => {
                self.link.unqueue_last();
                error!(%topic, error = %e, "The MQTT client refused a publish.");
                false
            }
        }
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.borrow().is_some()
    }

    /// Done when the offline status and every alarm are acknowledged. While disconnected with
    /// nothing left to send, the broker has already published the last will, so waiting for a
    /// connection would only delay the exit.
    fn shutdown_complete(&self, progress: &Progress) -> bool {
        let outbox_empty = self.outbox.lock().unwrap_or_else(PoisonError::into_inner).depth() == 0;
        let nothing_in_flight = progress.alarm_in_flight.is_none() && outbox_empty;
        if progress.connected {
            nothing_in_flight && progress.offline == Offline::Acked
        } else {
            outbox_empty
        }
    }

    /// Sends DISCONNECT once the broker has acknowledged the offline status: after a
    /// DISCONNECT the broker discards the last will, so without that acknowledgement the
    /// connection is dropped instead and the will says offline. Reports what is left behind.
    async fn finish(&mut self, progress: &Progress) -> bool {
        let left = self.outbox.lock().unwrap_or_else(PoisonError::into_inner).depth();
        if left > 0 {
            warn!(
                alarms = left,
                "Alarms not yet acknowledged at shutdown stay in the outbox; they are sent after the next \
                 start."
            );
        }
        let offline_acked = progress.offline == Offline::Acked;
        info!(offline_acknowledged = offline_acked, "MQTT publisher stopped.");
        if !progress.connected {
            return false;
        }
        if !offline_acked {
            warn!(
                "Offline status not acknowledged in time; dropping the connection so the broker \
                 publishes the last will."
            );
            return false;
        }
        match self.client.disconnect().await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "Cannot send MQTT DISCONNECT.");
                false
            }
        }
    }
}

/// Waits for a shutdown deadline (the branch is disabled while there is none).
async fn sleep_until_deadline(deadline: Option<Instant>) {
    tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await;
}

/// A panic here must not pass in silence (style.md, rule 4). Alarms stay safe in the outbox.
impl Drop for PublishLoop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!("MQTT publish loop panicked; alarms stay in the outbox until the next start.");
        }
    }
}
