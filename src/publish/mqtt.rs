//! The MQTT publisher: [`MqttPublisher::start`] validates `[mqtt]`, opens the alarm outbox and
//! spawns the two tasks (poll loop, publish loop); [`PublishHandle`] is what the stages call.
//!
//! Overflow policies, per message kind:
//! - results: never wait. Dropped and counted while offline or when the queue to the client
//!   (`RESULT_QUEUE`) is full.
//! - alarms: never dropped once stored. `publish_alarm` returns after the alarm is fsync'd in
//!   the outbox; a full outbox refuses new alarms with an error (see outbox.rs).
//! - camera status and alarm state: one slot per topic, the newest wins (see retained.rs).

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, LastWill, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{MqttConfig, NodeConfig};
use crate::decision::ThresholdState;
use crate::publish::inbound::{Inbound, InboundStream, INBOUND_QUEUE};
use crate::util::backoff::Backoff;
use crate::util::supervise::{Lifetime, Supervisor};

/// First delay after a connection error.
const INITIAL_DELAY: Duration = Duration::from_millis(250);
/// Longest delay between attempts: how long a station may stay offline after the broker is back.
const MAX_DELAY: Duration = Duration::from_secs(15);
use crate::publish::error::PublishError;
use crate::publish::link::Link;
use crate::publish::messages::{
    self, AlarmMessage, AlarmState, CameraStatus, NodeState, NodeStatus, PartMessage, ReadyState,
    ResultMessage, StageFailure,
};
use crate::publish::options::{MqttSettings, MAX_PACKET_BYTES, REQUEST_CAPACITY};
use crate::publish::outbox::{Outbox, OutboxError};
use crate::publish::poll_loop::PollLoop;
use crate::publish::publish_loop::{PublishLoop, ResultRequest};
use crate::publish::retained::RetainedStore;
use crate::publish::stats::PublishStats;
use crate::publish::topics::Topics;
use crate::telemetry::{AlarmRefused, Event, ResultDropReason, ResultDropped, Telemetry};

/// Results waiting for the publish loop: about a second of frames from a few cameras, so a
/// short hiccup is absorbed and a longer one drops instead of building latency.
const RESULT_QUEUE: usize = 256;

/// How long after the shutdown deadline the tasks get to write a DISCONNECT before they are
/// aborted.
const DISCONNECT_GRACE: Duration = Duration::from_millis(500);

/// Owns the publisher's tasks. Dropping it without [`MqttPublisher::shutdown`] aborts them
/// like a crash would: the connection drops and the broker publishes the last will.
pub struct MqttPublisher {
    handle: PublishHandle,
    shutdown: watch::Sender<Option<Instant>>,
    tasks: Tasks,
}

/// The cheap, cloneable side the stages publish through.
#[derive(Clone)]
pub struct PublishHandle {
    shared: Arc<Shared>,
}

struct Shared {
    topics: Topics,
    /// This run's node status payloads; a stage failure replaces the one left at exit.
    statuses: Arc<Mutex<NodeStatuses>>,
    link: Arc<Link>,
    outbox: Arc<Mutex<Outbox>>,
    retained: Arc<RetainedStore>,
    results: mpsc::Sender<ResultRequest>,
    telemetry: Arc<Telemetry>,
}

impl Shared {
    fn poll_loop(
        &self,
        eventloop: EventLoop,
        inbound: mpsc::Sender<Inbound>,
        cancel: CancellationToken,
        broker: String,
    ) -> PollLoop {
        PollLoop {
            eventloop,
            link: self.link.clone(),
            topics: self.topics.clone(),
            inbound,
            telemetry: self.telemetry.clone(),
            backoff: Backoff::new(INITIAL_DELAY, MAX_DELAY),
            cancel,
            broker,
            connected_at: None,
            last_error: None,
        }
    }

    fn publish_loop(
        &self,
        client: AsyncClient,
        results: mpsc::Receiver<ResultRequest>,
        shutdown: watch::Receiver<Option<Instant>>,
        statuses: Arc<Mutex<NodeStatuses>>,
        result_qos: QoS,
    ) -> PublishLoop {
        PublishLoop {
            client,
            link: self.link.clone(),
            outbox: self.outbox.clone(),
            retained: self.retained.clone(),
            results,
            shutdown,
            topics: self.topics.clone(),
            statuses,
            result_qos,
            telemetry: self.telemetry.clone(),
        }
    }
}

