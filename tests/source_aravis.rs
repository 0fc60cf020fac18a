//! A GigE Vision camera end to end: `arv-fake-gv-camera-0.8` (aravis-tools) speaks GigE Vision
//! to `aravissrc`; the source streams, notices the camera vanish and recovers when it returns.
//!
//! design.md §8: the fake camera and the code under test must run inside a network namespace
//! with only loopback up. Outside one, aravis discovers the camera through the machine's other
//! interfaces and sends GigE Vision traffic to a non-loopback address. So the test re-executes
//! itself inside a fresh namespace (marked by an environment variable) and deletes the
//! namespace afterwards, also when the inner run fails.

#[path = "common/gst.rs"]
mod gst;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::time::SystemTime;

use inspectd::config::types::{AravisSource, FeatureValue, SourceConfig, TriggerConfig};
use inspectd::flow::trigger::{PartTag, TriggerGate};
use inspectd::source::{SourceSettings, SourceState, SourceStatus, Triggered, DEFAULT_STALL_TIMEOUT};

const TEST_NAME: &str = "a_gige_camera_streams_and_recovers_when_the_camera_returns";
const TRIGGER_TEST: &str = "the_fake_camera_in_trigger_mode_sends_one_frame_per_software_trigger";
const FEATURE_TEST: &str = "genicam_settings_the_camera_refuses_name_the_feature_and_its_range";

fn fake_camera(features: &[(&str, FeatureValue)]) -> SourceConfig {
    SourceConfig::Gige(AravisSource {
        camera: Some("Aravis-Fake-GV01".into()),
        pixel_format: "bayer_bggr8".into(),
        features: features.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        ..AravisSource::default()
    })
}

fn settings(camera: &str, source: SourceConfig, trigger: Option<Triggered>) -> SourceSettings {
    SourceSettings {
        camera: Arc::from(camera),
        source,
        roi: None,
        width: 64,
        height: 64,
        stall_timeout: DEFAULT_STALL_TIMEOUT,
        trigger,
    }
}

#[test]
fn the_fake_camera_in_trigger_mode_sends_one_frame_per_software_trigger() {
    if netns::inside() {
        return trigger_scenario();
    }
    netns::rerun_inside(TRIGGER_TEST);
}

/// 20 software triggers give 20 frames, each tagged with its part, and nothing comes
/// between the triggers: the camera itself waits (TriggerMode On, TriggerSource Software).
fn trigger_scenario() {
    netns::assert_loopback_only();
    let _camera = netns::FakeCamera::start();
    let gate = TriggerGate::new();
    let trigger = Triggered { gate: gate.clone(), config: TriggerConfig::default() };
    let running = gst::start_settings(settings("trig-1", fake_camera(&[]), Some(trigger)), 4);
    let arm = |id: &str| {
        let tag = PartTag { part_id: id.into(), station: "st".into(), triggered_at: SystemTime::now() };
        gate.arm(tag).expect("arm");
    };
    // Until the pipeline runs, a trigger cannot fire: trigger until the first frame comes.
    let opened = Instant::now() + 15 * SECOND;
    let mut fired = 20;
    loop {
        arm("warm-up");
        fired += 1;
        if matches!(running.frames.recv_timeout(Duration::from_millis(300)), Ok(Some(_))) {
            break;
        }
        assert!(Instant::now() < opened, "no frame after triggers: {:?}", running.status.borrow());
    }
    while let Ok(Some(_)) = running.frames.recv_timeout(Duration::from_millis(300)) {}
    for i in 0..20 {
        let id = format!("part-{i}");
        arm(&id);
        let frame = match running.frames.recv_timeout(5 * SECOND) {
            Ok(Some(frame)) => frame,
            other => panic!("no frame for trigger {i}: {}", other.is_ok()),
        };
        assert_eq!(frame.part.map(|p| p.part_id.to_string()), Some(id));
    }
    assert!(matches!(running.frames.recv_timeout(SECOND), Ok(None)), "a frame arrived without a trigger");
    let status = running.status.borrow().clone();
    assert_eq!(status.state, SourceState::Streaming, "silence between triggers is no stall: {status:?}");
    // The camera itself waited for the triggers: a free-running one (25 fps) would have sent
    // far more frames to the gate than were fired.
    assert!(status.frames <= fired, "{} frames from the camera for {fired} triggers", status.frames);
}

#[test]
fn genicam_settings_the_camera_refuses_name_the_feature_and_its_range() {
    if netns::inside() {
        return feature_scenario();
    }
    netns::rerun_inside(FEATURE_TEST);
}

