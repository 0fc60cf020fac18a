//! A Sparkplug B host application for the edge node tests: a plain rumqttc client subscribed
//! to `spBv1.0/#` that decodes every payload with the edge node's own prost types and records
//! what arrives, in order, for the test to check.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use inspectd::sparkplug::payload::{DataType, Metric, Payload, Value, BD_SEQ};
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

/// How long a test waits for a message it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// One Sparkplug message as the host decoded it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: String,
    pub device: Option<String>,
    pub qos: QoS,
    pub retain: bool,
    pub payload: Payload,
}

impl Msg {
    fn decode(publish: &Publish) -> Msg {
        // spBv1.0/{group}/{kind}/{edge}[/{device}]
        let levels: Vec<&str> = publish.topic.split('/').collect();
        let payload = Payload::decode(publish.payload.as_ref())
            .unwrap_or_else(|e| panic!("{} is not a Sparkplug B payload: {e}", publish.topic));
        Msg {
            kind: levels.get(2).copied().unwrap_or_default().to_string(),
            device: levels.get(4).map(|d| d.to_string()),
            qos: publish.qos,
            retain: publish.retain,
            payload,
        }
    }

    pub fn seq(&self) -> Option<u64> {
        self.payload.seq
    }

    pub fn is(&self, kind: &str, device: Option<&str>) -> bool {
        self.kind == kind && self.device.as_deref() == device
    }

    pub fn metric(&self, name: &str) -> &Metric {
        self.payload
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{} has no metric {name:?}: {:?}", self.kind, self.payload))
    }

    pub fn names(&self) -> Vec<&str> {
        self.payload.metrics.iter().filter_map(|m| m.name.as_deref()).collect()
    }

    pub fn bd_seq(&self) -> u64 {
        let metric = self.metric(BD_SEQ);
        assert_eq!(metric.datatype, Some(DataType::Int64 as u32), "bdSeq is an Int64");
        match metric.value {
            Some(Value::LongValue(v)) => v,
            ref other => panic!("bdSeq value {other:?}"),
        }
    }
}

enum HostEvent {
    Subscribed,
    Message(Msg),
}

/// The host application: records what arrives in order and sends commands.
pub struct Host {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<HostEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Host {
    /// Subscribes to the whole namespace again after every reconnect; returns once subscribed.
    pub async fn connect(port: u16) -> Host {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = format!("test-host-{port}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (tx, events) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.try_subscribe("spBv1.0/#", QoS::AtLeastOnce);
                        continue;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => HostEvent::Subscribed,
                    Ok(Event::Incoming(Packet::Publish(p))) => HostEvent::Message(Msg::decode(&p)),
                    Ok(_) => continue,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tx.send(event);
            }
        });
        let mut host = Host { client, events, task };
        host.subscribed(WAIT).await;
        host
    }

    pub async fn subscribed(&mut self, timeout: Duration) {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(HostEvent::Subscribed)) => return,
                Ok(Some(HostEvent::Message(_))) => {}
                Ok(None) | Err(_) => panic!("host not subscribed within {timeout:?}"),
            }
        }
    }

    /// The next message, whatever it is.
    pub async fn next(&mut self, what: &str) -> Msg {
        self.expect(what, WAIT, |_| true).await
    }

    /// The next message matching `pred`, skipping others.
    pub async fn expect(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(HostEvent::Message(msg))) if pred(&msg) => return msg,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }

    /// Everything that arrives within `window`.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Msg> {
        let until = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(until, self.events.recv()).await {
            if let HostEvent::Message(msg) = event {
                out.push(msg);
            }
        }
        out
    }

    /// A command as a host sends it: QoS 0, not retained.
    pub async fn command(&self, topic: String, metrics: Vec<Metric>) {
        let payload = Payload { timestamp: Some(1), metrics, ..Payload::default() };
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload.encode_to_vec())
            .await
            .expect("queue command");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}