impl MqttPublisher {
    /// Starts publishing for this node; must be called within a Tokio runtime. Fails on
    /// configuration errors (topics, credentials, TLS files) and on an unusable outbox
    /// directory; a broker that is down is not an error, the publisher keeps trying.
    pub fn start(
        cfg: &MqttConfig,
        node: &NodeConfig,
        outbox_dir: &Path,
    ) -> Result<(MqttPublisher, InboundStream), PublishError> {
        let settings = MqttSettings::new(cfg, node).map_err(|mut errors| errors.remove(0))?;
        MqttPublisher::start_with(&settings, outbox_dir, None, Arc::default())
    }

    /// [`MqttPublisher::start`] with settings already converted (the daemon's path); with a
    /// supervisor, its two loops are registered as `mqtt-poll` and `mqtt-publish`. Drops,
    /// errors and deliveries are `telemetry` events.
    pub fn start_with(
        settings: &MqttSettings,
        outbox_dir: &Path,
        supervisor: Option<&Supervisor>,
        telemetry: Arc<Telemetry>,
    ) -> Result<(MqttPublisher, InboundStream), PublishError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PublishError::NoRuntime)?;
        let topics = settings.topics.clone();
        let statuses = NodeStatuses::new(&topics)?;
        let will = LastWill::new(topics.node_status(), statuses.offline.clone(), QoS::AtLeastOnce, true);
        let statuses = Arc::new(Mutex::new(statuses));
        let options = settings.options_with_will(will);
        let outbox = Outbox::open(outbox_dir, settings.outbox_max_alarms)?;

        let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            statuses: statuses.clone(),
            topics,
            link: Arc::new(Link::new()),
            outbox: Arc::new(Mutex::new(outbox)),
            retained: Arc::default(),
            results: results_tx,
            telemetry,
        });
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(settings.connect_timeout_s);
        // Results of frames scored together go out back to back: with Nagle's algorithm the
        // second waited for the broker's delayed ACK, up to 40 ms (bench/daemon-throughput).
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);

        let cancel = CancellationToken::new();
        let poll = shared.poll_loop(eventloop, inbound_tx, cancel.clone(), settings.broker.clone());
        let publish = shared.publish_loop(client, results_rx, shutdown_rx, statuses, settings.result_qos);
        let watch = |name| supervisor.map(|s| s.watch(name, Lifetime::UntilShutdown));
        let (poll_watch, publish_watch) = (watch("mqtt-poll"), watch("mqtt-publish"));
        let tasks = Tasks {
            poll: Some(runtime.spawn(async move {
                let _watch = poll_watch;
                poll.run().await
            })),
            publish: Some(runtime.spawn(async move {
                let _watch = publish_watch;
                publish.run().await
            })),
            cancel,
        };
        let publisher = MqttPublisher { handle: PublishHandle { shared }, shutdown: shutdown_tx, tasks };
        Ok((publisher, InboundStream::new(inbound_rx)))
    }

    /// A handle for a stage; it stays usable (and alarms stay durable) after shutdown.
    pub fn handle(&self) -> PublishHandle {
        self.handle.clone()
    }

    /// Graceful stop: publishes the explicit offline status (the broker does not send the last
    /// will after a DISCONNECT), waits up to `deadline` for the outstanding alarms' PUBACKs,
    /// then disconnects. Alarms still in the outbox are sent after the next start.
    pub async fn shutdown(self, deadline: Duration) {
        let MqttPublisher { handle, shutdown, mut tasks } = self;
        let until = Instant::now() + deadline;
        shutdown.send_replace(Some(until));
        let disconnected = match tasks.publish.take() {
            Some(publish) => join_until(publish, until + DISCONNECT_GRACE, "publish loop").await,
            None => false,
        };
        if let Some(mut poll) = tasks.poll.take() {
            // After our DISCONNECT the poll loop ends on its own once it is written. Without
            // one (offline, or the offline status unacknowledged) it is cancelled at once:
            // dropping the connection lets the broker publish the last will.
            let written = disconnected && tokio::time::timeout(DISCONNECT_GRACE, &mut poll).await.is_ok();
            if !written {
                tasks.cancel.cancel();
                join_until(poll, Instant::now() + DISCONNECT_GRACE, "poll loop").await;
            }
        }
        drop(handle);
    }
}

