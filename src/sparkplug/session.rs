//! The task that publishes the edge node's messages: the only one that awaits client calls.
//!
//! For each connection it subscribes to NCMD and DCMD, then publishes NBIRTH (seq 0) and a
//! DBIRTH per camera. After that each change of the cameras' values is reported by exception:
//! a DDATA with only the metrics that changed, a DBIRTH for a camera that appeared, a DDEATH
//! for one that went. An NCMD rebirth publishes every birth again. While disconnected nothing
//! is published; the births after the reconnect tell hosts everything anew.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use prost::Message;
use rumqttc::{AsyncClient, ClientError, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::sparkplug::command::{device_command, node_command, Ignored, NodeControl, SparkplugCommand};
use crate::sparkplug::device::DeviceValues;
use crate::sparkplug::payload::{self, nbirth, ndeath, now_ms, Metric, Payload};
use crate::sparkplug::poll_loop::Connection;
use crate::sparkplug::sequence::Seq;
use crate::sparkplug::topics::{check_id, Target, Topics};

pub(crate) struct Session {
    pub client: AsyncClient,
    pub topics: Topics,
    pub connection: watch::Receiver<Option<Connection>>,
    pub devices: watch::Receiver<BTreeMap<String, DeviceValues>>,
    /// False once the daemon dropped the sender: the values stay as last seen.
    pub devices_open: bool,
    /// NCMD and DCMD messages from the poll loop.
    pub inbound: mpsc::Receiver<Publish>,
    pub commands: mpsc::Sender<SparkplugCommand>,
    /// Graceful stop: NDEATH, then DISCONNECT.
    pub stop: CancellationToken,
    pub seq: Seq,
    /// The connection being served; `None` while down, or after a call on it failed.
    pub live: Option<Connection>,
    /// What hosts were last told, per device with a DBIRTH: DDATA is the difference to it.
    pub announced: BTreeMap<String, DeviceValues>,
    /// Camera ids already warned about as unusable, so each is logged once.
    pub refused: BTreeSet<String>,
}

impl Session {
    /// Serves connections until stopped; returns whether it sent NDEATH and DISCONNECT.
    pub async fn run(mut self) -> bool {
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                changed = self.connection.changed() => match changed {
                    Ok(()) => self.on_connection().await,
                    // The poll loop is gone: there is no connection to serve any more.
                    Err(_) => return false,
                },
                Some(publish) = self.inbound.recv() => self.on_command(&publish).await,
                changed = self.devices.changed(), if self.devices_open => match changed {
                    Ok(()) => self.report().await,
                    Err(_) => self.devices_open = false,
                },
            }
        }
        self.goodbye().await
    }

    async fn on_connection(&mut self) {
        let now = *self.connection.borrow_and_update();
        match now {
            Some(up) if self.live.map(|l| l.generation) != Some(up.generation) => {
                self.live = Some(up);
                // Clean session: the subscriptions went with the last connection.
                if self.subscribe().await {
                    self.publish_births().await;
                }
            }
            Some(_) => {}
            None => self.live = None,
        }
    }

    async fn subscribe(&mut self) -> bool {
        let filters = [self.topics.ncmd(), self.topics.dcmd_filter()]
            .map(|filter| SubscribeFilter::new(filter, QoS::AtLeastOnce));
        let outcome = self.guarded(self.client.subscribe_many(filters)).await;
        self.settle("the NCMD and DCMD subscriptions", outcome)
    }

    /// NBIRTH with the sequence started over, then a DBIRTH per camera.
    async fn publish_births(&mut self) {
        let Some(live) = self.live else { return };
        let nbirth = nbirth(live.bd_seq, self.seq.restart(), now_ms());
        if !self.send(self.topics.nbirth(), QoS::AtMostOnce, &nbirth).await {
            return;
        }
        self.announced.clear();
        for (id, values) in self.snapshot() {
            if !self.dbirth(id, values).await {
                return;
            }
        }
        info!(bd_seq = live.bd_seq.value(), devices = self.announced.len(), "Sparkplug births published.");
    }

    /// Reports the cameras' new values: DDEATH for the gone, DBIRTH for the new, DDATA for
    /// the changed.
    async fn report(&mut self) {
        let current = self.snapshot();
        if self.live.is_none() {
            return;
        }
        let gone: Vec<String> =
            self.announced.keys().filter(|id| !current.contains_key(*id)).cloned().collect();
        for id in gone {
            if !self.ddeath(id).await {
                return;
            }
        }
        for (id, values) in current {
            let sent = match self.announced.get(&id) {
                None => self.dbirth(id, values).await,
                Some(before) => match values.changed_metrics(before, now_ms()) {
                    changed if changed.is_empty() => true,
                    changed => self.ddata(id, values, changed).await,
                },
            };
            if !sent {
                return;
            }
        }
    }

    async fn dbirth(&mut self, id: String, values: DeviceValues) -> bool {
        let timestamp = now_ms();
        let payload = payload::payload(timestamp, Some(self.seq.take()), values.birth_metrics(timestamp));
        let sent = self.send(self.topics.dbirth(&id), QoS::AtMostOnce, &payload).await;
        if sent {
            self.announced.insert(id, values);
        }
        sent
    }

    async fn ddata(&mut self, id: String, values: DeviceValues, changed: Vec<Metric>) -> bool {
        let payload = payload::payload(now_ms(), Some(self.seq.take()), changed);
        let sent = self.send(self.topics.ddata(&id), QoS::AtMostOnce, &payload).await;
        if sent {
            self.announced.insert(id, values);
        }
        sent
    }

    async fn ddeath(&mut self, id: String) -> bool {
        let payload = payload::payload(now_ms(), Some(self.seq.take()), Vec::new());
        let sent = self.send(self.topics.ddeath(&id), QoS::AtMostOnce, &payload).await;
        if sent {
            self.announced.remove(&id);
        }
        sent
    }

    async fn on_command(&mut self, publish: &Publish) {
        let Some(target) = self.topics.target_of(&publish.topic) else {
            debug!(topic = %publish.topic, "Ignored a message on a topic the edge node does not handle.");
            return;
        };
        let Some(payload) = decode(publish) else { return };
        match target {
            Target::Node => {
                let decoded = node_command(&payload);
                log_ignored("NCMD", None, &decoded.ignored);
                if decoded.wanted.contains(&NodeControl::Rebirth) && self.live.is_some() {
                    info!("A host asked for a rebirth.");
                    self.publish_births().await;
                }
            }
            Target::Device(camera) if !self.announced.contains_key(camera) => {
                warn!(device = camera, "Ignored a DCMD for a device without a DBIRTH on this connection.");
            }
            Target::Device(camera) => {
                let decoded = device_command(camera, &payload);
                log_ignored("DCMD", Some(camera), &decoded.ignored);
                decoded.wanted.into_iter().for_each(|command| self.forward(command));
            }
        }
    }

    /// The daemon's command queue is not waited for: a full one drops the command, logged.
    fn forward(&self, command: SparkplugCommand) {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                warn!(?command, "The daemon is not taking Sparkplug commands; one was dropped.");
            }
            Err(TrySendError::Closed(command)) => debug!(?command, "Nobody takes Sparkplug commands."),
        }
    }

    /// A graceful end: the NDEATH the will would have said, then DISCONNECT (after which the
    /// broker drops the will). While disconnected there is nothing to say: the broker has
    /// published the will already.
    async fn goodbye(&mut self) -> bool {
        let Some(live) = self.live else {
            info!("Sparkplug edge node stopped while disconnected.");
            return false;
        };
        if !self.send(self.topics.ndeath(), QoS::AtLeastOnce, &ndeath(live.bd_seq, now_ms())).await {
            return false;
        }
        let outcome = self.guarded(self.client.disconnect()).await;
        let disconnected = self.settle("DISCONNECT", outcome);
        info!(bd_seq = live.bd_seq.value(), disconnected, "Sparkplug edge node stopped; NDEATH published.");
        disconnected
    }

    async fn send(&mut self, topic: String, qos: QoS, payload: &Payload) -> bool {
        let bytes = payload.encode_to_vec();
        let outcome = self.guarded(self.client.publish(topic.as_str(), qos, false, bytes)).await;
        self.settle(&topic, outcome)
    }

    /// Runs a client call unless the connection being served goes first: rumqttc does not take
    /// requests while reconnecting, and a call waiting for room in its queue would stall the
    /// session until then. `Err(None)`: the connection went.
    fn guarded<'a>(
        &self,
        call: impl Future<Output = Result<(), ClientError>> + 'a,
    ) -> impl Future<Output = Result<(), Option<ClientError>>> + 'a {
        let generation = self.live.map(|l| l.generation);
        let mut connection = self.connection.clone();
        async move {
            if generation.is_none() {
                return Err(None);
            }
            tokio::select! {
                biased;
                _ = connection.wait_for(|c| c.map(|c| c.generation) != generation) => Err(None),
                done = call => done.map_err(Some),
            }
        }
    }

    /// False (and nothing served until the next connection) when the call did not go out.
    fn settle(&mut self, what: &str, outcome: Result<(), Option<ClientError>>) -> bool {
        match outcome {
            Ok(()) => true,
            Err(failure) => {
                if let Some(e) = failure {
                    error!(what, error = %e, "The MQTT client refused a Sparkplug request.");
                }
                self.live = None;
                false
            }
        }
    }

    /// The cameras now, without ids that cannot be a topic level (warned about once each).
    fn snapshot(&mut self) -> BTreeMap<String, DeviceValues> {
        let devices = self.devices.borrow_and_update().clone();
        devices.into_iter().filter(|(id, _)| self.usable(id)).collect()
    }

    fn usable(&mut self, id: &str) -> bool {
        let Err(reason) = check_id(id) else { return true };
        if self.refused.insert(id.to_string()) {
            warn!(device = id, reason, "A camera id cannot be a Sparkplug device id; it is not published.");
        }
        false
    }
}

fn decode(publish: &Publish) -> Option<Payload> {
    Payload::decode(publish.payload.as_ref())
        .inspect_err(|e| {
            warn!(
                topic = %publish.topic,
                error = %e,
                "Ignored a Sparkplug command that is not a Sparkplug B payload."
            );
        })
        .ok()
}

fn log_ignored(kind: &str, device: Option<&str>, ignored: &[Ignored]) {
    for Ignored { metric, reason } in ignored {
        warn!(kind, device, metric = %metric, reason, "Ignored a Sparkplug command metric.");
    }
}
