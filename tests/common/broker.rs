//! Test helpers for the MQTT tests: a private mosquitto per test on a free loopback port, a
//! subscriber that records what arrives, and the payload schema. Each test gets its own
//! broker, directory and node id, so the tests run in parallel.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inspectd::config::{MqttConfig, NodeConfig};
use inspectd::publish::messages::{Region, Verdict};
use inspectd::publish::{AlarmEvent, AlarmMessage, Evidence, ModelRef, ResultMessage};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

/// A directory for one test, removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("inspectd-mqtt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mosquitto process of our own. The Debian package may run a system broker on 1883; tests
/// never touch it.
pub struct Broker {
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Anonymous, in-memory broker on a free port.
    pub fn start(dir: &TestDir) -> Broker {
        Broker::start_with(dir, "persistence false\nallow_anonymous true\n")
    }

    /// With mosquitto.conf lines for persistence, TLS or passwords (`{port}` is replaced by
    /// the port); `listener PORT 127.0.0.1` is added unless `extra` brings its own listener.
    pub fn start_with(dir: &TestDir, extra: &str) -> Broker {
        let port = free_port();
        let listener =
            if extra.contains("listener ") { String::new() } else { format!("listener {port} 127.0.0.1\n") };
        let text = format!(
            "{listener}{}user root\nlog_dest file {}\n",
            extra.replace("{port}", &port.to_string()),
            dir.path("mosquitto.log").display()
        );
        let config = dir.path("mosquitto.conf");
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut broker = Broker { port, config, log: dir.path("mosquitto.log"), child: None };
        broker.run();
        broker
    }

    /// Sends SIGTERM (a persistent broker saves its sessions) and waits for the exit. The
    /// signal is repeated because mosquitto 2.0 misses a SIGTERM that arrives while it is
    /// still starting; SIGKILL is the last resort.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        for _ in 0..20 {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            for _ in 0..10 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The broker's log so far (connects, disconnects, last wills).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The same broker again, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn run(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (Debian package mosquitto)");
        self.child = Some(child);
        wait_for_port(self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "mosquitto did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Publisher settings for a test broker; `node` doubles as a per-test topic namespace.
pub fn configs(port: u16, node: &str, dir: &TestDir) -> (MqttConfig, NodeConfig) {
    let mqtt = MqttConfig { port, keep_alive_s: 5, ..MqttConfig::default() };
    let node = NodeConfig {
        id: node.to_string(),
        state_dir: dir.0.clone(),
        shutdown_deadline_s: 2.0,
        readiness_timeout_s: 2.0,
    };
    (mqtt, node)
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} payload is not JSON: {e}", self.topic))
    }
}

/// A test-side MQTT client subscribed to one filter, recording every message. It resubscribes
/// after reconnects when the broker has no session for it.
pub struct Subscriber {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Clean session; returns once the subscription is acknowledged.
    pub async fn connect(port: u16, filter: &str) -> Subscriber {
        Subscriber::connect_as(port, filter, None).await
    }

    /// With `Some(client_id)`, a persistent session: the broker queues QoS 1 messages for it
    /// while it is disconnected.
    pub async fn connect_as(port: u16, filter: &str, persistent_id: Option<&str>) -> Subscriber {
        // A client id shared by two connections makes the broker kick one, then the other.
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let unique = || format!("test-sub-{port}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let id = persistent_id.map_or_else(unique, str::to_string);
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5)).set_clean_session(persistent_id.is_none());
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        let (sub_client, filter) = (client.clone(), filter.to_string());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                        let _ = sub_client.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Received {
                            topic: p.topic.clone(),
                            retain: p.retain,
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), subscribed_rx.recv())
            .await
            .expect("subscription acknowledged");
        Subscriber { client, rx, task }
    }

    /// The next message matching `pred`, skipping others; panics with `what` after `timeout`.
    pub async fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Received {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(msg)) if pred(&msg) => return msg,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }

    /// Everything that arrives within `window`.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Received> {
        let until = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            out.push(msg);
        }
        out
    }

    /// Publishes as a PLC gateway would.
    pub async fn publish(&self, topic: &str, payload: &[u8]) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).await.expect("queue publish");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Message bodies as the decision stage would build them.
pub fn alarm(i: u64, event: AlarmEvent) -> AlarmMessage {
    AlarmMessage {
        alarm_id: format!("cam1-{i:04}"),
        event,
        seq: 1000 + i,
        score: 7.5,
        threshold: 5.0,
        started_at: "2026-11-28T15:04:08.123Z".into(),
        evidence: Some(Evidence {
            frame: format!("/var/lib/inspectd/evidence/{i}.jpg"),
            heatmap: format!("/var/lib/inspectd/evidence/{i}-heat.jpg"),
        }),
        reason: None,
        regions: Vec::new(),
    }
}

pub fn result(seq: u64) -> ResultMessage {
    ResultMessage {
        seq,
        pts: Some(seq * 40_000_000),
        captured_at: "2026-11-28T15:04:08.100Z".into(),
        scored_at: "2026-11-28T15:04:08.123Z".into(),
        latency_ms: 23.0,
        score: 6.0,
        score_norm: 0.83,
        threshold: 5.0,
        verdict: Verdict::Ng,
        regions: vec![Region { x: 10, y: 20, w: 30, h: 12, peak: 9.5, area: 240 }],
        model: ModelRef { id: "bottle".into(), sha: "9f2c".into() },
        replay: None,
        reason: None,
    }
}

/// A validator for one message of `schema/mqtt.schema.json` (`$defs` name).
pub fn validator(def: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/mqtt.schema.json");
    let mut schema: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("schema file")).expect("schema is JSON");
    schema["$ref"] = Value::String(format!("#/$defs/{def}"));
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Panics with every violation when `instance` does not match the message schema `def`.
pub fn assert_valid(def: &str, instance: &Value) {
    let validator = validator(def);
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{def} payload {instance} violates the schema: {errors:#?}");
}