/// The owner can do everything a handle can, plus shutdown.
impl Deref for MqttPublisher {
    type Target = PublishHandle;

    fn deref(&self) -> &PublishHandle {
        &self.handle
    }
}

impl PublishHandle {
    /// Queues a result; never waits. Dropped (and counted) while offline or when the queue is
    /// full. Errors only for an unusable camera id or an oversized payload.
    pub fn publish_result(&self, camera: &str, msg: &ResultMessage) -> Result<(), PublishError> {
        let topic = self.shared.topics.result(camera)?;
        let payload = encode(&topic, msg)?;
        match self.shared.results.try_send(ResultRequest { topic, payload }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                ResultDropped { reason: ResultDropReason::QueueFull }.emit(&self.shared.telemetry);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PublishError::Stopped),
        }
    }

    /// Stores an alarm durably in the outbox and returns its outbox sequence number; it is
    /// published as soon as the broker is reachable. The file write and fsync (about a
    /// millisecond) run on the blocking pool, so the caller's runtime thread does not wait.
    pub async fn publish_alarm(&self, camera: &str, msg: &AlarmMessage) -> Result<u64, PublishError> {
        let (topic, payload) = self.alarm_payload(camera, msg)?;
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.store_alarm(&topic, &payload))
            .await
            .map_err(|_| PublishError::Stopped)?
    }

    /// [`PublishHandle::publish_alarm`] for callers on their own thread (not a runtime
    /// thread): the same durable write, done inline.
    pub fn publish_alarm_blocking(&self, camera: &str, msg: &AlarmMessage) -> Result<u64, PublishError> {
        let (topic, payload) = self.alarm_payload(camera, msg)?;
        self.store_alarm(&topic, &payload)
    }

    /// A camera-health alarm event, stored durably like a defect alarm.
    pub fn publish_health_alarm_blocking(
        &self,
        camera: &str,
        msg: &AlarmMessage,
    ) -> Result<u64, PublishError> {
        let topic = self.shared.topics.health_alarm(camera)?;
        let payload = encode(&topic, msg)?;
        self.store_alarm(&topic, &payload)
    }

    /// Sets the camera's retained status; sent now if connected, and again after reconnects.
    pub fn publish_camera_status(&self, camera: &str, status: &CameraStatus) -> Result<(), PublishError> {
        let topic = self.shared.topics.camera_status(camera)?;
        self.set_retained(topic, status)
    }

    /// Sets the camera's retained alarm state; sent now if connected, and again after reconnects.
    pub fn publish_alarm_state(&self, camera: &str, state: &AlarmState) -> Result<(), PublishError> {
        let topic = self.shared.topics.alarm_state(camera)?;
        self.set_retained(topic, state)
    }

    /// Stores a part result durably in the outbox, like an alarm (a reject gate acts on it),
    /// and returns its outbox sequence number.
    pub async fn publish_part(&self, station: &str, msg: &PartMessage) -> Result<u64, PublishError> {
        let topic = self.shared.topics.part(station)?;
        let payload = encode(&topic, msg)?;
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.store_alarm(&topic, &payload))
            .await
            .map_err(|_| PublishError::Stopped)?
    }

    /// Sets the station's retained ready/busy state.
    pub fn publish_ready(&self, station: &str, state: &ReadyState) -> Result<(), PublishError> {
        let topic = self.shared.topics.ready(station)?;
        self.set_retained(topic, state)
    }

    /// Sets the camera's retained threshold state; sent now if connected, and again after
    /// reconnects.
    pub fn publish_threshold_state(&self, camera: &str, state: &ThresholdState) -> Result<(), PublishError> {
        let topic = self.shared.topics.threshold_state(camera)?;
        self.set_retained(topic, state)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.link.is_connected()
    }

    /// Follows the broker connection, e.g. for readiness (`READY=1` once connected).
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.shared.link.connected()
    }

    /// Alarms on disk waiting for a PUBACK.
    pub fn outbox_depth(&self) -> usize {
        self.lock_outbox().depth()
    }

    pub fn stats(&self) -> PublishStats {
        PublishStats::new(self.shared.telemetry.mqtt(), self.outbox_depth())
    }

    fn alarm_payload(&self, camera: &str, msg: &AlarmMessage) -> Result<(String, Vec<u8>), PublishError> {
        let topic = self.shared.topics.alarm(camera)?;
        let payload = encode(&topic, msg)?;
        Ok((topic, payload))
    }

    fn store_alarm(&self, topic: &str, payload: &[u8]) -> Result<u64, PublishError> {
        let seq = self.lock_outbox().push(topic, payload).inspect_err(|e| {
            if matches!(e, OutboxError::Full { .. }) {
                AlarmRefused.emit(&self.shared.telemetry);
            }
        })?;
        self.shared.link.wake();
        Ok(seq)
    }

    /// A stage failed: the node status says `error` with the stage and reason, now (retained)
    /// and as the status left behind at exit, instead of `offline`.
    pub fn report_failure(&self, stage: &str, reason: &str) -> Result<(), PublishError> {
        let topic = self.shared.topics.node_status();
        let payload = {
            let mut statuses = self.shared.statuses.lock().unwrap_or_else(PoisonError::into_inner);
            let failure = StageFailure { stage: stage.to_string(), reason: reason.to_string() };
            let body = statuses.body(NodeState::Error, Some(failure));
            let payload = encode(&topic, &body)?;
            statuses.offline = payload.clone();
            payload
        };
        self.shared.retained.set(topic, payload);
        self.shared.link.wake();
        Ok(())
    }

    fn set_retained(&self, topic: String, body: &impl Serialize) -> Result<(), PublishError> {
        let payload = encode(&topic, body)?;
        self.shared.retained.set(topic, payload);
        self.shared.link.wake();
        Ok(())
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.shared.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The two tasks; aborted when dropped, so a publisher dropped without shutdown leaves nothing
/// running behind.
struct Tasks {
    poll: Option<JoinHandle<()>>,
    /// Ends with whether it sent DISCONNECT.
    publish: Option<JoinHandle<bool>>,
    cancel: CancellationToken,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.poll.take() {
            task.abort();
        }
        if let Some(task) = self.publish.take() {
            task.abort();
        }
    }
}

