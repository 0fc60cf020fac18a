//! The MQTT link's counters and events: results handed over or dropped, alarms delivered or
//! refused, connections, acknowledgements.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::{debug, info, warn};

use super::{Event, Telemetry};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a result message was not handed to the MQTT client. Results never wait: a stale
/// verdict is of no use to a line, and scoring must not slow down for MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultDropReason {
    /// The queue to the MQTT client was full.
    QueueFull,
    /// No broker connection was up.
    Offline,
}

impl ResultDropReason {
    const ALL: [ResultDropReason; 2] = [ResultDropReason::QueueFull, ResultDropReason::Offline];

    fn label(self) -> &'static str {
        match self {
            ResultDropReason::QueueFull => "queue_full",
            ResultDropReason::Offline => "offline",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The MQTT link's counters.
#[derive(Default)]
pub(super) struct MqttCounters {
    results: Counter,
    results_dropped: Family<ReasonLabel, Counter>,
    alarms_delivered: Counter,
    alarms_refused: Counter,
    connects: Counter,
    connection_errors: Counter,
    commands_dropped: Counter,
    commands_invalid: Counter,
    /// Results are being dropped now, per [`ResultDropReason`]: logged once per episode.
    dropping: [AtomicBool; 2],
}

impl Telemetry {
    pub(super) fn register_mqtt(&self, r: &mut Registry) {
        let m = &self.mqtt;
        r.register("mqtt_results", "Results handed to the MQTT client", m.results.clone());
        r.register(
            "mqtt_results_dropped",
            "Results dropped: client queue full or broker offline",
            m.results_dropped.clone(),
        );
        for reason in ResultDropReason::ALL {
            drop(m.results_dropped.get_or_create(&ReasonLabel { reason: reason.label() }));
        }
        r.register("mqtt_alarms_delivered", "Alarms the broker acknowledged", m.alarms_delivered.clone());
        r.register(
            "mqtt_alarms_refused",
            "Alarms refused because the outbox was full",
            m.alarms_refused.clone(),
        );
        r.register("mqtt_connects", "Successful broker connections", m.connects.clone());
        r.register(
            "mqtt_connection_errors",
            "Failed connection attempts and dropped connections",
            m.connection_errors.clone(),
        );
        r.register(
            "mqtt_commands_dropped",
            "Commands (alarm acks, threshold sets) dropped because the decision stage fell behind",
            m.commands_dropped.clone(),
        );
        r.register(
            "mqtt_commands_invalid",
            "Commands (alarm acks, threshold sets) whose payload was unreadable",
            m.commands_invalid.clone(),
        );
    }

    /// The publisher's counters since start.
    pub fn mqtt(&self) -> MqttTotals {
        let m = &self.mqtt;
        let dropped =
            |r: ResultDropReason| m.results_dropped.get_or_create(&ReasonLabel { reason: r.label() }).get();
        MqttTotals {
            results_published: m.results.get(),
            results_dropped_full: dropped(ResultDropReason::QueueFull),
            results_dropped_offline: dropped(ResultDropReason::Offline),
            alarms_delivered: m.alarms_delivered.get(),
            alarms_refused: m.alarms_refused.get(),
            commands_dropped: m.commands_dropped.get(),
            commands_invalid: m.commands_invalid.get(),
            connects: m.connects.get(),
            connection_errors: m.connection_errors.get(),
        }
    }
}

/// The publisher's counters (totals since start), for `PublishHandle::stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MqttTotals {
    pub results_published: u64,
    pub results_dropped_full: u64,
    pub results_dropped_offline: u64,
    pub alarms_delivered: u64,
    pub alarms_refused: u64,
    pub commands_dropped: u64,
    pub commands_invalid: u64,
    pub connects: u64,
    pub connection_errors: u64,
}

/// A result message was not handed to the MQTT client. Counted every time; logged once per
/// episode, which the next result handed over ([`ResultPublished`]) ends.
pub struct ResultDropped {
    pub reason: ResultDropReason,
}

impl Event for ResultDropped {
    fn emit(self, t: &Telemetry) {
        let m = &t.mqtt;
        m.results_dropped.get_or_create(&ReasonLabel { reason: self.reason.label() }).inc();
        if !m.dropping[self.reason.index()].swap(true, Ordering::Relaxed) {
            let why = match self.reason {
                ResultDropReason::QueueFull => "the queue to the MQTT client is full",
                ResultDropReason::Offline => "no broker connection is up",
            };
            warn!(
                "Results are dropped: {why}; alarms still wait in the outbox. Logged once until \
                 results go out again (inspectd_mqtt_results_dropped_total counts every one)."
            );
        }
    }
}

/// A result message was handed to the MQTT client.
pub struct ResultPublished;

impl Event for ResultPublished {
    fn emit(self, t: &Telemetry) {
        let m = &t.mqtt;
        m.results.inc();
        for reason in ResultDropReason::ALL {
            if m.dropping[reason.index()].load(Ordering::Relaxed)
                && m.dropping[reason.index()].swap(false, Ordering::Relaxed)
            {
                info!(reason = reason.label(), "Results go out again.");
            }
        }
    }
}

/// The broker acknowledged an alarm (PUBACK): it is delivered and leaves the outbox.
pub struct AlarmDelivered {
    pub seq: u64,
}

impl Event for AlarmDelivered {
    fn emit(self, t: &Telemetry) {
        debug!(seq = self.seq, "Alarm delivered.");
        t.mqtt.alarms_delivered.inc();
    }
}

/// The outbox refused an alarm because it is full. The outbox logs the episode and the
/// decision stage logs the alarm ([`AlarmNotQueued`]); this counts it.
pub struct AlarmRefused;

impl Event for AlarmRefused {
    fn emit(self, t: &Telemetry) {
        debug!("Alarm refused: the outbox is full.");
        t.mqtt.alarms_refused.inc();
    }
}

/// A broker connection came up.
pub struct MqttConnected<'a> {
    pub broker: &'a str,
    pub session_present: bool,
}

