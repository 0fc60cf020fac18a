//! [`SparkplugNode`]: starts the edge node's two tasks (poll loop and session) on its own MQTT
//! connection, and stops them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::publish::options::REQUEST_CAPACITY;
use crate::sparkplug::command::SparkplugCommand;
use crate::sparkplug::config::SparkplugSettings;
use crate::sparkplug::device::DeviceValues;
use crate::sparkplug::poll_loop::PollLoop;
use crate::sparkplug::sequence::{BdSeq, Seq};
use crate::sparkplug::session::Session;
use crate::util::backoff::Backoff;

/// First delay after a connection error (as the publisher's).
const INITIAL_DELAY: Duration = Duration::from_millis(250);
/// Longest delay between attempts: how long the node may stay dead to hosts after the broker is back.
const MAX_DELAY: Duration = Duration::from_secs(15);
/// Commands waiting for the session; hosts send a few at a time.
const INBOUND_QUEUE: usize = 32;
/// How long a graceful shutdown waits for NDEATH and DISCONNECT to be written.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running Sparkplug B edge node. Dropping it without [`SparkplugNode::shutdown`] aborts its
/// tasks like a crash would: the connection drops without DISCONNECT and the broker publishes
/// the NDEATH will.
pub struct SparkplugNode {
    stop: CancellationToken,
    tasks: Tasks,
}

impl SparkplugNode {
    /// Starts the session task(s) on the current tokio runtime. Births follow as soon as the
    /// broker accepts the connection; a broker that is down is retried with backoff.
    /// `devices` holds every camera's current values: each change is published by exception.
    /// Commands from hosts go to `commands`, never waited for (a full queue drops them).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn start(
        settings: SparkplugSettings,
        devices: watch::Receiver<BTreeMap<String, DeviceValues>>,
        commands: mpsc::Sender<SparkplugCommand>,
    ) -> SparkplugNode {
        let (client, mut eventloop) = AsyncClient::new(settings.options, REQUEST_CAPACITY);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(settings.connect_timeout_s);
        // Results of frames scored together go out back to back: with Nagle's algorithm the
        // second waited for the broker's delayed ACK, up to 40 ms (bench/daemon-throughput).
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (connection_tx, connection_rx) = watch::channel(None);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (stop, cancel) = (CancellationToken::new(), CancellationToken::new());
        let poll = PollLoop {
            eventloop,
            topics: settings.topics.clone(),
            connection: connection_tx,
            inbound: inbound_tx,
            backoff: Backoff::new(INITIAL_DELAY, MAX_DELAY),
            cancel: cancel.clone(),
            broker: settings.broker,
            bd_seq: BdSeq::default(),
            generation: 0,
            connected_at: None,
            last_error: None,
        };
        let session = Session {
            client,
            topics: settings.topics,
            connection: connection_rx,
            devices,
            devices_open: true,
            inbound: inbound_rx,
            commands,
            stop: stop.clone(),
            seq: Seq::default(),
            live: None,
            announced: BTreeMap::new(),
            refused: BTreeSet::new(),
        };
        let tasks = Tasks {
            poll: Some(tokio::spawn(poll.run())),
            session: Some(tokio::spawn(session.run())),
            cancel,
        };
        SparkplugNode { stop, tasks }
    }

    /// Publishes NDEATH and disconnects (the broker then drops the will), within a couple of
    /// seconds; while disconnected it only stops, the broker having published the will.
    pub async fn shutdown(self) {
        let SparkplugNode { stop, mut tasks } = self;
        stop.cancel();
        let until = Instant::now() + SHUTDOWN_GRACE;
        let disconnected = match tasks.session.take() {
            Some(session) => join_until(session, until, "session").await,
            None => false,
        };
        // After DISCONNECT is written the poll loop ends on its own; without one there is
        // nothing to wait for, and `Tasks::drop` cancels it.
        if let (true, Some(poll)) = (disconnected, tasks.poll.take()) {
            join_until(poll, until, "poll loop").await;
        }
    }
}

/// The two tasks; cancelled and aborted when dropped, so nothing keeps running behind a node.
struct Tasks {
    poll: Option<JoinHandle<()>>,
    /// Ends with whether it sent NDEATH and DISCONNECT.
    session: Option<JoinHandle<bool>>,
    cancel: CancellationToken,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.poll.take() {
            task.abort();
        }
        if let Some(task) = self.session.take() {
            task.abort();
        }
    }
}

/// Awaits a task until `until`, then aborts it; a panic in it is reported, not swallowed.
async fn join_until<T: Default>(mut task: JoinHandle<T>, until: Instant, what: &'static str) -> T {
    match tokio::time::timeout_at(until, &mut task).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            if e.is_panic() {
                warn!(task = what, "Sparkplug task panicked.");
            }
            T::default()
        }
        Err(_) => {
            warn!(task = what, "Sparkplug task did not stop by the shutdown deadline; aborted.");
            task.abort();
            T::default()
        }
    }
}