fn feature_scenario() {
    netns::assert_loopback_only();
    let _camera = netns::FakeCamera::start();
    for (features, expected) in [
        (
            vec![("NoSuchFeature", FeatureValue::Int(1))],
            "NoSuchFeature (source.features.NoSuchFeature): the camera does not implement",
        ),
        (vec![("Width", FeatureValue::Int(1_000_000))], "outside the camera's range"),
        (vec![("TriggerSource", FeatureValue::Text("Line99".into()))], "not one of the camera's entries"),
    ] {
        let running = gst::start_settings(settings("feat-1", fake_camera(&features), None), 4);
        let status = running.wait_state(SourceState::Error, 15 * SECOND);
        let message = status.message.unwrap_or_default();
        assert!(
            message.starts_with("camera feat-1: GenICam feature ") && message.contains(expected),
            "{message}"
        );
    }
    // Accepted values are set: the camera streams.
    let ok = [("Width", FeatureValue::Int(256)), ("TriggerMode", FeatureValue::Text("Off".into()))];
    let running = gst::start_settings(settings("feat-2", fake_camera(&ok), None), 4);
    running.take(3, 15 * SECOND);
}
const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_gige_camera_streams_and_recovers_when_the_camera_returns() {
    if netns::inside() {
        return camera_scenario();
    }
    netns::rerun_inside(TEST_NAME);
}

/// Runs inside the namespace.
fn camera_scenario() {
    // The source's state-change log, interleaved with the test's steps, for diagnosing failures.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("inspectd=info,source_aravis=info")
        .with_test_writer()
        .try_init();
    netns::assert_loopback_only();
    let mut camera = netns::FakeCamera::start();
    let source = SourceConfig::Gige(AravisSource {
        camera: Some("Aravis-Fake-GV01".into()),
        pixel_format: "bayer_bggr8".into(),
        fps: Some(20.0),
        ..AravisSource::default()
    });
    let mut running = gst::start("gige-1", source, (64, 64), 4);
    let frames = running.take(5, 15 * SECOND);
    assert!(frames.iter().all(|f| (f.width, f.height, f.rgb.len()) == (64, 64, 64 * 64 * 3)));
    running.wait_status("streaming at a frame rate", 10 * SECOND, |s| {
        s.state == SourceState::Streaming && s.fps > 0.0
    });

    // Keep consuming, as the scorer would, while the camera goes away and comes back.
    let mut newest = frames[4].seq;
    tracing::info!("Stopping the camera.");
    camera.stop();
    let lost = wait_draining(&running, "reconnecting", 15 * SECOND, &mut newest, |s, _| {
        s.state == SourceState::Reconnecting
    });
    let message = lost.message.expect("the reason for reconnecting");
    assert!(message.starts_with("camera gige-1: /GstPipeline:gige-1/"), "{message}");
    assert!(message.contains("GstAravis:src"), "names the aravis element: {message}");
    let seq_when_lost = newest;

    // While the camera is down, reconnect attempts fail ("not found") and back off.
    let retried = wait_draining(&running, "a failed reconnect attempt", 30 * SECOND, &mut newest, |s, _| {
        s.state == SourceState::Reconnecting && s.message.as_deref() != Some(message.as_str())
    });
    tracing::info!(status = ?retried.message, "Restarting the camera.");
    camera = netns::FakeCamera::start();
    wait_draining(&running, "frames from the returned camera", 30 * SECOND, &mut newest, |s, seq| {
        s.state == SourceState::Streaming && seq > seq_when_lost + 5
    });

    running.stop(10 * SECOND);
    assert_eq!(running.status.borrow().state, SourceState::Stopped);
    camera.stop();
}

/// Consumes frames until the status and the newest sequence number satisfy `want`.
fn wait_draining(
    running: &gst::Running,
    what: &str,
    timeout: Duration,
    newest: &mut u64,
    want: impl Fn(&SourceStatus, u64) -> bool,
) -> SourceStatus {
    let deadline = Instant::now() + timeout;
    loop {
        drain_for(running, Duration::from_millis(20), newest);
        let status = running.status.borrow().clone();
        if want(&status, *newest) {
            return status;
        }
        assert!(Instant::now() < deadline, "no {what} within {timeout:?}; last status {status:?}");
    }
}

/// Consumes frames for `period`, keeping the newest sequence number.
fn drain_for(running: &gst::Running, period: Duration, newest: &mut u64) {
    let until = Instant::now() + period;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Ok(Some(frame)) = running.frames.recv_timeout(left) {
            *newest = (*newest).max(frame.seq);
        }
    }
}