/// The node status payloads of this run: online on connect; offline before a graceful
/// disconnect and as the last will (after a stage failure, `error` before the disconnect).
pub(crate) struct NodeStatuses {
    started_at: String,
    pub online: Vec<u8>,
    pub offline: Vec<u8>,
}

impl NodeStatuses {
    fn new(topics: &Topics) -> Result<NodeStatuses, PublishError> {
        let mut statuses = NodeStatuses {
            started_at: crate::util::time::now_rfc3339(),
            online: Vec::new(),
            offline: Vec::new(),
        };
        let topic = topics.node_status();
        statuses.online = encode(&topic, &statuses.body(NodeState::Online, None))?;
        statuses.offline = encode(&topic, &statuses.body(NodeState::Offline, None))?;
        Ok(statuses)
    }

    fn body(&self, state: NodeState, failure: Option<StageFailure>) -> NodeStatus {
        NodeStatus {
            state,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at.clone(),
            failure,
        }
    }
}

/// Serializes with the schema version and refuses what the client could not send.
fn encode(topic: &str, body: &impl Serialize) -> Result<Vec<u8>, PublishError> {
    let payload =
        messages::encode(body).map_err(|source| PublishError::Encode { topic: topic.to_string(), source })?;
    // Fixed header, topic and packet id come on top of the payload.
    let packet = payload.len() + topic.len() + 9;
    if packet > MAX_PACKET_BYTES {
        return Err(PublishError::PayloadTooLarge {
            topic: topic.to_string(),
            bytes: payload.len(),
            max: MAX_PACKET_BYTES,
        });
    }
    Ok(payload)
}

/// Awaits a task until `until`, then aborts it; a panic in it is reported, not swallowed.
/// Returns the task's result, or the default when it did not finish.
async fn join_until<T: Default>(mut task: JoinHandle<T>, until: Instant, what: &'static str) -> T {
    match tokio::time::timeout_at(until, &mut task).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            if e.is_panic() {
                warn!(task = what, "MQTT task panicked.");
            }
            T::default()
        }
        Err(_) => {
            warn!(task = what, "MQTT task did not stop by the shutdown deadline; aborted.");
            task.abort();
            T::default()
        }
    }
}
