//! A GigE Vision camera at the daemon level: `arv-fake-gv-camera-0.8` streams to the daemon's
//! `gige` camera, its frames are scored and published, and when the camera vanishes and
//! returns the camera status says so, without restarting inspectd.
//!
//! design.md §8: the fake camera, mosquitto and inspectd run inside a network namespace with
//! only loopback up (see common/netns.rs).

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/netns.rs"]
mod netns;

use std::time::Duration;

use broker::{assert_valid, Broker, Received, Subscriber, TestDir};
use daemon::{config_head, washer_model, Daemon};
use netns::FakeCamera;

const TEST_NAME: &str = "a_gige_camera_is_scored_and_its_status_follows_the_camera_away_and_back";
const SECOND: Duration = Duration::from_secs(1);
const NODE: &str = "gige1";

#[test]
fn a_gige_camera_is_scored_and_its_status_follows_the_camera_away_and_back() {
    if netns::inside() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        return runtime.expect("tokio runtime").block_on(camera_scenario());
    }
    netns::rerun_inside(TEST_NAME);
}

fn is_status(state: &'static str) -> impl Fn(&Received) -> bool {
    move |m| m.topic == format!("inspectd/{NODE}/gev/status") && m.json()["state"] == state
}

fn is_result(m: &Received) -> bool {
    m.topic == format!("inspectd/{NODE}/gev/result")
}

/// Runs inside the namespace.
async fn camera_scenario() {
    netns::assert_loopback_only();
    let dir = TestDir::new("daemon-gige");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let mut camera = FakeCamera::start();
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{NODE}/gev/#")).await;
    let config = format!(
        r#"{head}
[cameras.gev]
model = "washer"
[cameras.gev.source]
kind = "gige"
camera = "Aravis-Fake-GV01"
pixel_format = "bayer_bggr8"
fps = 10.0
# The fake camera's smooth test image has a tiny fraction of the washers' focus measure: the
# out-of-focus check would call every frame invalid (tests/daemon_frame_health.rs tests it).
[cameras.gev.health]
min_focus_ratio = 0.0
"#,
        head = config_head(NODE, &dir.0, broker.port)
    );
    let mut daemon = Daemon::start(&dir.0, "daemon", &config);

    // The camera's frames are scored and published.
    let first = sub.expect("a result from the GigE camera", 30 * SECOND, is_result).await;
    assert_valid("result", &first.json());
    let streaming = sub.expect("status streaming", 10 * SECOND, is_status("streaming")).await;
    assert_valid("camera_status", &streaming.json());
    let mut seq = first.json()["seq"].as_u64().expect("seq");
    for _ in 0..5 {
        let next = sub.expect("more results", 5 * SECOND, is_result).await.json();
        assert_valid("result", &next);
        let next_seq = next["seq"].as_u64().expect("seq");
        assert!(next_seq > seq, "frames in order: {next_seq} after {seq}");
        seq = next_seq;
    }

    // The camera vanishes: the status says the daemon is reconnecting.
    camera.stop();
    let lost = sub.expect("status reconnecting", 20 * SECOND, is_status("reconnecting")).await;
    assert_valid("camera_status", &lost.json());
    sub.drain_for(SECOND).await;
    // While it is away nothing is scored for it.
    let away = sub.drain_for(2 * SECOND).await;
    assert!(!away.iter().any(is_result), "no verdicts without a camera");

    // It returns: the same daemon streams and scores again.
    camera = FakeCamera::start();
    sub.expect("status streaming again", 40 * SECOND, is_status("streaming")).await;
    let back = sub.expect("results again", 10 * SECOND, is_result).await.json();
    assert_valid("result", &back);
    assert!(back["seq"].as_u64().expect("seq") > seq, "the frame count goes on: {back} after {seq}");
    assert!(daemon.child.try_wait().expect("wait").is_none(), "inspectd was not restarted");

    let code = tokio::task::block_in_place(|| daemon.signal_and_wait("TERM", 15 * SECOND));
    assert_eq!(code, Some(0), "log:\n{}", daemon.log());
    sub.expect("status stopped", 5 * SECOND, is_status("stopped")).await;
    camera.stop();
}

const TRIGGER_TEST: &str = "twenty_software_triggers_of_the_fake_camera_give_twenty_part_results";
const TRIGGER_NODE: &str = "gige2";

#[test]
fn twenty_software_triggers_of_the_fake_camera_give_twenty_part_results() {
    if netns::inside() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        return runtime.expect("tokio runtime").block_on(trigger_scenario());
    }
    netns::rerun_inside(TRIGGER_TEST);
}

/// The PLC's side of the handshake: trigger, wait for the part, trigger again. The camera is
/// in trigger mode (TriggerSoftware fired by inspectd), so it sends exactly one frame each.
async fn trigger_scenario() {
    netns::assert_loopback_only();
    let dir = TestDir::new("daemon-gige-trigger");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let _camera = FakeCamera::start();
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{TRIGGER_NODE}/#")).await;
    let config = format!(
        r#"{head}
[cameras.tg]
model = "washer"
mode = "triggered"
trigger = {{ input = "software", timeout_s = 3.0 }}
[cameras.tg.source]
kind = "gige"
camera = "Aravis-Fake-GV01"
pixel_format = "bayer_bggr8"
# As above: the fake camera's smooth image is nothing like the washers' focus.
[cameras.tg.health]
min_focus_ratio = 0.0
"#,
        head = config_head(TRIGGER_NODE, &dir.0, broker.port)
    );
    let mut daemon = Daemon::start(&dir.0, TRIGGER_NODE, &config);
    let ready_topic = format!("inspectd/{TRIGGER_NODE}/tg/ready");
    let part_topic = format!("inspectd/{TRIGGER_NODE}/tg/part");
    // The camera streams nothing until triggered, so the first trigger may come before the
    // pipeline plays: that one may time out; from then on every part must be judged.
    sub.expect("ready", 60 * SECOND, |m| m.topic == ready_topic).await;
    let trigger = format!("inspectd/{TRIGGER_NODE}/tg/trigger");
    let mut parts = Vec::new();
    for i in 0..21 {
        let id = format!("G-{i}");
        sub.publish(&trigger, format!(r#"{{"part_id": "{id}"}}"#).as_bytes()).await;
        let part = sub
            .expect(&format!("part {id}"), 10 * SECOND, |m| {
                m.topic == part_topic && m.json()["part_id"] == id.as_str()
            })
            .await
            .json();
        assert_valid("part", &part);
        parts.push(part);
    }
    let judged: Vec<&str> = parts[1..].iter().map(|p| p["verdict"].as_str().unwrap_or_default()).collect();
    assert!(judged.iter().all(|v| *v == "OK" || *v == "NG"), "{judged:?}\n{}", daemon.log());
    for p in &parts[1..] {
        assert!(p["cameras"]["tg"]["seq"].as_u64().is_some(), "{p}");
    }
    // No frame without a trigger: the camera's frame counter moves only with the triggers.
    let results = sub.drain_for(2 * SECOND).await;
    assert!(results.iter().all(|m| !m.topic.ends_with("/result")), "a frame was scored without a trigger");
    assert_eq!(daemon.signal_and_wait("TERM", 20 * SECOND), Some(0), "{}", daemon.log());
}
