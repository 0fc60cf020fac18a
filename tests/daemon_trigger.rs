//! Triggered inspection end to end (issue "Line integration", item 2), on streams without a
//! trigger input: a trigger takes the next frame of each camera of its station. Every trigger
//! gets exactly one part result (OK/NG, `invalid` when the station is busy, `timeout` when a
//! camera sends nothing), no frame is scored without a trigger, and the retained `ready`
//! state tells the PLC when it may trigger.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/gst.rs"]
mod gst;

use std::time::{Duration, Instant};

use broker::{assert_valid, Broker, Received, Subscriber, TestDir};
use daemon::{config_head, Daemon, SIZE};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const TRIGGERS: usize = 6;

fn camera(id: &str, source: &str) -> String {
    format!("\n[cameras.{id}]\nmodel = \"washer\"\nmode = \"triggered\"\ntrigger.timeout_s = 1.0\n[cameras.{id}.source]\n{source}\n")
}

async fn part(sub: &mut Subscriber, node: &str, station: &str, part_id: &str) -> Value {
    let topic = format!("inspectd/{node}/{station}/part");
    let msg = sub
        .expect(&format!("part {part_id}"), WAIT, |m: &Received| {
            m.topic == topic && m.json()["part_id"] == part_id
        })
        .await;
    let json = msg.json();
    assert_valid("part", &json);
    json
}

