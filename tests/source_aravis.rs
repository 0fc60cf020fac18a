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

use inspectd::config::types::{AravisSource, SourceConfig};
use inspectd::source::{SourceState, SourceStatus};

const TEST_NAME: &str = "a_gige_camera_streams_and_recovers_when_the_camera_returns";
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
        exposure_us: None,
        gain_db: None,
        fps: Some(20.0),
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
