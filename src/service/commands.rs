//! Wiring for what arrives over MQTT: acks and thresholds go to the decision thread,
//! triggers to the station task; plus the trigger gates of triggered cameras.

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::daemon::forward;
use crate::config::types::CameraMode;
use crate::flow::trigger::TriggerGate;
use crate::pipeline::decide::DecisionInput;
use crate::publish::{Inbound, InboundStream, PublishHandle};
use crate::settings::Settings;
use crate::source::SourceStatus;
use crate::station::{StationInput, StationTask, STATION_QUEUE};
use crate::util::supervise::{Lifetime, Supervisor, TaskHandle};

/// A gate per triggered camera.
pub(crate) fn gates(settings: &Settings) -> HashMap<String, Arc<TriggerGate>> {
    settings
        .cameras
        .iter()
        .filter(|(_, c)| c.config.mode == CameraMode::Triggered)
        .map(|(id, _)| (id.clone(), TriggerGate::new()))
        .collect()
}

/// The station channel, when there are stations.
pub(crate) fn station_channel(
    settings: &Settings,
) -> (Option<mpsc::Sender<StationInput>>, Option<mpsc::Receiver<StationInput>>) {
    if settings.stations.is_empty() {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(STATION_QUEUE);
    (Some(tx), Some(rx))
}

/// Forwards every command to the stage that applies it, until the publisher stops.
pub(crate) fn forward_commands(
    supervisor: &Supervisor,
    mut commands: InboundStream,
    decide: SyncSender<DecisionInput>,
    stations: Option<mpsc::Sender<StationInput>>,
) -> TaskHandle {
    supervisor.task("commands", Lifetime::UntilShutdown, async move {
        while let Some(command) = commands.recv().await {
            match command {
                Inbound::Ack(ack) => forward(&decide, DecisionInput::Ack(ack)).await,
                Inbound::Threshold(t) => forward(&decide, DecisionInput::Threshold(t)).await,
                Inbound::Trigger(t) => match &stations {
                    Some(tx) => {
                        let _ = tx.send(StationInput::Trigger(t)).await;
                    }
                    None => {
                        warn!(station = %t.station, "Trigger ignored: no camera has mode = \"triggered\".")
                    }
                },
            }
        }
    })
}

/// Starts the station task; it ends when the decision thread and the command forwarder
/// have let go of its channel, after answering any open part.
pub(crate) fn start_stations(
    supervisor: &Supervisor,
    settings: &Settings,
    gates: HashMap<String, Arc<TriggerGate>>,
    statuses: HashMap<String, watch::Receiver<SourceStatus>>,
    publisher: PublishHandle,
    input: Option<mpsc::Receiver<StationInput>>,
) -> Option<TaskHandle> {
    let task = StationTask::new(&settings.stations, gates, statuses, publisher, input?);
    Some(supervisor.task("stations", Lifetime::MayEnd, task.run()))
}