/// Waits until the retained `ready` state says the station may be triggered, as a PLC that
/// (re)reads it would. (Part results come through the outbox and may arrive after the ready
/// state that follows them, so a subscriber in the middle of the stream can miss the order.)
async fn ready(port: u16, node: &str, station: &str, daemon: &Daemon) -> Value {
    let topic = format!("inspectd/{node}/{station}/ready");
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        let mut sub = Subscriber::connect(port, &topic).await;
        let retained = sub.expect("the retained ready state", WAIT, |m| m.retain);
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(500), retained).await {
            let json = msg.json();
            assert_valid("ready", &json);
            if json["ready"] == true {
                return json;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{station} not ready; log:\n{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trigger_gets_one_part_result_from_every_camera_of_its_station() {
    let dir = TestDir::new("trigger");
    let video = dir.path("short.avi");
    tokio::task::block_in_place(|| gst::encode_video(&video, "ball", 5, SIZE, SIZE, 10));
    let broker = Broker::start(&dir);
    let node = "trig1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let mut results_a = Subscriber::connect(broker.port, &format!("inspectd/{node}/a/result")).await;
    let test_source = format!("kind = \"test\"\nfps = 10\nwidth = {SIZE}\nheight = {SIZE}");
    let file_source =
        format!("kind = \"file\"\npath = \"{}\"\nrealtime = false\nloop = false", video.display());
    let config = format!(
        "{head}{a}{b}{gone}\n[stations.st]\ncameras = [\"a\", \"b\"]\n",
        head = config_head(node, &dir.0, broker.port),
        a = camera("a", &test_source),
        b = camera("b", &test_source),
        gone = camera("gone", &file_source),
    );
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&dir.0, node, &config));
    let trigger = format!("inspectd/{node}/st/trigger");

    // One part per trigger, each judged by both cameras on a frame taken after the trigger.
    ready(broker.port, node, "st", &daemon).await;
    for i in 0..TRIGGERS {
        let id = format!("P-{i}");
        let payload = format!(r#"{{"part_id": "{id}", "lot": "L7"}}"#);
        assert_valid("trigger", &serde_json::from_str(&payload).expect("JSON"));
        sub.publish(&trigger, payload.as_bytes()).await;
        let p = part(&mut sub, node, "st", &id).await;
        assert!(p["verdict"] == "OK" || p["verdict"] == "NG", "{p}\n{}", daemon.log());
        let cameras = p["cameras"].as_object().expect("cameras");
        assert_eq!(cameras.keys().collect::<Vec<_>>(), ["a", "b"], "{p}");
        assert_eq!(p["context"]["lot"], "L7", "the trigger's fields are echoed");
        let ng = cameras.values().any(|c| c["verdict"] == "NG");
        assert_eq!(p["verdict"] == "NG", ng, "NG if any camera is NG: {p}");
        let to_result = p["trigger_to_result_ms"].as_f64().expect("latency");
        assert!(
            to_result >= p["trigger_to_frame_ms"].as_f64().expect("latency") && to_result < 1000.0,
            "{p}"
        );
        ready(broker.port, node, "st", &daemon).await;
    }

    // A second trigger while the first part is open is refused, not queued or lost.
    sub.publish(&trigger, br#"{"part_id": "B-1"}"#).await;
    sub.publish(&trigger, br#"{"part_id": "B-2"}"#).await;
    let busy = part(&mut sub, node, "st", "B-2").await;
    assert_eq!(busy["verdict"], "invalid", "{busy}");
    assert!(busy["reason"].as_str().is_some_and(|r| r.contains("busy with part B-1")), "{busy}");
    assert!(matches!(part(&mut sub, node, "st", "B-1").await["verdict"].as_str(), Some("OK" | "NG")));

    // A camera that sends nothing (its recording ended) gives `timeout` at the deadline.
    let mut gone = Subscriber::connect(broker.port, &format!("inspectd/{node}/gone/status")).await;
    gone.expect("the recording ended", WAIT, |m| m.json()["state"] == "stopped").await;
    let sent = Instant::now();
    sub.publish(&format!("inspectd/{node}/gone/trigger"), br#"{"part_id": "T-1"}"#).await;
    let timeout = part(&mut sub, node, "gone", "T-1").await;
    assert_eq!(timeout["verdict"], "timeout", "{timeout}");
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    assert!(timeout["reason"].as_str().is_some_and(|r| r.contains("gone")), "{timeout}");

    // No frame is scored without a trigger: camera a (10 fps for seconds) judged one frame
    // per part it was triggered for, nothing more.
    let rest = sub.drain_for(Duration::from_millis(500)).await;
    assert!(rest.iter().all(|m| !m.topic.ends_with("/part")), "one part result per trigger");
    let scored = results_a.drain_for(Duration::from_millis(200)).await;
    assert_eq!(scored.len(), TRIGGERS + 1, "results of camera a");
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
    let log = daemon.log();
    let judged = log.matches("Part judged.").count();
    assert_eq!(judged, TRIGGERS + 3, "{log}");
}

/// Part ids the daemon's log reports as judged (queued for MQTT), in order.
fn judged(daemon: &Daemon) -> Vec<String> {
    daemon::strip_ansi(&daemon.log())
        .lines()
        .filter(|l| l.contains("Part judged."))
        .filter_map(|l| l.split("part_id=").nth(1).and_then(|rest| rest.split_whitespace().next()))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_results_judged_while_the_broker_is_down_reach_a_persistent_subscriber() {
    let dir = TestDir::new("trigger-outage");
    let persistence =
        format!("persistence true\npersistence_location {}/\nallow_anonymous true\n", dir.0.display());
    let mut broker = Broker::start_with(&dir, &persistence);
    let node = "trig2";
    let mut plc =
        Subscriber::connect_as(broker.port, &format!("inspectd/{node}/+/part"), Some("plc-parts")).await;
    let head = tokio::task::block_in_place(|| config_head(node, &dir.0, broker.port));
    let source = format!("kind = \"test\"\nfps = 5\nwidth = {SIZE}\nheight = {SIZE}");
    let config = format!("{head}{}", camera("a", &source).replace("timeout_s = 1.0", "timeout_s = 5.0"));
    let daemon = Daemon::start(&dir.0, node, &config);
    let trigger = format!("inspectd/{node}/a/trigger");
    for round in 0..3 {
        ready(broker.port, node, "a", &daemon).await;
        let sender = Subscriber::connect(broker.port, &format!("inspectd/{node}/a/ready")).await;
        sender.publish(&trigger, format!(r#"{{"part_id": "D-{round}"}}"#).as_bytes()).await;
        // The frame comes up to 200 ms later (5 fps): the part is judged with the broker down.
        tokio::time::sleep(Duration::from_millis(30)).await;
        tokio::task::block_in_place(|| broker.stop());
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| broker.restart());
    }
    ready(broker.port, node, "a", &daemon).await;
    let judged = judged(&daemon);
    assert!(!judged.is_empty(), "{}", daemon.log());
    // At least one part was judged while the daemon had no broker connection.
    let log = daemon::strip_ansi(&daemon.log());
    let mut offline = false;
    let during_outage = log.lines().any(|l| {
        if l.contains("MQTT connection lost") {
            offline = true;
        } else if l.contains("MQTT connected.") {
            offline = false;
        }
        offline && l.contains("Part judged.")
    });
    assert!(during_outage, "no part was judged during an outage; log:\n{log}");
    let mut received: Vec<String> = Vec::new();
    while let Some(missing) = judged.iter().find(|id| !received.contains(id)) {
        let what = format!("part {missing} (have {received:?})");
        let msg = plc.expect(&what, WAIT, |m| m.topic.ends_with("/part")).await;
        let json = msg.json();
        assert_valid("part", &json);
        let id = json["part_id"].as_str().expect("part_id").to_string();
        if !received.contains(&id) {
            received.push(id);
        }
    }
    assert_eq!(received, judged, "every judged part arrived, in order");
}
