//! The MQTT contract (design.md §3) against a real mosquitto: topics, retain flags, payload
//! schema, the node status lifecycle (online, explicit offline, last will) and alarm acks.

#[path = "common/broker.rs"]
mod broker;

use std::collections::HashMap;
use std::time::Duration;

use broker::{alarm, assert_valid, configs, result, Broker, Received, Subscriber, TestDir};
use inspectd::decision::{ThresholdChange, ThresholdRequest};
use inspectd::publish::{
    messages, AlarmAck, AlarmEvent, AlarmState, CameraState, CameraStatus, Inbound, MqttPublisher,
};

const WAIT: Duration = Duration::from_secs(5);

fn camera_status() -> CameraStatus {
    CameraStatus {
        state: CameraState::Streaming,
        fps: 24.8,
        frames_dropped: 3,
        last_frame_at: Some("2026-11-28T15:04:08.100Z".into()),
        last_scored_at: None,
        model: Some("bottle".into()),
        reason: None,
    }
}

fn alarm_state() -> AlarmState {
    AlarmState {
        active: true,
        alarm_id: Some("cam1-0001".into()),
        since: Some("2026-11-28T15:04:08.123Z".into()),
        latched: false,
        acknowledged: false,
    }
}

async fn wait_connected(publisher: &MqttPublisher) {
    let mut connected = publisher.connected();
    tokio::time::timeout(WAIT, connected.wait_for(|up| *up))
        .await
        .expect("connects in time")
        .expect("publisher alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_kind_arrives_on_its_topic_and_matches_the_schema() {
    let dir = TestDir::new("contract");
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/contract/#").await;
    let (mqtt, node) = configs(broker.port, "contract", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");

    let online = sub.expect("online status", WAIT, |m| m.topic == "inspectd/contract/status").await;
    assert_valid("node_status", &online.json());
    assert_eq!(online.json()["state"], "online");

    publisher.publish_camera_status("cam1", &camera_status()).expect("status");
    publisher.publish_alarm_state("cam1", &alarm_state()).expect("alarm state");
    wait_connected(&publisher).await;
    publisher.publish_result("cam1", &result(41)).expect("result");
    publisher.publish_alarm("cam1", &alarm(1, AlarmEvent::Raised)).await.expect("alarm stored");

    let mut expected: HashMap<&str, &str> = HashMap::from([
        ("inspectd/contract/cam1/status", "camera_status"),
        ("inspectd/contract/cam1/alarm/state", "alarm_state"),
        ("inspectd/contract/cam1/result", "result"),
        ("inspectd/contract/cam1/alarm", "alarm"),
    ]);
    while !expected.is_empty() {
        let msg = sub.expect(&format!("messages on {:?}", expected.keys()), WAIT, |_| true).await;
        if let Some(def) = expected.remove(msg.topic.as_str()) {
            assert_valid(def, &msg.json());
            assert_eq!(msg.json()["v"], 1, "{}", msg.topic);
        }
    }

    // A late subscriber (a PLC gateway that reconnects) finds exactly the retained topics.
    let mut late = Subscriber::connect(broker.port, "inspectd/contract/#").await;
    let retained = late.drain_for(Duration::from_millis(400)).await;
    let mut topics: Vec<&str> = retained.iter().filter(|m| m.retain).map(|m| m.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(
        topics,
        ["inspectd/contract/cam1/alarm/state", "inspectd/contract/cam1/status", "inspectd/contract/status"]
    );

    let stats = publisher.stats();
    assert_eq!((stats.results_published, stats.alarms_delivered, stats.outbox_depth), (1, 1, 0), "{stats:?}");
    publisher.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_alarms_then_leaves_an_explicit_offline() {
    let dir = TestDir::new("graceful");
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/graceful/#").await;
    let (mqtt, node) = configs(broker.port, "graceful", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    wait_connected(&publisher).await;
    for i in 0..5 {
        publisher.publish_alarm("cam1", &alarm(i, AlarmEvent::Raised)).await.expect("stored");
    }
    let handle = publisher.handle();
    let started = std::time::Instant::now();
    publisher.shutdown(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown waits only for what is outstanding");
    assert_eq!(handle.outbox_depth(), 0, "every alarm was acknowledged before the disconnect");

    // The offline status goes out first (it must not wait behind a long outbox), the
    // remaining alarms follow before the disconnect.
    let mut alarms = Vec::new();
    let mut offline = None;
    while alarms.len() < 5 || offline.is_none() {
        let msg = sub
            .expect("alarms and offline", WAIT, |m| {
                m.topic != "inspectd/graceful/status" || m.json()["state"] == "offline"
            })
            .await;
        if msg.topic.ends_with("/alarm") {
            alarms.push(msg.json()["alarm_id"].as_str().expect("alarm id").to_string());
        } else {
            offline = Some(msg.json());
        }
    }
    assert_valid("node_status", &offline.expect("offline seen"));
    assert_eq!(alarms, (0..5).map(|i| format!("cam1-{i:04}")).collect::<Vec<_>>());
    assert_eq!(retained(broker.port, "inspectd/graceful/status").await.json()["state"], "offline");
    // A real DISCONNECT (so the offline above is ours, not the broker's last will).
    assert!(broker.log().contains("Client inspectd-graceful disconnected."), "{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_dies_leaves_the_last_will() {
    let dir = TestDir::new("will");
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/will/status").await;
    let (mqtt, node) = configs(broker.port, "will", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    let online = sub.expect("online", WAIT, |m| m.json()["state"] == "online").await;

    // Dropping without shutdown aborts the tasks: the TCP connection closes without DISCONNECT.
    drop(publisher);
    let will = sub.expect("last will", WAIT, |m| m.json()["state"] == "offline").await;
    assert_valid("node_status", &will.json());
    assert_eq!(will.json()["started_at"], online.json()["started_at"], "the will describes the same run");
    assert_eq!(retained(broker.port, "inspectd/will/status").await.json()["state"], "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_threshold_sets_from_a_gateway_reach_the_command_stream() {
    let dir = TestDir::new("acks");
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/acks/+/status").await;
    let (mqtt, node) = configs(broker.port, "acks", &dir);
    let (publisher, mut acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    // Retained state goes out after the ack subscription on every connect, so once it is
    // here the subscription is in place.
    publisher.publish_camera_status("cam1", &camera_status()).expect("status");
    sub.expect("camera status", WAIT, |m| m.topic == "inspectd/acks/cam1/status").await;

    sub.publish("inspectd/acks/cam1/alarm/ack", br#"{"v": 1, "alarm_id": "cam1-0007"}"#).await;
    sub.publish("inspectd/acks/cam2/alarm/ack", b"not json").await;
    sub.publish("inspectd/acks/cam2/alarm/ack", b"").await;
    sub.publish("inspectd/acks/cam1/threshold/set", br#"{"threshold": 2.5, "by": "plc"}"#).await;

    let mut next =
        async || tokio::time::timeout(WAIT, acks.recv()).await.expect("in time").expect("stream open");
    let ack =
        |c: &str, id: Option<&str>| Inbound::Ack(AlarmAck { camera: c.into(), alarm_id: id.map(Into::into) });
    assert_eq!(next().await, ack("cam1", Some("cam1-0007")));
    assert_eq!(next().await, ack("cam2", None), "empty payload = current alarm");
    let threshold =
        ThresholdRequest { camera: "cam1".into(), change: ThresholdChange::Raw(2.5), set_by: "plc".into() };
    assert_eq!(next().await, Inbound::Threshold(threshold));
    assert_eq!(publisher.stats().commands_invalid, 1);
    publisher.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_is_restored_after_the_broker_forgot_it() {
    let dir = TestDir::new("forgetful");
    let mut broker = Broker::start(&dir); // no persistence: a restart loses retained messages
    let (mqtt, node) = configs(broker.port, "forgetful", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    wait_connected(&publisher).await;
    publisher.publish_alarm_state("cam1", &alarm_state()).expect("alarm state");
    publisher.publish_camera_status("cam1", &camera_status()).expect("status");
    retained(broker.port, "inspectd/forgetful/cam1/alarm/state").await;

    tokio::task::block_in_place(|| broker.restart());
    let mut connected = publisher.connected();
    tokio::time::timeout(WAIT, connected.wait_for(|up| !*up)).await.expect("sees the drop").expect("alive");
    wait_connected(&publisher).await;
    // A PLC gateway connecting now still finds the current alarm state and the node online.
    let state = retained(broker.port, "inspectd/forgetful/cam1/alarm/state").await;
    assert_eq!(state.json()["alarm_id"], "cam1-0001");
    assert_eq!(retained(broker.port, "inspectd/forgetful/status").await.json()["state"], "online");
    publisher.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_results_interleaved_with_alarms_keep_alarm_acks_apart() {
    let dir = TestDir::new("qos1");
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/qos1/cam1/alarm").await;
    let (mut mqtt, node) = configs(broker.port, "qos1", &dir);
    mqtt.results.qos = 1;
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    wait_connected(&publisher).await;
    for i in 0..6 {
        for seq in 0..20 {
            publisher.publish_result("cam1", &result(i * 20 + seq)).expect("result");
        }
        publisher.publish_alarm("cam1", &alarm(i, AlarmEvent::Raised)).await.expect("stored");
    }
    for i in 0..6 {
        let msg = sub.expect("alarm", WAIT, |_| true).await;
        assert_eq!(msg.json()["alarm_id"], format!("cam1-{i:04}"));
    }
    let handle = publisher.handle();
    publisher.shutdown(Duration::from_secs(2)).await;
    let stats = handle.stats();
    assert_eq!((stats.alarms_delivered, stats.outbox_depth), (6, 0), "{stats:?}");
    assert_eq!(stats.results_published + stats.results_dropped_full, 120, "{stats:?}");
}

#[test]
fn the_schema_rejects_unknown_fields_other_versions_and_bad_times() {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&messages::encode(&alarm(1, AlarmEvent::Cleared)).expect("encodes"))
            .expect("JSON");
    assert_valid("alarm", &payload);
    let validator = broker::validator("alarm");
    payload["v"] = 2.into();
    assert!(!validator.is_valid(&payload), "version 2 is not version 1");
    payload["v"] = 1.into();
    payload["started_at"] = "yesterday".into();
    assert!(!validator.is_valid(&payload), "times are RFC 3339");
    payload["started_at"] = "2026-11-28T15:04:08.123Z".into();
    payload["extra"] = true.into();
    assert!(!validator.is_valid(&payload), "no unknown fields");

    let ack = broker::validator("alarm_ack");
    assert!(ack.is_valid(&serde_json::json!({"alarm_id": "cam1-0001"})));
    assert!(ack.is_valid(&serde_json::json!({})));
    assert!(!ack.is_valid(&serde_json::json!({"id": "cam1-0001"})));
}

/// What a consumer connecting now reads on `topic`: a retained message. Retried, because a
/// consumer that connects before the publish reaches the broker gets it live instead.
async fn retained(port: u16, topic: &str) -> Received {
    let until = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < until {
        let mut sub = Subscriber::connect(port, topic).await;
        if let Some(msg) = sub.drain_for(Duration::from_millis(200)).await.into_iter().find(|m| m.retain) {
            return msg;
        }
    }
    panic!("no retained message on {topic}");
}
