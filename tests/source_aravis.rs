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

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inspectd::config::types::{AravisSource, SourceConfig};
use inspectd::source::{SourceState, SourceStatus};

/// Set in the re-executed test, which then runs the camera scenario.
const MARKER: &str = "INSPECTD_TEST_IN_NETNS";
const TEST_NAME: &str = "a_gige_camera_streams_and_recovers_when_the_camera_returns";
const FAKE_CAMERA: &str = "arv-fake-gv-camera-0.8";
const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_gige_camera_streams_and_recovers_when_the_camera_returns() {
    if std::env::var_os(MARKER).is_some() {
        return camera_scenario();
    }
    let Some(namespace) = Namespace::create() else { return };
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new("ip")
        .args(["netns", "exec", &namespace.name, "env", &format!("{MARKER}=1")])
        .arg(exe)
        .args(["--exact", TEST_NAME, "--test-threads=1"])
        .status()
        .expect("run the test inside the namespace");
    assert!(status.success(), "the camera scenario failed inside {} (output above)", namespace.name);
}

/// Runs inside the namespace.
fn camera_scenario() {
    // The source's state-change log, interleaved with the test's steps, for diagnosing failures.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("inspectd=info,source_aravis=info")
        .with_test_writer()
        .try_init();
    assert_loopback_only();
    let mut camera = FakeCamera::start();
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
    camera = FakeCamera::start();
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

/// Refuses to start the fake camera where it could reach a real network.
fn assert_loopback_only() {
    let links = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim).collect();
    assert_eq!(names, ["lo"], "refusing to run the fake camera outside a loopback-only namespace");
}

/// The fake camera process, killed when dropped.
struct FakeCamera(Option<Child>);

impl FakeCamera {
    fn start() -> FakeCamera {
        let child = Command::new(FAKE_CAMERA)
            .args(["-i", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{FAKE_CAMERA} (Debian package aravis-tools) did not start: {e}"));
        FakeCamera(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback-only network namespace, deleted when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    /// `None`, with the reason printed, where namespaces cannot be made: not root, or no `ip`.
    fn create() -> Option<Namespace> {
        if !is_root() {
            eprintln!("SKIPPED {TEST_NAME}: creating a network namespace needs root");
            return None;
        }
        let name = format!("inspectd-test-{}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).status() {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("`ip netns add {name}` failed ({status}) although running as root"),
            Err(e) => {
                eprintln!("SKIPPED {TEST_NAME}: `ip` (iproute2) is not available: {e}");
                return None;
            }
        }
        let namespace = Namespace { name };
        let up = Command::new("ip")
            .args(["netns", "exec", &namespace.name, "ip", "link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "bringing up loopback in {} failed", namespace.name);
        Some(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Anything the inner run left behind (a fake camera after a panic) was started by us.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            uid.split_whitespace().nth(1).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}
