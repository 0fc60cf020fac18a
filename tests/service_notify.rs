//! The systemd notification protocol end to end: a Unix datagram socket of the test's own
//! stands in for systemd's, found through `NOTIFY_SOCKET` like the real one, and the notifier
//! task is driven by plain `Health` values.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use inspectd::service::notify::Notifier;
use inspectd::service::watchdog::{run_notifier, CameraHealth, Health, ScorerHealth, HEARTBEAT_STALE_AFTER};
use inspectd::source::SourceState;
use tokio_util::sync::CancellationToken;

/// A directory for one test, removed when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("inspectd-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The receiving end: what systemd would read.
struct Manager(UnixDatagram);

impl Manager {
    fn recv(&self, within: Duration) -> Option<String> {
        self.0.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = [0u8; 4096];
        let n = self.0.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn expect(&self, what: &str, within: Duration) -> String {
        self.recv(within).unwrap_or_else(|| panic!("no {what} within {within:?}"))
    }

    /// Everything that arrives within `window`.
    fn collect(&self, window: Duration) -> Vec<String> {
        let until = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if let Some(m) = self.recv(left) {
                out.push(m);
            }
        }
        out
    }
}

fn healthy() -> Health {
    Health {
        models_loaded: true,
        cameras: vec![CameraHealth { id: "cam1".into(), state: SourceState::Streaming, fps: 25.0 }],
        mqtt_connected: false,
        scorers: vec![ScorerHealth { model: "part-a".into(), last_beat: None, frames_waiting: 0 }],
        alarms_raised: 0,
        stopping: false,
        failed: None,
    }
}

/// READY → STATUS → pings, no pings while the scorer is wedged, STOPPING at the end; the
/// notifier comes from the environment exactly as under systemd. The only test in this file
/// that touches the environment, so parallel tests cannot race on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_from_env_sends_ready_status_health_gated_pings_and_stopping() {
    std::env::remove_var("NOTIFY_SOCKET");
    assert!(!Notifier::from_env().expect("no socket is fine").is_enabled(), "outside systemd: no-op");

    let dir = TestDir::new("env");
    let path = dir.0.join("notify");
    let manager = Manager(UnixDatagram::bind(&path).expect("bind"));
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "400000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    let notifier = Notifier::from_env().expect("notifier");
    assert_eq!(notifier.watchdog_interval(), Some(Duration::from_millis(400)));

    let health = Arc::new(Mutex::new(healthy()));
    let beating = Arc::new(AtomicBool::new(true));
    let (h, b) = (health.clone(), beating.clone());
    let source = move || {
        let mut now = h.lock().expect("lock").clone();
        if b.load(Ordering::Relaxed) {
            now.scorers[0].last_beat = Some(SystemTime::now());
        }
        now
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_notifier(notifier, source, Duration::from_secs(60), cancel.clone()));

    let wait = Duration::from_secs(3);
    assert_eq!(manager.expect("STATUS", wait), "STATUS=Starting: waiting for MQTT not connected");
    assert!(manager.collect(Duration::from_millis(600)).is_empty(), "no READY, no ping before ready");

    health.lock().expect("lock").mqtt_connected = true;
    assert_eq!(manager.expect("READY", wait), "READY=1");
    assert_eq!(
        manager.expect("STATUS", wait),
        "STATUS=1/1 cameras streaming, 25 fps, MQTT connected, 0 alarms raised"
    );
    let running = manager.collect(Duration::from_millis(1000));
    let pings = running.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((3..=7).contains(&pings), "a ping every 200 ms: {running:?}");

    // The scoring loop wedges: its last heartbeat ages past the limit and stays there.
    beating.store(false, Ordering::Relaxed);
    health.lock().expect("lock").scorers[0].last_beat = Some(SystemTime::now() - 2 * HEARTBEAT_STALE_AFTER);
    manager.collect(Duration::from_millis(250)); // a ping already on its way
    let wedged = manager.collect(Duration::from_millis(1200));
    assert!(!wedged.iter().any(|m| m == "WATCHDOG=1"), "pings stop while scoring is stuck: {wedged:?}");

    beating.store(true, Ordering::Relaxed);
    let recovered = manager.collect(Duration::from_millis(800));
    assert!(recovered.iter().any(|m| m == "WATCHDOG=1"), "pings resume: {recovered:?}");

    cancel.cancel();
    task.await.expect("notifier task");
    let last = manager.collect(Duration::from_millis(300));
    assert_eq!(last.last().map(String::as_str), Some("STOPPING=1"), "{last:?}");
}

/// A reload as systemd ≥ 253 wants it, over an abstract socket (`@name`).
#[test]
fn reload_sends_reloading_with_monotonic_time_then_ready() {
    let name = format!("inspectd-notify-test-{}", std::process::id());
    let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
        name.as_bytes(),
    )
    .expect("abstract name");
    let manager = Manager(UnixDatagram::bind_addr(&addr).expect("bind abstract"));
    let notifier = Notifier::connect(format!("@{name}").as_ref(), None).expect("notifier");
    assert_eq!(notifier.watchdog_interval(), None);

    let mut stamps = Vec::new();
    for _ in 0..2 {
        notifier.reloading().expect("send");
        let msg = manager.expect("RELOADING", Duration::from_secs(1));
        let (first, second) = msg.split_once('\n').expect("two assignments");
        assert_eq!(first, "RELOADING=1");
        let usec: u64 =
            second.strip_prefix("MONOTONIC_USEC=").expect("monotonic time").parse().expect("a number");
        stamps.push(usec);
        notifier.status("Reloading: models\nvalidated").expect("send");
        assert_eq!(manager.expect("STATUS", Duration::from_secs(1)), "STATUS=Reloading: models validated");
        notifier.ready().expect("send");
        assert_eq!(manager.expect("READY", Duration::from_secs(1)), "READY=1");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(stamps[0] > 0 && stamps[1] > stamps[0], "CLOCK_MONOTONIC moves forward: {stamps:?}");

    notifier.stopping().expect("send");
    assert_eq!(manager.expect("STOPPING", Duration::from_secs(1)), "STOPPING=1");
}
