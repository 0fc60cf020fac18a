//! A snapshot of the publisher's counters. The counters themselves are `telemetry`'s: each
//! drop policy of the publisher emits an event there, so no message disappears without a trace.

use crate::telemetry::MqttTotals;

impl PublishStats {
    pub(crate) fn new(totals: MqttTotals, outbox_depth: usize) -> PublishStats {
        let MqttTotals {
            results_published,
            results_dropped_full,
            results_dropped_offline,
            alarms_delivered,
            alarms_refused,
            commands_dropped,
            commands_invalid,
            connects,
            connection_errors,
        } = totals;
        PublishStats {
            results_published,
            results_dropped_full,
            results_dropped_offline,
            alarms_delivered,
            alarms_refused,
            outbox_depth,
            commands_dropped,
            commands_invalid,
            connects,
            connection_errors,
        }
    }
}

/// A snapshot of the publisher's counters (totals since start, except `outbox_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishStats {
    /// Results handed to the MQTT client (`inspectd_mqtt_results_total`).
    pub results_published: u64,
    /// Results dropped because the queue to the client was full: scoring never waits for MQTT
    /// (`inspectd_mqtt_results_dropped_total{reason="queue_full"}`).
    pub results_dropped_full: u64,
    /// Results dropped while no broker connection was up: a stale verdict is of no use to a
    /// line (`inspectd_mqtt_results_dropped_total{reason="offline"}`).
    pub results_dropped_offline: u64,
    /// Alarms the broker acknowledged (`inspectd_mqtt_alarms_delivered_total`).
    pub alarms_delivered: u64,
    /// Alarms refused because the outbox was full (`inspectd_mqtt_alarms_refused_total`).
    pub alarms_refused: u64,
    /// Alarms on disk waiting for a PUBACK (`inspectd_mqtt_outbox_alarms`).
    pub outbox_depth: usize,
    /// Commands (acks, threshold sets) dropped because their consumer fell behind.
    pub commands_dropped: u64,
    /// Commands whose payload could not be read.
    pub commands_invalid: u64,
    /// Successful connections (the first one and every reconnect).
    pub connects: u64,
    /// Failed connection attempts and dropped connections.
    pub connection_errors: u64,
}