impl Event for MqttConnected<'_> {
    fn emit(self, t: &Telemetry) {
        info!(broker = self.broker, session_present = self.session_present, "MQTT connected.");
        t.mqtt.connects.inc();
    }
}

/// What a failed MQTT connection was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConnectionFailure {
    /// A connection that was up went down after `up_for`.
    Lost { up_for: Duration },
    /// A connection attempt failed with an error not seen just before.
    Failed,
    /// A connection attempt failed again with the same error (logged at debug only).
    FailedAgain,
}

/// A broker connection failed or dropped.
pub struct MqttConnectionError<'a> {
    pub broker: &'a str,
    pub error: &'a str,
    pub failure: ConnectionFailure,
}

impl Event for MqttConnectionError<'_> {
    fn emit(self, t: &Telemetry) {
        let (broker, error) = (self.broker, self.error);
        match self.failure {
            ConnectionFailure::Lost { up_for } => warn!(
                broker,
                error,
                up_s = up_for.as_secs(),
                "MQTT connection lost; alarms are kept in the outbox."
            ),
            ConnectionFailure::Failed => warn!(broker, error, "MQTT connect failed; retrying with backoff."),
            ConnectionFailure::FailedAgain => debug!(broker, error, "MQTT connect failed again."),
        }
        t.mqtt.connection_errors.inc();
    }
}

/// A command (alarm ack, threshold set) the poll loop could not hand on: the decision stage
/// is not reading them.
pub struct CommandDropped<'a> {
    pub camera: &'a str,
    /// `ack` or `threshold`.
    pub kind: &'static str,
}

impl Event for CommandDropped<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(
            camera = self.camera,
            kind = self.kind,
            "Command dropped: the decision stage is not reading commands."
        );
        t.mqtt.commands_dropped.inc();
    }
}

/// A command whose payload could not be read (an unreadable threshold request is also
/// refused on `threshold/state`).
pub struct CommandInvalid<'a> {
    pub topic: &'a str,
    pub reason: &'a dyn Display,
}

impl Event for CommandInvalid<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(topic = self.topic, reason = %self.reason, "Ignored a command with an unreadable payload.");
        t.mqtt.commands_invalid.inc();
    }
}
