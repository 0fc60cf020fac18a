//! Feeds the Sparkplug B edge node from the running daemon, and hands its commands to the
//! decision thread: a DCMD `threshold` goes the same way as an MQTT `threshold/set` (so it
//! is persisted and echoed on `threshold/state`), a DCMD `acknowledge` like an `alarm/ack`.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::daemon::forward;
use crate::decision::{ThresholdChange, ThresholdRequest};
use crate::pipeline::decide::DecisionInput;
use crate::pipeline::latest::LatestDecisions;
use crate::publish::AlarmAck;
use crate::settings::Settings;
use crate::source::SourceStatus;
use crate::sparkplug::{DeviceValues, SparkplugCommand, SparkplugNode};
use crate::telemetry::{DropReason, Telemetry};
use crate::util::supervise::{Lifetime, Supervisor, TaskHandle};

/// How often the cameras' values are sampled; the node publishes only what changed.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const COMMAND_QUEUE: usize = 32;

/// The running edge node and the tasks around it.
pub(crate) struct Sparkplug {
    pub node: SparkplugNode,
    feeder: TaskHandle,
    commands: TaskHandle,
}

impl Sparkplug {
    /// Stops forwarding commands: the forwarder holds a sender of the decision channel,
    /// which must close for the decision thread to drain.
    pub fn stop_commands(&self) {
        self.commands.abort();
    }

    /// Publishes NDEATH and disconnects.
    pub async fn shutdown(self) {
        self.feeder.abort();
        self.commands.abort();
        self.node.shutdown().await;
    }
}

/// What the feeder samples.
pub(crate) struct Sources {
    pub latest: Arc<LatestDecisions>,
    pub statuses: HashMap<String, watch::Receiver<SourceStatus>>,
    pub telemetry: Arc<Telemetry>,
}

/// Starts the edge node when `[sparkplug]` is configured.
pub(crate) fn start(
    settings: &Settings,
    sources: Sources,
    decide: SyncSender<DecisionInput>,
    supervisor: &Supervisor,
) -> Option<Sparkplug> {
    let sparkplug = settings.sparkplug.clone()?;
    let (values_tx, values_rx) = watch::channel(sample(&sources));
    let (commands_tx, mut commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let node = SparkplugNode::start(sparkplug, values_rx, commands_tx);
    let feeder = supervisor.task("sparkplug:feed", Lifetime::UntilShutdown, async move {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        loop {
            every.tick().await;
            let now = sample(&sources);
            values_tx.send_if_modified(|values| std::mem::replace(values, now.clone()) != now);
        }
    });
    let commands = supervisor.task("sparkplug:commands", Lifetime::UntilShutdown, async move {
        while let Some(command) = commands_rx.recv().await {
            forward(&decide, decision_input(command)).await;
        }
    });
    Some(Sparkplug { node, feeder, commands })
}

fn decision_input(command: SparkplugCommand) -> DecisionInput {
    match command {
        SparkplugCommand::SetThreshold { camera, threshold } => DecisionInput::Threshold(ThresholdRequest {
            camera,
            change: ThresholdChange::Raw(threshold as f32),
            set_by: "sparkplug".into(),
        }),
        SparkplugCommand::Acknowledge { camera } => DecisionInput::Ack(AlarmAck { camera, alarm_id: None }),
    }
}

/// Every camera's current values.
fn sample(s: &Sources) -> BTreeMap<String, DeviceValues> {
    s.statuses
        .iter()
        .map(|(camera, status)| {
            let status = status.borrow().clone();
            let latest = s.latest.get(camera);
            let dropped = DropReason::ALL.iter().map(|r| s.telemetry.frames_dropped(camera, *r)).sum();
            let values = DeviceValues {
                verdict: latest.map_or("none".into(), |l| verdict(l.verdict).into()),
                score: latest.map_or(0.0, |l| f64::from(l.score)),
                threshold: latest.map_or(0.0, |l| f64::from(l.threshold)),
                alarm_active: latest.is_some_and(|l| l.alarm_active),
                fps: (status.fps * 10.0).round() / 10.0,
                frames_dropped: dropped,
                health: format!("{:?}", status.state).to_lowercase(),
            };
            (camera.clone(), values)
        })
        .collect()
}

fn verdict(v: crate::flow::frame::Verdict) -> &'static str {
    match v {
        crate::flow::frame::Verdict::Ok => "OK",
        crate::flow::frame::Verdict::Ng => "NG",
        crate::flow::frame::Verdict::Invalid => "invalid",
    }
}
